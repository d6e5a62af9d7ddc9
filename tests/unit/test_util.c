/*
 * test_util.c - util.c and log.c: sockaddr_parse, ipaddr, buf, session
 * ids (uniqueness and alphabet), util_strcaseeq/lowercase, log_kv_escape,
 * the stderr log line format, log_fatal's exit status and log_panic's abort.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proxy.h"
#include "t.h"

/* sockaddr_text - "fam addr port" of ss for comparisons */
static void
sockaddr_text(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
	char a[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &s->sin_addr, a, sizeof(a));
		snprintf(out, outlen, "4 %s %u", a, ntohs(s->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &s->sin6_addr, a, sizeof(a));
		snprintf(out, outlen, "6 %s %u", a, ntohs(s->sin6_port));
	} else {
		snprintf(out, outlen, "?");
	}
}

/* test_sockaddr_parse - accepted forms and refused ones */
static void
test_sockaddr_parse(void)
{
	static const struct {
		const char *in;
		int defport;
		const char *want; /* NULL: -EINVAL */
	} cases[] = {
	        {"1.2.3.4:25", 25, "4 1.2.3.4 25"},
	        {"0.0.0.0:2525", 25, "4 0.0.0.0 2525"},
	        {"1.2.3.4", 25, "4 1.2.3.4 25"},
	        {"1.2.3.4", -1, NULL},
	        {"[::1]:25", 25, "6 ::1 25"},
	        {"[::]:25", 25, "6 :: 25"},
	        {"[2001:db8::5]", 587, "6 2001:db8::5 587"},
	        {"::1", 53, "6 ::1 53"},
	        {"127.0.0.1:65535", 25, "4 127.0.0.1 65535"},
	        {"127.0.0.1:65536", 25, NULL},
	        {"127.0.0.1:", 25, NULL},
	        {"127.0.0.1:2x", 25, NULL},
	        {"127.0.0.1:-1", 25, NULL},
	        {"localhost:25", 25, NULL},
	        {"mail.example.com", 25, NULL},
	        {"[::1", 25, NULL},
	        {"[::1]x", 25, NULL},
	        {"[1.2.3.4]:25", 25, NULL},
	        {"1.2.3:25", 25, NULL},
	        {"", 25, NULL},
	        {":25", 25, NULL},
	        {"[]:25", 25, NULL},
	};
	struct sockaddr_storage ss;
	char got[96], name[96];
	size_t i;

	for (i = 0; i < ARRAY_LEN(cases); i++) {
		int rc = sockaddr_parse(&ss, cases[i].in, cases[i].defport);

		snprintf(name, sizeof(name), "sockaddr_parse \"%s\"",
		         cases[i].in);
		t_begin(name);
		if (cases[i].want == NULL) {
			T_INTEQ(rc, -EINVAL);
		} else {
			T_INTEQ(rc, 0);
			sockaddr_text(&ss, got, sizeof(got));
			T_STREQ(got, cases[i].want);
		}
		t_end();
	}
}

