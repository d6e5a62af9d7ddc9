/*
 * checks/scanner.c - the `scanner` check: every configured clamd, spamd
 * and rspamd sees the message before the final answer.
 *
 * Public: chk_scanner (check.h).
 *
 * The flow (check.h, STAGE_DATA):
 *   data_begin  connect to every clamd at once (scanner.c); a buffer for
 *               spamd/rspamd when one is configured
 *   body        clamd: each piece streamed on (in parallel with the stream
 *               to the backend); spamd/rspamd: kept, up to
 *               scanner_max_size (larger messages skip them)
 *   hold        true when a spamd or rspamd is configured: their results
 *               go into the message as header lines (X-Spam-Status,
 *               X-Spam-Score, rspamd's own), so the body waits for them
 *   start       end of data: clamd gets its terminator; spamd and rspamd
 *               are connected and get the whole message; when all have
 *               answered, the result is decided (scan_decide) and
 *               sess_check_done() is called (never synchronously)
 *   cancel      drop every job and the buffer (end of each transaction)
 *
 * The decision, in this order: a virus (554 5.7.1 Virus found: NAME), a
 * spam verdict (554 5.7.1 Message looks like spam (score S/required R)),
 * a fault (451 4.7.1 ... try again later, unless scanner_fail = accept),
 * rspamd's soft reject / greylist (451 4.7.1), else a pass with the
 * header lines.  The log detail names each scanner's finding:
 * "clamd=Eicar-Test-Signature", "spamd=spam score=1000.0/5.0".
 *
 * Reads: scanner, scanner_timeout, scanner_fail, scanner_max_size,
 * action_scanner (by the session).  Registers "scanners" with stats.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

struct scan_sess;

/* One scanner's part of a message. */
struct scan_slot {
	struct scan_sess *ss;
	const struct scan_server *srv; /* in ss->cfg */
	struct scan_job *job;          /* NULL: not started or done */
	struct scan_reply reply;
	bool answered, skipped;
};

/* The per-session state (s->chk_state[CHK_SCANNER]). */
struct scan_sess {
	struct config *cfg; /* a reference: the servers live there */
	struct chk_ticket ticket;
	struct scan_slot slot[CONFIG_MAX_SCANNERS];
	int n;
	unsigned waiting;
	bool started;  /* start() ran: the last answer finishes the check */
	bool want_msg; /* a spamd or rspamd is configured */
	bool too_big;  /* over scanner_max_size: they are skipped */
	struct buf msg;
};

/* scan_state - the session's state, or NULL */
static struct scan_sess *
scan_state(const struct session *s)
{
	return s->chk_state[CHK_SCANNER];
}

/* scan_fmt_score - "1000.0" (one decimal, as spamd prints it) */
static void
scan_fmt_score(char *out, size_t outlen, double v)
{
	snprintf(out, outlen, "%.1f", v);
}

/* scan_add_spamd_headers - X-Spam-Status and X-Spam-Score, as spamd
 * itself would write them */
static void
scan_add_spamd_headers(struct session *s, const struct scan_reply *r)
{
	char sc[32], rq[32], line[512];
	int n;

	scan_fmt_score(sc, sizeof(sc), r->score);
	scan_fmt_score(rq, sizeof(rq), r->required);
	n = snprintf(line, sizeof(line),
	             "X-Spam-Status: %s, score=%s required=%s tests=%s\r\n"
	             "X-Spam-Score: %s\r\n",
	             r->verdict == SCAN_SPAM ? "Yes" : "No", sc, rq,
	             r->symbols[0] ? r->symbols : "none", sc);
	if (n > 0 && (size_t)n < sizeof(line))
		buf_append(&s->eod_headers, line, (size_t)n);
}

