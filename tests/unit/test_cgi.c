/*
 * test_cgi.c - the web UI's CGI library (webui-cgi/cgi.c): query and form
 * parsing, cookies, escaping, PBKDF2 vectors, password hashes, sessions,
 * CSRF tokens, the login rate limit, multipart streaming, the SVG chart.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cgi.h"
#include "t.h"

/* capture - run fn with cgi_out pointed at a memory stream */
static char *
capture(void (*fn)(void *), void *arg)
{
	char *p = NULL;
	size_t n = 0;

	cgi_out = open_memstream(&p, &n);
	fn(arg);
	fclose(cgi_out);
	cgi_out = NULL;
	return p;
}

static void
esc_fn(void *arg)
{
	cgi_html(arg);
}

/* test_parse - urlencoded forms and query strings */
static void
test_parse(void)
{
	struct cgi_kv kv[4];
	char s1[] = "a=1&b=x+y%21&c&d=%3Cimg%3E";
	char s2[] = "a=1&b=2&c=3&d=4&e=5";
	char s3[] = "a=%zz";
	char s4[] = "a=%00b";
	char s5[] = "";
	int n;

	t_begin("cgi: urlencoded form parsed, decoded");
	n = cgi_parse_urlencoded(s1, kv, 4);
	T_INTEQ(n, 4);
	T_STREQ(cgi_kv_get(kv, n, "a"), "1");
	T_STREQ(cgi_kv_get(kv, n, "b"), "x y!");
	T_STREQ(cgi_kv_get(kv, n, "c"), "");
	T_STREQ(cgi_kv_get(kv, n, "d"), "<img>");
	T_CHECK(cgi_kv_get(kv, n, "z") == NULL, "absent key found");
	t_end();
	t_begin("cgi: too many fields, bad escapes and NUL refused");
	T_INTEQ(cgi_parse_urlencoded(s2, kv, 4), -1);
	T_INTEQ(cgi_parse_urlencoded(s3, kv, 4), -1);
	T_INTEQ(cgi_parse_urlencoded(s4, kv, 4), -1);
	T_INTEQ(cgi_parse_urlencoded(s5, kv, 4), 0);
	t_end();
}

/* test_cookie - the Cookie: header */
static void
test_cookie(void)
{
	char v[80];

	t_begin("cgi: cookie found among others, exact name");
	T_INTEQ(cgi_cookie_get("a=1; mmsid=abc; b=2", "mmsid", v, sizeof(v)),
	        0);
	T_STREQ(v, "abc");
	T_INTEQ(cgi_cookie_get("xmmsid=1", "mmsid", v, sizeof(v)), -1);
	T_INTEQ(cgi_cookie_get("mmsid=zz", "mmsid", v, sizeof(v)), 0);
	T_STREQ(v, "zz");
	T_INTEQ(cgi_cookie_get("", "mmsid", v, sizeof(v)), -1);
	T_INTEQ(cgi_cookie_get("mmsid=0123456789", "mmsid", v, 5), -1);
	t_end();
}

/* test_escape - HTML escaping of hostile text */
static void
test_escape(void)
{
	char *s;
	char u[64];

	t_begin("cgi: HTML escaping of a hostile HELO");
	s = capture(esc_fn, "<img src=x onerror=alert(1)>&\"'\x01");
	T_STREQ(s, "&lt;img src=x onerror=alert(1)&gt;&amp;&quot;&#39;?");
	free(s);
	cgi_url_encode("a b&c<", u, sizeof(u));
	T_STREQ(u, "a%20b%26c%3C");
	t_end();
}

/* test_pbkdf2 - RFC 7914 section 11 vectors */
static void
test_pbkdf2(void)
{
	uint8_t dk[64];
	char hx[129];

	t_begin("cgi: PBKDF2-HMAC-SHA256 vectors (RFC 7914)");
	cgi_pbkdf2_sha256("passwd", 6, (const uint8_t *)"salt", 4, 1, dk, 64);
	cgi_hex(dk, 64, hx);
	T_STREQ(hx, "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57"
	            "c20dacbc49ca9cccf179b645991664b39d77ef317c71b845b1e30bd5"
	            "09112041d3a19783");
	cgi_pbkdf2_sha256("Password", 8, (const uint8_t *)"NaCl", 4, 80000, dk,
	                  64);
	cgi_hex(dk, 64, hx);
	T_STREQ(hx, "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff0887"
	            "6b34ab56a1d425a1225833549adb841b51c9b3176a272bdebba1d078"
	            "478f62b397f33c8d");
	t_end();
}

