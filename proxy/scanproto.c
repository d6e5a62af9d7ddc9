/*
 * scanproto.c - the scanner protocols, pure: request encoders and reply
 * parsers for clamd, spamd and rspamd.
 *
 * Public (proxy.h):
 *   scan_kind_name(), scan_server_parse()   names and the `scanner` value
 *   scan_clamd_command[], scan_clamd_chunk(), scan_clamd_parse()
 *       clamd INSTREAM: "zINSTREAM\0", then chunks each behind a 4-byte
 *       big-endian length, a zero length ends; one NUL-terminated answer:
 *       "stream: OK", "stream: NAME FOUND", "INSTREAM size limit
 *       exceeded. ERROR", "... ERROR".
 *   scan_spamd_request(), scan_spamd_parse()
 *       spamd SPAMC/1.5 SYMBOLS with Content-length; the answer
 *       "SPAMD/1.1 0 EX_OK", "Spam: True ; 1000.0 / 5.0", and the names of
 *       the rules that hit as the body.
 *   scan_rspamd_request(), scan_rspamd_parse()
 *       rspamd HTTP POST /checkv2 with what we know of the transaction as
 *       request headers (IP, Helo, From, one Rcpt per recipient, Hostname
 *       only when forward-confirmed, Queue-Id); the answer is JSON with
 *       "action", "score", "required_score", "symbols" and
 *       "milter"."add_headers" (read with json.c).
 *
 * Every parser takes the whole reply read so far; eof says the scanner
 * has closed.  It returns 0 while more is needed, 1 when *r is final.
 * Anything a scanner sends is treated as untrusted: bounded (SCAN_REPLY_MAX),
 * names and header values restricted to printable characters.  No I/O.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

const char scan_clamd_command[] = "zINSTREAM";

#define SCAN_JSON_TOKENS 8192

/* scan_kind_name - "clamd", "spamd", "rspamd" */
const char *
scan_kind_name(enum scan_kind k)
{
	switch (k) {
	case SCAN_CLAMD:
		return "clamd";
	case SCAN_SPAMD:
		return "spamd";
	case SCAN_RSPAMD:
		return "rspamd";
	}
	return "?";
}

/* scan_server_parse - "clamd:IP:PORT", IPv6 as "[addr]:PORT" */
int
scan_server_parse(const char *text, struct scan_server *out)
{
	static const enum scan_kind kinds[] = {SCAN_CLAMD, SCAN_SPAMD,
	                                       SCAN_RSPAMD};
	const char *colon = strchr(text, ':');
	size_t i, plen;

	memset(out, 0, sizeof(*out));
	if (colon == NULL || strlen(text) >= sizeof(out->name))
		return -EINVAL;
	plen = (size_t)(colon - text);
	for (i = 0; i < ARRAY_LEN(kinds); i++) {
		const char *name = scan_kind_name(kinds[i]);

		if (strlen(name) == plen && strncmp(text, name, plen) == 0)
			break;
	}
	if (i == ARRAY_LEN(kinds))
		return -EINVAL;
	/* A port is required: the scanners have no common default. */
	if (colon[1] == '[' ? strstr(colon, "]:") == NULL
	                    : strchr(colon + 1, ':') == NULL)
		return -EINVAL;
	if (sockaddr_parse(&out->addr, colon + 1, -1) != 0)
		return -EINVAL;
	out->kind = kinds[i];
	snprintf(out->name, sizeof(out->name), "%s", text);
	return 0;
}

/* scan_clamd_chunk - the big-endian length in front of an INSTREAM chunk */
void
scan_clamd_chunk(unsigned char hdr[4], uint32_t len)
{
	hdr[0] = (unsigned char)(len >> 24);
	hdr[1] = (unsigned char)(len >> 16);
	hdr[2] = (unsigned char)(len >> 8);
	hdr[3] = (unsigned char)len;
}

/* scan_reply_init - a fresh reply: a fault until proven otherwise */
static void
scan_reply_init(struct scan_reply *r)
{
	memset(r, 0, sizeof(*r));
	r->verdict = SCAN_FAULT;
}

