/*
 * greylist.c - check "greylist": temp-fail the first delivery attempt of
 * an unknown (client network, sender, recipient) triplet.
 *
 * Public: chk_greylist (check.h).
 *
 * At RCPT, last in the registry: a known passed triplet, a retry after
 * greylist_delay (within greylist_window) or an auto-allowed network
 * passes (a line "greylist: id= client= pass waited=Ns|auto_allowed
 * triplet="NET SENDER RCPT""); anything else gets
 * "451 4.7.1 Greylisting in action, please come back in a few minutes"
 * (decision detail "new net=NET" or "too early: waited=Ns of Ds
 * net=NET": NET is the /24, /64 or PTR domain the triplet is keyed on).
 * With action_greylist = log, stage.c calls won() when nothing refused:
 * the triplet is recorded as if refused, so later attempts are logged
 * as the retries they would have been.
 * A new triplet is recorded only when greylisting's tempfail is the
 * stage's decision (won(): no other check refused that recipient).  After
 * each delivery (sess_on_delivered) the passed triplets of the message
 * are renewed and the network's deliveries counted for auto-allow.  The
 * session skips every check for allowlisted clients and senders.  Logic
 * and state: ../greylist.c.  Config: action_greylist, greylist_*.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"

#define GL_CODE "451 4.7.1"
#define GL_TEXT_REPLY "Greylisting in action, please come back in a few minutes"

static void chk_greylist_delivered(struct session *s);

/* chk_greylist_stats - greylist_pending etc. as top-level stats keys. */
static void
chk_greylist_num(struct buf *b, int which)
{
	uint64_t v[4];
	char tmp[32];
	int n;

	greylist_stats(&v[0], &v[1], &v[2], &v[3]);
	stats.greylist_entries = v[0];
	n = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v[which]);
	buf_append(b, tmp, (size_t)n);
}

static void
chk_greylist_pending_json(struct buf *b)
{
	chk_greylist_num(b, 1);
}

static void
chk_greylist_passed_json(struct buf *b)
{
	chk_greylist_num(b, 2);
}

static void
chk_greylist_auto_json(struct buf *b)
{
	chk_greylist_num(b, 3);
}

/* chk_greylist_init - the tables, the stats keys, the delivery hook. */
static int
chk_greylist_init(const struct config *cfg, char *err, size_t errlen)
{
	static bool hooked;

	greylist_open();
	stats_add_section("greylist_pending", chk_greylist_pending_json);
	stats_add_section("greylist_passed", chk_greylist_passed_json);
	stats_add_section("auto_allowed", chk_greylist_auto_json);
	if (!hooked)
		sess_on_delivered(chk_greylist_delivered);
	hooked = true;
	return 0;
}

/* chk_greylist_key - the triplet of s's current recipient. */
static void
chk_greylist_key(const struct session *s, const struct mailpath *rcpt,
                 char *out, size_t outlen)
{
	greylist_triplet(&s->client, s->ptr, s->has_from ? &s->from : NULL,
	                 rcpt, out, outlen);
}

/* chk_greylist_pass_log - the pass line: why this recipient was not
 * greylisted (the decision line is the backend's, later). */
static void
chk_greylist_pass_log(const struct session *s, const char *t, const char *why)
{
	char esc[1000];

	log_kv_escape(esc, sizeof(esc), t);
	log_info("greylist: id=%s client=%s pass %s triplet=%s", s->sid,
	         s->client_str, why, esc);
}

/* chk_greylist_start - decide from the tables (answer on the next turn).
 * The refusal's detail names the network the triplet is keyed on (the
 * /24, /64 or PTR domain: why a retry from elsewhere waits again). */
static void
chk_greylist_start(struct session *s)
{
	char t[900], net[260], why[64];
	unsigned waited;

	chk_greylist_key(s, &s->rcpt, t, sizeof(t));
	greylist_net(&s->client, s->ptr, net, sizeof(net));
	switch (greylist_lookup(s->cfg, t, &waited)) {
	case GL_R_PASS:
		chk_set(s, CHK_GREYLIST, CHK_PASS, NULL, "", "waited=%us",
		        waited);
		snprintf(why, sizeof(why), "waited=%us", waited);
		chk_greylist_pass_log(s, t, why);
		break;
	case GL_R_AUTO:
		chk_set(s, CHK_GREYLIST, CHK_PASS, NULL, "", "auto_allowed");
		chk_greylist_pass_log(s, t, "auto_allowed");
		break;
	case GL_R_WAIT:
		chk_set(s, CHK_GREYLIST, CHK_FAIL, GL_CODE, GL_TEXT_REPLY,
		        "too early: waited=%us of %us net=%s", waited,
		        s->cfg->greylist_delay_s, net);
		break;
	default:
		chk_set(s, CHK_GREYLIST, CHK_FAIL, GL_CODE, GL_TEXT_REPLY,
		        "new net=%s", net);
		break;
	}
	chk_done_later(s, CHK_GREYLIST);
}

/* chk_greylist_won - greylisting is the RCPT's decision: the triplet
 * starts waiting (if new). */
static void
chk_greylist_won(struct session *s)
{
	char t[900];

	chk_greylist_key(s, &s->rcpt, t, sizeof(t));
	greylist_record(s->cfg, t);
}

/* chk_greylist_delivered - renew the message's triplets, count the
 * network's deliveries. */
static void
chk_greylist_delivered(struct session *s)
{
	char t[900];

	if (s->allowlisted || s->cfg->actions[CHK_GREYLIST] == ACT_OFF)
		return;
	for (unsigned i = 0; i < s->n_to; i++) {
		chk_greylist_key(s, &s->to[i], t, sizeof(t));
		greylist_delivered(s->cfg, t);
	}
}

const struct check chk_greylist = {
        .name = "greylist",
        .id = CHK_GREYLIST,
        .stage = STAGE_RCPT,
        .init = chk_greylist_init,
        .start = chk_greylist_start,
        .won = chk_greylist_won,
};
