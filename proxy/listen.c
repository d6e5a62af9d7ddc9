/*
 * listen.c - the listeners and admission: who gets a session.
 *
 * Public (proxy.h, listen block):
 *   sess_listen()      open every listener of the config
 *   sess_reload()      new sessions use the new config, live ones keep theirs
 *   sess_drain()       stop accepting, finish transactions (bounded), done()
 *   sess_config()      the config new sessions get
 *
 * Shared (session_int.h): sess_stress, sess_draining,
 * sess_admission_release() (at close), sess_freed() (drain bookkeeping).
 *
 * What a new connection goes through here: the caps (max_connections,
 * max_per_ip: a 421 over them), the in-house blocklist (refused greeting)
 * and allowlist, then the connect stage (stage.c), started at accept and
 * decided when the greet pause has elapsed.  Stress mode (short timeouts)
 * above 80% of max_connections until below 60%.  On accept() EMFILE the
 * listeners close for SESS_EMFILE_BACKOFF_MS.
 *
 * Owns: the listeners, the per-IP counters, the current config, the
 * backoff and drain timers.  Config keys: listen, max_connections,
 * max_per_ip, allowlist, blocklist, greet_pause, dns_timeout.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session_int.h"

#define IPC_HASH 1024             /* per-IP counter buckets */
#define SESS_DRAIN_MS (30 * 1000) /* SIGTERM: transactions may finish */
#define SESS_EMFILE_BACKOFF_MS 500

struct ipcount {
	struct ipcount *next;
	struct ipaddr ip;
	unsigned n;
};

bool sess_stress;
bool sess_draining;
static struct config *cur_cfg;
static struct ipcount *ipc_table[IPC_HASH];
static unsigned n_admitted; /* sessions within the caps */
static void (*drain_done)(void);
static uv_timer_t drain_timer;
static bool drain_timer_init;

/* listen plus, at index out_idx, outbound_listen (outbound.c) */
static uv_tcp_t listeners[CONFIG_MAX_LISTEN + 1];
static struct sockaddr_storage listen_addr[CONFIG_MAX_LISTEN + 1];
static bool listener_open[CONFIG_MAX_LISTEN + 1];
static int n_listen, out_idx = -1;
static uv_timer_t backoff_timer;
static bool backoff_init, backoff_active;

static void sess_listen_open(void);

/* ------------------------------------------------------- admission */

