/*
 * test_list.c - list.c: CIDR boundaries for IPv4 and IPv6 (/0, /32, /64,
 * /128), v4-mapped addresses, "@domain" and full-address matching,
 * add/del, save + reload round trip, bad lines with their line numbers,
 * and a few thousand nets.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy.h"
#include "t.h"

static char tmpdir[] = "/tmp/test_list.XXXXXX";

/* write_file - path in tmpdir with text; returns the full path (static) */
static const char *
write_file(const char *name, const char *text)
{
	static char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	if (f == NULL) {
		perror(path);
		exit(2);
	}
	fputs(text, f);
	fclose(f);
	return path;
}

/* ip_in - does l match the address text? */
static bool
ip_in(const struct list *l, const char *text)
{
	struct ipaddr ip;

	if (ipaddr_parse(&ip, text) != 0) {
		printf("# bad test address %s\n", text);
		return false;
	}
	return list_match_ip(l, &ip);
}

/* list_of - a list from entries (one per array element) */
static struct list *
list_of(const char *const *entries)
{
	struct list *l = list_new();

	for (; *entries; entries++)
		if (list_add(l, *entries) != 0)
			printf("# list_add(%s) failed\n", *entries);
	return l;
}

/* test_cidr - match tables per list */
static void
test_cidr(void)
{
	static const struct {
		const char *name;
		const char *entries[4];
		const char *ip;
		bool want;
	} cases[] = {
	        {"v4 /32 exact", {"192.0.2.1"}, "192.0.2.1", true},
	        {"v4 /32 neighbour", {"192.0.2.1"}, "192.0.2.2", false},
	        {"v4 /32 written", {"192.0.2.1/32"}, "192.0.2.1", true},
	        {"v4 /24 first", {"10.1.2.0/24"}, "10.1.2.0", true},
	        {"v4 /24 last", {"10.1.2.0/24"}, "10.1.2.255", true},
	        {"v4 /24 below", {"10.1.2.0/24"}, "10.1.1.255", false},
	        {"v4 /24 above", {"10.1.2.0/24"}, "10.1.3.0", false},
	        {"v4 /8 host bits cleared", {"10.9.9.9/8"}, "10.200.0.1", true},
	        {"v4 /31", {"10.0.0.2/31"}, "10.0.0.3", true},
	        {"v4 /31 out", {"10.0.0.2/31"}, "10.0.0.4", false},
	        {"v4 /0 matches all v4", {"0.0.0.0/0"}, "203.0.113.9", true},
	        {"v4 /0 not v6", {"0.0.0.0/0"}, "2001:db8::1", false},
	        {"v6 /128 exact", {"2001:db8::1"}, "2001:db8::1", true},
	        {"v6 /128 neighbour",
	         {"2001:db8::1/128"},
	         "2001:db8::2",
	         false},
	        {"v6 /64 inside",
	         {"2001:db8:1:2::/64"},
	         "2001:db8:1:2:ffff:ffff:ffff:ffff",
	         true},
	        {"v6 /64 outside",
	         {"2001:db8:1:2::/64"},
	         "2001:db8:1:3::",
	         false},
	        {"v6 /0 matches all v6", {"::/0"}, "2001:db8::1", true},
	        {"v6 /0 not v4", {"::/0"}, "192.0.2.1", false},
	        {"v6 /127 odd prefix", {"2001:db8::/127"}, "2001:db8::1", true},
	        {"v6 /127 out", {"2001:db8::/127"}, "2001:db8::2", false},
	        {"v4-mapped entry matches v4",
	         {"::ffff:192.0.2.7"},
	         "192.0.2.7",
	         true},
	        {"v4-mapped net /120 is v4 /24",
	         {"::ffff:192.0.2.0/120"},
	         "192.0.2.200",
	         true},
	        {"v4-mapped client matches v4 entry",
	         {"192.0.2.0/24"},
	         "::ffff:192.0.2.9",
	         true},
	        {"several prefixes",
	         {"10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32"},
	         "192.168.1.77",
	         true},
	        {"several prefixes miss",
	         {"10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32"},
	         "192.168.2.1",
	         false},
	        {"empty list", {NULL}, "10.0.0.1", false},
	};
	char name[128];
	size_t i;

	for (i = 0; i < ARRAY_LEN(cases); i++) {
		struct list *l = list_of(cases[i].entries);

		snprintf(name, sizeof(name), "cidr %s", cases[i].name);
		t_begin(name);
		T_CHECK(ip_in(l, cases[i].ip) == cases[i].want,
		        "%s: got %d, want %d", cases[i].ip, !cases[i].want,
		        cases[i].want);
		t_end();
		list_free(l);
	}
}

