/*
 * test_verdict.c - verdict_decide() and verdict_default_code(): a table of
 * results x actions -> kind and reply.
 */
#include <stdlib.h>

#include "proxy.h"
#include "t.h"

struct vcase {
	const char *name;
	enum chk_status st;
	const char *code; /* NULL: none named */
	const char *text;
	enum action act;
	const char *sid;
	enum verdict_kind want_kind;
	const char *want_reply;
};

static const struct vcase cases[] = {
        {"pass accepts", CHK_PASS, "554 5.7.1", "x", ACT_REJECT, "AAAAA",
         VERDICT_ACCEPT, ""},
        {"not run accepts", CHK_NONE, NULL, "", ACT_REJECT, "AAAAA",
         VERDICT_ACCEPT, ""},
        {"pending accepts", CHK_PENDING, NULL, "", ACT_REJECT, "AAAAA",
         VERDICT_ACCEPT, ""},
        {"off accepts a failure", CHK_FAIL, "554 5.7.1", "listed", ACT_OFF,
         "AAAAA", VERDICT_ACCEPT, ""},
        {"reject dnsbl", CHK_FAIL, "554 5.7.1",
         "We don't accept mail from your IP (listed at bl.example)", ACT_REJECT,
         "7Q2KD", VERDICT_REJECT,
         "554 5.7.1 We don't accept mail from your IP (listed at bl.example) "
         "[id=7Q2KD]"},
        {"reject without code: 550 5.7.1", CHK_FAIL, NULL, "bad", ACT_REJECT,
         "B", VERDICT_REJECT, "550 5.7.1 bad [id=B]"},
        {"tempfail turns 5xx into 451 4.7.1", CHK_FAIL, "550 5.7.1",
         "Your IP address does not resolve", ACT_TEMPFAIL, "C",
         VERDICT_TEMPFAIL, "451 4.7.1 Your IP address does not resolve [id=C]"},
        {"log lets through", CHK_FAIL, "550 5.7.1", "helo", ACT_LOG, "D",
         VERDICT_LOG, "550 5.7.1 helo [id=D]"},
        {"temperr with reject: 451 4.4.3", CHK_TEMPERR, "550 5.7.1",
         "DNS lookup failed", ACT_REJECT, "E", VERDICT_TEMPFAIL,
         "451 4.4.3 DNS lookup failed [id=E]"},
        {"temperr with tempfail: 451 4.4.3", CHK_TEMPERR, NULL, "DNS timeout",
         ACT_TEMPFAIL, "F", VERDICT_TEMPFAIL, "451 4.4.3 DNS timeout [id=F]"},
        {"temperr with log: logged", CHK_TEMPERR, NULL, "DNS timeout", ACT_LOG,
         "G", VERDICT_LOG, "550 5.7.1 DNS timeout [id=G]"},
        {"temperr with off: accepted", CHK_TEMPERR, NULL, "DNS timeout",
         ACT_OFF, "G", VERDICT_ACCEPT, ""},
        {"a 4xx check (greylist) under reject stays 4xx", CHK_FAIL, "451 4.7.1",
         "Greylisting in action, please come back in a few "
         "minutes",
         ACT_REJECT, "H", VERDICT_TEMPFAIL,
         "451 4.7.1 Greylisting in action, please come back in a few minutes "
         "[id=H]"},
        {"empty text gets a default", CHK_FAIL, "554 5.7.1", "", ACT_REJECT,
         "I", VERDICT_REJECT, "554 5.7.1 Message refused [id=I]"},
        {"no session id: no [id=]", CHK_FAIL, "550 5.5.3",
         "A null sender may have one recipient only", ACT_REJECT, "",
         VERDICT_REJECT, "550 5.5.3 A null sender may have one recipient only"},
};

static const struct {
	int id;
	const char *want;
} codes[] = {
        {CHK_DNSBL, "554 5.7.1"},      {CHK_RDNS, "550 5.7.1"},
        {CHK_DYNAMIC, "550 5.7.1"},    {CHK_HELO, "550 5.7.1"},
        {CHK_SENDER_TLD, "550 5.7.1"}, {CHK_SENDER_MX, "550 5.7.1"},
        {CHK_SPF, "550 5.7.1"},        {CHK_PREGREET, "554 5.5.0"},
        {CHK_PIPELINING, "554 5.5.0"}, {CHK_NULL_SENDER, "550 5.5.3"},
        {CHK_GREYLIST, "451 4.7.1"},   {CHK_SCANNER, "554 5.7.1"},
};

/* main - run the tables. */
int
main(void)
{
	unsigned i;

	for (i = 0; i < ARRAY_LEN(cases); i++) {
		const struct vcase *c = &cases[i];
		struct chk_result r = {.status = c->st, .code = c->code};
		struct verdict v;

		snprintf(r.text, sizeof(r.text), "%s", c->text);
		t_begin(c->name);
		verdict_decide(&r, c->act, c->sid, &v);
		T_INTEQ(v.kind, c->want_kind);
		T_STREQ(v.reply, c->want_reply);
		t_end();
	}
	t_begin("NULL result accepts");
	{
		struct verdict v;

		verdict_decide(NULL, ACT_REJECT, "X", &v);
		T_INTEQ(v.kind, VERDICT_ACCEPT);
	}
	t_end();
	t_begin("long text is truncated, not overflowed");
	{
		struct chk_result r = {.status = CHK_FAIL, .code = "554 5.7.1"};
		struct verdict v;

		memset(r.text, 'a', sizeof(r.text) - 1);
		r.text[sizeof(r.text) - 1] = '\0';
		verdict_decide(&r, ACT_REJECT, "ABCDE", &v);
		T_INTEQ(v.kind, VERDICT_REJECT);
		T_CHECK(strlen(v.reply) < sizeof(v.reply), "len %zu",
		        strlen(v.reply));
		T_CHECK(strncmp(v.reply, "554 5.7.1 aaa", 13) == 0, "got %s",
		        v.reply);
	}
	t_end();
	for (i = 0; i < ARRAY_LEN(codes); i++) {
		char name[64];

		snprintf(name, sizeof(name), "default code of %s",
		         config_check_name(codes[i].id));
		t_begin(name);
		T_STREQ(verdict_default_code(codes[i].id), codes[i].want);
		t_end();
	}
	t_begin("a stage's decision: reject beats tempfail, first of equals");
	{
		static const struct {
			enum verdict_kind cand, best;
			bool want;
		} w[] = {
		        {VERDICT_REJECT, VERDICT_ACCEPT, true},
		        {VERDICT_REJECT, VERDICT_LOG, true},
		        {VERDICT_REJECT, VERDICT_TEMPFAIL, true},
		        {VERDICT_REJECT, VERDICT_REJECT, false},
		        {VERDICT_TEMPFAIL, VERDICT_ACCEPT, true},
		        {VERDICT_TEMPFAIL, VERDICT_LOG, true},
		        {VERDICT_TEMPFAIL, VERDICT_TEMPFAIL, false},
		        {VERDICT_TEMPFAIL, VERDICT_REJECT, false},
		        {VERDICT_LOG, VERDICT_ACCEPT, false},
		        {VERDICT_ACCEPT, VERDICT_ACCEPT, false},
		};
		struct verdict a, b;

		for (i = 0; i < ARRAY_LEN(w); i++) {
			a.kind = w[i].cand;
			b.kind = w[i].best;
			T_CHECK(verdict_wins(&a, &b) == w[i].want,
			        "cand %d best %d: got %d, want %d", w[i].cand,
			        w[i].best, !w[i].want, w[i].want);
		}
	}
	t_end();
	return t_exit();
}