/* test_password - hashes, salts, plain-text migration */
static void
test_password(const char *dir)
{
	char h1[256], h2[256], path[512], line[256];
	FILE *f;

	t_begin("cgi: password hash salted, verified, wrong one refused");
	cgi_hash_password("s3cret pw", 1000, h1, sizeof(h1));
	cgi_hash_password("s3cret pw", 1000, h2, sizeof(h2));
	T_CHECK(strncmp(h1, "pbkdf2-sha256$1000$", 19) == 0, "%s", h1);
	T_CHECK(strcmp(h1, h2) != 0, "same salt twice");
	T_CHECK(cgi_check_password("s3cret pw", h1), "right one refused");
	T_CHECK(!cgi_check_password("s3cret pX", h1), "wrong one taken");
	T_CHECK(!cgi_check_password("s3cret pw", "s3cret pw"), "plain taken");
	T_CHECK(!cgi_check_password("x", "pbkdf2-sha256$0$00$00"), "bad");
	t_end();

	t_begin("cgi: stored line parsed; absurd iteration counts refused");
	{
		struct cgi_pwhash h;
		char big[300];

		T_CHECK(cgi_parse_password(h1, &h) == 0 && h.iter == 1000 &&
		                h.saltlen == 16,
		        "%s", h1);
		/* A line asking for 5,000,000 rounds would hold a login
		 * (and the fuzzer) for many seconds. */
		snprintf(big, sizeof(big), "pbkdf2-sha256$5000000$%s", h1 + 19);
		T_CHECK(cgi_parse_password(big, &h) < 0, "%s", big);
		T_CHECK(cgi_parse_password("pbkdf2-sha256$+100$00$00", &h) < 0,
		        "sign taken");
		T_CHECK(cgi_parse_password("pbkdf2-sha256$100$0$00", &h) < 0,
		        "odd salt taken");
	}
	t_end();

	t_begin("cgi: plain-text first-boot password migrated to PBKDF2");
	snprintf(path, sizeof(path), "%s/admin-password", dir);
	setenv("MAILMOAT_ADMIN_PASSWORD", path, 1);
	f = fopen(path, "w");
	fputs("Abc123plain\n", f);
	fclose(f);
	T_CHECK(!cgi_password_verify("wrong"), "wrong plain taken");
	T_CHECK(cgi_password_verify("Abc123plain"), "plain refused");
	cgi_read_file(path, line, sizeof(line));
	T_CHECK(strncmp(line, "pbkdf2-sha256$100000$", 21) == 0, "%s", line);
	T_CHECK(cgi_password_verify("Abc123plain"), "hashed refused");
	T_CHECK(!cgi_password_verify("Abc123plaiN"), "hashed wrong taken");
	T_INTEQ(cgi_password_set("new password"), 0);
	T_CHECK(cgi_password_verify("new password"), "new refused");
	T_CHECK(!cgi_password_verify("Abc123plain"), "old still taken");
	t_end();
}

/* test_session - sessions, CSRF tokens, rate limit */
static void
test_session(void)
{
	char a[CGI_TOKEN_HEX + 1], b[CGI_TOKEN_HEX + 1];
	char ca[CGI_TOKEN_HEX + 1], cb[CGI_TOKEN_HEX + 1];
	struct cgi_req r;
	int i;

	t_begin("cgi: sessions random, valid until ended");
	T_INTEQ(cgi_session_new(a), 0);
	T_INTEQ(cgi_session_new(b), 0);
	T_INTEQ(strlen(a), CGI_TOKEN_HEX);
	T_CHECK(strcmp(a, b) != 0, "two equal tokens");
	T_CHECK(cgi_session_valid(a), "new session invalid");
	T_CHECK(!cgi_session_valid("00"), "short token valid");
	T_CHECK(!cgi_session_valid("../../etc/passwd"), "path valid");
	a[0] = a[0] == 'a' ? 'b' : 'a';
	T_CHECK(!cgi_session_valid(a), "changed token valid");
	cgi_session_end(b);
	T_CHECK(!cgi_session_valid(b), "ended session valid");
	t_end();

	t_begin("cgi: CSRF token bound to the session");
	cgi_csrf_token(a, ca);
	cgi_csrf_token(b, cb);
	T_INTEQ(strlen(ca), CGI_TOKEN_HEX);
	T_CHECK(strcmp(ca, cb) != 0, "same token for two sessions");
	memset(&r, 0, sizeof(r));
	snprintf(r.session, sizeof(r.session), "%s", a);
	snprintf(r.csrf, sizeof(r.csrf), "%s", ca);
	T_CHECK(cgi_csrf_ok(&r, ca), "right token refused");
	T_CHECK(!cgi_csrf_ok(&r, cb), "other session's token taken");
	T_CHECK(!cgi_csrf_ok(&r, NULL), "no token taken");
	T_CHECK(!cgi_csrf_ok(&r, ""), "empty token taken");
	r.session[0] = '\0';
	T_CHECK(!cgi_csrf_ok(&r, ca), "token without session taken");
	t_end();

	t_begin("cgi: login failures rate limited per address");
	for (i = 0; i < CGI_LOGIN_FAILS; i++) {
		T_CHECK(!cgi_login_blocked("192.0.2.7"), "blocked after %d", i);
		cgi_login_failed("192.0.2.7");
	}
	T_CHECK(cgi_login_blocked("192.0.2.7"), "not blocked");
	T_CHECK(!cgi_login_blocked("192.0.2.8"), "other address blocked");
	cgi_login_ok("192.0.2.7");
	T_CHECK(!cgi_login_blocked("192.0.2.7"), "still blocked");
	t_end();
}