/* test_ipaddr - parse, v4-mapped folding, format, equality */
static void
test_ipaddr(void)
{
	struct ipaddr a, b;
	struct sockaddr_in6 s6;
	struct sockaddr_in s4;
	char out[INET6_ADDRSTRLEN];

	t_begin("ipaddr_parse v4");
	T_INTEQ(ipaddr_parse(&a, "192.0.2.1"), 0);
	T_INTEQ(a.family, AF_INET);
	ipaddr_format(&a, out, sizeof(out));
	T_STREQ(out, "192.0.2.1");
	t_end();

	t_begin("ipaddr_parse v6");
	T_INTEQ(ipaddr_parse(&a, "2001:DB8::1"), 0);
	T_INTEQ(a.family, AF_INET6);
	ipaddr_format(&a, out, sizeof(out));
	T_STREQ(out, "2001:db8::1");
	t_end();

	t_begin("ipaddr_parse v4-mapped folds to v4");
	T_INTEQ(ipaddr_parse(&a, "::ffff:192.0.2.1"), 0);
	T_INTEQ(a.family, AF_INET);
	ipaddr_parse(&b, "192.0.2.1");
	T_CHECK(ipaddr_equal(&a, &b), "mapped != plain");
	ipaddr_format(&a, out, sizeof(out));
	T_STREQ(out, "192.0.2.1");
	t_end();

	t_begin("ipaddr_parse bad");
	T_INTEQ(ipaddr_parse(&a, "1.2.3"), -EINVAL);
	T_INTEQ(ipaddr_parse(&a, "1.2.3.4/24"), -EINVAL);
	T_INTEQ(ipaddr_parse(&a, "[::1]"), -EINVAL);
	T_INTEQ(ipaddr_parse(&a, ""), -EINVAL);
	T_INTEQ(ipaddr_parse(&a, NULL), -EINVAL);
	T_INTEQ(ipaddr_parse(&a, "example.com"), -EINVAL);
	t_end();

	t_begin("ipaddr_from_sockaddr v4-mapped");
	memset(&s6, 0, sizeof(s6));
	s6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "::ffff:10.1.2.3", &s6.sin6_addr);
	T_INTEQ(ipaddr_from_sockaddr(&a, (struct sockaddr *)&s6), 0);
	T_INTEQ(a.family, AF_INET);
	ipaddr_format(&a, out, sizeof(out));
	T_STREQ(out, "10.1.2.3");
	memset(&s4, 0, sizeof(s4));
	s4.sin_family = AF_INET;
	inet_pton(AF_INET, "10.1.2.3", &s4.sin_addr);
	T_INTEQ(ipaddr_from_sockaddr(&b, (struct sockaddr *)&s4), 0);
	T_CHECK(ipaddr_equal(&a, &b), "from_sockaddr mapped != plain");
	t_end();

	t_begin("ipaddr_equal different families and values");
	ipaddr_parse(&a, "::1");
	ipaddr_parse(&b, "127.0.0.1");
	T_CHECK(!ipaddr_equal(&a, &b), "::1 == 127.0.0.1");
	ipaddr_parse(&a, "127.0.0.2");
	T_CHECK(!ipaddr_equal(&a, &b), "127.0.0.2 == 127.0.0.1");
	t_end();
}

/* test_buf - append, consume, free */
static void
test_buf(void)
{
	struct buf b = {0};
	int i;

	t_begin("buf append/consume");
	for (i = 0; i < 1000; i++)
		buf_append(&b, "abc", 3);
	T_INTEQ(b.len, 3000);
	T_CHECK(b.cap >= b.len, "cap %zu < len %zu", b.cap, b.len);
	buf_consume(&b, 2);
	T_INTEQ(b.len, 2998);
	T_CHECK(b.data[0] == 'c' && b.data[1] == 'a', "front wrong");
	buf_consume(&b, 5000);
	T_INTEQ(b.len, 0);
	buf_free(&b);
	T_CHECK(b.data == NULL && b.cap == 0, "buf_free left storage");
	t_end();
}

/* sid_cmp - qsort on 8-byte ids */
static int
sid_cmp(const void *a, const void *b)
{
	return memcmp(a, b, 8);
}

/* test_session_id - 100000 ids: unique, 5 chars of the alphabet */
static void
test_session_id(void)
{
	enum { N = 100000 };
	char(*ids)[8] = xcalloc(N, 8);
	char again[8];
	int i, bad = 0, dups = 0, first_bad = -1;

	for (i = 0; i < N; i++)
		util_session_id((uint64_t)i + 1, ids[i]);
	util_session_id(1, again);

	t_begin("session id alphabet and length");
	for (i = 0; i < N; i++) {
		const char *s = ids[i];
		size_t j;

		if (strlen(s) != 5) {
			bad++;
		} else {
			for (j = 0; j < 5; j++)
				if (!strchr("0123456789ABCDEFGHJKLMNPQRSTUVWXY"
				            "Z",
				            s[j]) ||
				    s[j] == '\0')
					bad++;
		}
		if (bad && first_bad < 0)
			first_bad = i;
	}
	T_INTEQ(bad, 0);
	if (first_bad >= 0)
		T_CHECK(0, "first bad id \"%s\"", ids[first_bad]);
	t_end();

	t_begin("session id stable for one counter");
	T_STREQ(again, ids[0]);
	t_end();

	t_begin("session ids unique over 100000");
	qsort(ids, N, 8, sid_cmp);
	for (i = 1; i < N; i++)
		if (memcmp(ids[i - 1], ids[i], 8) == 0)
			dups++;
	T_INTEQ(dups, 0);
	t_end();
	free(ids);
}

