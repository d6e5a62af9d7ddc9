/*
 * test_scanproto.c - the scanner protocol encoders and reply parsers
 * (scanproto.c) and the JSON reader (json.c).
 */
#include <stdlib.h>
#include <string.h>

#include "proxy.h"
#include "t.h"

/* A reply parser of scanproto.c. */
typedef int (*parse_fn)(const char *p, size_t n, bool eof,
                        struct scan_reply *r);

struct reply_case {
	const char *name;
	parse_fn parse;
	const char *text;
	size_t len; /* 0: strlen(text) */
	bool eof;
	int rc;
	enum scan_verdict verdict;
	const char *what;    /* NULL: not checked */
	double score, req;   /* checked when req != 0 */
	const char *symbols; /* NULL: not checked */
	const char *headers; /* NULL: not checked */
};

static const char gtube_json[] =
        "{\"is_skipped\":false,\"score\":0.0,\"required_score\":15.0,"
        "\"action\":\"reject\",\"symbols\":{\"GTUBE\":{\"name\":\"GTUBE\","
        "\"score\":0.0,\"metric_score\":0.0,\"options\":[\"x\"]},"
        "\"MIME_GOOD\":{\"name\":\"MIME_GOOD\",\"score\":-0.1}},"
        "\"messages\":{\"smtp_message\":\"Gtube pattern\"},"
        "\"message-id\":\"a@b\"}";

static const char header_json[] =
        "{\"score\":6.5,\"required_score\":15,\"action\":\"add header\","
        "\"symbols\":{},\"milter\":{\"add_headers\":{\"X-Spam\":"
        "{\"value\":\"Yes\",\"order\":0},\"X-Spam-Level\":\"******\","
        "\"X-Two\":[\"a\",{\"value\":\"b\\r\\nInjected: 1\"}],"
        "\"Bad Name\":\"x\"},\"remove_headers\":{\"X-Spam\":1}}}";

static char http_buf[16][1024];

/* http - an HTTP 200 answer around body (static buffer i) */
static const char *
http(int i, const char *status, const char *body)
{
	snprintf(http_buf[i], sizeof(http_buf[i]),
	         "HTTP/1.1 %s\r\nServer: rspamd/3.8\r\n"
	         "Content-Length: %zu\r\n\r\n%s",
	         status, strlen(body), body);
	return http_buf[i];
}

