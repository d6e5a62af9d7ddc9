/*
 * cgi.c - shared helpers of the web UI CGI programs (see cgi.h).
 *
 * Exports everything in cgi.h.  Owns the request buffers of one CGI run
 * (a CGI process serves one request and exits).  State files: login
 * sessions (STATE/s-<sha256 of the token>: "EXPIRES\n"), failed-login
 * counters (STATE/f-<address>: "COUNT FIRST\n"), both in cgi_state_dir();
 * the admin password hash in cgi_password_path().  Nothing here runs a
 * shell; cgi_run execs an absolute path with a clean environment.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/md.h>
#include <mbedtls/sha256.h>

#include "cgi.h"
#include "proxy.h" /* MAILMOAT_VERSION */

FILE *cgi_out;

#define OUT (cgi_out ? cgi_out : stdout)

/* ---------------------------------------------------------------- paths */

/* cgi_conf_path - $MAILMOAT_CONF or CGI_ETC/mailmoat.conf */
const char *
cgi_conf_path(void)
{
	const char *p = getenv("MAILMOAT_CONF");

	return p && *p ? p : CGI_ETC "/mailmoat.conf";
}

/* cgi_state_dir - $MAILMOAT_WEBUI_DIR or /run/mailmoat-webui (created) */
const char *
cgi_state_dir(void)
{
	const char *p = getenv("MAILMOAT_WEBUI_DIR");

	if (!p || !*p)
		p = "/run/mailmoat-webui";
	mkdir(p, 0700);
	return p;
}

/* cgi_password_path - $MAILMOAT_ADMIN_PASSWORD or /data/etc/admin-password */
const char *
cgi_password_path(void)
{
	const char *p = getenv("MAILMOAT_ADMIN_PASSWORD");

	return p && *p ? p : "/data/etc/admin-password";
}

/* ------------------------------------------------------------- escaping */

/* cgi_html_n - write n bytes of s escaped (NUL bytes dropped) */
void
cgi_html_n(const char *s, size_t n)
{
	FILE *o = OUT;
	size_t i;

	for (i = 0; i < n; i++) {
		switch (s[i]) {
		case '&':
			fputs("&amp;", o);
			break;
		case '<':
			fputs("&lt;", o);
			break;
		case '>':
			fputs("&gt;", o);
			break;
		case '"':
			fputs("&quot;", o);
			break;
		case '\'':
			fputs("&#39;", o);
			break;
		case '\0':
			break;
		default:
			if ((unsigned char)s[i] < 0x20 && s[i] != '\n' &&
			    s[i] != '\t')
				fputc('?', o);
			else
				fputc(s[i], o);
		}
	}
}

/* cgi_html - write s to cgi_out with & < > " ' escaped */
void
cgi_html(const char *s)
{
	if (s)
		cgi_html_n(s, strlen(s));
}

/* cgi_url_encode - percent-encode s into out; truncates */
void
cgi_url_encode(const char *s, char *out, size_t len)
{
	size_t o = 0;

	for (; *s && o + 4 < len; s++) {
		unsigned char c = (unsigned char)*s;

		if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, len - o, "%%%02X", c);
	}
	out[o] = '\0';
}

/* cgi_error - send a Status: line and a plain-text reason; exits 0 */
void
cgi_error(int status, const char *reason)
{
	printf("Status: %d\r\nContent-Type: text/plain; charset=utf-8\r\n"
	       "Cache-Control: no-store\r\n\r\n%s\n",
	       status, reason);
	exit(0);
}

/* -------------------------------------------------------------- parsing */

/* hexval - value of a hex digit, -1 if it is not one */
static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* cgi_url_decode - decode %XX and '+' in place; -1 on a bad escape or NUL */
int
cgi_url_decode(char *s)
{
	char *o = s;
	int h, l;

	for (; *s; s++) {
		if (*s == '+') {
			*o++ = ' ';
		} else if (*s == '%') {
			h = hexval((unsigned char)s[1]);
			l = h < 0 ? -1 : hexval((unsigned char)s[2]);
			if (h < 0 || l < 0 || (h == 0 && l == 0))
				return -1;
			*o++ = (char)(h * 16 + l);
			s += 2;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
	return 0;
}

/* cgi_parse_urlencoded - split s in place into kv; count or -1 */
int
cgi_parse_urlencoded(char *s, struct cgi_kv *kv, int max)
{
	char *save = NULL, *tok, *eq;
	int n = 0;

	for (tok = strtok_r(s, "&", &save); tok;
	     tok = strtok_r(NULL, "&", &save)) {
		if (n == max)
			return -1;
		eq = strchr(tok, '=');
		if (eq)
			*eq++ = '\0';
		else
			eq = tok + strlen(tok);
		if (cgi_url_decode(tok) < 0 || cgi_url_decode(eq) < 0)
			return -1;
		kv[n].k = tok;
		kv[n].v = eq;
		n++;
	}
	return n;
}

/* cgi_kv_get - the first value named k, or NULL */
const char *
cgi_kv_get(const struct cgi_kv *kv, int n, const char *k)
{
	int i;

	for (i = 0; i < n; i++)
		if (strcmp(kv[i].k, k) == 0)
			return kv[i].v;
	return NULL;
}

/* cgi_cookie_get - value of cookie name in a Cookie: header; 0 or -1 */
int
cgi_cookie_get(const char *hdr, const char *name, char *out, size_t len)
{
	size_t nl = strlen(name), vl;
	const char *p = hdr, *v, *e;

	while (p && *p) {
		while (*p == ' ' || *p == ';')
			p++;
		e = strchr(p, ';');
		if (!e)
			e = p + strlen(p);
		if ((size_t)(e - p) > nl && strncmp(p, name, nl) == 0 &&
		    p[nl] == '=') {
			v = p + nl + 1;
			vl = (size_t)(e - v);
			while (vl && v[vl - 1] == ' ')
				vl--;
			if (vl >= len)
				return -1;
			memcpy(out, v, vl);
			out[vl] = '\0';
			return 0;
		}
		p = e;
	}
	return -1;
}

/* ---------------------------------------------------------------- files */

/* trim - strip leading and trailing blanks in place */
static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' ||
	                 e[-1] == '\r'))
		*--e = '\0';
	return s;
}