/* test_strings - util_strcaseeq, util_lowercase */
static void
test_strings(void)
{
	char s[] = "MiXeD.Example.COM";

	t_begin("util_strcaseeq");
	T_CHECK(util_strcaseeq("Example.COM", "example.com"), "case");
	T_CHECK(!util_strcaseeq("example.com", "example.co"), "prefix");
	T_CHECK(!util_strcaseeq(NULL, "x"), "NULL vs x");
	T_CHECK(util_strcaseeq(NULL, NULL), "NULL vs NULL");
	t_end();

	t_begin("util_lowercase");
	util_lowercase(s);
	T_STREQ(s, "mixed.example.com");
	t_end();
}

/* test_kv_escape - the decision log's value escaping */
static void
test_kv_escape(void)
{
	static const struct {
		const char *name;
		const char *in;
		size_t outlen;
		const char *want;
	} cases[] = {
	        {"plain", "mail.example.com", 64, "mail.example.com"},
	        {"empty", "", 64, "-"},
	        {"NULL", NULL, 64, "-"},
	        {"space quoted", "a b", 64, "\"a b\""},
	        {"equals quoted", "k=v", 64, "\"k=v\""},
	        {"quote escaped and quoted", "say \"hi\"", 64,
	         "\"say \\x22hi\\x22\""},
	        {"lone quote", "a\"b", 64, "\"a\\x22b\""},
	        {"backslash", "a\\b", 64, "a\\x5cb"},
	        {"CRLF", "evil\r\nid=x", 64, "\"evil\\x0d\\x0aid=x\""},
	        {"tab", "a\tb", 64, "a\\x09b"},
	        {"NUL-free control", "\x01\x1f\x7f", 64, "\\x01\\x1f\\x7f"},
	        {"non-ASCII", "caf\xc3\xa9", 64, "caf\\xc3\\xa9"},
	        {"angle brackets kept", "<a@b>", 64, "<a@b>"},
	        {"truncated plain", "abcdefgh", 5, "abcd"},
	        {"truncated keeps escape whole", "ab\x01", 6, "ab"},
	        {"truncated quoted keeps quotes", "a b c d", 6, "\"a b\""},
	        {"outlen 1", "abc", 1, ""},
	};
	char out[64];
	char name[96];
	size_t i;

	for (i = 0; i < ARRAY_LEN(cases); i++) {
		snprintf(name, sizeof(name), "log_kv_escape %s", cases[i].name);
		t_begin(name);
		memset(out, 'Z', sizeof(out));
		log_kv_escape(out, cases[i].outlen, cases[i].in);
		T_STREQ(out, cases[i].want);
		T_CHECK(strlen(out) < cases[i].outlen, "overflow: %zu >= %zu",
		        strlen(out), cases[i].outlen);
		t_end();
	}
}

/* test_now_ms - monotonic */
static void
test_now_ms(void)
{
	uint64_t a = util_now_ms(), b = util_now_ms();

	t_begin("util_now_ms monotonic");
	T_CHECK(b >= a, "went back: %llu < %llu", (unsigned long long)b,
	        (unsigned long long)a);
	T_CHECK(a > 0, "zero clock");
	t_end();
}