/* test_replies - the table of replies */
static void
test_replies(void)
{
	const struct reply_case cases[] = {
	        /* clamd */
	        {"clamd: OK", scan_clamd_parse, "stream: OK", 11, false, 1,
	         SCAN_CLEAN},
	        {"clamd: FOUND", scan_clamd_parse,
	         "stream: Eicar-Test-Signature FOUND", 35, false, 1, SCAN_VIRUS,
	         "Eicar-Test-Signature"},
	        {"clamd: FOUND with newline", scan_clamd_parse,
	         "stream: Win.Test.EICAR_HDB-1 FOUND\n", 0, false, 1,
	         SCAN_VIRUS, "Win.Test.EICAR_HDB-1"},
	        {"clamd: size limit", scan_clamd_parse,
	         "INSTREAM size limit exceeded. ERROR", 36, false, 1,
	         SCAN_LIMIT},
	        {"clamd: other error", scan_clamd_parse,
	         "stream: Can't allocate memory ERROR", 36, false, 1,
	         SCAN_FAULT, "stream: Can't allocate memory ERROR"},
	        {"clamd: unknown command", scan_clamd_parse, "UNKNOWN COMMAND",
	         16, false, 1, SCAN_FAULT},
	        {"clamd: partial", scan_clamd_parse, "stream: O", 0, false, 0},
	        {"clamd: partial at eof", scan_clamd_parse, "stream: OK", 0,
	         true, 1, SCAN_CLEAN},
	        {"clamd: nothing at eof", scan_clamd_parse, "", 0, true, 1,
	         SCAN_FAULT, "clamd closed without an answer"},
	        {"clamd: garbage", scan_clamd_parse, "HELLO THERE\n", 0, false,
	         1, SCAN_FAULT},
	        {"clamd: FOUND without a name", scan_clamd_parse,
	         "stream:  FOUND", 15, false, 1, SCAN_FAULT},
	        {"clamd: name with a space", scan_clamd_parse,
	         "stream: a b FOUND", 18, false, 1, SCAN_FAULT},
	        /* spamd */
	        {"spamd: spam with symbols", scan_spamd_parse,
	         "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1000.0 / 5.0\r\n"
	         "Content-length: 22\r\n\r\nGTUBE,MISSING_DATE\r\n\r\n",
	         0, false, 1, SCAN_SPAM, "spam", 1000.0, 5.0,
	         "GTUBE,MISSING_DATE"},
	        {"spamd: ham, no Content-length, at eof", scan_spamd_parse,
	         "SPAMD/1.1 0 EX_OK\r\nSpam: False ; -0.1 / 5.0\r\n\r\n", 0,
	         true, 1, SCAN_CLEAN, "ham", -0.1, 5.0, ""},
	        {"spamd: ham, no Content-length, before eof", scan_spamd_parse,
	         "SPAMD/1.1 0 EX_OK\r\nSpam: False ; -0.1 / 5.0\r\n\r\n", 0,
	         false, 0},
	        {"spamd: body still coming", scan_spamd_parse,
	         "SPAMD/1.1 0 EX_OK\r\nContent-length: 10\r\n"
	         "Spam: Yes ; 7.5 / 5.0\r\n\r\nGTU",
	         0, false, 0},
	        {"spamd: cut short", scan_spamd_parse,
	         "SPAMD/1.1 0 EX_OK\r\nContent-length: 10\r\n"
	         "Spam: Yes ; 7.5 / 5.0\r\n\r\nGTU",
	         0, true, 1, SCAN_FAULT, "spamd: answer cut short"},
	        {"spamd: error status", scan_spamd_parse,
	         "SPAMD/1.0 76 Bad header line: xyz\r\n", 0, true, 1,
	         SCAN_FAULT, "spamd: 76 Bad header line: xyz"},
	        {"spamd: no Spam header", scan_spamd_parse,
	         "SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n\r\n", 0, false, 1,
	         SCAN_FAULT, "spamd: no Spam header"},
	        {"spamd: bad score", scan_spamd_parse,
	         "SPAMD/1.1 0 EX_OK\r\nSpam: True ; lots / 5.0\r\n\r\n", 0,
	         true, 1, SCAN_FAULT, "spamd: bad score"},
	        {"spamd: not spamd", scan_spamd_parse,
	         "HTTP/1.0 200 OK\r\n\r\n", 0, true, 1, SCAN_FAULT},
	        {"spamd: nothing", scan_spamd_parse, "", 0, true, 1, SCAN_FAULT,
	         "spamd closed without an answer"},
	        {"spamd: huge Content-length", scan_spamd_parse,
	         "SPAMD/1.1 0 EX_OK\r\nContent-length: 99999999999\r\n"
	         "Spam: True ; 1 / 5\r\n\r\n",
	         0, false, 1, SCAN_FAULT, "spamd: bad Content-length"},
	        /* rspamd */
	        {"rspamd: GTUBE reject", scan_rspamd_parse,
	         http(0, "200 OK", gtube_json), 0, false, 1, SCAN_SPAM,
	         "reject", 0.0, 15.0, "GTUBE,MIME_GOOD", ""},
	        {"rspamd: add header with milter headers", scan_rspamd_parse,
	         http(1, "200 OK", header_json), 0, false, 1, SCAN_HEADER,
	         "add header", 6.5, 15.0, "",
	         "X-Spam: Yes\r\nX-Spam-Level: ******\r\nX-Two: a\r\n"
	         "X-Two: b  Injected: 1\r\n"},
	        {"rspamd: add header, default header", scan_rspamd_parse,
	         http(4, "200 OK",
	              "{\"action\":\"add header\",\"score\":7,"
	              "\"required_score\":9}"),
	         0, false, 1, SCAN_HEADER, "add header", 7, 9, "",
	         "X-Spam: Yes\r\n"},
	        {"rspamd: soft reject", scan_rspamd_parse,
	         http(5, "200 OK", "{\"action\":\"soft reject\"}"), 0, false, 1,
	         SCAN_SOFT, "soft reject"},
	        {"rspamd: greylist", scan_rspamd_parse,
	         http(6, "200 OK", "{\"action\":\"greylist\"}"), 0, false, 1,
	         SCAN_SOFT},
	        {"rspamd: no action", scan_rspamd_parse,
	         http(7, "200 OK", "{\"action\":\"no action\"}"), 0, false, 1,
	         SCAN_CLEAN},
	        {"rspamd: unknown action", scan_rspamd_parse,
	         http(8, "200 OK", "{\"action\":\"frob\"}"), 0, false, 1,
	         SCAN_FAULT, "rspamd: unknown action \"frob\""},
	        {"rspamd: body coming", scan_rspamd_parse,
	         "HTTP/1.1 200 OK\r\nContent-Length: "
	         "23\r\n\r\n{\"action\":\"no",
	         0, false, 0},
	        {"rspamd: cut short", scan_rspamd_parse,
	         "HTTP/1.1 200 OK\r\nContent-Length: "
	         "23\r\n\r\n{\"action\":\"no",
	         0, true, 1, SCAN_FAULT, "rspamd: answer cut short"},
	        {"rspamd: not JSON", scan_rspamd_parse,
	         http(11, "200 OK", "hello"), 0, false, 1, SCAN_FAULT,
	         "rspamd: answer is not a JSON object"},
	        {"rspamd: trailing comma", scan_rspamd_parse,
	         http(12, "200 OK", "{\"action\":\"reject\",}"), 0, false, 1,
	         SCAN_FAULT},
	        {"rspamd: no action key", scan_rspamd_parse,
	         http(13, "200 OK", "{\"score\":1}"), 0, false, 1, SCAN_FAULT,
	         "rspamd: no action in the answer"},
	        {"rspamd: HTTP error with JSON", scan_rspamd_parse,
	         http(2, "500 Internal Error", "{\"error\":\"boom\"}"), 0,
	         false, 1, SCAN_FAULT, "rspamd: HTTP status 500: boom"},
	        {"rspamd: chunked refused", scan_rspamd_parse,
	         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
	         false, 1, SCAN_FAULT, "rspamd: encoded answer (chunked)"},
	        {"rspamd: garbage status", scan_rspamd_parse, "garbage\r\n\r\n",
	         0, false, 1, SCAN_FAULT},
	        {"rspamd: nothing", scan_rspamd_parse, "", 0, true, 1,
	         SCAN_FAULT, "rspamd closed without an answer"},
	        {"rspamd: is_skipped (GTUBE) still rejects", scan_rspamd_parse,
	         http(14, "200 OK",
	              "{\"action\":\"reject\",\"is_skipped\":true}"),
	         0, false, 1, SCAN_SPAM},
	};
	size_t i;

	for (i = 0; i < ARRAY_LEN(cases); i++) {
		const struct reply_case *c = &cases[i];
		struct scan_reply r;
		size_t len = c->len ? c->len : strlen(c->text);
		int rc;

		t_begin(c->name);
		rc = c->parse(c->text, len, c->eof, &r);
		T_INTEQ(rc, c->rc);
		if (rc == 1) {
			T_INTEQ(r.verdict, c->verdict);
			if (c->what)
				T_STREQ(r.what, c->what);
			if (c->req != 0) {
				T_CHECK(r.has_score, "no score");
				T_CHECK(r.score == c->score &&
				                r.required == c->req,
				        "got %g/%g, want %g/%g", r.score,
				        r.required, c->score, c->req);
			}
			if (c->symbols)
				T_STREQ(r.symbols, c->symbols);
			if (c->headers)
				T_STREQ(r.headers, c->headers);
		}
		t_end();
	}
}

