/*
 * test_transparent.c - transparent interception, the parts that do not
 * need packet filter rules (those are in tests/transparent): the keys
 * backend = original, backend_client_info and bridge; the open-path guard
 * transparent_dst_ours(); transparent_backend(); a tproxy listener is
 * IP_TRANSPARENT; the spoofing socket connects from the client's address
 * (on loopback, as root); and relay_open_for() against a scripted backend:
 * the PROXY v2 header comes first, XCLIENT follows an EHLO that offers it
 * (then EHLO again), a backend without XCLIENT gets none.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <unistd.h>

#include "proxy.h"
#include "t.h"

#ifndef IP_TRANSPARENT
#define IP_TRANSPARENT 19
#endif

static char tmpdir[] = "/tmp/test_transparent.XXXXXX";

/* load - text as a config file; NULL and err on error. */
static struct config *
load(const char *text, char *err, size_t errlen)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/mailmoat.conf", tmpdir);
	f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	return config_load(path, err, errlen);
}

static struct sockaddr_storage
sa_of(const char *text)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (sockaddr_parse(&ss, text, 25) != 0)
		printf("# bad test address %s\n", text);
	return ss;
}

static void
test_config(void)
{
	struct config *c;
	char err[512];

	t_begin("config: defaults none/none, backend address kept");
	c = load("backend = 192.0.2.25:2525\n", err, sizeof(err));
	T_CHECK(c != NULL, "%s", err);
	if (c) {
		T_CHECK(!c->backend_original, "not original");
		T_INTEQ(c->backend_client_info, CLIENT_INFO_NONE);
		T_INTEQ(c->n_bridge, 0);
		config_unref(c);
	}
	t_end();

	t_begin("config: backend = original with tproxy, xclient, bridge");
	c = load("backend = original\ntransparent = tproxy\n"
	         "backend_client_info = xclient\nbridge = eth0 eth1\n",
	         err, sizeof(err));
	T_CHECK(c != NULL, "%s", err);
	if (c) {
		T_CHECK(c->backend_original, "original");
		T_INTEQ(c->backend_client_info, CLIENT_INFO_XCLIENT);
		T_INTEQ(c->n_bridge, 2);
		T_STREQ(c->bridge[0], "eth0");
		T_STREQ(c->bridge[1], "eth1");
		config_unref(c);
	}
	c = load("backend = 192.0.2.25\nbackend_client_info = proxy\n"
	         "bridge = none\n",
	         err, sizeof(err));
	T_CHECK(c != NULL && c->backend_client_info == CLIENT_INFO_PROXY &&
	                c->n_bridge == 0,
	        "%s", err);
	config_unref(c);
	t_end();

	t_begin("config: backend = original needs a transparent mode");
	c = load("transparent = off\nbackend = original\n", err, sizeof(err));
	T_CHECK(c == NULL, "loaded");
	T_CHECK(strstr(err, "mailmoat.conf:2: backend = original needs") !=
	                NULL,
	        "err %s", err);
	t_end();

	t_begin("config: bad backend_client_info, bad bridge");
	c = load("backend = 192.0.2.25\nbackend_client_info = haproxy\n", err,
	         sizeof(err));
	T_CHECK(c == NULL && strstr(err, ":2: bad value \"haproxy\" for "
	                                 "backend_client_info "
	                                 "(none|xclient|proxy)"),
	        "err %s", err);
	c = load("backend = 192.0.2.25\nbridge = eth0\n", err, sizeof(err));
	T_CHECK(c == NULL && strstr(err, ":2: bad value \"eth0\" for bridge"),
	        "err %s", err);
	c = load("backend = 192.0.2.25\nbridge = eth0 eth0\n", err,
	         sizeof(err));
	T_CHECK(c == NULL, "same interface twice accepted");
	c = load("backend = 192.0.2.25\nbridge = eth0 e;th1\n", err,
	         sizeof(err));
	T_CHECK(c == NULL && strstr(err, "bad interface name \"e;th1\""),
	        "err %s", err);
	c = load("backend = nowhere\n", err, sizeof(err));
	T_CHECK(c == NULL &&
	                strstr(err, ":1: bad address \"nowhere\" for backend"),
	        "err %s", err);
	t_end();
}

