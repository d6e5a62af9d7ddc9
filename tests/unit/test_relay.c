/*
 * test_relay.c - relay.c against a scripted backend on loopback: replies
 * in order, multi-line replies, EHLO extensions, HELO fallback, pipelined
 * MAIL+RCPT, the held-back dot, and every failure reported once as -1
 * (connect refused, banner refused, malformed, oversized, timeout, the
 * backend going away).  The loop is stepped explicitly and callback
 * counts are asserted; at the end uv_loop_close() must return 0.  The
 * backend's health (backend.c) follows what the relay saw, and its probe
 * is run against the same scripted backend.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>

#include "proxy.h"
#include "t.h"

/* What the fake backend answers; NULL: the default. */
struct script {
	const char *banner; /* "220 be ESMTP" */
	const char *ehlo;   /* with PIPELINING, SIZE, 8BITMIME */
	const char *helo;
	const char *mail;
	const char *rcpt;
	const char *data;
	const char *dot;
	bool silent;           /* never send anything */
	bool close_after_data; /* drop the connection after the 354 */
	bool close_at_rcpt;    /* drop it instead of answering RCPT */
};

struct be_conn {
	uv_tcp_t tcp;
	struct buf line;
	bool in_data;
	bool eof;
};

static uv_loop_t *loop;
static uv_tcp_t be_server;
static int be_port;
static struct script sc;
static struct buf be_seen; /* every byte the backend received */
static struct be_conn *be_last;
static unsigned be_reads;   /* read callbacks with data */
static unsigned be_accepts; /* connections the backend accepted */

static struct {
	int n;
	int code[8];
	char reply[8][600];
} got;

static struct config cfg;

/* be_close_cb - free a backend connection. */
static void
be_close_cb(uv_handle_t *h)
{
	struct be_conn *c = h->data;

	buf_free(&c->line);
	if (be_last == c)
		be_last = NULL;
	free(c);
}

/* be_write_cb - free the write request. */
static void
be_write_cb(uv_write_t *req, int status)
{
	free(req);
}

/* be_send - reply text (CRLF added) unless silent. */
static void
be_send(struct be_conn *c, const char *text)
{
	size_t n = strlen(text);
	uv_write_t *w;
	char *data;
	uv_buf_t b;

	if (sc.silent)
		return;
	/* One allocation: the request, then the bytes. */
	w = xmalloc(sizeof(*w) + n + 2);
	data = (char *)(w + 1);
	memcpy(data, text, n);
	memcpy(data + n, "\r\n", 2);
	b = uv_buf_init(data, (unsigned)(n + 2));
	uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, be_write_cb);
}

/* be_line - one command line (CRLF stripped). */
static void
be_line(struct be_conn *c, const char *l)
{
	if (strncasecmp(l, "EHLO", 4) == 0)
		be_send(c, sc.ehlo ? sc.ehlo
		                   : "250-be.test\r\n250-PIPELINING\r\n"
		                     "250-SIZE 1000000\r\n250 8BITMIME");
	else if (strncasecmp(l, "HELO", 4) == 0)
		be_send(c, sc.helo ? sc.helo : "250 be.test");
	else if (strncasecmp(l, "MAIL", 4) == 0)
		be_send(c, sc.mail ? sc.mail : "250 2.1.0 Ok");
	else if (strncasecmp(l, "RCPT", 4) == 0 && sc.close_at_rcpt)
		uv_close((uv_handle_t *)&c->tcp, be_close_cb);
	else if (strncasecmp(l, "RCPT", 4) == 0)
		be_send(c, sc.rcpt ? sc.rcpt : "250 2.1.5 Ok");
	else if (strcasecmp(l, "DATA") == 0) {
		be_send(c, sc.data ? sc.data : "354 go ahead");
		if (sc.data == NULL || sc.data[0] == '3')
			c->in_data = true;
		if (sc.close_after_data)
			uv_close((uv_handle_t *)&c->tcp, be_close_cb);
	} else if (strcasecmp(l, "RSET") == 0)
		be_send(c, "250 2.0.0 Ok");
	else if (strcasecmp(l, "QUIT") == 0)
		be_send(c, "221 2.0.0 Bye");
	else
		be_send(c, "500 5.5.2 what?");
}

/* be_alloc_cb - a buffer for the backend's reads. */
static void
be_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	static char rb[65536];

	b->base = rb;
	b->len = sizeof(rb);
}