/* test_bad_entries - list_add refuses */
static void
test_bad_entries(void)
{
	static const char *const bad[] = {
	        "10.0.0.0/33",
	        "2001:db8::/129",
	        "10.0.0.0/",
	        "10.0.0.0/x",
	        "10.0.0.0/-1",
	        "1.2.3",
	        "example.com",
	        "@",
	        "user@",
	        "@bad domain",
	        "@exa_mple..com",
	        "us er@example.com",
	        "a@b@",
	        "::ffff:1.2.3.4/95",
	        "",
	        "@.example.com",
	};
	struct list *l = list_new();
	char name[96];
	size_t i;

	for (i = 0; i < ARRAY_LEN(bad); i++) {
		snprintf(name, sizeof(name), "list_add refuses \"%s\"", bad[i]);
		t_begin(name);
		T_INTEQ(list_add(l, bad[i]), -EINVAL);
		t_end();
	}
	list_free(l);
}

/* test_addresses - full addresses and @domain */
static void
test_addresses(void)
{
	static const char *const entries[] = {"Alice@Example.COM",
	                                      "@Example.org",
	                                      "bob@sub.example.net", NULL};
	struct list *l = list_of(entries);

	t_begin("addr exact, case-insensitive");
	T_CHECK(list_match_addr(l, "alice@example.com"), "alice");
	T_CHECK(list_match_addr(l, "ALICE@EXAMPLE.COM"), "ALICE");
	t_end();
	t_begin("addr other local part not matched");
	T_CHECK(!list_match_addr(l, "alice2@example.com"), "alice2");
	T_CHECK(!list_match_addr(l, "mallory@example.com"), "mallory");
	t_end();
	t_begin("addr via @domain");
	T_CHECK(list_match_addr(l, "anyone@example.org"), "anyone");
	T_CHECK(list_match_addr(l, "X@EXAMPLE.ORG"), "X upper");
	t_end();
	t_begin("@domain is exact, not subdomains");
	T_CHECK(!list_match_addr(l, "a@sub.example.org"), "subdomain");
	T_CHECK(!list_match_addr(l, "a@example.org.evil"), "suffix");
	T_CHECK(!list_match_domain(l, "sub.example.org"), "domain subdomain");
	t_end();
	t_begin("list_match_domain");
	T_CHECK(list_match_domain(l, "example.org"), "example.org");
	T_CHECK(list_match_domain(l, "Example.ORG."), "rooted upper");
	T_CHECK(!list_match_domain(l, "example.com"),
	        "a full address does not list its domain");
	T_CHECK(!list_match_domain(l, ""), "empty");
	t_end();
	t_begin("addr without @ or empty");
	T_CHECK(!list_match_addr(l, "example.org"), "no @");
	T_CHECK(!list_match_addr(l, ""), "empty");
	T_CHECK(!list_match_addr(l, NULL), "NULL");
	t_end();
	t_begin("ip lookups on an address-only list");
	T_CHECK(!ip_in(l, "10.0.0.1"), "ip matched");
	t_end();
	list_free(l);
}

/* collect_cb - append entry text plus '\n' to the buf in arg */
static void
collect_cb(const char *text, void *arg)
{
	buf_append(arg, text, strlen(text));
	buf_append(arg, "\n", 1);
}

/* dump - every entry of l, one per line, NUL-terminated in b */
static const char *
dump(const struct list *l, struct buf *b)
{
	b->len = 0;
	list_foreach(l, collect_cb, b);
	buf_append(b, "", 1);
	return b->data;
}

