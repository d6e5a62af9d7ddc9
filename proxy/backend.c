/*
 * backend.c - is the internal mail server reachable?  What the relay
 * last saw of it, and a probe when it has seen nothing for a while.
 *
 * Public (proxy.h, backend block):
 *   backend_ok()      the backend answered (relay.c: a greeting plus EHLO
 *                     accepted, or any reply on a ready connection)
 *   backend_failed()  a session's connection to it failed (relay.c: a
 *                     connect error, a timeout, a refused banner or EHLO,
 *                     the server going away; not our own faults, not a
 *                     parked connection the server closed)
 *   backend_start()   the "backend" section of `mailmoatctl stats` and the
 *                     idle probe's timer
 *   backend_stop()    close the timer and a probe in flight (drain)
 *   backend_probe()   one probe now (tests; the timer calls it)
 *   backend_json()    the section's object
 *
 * Why a probe at all: the real connections are the best evidence and cost
 * nothing, but on a quiet night the last of them can be hours old, and an
 * administrator who opens the dashboard wants to know about now.  So every
 * BACKEND_TICK_MS the timer looks at the age of the last result, and only
 * when it is older than BACKEND_STALE_S does it probe: connect, read the
 * banner (2xx: reachable), send QUIT, close.  A busy box never probes; an
 * idle one makes one connection every five minutes, which a backend logs
 * as a connect and a disconnect.  No probe in transparent mode with
 * backend = original (there is no one backend) or at the
 * max_backend_connections cap (the sessions' connections tell enough).
 *
 * Everything is asynchronous on the loop; the probe owns its handles and
 * frees itself when they have closed.  Reads (at each tick, from
 * sess_config()) backend, backend_original, timeout_backend_ms (the
 * probe's deadline, at most BACKEND_PROBE_MAX_MS).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy.h"

#define BACKEND_TICK_MS 60000
#define BACKEND_STALE_S 300
#define BACKEND_PROBE_MAX_MS 10000

enum backend_status { BE_UNKNOWN, BE_UP, BE_DOWN };

static const char *const status_names[] = {"unknown", "up", "down"};

static struct {
	enum backend_status status;
	time_t since;        /* when status began */
	time_t checked;      /* the last result, ok or not */
	time_t last_ok;      /* 0: never */
	time_t last_failure; /* 0: never */
	char last_error[128];
	uint64_t failures;
	uint64_t probes;
} be;

struct backend_probe {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_connect_t creq;
	uv_write_t wreq;
	char line[256]; /* the banner's first line so far */
	size_t len;
	unsigned handles;
	bool decided;
};

static struct backend_probe *probe_cur;
static uv_timer_t tick;
static bool tick_on;
static time_t started;

/* backend_set - a result: status, times, and a log line on a change. */
static void
backend_set(enum backend_status st, const char *why)
{
	time_t now = time(NULL);

	be.checked = now;
	if (st == BE_UP) {
		be.last_ok = now;
		if (be.status == BE_DOWN)
			log_info("backend: up again");
	} else {
		be.last_failure = now;
		be.failures++;
		snprintf(be.last_error, sizeof(be.last_error), "%s", why);
		if (be.status != BE_DOWN)
			log_warn("backend: down: %s", why);
	}
	if (be.status != st)
		be.since = now;
	be.status = st;
}

/* backend_ok - the backend answered. */
void
backend_ok(void)
{
	backend_set(BE_UP, NULL);
}

/* backend_failed - a connection to the backend failed for why. */
void
backend_failed(const char *why)
{
	backend_set(BE_DOWN, why && why[0] ? why : "failed");
}

/* backend_time - append ,"key":T (0: never). */
static void
backend_time(struct buf *b, const char *key, time_t t)
{
	char tmp[64];
	int n = snprintf(tmp, sizeof(tmp), ",\"%s\":%lld", key, (long long)t);

	buf_append(b, tmp, (size_t)n);
}

/* backend_json - the "backend" stats object. */
void
backend_json(struct buf *b)
{
	char tmp[64];
	int n;

	buf_append(b, "{\"status\":", 10);
	stats_json_string(b, status_names[be.status]);
	buf_append(b, ",\"reachable\":", 13);
	if (be.status == BE_UNKNOWN)
		buf_append(b, "null", 4);
	else if (be.status == BE_UP)
		buf_append(b, "true", 4);
	else
		buf_append(b, "false", 5);
	backend_time(b, "since", be.since);
	backend_time(b, "checked", be.checked);
	backend_time(b, "last_ok", be.last_ok);
	backend_time(b, "last_failure", be.last_failure);
	buf_append(b, ",\"last_error\":", 14);
	stats_json_string(b, be.last_error);
	n = snprintf(tmp, sizeof(tmp), ",\"failures\":%llu,\"probes\":%llu}",
	             (unsigned long long)be.failures,
	             (unsigned long long)be.probes);
	buf_append(b, tmp, (size_t)n);
}

/* probe_close_cb - one handle closed; the last one frees the probe. */
static void
probe_close_cb(uv_handle_t *h)
{
	struct backend_probe *p = h->data;

	if (--p->handles > 0)
		return;
	if (probe_cur == p)
		probe_cur = NULL;
	free(p);
}

