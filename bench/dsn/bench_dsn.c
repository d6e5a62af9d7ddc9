/*
 * bench_dsn.c - CPU and memory of the DSN scanner (proxy/dsn.c) per
 * message: a 5 KB bounce (sisimai lhost-postfix-03, padded with a
 * returned body to 5 KB) and a 10 MB bounce whose returned message is a
 * multipart/mixed holding a base64 attachment and a nested message/rfc822
 * (itself with a quoted-printable part), each with the reference (our
 * Message-ID) at the worst place - the innermost returned header, after
 * the 10 MB - and without any (the scanner reads everything).  Fed in
 * 4 KiB reads, as the session's body tap does.
 *
 *   bench_dsn CORPUS_DIR [REPEAT]
 * Prints one line per case: bytes, ns per message, MB/s, heap bytes.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy.h"

static struct config cfg;

static bool
ours_cb(void *arg, const char *id, size_t n)
{
	return dsn_id_ours(&cfg, id, n);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* bench - scan msg repeat times; prints the figures. */
static void
bench(const char *name, const struct buf *msg, int repeat, bool want)
{
	struct dsn_result r;
	struct mallinfo2 a, b;
	size_t heap = 0, i;
	double t0, t1;
	int k;

	t0 = now_s();
	for (k = 0; k < repeat; k++) {
		a = mallinfo2();
		struct dsn_scan *d = dsn_scan_new(ours_cb, NULL);
		b = mallinfo2();
		heap = b.uordblks - a.uordblks;
		for (i = 0; i < msg->len; i += 4096)
			dsn_scan_feed(d, msg->data + i,
			              msg->len - i < 4096 ? msg->len - i
			                                  : 4096);
		dsn_scan_end(d, &r);
		dsn_scan_free(d);
	}
	t1 = now_s();
	if (r.referenced != want) {
		fprintf(stderr, "%s: referenced %d, want %d\n", name,
		        r.referenced, want);
		exit(1);
	}
	printf("%-34s %9zu bytes %12.0f ns/msg %8.1f MB/s heap %zu B "
	       "kind=%s ref=%d\n",
	       name, msg->len, (t1 - t0) / repeat * 1e9,
	       msg->len * (double)repeat / (t1 - t0) / 1e6, heap,
	       dsn_kind_name(r.kind), r.referenced);
}