/* cgi_conf_get - value of key in a "key = value" file; 0 or -ENOENT */
int
cgi_conf_get(const char *path, const char *key, char *out, size_t len)
{
	char line[1024], *k, *v, *eq;
	FILE *f = fopen(path, "r");

	if (!f)
		return -ENOENT;
	while (fgets(line, sizeof(line), f)) {
		if ((v = strchr(line, '#')))
			*v = '\0';
		eq = strchr(line, '=');
		if (!eq)
			continue;
		*eq = '\0';
		k = trim(line);
		v = trim(eq + 1);
		if (!strcmp(k, key)) {
			snprintf(out, len, "%s", v);
			fclose(f);
			return 0;
		}
	}
	fclose(f);
	return -ENOENT;
}

/* cgi_read_file - first line of a small file into out; 0 or -ENOENT */
int
cgi_read_file(const char *path, char *out, size_t len)
{
	FILE *f = fopen(path, "r");

	if (!f)
		return -ENOENT;
	if (!fgets(out, (int)len, f))
		out[0] = '\0';
	fclose(f);
	out[strcspn(out, "\r\n")] = '\0';
	return 0;
}

/* cgi_row - one escaped table row */
void
cgi_row(const char *k, const char *v)
{
	fputs("<tr><th>", OUT);
	cgi_html(k);
	fputs("</th><td>", OUT);
	cgi_html(v);
	fputs("</td></tr>\n", OUT);
}

/* cgi_box_info - version, board and slot of the running box. */
void
cgi_box_info(struct cgi_box *b)
{
	if (cgi_read_file(CGI_ETC "/mailmoat/version", b->version,
	                  sizeof(b->version)))
		snprintf(b->version, sizeof(b->version), "%s",
		         MAILMOAT_VERSION);
	if (cgi_read_file(CGI_ETC "/mailmoat/board", b->board,
	                  sizeof(b->board)))
		snprintf(b->board, sizeof(b->board), "host");
	if (cgi_conf_get("/run/mailmoat-boot", "slot", b->slot,
	                 sizeof(b->slot)))
		snprintf(b->slot, sizeof(b->slot), "-");
}

/* cgi_write_atomic - write n bytes to path via temp + fsync + rename */
int
cgi_write_atomic(const char *path, const void *p, size_t n, int mode)
{
	char tmp[4096], dir[4096], *slash;
	int fd, dfd;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid()) >=
	    (int)sizeof(tmp))
		return -1;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (fd < 0)
		return -1;
	if (write(fd, p, n) != (ssize_t)n || fsync(fd) < 0) {
		close(fd);
		unlink(tmp);
		return -1;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		unlink(tmp);
		return -1;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash) {
		*slash = '\0';
		dfd = open(*dir ? dir : "/", O_RDONLY | O_DIRECTORY);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	return 0;
}