/* test_every_prefix - no prefix of a good answer is "done" but a fault */
static void
test_every_prefix(void)
{
	static const char *const clamd = "stream: Eicar-Test-Signature FOUND";
	const char *spamd = "SPAMD/1.1 0 EX_OK\r\nContent-length: 6\r\n"
	                    "Spam: True ; 1000.0 / 5.0\r\n\r\nGTUBE\n";
	const char *rsp = http(0, "200 OK", gtube_json);
	struct scan_reply r;
	size_t n;

	t_begin("prefixes: need more until complete");
	for (n = 0; n < strlen(clamd); n++)
		T_CHECK(scan_clamd_parse(clamd, n, false, &r) == 0,
		        "clamd prefix %zu", n);
	T_INTEQ(scan_clamd_parse(clamd, strlen(clamd) + 1, false, &r), 1);
	T_INTEQ(r.verdict, SCAN_VIRUS);
	for (n = 0; n < strlen(spamd); n++)
		T_CHECK(scan_spamd_parse(spamd, n, false, &r) == 0,
		        "spamd prefix %zu", n);
	T_INTEQ(scan_spamd_parse(spamd, strlen(spamd), false, &r), 1);
	T_INTEQ(r.verdict, SCAN_SPAM);
	for (n = 0; n < strlen(rsp); n++)
		T_CHECK(scan_rspamd_parse(rsp, n, false, &r) == 0,
		        "rspamd prefix %zu", n);
	T_INTEQ(scan_rspamd_parse(rsp, strlen(rsp), false, &r), 1);
	T_INTEQ(r.verdict, SCAN_SPAM);
	t_end();

	t_begin("prefixes at eof: faults, never a verdict");
	for (n = 0; n + 1 < strlen(spamd); n++) {
		int rc = scan_spamd_parse(spamd, n, true, &r);

		T_CHECK(rc == 1 && r.verdict == SCAN_FAULT,
		        "spamd prefix %zu: rc %d verdict %d", n, rc, r.verdict);
	}
	for (n = 0; n < strlen(rsp); n++) {
		int rc = scan_rspamd_parse(rsp, n, true, &r);

		T_CHECK(rc == 1 && r.verdict == SCAN_FAULT,
		        "rspamd prefix %zu: rc %d verdict %d", n, rc,
		        r.verdict);
	}
	t_end();
}