struct mpt {
	char log[4096];
};

static int
mp_begin(void *arg, const char *name, const char *fn)
{
	struct mpt *m = arg;

	snprintf(m->log + strlen(m->log), sizeof(m->log) - strlen(m->log),
	         "[%s|%s:", name, fn);
	return strcmp(name, "evil") == 0 ? -1 : 0;
}

static int
mp_data(void *arg, const char *p, size_t n)
{
	struct mpt *m = arg;
	size_t l = strlen(m->log);

	if (l + n + 1 < sizeof(m->log)) {
		memcpy(m->log + l, p, n);
		m->log[l + n] = '\0';
	}
	return 0;
}

static int
mp_end(void *arg)
{
	struct mpt *m = arg;

	strcat(m->log, "]");
	return 0;
}

/* mp_run - body through cgi_multipart via a pipe */
static int
mp_run(const char *body, size_t n, uint64_t max, struct mpt *m, char *err)
{
	struct cgi_mp_ops ops = {mp_begin, mp_data, mp_end, m};
	char path[] = "/tmp/test_cgi_mpXXXXXX";
	int fd = mkstemp(path), rc;

	unlink(path);
	if (write(fd, body, n) != (ssize_t)n)
		return -2;
	lseek(fd, 0, SEEK_SET);
	m->log[0] = '\0';
	rc = cgi_multipart(fd, "XyZ", max, &ops, err, 128);
	close(fd);
	return rc;
}

/* test_multipart - fields, a file with CRLF and a boundary look-alike */
static void
test_multipart(void)
{
	static const char body[] =
	        "--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n"
	        "tok\r\n--XyZ\r\nContent-Disposition: form-data; "
	        "name=\"image\";"
	        " filename=\"a.img\"\r\nContent-Type: application/octet-stream"
	        "\r\n\r\nline1\r\n--XY not it\r\n\r\n--XyZ--\r\n";
	static const char evil[] =
	        "--XyZ\r\nContent-Disposition: form-data; name=\"evil\"\r\n\r\n"
	        "x\r\n--XyZ--\r\n";
	struct mpt m;
	char err[128];
	char *big;
	size_t i;

	t_begin("cgi: multipart fields and file streamed");
	T_INTEQ(mp_run(body, sizeof(body) - 1, 1 << 20, &m, err), 0);
	T_STREQ(m.log, "[csrf|:tok][image|a.img:line1\r\n--XY not it\r\n]");
	t_end();
	t_begin("cgi: multipart refused: truncated, over size, bad part");
	T_INTEQ(mp_run(body, sizeof(body) - 12, 1 << 20, &m, err), -1);
	T_INTEQ(mp_run(body, sizeof(body) - 1, 100, &m, err), -1);
	T_INTEQ(mp_run(evil, sizeof(evil) - 1, 1 << 20, &m, err), -1);
	T_INTEQ(mp_run("garbage", 7, 1 << 20, &m, err), -1);
	t_end();
	t_begin("cgi: multipart part larger than the buffer");
	big = malloc(300000);
	i = (size_t)sprintf(big, "--XyZ\r\nContent-Disposition: form-data; "
	                         "name=\"f\"; filename=\"b\"\r\n\r\n");
	memset(big + i, 'q', 200000);
	i += 200000;
	i += (size_t)sprintf(big + i, "\r\n--XyZ--\r\n");
	{
		struct cgi_mp_ops ops = {mp_begin, mp_data, mp_end, &m};
		char path[] = "/tmp/test_cgi_mpXXXXXX";
		int fd = mkstemp(path);

		unlink(path);
		T_CHECK(write(fd, big, i) == (ssize_t)i, "write");
		lseek(fd, 0, SEEK_SET);
		m.log[0] = '\0';
		T_INTEQ(cgi_multipart(fd, "XyZ", 1 << 20, &ops, err, 128), 0);
		close(fd);
	}
	free(big);
	t_end();
}

