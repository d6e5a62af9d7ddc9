/*
 * test_dsn.c - the DSN scanner: hand cases (auto-replies, read receipts,
 * base64 and quoted-printable returned parts, nested multiparts, folded
 * and odd-case fields, caps) and every bounce of the sisimai sample set
 * (tests/unit/data/../shared path, see DSN_CORPUS), each as it came (no
 * reference: refused) and with its returned Message-ID moved into one of
 * our domains (accepted).  Every case is fed whole, one byte at a time,
 * in pieces of 7 and in pseudo-random pieces, with LF and CRLF lines.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>

#include "proxy.h"
#include "t.h"

#ifndef DSN_CORPUS
#define DSN_CORPUS "/work/shared/data/dsn-bounces-sisimai"
#endif

static struct config cfg;

/* ours_cb - the domain rule of the test config. */
static bool
ours_cb(void *arg, const char *id, size_t n)
{
	return dsn_id_ours(&cfg, id, n);
}

/* sent_cb - dsn_reference = sent: only ids in a fixed set. */
static bool
sent_cb(void *arg, const char *id, size_t n)
{
	const char *const *set = arg;

	for (; *set != NULL; set++)
		if (strlen(*set) == n && strncasecmp(*set, id, n) == 0)
			return true;
	return false;
}

/* scan - text fed in pieces of step bytes (0: whole, (size_t)-1: random). */
static void
scan(const char *text, size_t n, size_t step, dsn_match_fn fn, void *arg,
     struct dsn_result *r)
{
	struct dsn_scan *d = dsn_scan_new(fn, arg);
	size_t i = 0, k;
	unsigned seed = 11;

	while (i < n) {
		seed = seed * 1103515245u + 12345u;
		k = step == 0            ? n
		    : step == (size_t)-1 ? 1 + (seed >> 16) % 61
		                         : step;
		if (k > n - i)
			k = n - i;
		dsn_scan_feed(d, text + i, k);
		i += k;
	}
	dsn_scan_end(d, r);
	dsn_scan_free(d);
}

/* to_crlf - a copy of text with every LF as CRLF (bare CRs left). */
static char *
to_crlf(const char *text, size_t n, size_t *outn)
{
	char *o = xmalloc(2 * n + 1);
	size_t i, j = 0;

	for (i = 0; i < n; i++) {
		if (text[i] == '\n' && (i == 0 || text[i - 1] != '\r'))
			o[j++] = '\r';
		o[j++] = text[i];
	}
	o[j] = '\0';
	*outn = j;
	return o;
}

static const size_t steps[] = {0, 1, 7, (size_t)-1};

/* check_all - every feeding, LF and CRLF: the same verdict. */
static void
check_all(const char *text, size_t n, dsn_match_fn fn, void *arg, bool want_ref,
          int want_kind)
{
	struct dsn_result r;
	char *crlf;
	size_t cn, s;
	int pass;

	crlf = to_crlf(text, n, &cn);
	for (pass = 0; pass < 2; pass++) {
		for (s = 0; s < ARRAY_LEN(steps); s++) {
			scan(pass ? crlf : text, pass ? cn : n, steps[s], fn,
			     arg, &r);
			T_CHECK(r.referenced == want_ref,
			        "%s step %zd: referenced got %d, want %d "
			        "(first id \"%s\", %u ids)",
			        pass ? "crlf" : "lf", (ssize_t)steps[s],
			        r.referenced, want_ref, r.first, r.ids);
			if (want_kind >= 0)
				T_CHECK((int)r.kind == want_kind,
				        "%s step %zd: kind got %s, want %s",
				        pass ? "crlf" : "lf", (ssize_t)steps[s],
				        dsn_kind_name(r.kind),
				        dsn_kind_name(want_kind));
		}
	}
	free(crlf);
}

struct tcase {
	const char *name;
	const char *text;
	bool ref;
	int kind; /* enum dsn_kind, -1: any */
};