static void
test_ours(void)
{
	struct config *c;
	char err[512];
	struct sockaddr_storage d, out;

	c = load("backend = 192.168.1.10:25\ntransparent = redirect\n"
	         "listen = 0.0.0.0:25 [::]:25 198.51.100.1:2525\n"
	         "local_addresses = 203.0.113.5 2001:db8:2::25\n",
	         err, sizeof(err));
	T_CHECK(c != NULL, "%s", err);
	if (c == NULL)
		return;
	t_begin("ours: local_addresses, backend, explicit listen address");
	d = sa_of("203.0.113.5:25");
	T_CHECK(transparent_dst_ours(c, (struct sockaddr *)&d), "local v4");
	d = sa_of("[2001:db8:2::25]:25");
	T_CHECK(transparent_dst_ours(c, (struct sockaddr *)&d), "local v6");
	d = sa_of("[::ffff:203.0.113.5]:25");
	T_CHECK(transparent_dst_ours(c, (struct sockaddr *)&d), "mapped");
	d = sa_of("192.168.1.10:25");
	T_CHECK(transparent_dst_ours(c, (struct sockaddr *)&d), "backend");
	d = sa_of("198.51.100.1:25");
	T_CHECK(transparent_dst_ours(c, (struct sockaddr *)&d), "listen");
	t_end();

	t_begin("ours: anything else is not (wildcard listen names none)");
	d = sa_of("203.0.113.6:25");
	T_CHECK(!transparent_dst_ours(c, (struct sockaddr *)&d), "other");
	d = sa_of("0.0.0.0:25");
	T_CHECK(!transparent_dst_ours(c, (struct sockaddr *)&d), "any");
	d = sa_of("[::]:25");
	T_CHECK(!transparent_dst_ours(c, (struct sockaddr *)&d), "any6");
	d = sa_of("[2001:db8:2::26]:25");
	T_CHECK(!transparent_dst_ours(c, (struct sockaddr *)&d), "other6");
	t_end();

	t_begin("backend: the configured one");
	d = sa_of("203.0.113.5:25");
	transparent_backend(c, (struct sockaddr *)&d, &out);
	T_CHECK(memcmp(&out, &c->backend, sizeof(out)) == 0, "backend");
	t_end();
	config_unref(c);

	c = load("backend = original\ntransparent = tproxy\n"
	         "listen = 198.51.100.1:25\nlocal_addresses = 203.0.113.5\n",
	         err, sizeof(err));
	T_CHECK(c != NULL, "%s", err);
	if (c == NULL)
		return;
	t_begin("backend = original: the destination itself, only "
	        "local_addresses are ours");
	d = sa_of("203.0.113.5:2525");
	transparent_backend(c, (struct sockaddr *)&d, &out);
	T_CHECK(memcmp(&out, &d, sizeof(struct sockaddr_in)) == 0, "dst");
	T_CHECK(transparent_dst_ours(c, (struct sockaddr *)&d), "local");
	d = sa_of("198.51.100.1:25");
	T_CHECK(!transparent_dst_ours(c, (struct sockaddr *)&d),
	        "our own listen address would loop");
	t_end();
	config_unref(c);

	c = load("backend = 192.168.1.10\n", err, sizeof(err));
	t_begin("transparent = off: every destination is served");
	d = sa_of("203.0.113.99:25");
	T_CHECK(transparent_dst_ours(c, (struct sockaddr *)&d), "off");
	t_end();
	config_unref(c);
}

/* ------------------------------------------------ sockets on loopback */

static uv_loop_t *loop;

static void
noop_close_cb(uv_handle_t *h)
{
}

static struct sockaddr_storage peer_seen;
static int n_accepted;

static void
srv_close_cb(uv_handle_t *h)
{
	free(h);
}

static void
srv_conn_cb(uv_stream_t *server, int status)
{
	uv_tcp_t *c = malloc(sizeof(*c));
	int len = sizeof(peer_seen);

	uv_tcp_init(loop, c);
	if (status == 0 && uv_accept(server, (uv_stream_t *)c) == 0) {
		uv_tcp_getpeername(c, (struct sockaddr *)&peer_seen, &len);
		n_accepted++;
	}
	uv_close((uv_handle_t *)c, srv_close_cb);
}

