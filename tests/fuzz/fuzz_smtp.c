/*
 * fuzz_smtp.c - libFuzzer harness for the SMTP engine (smtp.c, addr.c):
 * the input is a whole client session.
 *
 * Input layout: byte 0 = options (bit 0 offer STARTTLS, bit 1 a 200-byte
 * size limit, bit 2 max 3 recipients, bit 3 answer later rather than from
 * inside the hook, bits 4-7 how often the owner refuses), byte 1 = seed of
 * a small PRNG that cuts the rest into reads of 1..64 bytes and makes the
 * owner's choices.  The rest is what the client sends.
 *
 * The fake owner accepts (or refuses) every command, replies to the end
 * of data, starts "TLS" (smtp_tls_started) after a STARTTLS, and goes on
 * after violations (now and then it refuses and closes).  Checked on every run,
 * besides ASan/UBSan:
 *   - every write is one or more complete reply lines: "DDD" then ' ' or
 *     '-', CRLF-terminated, 3 digits first, no bare CR/LF inside;
 *   - nothing is written and no hook runs after the close hook;
 *   - the close hook runs at most once;
 *   - held input stays under the cap (8 KiB + a read);
 *   - the body of each message never holds an end of data;
 *   - addr.c round trip: the client bytes (up to a NUL) as a path; if it
 *     parses, addr_format() of it parses again to the same path.
 * Seeds: tests/fuzz/seeds/smtp/.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

struct owner {
	struct smtp e;
	uint32_t rng;
	unsigned refuse; /* 0..15: refuse when rng % 16 < refuse */
	bool defer;
	bool answer_due; /* deferred: answer before the next read */
	bool tls_due;    /* STARTTLS accepted: "handshake" next */
	int closed;
	/* the last bytes of the body: is an end of data in it? */
	char tail[5];
	size_t tail_len;
	uint64_t body_len;
};

/* rnd - xorshift32 */
static uint32_t
rnd(struct owner *o)
{
	o->rng ^= o->rng << 13;
	o->rng ^= o->rng >> 17;
	o->rng ^= o->rng << 5;
	return o->rng;
}

/* check_reply - one write: complete reply lines only */
static void
check_reply(const char *buf, size_t len)
{
	size_t i = 0;

	if (len < 5 || buf[len - 2] != '\r' || buf[len - 1] != '\n')
		abort();
	while (i < len) {
		const char *lf = memchr(buf + i, '\n', len - i);
		size_t n;

		if (lf == NULL)
			abort();
		n = lf - (buf + i) + 1;
		if (n < 5 || buf[i] < '2' || buf[i] > '5' || buf[i + 1] < '0' ||
		    buf[i + 1] > '9' || buf[i + 2] < '0' || buf[i + 2] > '9' ||
		    (buf[i + 3] != ' ' && buf[i + 3] != '-' && n != 5) ||
		    buf[i + n - 2] != '\r')
			abort();
		for (size_t k = i; k < i + n - 2; k++)
			if (buf[k] == '\r' || buf[k] == '\n')
				abort();
		i += n;
	}
}

/* o_write - the client side: replies must be well formed */
static void
o_write(struct smtp *e, const char *buf, size_t len)
{
	struct owner *o = container_of(e, struct owner, e);

	if (o->closed)
		abort();
	check_reply(buf, len);
}

/* o_answer - accept or refuse the pending command */
static void
o_answer(struct owner *o)
{
	struct smtp *e = &o->e;

	if (!e->waiting)
		return;
	if (e->pending == SMTP_CMD_DOT) {
		smtp_reply(e, (rnd(o) & 1) != 0, "250 2.0.0 Ok: queued");
		return;
	}
	if (rnd(o) % 16 < o->refuse) {
		if (rnd(o) % 8 == 0)
			smtp_close_reply(e, "421 4.3.0 Closing [id=F]");
		else
			smtp_reply(e, false,
			           "550-5.7.1 No\r\n550 5.7.1 Still no");
		return;
	}
	if (e->pending == SMTP_CMD_STARTTLS)
		o->tls_due = true;
	if (rnd(o) & 1)
		smtp_accept(e);
	else
		smtp_reply(e, true,
		           e->pending == SMTP_CMD_DATA ? "354 Go ahead"
		                                       : "250 2.0.0 Fine");
}

/* o_command - record and answer now or later */
static void
o_command(struct smtp *e, enum smtp_cmd cmd, const struct smtp_args *a)
{
	struct owner *o = container_of(e, struct owner, e);

	if (o->closed)
		abort();
	if (a->path != NULL) {
		char s[600];

		addr_format(a->path, s, sizeof(s));
		if (strlen(a->path->local) > 64 ||
		    strlen(a->path->domain) > 255)
			abort();
	}
	if (cmd == SMTP_CMD_DATA) {
		o->tail_len = 0;
		o->body_len = 0;
	}
	if (cmd == SMTP_CMD_DOT) {
		/* a non-empty canonical body ends in CRLF unless cut */
		if (o->body_len > 0 && !a->too_big &&
		    (o->tail_len < 2 ||
		     memcmp(o->tail + o->tail_len - 2, "\r\n", 2) != 0))
			abort();
	}
	if (cmd == SMTP_CMD_RSET || cmd == SMTP_CMD_QUIT)
		return;
	if (o->defer)
		o->answer_due = true;
	else
		o_answer(o);
}