/* probe_close - close both handles (once). */
static void
probe_close(struct backend_probe *p)
{
	if (uv_is_closing((uv_handle_t *)&p->tcp))
		return;
	uv_close((uv_handle_t *)&p->tcp, probe_close_cb);
	uv_close((uv_handle_t *)&p->timer, probe_close_cb);
}

/* probe_quit_cb - QUIT is out (or not): done. */
static void
probe_quit_cb(uv_write_t *w, int status)
{
	(void)status;
	probe_close(container_of(w, struct backend_probe, wreq));
}

/* probe_end - the probe's result (once); a greeted probe says QUIT. */
static void
probe_end(struct backend_probe *p, bool ok, const char *why)
{
	static char quit[] = "QUIT\r\n";
	uv_buf_t qb = uv_buf_init(quit, sizeof(quit) - 1);

	if (p->decided)
		return;
	p->decided = true;
	be.probes++;
	if (ok)
		backend_ok();
	else
		backend_failed(why);
	uv_read_stop((uv_stream_t *)&p->tcp);
	if (!ok || uv_write(&p->wreq, (uv_stream_t *)&p->tcp, &qb, 1,
	                    probe_quit_cb) < 0)
		probe_close(p);
	else
		uv_timer_stop(&p->timer);
}

/* probe_timer_cb - no banner in time. */
static void
probe_timer_cb(uv_timer_t *t)
{
	probe_end(t->data, false,
	          "timeout waiting for the internal mail server");
}

/* probe_alloc_cb - into the end of the line buffer. */
static void
probe_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	struct backend_probe *p = h->data;

	(void)hint;
	b->base = p->line + p->len;
	b->len = sizeof(p->line) - 1 - p->len;
}

/* probe_read_cb - the banner's first line decides: 2xx is reachable. */
static void
probe_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
	struct backend_probe *p = st->data;

	(void)b;
	if (nread < 0) {
		probe_end(p, false,
		          nread == UV_EOF ? "connection closed by the "
		                            "internal mail server"
		                          : uv_strerror((int)nread));
		return;
	}
	p->len += (size_t)nread;
	p->line[p->len] = '\0';
	if (strchr(p->line, '\n') == NULL && p->len < sizeof(p->line) - 1)
		return;
	if (p->line[0] == '2' && p->line[1] >= '0' && p->line[1] <= '9' &&
	    p->line[2] >= '0' && p->line[2] <= '9')
		probe_end(p, true, NULL);
	else
		probe_end(p, false, "banner refused");
}

/* probe_connect_cb - connected: wait for the banner. */
static void
probe_connect_cb(uv_connect_t *req, int status)
{
	struct backend_probe *p = container_of(req, struct backend_probe, creq);
	char why[128];

	if (uv_is_closing((uv_handle_t *)&p->tcp))
		return;
	if (status < 0) {
		snprintf(why, sizeof(why), "connect: %s", uv_strerror(status));
		probe_end(p, false, why);
		return;
	}
	uv_read_start((uv_stream_t *)&p->tcp, probe_alloc_cb, probe_read_cb);
}

/* backend_probe - probe cfg's backend now; 0, -EBUSY while one runs, or
 * a libuv error (the connect could not start: counted as a failure). */
int
backend_probe(uv_loop_t *loop, const struct config *cfg)
{
	struct backend_probe *p;
	unsigned ms;
	int rc;

	if (probe_cur != NULL)
		return -EBUSY;
	p = xcalloc(1, sizeof(*p));
	uv_tcp_init(loop, &p->tcp);
	uv_timer_init(loop, &p->timer);
	p->tcp.data = p;
	p->timer.data = p;
	p->handles = 2;
	probe_cur = p;
	ms = cfg->timeout_backend_ms;
	if (ms == 0 || ms > BACKEND_PROBE_MAX_MS)
		ms = BACKEND_PROBE_MAX_MS;
	uv_timer_start(&p->timer, probe_timer_cb, ms, 0);
	rc = uv_tcp_connect(&p->creq, &p->tcp,
	                    (const struct sockaddr *)&cfg->backend,
	                    probe_connect_cb);
	if (rc < 0) {
		char why[128];

		snprintf(why, sizeof(why), "connect: %s", uv_strerror(rc));
		probe_end(p, false, why);
		return rc;
	}
	return 0;
}

/* backend_tick_cb - probe when the last result is stale. */
static void
backend_tick_cb(uv_timer_t *t)
{
	const struct config *cfg = sess_config();
	time_t now = time(NULL), last = be.checked ? be.checked : started;

	if (cfg == NULL || cfg->backend_original || probe_cur != NULL ||
	    !relay_can_open(cfg) || now - last < BACKEND_STALE_S)
		return;
	backend_probe(t->loop, cfg);
}

/* backend_start - the stats section and the probe timer. */
void
backend_start(uv_loop_t *loop)
{
	started = time(NULL);
	stats_add_section("backend", backend_json);
	uv_timer_init(loop, &tick);
	uv_timer_start(&tick, backend_tick_cb, BACKEND_TICK_MS,
	               BACKEND_TICK_MS);
	tick_on = true;
}

/* backend_stop - the timer and a probe in flight go (drain). */
void
backend_stop(void)
{
	if (tick_on) {
		uv_close((uv_handle_t *)&tick, NULL);
		tick_on = false;
	}
	if (probe_cur != NULL) {
		probe_cur->decided = true;
		probe_close(probe_cur);
	}
}