static int n_connected;
static void
cli_connect_cb(uv_connect_t *req, int status)
{
	if (status == 0)
		n_connected++;
}

static int
fd_opt(uv_tcp_t *h, int level, int opt)
{
	uv_os_fd_t fd;
	int v = 0;
	socklen_t l = sizeof(v);

	if (uv_fileno((uv_handle_t *)h, &fd) != 0 ||
	    getsockopt(fd, level, opt, &v, &l) != 0)
		return -1;
	return v;
}

static void
test_sockets(void)
{
	struct config *c;
	char err[512];
	static uv_tcp_t srv, cli, cli2, cli3;
	uv_connect_t creq;
	struct sockaddr_storage a, dst;
	struct sockaddr_in *s4;
	struct ipaddr client, seen;
	int len = sizeof(a), rc;
	bool root = geteuid() == 0;

	c = load("backend = 127.0.0.1:25\ntransparent = tproxy\n", err,
	         sizeof(err));
	t_begin("tproxy listener: IP_TRANSPARENT set before bind");
	a = sa_of("127.0.0.1:0");
	rc = transparent_listener_init(loop, &srv, c, (struct sockaddr *)&a);
	if (!root) {
		printf("# not root: IP_TRANSPARENT needs CAP_NET_ADMIN\n");
		T_CHECK(rc == UV_EPERM || rc == 0, "rc %d", rc);
	} else {
		T_INTEQ(rc, 0);
		T_INTEQ(fd_opt(&srv, IPPROTO_IP, IP_TRANSPARENT), 1);
	}
	T_INTEQ(uv_tcp_bind(&srv, (struct sockaddr *)&a, 0), 0);
	T_INTEQ(uv_listen((uv_stream_t *)&srv, 8, srv_conn_cb), 0);
	uv_tcp_getsockname(&srv, (struct sockaddr *)&a, &len);
	t_end();

	if (root) {
		t_begin("tproxy outgoing: connects from the client's address");
		ipaddr_parse(&client, "127.0.0.77");
		rc = transparent_outgoing_init(loop, &cli,
		                               (struct sockaddr *)&a, &client);
		T_INTEQ(rc, 0);
		T_INTEQ(fd_opt(&cli, IPPROTO_IP, IP_TRANSPARENT), 1);
		uv_tcp_connect(&creq, &cli, (struct sockaddr *)&a,
		               cli_connect_cb);
		while (n_accepted == 0 || n_connected == 0)
			if (uv_run(loop, UV_RUN_ONCE) == 0)
				break;
		ipaddr_from_sockaddr(&seen, (struct sockaddr *)&peer_seen);
		T_CHECK(ipaddr_equal(&seen, &client), "server saw another");
		len = sizeof(dst);
		T_INTEQ(transparent_original_dst(&cli, TRANSPARENT_TPROXY,
		                                 &dst),
		        0);
		s4 = (struct sockaddr_in *)&dst;
		T_INTEQ(s4->sin_addr.s_addr, client.u.v4.s_addr);
		uv_close((uv_handle_t *)&cli, noop_close_cb);
		t_end();
	}

	t_begin("tproxy outgoing: v6 client to a v4 backend is not spoofed");
	ipaddr_parse(&client, "2001:db8:1::10");
	rc = transparent_outgoing_init(loop, &cli2, (struct sockaddr *)&a,
	                               &client);
	T_INTEQ(rc, -EAFNOSUPPORT);
	uv_close((uv_handle_t *)&cli2, noop_close_cb);
	t_end();

	t_begin("original dst without NAT: the local address");
	n_connected = 0;
	uv_tcp_init(loop, &cli3);
	uv_tcp_connect(&creq, &cli3, (struct sockaddr *)&a, cli_connect_cb);
	while (n_connected == 0)
		if (uv_run(loop, UV_RUN_ONCE) == 0)
			break;
	T_INTEQ(transparent_original_dst(&cli3, TRANSPARENT_REDIRECT, &dst), 0);
	ipaddr_from_sockaddr(&seen, (struct sockaddr *)&dst);
	T_INTEQ(seen.family, AF_INET);
	uv_close((uv_handle_t *)&cli3, noop_close_cb);
	t_end();

	t_begin("session dst: looked up only when used (off: none; a "
	        "PROXY header: the local address)");
	{
		static struct session ss;
		enum transparent_mode mode = c->transparent;

		n_connected = 0;
		uv_tcp_init(loop, &ss.tcp);
		uv_tcp_connect(&creq, &ss.tcp, (struct sockaddr *)&a,
		               cli_connect_cb);
		while (n_connected == 0)
			if (uv_run(loop, UV_RUN_ONCE) == 0)
				break;
		ss.cfg = c;
		c->transparent = TRANSPARENT_OFF;
		c->backend_client_info = CLIENT_INFO_NONE;
		transparent_session_dst(&ss);
		T_STREQ(ss.dst_str, "-");
		T_INTEQ(ss.dst.ss_family, 0);
		c->backend_client_info = CLIENT_INFO_PROXY;
		transparent_session_dst(&ss);
		T_INTEQ(ss.dst.ss_family, AF_INET);
		T_CHECK(strchr(ss.dst_str, ':') != NULL, "%s", ss.dst_str);
		c->backend_client_info = CLIENT_INFO_NONE;
		c->transparent = mode;
		uv_close((uv_handle_t *)&ss.tcp, noop_close_cb);
	}
	t_end();

	uv_close((uv_handle_t *)&srv, noop_close_cb);
	uv_run(loop, UV_RUN_DEFAULT);
	config_unref(c);
}