/* cgi_run - run argv with an empty environment, capture its output */
int
cgi_run(char *const argv[], char *out, size_t len)
{
	char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
	size_t got = 0;
	ssize_t n;
	int p[2], st, fd;
	pid_t pid;

	out[0] = '\0';
	fflush(NULL);
	if (pipe(p) < 0)
		return -1;
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0)
			dup2(fd, 0);
		dup2(p[1], 1);
		dup2(p[1], 2);
		close(p[0]);
		execve(argv[0], argv, envp);
		_exit(127);
	}
	close(p[1]);
	while ((n = read(p[0], out + got, len - 1 - got)) > 0) {
		got += (size_t)n;
		if (got == len - 1) {
			char sink[512];
			while (read(p[0], sink, sizeof(sink)) > 0)
				;
			break;
		}
	}
	out[got] = '\0';
	close(p[0]);
	if (waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* --------------------------------------------------------------- crypto */

/* cgi_random - n bytes from getrandom(); 0 or -1 */
int
cgi_random(void *p, size_t n)
{
	size_t got = 0;
	ssize_t r;

	while (got < n) {
		r = getrandom((char *)p + got, n - got, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		got += (size_t)r;
	}
	return 0;
}

/* cgi_hex - n bytes as lower-case hex into out (2n+1 bytes) */
void
cgi_hex(const void *p, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";
	const uint8_t *b = p;
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = d[b[i] >> 4];
		out[2 * i + 1] = d[b[i] & 15];
	}
	out[2 * n] = '\0';
}

/* unhex - 2n hex digits into n bytes; 0 or -1 */
static int
unhex(const char *s, uint8_t *out, size_t n)
{
	size_t i;
	int h, l;

	if (strlen(s) != 2 * n)
		return -1;
	for (i = 0; i < n; i++) {
		h = hexval((unsigned char)s[2 * i]);
		l = hexval((unsigned char)s[2 * i + 1]);
		if (h < 0 || l < 0)
			return -1;
		out[i] = (uint8_t)(h * 16 + l);
	}
	return 0;
}

/* cgi_pbkdf2_sha256 - PBKDF2-HMAC-SHA256 (RFC 8018 5.2); 0 or -1 */
int
cgi_pbkdf2_sha256(const char *pw, size_t pwlen, const uint8_t *salt,
                  size_t saltlen, unsigned iter, uint8_t *out, size_t outlen)
{
	const mbedtls_md_info_t *md =
	        mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
	mbedtls_md_context_t ctx;
	uint8_t u[32], t[32], ctr[4];
	uint32_t block = 1;
	unsigned i;
	size_t j, take;
	int rc = -1;

	if (md == NULL || iter == 0)
		return -1;
	mbedtls_md_init(&ctx);
	if (mbedtls_md_setup(&ctx, md, 1) != 0 ||
	    mbedtls_md_hmac_starts(&ctx, (const unsigned char *)pw, pwlen))
		goto done;
	while (outlen > 0) {
		ctr[0] = (uint8_t)(block >> 24);
		ctr[1] = (uint8_t)(block >> 16);
		ctr[2] = (uint8_t)(block >> 8);
		ctr[3] = (uint8_t)block;
		if (mbedtls_md_hmac_reset(&ctx) ||
		    mbedtls_md_hmac_update(&ctx, salt, saltlen) ||
		    mbedtls_md_hmac_update(&ctx, ctr, 4) ||
		    mbedtls_md_hmac_finish(&ctx, u))
			goto done;
		memcpy(t, u, 32);
		for (i = 1; i < iter; i++) {
			if (mbedtls_md_hmac_reset(&ctx) ||
			    mbedtls_md_hmac_update(&ctx, u, 32) ||
			    mbedtls_md_hmac_finish(&ctx, u))
				goto done;
			for (j = 0; j < 32; j++)
				t[j] ^= u[j];
		}
		take = outlen < 32 ? outlen : 32;
		memcpy(out, t, take);
		out += take;
		outlen -= take;
		block++;
	}
	rc = 0;
done:
	mbedtls_md_free(&ctx);
	return rc;
}

/* cgi_hash_password - "pbkdf2-sha256$ITER$SALTHEX$HASHHEX" into out */
int
cgi_hash_password(const char *pw, unsigned iter, char *out, size_t len)
{
	uint8_t salt[16], dk[32];
	char sh[33], dh[65];

	if (cgi_random(salt, sizeof(salt)) < 0 ||
	    cgi_pbkdf2_sha256(pw, strlen(pw), salt, sizeof(salt), iter, dk,
	                      sizeof(dk)) < 0)
		return -1;
	cgi_hex(salt, sizeof(salt), sh);
	cgi_hex(dk, sizeof(dk), dh);
	if (snprintf(out, len, "pbkdf2-sha256$%u$%s$%s", iter, sh, dh) >=
	    (int)len)
		return -1;
	return 0;
}

/* cgi_eq - constant-time comparison of two strings */
bool
cgi_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i;
	unsigned char d = la != lb;

	for (i = 0; i < la && i < lb; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

/* cgi_parse_password - a stored hash line into its parts; 0 or -1 */
int
cgi_parse_password(const char *stored, struct cgi_pwhash *h)
{
	char buf[256], *it, *sh, *dh, *end;
	unsigned long iter;

	if (snprintf(buf, sizeof(buf), "%s", stored) >= (int)sizeof(buf) ||
	    strncmp(buf, "pbkdf2-sha256$", 14) != 0)
		return -1;
	it = buf + 14;
	sh = strchr(it, '$');
	if (!sh)
		return -1;
	*sh++ = '\0';
	dh = strchr(sh, '$');
	if (!dh)
		return -1;
	*dh++ = '\0';
	iter = strtoul(it, &end, 10);
	h->saltlen = strlen(sh) / 2;
	if (*end || !isdigit((unsigned char)*it) || iter == 0 ||
	    iter > CGI_PBKDF2_ITER_MAX || h->saltlen == 0 ||
	    h->saltlen > sizeof(h->salt) ||
	    unhex(sh, h->salt, h->saltlen) < 0 ||
	    unhex(dh, h->hash, sizeof(h->hash)) < 0)
		return -1;
	h->iter = (unsigned)iter;
	return 0;
}

/* cgi_check_password - pw against a stored hash line */
bool
cgi_check_password(const char *pw, const char *stored)
{
	struct cgi_pwhash h;
	uint8_t got[32];
	unsigned char d = 0;
	size_t i;

	if (cgi_parse_password(stored, &h) < 0 ||
	    cgi_pbkdf2_sha256(pw, strlen(pw), h.salt, h.saltlen, h.iter, got,
	                      sizeof(got)) < 0)
		return false;
	for (i = 0; i < sizeof(got); i++)
		d |= (unsigned char)(got[i] ^ h.hash[i]);
	return d == 0;
}

/* cgi_csrf_token - HMAC-SHA256(session, "mailmoat csrf") in hex */
void
cgi_csrf_token(const char *session, char out[CGI_TOKEN_HEX + 1])
{
	uint8_t mac[32];

	mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256),
	                (const unsigned char *)session, strlen(session),
	                (const unsigned char *)"mailmoat csrf", 13, mac);
	cgi_hex(mac, sizeof(mac), out);
}

/* ------------------------------------------------------------- sessions */

/* token_ok - exactly CGI_TOKEN_HEX lower-case hex digits */
static bool
token_ok(const char *t)
{
	size_t i;

	for (i = 0; t[i]; i++)
		if (!isdigit((unsigned char)t[i]) &&
		    !(t[i] >= 'a' && t[i] <= 'f'))
			return false;
	return i == CGI_TOKEN_HEX;
}

/* session_path - STATE/s-<sha256(token)>: the file never names the token */
static void
session_path(const char *token, char *out, size_t len)
{
	uint8_t h[32];
	char hx[65];

	mbedtls_sha256_ret((const unsigned char *)token, strlen(token), h, 0);
	cgi_hex(h, sizeof(h), hx);
	snprintf(out, len, "%s/s-%s", cgi_state_dir(), hx);
}