/* test_add_del - runtime changes */
static void
test_add_del(void)
{
	struct list *l = list_new();
	struct buf b = {0};

	t_begin("add, duplicate add, del");
	T_INTEQ(list_add(l, "192.0.2.0/24"), 0);
	T_INTEQ(list_add(l, "192.0.2.0/24"), 0);
	T_INTEQ(list_add(l, "192.0.2.9/24"), 0); /* same net */
	T_STREQ(dump(l, &b), "192.0.2.0/24\n");
	T_CHECK(ip_in(l, "192.0.2.5"), "added net");
	T_INTEQ(list_del(l, "192.0.2.0/24"), 0);
	T_CHECK(!ip_in(l, "192.0.2.5"), "deleted net still matches");
	T_INTEQ(list_del(l, "192.0.2.0/24"), -ENOENT);
	T_INTEQ(list_del(l, "nonsense"), -EINVAL);
	T_STREQ(dump(l, &b), "");
	t_end();

	t_begin("del one of two nets with the same prefix");
	list_add(l, "10.0.0.0/8");
	list_add(l, "11.0.0.0/8");
	T_INTEQ(list_del(l, "10.0.0.0/8"), 0);
	T_CHECK(!ip_in(l, "10.1.1.1"), "10/8 still matches");
	T_CHECK(ip_in(l, "11.1.1.1"), "11/8 lost");
	t_end();

	t_begin("add/del addresses and domains");
	T_INTEQ(list_add(l, "Spam@Example.com"), 0);
	T_INTEQ(list_add(l, "@example.net"), 0);
	T_CHECK(list_match_addr(l, "spam@example.com"), "address");
	T_CHECK(list_match_addr(l, "x@example.net"), "domain");
	T_INTEQ(list_del(l, "spam@EXAMPLE.com"), 0);
	T_INTEQ(list_del(l, "@EXAMPLE.NET"), 0);
	T_CHECK(!list_match_addr(l, "spam@example.com"), "address kept");
	T_CHECK(!list_match_addr(l, "x@example.net"), "domain kept");
	T_INTEQ(list_del(l, "@example.net"), -ENOENT);
	t_end();

	t_begin("v4-mapped add is the v4 entry");
	T_INTEQ(list_add(l, "::ffff:203.0.113.5"), 0);
	T_INTEQ(list_del(l, "203.0.113.5"), 0);
	t_end();
	buf_free(&b);
	list_free(l);
}

/* test_load - files: comments, blank lines, errors with line numbers */
static void
test_load(void)
{
	static const struct {
		const char *name;
		const char *text;
		const char *want_err; /* NULL: loads; "%s" is the path */
	} cases[] = {
	        {"comments and blanks",
	         "# allow list\n\n  10.0.0.0/8   # office\n\t@example.com\r\n"
	         "user#tag@example.org\n",
	         NULL},
	        {"bad line number", "10.0.0.1\n\n# x\nnot-an-entry\n",
	         "%s:4: bad entry \"not-an-entry\""},
	        {"bad prefix", "10.0.0.0/40\n",
	         "%s:1: bad entry \"10.0.0.0/40\""},
	        {"two entries on a line", "10.0.0.1 10.0.0.2\n",
	         "%s:1: bad entry \"10.0.0.1 10.0.0.2\""},
	        {"control chars shown as ?", "ok@example.com\nx\x01y\n",
	         "%s:2: bad entry \"x?y\""},
	        {"empty file", "", NULL},
	        {"byte order mark",
	         "\xef\xbb\xbf"
	         "10.0.0.1\n",
	         NULL},
	        {"long line",
	         "10.0.0.1\n"
	         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	         "x"
	         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	         "x"
	         "@example.com\n",
	         "%s:2: bad entry \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...\""},
	};
	char err[512], want[512], name[96];
	size_t i;

	for (i = 0; i < ARRAY_LEN(cases); i++) {
		const char *path = write_file("l.txt", cases[i].text);
		struct list *l;

		snprintf(name, sizeof(name), "list_load %s", cases[i].name);
		t_begin(name);
		err[0] = '\0';
		l = list_load(path, err, sizeof(err));
		if (cases[i].want_err == NULL) {
			T_CHECK(l != NULL, "load failed: %s", err);
		} else {
			T_CHECK(l == NULL, "loaded, want error");
			snprintf(want, sizeof(want), cases[i].want_err, path);
			T_STREQ(err, want);
		}
		if (i == 0 && l != NULL) {
			T_CHECK(ip_in(l, "10.2.3.4"), "10/8");
			T_CHECK(list_match_addr(l, "a@example.com"), "@dom");
			T_CHECK(list_match_addr(l, "user#tag@example.org"),
			        "'#' inside a word is not a comment");
		}
		list_free(l);
		t_end();
	}

	t_begin("list_load missing file");
	{
		char path[300];

		snprintf(path, sizeof(path), "%s/nope", tmpdir);
		T_CHECK(list_load(path, err, sizeof(err)) == NULL, "loaded");
		snprintf(want, sizeof(want),
		         "%s: cannot open: No such file or directory", path);
		T_STREQ(err, want);
	}
	t_end();
}