/* scan_fault - r is a fault saying what; returns 1 (done) */
static int __attribute__((format(printf, 2, 3)))
scan_fault(struct scan_reply *r, const char *fmt, ...)
{
	va_list ap;

	r->verdict = SCAN_FAULT;
	va_start(ap, fmt);
	vsnprintf(r->what, sizeof(r->what), fmt, ap);
	va_end(ap);
	return 1;
}

/* scan_printable - p[0..n) into out, bytes outside ' '..'~' as '?' */
static void
scan_printable(char *out, size_t outlen, const char *p, size_t n)
{
	size_t i;

	if (outlen == 0)
		return;
	if (n > outlen - 1)
		n = outlen - 1;
	for (i = 0; i < n; i++)
		out[i] = (p[i] >= ' ' && p[i] <= '~') ? p[i] : '?';
	out[n] = '\0';
}

/* scan_ends - does p[0..n) end with word? */
static bool
scan_ends(const char *p, size_t n, const char *word)
{
	size_t l = strlen(word);

	return n >= l && memcmp(p + n - l, word, l) == 0;
}

/*
 * scan_clamd_parse - the answer to INSTREAM.  It ends at its NUL (we send
 * z-commands) or at a newline; at eof what came counts as the answer.
 */
int
scan_clamd_parse(const char *p, size_t n, bool eof, struct scan_reply *r)
{
	static const char pre[] = "stream: ";
	const char *end = NULL;
	size_t i, l;

	scan_reply_init(r);
	for (i = 0; i < n && i < 4096; i++)
		if (p[i] == '\0' || p[i] == '\n') {
			end = p + i;
			break;
		}
	if (end == NULL) {
		if (n >= 4096)
			return scan_fault(r, "clamd answer too long");
		if (!eof)
			return 0;
		if (n == 0)
			return scan_fault(r, "clamd closed without an answer");
		end = p + n;
	}
	l = (size_t)(end - p);
	while (l > 0 && (p[l - 1] == '\r' || p[l - 1] == ' '))
		l--;
	if (l == 0)
		return scan_fault(r, "clamd sent an empty answer");
	if (scan_ends(p, l, "size limit exceeded. ERROR")) {
		r->verdict = SCAN_LIMIT;
		snprintf(r->what, sizeof(r->what), "INSTREAM size limit");
		return 1;
	}
	if (scan_ends(p, l, " ERROR")) {
		scan_printable(r->what, sizeof(r->what), p, l);
		r->verdict = SCAN_FAULT;
		return 1;
	}
	if (l < sizeof(pre) - 1 || memcmp(p, pre, sizeof(pre) - 1) != 0) {
		char shown[64];

		scan_printable(shown, sizeof(shown), p, l);
		return scan_fault(r, "clamd: unexpected answer \"%s\"", shown);
	}
	p += sizeof(pre) - 1;
	l -= sizeof(pre) - 1;
	if (l == 2 && memcmp(p, "OK", 2) == 0) {
		r->verdict = SCAN_CLEAN;
		return 1;
	}
	if (scan_ends(p, l, " FOUND") && l > 6) {
		l -= 6;
		for (i = 0; i < l; i++)
			if (p[i] <= ' ' || p[i] > '~')
				return scan_fault(r, "clamd: bad signature "
				                     "name");
		scan_printable(r->what, sizeof(r->what), p, l);
		r->verdict = SCAN_VIRUS;
		return 1;
	}
	{
		char shown[64];

		scan_printable(shown, sizeof(shown), p, l);
		return scan_fault(r, "clamd: unexpected answer \"%s\"", shown);
	}
}

/*
 * scan_head - find the end of a header block ("\r\n\r\n" or "\n\n") in
 * p[0..n): its length including the blank line, 0 if not yet there.
 */