/* scan_detail_add - append "name=what" to the log detail */
static void scan_detail_add(char *d, size_t dlen, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void
scan_detail_add(char *d, size_t dlen, const char *fmt, ...)
{
	size_t have = strlen(d);
	va_list ap;

	if (have + 2 >= dlen)
		return;
	if (have > 0)
		d[have++] = ' ', d[have] = '\0';
	va_start(ap, fmt);
	vsnprintf(d + have, dlen - have, fmt, ap);
	va_end(ap);
}

/*
 * scan_decide - every scanner answered (or was skipped): the result.
 * Header lines for the message go to s->eod_headers (used when the body
 * was held, dropped otherwise).
 */
static void
scan_decide(struct session *s, struct scan_sess *ss)
{
	const struct scan_reply *virus = NULL, *spam = NULL, *soft = NULL;
	const struct scan_reply *fault = NULL;
	const struct scan_slot *fault_slot = NULL;
	char detail[128] = "", text[160], sc[32], rq[32];
	int i;

	for (i = 0; i < ss->n; i++) {
		const struct scan_slot *sl = &ss->slot[i];
		const struct scan_reply *r = &sl->reply;
		const char *kind = scan_kind_name(sl->srv->kind);

		if (sl->skipped) {
			scan_detail_add(detail, sizeof(detail),
			                "%s=skipped(size)", kind);
			continue;
		}
		switch (r->verdict) {
		case SCAN_VIRUS:
			if (virus == NULL)
				virus = r;
			scan_detail_add(detail, sizeof(detail), "%s=%s", kind,
			                r->what);
			break;
		case SCAN_SPAM:
		case SCAN_SOFT:
		case SCAN_HEADER:
		case SCAN_CLEAN:
			if (r->verdict == SCAN_SPAM && spam == NULL)
				spam = r;
			if (r->verdict == SCAN_SOFT && soft == NULL)
				soft = r;
			if (r->has_score) {
				scan_fmt_score(sc, sizeof(sc), r->score);
				scan_fmt_score(rq, sizeof(rq), r->required);
				scan_detail_add(
				        detail, sizeof(detail),
				        "%s=%s score=%s/%s", kind,
				        sl->srv->kind == SCAN_RSPAMD ? r->what
				        : r->verdict == SCAN_SPAM    ? "spam"
				                                     : "ham",
				        sc, rq);
			} else {
				scan_detail_add(
				        detail, sizeof(detail), "%s=%s", kind,
				        r->verdict == SCAN_CLEAN ? "clean"
				                                 : r->what);
			}
			if (sl->srv->kind == SCAN_SPAMD && r->has_score)
				scan_add_spamd_headers(s, r);
			else if (sl->srv->kind == SCAN_RSPAMD && r->headers[0])
				buf_append(&s->eod_headers, r->headers,
				           strlen(r->headers));
			break;
		case SCAN_LIMIT:
		case SCAN_FAULT:
			if (fault == NULL)
				fault = r, fault_slot = sl;
			scan_detail_add(detail, sizeof(detail), "%s=fault(%s)",
			                kind, r->what);
			break;
		}
	}

	if (virus != NULL) {
		snprintf(text, sizeof(text), "Virus found: %s", virus->what);
		chk_set(s, CHK_SCANNER, CHK_FAIL, "554 5.7.1", text, "%s",
		        detail);
	} else if (spam != NULL) {
		scan_fmt_score(sc, sizeof(sc), spam->score);
		scan_fmt_score(rq, sizeof(rq), spam->required);
		if (spam->has_score)
			snprintf(text, sizeof(text),
			         "Message looks like spam (score %s/required "
			         "%s)",
			         sc, rq);
		else
			snprintf(text, sizeof(text), "Message looks like spam");
		chk_set(s, CHK_SCANNER, CHK_FAIL, "554 5.7.1", text, "%s",
		        detail);
	} else if (fault != NULL &&
	           ss->cfg->scanner_fail == SCANNER_FAIL_TEMPFAIL) {
		snprintf(text, sizeof(text),
		         "Content scanner %s unavailable, try again later",
		         scan_kind_name(fault_slot->srv->kind));
		chk_set(s, CHK_SCANNER, CHK_FAIL, "451 4.7.1", text, "%s",
		        detail);
	} else if (soft != NULL) {
		chk_set(s, CHK_SCANNER, CHK_FAIL, "451 4.7.1",
		        "Message deferred by the spam scanner, try again later",
		        "%s", detail);
	} else {
		if (fault != NULL)
			log_warn("id=%s scanner fault, delivered unscanned "
			         "(scanner_fail = accept): %s",
			         s->sid, detail);
		chk_set(s, CHK_SCANNER, CHK_PASS, NULL, "", "%s", detail);
	}
}

/* scan_finish - the last answer came (after start): decide and report */
static void
scan_finish(struct scan_sess *ss)
{
	struct session *s = chk_ticket_session(&ss->ticket);

	if (s == NULL || scan_state(s) != ss)
		return;
	scan_decide(s, ss);
	sess_check_done(s, CHK_SCANNER);
}

/* scan_done_cb - one scanner answered (scanner.c: once per job) */
static void
scan_done_cb(void *arg, const struct scan_reply *r)
{
	struct scan_slot *sl = arg;
	struct scan_sess *ss = sl->ss;

	sl->job = NULL; /* it frees itself */
	sl->reply = *r;
	sl->answered = true;
	ss->waiting--;
	if (ss->started && ss->waiting == 0)
		scan_finish(ss);
}

/* scan_free - cancel every job, free the state */
static void
scan_free(struct session *s)
{
	struct scan_sess *ss = scan_state(s);
	int i;

	if (ss == NULL)
		return;
	for (i = 0; i < ss->n; i++)
		if (ss->slot[i].job != NULL)
			scan_cancel(ss->slot[i].job);
	buf_free(&ss->msg);
	config_unref(ss->cfg);
	free(ss);
	s->chk_state[CHK_SCANNER] = NULL;
}

/* scan_data_begin - DATA: clamd connections open, the buffer is set up */
static void
scan_data_begin(struct session *s)
{
	struct scan_sess *ss;
	int i;

	scan_free(s);
	if (s->cfg->n_scanners == 0)
		return;
	ss = xcalloc(1, sizeof(*ss));
	ss->cfg = config_ref(s->cfg);
	ss->n = ss->cfg->n_scanners;
	for (i = 0; i < ss->n; i++) {
		struct scan_slot *sl = &ss->slot[i];

		sl->ss = ss;
		sl->srv = &ss->cfg->scanners[i];
		if (sl->srv->kind == SCAN_CLAMD) {
			sl->job = scan_open(s->tcp.loop, sl->srv,
			                    ss->cfg->scanner_timeout_ms,
			                    scan_done_cb, sl);
			ss->waiting++;
		} else {
			ss->want_msg = true;
		}
	}
	s->chk_state[CHK_SCANNER] = ss;
}

/* scan_body_cb - a piece of the message */
static void
scan_body_cb(struct session *s, const char *p, size_t n)
{
	struct scan_sess *ss = scan_state(s);
	uint64_t max;
	int i;

	if (ss == NULL || ss->started)
		return;
	for (i = 0; i < ss->n; i++)
		if (ss->slot[i].job != NULL &&
		    ss->slot[i].srv->kind == SCAN_CLAMD)
			scan_body(ss->slot[i].job, p, n);
	if (!ss->want_msg || ss->too_big)
		return;
	max = ss->cfg->scanner_max_size;
	if (max > 0 && ss->msg.len + n > max) {
		ss->too_big = true;
		buf_free(&ss->msg);
		return;
	}
	buf_append(&ss->msg, p, n);
}

/* scan_hold - spamd/rspamd results become header lines: hold the body */
static bool
scan_hold(const struct session *s)
{
	int i;

	for (i = 0; i < s->cfg->n_scanners; i++)
		if (s->cfg->scanners[i].kind != SCAN_CLAMD)
			return true;
	return false;
}

/* scan_request - the whole request for a spamd/rspamd slot */
static void
scan_request(const struct session *s, const struct scan_sess *ss,
             const struct scan_slot *sl, struct buf *req)
{
	char from[330];
	char(*to)[330] = NULL;
	const char **rcpt = NULL;
	unsigned i;

	if (sl->srv->kind == SCAN_SPAMD) {
		scan_spamd_request(req, ss->msg.len);
	} else {
		struct scan_meta m = {.client = s->client_str,
		                      .helo = s->helo,
		                      .ptr = s->ptr,
		                      .queue_id = s->sid};

		from[0] = '\0';
		if (s->has_from && !s->from.null)
			addr_format(&s->from, from, sizeof(from));
		m.from = from;
		if (s->n_to > 0) {
			to = xcalloc(s->n_to, sizeof(*to));
			rcpt = xcalloc(s->n_to, sizeof(*rcpt));
			for (i = 0; i < s->n_to; i++) {
				addr_format(&s->to[i], to[i], sizeof(to[i]));
				rcpt[i] = to[i];
			}
		}
		m.rcpt = rcpt;
		m.n_rcpt = s->n_to;
		scan_rspamd_request(req, &m, ss->msg.len);
		free(rcpt);
		free(to);
	}
	buf_append(req, ss->msg.data, ss->msg.len);
}

/* scan_start - end of data: finish clamd's streams, ask the others */
static void
scan_start(struct session *s)
{
	struct scan_sess *ss = scan_state(s);
	int i;

	if (ss == NULL) {
		/* No scanner configured (or data_begin never ran). */
		chk_set(s, CHK_SCANNER, CHK_PASS, NULL, "", NULL);
		chk_done_later(s, CHK_SCANNER);
		return;
	}
	ss->ticket = chk_ticket_make(s, CHK_SCANNER);
	for (i = 0; i < ss->n; i++) {
		struct scan_slot *sl = &ss->slot[i];
		struct buf req = {0};

		if (sl->srv->kind == SCAN_CLAMD) {
			if (sl->job != NULL)
				scan_end(sl->job, NULL);
			continue;
		}
		if (ss->too_big) {
			sl->skipped = true;
			continue;
		}
		scan_request(s, ss, sl, &req);
		sl->job = scan_open(s->tcp.loop, sl->srv,
		                    ss->cfg->scanner_timeout_ms, scan_done_cb,
		                    sl);
		ss->waiting++;
		scan_end(sl->job, &req);
	}
	buf_free(&ss->msg);
	ss->started = true;
	if (ss->waiting == 0) {
		scan_decide(s, ss);
		chk_done_later(s, CHK_SCANNER);
	}
}

/* scan_cancel_cb - the transaction ended */
static void
scan_cancel_cb(struct session *s)
{
	scan_free(s);
}

/* scan_init - the stats section */
static int
scan_init(const struct config *cfg, char *err, size_t errlen)
{
	static bool registered;

	(void)cfg;
	(void)err;
	(void)errlen;
	if (!registered) {
		stats_add_section("scanners", scan_health_json);
		registered = true;
	}
	return 0;
}

const struct check chk_scanner = {
        .name = "scanner",
        .id = CHK_SCANNER,
        .stage = STAGE_DATA,
        .init = scan_init,
        .start = scan_start,
        .cancel = scan_cancel_cb,
        .body = scan_body_cb,
        .hold = scan_hold,
        .data_begin = scan_data_begin,
};