/* be_read_cb - split into lines; in DATA, wait for CRLF.CRLF. */
static void
be_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	struct be_conn *c = st->data;
	ssize_t i;

	if (n < 0) {
		c->eof = true;
		if (!uv_is_closing((uv_handle_t *)st))
			uv_close((uv_handle_t *)st, be_close_cb);
		return;
	}
	if (n == 0)
		return;
	be_reads++;
	buf_append(&be_seen, b->base, (size_t)n);
	for (i = 0; i < n; i++) {
		buf_append(&c->line, &b->base[i], 1);
		if (b->base[i] != '\n')
			continue;
		if (c->in_data) {
			if (c->line.len == 3 &&
			    memcmp(c->line.data, ".\r\n", 3) == 0) {
				c->in_data = false;
				be_send(c,
				        sc.dot ? sc.dot : "250 2.0.0 queued");
			}
		} else if (c->line.len >= 2) {
			c->line.data[c->line.len - 2] = '\0';
			be_line(c, c->line.data);
		}
		c->line.len = 0;
		if (uv_is_closing((uv_handle_t *)st))
			return;
	}
}

/* be_conn_cb - a relay connected: greet it. */
static void
be_conn_cb(uv_stream_t *server, int status)
{
	struct be_conn *c = xcalloc(1, sizeof(*c));

	uv_tcp_init(loop, &c->tcp);
	c->tcp.data = c;
	uv_accept(server, (uv_stream_t *)&c->tcp);
	be_last = c;
	be_accepts++;
	uv_read_start((uv_stream_t *)&c->tcp, be_alloc_cb, be_read_cb);
	be_send(c, sc.banner ? sc.banner : "220 be.test ESMTP");
}

/* reply_cb - the relay's callback: record. */
static void
reply_cb(struct relay *r, void *arg, int code, const char *reply)
{
	if (got.n < 8) {
		got.code[got.n] = code;
		snprintf(got.reply[got.n], sizeof(got.reply[0]), "%s", reply);
	}
	got.n++;
}

static int drains;

/* drain_cb - the relay's queue fell below its low-water mark. */
static void
drain_cb(struct relay *r, void *arg)
{
	drains++;
}

static void wake_cb(uv_timer_t *t);

/* step_until - run the loop until n callbacks (or 3 s of loop time).  A
 * wake timer keeps UV_RUN_ONCE from sleeping when the awaited callback
 * came from a timer (relay failures are reported from one). */
static void
step_until(int n)
{
	uv_timer_t wake;
	uint64_t end = uv_now(loop) + 3000;

	uv_timer_init(loop, &wake);
	uv_timer_start(&wake, wake_cb, 5, 5);
	while (got.n < n && uv_now(loop) < end)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&wake, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

/* settle - let closes and writes finish. */
static void
settle(void)
{
	int i;

	for (i = 0; i < 20; i++)
		uv_run(loop, UV_RUN_NOWAIT);
}

/* begin - a fresh case: script, counters, a relay to the backend. */
static struct relay *
begin(const char *name, const struct script *s, int port)
{
	struct sockaddr_in sin;

	t_begin(name);
	sc = *s;
	memset(&got, 0, sizeof(got));
	be_seen.len = 0;
	be_reads = 0;
	uv_ip4_addr("127.0.0.1", port ? port : be_port, &sin);
	return relay_open(loop, &cfg, (struct sockaddr *)&sin, "mx.test",
	                  reply_cb, NULL);
}

/* seen - what the backend received, as a C string. */
static const char *
seen(void)
{
	buf_append(&be_seen, "", 1);
	be_seen.len--;
	return be_seen.data;
}

/* health - backend_json() as a C string. */
static const char *
health(void)
{
	static struct buf b;

	b.len = 0;
	backend_json(&b);
	buf_append(&b, "", 1);
	return b.data;
}

/* health_failures - backend_json()'s "failures" count. */
static unsigned long
health_failures(void)
{
	const char *f = strstr(health(), "\"failures\":");

	return f ? strtoul(f + strlen("\"failures\":"), NULL, 10) : 0;
}

static unsigned want_probes;

/* probes_done - backend.c has counted want_probes probes. */
static bool
probes_done(void)
{
	char k[32];

	snprintf(k, sizeof(k), "\"probes\":%u}", want_probes);
	return strstr(health(), k) != NULL;
}

/* quit_seen - the backend got the probe's QUIT. */
static bool
quit_seen(void)
{
	return strstr(seen(), "QUIT\r\n") != NULL;
}

/* wake_cb - keeps UV_RUN_ONCE from sleeping forever in run_until(). */
static void
wake_cb(uv_timer_t *t)
{
}

/* run_until - run the loop until cond() or ms of loop time. */
static void
run_until(bool (*cond)(void), uint64_t ms)
{
	uv_timer_t wake;
	uint64_t end = uv_now(loop) + ms;

	uv_timer_init(loop, &wake);
	uv_timer_start(&wake, wake_cb, 5, 5);
	while (!cond() && uv_now(loop) < end)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&wake, NULL);
	settle();
}