static size_t
scan_head(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i + 1 < n; i++) {
		if (p[i] != '\n')
			continue;
		if (p[i + 1] == '\n')
			return i + 2;
		if (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* A cursor over the lines of a header block. */
struct scan_lines {
	const char *p, *end;
};

/* scan_line - the next line (CR/LF stripped) into *a,*l; false at the end */
static bool
scan_line(struct scan_lines *c, const char **a, size_t *l)
{
	const char *nl;

	if (c->p >= c->end)
		return false;
	nl = memchr(c->p, '\n', (size_t)(c->end - c->p));
	if (nl == NULL)
		nl = c->end;
	*a = c->p;
	*l = (size_t)(nl - c->p);
	if (*l > 0 && (*a)[*l - 1] == '\r')
		(*l)--;
	c->p = nl + 1;
	return true;
}

/* scan_hdr_value - if line a[0..l) is "name: value", the value (trimmed) */
static bool
scan_hdr_value(const char *a, size_t l, const char *name, char *out,
               size_t outlen)
{
	size_t nl = strlen(name), i;

	if (l <= nl || strncasecmp(a, name, nl) != 0 || a[nl] != ':')
		return false;
	for (i = nl + 1; i < l && (a[i] == ' ' || a[i] == '\t'); i++)
		;
	while (l > i && (a[l - 1] == ' ' || a[l - 1] == '\t'))
		l--;
	scan_printable(out, outlen, a + i, l - i);
	return true;
}

/* scan_content_length - digits into *v; false if none, junk or huge */
static bool
scan_content_length(const char *s, uint64_t *v)
{
	uint64_t n = 0;

	if (*s < '0' || *s > '9')
		return false;
	for (; *s >= '0' && *s <= '9'; s++) {
		n = n * 10 + (uint64_t)(*s - '0');
		if (n > SCAN_REPLY_MAX)
			return false;
	}
	*v = n;
	return *s == '\0';
}

/* scan_number - a decimal number (spamd's "5.0", "-0.1") into *v */
static bool
scan_number(const char *s, double *v)
{
	const char *p = s;
	char *end;

	if (*p == '-')
		p++;
	if (*p < '0' || *p > '9')
		return false;
	while ((*p >= '0' && *p <= '9') || *p == '.')
		p++;
	if (*p != '\0' && *p != ' ')
		return false;
	*v = strtod(s, &end);
	return end == p;
}

/* scan_symbols - "A,B,C" (printable, no spaces) from p[0..n) into r */
static void
scan_symbols_text(struct scan_reply *r, const char *p, size_t n)
{
	size_t i, o = 0;

	for (i = 0; i < n && o + 1 < sizeof(r->symbols); i++) {
		char c = p[i];

		if (c == '\r' || c == '\n' || c == ' ' || c == '\t')
			continue;
		r->symbols[o++] = (c > ' ' && c <= '~') ? c : '?';
	}
	r->symbols[o] = '\0';
}

/* scan_spamd_request - "SYMBOLS SPAMC/1.5" head for a len-byte message */
void
scan_spamd_request(struct buf *b, uint64_t len)
{
	char head[128];
	int n = snprintf(head, sizeof(head),
	                 "SYMBOLS SPAMC/1.5\r\nContent-length: %" PRIu64
	                 "\r\n\r\n",
	                 len);

	buf_append(b, head, (size_t)n);
}

/*
 * scan_spamd_parse - "SPAMD/1.1 0 EX_OK", headers (Spam:, Content-length:),
 * a blank line, the rule names.  spamd closes after its answer; a
 * Content-length lets us finish before that.
 */
int
scan_spamd_parse(const char *p, size_t n, bool eof, struct scan_reply *r)
{
	struct scan_lines c;
	size_t head, l = 0;
	const char *a = NULL;
	char val[128], spam[128] = "";
	uint64_t clen = 0;
	bool have_clen = false, have_spam = false;
	unsigned long code;
	char *end;

	scan_reply_init(r);
	if (n > SCAN_REPLY_MAX)
		return scan_fault(r, "spamd answer too long");
	head = scan_head(p, n);
	if (head == 0) {
		if (!eof)
			return 0;
		if (n == 0)
			return scan_fault(r, "spamd closed without an answer");
		/* A refusal ("SPAMD/1.0 76 Bad header line") may come
		 * without headers: read its status line below. */
		head = n;
	}
	c.p = p;
	c.end = p + head;
	if (!scan_line(&c, &a, &l) || l < 8 || memcmp(a, "SPAMD/", 6) != 0) {
		scan_printable(val, 48, a ? a : "", l);
		return scan_fault(r, "spamd: unexpected answer \"%s\"", val);
	}
	scan_printable(val, sizeof(val), a, l);
	a = strchr(val, ' ');
	if (a == NULL)
		return scan_fault(r, "spamd: bad status line");
	code = strtoul(a + 1, &end, 10);
	if (end == a + 1 || (*end != ' ' && *end != '\0'))
		return scan_fault(r, "spamd: bad status line");
	if (code != 0)
		return scan_fault(r, "spamd: %s", a + 1);
	while (scan_line(&c, &a, &l)) {
		if (l == 0)
			break;
		if (scan_hdr_value(a, l, "Content-length", val, sizeof(val))) {
			if (!scan_content_length(val, &clen))
				return scan_fault(r, "spamd: bad "
				                     "Content-length");
			have_clen = true;
		} else if (scan_hdr_value(a, l, "Spam", val, sizeof(val))) {
			snprintf(spam, sizeof(spam), "%s", val);
			have_spam = true;
		}
	}
	if (!have_spam)
		return scan_fault(r, "spamd: no Spam header");
	if (have_clen ? n - head < clen : !eof)
		return eof ? scan_fault(r, "spamd: answer cut short") : 0;
	/* "True ; 1000.0 / 5.0" */
	{
		char *semi = strchr(spam, ';'), *slash;
		char *w = spam;

		if (semi == NULL || (slash = strchr(semi, '/')) == NULL)
			return scan_fault(r, "spamd: bad Spam header");
		*semi = '\0';
		*slash = '\0';
		for (end = semi; end > w && end[-1] == ' ';)
			*--end = '\0';
		if (util_strcaseeq(w, "True") || util_strcaseeq(w, "Yes"))
			r->verdict = SCAN_SPAM;
		else if (util_strcaseeq(w, "False") || util_strcaseeq(w, "No"))
			r->verdict = SCAN_CLEAN;
		else
			return scan_fault(r, "spamd: bad Spam header");
		for (w = semi + 1; *w == ' '; w++)
			;
		for (end = slash; end > w && end[-1] == ' ';)
			*--end = '\0';
		if (!scan_number(w, &r->score))
			return scan_fault(r, "spamd: bad score");
		for (w = slash + 1; *w == ' '; w++)
			;
		if (!scan_number(w, &r->required))
			return scan_fault(r, "spamd: bad required score");
		r->has_score = true;
	}
	scan_symbols_text(r, p + head, have_clen ? (size_t)clen : n - head);
	snprintf(r->what, sizeof(r->what), "%s",
	         r->verdict == SCAN_SPAM ? "spam" : "ham");
	return 1;
}

/* scan_meta_value - append ": value" with control characters cut off */
static void
scan_put_header(struct buf *b, const char *name, const char *value)
{
	size_t l;

	if (value == NULL)
		return;
	for (l = 0; value[l] != '\0' && l < 512; l++)
		if ((unsigned char)value[l] < ' ' || value[l] == 0x7f)
			break;
	buf_append(b, name, strlen(name));
	buf_append(b, ": ", 2);
	buf_append(b, value, l);
	buf_append(b, "\r\n", 2);
}

/* scan_rspamd_request - the HTTP head of POST /checkv2 */
void
scan_rspamd_request(struct buf *b, const struct scan_meta *m, uint64_t len)
{
	char line[64];
	unsigned i;
	int n;

	n = snprintf(line, sizeof(line),
	             "POST /checkv2 HTTP/1.1\r\nContent-Length: %" PRIu64
	             "\r\n",
	             len);
	buf_append(b, line, (size_t)n);
	buf_append(b, "Host: rspamd\r\nConnection: close\r\n", 33);
	if (m->client && *m->client)
		scan_put_header(b, "IP", m->client);
	if (m->helo && *m->helo)
		scan_put_header(b, "Helo", m->helo);
	if (m->from && *m->from)
		scan_put_header(b, "From", m->from);
	for (i = 0; i < m->n_rcpt; i++)
		scan_put_header(b, "Rcpt", m->rcpt[i]);
	if (m->ptr && *m->ptr)
		scan_put_header(b, "Hostname", m->ptr);
	if (m->queue_id && *m->queue_id)
		scan_put_header(b, "Queue-Id", m->queue_id);
	buf_append(b, "\r\n", 2);
}

/* scan_field_name_ok - an RFC 5322 field name we are willing to add */
static bool
scan_field_name_ok(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
		      s[i] == '_'))
			return false;
	return i > 0 && i <= 64;
}

