/*
 * cgi.h - shared helpers of the web UI CGI programs (cgi.c).
 *
 * Request parsing (query string, urlencoded forms, cookies, streamed
 * multipart), HTML escaping, login sessions and CSRF tokens, the admin
 * password (salted PBKDF2-SHA256 over mbedTLS's HMAC), the login rate
 * limit, a control-socket client, the page layout and inline SVG charts.
 *
 * State of the web UI itself (login sessions, failed-login counters) lives
 * in small files under cgi_state_dir() (default /run/mailmoat-webui, a
 * tmpfs: a reboot logs everyone out, and nothing wears the flash).  The
 * admin password hash lives in cgi_password_path() (default
 * /data/etc/admin-password, where first boot writes it).  The daemon is
 * reached only through its control socket.
 *
 * Output goes to cgi_out (stdout unless a test points it elsewhere).
 */
#ifndef MAILMOAT_CGI_H
#define MAILMOAT_CGI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifndef CGI_SBIN
#define CGI_SBIN "/usr/sbin"
#endif
#ifndef CGI_ETC
#define CGI_ETC "/etc"
#endif

#define CGI_MAX_BODY (64 * 1024) /* urlencoded forms */
#define CGI_MAX_FIELDS 256
#define CGI_TOKEN_HEX 64 /* 32 random bytes */
#define CGI_SESSION_TTL (4 * 3600)
#define CGI_LOGIN_FAILS 5       /* failures per address ... */
#define CGI_LOGIN_WINDOW 300    /* ... per this many seconds */
#define CGI_PBKDF2_ITER 100000u /* stored with each hash */
/* A stored line asking for more is refused: ten times ours already takes
 * seconds per login on a router-class board. */
#define CGI_PBKDF2_ITER_MAX 1000000u

extern FILE *cgi_out;

/* --- paths (environment overrides for tests and make run) --- */
/* cgi_conf_path - $MAILMOAT_CONF or CGI_ETC/mailmoat.conf */
const char *cgi_conf_path(void);
/* cgi_state_dir - $MAILMOAT_WEBUI_DIR or /run/mailmoat-webui (created) */
const char *cgi_state_dir(void);
/* cgi_password_path - $MAILMOAT_ADMIN_PASSWORD or /data/etc/admin-password */
const char *cgi_password_path(void);

/* --- escaping and small output helpers --- */
/* cgi_html - write s to cgi_out with & < > " ' escaped */
void cgi_html(const char *s);
/* cgi_html_n - the same for n bytes of s (NUL bytes dropped) */
void cgi_html_n(const char *s, size_t n);
/* cgi_url_encode - percent-encode s into out (for links); truncates */
void cgi_url_encode(const char *s, char *out, size_t len);
/* cgi_error - send a Status: line and a plain-text reason; exits 0 */
void cgi_error(int status, const char *reason) __attribute__((noreturn));

/* --- parsing --- */
struct cgi_kv {
	char *k, *v;
};
/* cgi_url_decode - decode %XX and '+' in place; -1 on a bad escape or NUL */
int cgi_url_decode(char *s);
/*
 * cgi_parse_urlencoded - split s ("a=1&b=2") in place into kv (at most
 * max pairs); returns the count, or -1 when there are more pairs or a
 * bad escape.
 */
int cgi_parse_urlencoded(char *s, struct cgi_kv *kv, int max);
/* cgi_kv_get - the first value named k, or NULL */
const char *cgi_kv_get(const struct cgi_kv *kv, int n, const char *k);
/* cgi_cookie_get - value of cookie name in a Cookie: header; 0 or -1 */
int cgi_cookie_get(const char *hdr, const char *name, char *out, size_t len);

/* --- files --- */
/* cgi_conf_get - value of key in a "key = value" file; 0 or -ENOENT */
int cgi_conf_get(const char *path, const char *key, char *out, size_t len);
/* cgi_read_file - first line of a small file into out; 0 or -ENOENT */
int cgi_read_file(const char *path, char *out, size_t len);
/* What every page says about the box: the running version, the board and
 * the boot slot (firmware files; "host" and "-" off the box). */
