/*
 * tls_echo.c - a tiny SMTP-ish server on libuv that does STARTTLS through
 * proxy/tls.c, for tests/tls/run.sh to drive with real clients (openssl
 * s_client, swaks).
 *
 *   tls_echo PORTFILE CERT KEY HOSTNAME
 *
 * Calls tls_global_init() (so CERT/KEY are generated when missing),
 * listens on 127.0.0.1 on a free port, writes the port to PORTFILE and
 * serves until killed.  Replies: banner 220; EHLO/HELO 250 (STARTTLS
 * offered until TLS is on); STARTTLS 220, then TLS, discarding anything
 * pipelined behind it in plaintext; MAIL/RCPT/RSET/NOOP 250; DATA 354
 * ... "." 250 with the byte count; QUIT 221 and close; any other line
 * "250 echo: LINE".  On stderr, one line per event: "ready VERSION
 * CIPHER", "tls error: WHY", "closed".  Lines over 4096 bytes close the
 * connection.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy.h"

#define LINE_MAX_LEN 4096

struct conn {
	uv_tcp_t tcp;
	uv_shutdown_t shut;
	struct tls *tls;
	struct buf line; /* unparsed plaintext */
	bool tls_on;
	bool in_data;
	bool closing;
	uint64_t data_bytes;
};

struct wreq {
	uv_write_t req;
	char data[];
};

static uv_loop_t *loop;
static uv_tcp_t server;
static const char *hostname;

/* conn_close_cb - the handle is closed: now tls_free is safe. */
static void
conn_close_cb(uv_handle_t *h)
{
	struct conn *c = container_of((uv_tcp_t *)h, struct conn, tcp);

	tls_free(c->tls);
	buf_free(&c->line);
	free(c);
	fprintf(stderr, "closed\n");
}

/* conn_close - close once. */
static void
conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
}

/* conn_shutdown_cb - pending writes are out: close. */
static void
conn_shutdown_cb(uv_shutdown_t *req, int status)
{
	conn_close(container_of(req, struct conn, shut));
}

/* conn_write_cb - free the copied buffer. */
static void
conn_write_cb(uv_write_t *req, int status)
{
	free(container_of(req, struct wreq, req));
}

/* conn_send - raw bytes to the socket (copied). */
static void
conn_send(struct conn *c, const char *buf, size_t len)
{
	struct wreq *w;
	uv_buf_t b;

	if (c->closing)
		return;
	w = xmalloc(sizeof(*w) + len);
	memcpy(w->data, buf, len);
	b = uv_buf_init(w->data, (unsigned)len);
	if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, conn_write_cb) <
	    0) {
		free(w);
		conn_close(c);
	}
}

/* conn_reply - a reply line, through TLS when it is on. */
static void
conn_reply(struct conn *c, const char *text)
{
	char line[LINE_MAX_LEN + 64];
	int n = snprintf(line, sizeof(line), "%s\r\n", text);

	if (n < 0 || (size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	if (c->tls_on)
		tls_write(c->tls, line, (size_t)n);
	else
		conn_send(c, line, (size_t)n);
}

/* conn_quit - reply 221 and close once it is written. */
static void
conn_quit(struct conn *c)
{
	conn_reply(c, "221 2.0.0 bye");
	if (c->tls_on)
		tls_close_notify(c->tls);
	uv_read_stop((uv_stream_t *)&c->tcp);
	if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, conn_shutdown_cb) < 0)
		conn_close(c);
}

static const struct tls_hooks conn_tls_hooks;

/* conn_line - one complete line, CRLF stripped.  false: stop parsing. */
static bool
conn_line(struct conn *c, char *l)
{
	char reply[LINE_MAX_LEN + 32];

	if (c->in_data) {
		if (strcmp(l, ".") == 0) {
			c->in_data = false;
			snprintf(reply, sizeof(reply),
			         "250 2.0.0 queued %llu bytes",
			         (unsigned long long)c->data_bytes);
			conn_reply(c, reply);
		} else {
			c->data_bytes += strlen(l) + 2;
		}
		return true;
	}
	if (strncasecmp(l, "EHLO", 4) == 0 || strncasecmp(l, "HELO", 4) == 0) {
		snprintf(reply, sizeof(reply),
		         "250-%s\r\n250-PIPELINING\r\n250 %s", hostname,
		         c->tls_on ? "8BITMIME" : "STARTTLS");
		conn_reply(c, reply);
	} else if (strcasecmp(l, "STARTTLS") == 0 && !c->tls_on) {
		c->tls = tls_new(&conn_tls_hooks, c);
		if (!c->tls) {
			conn_reply(c, "454 4.7.0 TLS not available");
			return true;
		}
		conn_reply(c, "220 2.0.0 Ready to start TLS");
		c->tls_on = true;
		return false; /* the caller drops what followed */
	} else if (strcasecmp(l, "QUIT") == 0) {
		conn_quit(c);
		return false;
	} else if (strcasecmp(l, "DATA") == 0) {
		c->in_data = true;
		c->data_bytes = 0;
		conn_reply(c, "354 go ahead");
	} else if (strncasecmp(l, "MAIL", 4) == 0 ||
	           strncasecmp(l, "RCPT", 4) == 0 ||
	           strcasecmp(l, "RSET") == 0 || strcasecmp(l, "NOOP") == 0) {
		conn_reply(c, "250 2.0.0 ok");
	} else {
		snprintf(reply, sizeof(reply), "250 echo: %s", l);
		conn_reply(c, reply);
	}
	return true;
}