/* scan_add_header - "Name: value\r\n" into r->headers if it fits;
 * control characters in the value (CR, LF...) become spaces. */
static void
scan_add_header(struct scan_reply *r, const char *name, const char *value)
{
	size_t have = strlen(r->headers), need, i;
	char *o;

	if (!scan_field_name_ok(name))
		return;
	need = strlen(name) + 2 + strlen(value) + 2;
	if (have + need >= sizeof(r->headers))
		return;
	o = r->headers + have;
	o += sprintf(o, "%s: ", name);
	for (i = 0; value[i] != '\0'; i++)
		*o++ = ((unsigned char)value[i] < ' ' || value[i] == 0x7f)
		               ? ' '
		               : value[i];
	memcpy(o, "\r\n", 3);
}

/*
 * scan_rspamd_milter - "milter": {"add_headers": {"X-Spam": "Yes"}} with
 * each value a string, {"value": "...", "order": n} or an array of those.
 */
static void
scan_rspamd_milter(struct scan_reply *r, const char *s,
                   const struct json_tok *t, int milter)
{
	int add = json_get(s, t, milter, "add_headers");
	unsigned m;
	int k;

	if (add < 0 || t[add].type != JSON_OBJ)
		return;
	for (m = 0, k = add + 1; m < t[add].n; m++, k = (int)t[k + 1].next) {
		char name[80], value[512];
		int v = k + 1, e, last;
		unsigned j;

		if (!json_str(s, t, k, name, sizeof(name)))
			continue;
		if (t[v].type == JSON_ARR) {
			e = v + 1;
			last = (int)t[v].n;
		} else {
			e = v;
			last = 1;
		}
		for (j = 0; j < (unsigned)last; j++, e = (int)t[e].next) {
			int val = t[e].type == JSON_OBJ
			                  ? json_get(s, t, e, "value")
			                  : e;

			if (json_str(s, t, val, value, sizeof(value)))
				scan_add_header(r, name, value);
		}
	}
}

