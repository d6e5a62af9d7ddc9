/*
 * fuzz_data.c - libFuzzer harness for the DATA scanner of smtp.c, with a
 * reference model as the oracle.
 *
 * Input layout: byte 0 = seed of the PRNG that cuts the rest into reads
 * (1..N bytes, N from the seed too, so that byte-by-byte and large reads
 * both happen); the rest is the message as the client sends it after the
 * 354.  The engine is taken through EHLO/MAIL/RCPT/DATA first.
 *
 * The reference: the data ends at the first CR LF "." CR LF of the input
 * (or at a "." CR LF that opens it); what comes before, minus the final
 * ".\r\n", is the body as sent.  Checked:
 *   - the engine ends the data exactly there (or not at all);
 *   - the body it hands over never contains an end of data ("\r\n.\r\n",
 *     or ".\r\n" at its start), has no bare CR or LF, and ends in CRLF
 *     when it is not empty (the canonical-output invariant);
 *   - bad_line_end is set exactly when the reference body has a bare CR
 *     or LF; line_too_long exactly when a line exceeds 1000 octets with
 *     its CRLF (for clean input); msg_size is the body length;
 *   - for clean input the body is the reference body, byte for byte.
 * Seeds: tests/fuzz/seeds/data/.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

struct owner {
	struct smtp e;
	struct buf body;
	int n_dot;
	struct smtp_args dot;
};

/* o_write - replies are not checked here */
static void
o_write(struct smtp *e, const char *buf, size_t len)
{
}

/* o_command - accept everything at once; remember the end of data */
static void
o_command(struct smtp *e, enum smtp_cmd cmd, const struct smtp_args *a)
{
	struct owner *o = container_of(e, struct owner, e);

	if (cmd == SMTP_CMD_DOT) {
		o->n_dot++;
		o->dot = *a;
		o->dot.path = NULL;
		o->dot.helo = NULL;
		return; /* left pending: later bytes are not data */
	}
	if (cmd != SMTP_CMD_RSET && cmd != SMTP_CMD_QUIT)
		smtp_accept(e);
}

/* o_body - collect */
static void
o_body(struct smtp *e, const char *buf, size_t len)
{
	struct owner *o = container_of(e, struct owner, e);

	buf_append(&o->body, buf, len);
}

/* o_violation - go on */
static int
o_violation(struct smtp *e, enum smtp_violation v)
{
	return 0;
}

/* o_close - nothing */
static void
o_close(struct smtp *e)
{
}

static const struct smtp_hooks o_hooks = {
        .write = o_write,
        .command = o_command,
        .body = o_body,
        .violation = o_violation,
        .close = o_close,
};

/* has_bare - a CR not followed by LF, or an LF not after a CR */
static bool
has_bare(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\r' && (i + 1 >= n || p[i + 1] != '\n'))
			return true;
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			return true;
	}
	return false;
}

/* has_long_line - a CRLF-terminated line over 1000 octets */
static bool
has_long_line(const char *p, size_t n)
{
	size_t start = 0;

	for (size_t i = 0; i + 1 < n; i++) {
		if (p[i] == '\r' && p[i + 1] == '\n') {
			if (i + 2 - start > 1000)
				return true;
			start = i + 2;
		}
	}
	return false; /* a clean body ends in CRLF: no tail */
}

/* feed - the client side, in reads of 1..max bytes */
static void
feed(struct owner *o, const char *p, size_t n, uint32_t *rng, size_t max)
{
	while (n > 0) {
		size_t chunk;

		*rng ^= *rng << 13;
		*rng ^= *rng >> 17;
		*rng ^= *rng << 5;
		chunk = 1 + *rng % max;
		if (chunk > n)
			chunk = n;
		smtp_input(&o->e, p, chunk);
		p += chunk;
		n -= chunk;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const setup[] = {
	        "EHLO c.example\r\n",
	        "MAIL FROM:<a@b.example>\r\n",
	        "RCPT TO:<c@d.example>\r\n",
	        "DATA\r\n",
	};
	struct owner o;
	const char *msg, *eod = NULL;
	size_t n, body_n = 0, max;
	uint32_t rng;
	bool end = false, bad;

	if (size < 1)
		return 0;
	memset(&o, 0, sizeof(o));
	smtp_init(&o.e, &o_hooks);
	o.e.sid = "F2";
	o.e.size_limit = 0; /* no cut: the body is complete */
	smtp_banner(&o.e);
	for (size_t i = 0; i < ARRAY_LEN(setup); i++)
		smtp_input(&o.e, setup[i], strlen(setup[i]));
	if (o.e.state != SMTP_ST_DATA)
		abort();
	rng = 0x2545f491u ^ data[0];
	max = (data[0] & 0x80) ? 1 + (data[0] & 7) : 1 + data[0] * 17;
	msg = (const char *)data + 1;
	n = size - 1;

	/* the reference end of data */
	if (n >= 3 && memcmp(msg, ".\r\n", 3) == 0) {
		eod = msg;
		end = true;
	} else {
		eod = memmem(msg, n, "\r\n.\r\n", 5);
		end = eod != NULL;
		if (end)
			eod += 2; /* the body keeps the CRLF */
	}
	body_n = end ? (size_t)(eod - msg) : n;

	feed(&o, msg, n, &rng, max);

	if (o.n_dot != (end ? 1 : 0))
		abort();
	/* canonical output, whatever the input */
	if (o.body.len >= 3 && memcmp(o.body.data, ".\r\n", 3) == 0)
		abort();
	if (o.body.len >= 5 && memmem(o.body.data, o.body.len, "\r\n.\r\n", 5))
		abort();
	if (end) {
		if (has_bare(o.body.data, o.body.len))
			abort();
		if (o.body.len > 0 &&
		    (o.body.len < 2 ||
		     memcmp(o.body.data + o.body.len - 2, "\r\n", 2) != 0))
			abort();
		bad = has_bare(msg, body_n);
		if (o.dot.bad_line_end != bad)
			abort();
		if (o.dot.msg_size != o.body.len || o.dot.too_big)
			abort();
		if (!bad) {
			if (o.body.len != body_n ||
			    (body_n > 0 &&
			     memcmp(o.body.data, msg, body_n) != 0))
				abort();
			if (o.dot.line_too_long != has_long_line(msg, body_n))
				abort();
		}
	}
	smtp_free(&o.e);
	buf_free(&o.body);
	return 0;
}