/* o_body - no end of data may pass, even across calls */
static void
o_body(struct smtp *e, const char *buf, size_t len)
{
	struct owner *o = container_of(e, struct owner, e);
	char w[5 + 5];

	if (o->closed || len == 0)
		abort();
	for (size_t i = 0; i < len; i++) {
		size_t n;

		/* slide a 5-byte window */
		memcpy(w, o->tail, o->tail_len);
		w[o->tail_len] = buf[i];
		n = o->tail_len + 1;
		if (n > 5) {
			memmove(w, w + 1, 5);
			n = 5;
		}
		if (n == 5 && memcmp(w, "\r\n.\r\n", 5) == 0)
			abort();
		if (o->body_len + i + 1 == 3 &&
		    memcmp(w + n - 3, ".\r\n", 3) == 0)
			abort();
		memcpy(o->tail, w, n);
		o->tail_len = n;
	}
	o->body_len += len;
}

/* o_violation - mostly log and go on; sometimes refuse and close */
static int
o_violation(struct smtp *e, enum smtp_violation v)
{
	struct owner *o = container_of(e, struct owner, e);

	if (o->closed)
		abort();
	if (rnd(o) % 16 == 0) {
		smtp_close_reply(e, "554 5.5.0 No pipelining [id=F1]");
		return -1;
	}
	return 0;
}

/* o_close - once */
static void
o_close(struct smtp *e)
{
	struct owner *o = container_of(e, struct owner, e);

	if (o->closed++)
		abort();
}

static const struct smtp_hooks o_hooks = {
        .write = o_write,
        .command = o_command,
        .body = o_body,
        .violation = o_violation,
        .close = o_close,
};

/* addr_round_trip - parse, format, parse again: the same path */
static void
addr_round_trip(const uint8_t *data, size_t size)
{
	char text[1024], fmt[1024];
	struct mailpath p, q;
	const char *end;
	int r, r2;

	if (size >= sizeof(text))
		size = sizeof(text) - 1;
	memcpy(text, data, size);
	text[size] = '\0';
	r = addr_parse_path(text, &p, &end);
	if (r == ADDR_ESYNTAX || r == ADDR_ETOOLONG || p.null)
		return;
	if (end <= text || end > text + size || end[-1] != '>')
		abort();
	fmt[0] = '<';
	addr_format(&p, fmt + 1, sizeof(fmt) - 2);
	strcat(fmt, ">");
	r2 = addr_parse_path(fmt, &q, &end);
	if (r == ADDR_EROUTE)
		r = (p.quoted && strchr(p.local, '@')) ||
		                    strpbrk(p.local, "%!") != NULL
		            ? ADDR_ERELAY
		            : ADDR_OK;
	if (r2 != r)
		abort();
	if (*end != '\0' || strcmp(p.local, q.local) != 0 ||
	    strcmp(p.domain, q.domain) != 0 || p.quoted != q.quoted)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct owner o;
	const char *p;
	size_t n;
	bool greeted = false;

	if (size < 2)
		return 0;
	addr_round_trip(data + 2, size - 2);
	memset(&o, 0, sizeof(o));
	smtp_init(&o.e, &o_hooks);
	o.e.hostname = "mx.example.com";
	o.e.sid = "F1";
	o.e.tls_offer = data[0] & 1;
	o.e.size_limit = (data[0] & 2) ? 200 : 0;
	o.e.max_rcpt = (data[0] & 4) ? 3 : 100;
	o.defer = (data[0] & 8) != 0;
	o.refuse = data[0] >> 4;
	o.rng = 0x9e3779b9u ^ data[1];
	p = (const char *)data + 2;
	n = size - 2;
	/* Sometimes the client talks before the banner. */
	if ((rnd(&o) & 3) != 0) {
		smtp_banner(&o.e);
		greeted = true;
	}
	while (n > 0 && o.e.state != SMTP_ST_CLOSED) {
		size_t chunk = 1 + rnd(&o) % 64;

		if (chunk > n)
			chunk = n;
		smtp_input(&o.e, p, chunk);
		p += chunk;
		n -= chunk;
		if (o.e.in.len > 8192 + 64)
			abort();
		if (!greeted) {
			smtp_banner(&o.e);
			greeted = true;
		}
		if (o.answer_due && o.e.state != SMTP_ST_CLOSED) {
			o.answer_due = false;
			o_answer(&o);
		}
		if (o.tls_due && !o.e.waiting && o.e.state != SMTP_ST_CLOSED) {
			o.tls_due = false;
			smtp_tls_started(&o.e);
		}
	}
	smtp_free(&o.e);
	return 0;
}