/* scan_rspamd_json - the /checkv2 JSON answer into r */
static int
scan_rspamd_json(struct scan_reply *r, const char *s, size_t n)
{
	/* Every token but the last takes at least 2 bytes ("1," or "[]"):
	 * no more than n / 2 + 1 can be needed. */
	unsigned max = n / 2 + 1 < SCAN_JSON_TOKENS ? (unsigned)(n / 2 + 1)
	                                            : SCAN_JSON_TOKENS;
	struct json_tok *t = xmalloc(max * sizeof(*t));
	char action[64];
	int nt, k, sym, rc = 1;
	unsigned m;
	size_t o = 0;

	nt = json_parse(s, n, t, max);
	if (nt < 0 || t[0].type != JSON_OBJ) {
		rc = scan_fault(r, "rspamd: %s",
		                nt == -E2BIG ? "answer too complex"
		                             : "answer is not a JSON object");
		goto out;
	}
	if ((k = json_get(s, t, 0, "error")) >= 0) {
		char e[96];

		json_str(s, t, k, e, sizeof(e));
		rc = scan_fault(r, "rspamd: %s", e);
		scan_printable(r->what, sizeof(r->what), r->what,
		               strlen(r->what));
		goto out;
	}
	if (!json_str(s, t, json_get(s, t, 0, "action"), action,
	              sizeof(action))) {
		rc = scan_fault(r, "rspamd: no action in the answer");
		goto out;
	}
	if (!strcmp(action, "no action"))
		r->verdict = SCAN_CLEAN;
	else if (!strcmp(action, "reject") || !strcmp(action, "discard") ||
	         !strcmp(action, "quarantine"))
		r->verdict = SCAN_SPAM;
	else if (!strcmp(action, "soft reject") || !strcmp(action, "greylist"))
		r->verdict = SCAN_SOFT;
	else if (!strcmp(action, "add header") ||
	         !strcmp(action, "rewrite subject"))
		r->verdict = SCAN_HEADER;
	else {
		char shown[64];

		scan_printable(shown, sizeof(shown), action, strlen(action));
		rc = scan_fault(r, "rspamd: unknown action \"%s\"", shown);
		goto out;
	}
	snprintf(r->what, sizeof(r->what), "%s", action);
	if (json_num(s, t, json_get(s, t, 0, "score"), &r->score) &&
	    json_num(s, t, json_get(s, t, 0, "required_score"), &r->required))
		r->has_score = true;
	sym = json_get(s, t, 0, "symbols");
	if (sym >= 0 && t[sym].type == JSON_OBJ) {
		for (m = 0, k = sym + 1; m < t[sym].n;
		     m++, k = (int)t[k + 1].next) {
			char name[96];
			size_t l;

			if (!json_str(s, t, k, name, sizeof(name)))
				continue;
			l = strlen(name);
			if (o + l + 2 >= sizeof(r->symbols))
				break;
			if (o > 0)
				r->symbols[o++] = ',';
			scan_printable(r->symbols + o, sizeof(r->symbols) - o,
			               name, l);
			o += l;
		}
	}
	if ((k = json_get(s, t, 0, "milter")) >= 0)
		scan_rspamd_milter(r, s, t, k);
	if (r->verdict == SCAN_HEADER && r->headers[0] == '\0')
		scan_add_header(r, "X-Spam", "Yes"); /* rspamd's own default */
out:
	free(t);
	return rc;
}