/* clang-format off */
static const struct tcase cases[] = {
	{"auto-reply with In-Reply-To of ours",
	 "From: bob@far.example\nTo: a@ours.test\nSubject: Out of office\n"
	 "Auto-Submitted: auto-replied\nIn-Reply-To: <abc.123@ours.test>\n"
	 "Message-ID: <r1@far.example>\n\nI am away.\n",
	 true, DSN_KIND_AUTOREPLY},
	{"auto-reply without a reference",
	 "From: bob@far.example\nSubject: Automatic reply: hi\n"
	 "In-Reply-To: <abc.123@elsewhere.example>\n\nAway.\n",
	 false, DSN_KIND_AUTOREPLY},
	{"vacation marker X-Autoreply, References folded, odd case",
	 "From: bob@far.example\nX-Autoreply: yes\nREFERENCES: <a@x.example>\n"
	 "\t<b@y.example>\n   <Z9@Mail.OURS.Test>\nSubject: Re: hi\n\nAway\n",
	 true, DSN_KIND_AUTOREPLY},
	{"the notification's own Message-ID does not count",
	 "From: MAILER-DAEMON@ours.test\nSubject: Undelivered Mail\n"
	 "Message-ID: <dsn1@ours.test>\n\nsorry\n",
	 false, DSN_KIND_LEGACY},
	{"read receipt: Original-Message-ID in the disposition part",
	 "From: bob@far.example\nSubject: Read: hi\nMIME-Version: 1.0\n"
	 "Content-Type: multipart/report; report-type=disposition-notification;"
	 "\n\tboundary=\"RR\"\n\n--RR\nContent-Type: text/plain\n\nread it\n"
	 "--RR\nContent-Type: message/disposition-notification\n\n"
	 "Reporting-UA: x; y\nOriginal-Recipient: rfc822;bob@far.example\n"
	 "Final-Recipient: rfc822;bob@far.example\n"
	 "Original-Message-ID: <m42@ours.test>\n"
	 "Disposition: manual-action/MDN-sent-manually; displayed\n--RR--\n",
	 true, DSN_KIND_MDN},
	{"read receipt of someone else's message",
	 "From: bob@far.example\nMIME-Version: 1.0\n"
	 "Content-Type: multipart/report; report-type=disposition-notification;"
	 " boundary=RR\n\n--RR\nContent-Type: message/disposition-notification"
	 "\n\nOriginal-Message-ID: <m42@far.example>\n--RR--\n",
	 false, DSN_KIND_MDN},
	{"base64 message/rfc822 returned part",
	 "From: MAILER-DAEMON@far.example\nMIME-Version: 1.0\n"
	 "Content-Type: multipart/report; report-type=delivery-status; "
	 "boundary=\"b1\"\n\n--b1\nContent-Type: text/plain\n\nfailed\n--b1\n"
	 "Content-Type: message/delivery-status\n\nAction: failed\n--b1\n"
	 "Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n"
	 /* "From: a@ours.test\r\nMessage-ID: <b64.1@ours.test>\r\n\r\nhi\r\n" */
	 "RnJvbTogYUBvdXJzLnRlc3QNCk1lc3NhZ2UtSUQ6IDxiNjQuMUBvdXJzLnRlc3Q+DQoN\n"
	 "CmhpDQo=\n--b1--\n",
	 true, DSN_KIND_REPORT},
	{"quoted-printable text/rfc822-headers, soft break inside the id",
	 "From: MAILER-DAEMON@far.example\nMIME-Version: 1.0\n"
	 "Content-Type: multipart/report; report-type=delivery-status; "
	 "boundary=b2\n\n--b2\nContent-Type: text/rfc822-headers\n"
	 "Content-Transfer-Encoding: quoted-printable\n\n"
	 "Subject: =3D hello\nMessage-ID: <qp.7@mail.our=\ns.test>\n\n--b2--\n",
	 true, DSN_KIND_REPORT},
	{"message/global-headers, Message-Id in odd case and folded",
	 "From: MAILER-DAEMON@far.example\nMIME-Version: 1.0\n"
	 "Content-Type: multipart/report; report-type=delivery-status; "
	 "boundary=g\n\n--g\nContent-Type: message/global-delivery-status\n\n"
	 "Action: failed\n--g\nContent-Type: message/global-headers\n\n"
	 "mESSAGE-iD:\n   <g.1@OURS.TEST>\n\n--g--\n",
	 true, DSN_KIND_REPORT},
	{"nested: mixed > report > rfc822 > alternative > rfc822",
	 "From: MAILER-DAEMON@far.example\nMIME-Version: 1.0\n"
	 "Content-Type: multipart/mixed; boundary=outer\n\n--outer\n"
	 "Content-Type: multipart/report; report-type=delivery-status; "
	 "boundary=\"outer-report\"\n\n--outer-report\n"
	 "Content-Type: text/plain\n\nno\n--outer-report\n"
	 "Content-Type: message/rfc822\n\nFrom: x@far.example\n"
	 "Message-ID: <fwd@far.example>\nContent-Type: multipart/alternative;"
	 " boundary=alt\n\n--alt\nContent-Type: text/plain\n\nforwarded\n"
	 "--alt\nContent-Type: message/rfc822\n\n"
	 "Message-ID: <deep.9@ours.test>\n\ninner\n--alt--\n"
	 "--outer-report--\n--outer--\n",
	 true, DSN_KIND_REPORT},
	{"nested, no reference; the boundary prefix is not a boundary",
	 "From: MAILER-DAEMON@far.example\nMIME-Version: 1.0\n"
	 "Content-Type: multipart/mixed; boundary=ab\n\n--ab\n"
	 "Content-Type: multipart/mixed; boundary=abc\n\n--abc\n"
	 "Content-Type: message/rfc822\n\nMessage-ID: <x@far.example>\n\n"
	 "--abc\nContent-Type: application/octet-stream\n\n--abcd\n"
	 "Content-Type: message/rfc822\n\nMessage-ID: <y@ours.test>\n\n"
	 "--abc--\n--ab--\n",
	 false, DSN_KIND_LEGACY},
	{"legacy text bounce quoting the original, '>' quoted",
	 "From: Mail Delivery Subsystem <MAILER-DAEMON@far.example>\n"
	 "Subject: Returned mail: see transcript\n\n"
	 "   ----- Original message follows -----\n\n"
	 "> Received: from x\n>  Message-Id: <q1@ours.test>\n> Subject: hi\n",
	 true, DSN_KIND_LEGACY},
	{"qmail-style failure notice without our id",
	 "From: MAILER-DAEMON@far.example\nSubject: failure notice\n\n"
	 "Hi. This is the qmail-send program.\n"
	 "--- Below this line is a copy of the message.\n\n"
	 "Message-ID: <forged@spam.example>\nFrom: a@ours.test\n",
	 false, DSN_KIND_LEGACY},
	{"subdomain lookalikes are not ours",
	 "From: MAILER-DAEMON@far.example\n\nMessage-ID: <a@evilours.test>\n"
	 "Message-ID: <b@ours.test.evil.example>\nMessage-ID: <ours.test@x>\n",
	 false, DSN_KIND_LEGACY},
	{"dsn_msgid_domains: the Exchange server's internal name",
	 "Subject: Undeliverable: hi\n\nMessage-ID: "
	 "<0A1B@EXCH01.corp.internal>\n",
	 true, DSN_KIND_LEGACY},
	{"hostname counts",
	 "X-Failed-Recipients: a@b\n\nIn-Reply-To: <z@mx.ours.test>\n",
	 true, DSN_KIND_LEGACY},
	{"Message-ID without angle brackets",
	 "Subject: Undeliverable\nContent-Type: text/rfc822-headers\n\n"
	 "Message-ID: 2014.1@ours.test\n",
	 true, DSN_KIND_LEGACY},
	{"base64 inside base64 (two decoding layers)",
	 "From: MAILER-DAEMON@far.example\nMIME-Version: 1.0\n"
	 "Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n"
	 /* "Content-Type: message/rfc822\r\nContent-Transfer-Encoding:
	  * base64\r\n\r\n" + b64("Message-ID: <two@ours.test>\r\n\r\nx\r\n") */
	 "Q29udGVudC1UeXBlOiBtZXNzYWdlL3JmYzgyMg0KQ29udGVudC1UcmFuc2Zlci1FbmNv\n"
	 "ZGluZzogYmFzZTY0DQoNClRXVnpjMkZuWlMxSlJEb2dQSFIzYjBCdmRYSnpMblJsYzNR\n"
	 "K0RRb05DbmdOQ2c9PQ0K\n",
	 true, -1},
	{"an attachment is not looked into",
	 "From: MAILER-DAEMON@far.example\nMIME-Version: 1.0\n"
	 "Content-Type: multipart/mixed; boundary=z\n\n--z\n"
	 "Content-Type: application/octet-stream\n\n"
	 "Message-ID: <att@ours.test>\n--z--\n",
	 false, DSN_KIND_LEGACY},
	{"empty message", "", false, DSN_KIND_OTHER},
	{"headers only, no body, no newline at the end",
	 "Subject: hi\nIn-Reply-To: <end@ours.test>", true, DSN_KIND_OTHER},
};
/* clang-format on */