static void
chart_label(int i, char *buf, size_t len)
{
	snprintf(buf, len, "<%d>", i);
}

static void
chart_fn(void *arg)
{
	static const uint64_t a[4] = {1, 0, 3, 0}, b[4] = {1, 2, 0, 0};
	const uint64_t *const v[2] = {a, b};
	const char *const names[2] = {"accept", "<script>"};
	const char *const col[2] = {"#4a4", "#c44"};

	cgi_svg_chart("last <24h>", 4, 2, v, names, col, 2, chart_label);
}

/* count - occurrences of needle in s */
static int
count(const char *s, const char *needle)
{
	int n = 0;

	while ((s = strstr(s, needle))) {
		n++;
		s++;
	}
	return n;
}

/* test_chart - the SVG: one rect per non-zero value, escaped text */
static void
test_chart(void)
{
	char *s = capture(chart_fn, NULL);

	t_begin("cgi: SVG chart bars, scale and escaping");
	T_CHECK(strncmp(s, "<svg ", 5) == 0, "%.20s", s);
	T_INTEQ(count(s, "<rect x="), 4 + 2); /* 4 bars + 2 legend boxes */
	T_CHECK(strstr(s, "(max 3)") != NULL, "max");
	T_CHECK(strstr(s, "<script>") == NULL, "unescaped name");
	T_CHECK(strstr(s, "&lt;script&gt;: 2") != NULL, "series title");
	T_CHECK(strstr(s, "&lt;0&gt;") && strstr(s, "&lt;2&gt;") &&
	                !strstr(s, "&lt;1&gt;"),
	        "labels");
	T_CHECK(strstr(s, "</svg>") != NULL, "end");
	free(s);
	t_end();
}

struct jlog {
	char text[512];
};

static void
json_fn(void *arg, int depth, char *const *path, const char *val, size_t n,
        char kind)
{
	struct jlog *j = arg;
	char v[64];
	int i;

	for (i = 0; i < depth; i++)
		snprintf(j->text + strlen(j->text),
		         sizeof(j->text) - strlen(j->text), "%s%s",
		         i ? "." : "", path[i]);
	if (kind == 's')
		cgi_json_unquote(val, n, v, sizeof(v));
	else
		snprintf(v, sizeof(v), "%.*s", (int)n, val);
	snprintf(j->text + strlen(j->text), sizeof(j->text) - strlen(j->text),
	         "=%c:%s;", kind, v);
}

/* test_json - the walker over a stats-like object */
static void
test_json(void)
{
	struct jlog j = {""};

	t_begin("cgi: JSON walk of stats sections, bad JSON refused");
	T_INTEQ(cgi_json_walk("{\"a\":1,\"r\":{\"x y\":2},\"d\":{\"z\":"
	                      "{\"ok\":true,\"s\":\"q\\\"<\"}},\"l\":[3,null],"
	                      "\"e\":{}}",
	                      json_fn, &j),
	        0);
	T_STREQ(j.text, "a=n:1;r.x y=n:2;d.z.ok=b:true;d.z.s=s:q\"<;l.0=n:3;"
	                "l.1=z:null;");
	T_INTEQ(cgi_json_walk("{\"a\":", json_fn, &j), -1);
	T_INTEQ(cgi_json_walk("{\"a\" 1}", json_fn, &j), -1);
	T_INTEQ(cgi_json_walk("[[[[[[[[[[1]]]]]]]]]]", json_fn, &j), -1);
	T_INTEQ(cgi_json_num("{\"uptime\":42}", "uptime"), 42);
	T_CHECK(cgi_ctl_word("127.0.0.1") && !cgi_ctl_word("a b") &&
	                !cgi_ctl_word("a\nstats") && !cgi_ctl_word(""),
	        "ctl word");
	t_end();
}

int
main(void)
{
	char dir[] = "/tmp/test_cgi_XXXXXX";
	char cmd[128];

	if (!mkdtemp(dir))
		return 1;
	setenv("MAILMOAT_WEBUI_DIR", dir, 1);
	test_parse();
	test_cookie();
	test_escape();
	test_pbkdf2();
	test_password(dir);
	test_session();
	test_multipart();
	test_chart();
	test_json();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		return 1;
	return t_exit();
}