/* cgi_session_new - a new random session; token into out; 0 or -1 */
int
cgi_session_new(char out[CGI_TOKEN_HEX + 1])
{
	uint8_t r[32];
	char path[4096], line[32];
	int n;

	if (cgi_random(r, sizeof(r)) < 0)
		return -1;
	cgi_hex(r, sizeof(r), out);
	session_path(out, path, sizeof(path));
	n = snprintf(line, sizeof(line), "%lld\n",
	             (long long)time(NULL) + CGI_SESSION_TTL);
	return cgi_write_atomic(path, line, (size_t)n, 0600);
}

/* cgi_session_valid - token names a live (unexpired) session */
bool
cgi_session_valid(const char *token)
{
	char path[4096], line[32];

	if (!token_ok(token))
		return false;
	session_path(token, path, sizeof(path));
	if (cgi_read_file(path, line, sizeof(line)) < 0)
		return false;
	if (strtoll(line, NULL, 10) < (long long)time(NULL)) {
		unlink(path);
		return false;
	}
	return true;
}

/* cgi_session_end - forget the session */
void
cgi_session_end(const char *token)
{
	char path[4096];

	if (!token_ok(token))
		return;
	session_path(token, path, sizeof(path));
	unlink(path);
}

/* cgi_password_set - store the hash of pw; 0 or -1 */
int
cgi_password_set(const char *pw)
{
	char line[256];
	size_t n;

	if (cgi_hash_password(pw, CGI_PBKDF2_ITER, line, sizeof(line) - 1) < 0)
		return -1;
	n = strlen(line);
	line[n++] = '\n';
	return cgi_write_atomic(cgi_password_path(), line, n, 0600);
}

/* cgi_password_verify - pw is the admin password (migrates plain text) */
bool
cgi_password_verify(const char *pw)
{
	char stored[256];

	if (cgi_read_file(cgi_password_path(), stored, sizeof(stored)) < 0 ||
	    stored[0] == '\0')
		return false;
	if (strncmp(stored, "pbkdf2-sha256$", 14) == 0)
		return cgi_check_password(pw, stored);
	/* The plain text an older first boot wrote: hash it now. */
	if (!cgi_eq(pw, stored))
		return false;
	if (cgi_password_set(pw) == 0)
		syslog(LOG_AUTH | LOG_NOTICE,
		       "webui: admin password converted to PBKDF2-SHA256");
	return true;
}

/* fail_path - STATE/f-<address with only safe characters> */
static void
fail_path(const char *addr, char *out, size_t len)
{
	char a[64];
	size_t i;

	for (i = 0; addr[i] && i < sizeof(a) - 1; i++)
		a[i] = isalnum((unsigned char)addr[i]) ? addr[i] : '_';
	a[i] = '\0';
	snprintf(out, len, "%s/f-%s", cgi_state_dir(), a);
}

/* fail_read - count and start of the window for addr */
static void
fail_read(const char *addr, long *count, long long *first)
{
	char path[4096], line[64];

	*count = 0;
	*first = 0;
	fail_path(addr, path, sizeof(path));
	if (cgi_read_file(path, line, sizeof(line)) == 0 &&
	    sscanf(line, "%ld %lld", count, first) != 2)
		*count = 0;
	if (*first + CGI_LOGIN_WINDOW < (long long)time(NULL))
		*count = 0;
}

/* cgi_login_blocked - this address failed too often in the window */
bool
cgi_login_blocked(const char *addr)
{
	long n;
	long long first;

	fail_read(addr, &n, &first);
	return n >= CGI_LOGIN_FAILS;
}

/* cgi_login_failed - count a failure of addr (and log it) */
void
cgi_login_failed(const char *addr)
{
	char path[4096], line[64];
	long n;
	long long first;
	int len;

	fail_read(addr, &n, &first);
	if (n == 0)
		first = (long long)time(NULL);
	n++;
	fail_path(addr, path, sizeof(path));
	len = snprintf(line, sizeof(line), "%ld %lld\n", n, first);
	cgi_write_atomic(path, line, (size_t)len, 0600);
	syslog(LOG_AUTH | LOG_WARNING,
	       "webui: failed login for admin from %s (%ld in %ds)", addr, n,
	       CGI_LOGIN_WINDOW);
	fprintf(stderr, "mailmoat-webui: failed login from %s (%ld)\n", addr,
	        n);
}

/* cgi_login_ok - clear the failures of addr */
void
cgi_login_ok(const char *addr)
{
	char path[4096];

	fail_path(addr, path, sizeof(path));
	unlink(path);
	syslog(LOG_AUTH | LOG_INFO, "webui: admin logged in from %s", addr);
}

/* -------------------------------------------------------------- request */