/* scan_rspamd_status - a non-200 answer: a fault, with rspamd's own
 * {"error": "..."} text when the body has one. */
static int
scan_rspamd_status(struct scan_reply *r, unsigned status, const char *s,
                   size_t n)
{
	struct json_tok t[64];
	char e[96] = "";

	if (json_parse(s, n, t, ARRAY_LEN(t)) > 0 && t[0].type == JSON_OBJ)
		json_str(s, t, json_get(s, t, 0, "error"), e, sizeof(e));
	scan_fault(r, "rspamd: HTTP status %u%s", status, e[0] ? ": " : "");
	scan_printable(r->what + strlen(r->what),
	               sizeof(r->what) - strlen(r->what), e, strlen(e));
	return 1;
}

/* scan_rspamd_parse - "HTTP/1.x 200", Content-Length, then the JSON */
int
scan_rspamd_parse(const char *p, size_t n, bool eof, struct scan_reply *r)
{
	struct scan_lines c;
	size_t head, l;
	const char *a;
	char val[128];
	uint64_t clen = 0;
	bool have_clen = false;
	unsigned status;

	scan_reply_init(r);
	if (n > SCAN_REPLY_MAX)
		return scan_fault(r, "rspamd answer too long");
	head = scan_head(p, n);
	if (head == 0)
		return eof ? scan_fault(r, n ? "rspamd: answer cut short"
		                             : "rspamd closed without an "
		                               "answer")
		           : 0;
	c.p = p;
	c.end = p + head;
	scan_line(&c, &a, &l);
	if (l < 12 || memcmp(a, "HTTP/1.", 7) != 0 || a[8] != ' ' ||
	    a[9] < '1' || a[9] > '5' || a[10] < '0' || a[10] > '9' ||
	    a[11] < '0' || a[11] > '9') {
		scan_printable(val, 48, a, l);
		return scan_fault(r, "rspamd: unexpected answer \"%s\"", val);
	}
	status = (unsigned)((a[9] - '0') * 100 + (a[10] - '0') * 10 +
	                    (a[11] - '0'));
	while (scan_line(&c, &a, &l)) {
		if (l == 0)
			break;
		if (scan_hdr_value(a, l, "Content-Length", val, sizeof(val))) {
			if (!scan_content_length(val, &clen))
				return scan_fault(r, "rspamd: bad "
				                     "Content-Length");
			have_clen = true;
		} else if (scan_hdr_value(a, l, "Transfer-Encoding", val,
		                          sizeof(val)) ||
		           scan_hdr_value(a, l, "Content-Encoding", val,
		                          sizeof(val))) {
			if (!util_strcaseeq(val, "identity"))
				return scan_fault(r,
				                  "rspamd: encoded answer "
				                  "(%s)",
				                  val);
		}
	}
	if (have_clen ? n - head < clen : !eof)
		return eof ? scan_fault(r, "rspamd: answer cut short") : 0;
	if (!have_clen)
		clen = n - head;
	if (status != 200)
		return scan_rspamd_status(r, status, p + head, (size_t)clen);
	return scan_rspamd_json(r, p + head, (size_t)clen);
}
