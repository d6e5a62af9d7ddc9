/*
 * registry.c - the ordered list of checks, and the helpers they share.
 *
 * Public (check.h):
 *   chk_registry[], chk_registry_len   every check, in verdict order
 *   chk_find()                  the entry of a check id, or NULL
 *   chk_init_all()              each check's init(): at startup and reload
 *   chk_ticket_make()           {session id, generation, check} for async
 *   chk_bind_session()          the session side's id lookup and done hook
 *   chk_ticket_session()        the session of a ticket, NULL if stale
 *   chk_done_later()            deliver a known answer on the next turn
 *   chk_set()                   fill a result slot
 *   chk_shutdown()              close the deferred-answer handle
 *
 * Owns one uv_idle_t that runs while deferred answers wait.  Deferred
 * answers carry tickets, never session pointers: an answer for a session
 * that has gone or moved on is dropped.  The registry does not call the
 * session code by name: the session binds its lookup and its done hook
 * with chk_bind_session() (one direction: session -> registry).  Reads no
 * config key itself.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

/*
 * The order is the verdict order: the first refusal wins.  Each check
 * adds its entry here when its file lands.
 */
/* clang-format off */
const struct check *const chk_registry[] = {
	&chk_dnsbl,
	&chk_rdns,
	&chk_dynamic,
	&chk_helo,
	&chk_sender_tld,
	&chk_sender_mx,
	&chk_spf,
	&chk_dsn,
	&chk_scanner,
	&chk_greylist, /* last: only what nothing else refuses */
	NULL, /* end */
};
/* clang-format on */
const unsigned chk_registry_len = ARRAY_LEN(chk_registry) - 1;

static uv_loop_t *later_loop;
static struct session *(*bound_find)(uint64_t id);
static void (*bound_done)(struct session *s, enum chk_id id);
static uv_idle_t later_idle;
static bool later_init, later_closing;
static struct chk_ticket *later_q;
static unsigned later_n, later_cap;

/* chk_find - the registry entry of check id, or NULL. */
const struct check *
chk_find(enum chk_id id)
{
	unsigned i;

	for (i = 0; i < chk_registry_len; i++)
		if (chk_registry[i]->id == id)
			return chk_registry[i];
	return NULL;
}

/* chk_init_all - every check's init(); the first error stops. */
int
chk_init_all(const struct config *cfg, char *err, size_t errlen)
{
	unsigned i;
	int rc;

	for (i = 0; i < chk_registry_len; i++) {
		if (chk_registry[i]->init == NULL)
			continue;
		rc = chk_registry[i]->init(cfg, err, errlen);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* chk_ticket_make - ticket for s's current generation. */
struct chk_ticket
chk_ticket_make(const struct session *s, enum chk_id id)
{
	struct chk_ticket t = {.sess_id = s->id, .gen = s->gen, .id = id};

	return t;
}

/* chk_ticket_session - the session, or NULL if gone or stale. */
struct session *
chk_ticket_session(const struct chk_ticket *t)
{
	struct session *s = bound_find ? bound_find(t->sess_id) : NULL;

	if (s == NULL || s->gen != t->gen || s->closing)
		return NULL;
	return s;
}

/* chk_bind_session - how tickets find their session, and where deferred
 * answers go (the session side calls this before any check starts). */
void
chk_bind_session(struct session *(*find)(uint64_t id),
                 void (*done)(struct session *s, enum chk_id id))
{
	bound_find = find;
	bound_done = done;
}

/* chk_set_loop - the loop deferred answers run on (default loop if unset). */
void
chk_set_loop(uv_loop_t *loop)
{
	later_loop = loop;
}

/* chk_later_cb - deliver the answers queued during the last turn. */
static void
chk_later_cb(uv_idle_t *h)
{
	struct chk_ticket *q = later_q;
	unsigned i, n = later_n;

	/* Answers queued while we deliver go into a fresh queue. */
	later_q = NULL;
	later_n = later_cap = 0;
	uv_idle_stop(h);
	for (i = 0; i < n; i++) {
		struct session *s = chk_ticket_session(&q[i]);

		if (s != NULL && bound_done != NULL)
			bound_done(s, q[i].id);
	}
	free(q);
}

/* chk_done_later - finish check id of s on the next loop turn. */
void
chk_done_later(struct session *s, enum chk_id id)
{
	if (later_closing)
		return;
	if (!later_init) {
		if (later_loop == NULL)
			later_loop = uv_default_loop();
		uv_idle_init(later_loop, &later_idle);
		later_init = true;
	}
	if (later_n == later_cap) {
		later_cap = later_cap ? later_cap * 2 : 16;
		later_q = xrealloc(later_q, later_cap * sizeof(*later_q));
	}
	later_q[later_n++] = chk_ticket_make(s, id);
	uv_idle_start(&later_idle, chk_later_cb);
}

/* chk_shutdown - close the deferred-answer handle; pending ones drop. */
void
chk_shutdown(void)
{
	later_closing = true;
	if (later_init)
		uv_close((uv_handle_t *)&later_idle, NULL);
	later_init = false;
	free(later_q);
	later_q = NULL;
	later_n = later_cap = 0;
}

/* chk_set - fill a result slot; code NULL: the check's default code. */
void
chk_set(struct session *s, enum chk_id id, enum chk_status st, const char *code,
        const char *text, const char *detail_fmt, ...)
{
	struct chk_result *r = &s->results[id];
	va_list ap;

	r->status = st;
	r->code = code != NULL ? code : verdict_default_code(id);
	snprintf(r->text, sizeof(r->text), "%s", text ? text : "");
	r->detail[0] = '\0';
	if (detail_fmt != NULL) {
		va_start(ap, detail_fmt);
		vsnprintf(r->detail, sizeof(r->detail), detail_fmt, ap);
		va_end(ap);
	}
}