/* test_requests - the encoders */
static void
test_requests(void)
{
	struct buf b = {0};
	unsigned char h[4];
	const char *rcpt[] = {"a@example.com", "b@example.com\r\nX: y"};
	struct scan_meta m = {.client = "203.0.113.9",
	                      .helo = "mail.example.net",
	                      .from = "s@example.net",
	                      .rcpt = rcpt,
	                      .n_rcpt = 2,
	                      .ptr = "",
	                      .queue_id = "7Q2KD"};

	t_begin("clamd: command and chunk lengths");
	T_INTEQ(memcmp(scan_clamd_command, "zINSTREAM\0", 10), 0);
	T_INTEQ(SCAN_CLAMD_COMMAND_LEN, 10);
	scan_clamd_chunk(h, 0x01020304);
	T_CHECK(h[0] == 1 && h[1] == 2 && h[2] == 3 && h[3] == 4, "%x%x%x%x",
	        h[0], h[1], h[2], h[3]);
	scan_clamd_chunk(h, 0);
	T_CHECK(!h[0] && !h[1] && !h[2] && !h[3], "zero");
	t_end();

	t_begin("spamd: SYMBOLS with Content-length");
	scan_spamd_request(&b, 1234);
	buf_append(&b, "", 1);
	T_STREQ(b.data, "SYMBOLS SPAMC/1.5\r\nContent-length: 1234\r\n\r\n");
	buf_free(&b);
	t_end();

	t_begin("rspamd: headers, one Rcpt each, no Hostname when unconfirmed");
	scan_rspamd_request(&b, &m, 99);
	buf_append(&b, "", 1);
	T_STREQ(b.data, "POST /checkv2 HTTP/1.1\r\nContent-Length: 99\r\n"
	                "Host: rspamd\r\nConnection: close\r\n"
	                "IP: 203.0.113.9\r\nHelo: mail.example.net\r\n"
	                "From: s@example.net\r\nRcpt: a@example.com\r\n"
	                "Rcpt: b@example.com\r\nQueue-Id: 7Q2KD\r\n\r\n");
	buf_free(&b);
	m.ptr = "mail.example.net";
	m.from = "";
	scan_rspamd_request(&b, &m, 0);
	buf_append(&b, "", 1);
	T_CHECK(strstr(b.data, "Hostname: mail.example.net\r\n") != NULL, "%s",
	        b.data);
	T_CHECK(strstr(b.data, "From:") == NULL, "null sender: no From");
	buf_free(&b);
	t_end();

	t_begin("scan_server_parse");
	{
		struct scan_server s;

		T_INTEQ(scan_server_parse("clamd:127.0.0.1:3310", &s), 0);
		T_INTEQ(s.kind, SCAN_CLAMD);
		T_INTEQ(scan_server_parse("rspamd:[::1]:11333", &s), 0);
		T_INTEQ(s.kind, SCAN_RSPAMD);
		T_INTEQ(s.addr.ss_family, AF_INET6);
		T_INTEQ(scan_server_parse("clamd:127.0.0.1", &s), -EINVAL);
		T_INTEQ(scan_server_parse("clamd:[::1]", &s), -EINVAL);
		T_INTEQ(scan_server_parse("clamdx:127.0.0.1:1", &s), -EINVAL);
		T_INTEQ(scan_server_parse("spamd:localhost:783", &s), -EINVAL);
		T_INTEQ(scan_server_parse("spamd", &s), -EINVAL);
	}
	t_end();
}