struct cgi_box {
	char version[64];
	char board[64];
	char slot[16];
};
void cgi_box_info(struct cgi_box *b);
/* cgi_row - one table row "<tr><th>k</th><td>v</td></tr>", escaped */
void cgi_row(const char *k, const char *v);
/* cgi_write_atomic - write n bytes to path via temp + fsync + rename */
int cgi_write_atomic(const char *path, const void *p, size_t n, int mode);
/*
 * cgi_run - run argv (absolute path) with an empty environment and stdin
 * from /dev/null; its stdout+stderr go into out (NUL-terminated, truncated
 * to len).  Returns the exit status, or -1 if it could not run.
 */
int cgi_run(char *const argv[], char *out, size_t len);

/* --- crypto --- */
/* cgi_random - n bytes from getrandom(); 0 or -1 */
int cgi_random(void *p, size_t n);
/* cgi_hex - n bytes as lower-case hex into out (2n+1 bytes) */
void cgi_hex(const void *p, size_t n, char *out);
/* cgi_pbkdf2_sha256 - PBKDF2-HMAC-SHA256 (RFC 8018); 0 or -1 */
int cgi_pbkdf2_sha256(const char *pw, size_t pwlen, const uint8_t *salt,
                      size_t saltlen, unsigned iter, uint8_t *out,
                      size_t outlen);
/* cgi_hash_password - "pbkdf2-sha256$ITER$SALTHEX$HASHHEX" into out */
int cgi_hash_password(const char *pw, unsigned iter, char *out, size_t len);
/* A stored hash line, parsed. */
struct cgi_pwhash {
	unsigned iter;
	uint8_t salt[64];
	size_t saltlen;
	uint8_t hash[32];
};
/* cgi_parse_password - "pbkdf2-sha256$ITER$SALTHEX$HASHHEX" into h; 0, or
 * -1 for anything else (iterations 1..CGI_PBKDF2_ITER_MAX, 1..64 salt
 * bytes, a 32-byte hash) */
int cgi_parse_password(const char *stored, struct cgi_pwhash *h);
/* cgi_check_password - pw against a stored hash line; true if it matches */
bool cgi_check_password(const char *pw, const char *stored);
/* cgi_eq - constant-time comparison of two strings */
bool cgi_eq(const char *a, const char *b);
/* cgi_csrf_token - the CSRF token bound to a session token (HMAC) */
void cgi_csrf_token(const char *session, char out[CGI_TOKEN_HEX + 1]);

/* --- login sessions, password, rate limit (files in cgi_state_dir) --- */
/* cgi_session_new - a new random session; token into out; 0 or -1 */
int cgi_session_new(char out[CGI_TOKEN_HEX + 1]);
/* cgi_session_valid - token names a live (unexpired) session */
bool cgi_session_valid(const char *token);
/* cgi_session_end - forget the session */
void cgi_session_end(const char *token);
/*
 * cgi_password_verify - pw is the admin password.  A plain-text password
 * left by an old first boot is replaced by its hash on first use.
 */
bool cgi_password_verify(const char *pw);
/* cgi_password_set - store the hash of pw; 0 or -1 */
int cgi_password_set(const char *pw);
/* cgi_login_blocked - this address failed too often in the window */
bool cgi_login_blocked(const char *addr);
/* cgi_login_failed - count a failure of addr; cgi_login_ok - clear it */
void cgi_login_failed(const char *addr);
void cgi_login_ok(const char *addr);

/* --- the request --- */
struct cgi_req {
	const char *method; /* "GET", "POST", ... */
	const char *remote; /* REMOTE_ADDR or "-" */
	struct cgi_kv q[64];
	int nq;
	struct cgi_kv f[CGI_MAX_FIELDS];
	int nf;
	char *qbuf, *fbuf;
	bool post;
	bool multipart; /* body left on stdin for cgi_multipart() */
	bool raw; /* another body type, left on stdin (CSRF header checked) */
	char boundary[80];
	char session[CGI_TOKEN_HEX + 1]; /* "" when not logged in */
	char csrf[CGI_TOKEN_HEX + 1];
};
/*
 * cgi_begin - parse the request.  With login, a visitor without a live
 * session is sent to the login page (GET) or refused (POST), and a
 * urlencoded POST without the right `csrf` field is refused (403) before
 * the page sees it.  Multipart bodies stay on stdin (the page checks the
 * csrf part itself, see cgi_multipart); so do bodies of other types, whose
 * request must carry the token in the header X-Mailmoat-CSRF.
 */