static bool
one_parked(void)
{
	return relay_idle_count == 1;
}

static bool
none_open(void)
{
	return relay_open_count == 0;
}

/* deliver - one whole transaction on r; the dot's reply code. */
static int
deliver(struct relay *r)
{
	int base = got.n;

	relay_mail(r, "<a@sender.test>");
	relay_rcpt(r, "<b@example.com>");
	relay_data(r);
	relay_body(r, "x\r\n", 3);
	relay_dot(r);
	step_until(base + 4);
	return got.n == base + 4 ? got.code[base + 3] : 0;
}

/* delivered_parked - a fresh case (backend_reuse on) whose connection
 * delivered one message and is parked. */
static void
delivered_parked(const char *name)
{
	static const struct script s = {0};
	struct relay *r;

	cfg.backend_reuse_ms = 1000;
	r = begin(name, &s, 0);
	T_INTEQ(deliver(r), 250);
	relay_quit(r);
	run_until(one_parked, 2000);
	T_INTEQ(relay_idle_count, 1);
}

/* main - the cases. */
int
main(void)
{
	struct sockaddr_in sin;
	struct sockaddr_storage ss;
	int len = sizeof(ss), refused_port;
	struct relay *r;
	uv_tcp_t probe;

	signal(SIGPIPE, SIG_IGN);
	loop = uv_default_loop();
	cfg.timeout_backend_ms = 2000;
	uv_tcp_init(loop, &be_server);
	uv_ip4_addr("127.0.0.1", 0, &sin);
	uv_tcp_bind(&be_server, (struct sockaddr *)&sin, 0);
	uv_listen((uv_stream_t *)&be_server, 16, be_conn_cb);
	uv_tcp_getsockname(&be_server, (struct sockaddr *)&ss, &len);
	be_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);

	/* A port nobody listens on: bind one, note it, close it. */
	uv_tcp_init(loop, &probe);
	uv_tcp_bind(&probe, (struct sockaddr *)&sin, 0);
	len = sizeof(ss);
	uv_tcp_getsockname(&probe, (struct sockaddr *)&ss, &len);
	refused_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	uv_close((uv_handle_t *)&probe, NULL);
	settle();

	{
		static const struct script s = {.dot = "250-2.0.0 first\r\n"
		                                       "250 2.0.0 second"};

		r = begin("a whole transaction, replies in order", &s, 0);
		T_INTEQ(relay_open_count, 1);
		relay_mail(r, "<a@sender.test> SIZE=100 BODY=8BITMIME");
		relay_rcpt(r, "<b@example.com>");
		step_until(2);
		T_INTEQ(got.n, 2);
		T_INTEQ(got.code[0], 250);
		T_INTEQ(got.code[1], 250);
		T_STREQ(got.reply[1], "250 2.1.5 Ok");
		T_CHECK(strstr(seen(), "EHLO mx.test\r\n") != NULL, "%s",
		        seen());
		T_CHECK(strstr(seen(),
		               "MAIL FROM:<a@sender.test> SIZE=100 "
		               "BODY=8BITMIME\r\nRCPT TO:<b@example.com>\r\n"),
		        "MAIL+RCPT not pipelined: %s", seen());
		relay_data(r);
		step_until(3);
		T_INTEQ(got.code[2], 354);
		relay_body(r, "Subject: x\r\n\r\n..dot\r\n", 21);
		settle();
		T_CHECK(strstr(seen(), "..dot\r\n") != NULL, "%s", seen());
		T_CHECK(strstr(seen(), "\r\n.\r\n") == NULL,
		        "dot sent before relay_dot: %s", seen());
		relay_dot(r);
		step_until(4);
		T_INTEQ(got.code[3], 250);
		T_STREQ(got.reply[3], "250-2.0.0 first\r\n250 2.0.0 second");
		relay_quit(r);
		settle();
		T_CHECK(strstr(seen(), "QUIT\r\n") != NULL, "%s", seen());
		T_INTEQ(relay_open_count, 0);
		T_INTEQ(got.n, 4);
		T_CHECK(strstr(health(),
		               "\"status\":\"up\",\"reachable\":true"),
		        "%s", health());
		t_end();
	}
	{
		static const struct script s = {.ehlo = "250 be.test"};

		r = begin("no SIZE/8BITMIME/PIPELINING offered: plain MAIL, "
		          "one command at a time",
		          &s, 0);
		relay_mail(r, "<a@sender.test> SIZE=100 BODY=8BITMIME");
		relay_rcpt(r, "<b@example.com>");
		step_until(2);
		T_INTEQ(got.n, 2);
		T_CHECK(strstr(seen(), "MAIL FROM:<a@sender.test>\r\n") != NULL,
		        "%s", seen());
		T_CHECK(be_reads >= 3, "reads %u", be_reads);
		relay_quit(r);
		settle();
		t_end();
	}
	{
		static const struct script s = {.ehlo = "502 5.5.1 no EHLO"};

		r = begin("EHLO refused with 5xx: HELO", &s, 0);
		relay_mail(r, "<a@sender.test>");
		step_until(1);
		T_INTEQ(got.code[0], 250);
		T_CHECK(strstr(seen(), "HELO mx.test\r\n") != NULL, "%s",
		        seen());
		relay_quit(r);
		settle();
		t_end();
	}
	{
		static const struct script s = {
		        .rcpt = "550 5.1.1 no such user"};

		r = begin("RSET is not reported; a 5xx RCPT comes back as is",
		          &s, 0);
		relay_rset(r);
		relay_mail(r, "<a@sender.test>");
		relay_rcpt(r, "<x@example.com>");
		step_until(2);
		settle();
		T_INTEQ(got.n, 2);
		T_INTEQ(got.code[1], 550);
		T_STREQ(got.reply[1], "550 5.1.1 no such user");
		relay_quit(r);
		settle();
		t_end();
	}
	/* Failures: each reported once as -1. */
	{
		static const struct script s = {0};

		r = begin("connect refused: -1", &s, refused_port);
		relay_mail(r, "<a@sender.test>");
		step_until(1);
		settle();
		T_INTEQ(got.n, 1);
		T_INTEQ(got.code[0], -1);
		T_CHECK(strncmp(got.reply[0], "connect:", 8) == 0, "%s",
		        got.reply[0]);
		T_CHECK(strstr(health(), "\"status\":\"down\",\"reachable\":"
		                         "false") &&
		                strstr(health(), "\"last_error\":\"connect: "
		                                 "connection refused\""),
		        "%s", health());
		relay_abort(r);
		settle();
		T_INTEQ(relay_open_count, 0);
		t_end();
	}
	{
		static const struct script s = {.banner = "554 5.3.2 go away"};

		r = begin("banner refused: -1", &s, 0);
		relay_mail(r, "<a@sender.test>");
		step_until(1);
		settle();
		T_INTEQ(got.n, 1);
		T_INTEQ(got.code[0], -1);
		T_CHECK(strstr(health(), "\"last_error\":\"banner refused\""),
		        "%s", health());
		relay_abort(r);
		settle();
		t_end();
	}
	{
		static const struct script s = {.mail = "hello there"};

		r = begin("malformed reply: -1", &s, 0);
		relay_mail(r, "<a@sender.test>");
		step_until(1);
		settle();
		T_INTEQ(got.n, 1);
		T_INTEQ(got.code[0], -1);
		relay_abort(r);
		settle();
		t_end();
	}
	{
		static char big[1200 * 5];
		static struct script s;
		size_t o = 0;
		int i;

		for (i = 0; i < 5; i++)
			o += (size_t)snprintf(big + o, sizeof(big) - o,
			                      "250-%0990d\r\n", i);
		snprintf(big + o, sizeof(big) - o, "250 end");
		s.mail = big;
		r = begin("a reply over 4 KiB: -1", &s, 0);
		relay_mail(r, "<a@sender.test>");
		step_until(1);
		settle();
		T_INTEQ(got.n, 1);
		T_INTEQ(got.code[0], -1);
		relay_abort(r);
		settle();
		t_end();
	}
	{
		static const struct script s = {.silent = true};

		cfg.timeout_backend_ms = 100;
		r = begin("silent backend: -1 after timeout_backend", &s, 0);
		relay_mail(r, "<a@sender.test>");
		step_until(1);
		settle();
		T_INTEQ(got.n, 1);
		T_INTEQ(got.code[0], -1);
		T_CHECK(strstr(got.reply[0], "timeout") != NULL, "%s",
		        got.reply[0]);
		relay_abort(r);
		settle();
		cfg.timeout_backend_ms = 2000;
		t_end();
	}
	{
		static const struct script s = {.close_after_data = true};

		r = begin(
		        "backend gone after the 354: -1 at the dot, never 2xx",
		        &s, 0);
		relay_mail(r, "<a@sender.test>");
		relay_rcpt(r, "<b@example.com>");
		relay_data(r);
		step_until(3);
		T_INTEQ(got.code[2], 354);
		relay_body(r, "x\r\n", 3);
		relay_dot(r);
		step_until(4);
		settle();
		T_INTEQ(got.n, 4);
		T_INTEQ(got.code[3], -1);
		relay_abort(r);
		settle();
		t_end();
	}
	{
		static const struct script s = {0};

		r = begin("abort mid-body: no dot reaches the backend", &s, 0);
		relay_mail(r, "<a@sender.test>");
		relay_rcpt(r, "<b@example.com>");
		relay_data(r);
		step_until(3);
		relay_body(r, "partial\r\n", 9);
		settle();
		relay_abort(r);
		settle();
		T_CHECK(strstr(seen(), "partial\r\n") != NULL, "%s", seen());
		T_CHECK(strstr(seen(), "\r\n.\r\n") == NULL, "dot sent: %s",
		        seen());
		T_INTEQ(got.n, 3);
		T_INTEQ(relay_open_count, 0);
		t_end();
	}

	{
		static const struct script s = {0};

		r = begin("body and dot before the backend's 354 wait for it",
		          &s, 0);
		relay_mail(r, "<a@sender.test>");
		relay_rcpt(r, "<b@example.com>");
		step_until(2);
		relay_data(r);
		relay_body(r, "early\r\n", 7);
		relay_dot(r);
		T_CHECK(strstr(seen(), "early") == NULL, "body before DATA: %s",
		        seen());
		step_until(4);
		T_INTEQ(got.n, 4);
		T_INTEQ(got.code[2], 354);
		T_INTEQ(got.code[3], 250);
		T_CHECK(strstr(seen(), "DATA\r\nearly\r\n.\r\n") != NULL, "%s",
		        seen());
		relay_quit(r);
		settle();
		t_end();
	}
	{
		static const struct script s = {.data = "554 5.5.1 no"};

		r = begin("DATA refused: body and queued dot dropped, the DATA "
		          "reply is the last",
		          &s, 0);
		relay_mail(r, "<a@sender.test>");
		relay_rcpt(r, "<b@example.com>");
		step_until(2);
		relay_data(r);
		relay_body(r, "early\r\n", 7);
		relay_dot(r);
		step_until(3);
		settle();
		T_INTEQ(got.n, 3);
		T_INTEQ(got.code[2], 554);
		relay_body(r, "late\r\n", 6);
		settle();
		T_CHECK(strstr(seen(), "early") == NULL &&
		                strstr(seen(), "late") == NULL &&
		                strstr(seen(), "\r\n.\r\n") == NULL,
		        "%s", seen());
		T_INTEQ(relay_queued(r), 0);
		relay_quit(r);
		settle();
		T_CHECK(strstr(seen(), "QUIT\r\n") != NULL, "%s", seen());
		T_INTEQ(relay_open_count, 0);
		t_end();
	}

	{
		static const struct script s = {0};
		static char chunk[64 * 1024];
		int i;

		memset(chunk, 'x', sizeof(chunk));
		memcpy(chunk + sizeof(chunk) - 2, "\r\n", 2);
		for (i = 0; i < 2; i++) {
			r = begin(i == 0 ? "a big body held before the 354: "
			                   "the drain callback runs once it is "
			                   "written"
			                 : "a big body held, DATA refused: the "
			                   "drain callback runs once it is "
			                   "dropped",
			          &s, 0);
			sc.data = i == 0 ? NULL : "451 4.3.0 not now";
			drains = 0;
			relay_on_drain(r, drain_cb);
			relay_mail(r, "<a@sender.test>");
			relay_rcpt(r, "<b@example.com>");
			step_until(2);
			relay_data(r);
			for (int k = 0; k < 5; k++)
				relay_body(r, chunk, sizeof(chunk));
			T_CHECK(relay_queued(r) > 256 * 1024, "queued %zu",
			        relay_queued(r));
			step_until(3);
			settle();
			T_CHECK(drains > 0, "no drain callback");
			T_INTEQ(relay_queued(r), 0);
			if (i == 0) {
				relay_dot(r);
				step_until(4);
				T_INTEQ(got.code[3], 250);
			}
			relay_quit(r);
			settle();
			t_end();
		}
	}

	{
		static const struct script s = {0};
		struct relay *r2;
		unsigned accepts;

		cfg.backend_reuse_ms = 1000;
		r = begin("reuse: after the reply to its dot a connection is "
		          "clean and parked at once (no RSET), and serves the "
		          "next relay_open without a new connect",
		          &s, 0);
		T_INTEQ(deliver(r), 250);
		accepts = be_accepts;
		relay_quit(r);
		T_INTEQ(relay_idle_count, 1);
		T_INTEQ(relay_leaving_count, 0);
		T_INTEQ(relay_open_count, 1);
		settle();
		T_CHECK(strstr(seen(), "RSET") == NULL, "%s", seen());
		T_CHECK(strstr(seen(), "QUIT") == NULL, "%s", seen());
		T_CHECK(relay_can_open(
		                &(struct config){.max_backend_connections = 1}),
		        "a parked connection leaves room at the cap");
		memset(&got, 0, sizeof(got));
		{
			/* another backend address: not the parked one */
			struct sockaddr_in other;

			uv_ip4_addr("127.0.0.1", refused_port, &other);
			r2 = relay_open(loop, &cfg, (struct sockaddr *)&other,
			                "mx.test", reply_cb, NULL);
			T_INTEQ(relay_idle_count, 1);
			if (r2 != NULL)
				relay_abort(r2);
			settle();
		}
		{
			struct sockaddr_in sin;

			uv_ip4_addr("127.0.0.1", be_port, &sin);
			r2 = relay_open(loop, &cfg, (struct sockaddr *)&sin,
			                "mx.test", reply_cb, NULL);
		}
		T_INTEQ(relay_idle_count, 0);
		T_INTEQ(relay_open_count, 1);
		T_INTEQ(deliver(r2), 250);
		T_INTEQ(be_accepts, accepts);
		T_INTEQ(got.n, 4);
		cfg.backend_reuse_ms = 0;
		relay_quit(r2);
		run_until(none_open, 2000);
		T_CHECK(strstr(seen(), "QUIT\r\n") != NULL, "%s", seen());
		T_INTEQ(relay_open_count, 0);
		t_end();
	}
	{
		delivered_parked("reuse: a parked connection the server closes "
		                 "is dropped, never handed out");
		if (be_last != NULL)
			uv_close((uv_handle_t *)&be_last->tcp, be_close_cb);
		run_until(none_open, 2000);
		T_INTEQ(relay_idle_count, 0);
		T_INTEQ(relay_open_count, 0);
		cfg.backend_reuse_ms = 0;
		t_end();
	}
	{
		unsigned accepts;

		delivered_parked(
		        "reuse: a parked connection the server closed "
		        "just as it is taken is replaced, unseen by the "
		        "caller");
		accepts = be_accepts;
		/* the server closes it; the relay has not seen it yet */
		uv_close((uv_handle_t *)&be_last->tcp, be_close_cb);
		uv_ip4_addr("127.0.0.1", be_port, &sin);
		r = relay_open(loop, &cfg, (struct sockaddr *)&sin, "mx.test",
		               reply_cb, NULL);
		T_INTEQ(relay_idle_count, 0);
		memset(&got, 0, sizeof(got));
		T_INTEQ(deliver(r), 250);
		T_INTEQ(got.code[0], 250);
		T_INTEQ(got.code[1], 250);
		T_INTEQ(be_accepts, accepts + 1);
		T_INTEQ(relay_open_count, 1);
		T_CHECK(strstr(health(), "\"status\":\"up\"") != NULL, "%s",
		        health());
		relay_quit(r);
		relay_shutdown();
		run_until(none_open, 2000);
		T_INTEQ(relay_open_count, 0);
		cfg.backend_reuse_ms = 0;
		t_end();
	}
	{
		static const struct script s = {.mail = "421 4.7.0 busy"};

		cfg.backend_reuse_ms = 1000;
		r = begin("reuse: a 421 to the first command is retried once "
		          "on a new connection, then reported",
		          &s, 0);
		relay_mail(r, "<a@sender.test>");
		relay_rcpt(r, "<b@example.com>");
		step_until(2);
		T_INTEQ(got.code[0], 421); /* a fresh connection: as it is */
		relay_rset(r);
		settle();
		relay_quit(r);
		run_until(one_parked, 2000);
		uv_ip4_addr("127.0.0.1", be_port, &sin);
		r = relay_open(loop, &cfg, (struct sockaddr *)&sin, "mx.test",
		               reply_cb, NULL);
		memset(&got, 0, sizeof(got));
		be_accepts = 0;
		relay_mail(r, "<a@sender.test>");
		relay_rcpt(r, "<b@example.com>");
		step_until(2);
		T_INTEQ(got.n, 2);
		T_INTEQ(got.code[0], 421);
		T_INTEQ(be_accepts, 1); /* one new connection, not more */
		relay_abort(r);
		run_until(none_open, 2000);
		cfg.backend_reuse_ms = 0;
		t_end();
	}
	{
		static const struct script s = {0};

		cfg.backend_reuse_ms = 50;
		r = begin("reuse: nobody comes within backend_reuse: QUIT", &s,
		          0);
		T_INTEQ(deliver(r), 250);
		relay_quit(r);
		run_until(none_open, 3000);
		T_INTEQ(relay_open_count, 0);
		T_INTEQ(relay_idle_count, 0);
		T_CHECK(strstr(seen(), "\r\n.\r\nQUIT\r\n") != NULL, "%s",
		        seen());
		cfg.backend_reuse_ms = 0;
		t_end();
	}
	{
		static const struct script s = {0};

		cfg.backend_reuse_ms = 1000;
		r = begin("reuse: a transaction left open (MAIL and RCPT, no "
		          "dot) is reset first: RSET, and its 250 parks it",
		          &s, 0);
		relay_mail(r, "<a@sender.test>");
		relay_rcpt(r, "<b@example.com>");
		step_until(2);
		T_INTEQ(got.n, 2);
		relay_quit(r);
		T_INTEQ(relay_idle_count, 0);
		T_INTEQ(relay_leaving_count, 1);
		run_until(one_parked, 2000);
		T_INTEQ(relay_idle_count, 1);
		T_INTEQ(relay_leaving_count, 0);
		T_CHECK(strstr(seen(), "RCPT TO:<b@example.com>\r\nRSET\r\n") !=
		                NULL,
		        "%s", seen());
		/* taken again: a whole transaction, then parked without RSET */
		uv_ip4_addr("127.0.0.1", be_port, &sin);
		r = relay_open(loop, &cfg, (struct sockaddr *)&sin, "mx.test",
		               reply_cb, NULL);
		be_seen.len = 0;
		T_INTEQ(deliver(r), 250);
		relay_quit(r);
		T_INTEQ(relay_idle_count, 1);
		settle();
		T_CHECK(strstr(seen(), "RSET") == NULL, "%s", seen());
		relay_shutdown();
		run_until(none_open, 2000);
		T_INTEQ(relay_open_count, 0);
		cfg.backend_reuse_ms = 0;
		t_end();
	}
	{
		static const struct script s = {0};

		r = begin("MAIL waits for the RCPT that follows it: nothing "
		          "is sent for MAIL alone, then both at once",
		          &s, 0);
		step_until(0);
		settle();
		relay_mail(r, "<a@sender.test>");
		run_until(quit_seen, 100); /* only lets the loop run */
		T_CHECK(strstr(seen(), "MAIL") == NULL, "%s", seen());
		relay_rcpt(r, "<b@example.com>");
		step_until(2);
		T_INTEQ(got.n, 2);
		T_INTEQ(got.code[0], 250);
		T_INTEQ(got.code[1], 250);
		T_CHECK(strstr(seen(), "MAIL FROM:<a@sender.test>\r\nRCPT "
		                       "TO:<b@example.com>\r\n") != NULL,
		        "%s", seen());
		relay_quit(r);
		run_until(none_open, 2000);
		t_end();
	}
	{
		static const struct script s = {0};

		r = begin("reuse off (backend_reuse = 0): QUIT at once, "
		          "nothing parked",
		          &s, 0);
		T_INTEQ(deliver(r), 250);
		relay_quit(r);
		run_until(none_open, 2000);
		T_INTEQ(relay_idle_count, 0);
		T_CHECK(strstr(seen(), "RSET") == NULL, "%s", seen());
		T_CHECK(strstr(seen(), "QUIT\r\n") != NULL, "%s", seen());
		t_end();
	}
	{
		static const struct script s = {0};
		static char path[1200];

		r = begin("health: a fault of ours (a command too long) does "
		          "not make the backend down",
		          &s, 0);
		relay_mail(r, "<a@sender.test>");
		step_until(1);
		T_CHECK(strstr(health(), "\"status\":\"up\""), "%s", health());
		memset(path, 'a', sizeof(path) - 1);
		relay_rcpt(r, path);
		step_until(2);
		T_INTEQ(got.code[1], -1);
		T_STREQ(got.reply[1], "command too long");
		T_CHECK(strstr(health(), "\"status\":\"up\""), "%s", health());
		relay_abort(r);
		settle();
		t_end();
	}
	{
		static const struct script idle = {0};
		static const struct script awaited = {.close_at_rcpt = true};
		unsigned long before;

		r = begin("health: the server closing a connection that owed "
		          "no reply (its idle timeout while a body is held) is "
		          "no failure; closing with a reply awaited is",
		          &idle, 0);
		relay_mail(r, "<a@sender.test>");
		relay_rcpt(r, "<b@example.com>");
		step_until(2);
		T_INTEQ(got.code[1], 250);
		before = health_failures();
		uv_close((uv_handle_t *)&be_last->tcp, be_close_cb);
		step_until(3);
		T_INTEQ(got.code[2], -1);
		T_STREQ(got.reply[2],
		        "connection closed by the internal mail server");
		T_INTEQ(health_failures(), before);
		T_CHECK(strstr(health(), "\"status\":\"up\""), "%s", health());
		relay_abort(r);
		settle();
		sc = awaited;
		memset(&got, 0, sizeof(got));
		uv_ip4_addr("127.0.0.1", be_port, &sin);
		r = relay_open(loop, &cfg, (struct sockaddr *)&sin, "mx.test",
		               reply_cb, NULL);
		relay_mail(r, "<a@sender.test>");
		relay_rcpt(r, "<b@example.com>");
		step_until(2);
		T_INTEQ(got.code[0], 250);
		T_INTEQ(got.code[1], -1);
		T_INTEQ(health_failures(), before + 1);
		T_CHECK(strstr(health(), "\"status\":\"down\""), "%s",
		        health());
		relay_abort(r);
		settle();
		t_end();
	}
	{
		struct sockaddr_in *be = (struct sockaddr_in *)&cfg.backend;
		static const struct script up = {0};
		static const struct script refused = {.banner = "421 4.3.2 "
		                                                "busy"};
		static const struct script silent = {.silent = true};

		t_begin("probe: greeted is up, then QUIT; a refused banner, "
		        "a refused connect, no banner in time are down");
		uv_ip4_addr("127.0.0.1", be_port, be);
		sc = up;
		be_seen.len = 0;
		T_INTEQ(backend_probe(loop, &cfg), 0);
		T_INTEQ(backend_probe(loop, &cfg), -EBUSY);
		want_probes = 1;
		run_until(probes_done, 1000);
		run_until(quit_seen, 1000);
		T_CHECK(strstr(health(), "\"status\":\"up\"") &&
		                strstr(health(), "\"probes\":1}"),
		        "%s", health());
		T_STREQ(seen(), "QUIT\r\n");
		sc = refused;
		T_INTEQ(backend_probe(loop, &cfg), 0);
		want_probes = 2;
		run_until(probes_done, 1000);
		T_CHECK(strstr(health(), "\"status\":\"down\"") &&
		                strstr(health(), "\"last_error\":\"banner "
		                                 "refused\""),
		        "%s", health());
		sc = up;
		T_INTEQ(backend_probe(loop, &cfg), 0);
		want_probes = 3;
		run_until(probes_done, 1000);
		T_CHECK(strstr(health(), "\"status\":\"up\""), "%s", health());
		uv_ip4_addr("127.0.0.1", refused_port, be);
		T_INTEQ(backend_probe(loop, &cfg), 0);
		want_probes = 4;
		run_until(probes_done, 1000);
		T_CHECK(strstr(health(), "\"last_error\":\"connect: "
		                         "connection refused\""),
		        "%s", health());
		uv_ip4_addr("127.0.0.1", be_port, be);
		sc = silent;
		cfg.timeout_backend_ms = 100;
		T_INTEQ(backend_probe(loop, &cfg), 0);
		want_probes = 5;
		run_until(probes_done, 1000);
		T_CHECK(strstr(health(), "\"last_error\":\"timeout waiting "
		                         "for the internal mail server\""),
		        "%s", health());
		T_CHECK(strstr(health(), "\"probes\":5}"), "%s", health());
		cfg.timeout_backend_ms = 2000;
		t_end();
	}
	t_begin("every handle closed: uv_loop_close() == 0");
	uv_close((uv_handle_t *)&be_server, NULL);
	settle();
	uv_run(loop, UV_RUN_DEFAULT);
	T_INTEQ(uv_loop_close(loop), 0);
	buf_free(&be_seen);
	t_end();
	return t_exit();
}