static void
add(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

/* big - the 10 MB bounce; id is the innermost returned Message-ID. */
static void
big(struct buf *b, const char *id)
{
	char line[80];
	size_t i;

	add(b,
	    "From: Mail Delivery System <MAILER-DAEMON@mx.far.example>\r\n"
	    "Subject: Undelivered Mail Returned to Sender\r\n"
	    "Message-ID: <20260101.AB@mx.far.example>\r\n"
	    "MIME-Version: 1.0\r\nContent-Type: multipart/report; "
	    "report-type=delivery-status;\r\n\tboundary=\"R1\"\r\n\r\n"
	    "--R1\r\nContent-Type: text/plain\r\n\r\n"
	    "I'm sorry to have to inform you that your message could "
	    "not\r\nbe delivered.\r\n\r\n--R1\r\nContent-Type: "
	    "message/delivery-status\r\n\r\nReporting-MTA: dns; "
	    "mx.far.example\r\n\r\nFinal-Recipient: rfc822; "
	    "bob@far.example\r\nAction: failed\r\nStatus: 5.2.2\r\n\r\n"
	    "--R1\r\nContent-Type: message/rfc822\r\n\r\n"
	    "From: alice@sender.example\r\nTo: bob@far.example\r\n"
	    "Subject: the big file\r\nMessage-ID: <outer.1@sender.example>\r\n"
	    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; "
	    "boundary=\"M2\"\r\n\r\n--M2\r\nContent-Type: text/plain\r\n\r\n"
	    "see attached\r\n--M2\r\nContent-Type: application/pdf\r\n"
	    "Content-Transfer-Encoding: base64\r\n\r\n");
	memset(line, 'Q', 76);
	memcpy(line + 76, "\r\n", 2);
	for (i = 0; i < 10 * 1000 * 1000 / 78; i++)
		buf_append(b, line, 78);
	add(b, "--M2\r\nContent-Type: message/rfc822\r\n\r\n"
	       "From: carol@sender.example\r\nSubject: fwd\r\n"
	       "Content-Type: multipart/alternative; boundary=A3\r\n\r\n"
	       "--A3\r\nContent-Type: text/plain\r\n"
	       "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
	       "caf=C3=A9 au lait, soft =\r\nbreak\r\n--A3\r\n"
	       "Content-Type: text/rfc822-headers\r\n\r\n");
	add(b, "Message-ID: ");
	add(b, id);
	add(b, "\r\n\r\n--A3--\r\n--M2--\r\n--R1--\r\n");
}

/* b64 - base64 of p[0..n) in 76-column CRLF lines, appended to b. */
static void
b64(struct buf *b, const char *p, size_t n)
{
	static const char al[] =
	        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	        "0123456789+/";
	char out[80];
	size_t i, o = 0;
	uint32_t v;

	for (i = 0; i < n; i += 3) {
		v = (uint32_t)(unsigned char)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)(unsigned char)p[i + 1] << 8;
		if (i + 2 < n)
			v |= (unsigned char)p[i + 2];
		out[o++] = al[v >> 18 & 63];
		out[o++] = al[v >> 12 & 63];
		out[o++] = i + 1 < n ? al[v >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? al[v & 63] : '=';
		if (o == 76 || i + 3 >= n) {
			out[o++] = '\r';
			out[o++] = '\n';
			buf_append(b, out, o);
			o = 0;
		}
	}
}

/* big64 - a 10 MB bounce whose returned message is base64 (decoded by
 * the scanner: its worst case), the id at its end. */
static void
big64(struct buf *b, const char *id)
{
	struct buf inner = {0};
	char line[80];
	size_t i;

	add(&inner, "From: alice@sender.example\r\nSubject: text\r\n\r\n");
	memset(line, 't', 76);
	memcpy(line + 76, "\r\n", 2);
	for (i = 0; i < 7400 * 1000 / 78; i++)
		buf_append(&inner, line, 78);
	add(&inner, "--\r\n> Message-ID: ");
	add(&inner, id);
	add(&inner, "\r\n");
	add(b, "From: MAILER-DAEMON@mx.far.example\r\nMIME-Version: 1.0\r\n"
	       "Content-Type: multipart/report; report-type=delivery-status; "
	       "boundary=R\r\n\r\n--R\r\nContent-Type: message/rfc822\r\n"
	       "Content-Transfer-Encoding: base64\r\n\r\n");
	b64(b, inner.data, inner.len);
	add(b, "--R--\r\n");
	buf_free(&inner);
}

int
main(int argc, char **argv)
{
	static char *dom[] = {"ours.test", NULL};
	struct buf small = {0}, s2 = {0}, b1 = {0}, b2 = {0};
	char path[512], tmp[4096];
	int repeat = argc > 2 ? atoi(argv[2]) : 1;
	FILE *f;
	size_t n;
	char *p;

	cfg.hostname = "mx.ours.test";
	cfg.local_domains.v = dom;
	cfg.local_domains.n = 1;
	snprintf(path, sizeof(path), "%s/eml/lhost-postfix-03.eml",
	         argc > 1 ? argv[1] : ".");
	f = fopen(path, "rb");
	if (f == NULL) {
		perror(path);
		return 1;
	}
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		buf_append(&small, tmp, n);
	fclose(f);
	/* pad the returned body to 5 KB, before the closing boundary */
	buf_append(&small, "", 1);
	p = strstr(small.data, "\n\n--");
	while (small.len < 5000 && p != NULL) {
		size_t off = (size_t)(p - small.data) + 1;
		const char *pad = "padding line of the returned message body\n";

		buf_append(&s2, small.data, off);
		while (s2.len + (small.len - off) < 5000)
			add(&s2, pad);
		buf_append(&s2, small.data + off, small.len - 1 - off);
		break;
	}
	bench("5KB bounce, not ours (refused)", &s2, repeat * 2000, false);
	/* the same, returned id moved to ours */
	{
		struct buf s3 = {0};
		const char *id =
		        "<20140701000000.000000000000@e1.example.ne.jp>";
		char *q;

		buf_append(&s2, "", 1);
		q = strstr(s2.data, id);
		buf_append(&s3, s2.data, (size_t)(q - s2.data));
		add(&s3, "<20140701000000.000000000000@ours.test>");
		add(&s3, q + strlen(id));
		bench("5KB bounce, ours (accepted)", &s3, repeat * 2000, true);
		buf_free(&s3);
	}
	big(&b1, "<inner.1@far.example>");
	bench("10MB nested bounce, not ours", &b1, repeat, false);
	big(&b2, "<inner.1@mail.ours.test>");
	bench("10MB nested bounce, ours at end", &b2, repeat, true);
	b1.len = b2.len = 0;
	big64(&b1, "<inner.2@far.example>");
	bench("10MB base64 returned msg, not ours", &b1, repeat, false);
	big64(&b2, "<inner.2@ours.test>");
	bench("10MB base64 returned msg, ours", &b2, repeat, true);
	buf_free(&small);
	buf_free(&s2);
	buf_free(&b1);
	buf_free(&b2);
	return 0;
}