void cgi_begin(struct cgi_req *r, bool login);
/* cgi_param - a form field (POST) or else a query parameter, or NULL */
const char *cgi_param(const struct cgi_req *r, const char *k);
/* cgi_csrf_ok - the value is this session's CSRF token */
bool cgi_csrf_ok(const struct cgi_req *r, const char *value);
/* cgi_redirect - 303 to path (site-relative) and exit */
void cgi_redirect(const char *path) __attribute__((noreturn));

/*
 * cgi_multipart - stream a multipart/form-data body from fd (at most max
 * bytes).  For each part: begin(name, filename) (filename "" for a plain
 * field; return -1 to refuse), data(p, n) in pieces, end().  Returns 0, or
 * -1 with a reason in err (bad framing, over max, a callback refused).
 */
struct cgi_mp_ops {
	int (*begin)(void *arg, const char *name, const char *filename);
	int (*data)(void *arg, const char *p, size_t n);
	int (*end)(void *arg);
	void *arg;
};
int cgi_multipart(int fd, const char *boundary, uint64_t max,
                  const struct cgi_mp_ops *ops, char *err, size_t errlen);

/* --- the daemon --- */
/* cgi_ctl_socket - control_socket from the config (or its default) */
const char *cgi_ctl_socket(void);
/*
 * cgi_ctl - send one command line; the payload (after "ok\n") or the
 * reason (after "error: ") goes into *out (malloc'd, NUL-terminated, at
 * most 4 MiB).  Returns 0 (ok), 1 (the daemon said error), -1 (no daemon:
 * *out says why).
 */
int cgi_ctl(const char *cmd, char **out);
/* cgi_ctl_word - s can go into a control line as one word: 1..255
 * printable non-space bytes (no newline can smuggle a second command) */
bool cgi_ctl_word(const char *s);
/* cgi_json_num - the number after "key": in a JSON text; -1 if absent */
long long cgi_json_num(const char *json, const char *key);
/* cgi_json_str - the string after "key": (unescaped) into out; 0 or -1 */
int cgi_json_str(const char *json, const char *key, char *out, size_t len);

/*
 * cgi_json_walk - call fn for every scalar in a JSON text: its path
 * (object keys unescaped, array indexes as numbers; depth at most 8), the
 * raw value text and its kind ('n' number, 's' string - still quoted and
 * escaped -, 'b' true/false, 'z' null).  Returns 0, or -1 for bad JSON.
 */
typedef void (*cgi_json_fn)(void *arg, int depth, char *const *path,
                            const char *val, size_t vlen, char kind);
int cgi_json_walk(const char *json, cgi_json_fn fn, void *arg);
/* cgi_json_unquote - a JSON string literal (with quotes) into out */
void cgi_json_unquote(const char *val, size_t vlen, char *out, size_t len);

/* --- layout --- */
/* cgi_page_begin - headers, <head> with the stylesheet, the menu */
void cgi_page_begin(const struct cgi_req *r, const char *title);
void cgi_page_end(void);
/* cgi_csrf_field - the hidden csrf input of a form */
void cgi_csrf_field(const struct cgi_req *r);
/* cgi_msg - a notice (ok) or an error box; text escaped */
void cgi_msg(bool ok, const char *text);

/*
 * cgi_svg_chart - a stacked bar chart as inline SVG: n buckets, ns
 * series (vals[s][i]), names and colours per series, an x label every
 * label_every buckets from labels(i, buf).  Values and names escaped.
 */
void cgi_svg_chart(const char *title, int n, int ns,
                   const uint64_t *const *vals, const char *const *names,
                   const char *const *colours, int label_every,
                   void (*label)(int i, char *buf, size_t len));

#endif
