/*
 * test_scanner.c - the scanner clients (scanner.c) on a real loop against
 * a clamd-speaking server in the same loop: the chunked INSTREAM bytes,
 * one callback per job and never a synchronous one, a refused connect, a
 * timeout, a cancel; every handle closed at the end (uv_loop_close).
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"
#include "t.h"

static uv_loop_t loop;
static uv_tcp_t server;
static uv_tcp_t peer;
static bool peer_open;
static struct buf got;     /* what the fake clamd received */
static const char *answer; /* what it answers at the terminator */
static int calls;
static struct scan_reply last;

/* done_cb - count and keep the answer */
static void
done_cb(void *arg, const struct scan_reply *r)
{
	(void)arg;
	calls++;
	last = *r;
}

/* alloc_cb - room for the fake's reads */
static void
alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	static char rb[65536];

	(void)h;
	(void)hint;
	b->base = rb;
	b->len = sizeof(rb);
}

/* write_cb - the fake's answer went out */
static void
write_cb(uv_write_t *w, int status)
{
	(void)status;
	free(w);
}

/* read_cb - the fake clamd: collect; answer at the zero chunk */
static void
read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	if (n < 0) {
		uv_read_stop(st);
		return;
	}
	buf_append(&got, b->base, (size_t)n);
	if (answer != NULL && got.len >= 14 &&
	    memcmp(got.data + got.len - 4, "\0\0\0\0", 4) == 0) {
		uv_write_t *w = xmalloc(sizeof(*w));
		uv_buf_t a = uv_buf_init((char *)answer, strlen(answer) + 1);

		uv_write(w, st, &a, 1, write_cb);
	}
}

/* conn_cb - accept one peer */
static void
conn_cb(uv_stream_t *s, int status)
{
	(void)status;
	uv_tcp_init(&loop, &peer);
	uv_accept(s, (uv_stream_t *)&peer);
	peer_open = true;
	uv_read_start((uv_stream_t *)&peer, alloc_cb, read_cb);
}

/* run_until - step the loop until calls reaches n (bounded) */
static void
run_until(int n)
{
	int i;

	for (i = 0; i < 2000 && calls < n; i++)
		uv_run(&loop, UV_RUN_ONCE);
}

/* decode - the INSTREAM bytes back into the message; false if malformed */
static bool
decode(const struct buf *b, struct buf *msg)
{
	size_t p = 10;

	if (b->len < 14 || memcmp(b->data, "zINSTREAM\0", 10) != 0)
		return false;
	for (;;) {
		uint32_t l;

		if (p + 4 > b->len)
			return false;
		l = ((uint32_t)(unsigned char)b->data[p] << 24) |
		    ((uint32_t)(unsigned char)b->data[p + 1] << 16) |
		    ((uint32_t)(unsigned char)b->data[p + 2] << 8) |
		    (uint32_t)(unsigned char)b->data[p + 3];
		p += 4;
		if (l == 0)
			return p == b->len;
		if (l > SCAN_CLAMD_CHUNK || p + l > b->len)
			return false;
		buf_append(msg, b->data + p, l);
		p += l;
	}
}

/* peer_closed_cb - the fake's connection is gone */
static void
peer_closed_cb(uv_handle_t *h)
{
	(void)h;
	peer_open = false;
}

