/*
 * greylist.c - check "greylist": temp-fail the first delivery attempt of
 * an unknown (client network, sender, recipient) triplet.
 *
 * Public: chk_greylist (check.h).
 *
 * At RCPT, last in the registry: a known passed triplet, a retry after
 * greylist_delay (within greylist_window) or an auto-allowed network
 * passes (logged with waited=Ns); anything else gets
 * "451 4.7.1 Greylisting in action, please come back in a few minutes".
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

/* chk_greylist_start - decide from the tables (answer on the next turn). */
static void
chk_greylist_start(struct session *s)
{
	char t[900];
	unsigned waited;

	chk_greylist_key(s, &s->rcpt, t, sizeof(t));
	switch (greylist_lookup(s->cfg, t, &waited)) {
	case GL_R_PASS:
		chk_set(s, CHK_GREYLIST, CHK_PASS, NULL, "", "waited=%us",
		        waited);
		log_info("greylist: id=%s pass waited=%us triplet=\"%s\"",
		         s->sid, waited, t);
		break;
	case GL_R_AUTO:
		chk_set(s, CHK_GREYLIST, CHK_PASS, NULL, "", "auto_allowed");
		break;
	case GL_R_WAIT:
		chk_set(s, CHK_GREYLIST, CHK_FAIL, GL_CODE, GL_TEXT_REPLY,
		        "waited=%us", waited);
		break;
	default:
		chk_set(s, CHK_GREYLIST, CHK_FAIL, GL_CODE, GL_TEXT_REPLY,
		        "new");
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
