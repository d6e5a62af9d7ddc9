/*
 * verdict.c - from one check's result and its action to a decision.
 *
 * Public:
 *   verdict_decide()        pure: result + action + session id -> verdict
 *   verdict_default_code()  the reject code of a check when it names none
 *
 * Rules (SPEC.md 1):
 *   - off, or a result that is not a failure: accept;
 *   - log: would have refused, is counted and let through (VERDICT_LOG);
 *   - reject: the check's code (or its default) and text;
 *   - tempfail: a 5xx code becomes "451 4.7.1", the text is kept;
 *   - a CHK_TEMPERR result (DNS failed) never rejects: "451 4.4.3".
 * The reply is "CODE X.Y.Z text [id=SID]", no CRLF.
 *
 * Owns nothing, reads no config key, runs nothing async.
 */
#include <stdio.h>
#include <string.h>

#include "proxy.h"

/* verdict_default_code - reject code of check id when it names none. */
const char *
verdict_default_code(int id)
{
	switch (id) {
	case CHK_DNSBL:
		return "554 5.7.1";
	case CHK_PREGREET:
	case CHK_PIPELINING:
		return "554 5.5.0";
	case CHK_NULL_SENDER:
		return "550 5.5.3";
	case CHK_GREYLIST:
		return "451 4.7.1";
	case CHK_SCANNER:
		return "554 5.7.1";
	default:
		return "550 5.7.1";
	}
}

/* verdict_reply - write "CODE text [id=SID]" into out. */
static void
verdict_reply(struct verdict *out, const char *code, const char *text,
              const char *sid)
{
	if (text == NULL || text[0] == '\0')
		text = "Message refused";
	if (sid != NULL && sid[0] != '\0')
		snprintf(out->reply, sizeof(out->reply), "%s %s [id=%s]", code,
		         text, sid);
	else
		snprintf(out->reply, sizeof(out->reply), "%s %s", code, text);
}

/* verdict_decide - pure: the decision for one check's result. */
void
verdict_decide(const struct chk_result *r, enum action act, const char *sid,
               struct verdict *out)
{
	const char *code;

	out->kind = VERDICT_ACCEPT;
	out->check = -1;
	out->reply[0] = '\0';
	if (r == NULL || act == ACT_OFF)
		return;
	if (r->status != CHK_FAIL && r->status != CHK_TEMPERR)
		return;
	code = r->code != NULL && r->code[0] != '\0' ? r->code : "550 5.7.1";

	if (act == ACT_LOG) {
		out->kind = VERDICT_LOG;
		verdict_reply(out, code, r->text, sid);
		return;
	}
	if (r->status == CHK_TEMPERR) {
		out->kind = VERDICT_TEMPFAIL;
		verdict_reply(out, "451 4.4.3", r->text, sid);
		return;
	}
	if (code[0] == '4') {
		/* A check that only ever tempfails (greylisting). */
		out->kind = VERDICT_TEMPFAIL;
		verdict_reply(out, code, r->text, sid);
		return;
	}
	if (act == ACT_TEMPFAIL) {
		out->kind = VERDICT_TEMPFAIL;
		verdict_reply(out, "451 4.7.1", r->text, sid);
		return;
	}
	out->kind = VERDICT_REJECT;
	verdict_reply(out, code, r->text, sid);
}

/*
 * verdict_wins - should cand replace best as a stage's decision?  A
 * reject beats a tempfail, a tempfail beats an accept (log is an accept
 * here: it is logged on its own); among equals the first one stays.
 */
bool
verdict_wins(const struct verdict *cand, const struct verdict *best)
{
	if (cand->kind == VERDICT_REJECT)
		return best->kind != VERDICT_REJECT;
	if (cand->kind == VERDICT_TEMPFAIL)
		return best->kind == VERDICT_ACCEPT ||
		       best->kind == VERDICT_LOG;
	return false;
}