/* conn_input - plaintext from the client (either side of STARTTLS). */
static void
conn_input(struct conn *c, const char *buf, size_t len)
{
	char *nl;
	size_t n;

	buf_append(&c->line, buf, len);
	while (!c->closing &&
	       (nl = memchr(c->line.data, '\n', c->line.len)) != NULL) {
		n = (size_t)(nl - c->line.data);
		*nl = '\0';
		if (n > 0 && c->line.data[n - 1] == '\r')
			c->line.data[n - 1] = '\0';
		if (!conn_line(c, c->line.data)) {
			/* STARTTLS or QUIT: pipelined plaintext is dropped. */
			c->line.len = 0;
			return;
		}
		buf_consume(&c->line, n + 1);
	}
	if (c->line.len > LINE_MAX_LEN) {
		fprintf(stderr, "line too long\n");
		conn_close(c);
	}
}

/* conn_tls_send_cb - ciphertext from tls.c: copy it to the socket. */
static void
conn_tls_send_cb(struct tls *t, void *arg, const char *buf, size_t len)
{
	conn_send(arg, buf, len);
}

/* conn_tls_plain_cb - decrypted bytes. */
static void
conn_tls_plain_cb(struct tls *t, void *arg, const char *buf, size_t len)
{
	conn_input(arg, buf, len);
}

/* conn_tls_ready_cb - handshake done. */
static void
conn_tls_ready_cb(struct tls *t, void *arg)
{
	fprintf(stderr, "ready %s %s\n", tls_version(t), tls_cipher(t));
}

/* conn_tls_error_cb - fatal TLS error: close (tls_free comes later). */
static void
conn_tls_error_cb(struct tls *t, void *arg, const char *why)
{
	fprintf(stderr, "tls error: %s\n", why);
	conn_close(arg);
}

static const struct tls_hooks conn_tls_hooks = {
        .send = conn_tls_send_cb,
        .plain = conn_tls_plain_cb,
        .ready = conn_tls_ready_cb,
        .error = conn_tls_error_cb,
};

/* conn_alloc_cb - a read buffer. */
static void
conn_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	static char rbuf[65536];

	*b = uv_buf_init(rbuf, sizeof(rbuf));
}

/* conn_read_cb - bytes from the socket. */
static void
conn_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct conn *c = container_of((uv_tcp_t *)s, struct conn, tcp);

	if (n < 0) {
		conn_close(c);
		return;
	}
	if (c->tls_on)
		tls_input(c->tls, b->base, (size_t)n);
	else
		conn_input(c, b->base, (size_t)n);
}

/* server_conn_cb - a new client. */
static void
server_conn_cb(uv_stream_t *srv, int status)
{
	struct conn *c;
	char banner[300];

	if (status < 0)
		return;
	c = xcalloc(1, sizeof(*c));
	uv_tcp_init(loop, &c->tcp);
	if (uv_accept(srv, (uv_stream_t *)&c->tcp) < 0) {
		conn_close(c);
		return;
	}
	snprintf(banner, sizeof(banner), "220 %s ESMTP tls_echo", hostname);
	conn_reply(c, banner);
	uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb);
}

/* main - init TLS, listen, write the port, serve. */
int
main(int argc, char **argv)
{
	struct config cfg = {0};
	struct sockaddr_in sin;
	struct sockaddr_storage ss;
	int len = sizeof(ss), r;
	FILE *f;

	if (argc != 5) {
		fprintf(stderr, "usage: tls_echo PORTFILE CERT KEY HOSTNAME\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	log_open(false, true);
	cfg.tls_cert = argv[2];
	cfg.tls_key = argv[3];
	cfg.hostname = argv[4];
	hostname = argv[4];
	if ((r = tls_global_init(&cfg)) != 0) {
		fprintf(stderr, "tls_global_init: %s\n", strerror(-r));
		return 1;
	}
	loop = uv_default_loop();
	uv_tcp_init(loop, &server);
	uv_ip4_addr("127.0.0.1", 0, &sin);
	if ((r = uv_tcp_bind(&server, (const struct sockaddr *)&sin, 0)) < 0 ||
	    (r = uv_listen((uv_stream_t *)&server, 16, server_conn_cb)) < 0 ||
	    (r = uv_tcp_getsockname(&server, (struct sockaddr *)&ss, &len)) <
	            0) {
		fprintf(stderr, "listen: %s\n", uv_strerror(r));
		return 1;
	}
	f = fopen(argv[1], "w");
	if (!f) {
		perror(argv[1]);
		return 1;
	}
	fprintf(f, "%d\n", ntohs(((struct sockaddr_in *)&ss)->sin_port));
	fclose(f);
	setvbuf(stderr, NULL, _IOLBF, 0);
	uv_run(loop, UV_RUN_DEFAULT);
	return 0;
}