/* close_peer - close the fake's connection and wait for it */
static void
close_peer(void)
{
	int i;

	if (!peer_open)
		return;
	uv_close((uv_handle_t *)&peer, peer_closed_cb);
	for (i = 0; i < 100 && peer_open; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
}

int
main(void)
{
	struct sockaddr_in sa;
	int salen = sizeof(sa);
	struct scan_server srv = {.kind = SCAN_CLAMD};
	struct scan_job *j;
	struct buf msg = {0}, want = {0};
	int i;

	uv_loop_init(&loop);
	uv_tcp_init(&loop, &server);
	uv_ip4_addr("127.0.0.1", 0, &sa);
	uv_tcp_bind(&server, (struct sockaddr *)&sa, 0);
	uv_listen((uv_stream_t *)&server, 8, conn_cb);
	uv_tcp_getsockname(&server, (struct sockaddr *)&sa, &salen);
	memcpy(&srv.addr, &sa, sizeof(sa));
	snprintf(srv.name, sizeof(srv.name), "clamd:127.0.0.1:%u",
	         ntohs(sa.sin_port));

	t_begin("clamd: chunked stream, one answer, never synchronous");
	answer = "stream: Eicar-Test-Signature FOUND";
	j = scan_open(&loop, &srv, 5000, done_cb, NULL);
	for (i = 0; i < 3000; i++) {
		char line[100];
		int n = snprintf(line, sizeof(line), "line %d of the body\r\n",
		                 i);

		scan_body(j, line, (size_t)n);
		buf_append(&want, line, (size_t)n);
	}
	{
		static char big[200000];

		memset(big, 'b', sizeof(big));
		scan_body(j, big, sizeof(big));
		buf_append(&want, big, sizeof(big));
	}
	scan_end(j, NULL);
	T_INTEQ(calls, 0);
	run_until(1);
	T_INTEQ(calls, 1);
	T_INTEQ(last.verdict, SCAN_VIRUS);
	T_STREQ(last.what, "Eicar-Test-Signature");
	T_CHECK(decode(&got, &msg), "malformed INSTREAM (%zu bytes)", got.len);
	T_CHECK(msg.len == want.len &&
	                memcmp(msg.data, want.data, msg.len) == 0,
	        "message got %zu bytes, want %zu", msg.len, want.len);
	for (i = 0; i < 20; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	T_INTEQ(calls, 1);
	t_end();
	close_peer();
	buf_free(&got);
	buf_free(&msg);
	buf_free(&want);

	t_begin("clamd: no answer within the timeout is a fault");
	calls = 0;
	answer = NULL;
	j = scan_open(&loop, &srv, 200, done_cb, NULL);
	scan_body(j, "x\r\n", 3);
	scan_end(j, NULL);
	run_until(1);
	T_INTEQ(calls, 1);
	T_INTEQ(last.verdict, SCAN_FAULT);
	T_CHECK(strstr(last.what, "no answer") != NULL, "%s", last.what);
	t_end();
	close_peer();
	buf_free(&got);

	t_begin("cancel: no callback, handles close");
	calls = 0;
	answer = "stream: OK";
	j = scan_open(&loop, &srv, 5000, done_cb, NULL);
	scan_body(j, "x\r\n", 3);
	scan_cancel(j);
	for (i = 0; i < 50; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	T_INTEQ(calls, 0);
	t_end();
	close_peer();
	buf_free(&got);

	t_begin("refused connect: a fault, on a later turn");
	uv_close((uv_handle_t *)&server, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	calls = 0;
	j = scan_open(&loop, &srv, 5000, done_cb, NULL);
	scan_end(j, NULL);
	T_INTEQ(calls, 0);
	run_until(1);
	T_INTEQ(calls, 1);
	T_INTEQ(last.verdict, SCAN_FAULT);
	T_CHECK(strstr(last.what, "refused") != NULL, "%s", last.what);
	t_end();

	t_begin("health figures and a clean loop");
	{
		struct buf b = {0};

		scan_health_json(&b);
		buf_append(&b, "", 1);
		T_CHECK(strstr(b.data, "\"scans\": 3") != NULL &&
		                strstr(b.data, "\"found\": 1") != NULL &&
		                strstr(b.data, "\"refused\": 1") != NULL &&
		                strstr(b.data, "\"status\": \"down\"") != NULL,
		        "%s", b.data);
		buf_free(&b);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	T_INTEQ(uv_loop_close(&loop), 0);
	t_end();
	return t_exit();
}