/* test_json - the reader's strictness and bounds */
static void
test_json(void)
{
	static const char *const bad[] = {
	        "",
	        "{",
	        "{\"a\":}",
	        "[1,]",
	        "{\"a\" 1}",
	        "01",
	        "1.",
	        "-",
	        "1e",
	        "\"\x01\"",
	        "\"\\x\"",
	        "\"\\ud800\"",
	        "\"\\udc00\"",
	        "tru",
	        "nul",
	        "{} {}",
	        "\"\xc3\"",
	        "\"\xed\xa0\x80\"",
	        "{'a':1}",
	        "[1 2]",
	        "NaN",
	        "{\"a\":1,}",
	        "\"\xf5\x80\x80\x80\"",
	};
	struct json_tok t[64];
	char out[32];
	double v;
	size_t i;
	int n;

	t_begin("json: malformed documents refused");
	for (i = 0; i < ARRAY_LEN(bad); i++)
		T_CHECK(json_parse(bad[i], strlen(bad[i]), t, 64) < 0,
		        "accepted \"%s\"", bad[i]);
	t_end();

	t_begin("json: values, escapes, lookup");
	{
		static const char doc[] =
		        " {\"a\": [1, 2.5e1, -0.5], \"s\": \"x\\n\\u00e9\\ud83d"
		        "\\ude00\\\"\", \"o\": {\"k\": true}, \"z\": null} ";

		n = json_parse(doc, strlen(doc), t, 64);
		T_INTEQ(n, 14);
		T_INTEQ(t[0].n, 4);
		T_INTEQ(t[json_get(doc, t, 0, "a")].n, 3);
		T_CHECK(json_num(doc, t, json_get(doc, t, 0, "a") + 2, &v) &&
		                v == 25.0,
		        "2.5e1 = %g", v);
		T_CHECK(json_str(doc, t, json_get(doc, t, 0, "s"), out,
		                 sizeof(out)),
		        "str");
		T_STREQ(out, "x\n\xc3\xa9\xf0\x9f\x98\x80\"");
		T_INTEQ(t[json_get(doc, t, json_get(doc, t, 0, "o"), "k")].type,
		        JSON_TRUE);
		T_INTEQ(t[json_get(doc, t, 0, "z")].type, JSON_NULL);
		T_INTEQ(json_get(doc, t, 0, "missing"), -1);
		T_CHECK(!json_str(doc, t, json_get(doc, t, 0, "a"), out,
		                  sizeof(out)),
		        "array as string");
		T_CHECK(!json_str(doc, t, json_get(doc, t, 0, "s"), out, 3),
		        "truncated");
	}
	t_end();

	t_begin("json: bounds (tokens, depth)");
	{
		char deep[64];

		n = json_parse("[1,2,3,4]", 9, t, 4);
		T_INTEQ(n, -E2BIG);
		memset(deep, '[', 20);
		memset(deep + 20, ']', 20);
		T_CHECK(json_parse(deep, 40, t, 64) < 0, "depth 20 accepted");
		T_INTEQ(json_parse(deep + 5, 30, t, 64), 15);
	}
	t_end();
}

int
main(void)
{
	test_replies();
	test_every_prefix();
	test_requests();
	test_json();
	return t_exit();
}