/* --------------------------------------- relay_open_for vs a backend */

struct be {
	uv_tcp_t tcp;
	struct buf line;
};
static uv_tcp_t be_srv;
static struct buf be_seen;
static bool be_xclient = true;
static bool be_proxy; /* expects the PROXY header first */
static struct sockaddr_storage be_addr;
static int got_code;
static char got_reply[256];
static int got_n;

static void
be_write(struct be *b, const char *s)
{
	uv_buf_t u = uv_buf_init((char *)s, (unsigned)strlen(s));

	uv_try_write((uv_stream_t *)&b->tcp, &u, 1);
}

static void
be_close_cb(uv_handle_t *h)
{
	struct be *b = h->data;

	buf_free(&b->line);
	free(b);
}

static void
be_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *u)
{
	static char rb[4096];

	*u = uv_buf_init(rb, sizeof(rb));
}

static void
be_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *u)
{
	struct be *b = container_of((uv_tcp_t *)st, struct be, tcp);
	char *nl;

	if (n < 0) {
		uv_close((uv_handle_t *)&b->tcp, be_close_cb);
		return;
	}
	buf_append(&be_seen, u->base, (size_t)n);
	if (be_proxy) {
		/* the header is binary: greet once it is in */
		if (be_seen.len >= 28) {
			be_proxy = false;
			buf_append(&b->line, u->base + 28, (size_t)n - 28);
			be_write(b, "220 be ESMTP\r\n");
		}
		return;
	}
	buf_append(&b->line, u->base, (size_t)n);
	while ((nl = memchr(b->line.data, '\n', b->line.len)) != NULL) {
		size_t len = (size_t)(nl - b->line.data) + 1;

		if (strncmp(b->line.data, "EHLO", 4) == 0)
			be_write(b, be_xclient
			                    ? "250-be\r\n250-XCLIENT ADDR "
			                      "NAME HELO PROTO\r\n250 "
			                      "PIPELINING\r\n"
			                    : "250-be\r\n250 PIPELINING\r\n");
		else if (strncmp(b->line.data, "XCLIENT", 7) == 0)
			be_write(b, "220 be ESMTP again\r\n");
		else if (strncmp(b->line.data, "MAIL", 4) == 0)
			be_write(b, "250 2.1.0 ok\r\n");
		else
			be_write(b, "250 ok\r\n");
		buf_consume(&b->line, len);
	}
}

static void
be_conn_cb(uv_stream_t *server, int status)
{
	struct be *b = calloc(1, sizeof(*b));

	uv_tcp_init(loop, &b->tcp);
	b->tcp.data = b;
	if (status < 0 || uv_accept(server, (uv_stream_t *)&b->tcp) < 0) {
		uv_close((uv_handle_t *)&b->tcp, be_close_cb);
		return;
	}
	if (!be_proxy)
		be_write(b, "220 be ESMTP\r\n");
	uv_read_start((uv_stream_t *)&b->tcp, be_alloc_cb, be_read_cb);
}