/* capture_start - send stderr to a fresh temp file; returns the old fd */
static int
capture_start(char *path, size_t len)
{
	int fd, saved;

	snprintf(path, len, "/tmp/test_util_log.XXXXXX");
	fd = mkstemp(path);
	if (fd < 0)
		return -1;
	fflush(stderr);
	saved = dup(2);
	dup2(fd, 2);
	close(fd);
	return saved;
}

/* capture_end - restore stderr and read what was written (static) */
static const char *
capture_end(int saved, const char *path)
{
	static char text[4096];
	FILE *f;
	size_t n = 0;

	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	f = fopen(path, "r");
	if (f != NULL) {
		n = fread(text, 1, sizeof(text) - 1, f);
		fclose(f);
	}
	text[n] = '\0';
	unlink(path);
	return text;
}

/* test_log_lines - "TIMESTAMP mailmoat[pid]: LEVEL message" on stderr */
static void
test_log_lines(void)
{
	char path[64], want[128];
	const char *got, *p;
	int saved;

	t_begin("log line format on stderr");
	log_open(false, false);
	saved = capture_start(path, sizeof(path));
	T_CHECK(saved >= 0, "capture");
	if (saved < 0) {
		t_end();
		return;
	}
	log_info("hello %d", 42);
	log_debug("not shown when not verbose");
	log_warn("two\nlines\r");
	log_open(false, true);
	log_debug("shown when verbose");
	log_open(false, false);
	got = capture_end(saved, path);
	/* 2026-11-22T19:16:15.123Z mailmoat[1234]: INFO hello 42 */
	T_CHECK(strlen(got) > 25 && got[4] == '-' && got[10] == 'T' &&
	                got[23] == 'Z' && got[24] == ' ',
	        "timestamp: %s", got);
	snprintf(want, sizeof(want), "Z mailmoat[%ld]: INFO hello 42\n",
	         (long)getpid());
	T_CHECK(strstr(got, want) != NULL, "got %s want ...%s", got, want);
	T_CHECK(strstr(got, "not shown") == NULL, "debug shown: %s", got);
	T_CHECK(strstr(got, "DEBUG shown when verbose\n") != NULL,
	        "verbose debug missing: %s", got);
	T_CHECK(strstr(got, "WARN two?lines?\n") != NULL,
	        "control chars not replaced: %s", got);
	for (p = got, saved = 0; *p; p++)
		saved += *p == '\n';
	T_INTEQ(saved, 3);
	t_end();
}

/* run_child - fork, run fn in the child with stderr closed, wait */
static int
run_child(void (*fn)(void))
{
	int status = 0;
	pid_t pid;

	fflush(stdout); /* the child's exit() must not print our buffer */
	pid = fork();

	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(null, 2);
		fn();
		_exit(0);
	}
	waitpid(pid, &status, 0);
	return status;
}

/* child_fatal - log_fatal must exit 1 */
static void
child_fatal(void)
{
	log_fatal("bad config %s", "x");
}

/* child_panic - log_panic must abort */
static void
child_panic(void)
{
	signal(SIGABRT, SIG_DFL);
	log_panic("invariant");
}

/* child_oom - xmalloc must not return on exhaustion */
static void
child_oom(void)
{
	volatile size_t huge = (size_t)1 << 46; /* 64 TiB */
	void *p = xmalloc(huge);

	free(p);
}

/* test_log_exits - log_fatal, log_panic, xmalloc failure */
static void
test_log_exits(void)
{
	int st;

	t_begin("log_fatal exits 1");
	st = run_child(child_fatal);
	T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %#x", st);
	t_end();
	t_begin("log_panic aborts");
	st = run_child(child_panic);
	T_CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status %#x", st);
	t_end();
	t_begin("xmalloc never returns NULL (does not return on failure)");
	st = run_child(child_oom);
	T_CHECK(!(WIFEXITED(st) && WEXITSTATUS(st) == 0), "returned");
	t_end();
}

int
main(void)
{
	test_sockaddr_parse();
	test_ipaddr();
	test_buf();
	test_session_id();
	test_strings();
	test_kv_escape();
	test_now_ms();
	test_log_lines();
	test_log_exits();
	return t_exit();
}