/* test_hand - the table. */
static void
test_hand(void)
{
	size_t i;

	for (i = 0; i < ARRAY_LEN(cases); i++) {
		t_begin(cases[i].name);
		check_all(cases[i].text, strlen(cases[i].text), ours_cb, NULL,
		          cases[i].ref, cases[i].kind);
		t_end();
	}
}

/* test_sent - dsn_reference = sent: an id in our domain that never left
 * is not a reference; one that did is. */
static void
test_sent(void)
{
	static const char *const set[] = {"left.1@ours.test", NULL};
	const char *a = "Subject: Undeliverable\n\nMessage-ID: "
	                "<LEFT.1@ours.test>\n";
	const char *b = "Subject: Undeliverable\n\nMessage-ID: "
	                "<forged.1@ours.test>\n";

	t_begin("dsn_reference = sent: a recorded id passes");
	check_all(a, strlen(a), sent_cb, (void *)set, true, DSN_KIND_LEGACY);
	t_end();
	t_begin("dsn_reference = sent: a made-up id in our domain does not");
	check_all(b, strlen(b), sent_cb, (void *)set, false, DSN_KIND_LEGACY);
	t_end();
}

/* test_huge - a 10 MiB returned part: bounded, and still decided. */
static void
test_huge(void)
{
	struct buf b = {0};
	struct dsn_result r;
	const char *head =
	        "From: MAILER-DAEMON@far.example\nMIME-Version: 1.0\n"
	        "Content-Type: multipart/report; report-type=delivery-status; "
	        "boundary=H\n\n--H\nContent-Type: message/rfc822\n\n"
	        "Subject: big\n\n";
	const char *tail = "--H\nContent-Type: text/rfc822-headers\n\n"
	                   "Message-ID: <after.big@ours.test>\n\n--H--\n";
	char line[120];
	size_t i;

	buf_append(&b, head, strlen(head));
	memset(line, 'x', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\n';
	for (i = 0; i < 10 * 1024 * 1024 / sizeof(line); i++)
		buf_append(&b, line, sizeof(line));
	/* and one 3 MiB line without a break */
	memset(line, 'y', sizeof(line));
	for (i = 0; i < 3 * 1024 * 1024 / sizeof(line); i++)
		buf_append(&b, line, sizeof(line));
	buf_append(&b, "\n", 1);
	buf_append(&b, tail, strlen(tail));
	t_begin("huge returned part, then the reference");
	scan(b.data, b.len, 0, ours_cb, NULL, &r);
	T_CHECK(r.referenced, "not referenced (first \"%s\")", r.first);
	T_INTEQ(r.bytes, b.len);
	scan(b.data, b.len, 4096, ours_cb, NULL, &r);
	T_CHECK(r.referenced, "4 KiB pieces: not referenced");
	t_end();
	buf_free(&b);
}

/* test_caps - nesting far beyond the caps: no crash, capped reported,
 * and a reference seen before the cap still counts. */
static void
test_caps(void)
{
	struct buf b = {0};
	struct dsn_result r;
	char tmp[200];
	int i;

	buf_append(&b, "Subject: Undeliverable\nIn-Reply-To: <cap@ours.test>\n",
	           53);
	for (i = 0; i < 500; i++) {
		snprintf(tmp, sizeof(tmp),
		         "Content-Type: multipart/mixed; "
		         "boundary=b%d\n\n--b%d\n",
		         i, i);
		buf_append(&b, tmp, strlen(tmp));
		buf_append(&b, "Content-Type: message/rfc822\n\n", 30);
	}
	t_begin("500 nested multiparts and messages: capped, decided");
	scan(b.data, b.len, 0, ours_cb, NULL, &r);
	T_CHECK(r.referenced, "the reference before the cap was lost");
	scan(b.data + 53, b.len - 53, 3, ours_cb, NULL, &r);
	T_CHECK(r.capped && !r.referenced, "without it: capped %d ref %d",
	        r.capped, r.referenced);
	t_end();

	b.len = 0;
	buf_append(&b, "Subject: x\nReferences:", 22);
	for (i = 0; i < 2000; i++) {
		snprintf(tmp, sizeof(tmp), " <r%d@far.example>\n", i);
		buf_append(&b, tmp, strlen(tmp));
	}
	buf_append(&b, " <last@ours.test>\n\nbody\n", 25);
	t_begin("References of 40 KB: the last id still counts");
	check_all(b.data, b.len, ours_cb, NULL, true, -1);
	t_end();

	b.len = 0;
	buf_append(&b, "Subject: x\nX-Long: ", 19);
	for (i = 0; i < 100000; i++)
		buf_append(&b, "<a@ours.test>", 13);
	buf_append(&b, "\n\nbody\n", 7);
	t_begin("a 1.3 MB header line of another field does not count");
	scan(b.data, b.len, 0, ours_cb, NULL, &r);
	T_CHECK(!r.referenced, "referenced");
	t_end();
	buf_free(&b);
}

/* read_all - the file, or NULL. */
static char *
read_all(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	struct buf b = {0};
	char tmp[8192];
	size_t k;

	if (f == NULL)
		return NULL;
	while ((k = fread(tmp, 1, sizeof(tmp), f)) > 0)
		buf_append(&b, tmp, k);
	fclose(f);
	buf_append(&b, "", 1);
	*n = b.len - 1;
	return b.data;
}

/* move_id - text with every occurrence of id replaced by one in our
 * domain (<local@mail.ours.test>, or id@ours.test for a bare one);
 * *count gets how many. */
static char *
move_id(const char *text, size_t n, const char *id, size_t *outn, int *count)
{
	struct buf b = {0};
	char repl[512];
	const char *p = text, *q, *at = strrchr(id, '@');
	size_t il = strlen(id);

	if (id[0] == '<' && at != NULL)
		snprintf(repl, sizeof(repl), "%.*s@mail.ours.test>",
		         (int)(at - id), id);
	else
		snprintf(repl, sizeof(repl), "%s@ours.test", id);
	*count = 0;
	while ((q = strstr(p, id)) != NULL) {
		buf_append(&b, p, (size_t)(q - p));
		buf_append(&b, repl, strlen(repl));
		p = q + il;
		(*count)++;
	}
	buf_append(&b, p, (size_t)(text + n - p));
	buf_append(&b, "", 1);
	*outn = b.len - 1;
	return b.data;
}

/* test_corpus - every sisimai bounce, twice. */
static void
test_corpus(void)
{
	char path[512], line[2048], name[256];
	char *text, *moved, *f[12], *tok;
	FILE *m;
	size_t n, mn;
	int count, nf, files = 0, want_kind;

	snprintf(path, sizeof(path), "%s/manifest.tsv", DSN_CORPUS);
	m = fopen(path, "r");
	t_begin("sisimai corpus manifest is there");
	T_CHECK(m != NULL, "cannot open %s", path);
	t_end();
	if (m == NULL)
		return;
	fgets(line, sizeof(line), m); /* the column names */
	while (fgets(line, sizeof(line), m) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		nf = 0;
		for (tok = line; nf < 12; nf++) {
			f[nf] = tok;
			tok = strchr(tok, '\t');
			if (tok == NULL) {
				nf++;
				break;
			}
			*tok++ = '\0';
		}
		if (nf < 7)
			continue;
		files++;
		snprintf(path, sizeof(path), "%s/eml/%s", DSN_CORPUS, f[0]);
		text = read_all(path, &n);
		want_kind = strcmp(f[2], "multipart/report") == 0
		                    ? DSN_KIND_REPORT
		                    : DSN_KIND_LEGACY;
		snprintf(name, sizeof(name), "sisimai %s as it came: refused",
		         f[0]);
		t_begin(name);
		T_CHECK(text != NULL, "cannot read %s", path);
		if (text != NULL)
			check_all(text, n, ours_cb, NULL, false, want_kind);
		t_end();
		if (text == NULL)
			continue;
		snprintf(name, sizeof(name),
		         "sisimai %s with %s moved to ours: accepted", f[0],
		         f[6]);
		t_begin(name);
		moved = move_id(text, n, f[6], &mn, &count);
		T_CHECK(count > 0, "id %s not in the file", f[6]);
		check_all(moved, mn, ours_cb, NULL, true, want_kind);
		t_end();
		free(moved);
		free(text);
	}
	fclose(m);
	t_begin("sisimai corpus: 20 bounces");
	T_INTEQ(files, 20);
	t_end();
}

/* test_domain - dsn_domain_under edge cases. */
static void
test_domain(void)
{
	t_begin("dsn_domain_under");
	T_CHECK(dsn_domain_under("ours.test", 9, "ours.test"), "equal");
	T_CHECK(dsn_domain_under("A.OURS.TEST.", 12, "ours.test"), "sub");
	T_CHECK(!dsn_domain_under("xours.test", 10, "ours.test"), "x");
	T_CHECK(!dsn_domain_under("test", 4, "ours.test"), "short");
	T_CHECK(!dsn_domain_under("ours.test", 9, ""), "empty name");
	t_end();
}

int
main(void)
{
	static char *dom[] = {"ours.test", NULL};
	static char *mid[] = {"exch01.corp.internal", NULL};

	cfg.hostname = "mx.ours.test";
	cfg.local_domains.v = dom;
	cfg.local_domains.n = 1;
	cfg.dsn_msgid_domains.v = mid;
	cfg.dsn_msgid_domains.n = 1;
	test_domain();
	test_hand();
	test_sent();
	test_caps();
	test_huge();
	test_corpus();
	return t_exit();
}