static void
relay_cb(struct relay *r, void *arg, int code, const char *reply)
{
	got_code = code;
	snprintf(got_reply, sizeof(got_reply), "%s", reply);
	got_n++;
}

/* run_relay - one connection for ci: MAIL, wait for its reply, abort. */
static void
run_relay(const struct config *c, const struct relay_client *ci)
{
	struct relay *r;

	be_seen.len = 0;
	got_n = 0;
	r = relay_open_for(loop, c, (struct sockaddr *)&be_addr, "box.test", ci,
	                   relay_cb, NULL);
	T_CHECK(r != NULL, "relay_open_for");
	if (r == NULL)
		return;
	relay_mail(r, "<a@example.net>");
	while (got_n == 0)
		if (uv_run(loop, UV_RUN_ONCE) == 0)
			break;
	T_INTEQ(got_code, 250);
	relay_abort(r);
	uv_run(loop, UV_RUN_NOWAIT);
	buf_append(&be_seen, "", 1);
	be_seen.len--;
}

static void
test_relay(void)
{
	struct config *c;
	char err[512];
	struct relay_client ci;
	int len = sizeof(be_addr);
	const char *x;

	c = load("backend = 127.0.0.1:25\nbackend_reuse = 0\n", err,
	         sizeof(err));
	be_addr = sa_of("127.0.0.1:0");
	uv_tcp_init(loop, &be_srv);
	uv_tcp_bind(&be_srv, (struct sockaddr *)&be_addr, 0);
	uv_listen((uv_stream_t *)&be_srv, 8, be_conn_cb);
	uv_tcp_getsockname(&be_srv, (struct sockaddr *)&be_addr, &len);

	memset(&ci, 0, sizeof(ci));
	ipaddr_parse(&ci.client, "203.0.113.10");
	ci.src = sa_of("203.0.113.10:40000");
	ci.dst = sa_of("192.0.2.25:25");
	snprintf(ci.helo, sizeof(ci.helo), "client.example.net");
	ci.esmtp = true;

	t_begin("relay proxy: the PROXY v2 header is the first bytes");
	ci.info = CLIENT_INFO_PROXY;
	be_proxy = true;
	run_relay(c, &ci);
	T_CHECK(be_seen.len > 28 && be_seen.data[13] == 0x11 &&
	                (unsigned char)be_seen.data[16] == 203,
	        "no header");
	T_CHECK(be_seen.len > 28 && strncmp(be_seen.data + 28,
	                                    "EHLO box.test\r\n", 15) == 0,
	        "EHLO after the header");
	t_end();

	t_begin("relay xclient: XCLIENT after EHLO, 220, EHLO again");
	ci.info = CLIENT_INFO_XCLIENT;
	be_xclient = true;
	run_relay(c, &ci);
	x = strstr(be_seen.data ? be_seen.data : "",
	           "EHLO box.test\r\nXCLIENT ADDR=203.0.113.10 "
	           "NAME=[UNAVAILABLE] HELO=client.example.net PROTO=ESMTP\r\n"
	           "EHLO box.test\r\nMAIL FROM:<a@example.net>\r\n");
	T_CHECK(x != NULL, "seen: %s", be_seen.data);
	t_end();

	t_begin("relay xclient: not offered, not sent");
	be_xclient = false;
	run_relay(c, &ci);
	T_CHECK(strstr(be_seen.data, "XCLIENT") == NULL, "seen: %s",
	        be_seen.data);
	t_end();

	uv_close((uv_handle_t *)&be_srv, noop_close_cb);
	uv_run(loop, UV_RUN_DEFAULT);
	buf_free(&be_seen);
	config_unref(c);
}

int
main(void)
{
	char cmd[300];

	log_open(false, false);
	if (mkdtemp(tmpdir) == NULL)
		return 2;
	loop = uv_default_loop();
	test_config();
	test_ours();
	test_sockets();
	test_relay();
	t_begin("loop closes cleanly");
	T_INTEQ(uv_loop_close(loop), 0);
	t_end();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	(void)system(cmd);
	return t_exit();
}