/* ipc_hash - bucket of an address. */
static unsigned
ipc_hash(const struct ipaddr *ip)
{
	const unsigned char *p;
	size_t n, i;
	unsigned h = 2166136261u;

	if (ip->family == AF_INET) {
		p = (const unsigned char *)&ip->u.v4;
		n = 4;
	} else {
		p = (const unsigned char *)&ip->u.v6;
		n = 16;
	}
	for (i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h % IPC_HASH;
}

/* ipc_get - the counter of ip (created at 0 when absent). */
static struct ipcount *
ipc_get(const struct ipaddr *ip)
{
	unsigned h = ipc_hash(ip);
	struct ipcount *c;

	for (c = ipc_table[h]; c != NULL; c = c->next)
		if (ipaddr_equal(&c->ip, ip))
			return c;
	c = xcalloc(1, sizeof(*c));
	c->ip = *ip;
	c->next = ipc_table[h];
	ipc_table[h] = c;
	return c;
}

/* ipc_put - one session less for c; freed at zero. */
static void
ipc_put(struct ipcount *c)
{
	struct ipcount **pp;

	if (--c->n > 0)
		return;
	for (pp = &ipc_table[ipc_hash(&c->ip)]; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	free(c);
}

/* sess_stress_update - switch stress mode at the water marks. */
static void
sess_stress_update(void)
{
	unsigned max = cur_cfg ? cur_cfg->max_connections : 0;

	if (max == 0)
		return;
	if (!sess_stress && n_admitted * 10 >= max * 8) {
		sess_stress = true;
		log_info("stress mode on: %u sessions of %u, short timeouts",
		         n_admitted, max);
	} else if (sess_stress && n_admitted * 10 < max * 6) {
		sess_stress = false;
		log_info("stress mode off: %u sessions of %u", n_admitted, max);
	}
}

/* ------------------------------------------------------------ drain */

/* sess_drain_finish - no session left while draining: tell main. */
static void
sess_drain_finish(void)
{
	void (*done)(void) = drain_done;

	drain_done = NULL;
	if (drain_timer_init) {
		uv_close((uv_handle_t *)&drain_timer, NULL);
		drain_timer_init = false;
	}
	if (cur_cfg != NULL) {
		config_unref(cur_cfg);
		cur_cfg = NULL;
	}
	if (done != NULL)
		done();
}

/* sess_admission_release - x leaves the caps (at close). */
void
sess_admission_release(struct sess *x)
{
	if (x->ipc == NULL)
		return;
	ipc_put(x->ipc);
	x->ipc = NULL;
	n_admitted--;
	sess_stress_update();
}

/* sess_freed - a session was freed: the last one ends a drain. */
void
sess_freed(void)
{
	if (sess_draining && sess_n_alive == 0 && drain_done != NULL)
		sess_drain_finish();
}

/* sess_admit - caps, blocklist, allowlist, then the connect stage.  On
 * outbound_listen: only outbound_clients, and no checks (our own mail). */
static void
sess_admit(struct sess *x, bool outbound)
{
	struct session *s = &x->s;
	const struct config *c = s->cfg;
	uint64_t cmd, data, life;
	struct ipcount *ipc;
	char reply[160];

	stats.connections_total++;
	stats.connections_active++;
	sess_table_add(x);
	sess_timeouts(x, &cmd, &data, &life);
	x->life_deadline = uv_now(sess_loop) + life;
	uv_read_start((uv_stream_t *)&s->tcp, sess_alloc_cb, sess_read_cb);

	ipc = ipc_get(&s->client);
	if ((c->max_connections > 0 && n_admitted >= c->max_connections) ||
	    (c->max_per_ip > 0 && ipc->n >= c->max_per_ip)) {
		if (ipc->n == 0) {
			ipc->n = 1;
			ipc_put(ipc);
		}
		x->phase = PH_REJECTING;
		snprintf(reply, sizeof(reply),
		         "421 4.7.0 Too many connections, try again later "
		         "[id=%s]",
		         s->sid);
		sess_log(x, VERDICT_TEMPFAIL, "limit",
		         n_admitted >= c->max_connections ? "max_connections"
		                                          : "max_per_ip");
		sess_final(x, reply);
		return;
	}
	ipc->n++;
	x->ipc = ipc;
	n_admitted++;
	sess_stress_update();

	if (outbound) {
		s->outbound = true;
		if (!outbound_client_ok(c, &s->client)) {
			outbound_refusal(s->sid, reply, sizeof(reply));
			sess_log(x, VERDICT_REJECT, "outbound", s->client_str);
			sess_refuse_greeting(x, reply);
			return;
		}
		s->allowlisted = true;
	} else if (!transparent_dst_ours(c, (const struct sockaddr *)&s->dst)) {
		/* in-line: never an open path to somebody else's server */
		transparent_refused++;
		snprintf(reply, sizeof(reply),
		         "554 5.7.1 This destination is not served here "
		         "[id=%s]",
		         s->sid);
		sess_log(x, VERDICT_REJECT, "transparent", s->dst_str);
		sess_refuse_greeting(x, reply);
		return;
	}
	if (c->block != NULL && list_match_ip(c->block, &s->client)) {
		snprintf(reply, sizeof(reply),
		         "554 5.7.1 We don't accept mail from your IP [id=%s]",
		         s->sid);
		sess_log(x, VERDICT_REJECT, "blocklist", s->client_str);
		sess_refuse_greeting(x, reply);
		return;
	}
	if (c->allow != NULL && list_match_ip(c->allow, &s->client))
		s->allowlisted = true;

	x->phase = PH_CONNECT;
	if (s->allowlisted || c->greet_pause_ms == 0 ||
	    passcache_hit(c, &s->client))
		x->greet_elapsed = true;
	else
		sess_arm(x, c->greet_pause_ms);
	sess_stage_start(x, STAGE_CONNECT);
	if (!s->closing && x->phase == PH_CONNECT && x->greet_elapsed &&
	    s->pending_checks > 0)
		sess_arm(x, 2ull * c->dns_timeout_ms + 5000);
}

/* sess_backoff_cb - the EMFILE pause is over: listen again. */
static void
sess_backoff_cb(uv_timer_t *t)
{
	backoff_active = false;
	if (!sess_draining)
		sess_listen_open();
}

/* sess_listener_close_cb - a listener is closed. */
static void
sess_listener_close_cb(uv_handle_t *h)
{
}

/* sess_listen_close - close every open listener. */
static void
sess_listen_close(void)
{
	int i;

	for (i = 0; i < n_listen; i++) {
		if (listener_open[i]) {
			uv_close((uv_handle_t *)&listeners[i],
			         sess_listener_close_cb);
			listener_open[i] = false;
		}
	}
}

/* sess_connection_cb - a client connected (or accept failed). */
static void
sess_connection_cb(uv_stream_t *server, int status)
{
	struct sess *x;

	if (status < 0) {
		log_warn("accept: %s", uv_strerror(status));
		if ((status == UV_EMFILE || status == UV_ENFILE) &&
		    !backoff_active) {
			/* Out of descriptors: stop accepting for a moment. */
			backoff_active = true;
			sess_listen_close();
			if (!backoff_init) {
				uv_timer_init(sess_loop, &backoff_timer);
				backoff_init = true;
			}
			uv_timer_start(&backoff_timer, sess_backoff_cb,
			               SESS_EMFILE_BACKOFF_MS, 0);
		}
		return;
	}
	if (sess_draining)
		return;
	x = sess_new(server, cur_cfg);
	if (x != NULL)
		sess_admit(x,
		           out_idx >= 0 &&
		                   server ==
		                           (uv_stream_t *)&listeners[out_idx]);
}

/* sess_listen_open - (re)open the listeners; errors are logged. */
static void
sess_listen_open(void)
{
	int i, rc;
	char text[INET6_ADDRSTRLEN + 8];

	for (i = 0; i < n_listen; i++) {
		struct sockaddr *sa = (struct sockaddr *)&listen_addr[i];
		struct ipaddr ip;

		if (listener_open[i])
			continue;
		/* tproxy: IP_TRANSPARENT before the bind (transparent.c) */
		rc = transparent_listener_init(sess_loop, &listeners[i],
		                               cur_cfg, sa);
		listener_open[i] = true;
		if (rc == 0)
			rc = uv_tcp_bind(&listeners[i], sa,
			                 sa->sa_family == AF_INET6
			                         ? UV_TCP_IPV6ONLY
			                         : 0);
		/* accepted sockets inherit TCP_NODELAY from the listener
		 * (Linux): one system call less per connection */
		if (rc == 0)
			(void)uv_tcp_nodelay(&listeners[i], 1);
		if (rc == 0)
			rc = uv_listen((uv_stream_t *)&listeners[i], 511,
			               sess_connection_cb);
		if (rc < 0) {
			ipaddr_from_sockaddr(&ip, sa);
			ipaddr_format(&ip, text, sizeof(text));
			log_warn("listen on %s port %d: %s", text,
			         ntohs(sa->sa_family == AF_INET6
			                       ? ((struct sockaddr_in6 *)sa)
			                                 ->sin6_port
			                       : ((struct sockaddr_in *)sa)
			                                 ->sin_port),
			         uv_strerror(rc));
			uv_close((uv_handle_t *)&listeners[i],
			         sess_listener_close_cb);
			listener_open[i] = false;
		}
	}
}

/* sess_listen - open every listener of cfg on loop; 0 or -errno when one
 * cannot be opened (the others are closed again). */
int
sess_listen(uv_loop_t *loop, struct config *cfg)
{
	int i;

	sess_loop = loop;
	chk_set_loop(loop);
	chk_bind_session(sess_find, sess_check_done);
	if (cur_cfg == NULL)
		cur_cfg = config_ref(cfg);
	n_listen = cfg->n_listen < CONFIG_MAX_LISTEN ? cfg->n_listen
	                                             : CONFIG_MAX_LISTEN;
	for (i = 0; i < n_listen; i++)
		listen_addr[i] = cfg->listen[i];
	out_idx = -1;
	if (cfg->outbound_listen.ss_family != 0 &&
	    cfg->outbound_relay.ss_family == 0)
		log_warn("outbound_listen without outbound_relay: not opened");
	if (cfg->outbound_listen.ss_family != 0 &&
	    cfg->outbound_relay.ss_family != 0) {
		out_idx = n_listen;
		listen_addr[n_listen++] = cfg->outbound_listen;
	}
	sess_listen_open();
	for (i = 0; i < n_listen; i++) {
		if (!listener_open[i]) {
			sess_listen_close();
			return -EADDRNOTAVAIL;
		}
	}
	return 0;
}

/* sess_reload - new sessions use cfg; live ones keep theirs. */
void
sess_reload(struct config *cfg)
{
	struct config *old = cur_cfg;

	cur_cfg = config_ref(cfg);
	if (old != NULL)
		config_unref(old);
	sess_stress_update();
}

/* sess_config - the config new sessions get (control.c edits its lists). */
struct config *
sess_config(void)
{
	return cur_cfg;
}

/* sess_shut_one - a 421 and the close. */
static void
sess_shut_one(struct sess *x)
{
	char reply[96];

	snprintf(reply, sizeof(reply),
	         "421 4.3.2 Service shutting down [id=%s]", x->s.sid);
	sess_final(x, reply);
}

/* sess_shut_idle - a 421 unless inside a transaction. */
static void
sess_shut_idle(struct sess *x)
{
	if (x->s.has_from || x->op != OP_NONE || x->in_data)
		return;
	sess_shut_one(x);
}

/* sess_drain_timer_cb - the drain grace time is over: close the rest. */
static void
sess_drain_timer_cb(uv_timer_t *t)
{
	log_info("drain: grace time over, closing %u sessions", n_admitted);
	sess_foreach(sess_shut_one);
}

/*
 * sess_drain - stop accepting; idle sessions get a 421 now, those inside
 * a transaction may finish it (until SESS_DRAIN_MS); done() runs when the
 * last session has been freed.
 */
void
sess_drain(void (*done)(void))
{
	sess_draining = true;
	drain_done = done;
	sess_listen_close();
	if (backoff_init) {
		uv_close((uv_handle_t *)&backoff_timer, NULL);
		backoff_init = false;
	}
	sess_foreach(sess_shut_idle);
	if (sess_n_alive == 0) {
		sess_drain_finish();
		return;
	}
	uv_timer_init(sess_loop, &drain_timer);
	drain_timer_init = true;
	uv_timer_start(&drain_timer, sess_drain_timer_cb, SESS_DRAIN_MS, 0);
}