/* cgi_begin - parse the request; enforce login and CSRF */
void
cgi_begin(struct cgi_req *r, bool login)
{
	const char *q = getenv("QUERY_STRING");
	const char *ct = getenv("CONTENT_TYPE");
	const char *cl = getenv("CONTENT_LENGTH");
	const char *ck = getenv("HTTP_COOKIE");
	const char *b;
	long len;
	size_t got = 0;
	ssize_t n;

	memset(r, 0, sizeof(*r));
	openlog("mailmoat-webui", LOG_PID, LOG_AUTH);
	r->method = getenv("REQUEST_METHOD");
	if (!r->method)
		r->method = "GET";
	r->remote = getenv("REMOTE_ADDR");
	if (!r->remote || !*r->remote)
		r->remote = "-";
	r->post = strcmp(r->method, "POST") == 0;
	if (!r->post && strcmp(r->method, "GET") && strcmp(r->method, "HEAD"))
		cgi_error(405, "method not allowed");
	if (q && strlen(q) > 4096)
		cgi_error(414, "query string too long");
	r->qbuf = strdup(q ? q : "");
	if (!r->qbuf)
		cgi_error(500, "out of memory");
	r->nq = cgi_parse_urlencoded(r->qbuf, r->q, 64);
	if (r->nq < 0)
		cgi_error(400, "bad query string");
	if (ck &&
	    cgi_cookie_get(ck, "mmsid", r->session, sizeof(r->session)) == 0 &&
	    !cgi_session_valid(r->session))
		r->session[0] = '\0';
	if (r->session[0])
		cgi_csrf_token(r->session, r->csrf);
	if (login && !r->session[0]) {
		if (r->post)
			cgi_error(403, "refused: not logged in");
		cgi_redirect("/cgi-bin/login");
	}
	if (!r->post)
		return;
	len = cl ? strtol(cl, NULL, 10) : 0;
	if (len < 0)
		cgi_error(400, "bad Content-Length");
	if (ct && strncmp(ct, "multipart/form-data", 19) == 0) {
		b = strstr(ct, "boundary=");
		if (!b || strlen(b + 9) == 0 ||
		    strlen(b + 9) >= sizeof(r->boundary))
			cgi_error(400, "bad multipart boundary");
		snprintf(r->boundary, sizeof(r->boundary), "%s", b + 9);
		if (r->boundary[0] == '"') {
			memmove(r->boundary, r->boundary + 1,
			        strlen(r->boundary));
			r->boundary[strcspn(r->boundary, "\"")] = '\0';
		}
		r->multipart = true;
		return;
	}
	if (ct && *ct && strncmp(ct, "application/x-www-form-urlencoded", 33)) {
		/* A raw body (an image for /cgi-bin/flash) stays on stdin.
		 * A form on another site cannot send this header, so it is
		 * the CSRF check of such requests. */
		b = getenv("HTTP_X_MAILMOAT_CSRF");
		if (login && !cgi_csrf_ok(r, b))
			cgi_error(403, "refused: missing or wrong CSRF token "
			               "(header X-Mailmoat-CSRF)");
		r->raw = true;
		return;
	}
	if (len > CGI_MAX_BODY)
		cgi_error(413, "request too large");
	r->fbuf = malloc((size_t)len + 1);
	if (!r->fbuf)
		cgi_error(500, "out of memory");
	while (got < (size_t)len) {
		n = read(0, r->fbuf + got, (size_t)len - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	r->fbuf[got] = '\0';
	if (strlen(r->fbuf) != got)
		cgi_error(400, "NUL byte in the form");
	r->nf = cgi_parse_urlencoded(r->fbuf, r->f, CGI_MAX_FIELDS);
	if (r->nf < 0)
		cgi_error(400, "bad form");
	if (login && !cgi_csrf_ok(r, cgi_kv_get(r->f, r->nf, "csrf")))
		cgi_error(403, "refused: missing or wrong CSRF token");
}

/* cgi_param - a form field (POST) or else a query parameter, or NULL */
const char *
cgi_param(const struct cgi_req *r, const char *k)
{
	const char *v = cgi_kv_get(r->f, r->nf, k);

	return v ? v : cgi_kv_get(r->q, r->nq, k);
}

/* cgi_csrf_ok - the value is this session's CSRF token */
bool
cgi_csrf_ok(const struct cgi_req *r, const char *value)
{
	return r->session[0] && value && cgi_eq(value, r->csrf);
}

/* cgi_redirect - 303 to path and exit */
void
cgi_redirect(const char *path)
{
	printf("Status: 303 See Other\r\nLocation: %s\r\n"
	       "Cache-Control: no-store\r\nContent-Type: text/plain\r\n\r\n"
	       "see %s\n",
	       path, path);
	exit(0);
}

/* ------------------------------------------------------------ multipart */

struct mp {
	int fd;
	uint64_t left;
	char buf[65536 + 256];
	size_t len;
	bool eof;
};

/* mp_fill - read more of the body; false at its end */
static bool
mp_fill(struct mp *m)
{
	size_t want = sizeof(m->buf) - m->len;
	ssize_t n;

	if (m->eof || want == 0)
		return false;
	if (want > m->left)
		want = (size_t)m->left;
	if (want == 0) {
		m->eof = true;
		return false;
	}
	n = read(m->fd, m->buf + m->len, want);
	if (n <= 0) {
		m->eof = true;
		return false;
	}
	m->len += (size_t)n;
	m->left -= (uint64_t)n;
	return true;
}

/* mp_consume - drop n bytes from the front of the buffer */
static void
mp_consume(struct mp *m, size_t n)
{
	memmove(m->buf, m->buf + n, m->len - n);
	m->len -= n;
}

/* mp_header_value - the quoted value of attr="..." in a header line */
static void
mp_header_value(const char *line, const char *attr, char *out, size_t len)
{
	char pat[32];
	const char *p, *e;

	out[0] = '\0';
	snprintf(pat, sizeof(pat), "%s=\"", attr);
	for (p = line; (p = strstr(p, pat)); p++)
		if (p == line || p[-1] == ' ' || p[-1] == ';')
			break;
	if (!p)
		return;
	p += strlen(pat);
	e = strchr(p, '"');
	if (!e || (size_t)(e - p) >= len)
		return;
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = '\0';
}

/* cgi_multipart - stream a multipart/form-data body through ops */
int
cgi_multipart(int fd, const char *boundary, uint64_t max,
              const struct cgi_mp_ops *ops, char *err, size_t errlen)
{
	struct mp *m = calloc(1, sizeof(*m));
	char delim[100], name[128], fname[256], line[1024];
	size_t dl, i;
	char *p, *e;
	int rc = -1;

	if (!m) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	m->fd = fd;
	m->left = max;
	dl = (size_t)snprintf(delim, sizeof(delim), "\r\n--%s", boundary);
	/* The body starts with "--boundary" (no CRLF before it). */
	m->buf[0] = '\r';
	m->buf[1] = '\n';
	m->len = 2;
	for (;;) {
		/* At a delimiter: read it and the CRLF or "--" after it. */
		while (m->len < dl + 2 && mp_fill(m))
			;
		if (m->len < dl + 2 || memcmp(m->buf, delim, dl) != 0) {
			snprintf(err, errlen, "bad multipart framing");
			goto done;
		}
		if (m->buf[dl] == '-' && m->buf[dl + 1] == '-') {
			rc = 0;
			goto done;
		}
		if (m->buf[dl] != '\r' || m->buf[dl + 1] != '\n') {
			snprintf(err, errlen, "bad multipart framing");
			goto done;
		}
		mp_consume(m, dl + 2);
		/* Part headers up to an empty line. */
		name[0] = fname[0] = '\0';
		for (;;) {
			while (!(e = memmem(m->buf, m->len, "\r\n", 2)) &&
			       m->len < sizeof(line) && mp_fill(m))
				;
			if (!e || (size_t)(e - m->buf) >= sizeof(line)) {
				snprintf(err, errlen, "bad part header");
				goto done;
			}
			memcpy(line, m->buf, (size_t)(e - m->buf));
			line[e - m->buf] = '\0';
			mp_consume(m, (size_t)(e - m->buf) + 2);
			if (line[0] == '\0')
				break;
			if (strncasecmp(line, "Content-Disposition:", 20) ==
			    0) {
				mp_header_value(line, "name", name,
				                sizeof(name));
				mp_header_value(line, "filename", fname,
				                sizeof(fname));
			}
		}
		if (ops->begin(ops->arg, name, fname) < 0) {
			snprintf(err, errlen, "part \"%s\" refused", name);
			goto done;
		}
		/* Data up to the next delimiter; keep dl bytes back. */
		for (;;) {
			p = memmem(m->buf, m->len, delim, dl);
			if (p) {
				i = (size_t)(p - m->buf);
				if (i && ops->data(ops->arg, m->buf, i) < 0) {
					snprintf(err, errlen,
					         "part \"%s\" refused", name);
					goto done;
				}
				mp_consume(m, i);
				break;
			}
			if (m->len > dl) {
				i = m->len - dl;
				if (ops->data(ops->arg, m->buf, i) < 0) {
					snprintf(err, errlen,
					         "part \"%s\" refused", name);
					goto done;
				}
				mp_consume(m, i);
			}
			if (!mp_fill(m)) {
				snprintf(err, errlen,
				         m->left == 0 ? "upload too large or "
				                        "truncated"
				                      : "upload truncated");
				goto done;
			}
		}
		if (ops->end(ops->arg) < 0) {
			snprintf(err, errlen, "part \"%s\" refused", name);
			goto done;
		}
	}
done:
	free(m);
	return rc;
}

/* --------------------------------------------------------------- daemon */

/* cgi_ctl_socket - control_socket from the config (or its default) */
const char *
cgi_ctl_socket(void)
{
	static char sock[256];

	if (cgi_conf_get(cgi_conf_path(), "control_socket", sock,
	                 sizeof(sock)) < 0 ||
	    !sock[0])
		snprintf(sock, sizeof(sock), "/run/mailmoat.sock");
	return sock;
}

/* cgi_ctl - one command to the daemon; 0 ok, 1 error, -1 unreachable */
int
cgi_ctl(const char *cmd, char **out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len = 0, cap = 65536;
	char *b = malloc(cap);
	ssize_t n;
	int fd;

	*out = b;
	if (!b)
		return -1;
	b[0] = '\0';
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", cgi_ctl_socket());
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		snprintf(b, cap, "the daemon is not answering (%s)",
		         strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (write(fd, cmd, strlen(cmd)) < 0 || write(fd, "\n", 1) < 0) {
		snprintf(b, cap, "cannot talk to the daemon");
		close(fd);
		return -1;
	}
	while ((n = read(fd, b + len, cap - 1 - len)) > 0) {
		len += (size_t)n;
		if (len == cap - 1) {
			char *nb;

			if (cap >= (4u << 20))
				break;
			nb = realloc(b, cap * 2);
			if (!nb)
				break;
			b = *out = nb;
			cap *= 2;
		}
	}
	close(fd);
	b[len] = '\0';
	if (strncmp(b, "ok\n", 3) == 0) {
		memmove(b, b + 3, len - 2);
		return 0;
	}
	if (strncmp(b, "error: ", 7) == 0) {
		memmove(b, b + 7, len - 6);
		b[strcspn(b, "\n")] = '\0';
		return 1;
	}
	snprintf(b, cap, "the daemon gave no answer");
	return -1;
}

/* cgi_ctl_word - s is one safe word for a control line */
bool
cgi_ctl_word(const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			return false;
	return i > 0 && i < 256;
}

/* json_find - the text after "key": at the top or any level, or NULL */
static const char *
json_find(const char *json, const char *key)
{
	char pat[128];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(json, pat);
	if (!p)
		return NULL;
	p += strlen(pat);
	while (*p == ' ')
		p++;
	return p;
}

/* cgi_json_num - the number after "key": in a JSON text; -1 if absent */
long long
cgi_json_num(const char *json, const char *key)
{
	const char *p = json_find(json, key);

	if (!p || !(isdigit((unsigned char)*p) || *p == '-'))
		return -1;
	return strtoll(p, NULL, 10);
}

/* cgi_json_str - the string after "key": (unescaped) into out; 0 or -1 */
int
cgi_json_str(const char *json, const char *key, char *out, size_t len)
{
	const char *p = json_find(json, key);
	size_t o = 0;

	if (!p || *p != '"' || len == 0)
		return -1;
	for (p++; *p && *p != '"' && o + 1 < len; p++) {
		if (*p == '\\' && p[1]) {
			p++;
			if (*p == 'u' && isxdigit((unsigned char)p[1])) {
				out[o++] = '?';
				p += 4;
				continue;
			}
			out[o++] = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p;
		} else {
			out[o++] = *p;
		}
	}
	out[o] = '\0';
	return 0;
}

/* cgi_json_unquote - a JSON string literal (with quotes) into out */
void
cgi_json_unquote(const char *val, size_t vlen, char *out, size_t len)
{
	size_t i, o = 0;

	if (len == 0)
		return;
	for (i = 1; i + 1 < vlen && o + 1 < len; i++) {
		if (val[i] == '\\' && i + 2 < vlen) {
			i++;
			if (val[i] == 'u') {
				out[o++] = '?';
				i += 4;
				continue;
			}
			out[o++] = val[i] == 'n'   ? '\n'
			           : val[i] == 't' ? '\t'
			                           : val[i];
		} else {
			out[o++] = val[i];
		}
	}
	out[o] = '\0';
}

struct jw {
	const char *p;
	cgi_json_fn fn;
	void *arg;
	char *path[9];
	char keys[9][128];
};

/* jw_ws - skip white space */
static void
jw_ws(struct jw *w)
{
	while (*w->p == ' ' || *w->p == '\n' || *w->p == '\t' || *w->p == '\r')
		w->p++;
}

/* jw_string - the end of the string literal at w->p (past its quote) */
static const char *
jw_string(const char *p)
{
	for (p++; *p && *p != '"'; p++)
		if (*p == '\\' && p[1])
			p++;
	return *p == '"' ? p + 1 : NULL;
}

/* jw_value - one value at depth d; 0 or -1 */
static int
jw_value(struct jw *w, int d)
{
	const char *s, *e;
	int i = 0;

	jw_ws(w);
	s = w->p;
	if (*s == '{' || *s == '[') {
		char close = *s == '{' ? '}' : ']';

		if (d >= 8)
			return -1;
		w->p++;
		jw_ws(w);
		if (*w->p == close) {
			w->p++;
			return 0;
		}
		for (;;) {
			jw_ws(w);
			if (close == '}') {
				if (*w->p != '"' || !(e = jw_string(w->p)))
					return -1;
				cgi_json_unquote(w->p, (size_t)(e - w->p),
				                 w->keys[d],
				                 sizeof(w->keys[d]));
				w->p = e;
				jw_ws(w);
				if (*w->p++ != ':')
					return -1;
			} else {
				snprintf(w->keys[d], sizeof(w->keys[d]), "%d",
				         i++);
			}
			w->path[d] = w->keys[d];
			if (jw_value(w, d + 1) < 0)
				return -1;
			jw_ws(w);
			if (*w->p == ',') {
				w->p++;
				continue;
			}
			if (*w->p++ != close)
				return -1;
			return 0;
		}
	}
	if (*s == '"') {
		e = jw_string(s);
		if (!e)
			return -1;
		w->fn(w->arg, d, w->path, s, (size_t)(e - s), 's');
		w->p = e;
		return 0;
	}
	e = s;
	while (*e && strchr("0123456789+-.eEtruefalsn", *e))
		e++;
	if (e == s)
		return -1;
	w->fn(w->arg, d, w->path, s, (size_t)(e - s),
	      *s == 't' || *s == 'f' ? 'b'
	      : *s == 'n'            ? 'z'
	                             : 'n');
	w->p = e;
	return 0;
}

/* cgi_json_walk - every scalar of a JSON text through fn; 0 or -1 */
int
cgi_json_walk(const char *json, cgi_json_fn fn, void *arg)
{
	struct jw *w = calloc(1, sizeof(*w));
	int rc;

	if (!w)
		return -1;
	w->p = json;
	w->fn = fn;
	w->arg = arg;
	rc = jw_value(w, 0);
	free(w);
	return rc;
}

/* --------------------------------------------------------------- layout */

static const char css[] =
        "body{font:15px/1.4 sans-serif;margin:0;color:#222;background:#f6f6f4}"
        "header{background:#234;color:#fff;padding:.5em 1em}"
        "header a{color:#cde;margin-right:.9em;text-decoration:none;"
        "display:inline-block}"
        "header b{margin-right:1.2em}main{padding:1em;max-width:70em}"
        "table{border-collapse:collapse;margin:.5em 0;background:#fff}"
        "td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;"
        "vertical-align:top;word-break:break-word}"
        "th{background:#eee;white-space:nowrap}.err{color:#a00;font-weight:"
        "bold}"
        ".msg{padding:.5em;border:1px solid #8a8;background:#efe}"
        ".bad{padding:.5em;border:1px solid #a88;background:#fee}"
        "input,select,button{font-size:1em;margin:.1em 0;max-width:100%}"
        "label{display:block;margin-top:.6em;font-weight:bold}"
        "small{color:#666}fieldset{margin:.8em 0;background:#fff}"
        ".scroll{overflow-x:auto}svg{display:block;width:100%;"
        "max-width:720px;height:auto;margin:.3em 0;"
        "background:#fff;border:1px solid #ccc}"
        "@media(max-width:600px){main{padding:.4em}td,th{font-size:13px}}";

/* cgi_page_begin - headers, <head> with the stylesheet, the menu */
void
cgi_page_begin(const struct cgi_req *r, const char *title)
{
	static const char *const menu[][2] = {
	        {"dashboard", "Dashboard"}, {"decisions", "Decisions"},
	        {"greylist", "Greylist"},   {"lists", "Lists"},
	        {"settings", "Settings"},   {"firmware", "Firmware"},
	        {"password", "Password"},   {"metrics", "Metrics"},
	};
	FILE *o = OUT;
	size_t i;

	fprintf(o, "Content-Type: text/html; charset=utf-8\r\n"
	           "Cache-Control: no-store\r\n"
	           "X-Frame-Options: DENY\r\n"
	           "X-Content-Type-Options: nosniff\r\n"
	           "Content-Security-Policy: default-src 'none'; "
	           "style-src 'unsafe-inline'; img-src 'self' data:; "
	           "form-action 'self'; frame-ancestors 'none'\r\n"
	           "Referrer-Policy: same-origin\r\n\r\n");
	fprintf(o, "<!DOCTYPE html>\n<html lang=\"en\"><head>"
	           "<meta charset=\"utf-8\">"
	           "<meta name=\"viewport\" content=\"width=device-width, "
	           "initial-scale=1\"><title>mailmoat - ");
	cgi_html(title);
	fprintf(o,
	        "</title><style>%s</style></head><body>\n<header><b>"
	        "mailmoat</b>",
	        css);
	if (r && r->session[0]) {
		for (i = 0; i < sizeof(menu) / sizeof(menu[0]); i++)
			fprintf(o, "<a href=\"/cgi-bin/%s\">%s</a>", menu[i][0],
			        menu[i][1]);
		fprintf(o, "<form method=\"post\" action=\"/cgi-bin/logout\" "
		           "style=\"display:inline\">");
		cgi_csrf_field(r);
		fprintf(o, "<button type=\"submit\">Log out</button></form>");
	}
	fprintf(o, "</header>\n<main>\n<h1>");
	cgi_html(title);
	fprintf(o, "</h1>\n");
}

/* cgi_page_end - close the page */
void
cgi_page_end(void)
{
	fprintf(OUT, "</main></body></html>\n");
	fflush(OUT);
}

/* cgi_csrf_field - the hidden csrf input of a form */
void
cgi_csrf_field(const struct cgi_req *r)
{
	fprintf(OUT, "<input type=\"hidden\" name=\"csrf\" value=\"%s\">",
	        r->csrf);
}

/* cgi_msg - a notice (ok) or an error box; text escaped */
void
cgi_msg(bool ok, const char *text)
{
	fprintf(OUT, "<p class=\"%s\" id=\"%s\">", ok ? "msg" : "bad",
	        ok ? "notice" : "error");
	cgi_html(text);
	fprintf(OUT, "</p>\n");
}

/* ---------------------------------------------------------------- chart */

/* cgi_svg_chart - a stacked bar chart as inline SVG */
void
cgi_svg_chart(const char *title, int n, int ns, const uint64_t *const *vals,
              const char *const *names, const char *const *colours,
              int label_every, void (*label)(int i, char *buf, size_t len))
{
	FILE *o = OUT;
	const int W = 720, H = 200, L = 40, T = 20, B = 30;
	uint64_t max = 0, sum, y0;
	double bw, x, h;
	char lb[32];
	int i, s;

	for (i = 0; i < n; i++) {
		sum = 0;
		for (s = 0; s < ns; s++)
			sum += vals[s][i];
		if (sum > max)
			max = sum;
	}
	if (max == 0)
		max = 1;
	bw = n > 0 ? (double)(W - L - 10) / n : 1;
	fprintf(o,
	        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d "
	        "%d\""
	        " width=\"%d\" height=\"%d\" role=\"img\"><title>",
	        W, H + 20, W, H + 20);
	cgi_html(title);
	fprintf(o, "</title>\n<text x=\"%d\" y=\"14\" font-size=\"13\">", L);
	cgi_html(title);
	fprintf(o, " (max %llu)</text>\n", (unsigned long long)max);
	fprintf(o,
	        "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" "
	        "stroke=\"#888\"/>\n",
	        L, H - B, W - 10, H - B);
	fprintf(o,
	        "<text x=\"2\" y=\"%d\" font-size=\"11\">%llu</text>"
	        "<text x=\"2\" y=\"%d\" font-size=\"11\">0</text>\n",
	        T + 10, (unsigned long long)max, H - B);
	for (i = 0; i < n; i++) {
		x = L + i * bw;
		y0 = 0;
		for (s = 0; s < ns; s++) {
			if (vals[s][i] == 0)
				continue;
			h = (double)vals[s][i] * (H - B - T) / (double)max;
			fprintf(o,
			        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
			        "height=\"%.1f\" fill=\"%s\"><title>",
			        x,
			        H - B - (double)y0 * (H - B - T) / (double)max -
			                h,
			        bw > 1.5 ? bw - 0.5 : bw, h, colours[s]);
			cgi_html(names[s]);
			fprintf(o, ": %llu</title></rect>\n",
			        (unsigned long long)vals[s][i]);
			y0 += vals[s][i];
		}
		if (label && label_every > 0 && i % label_every == 0) {
			label(i, lb, sizeof(lb));
			fprintf(o,
			        "<text x=\"%.1f\" y=\"%d\" font-size=\"11\">",
			        x, H - B + 14);
			cgi_html(lb);
			fprintf(o, "</text>\n");
		}
	}
	for (s = 0; s < ns; s++) {
		fprintf(o,
		        "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" "
		        "fill=\"%s\"/><text x=\"%d\" y=\"%d\" "
		        "font-size=\"12\">",
		        L + s * 110, H, colours[s], L + s * 110 + 14, H + 9);
		cgi_html(names[s]);
		fprintf(o, "</text>\n");
	}
	fprintf(o, "</svg>\n");
}
