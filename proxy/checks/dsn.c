/*
 * checks/dsn.c - check "dsn": delivery status notifications only for our
 * own mail, and the backscatter block for hosts that send us others.
 *
 * Public: chk_dsn (check.h), dsn_sent_lookup_fn (outbound learning).
 * The message comes through the body tap (body(), data_begin()).
 *
 * Stages (one check, one action_dsn, one reason=dsn):
 *   CONNECT  a client blocked for backscatter (backscatter.c: by IP, or
 *            by its forward-confirmed PTR's domain, looked up through
 *            rdns_lookup_start() when any domain is blocked) gets
 *            "554 5.7.1 ... blocked until T" - with backscatter_scope =
 *            all;
 *   MAIL     with backscatter_scope = null-sender, a blocked client's
 *            MAIL FROM:<> gets the same refusal (other mail passes);
 *   DATA     a message with the null sender is scanned as it streams
 *            (dsn.c); at the end of data it passes only if it refers to
 *            a message of ours - a Message-ID in our domains
 *            (dsn_reference = domain: local_domains, hostname,
 *            dsn_msgid_domains, or a subdomain) or, with dsn_reference =
 *            sent, one recorded by outbound learning (dsn_sent_lookup_fn).
 *            Otherwise "550 5.7.1 Delivery status notification refused:
 *            it does not refer to a message sent from here" and, with
 *            action_dsn reject or tempfail, backscatter.c counts the
 *            client (action_dsn = log counts nothing and blocks nobody).
 * The allowlist exempts a client from all of this (session.c starts no
 * check for it).  The scanner is the session's only DSN state
 * (s->chk_state[CHK_DSN], about 17 KiB, only for null-sender
 * transactions), freed in cancel() at every transaction end.
 *
 * Reads backscatter_scope, backscatter_block, backscatter_threshold,
 * dsn_msgid_domains, dsn_reference, local_domains, hostname, action_dsn.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static uint64_t dsn_scanned, dsn_refused; /* stats "dsn" */

/* dsn_sent_lookup - dsn_reference = sent: is this id recorded?  NULL:
 * nothing recorded (outbound learning not running): no id counts. */
bool (*dsn_sent_lookup_fn)(const char *id, size_t len);

/* dsn_drop - free s's scanner (s->chk_state[CHK_DSN]), if any. */
static void
dsn_drop(struct session *s)
{
	dsn_scan_free(s->chk_state[CHK_DSN]);
	s->chk_state[CHK_DSN] = NULL;
}

/* dsn_match_cb - the configured reference rule. */
static bool
dsn_match_cb(void *arg, const char *id, size_t n)
{
	const struct config *cfg = arg;

	if (cfg->dsn_reference == DSN_REF_SENT)
		return dsn_sent_lookup_fn != NULL && dsn_sent_lookup_fn(id, n);
	return dsn_id_ours(cfg, id, n);
}

/* dsn_data_begin - DATA accepted: a scanner for a null sender. */
static void
dsn_data_begin(struct session *s)
{
	dsn_drop(s);
	if (s->has_from && s->from.null)
		s->chk_state[CHK_DSN] = dsn_scan_new(dsn_match_cb, s->cfg);
}

/* dsn_body - a piece of the unstuffed message. */
static void
dsn_body(struct session *s, const char *p, size_t n)
{
	if (s->chk_state[CHK_DSN] != NULL)
		dsn_scan_feed(s->chk_state[CHK_DSN], p, n);
}

/* dsn_block_text - the reply text for a blocked client. */
static void
dsn_block_text(char *out, size_t outlen, const char *key, uint64_t until)
{
	char t[64];

	bs_format_time(until, t, sizeof(t));
	snprintf(out, outlen,
	         "Blocked for sending backscatter (bounces for mail we never "
	         "sent): %.50s until %.24s",
	         key, t);
}

/* dsn_ptr_cb - the PTR lookup is in: is its domain blocked? */
static void
dsn_ptr_cb(struct session *s, const struct rdns_ptr *p)
{
	char key[256], text[160];
	uint64_t until;

	if (p->confirmed >= 0 && bs_lookup(&s->client, p->name[p->confirmed],
	                                   key, sizeof(key), &until)) {
		dsn_block_text(text, sizeof(text), key, until);
		chk_set(s, CHK_DSN, CHK_FAIL, "554 5.7.1", text,
		        "backscatter block %s", key);
	} else {
		chk_set(s, CHK_DSN, CHK_PASS, NULL, "", "not blocked");
	}
	sess_check_done(s, CHK_DSN);
}