/* test_save_reload - list_save then list_load gives the same entries */
static void
test_save_reload(void)
{
	static const char *const entries[] = {
	        "10.0.0.0/8",  "192.0.2.1",     "2001:db8::/32",
	        "2001:db8::1", "a@example.com", "@example.org",
	        NULL};
	struct list *l = list_of(entries), *r;
	struct buf b1 = {0}, b2 = {0};
	char path[300], err[512];
	struct stat st;
	int rc;

	snprintf(path, sizeof(path), "%s/saved", tmpdir);
	write_file("saved", "old content that will go\n");
	t_begin("list_save + list_load round trip");
	rc = list_save(l, path);
	T_INTEQ(rc, 0);
	r = list_load(path, err, sizeof(err));
	T_CHECK(r != NULL, "reload: %s", err);
	if (r != NULL) {
		dump(l, &b1);
		T_STREQ(dump(r, &b2), b1.data);
		T_CHECK(ip_in(r, "2001:db8:ffff::1"), "v6 net after reload");
	}
	T_CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0644, "mode %o",
	        (unsigned)(st.st_mode & 0777));
	list_free(r);
	t_end();

	t_begin("list_save into a missing directory fails cleanly");
	snprintf(path, sizeof(path), "%s/no/such/dir/list", tmpdir);
	T_INTEQ(list_save(l, path), -ENOENT);
	t_end();

	t_begin("list_save leaves no temp files");
	{
		char cmd[400];

		snprintf(cmd, sizeof(cmd), "test -z \"$(ls %s | grep tmp)\"",
		         tmpdir);
		T_INTEQ(system(cmd), 0);
	}
	t_end();
	buf_free(&b1);
	buf_free(&b2);
	list_free(l);
}

/* test_many - 4096 nets of mixed prefixes still match exactly */
static void
test_many(void)
{
	struct list *l = list_new();
	char e[64];
	int i, miss = 0, false_hits = 0;

	for (i = 0; i < 4096; i++) {
		snprintf(e, sizeof(e), "10.%d.%d.0/24", i / 256, i % 256);
		list_add(l, e);
		snprintf(e, sizeof(e), "2001:db8:%x::/48", i);
		list_add(l, e);
	}
	t_begin("4096 v4 + 4096 v6 nets");
	for (i = 0; i < 4096; i++) {
		snprintf(e, sizeof(e), "10.%d.%d.77", i / 256, i % 256);
		miss += !ip_in(l, e);
		snprintf(e, sizeof(e), "2001:db8:%x:1::5", i);
		miss += !ip_in(l, e);
		snprintf(e, sizeof(e), "11.%d.%d.77", i / 256, i % 256);
		false_hits += ip_in(l, e);
	}
	T_INTEQ(miss, 0);
	T_INTEQ(false_hits, 0);
	t_end();
	list_free(l);
}

int
main(void)
{
	char cmd[128];

	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	test_cidr();
	test_bad_entries();
	test_addresses();
	test_add_del();
	test_load();
	test_save_reload();
	test_many();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", tmpdir);
	return t_exit();
}