/* dsn_blocked_now - the block check (connect, or MAIL FROM:<>). */
static void
dsn_blocked_now(struct session *s, bool ptr_lookup)
{
	char key[256], text[160];
	uint64_t until;

	if (bs_lookup(&s->client, s->ptr, key, sizeof(key), &until)) {
		dsn_block_text(text, sizeof(text), key, until);
		chk_set(s, CHK_DSN, CHK_FAIL, "554 5.7.1", text,
		        "backscatter block %s", key);
	} else if (ptr_lookup && bs_has_domains()) {
		rdns_lookup_start(s, CHK_DSN, dsn_ptr_cb);
		return;
	} else {
		chk_set(s, CHK_DSN, CHK_PASS, NULL, "", "not blocked");
	}
	chk_done_later(s, CHK_DSN);
}

/* dsn_data - end of data: the scanner's verdict. */
static void
dsn_data(struct session *s)
{
	struct dsn_scan *scan = s->chk_state[CHK_DSN];
	const struct config *cfg = s->cfg;
	struct dsn_result r;
	enum action act = cfg->actions[CHK_DSN];

	if (!s->from.null || scan == NULL) {
		chk_set(s, CHK_DSN, CHK_PASS, NULL, "", "not a DSN");
		chk_done_later(s, CHK_DSN);
		return;
	}
	dsn_scan_end(scan, &r);
	dsn_drop(s);
	dsn_scanned++;
	if (r.referenced) {
		chk_set(s, CHK_DSN, CHK_PASS, NULL, "", "kind=%s ref=<%.90s>",
		        dsn_kind_name(r.kind), r.ref);
	} else {
		chk_set(s, CHK_DSN, CHK_FAIL, "550 5.7.1",
		        "Delivery status notification refused: it does not "
		        "refer to a message sent from here",
		        "kind=%s ids=%u%s first=<%.60s>", dsn_kind_name(r.kind),
		        r.ids, r.capped ? " capped" : "", r.first);
		dsn_refused++;
		if (act == ACT_REJECT || act == ACT_TEMPFAIL)
			bs_refused(cfg, &s->client, s->ptr);
	}
	chk_done_later(s, CHK_DSN);
}

/* dsn_start - by stage. */
static void
dsn_start(struct session *s)
{
	const struct config *cfg = s->cfg;

	switch (s->stage) {
	case STAGE_CONNECT:
		if (cfg->backscatter_scope == BS_SCOPE_ALL) {
			dsn_blocked_now(s, true);
			return;
		}
		break;
	case STAGE_MAIL:
		if (cfg->backscatter_scope == BS_SCOPE_NULL_SENDER &&
		    s->from.null) {
			dsn_blocked_now(s, false);
			return;
		}
		break;
	case STAGE_DATA:
		dsn_data(s);
		return;
	default:
		break;
	}
	chk_set(s, CHK_DSN, CHK_PASS, NULL, "", "-");
	chk_done_later(s, CHK_DSN);
}

/* dsn_cancel - the session or its transaction goes: free the scanner. */
static void
dsn_cancel(struct session *s)
{
	dsn_drop(s);
}

/* dsn_stats_json - "backscatter_blocks": N for mailmoatctl stats. */
static void
dsn_stats_json(struct buf *b)
{
	char n[32];

	snprintf(n, sizeof(n), "%zu", bs_blocked_count());
	buf_append(b, n, strlen(n));
}

/* dsn_counts_json - "dsn": {"scanned": N, "unreferenced": N}: DSNs the
 * scanner read, and those without a reference (refused or, with
 * action_dsn = log, logged). */
static void
dsn_counts_json(struct buf *b)
{
	char n[96];

	snprintf(n, sizeof(n), "{\"scanned\": %llu, \"unreferenced\": %llu}",
	         (unsigned long long)dsn_scanned,
	         (unsigned long long)dsn_refused);
	buf_append(b, n, strlen(n));
}

/* dsn_init - the backscatter table (kept across reloads), the stats, and
 * outbound learning's delivery hook (once). */
static int
dsn_init(const struct config *cfg, char *err, size_t errlen)
{
	static bool hooked;

	if (!hooked)
		sess_on_delivered(outbound_delivered);
	hooked = true;
	stats_add_section("backscatter_blocks", dsn_stats_json);
	stats_add_section("dsn", dsn_counts_json);
	stats_add_section("outbound", outbound_stats_json);
	if (dsn_sent_lookup_fn == NULL)
		dsn_sent_lookup_fn = msgids_has;
	if (bs_init(cfg) < 0) {
		snprintf(err, errlen, "backscatter: cannot open its table");
		return -1;
	}
	return 0;
}

const struct check chk_dsn = {
        .name = "dsn",
        .id = CHK_DSN,
        .stage = STAGE_CONNECT | STAGE_MAIL | STAGE_DATA,
        .init = dsn_init,
        .start = dsn_start,
        .cancel = dsn_cancel,
        .body = dsn_body,
        .data_begin = dsn_data_begin,
};
