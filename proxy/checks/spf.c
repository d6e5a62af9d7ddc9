/*
 * spf.c - check "spf": RFC 7208 SPF of the MAIL FROM identity (of
 * postmaster@HELO for the null sender), and the Authentication-Results
 * header (RFC 8601) for the message.
 *
 * Public: chk_spf (check.h); spf_auth_results() (proxy.h, for tests).
 *
 * The evaluation (spf_eval_start() in ../spf.c: libspf2 answered from
 * dns.c's cache, misses fetched by dns.c) runs on the loop: no thread, no
 * resolver of its own, no limit on evaluations in flight (each is a small
 * allocation waiting for dns.c).  The job holds copies of the config
 * values; its callback finds the session through the job's chk_ticket
 * and drops the answer when the session has gone or moved on (a new MAIL,
 * RSET).
 *
 * Result mapping (verdict.c then applies action_spf):
 *   pass, none      -> CHK_PASS
 *   fail            -> CHK_FAIL "550 5.7.1 SPF check failed: <the domain's
 *                      explanation, or 'domain D does not designate IP as
 *                      permitted sender'>"
 *   softfail, neutral, permerror -> by spf_softfail / spf_neutral /
 *                      spf_permerror: off or log -> CHK_PASS (log: one
 *                      log line); tempfail -> CHK_FAIL "451 4.7.1 ...";
 *                      reject -> CHK_FAIL "550 5.7.1 ...".  The stricter of
 *                      that and action_spf wins (verdict.c).
 *   temperror       -> CHK_TEMPERR (451 4.4.3 at most, never a reject)
 * Known forwarders belong in the allowlist: session.c runs no check for an
 * allowlisted client.  Explanations come from the sender's DNS: spf.c
 * sanitizes them (printable ASCII) before they reach a reply.
 *
 * Authentication-Results: appended to s->add_headers when the result is
 * known (session.c resets add_headers at each MAIL and sends them before
 * the body): "Authentication-Results: HOST; spf=R smtp.mailfrom=A;
 * iprev=R policy.iprev=IP (PTR)", iprev from the rdns check's work (s->ptr;
 * omitted when no reverse lookup ran).  Every value is rebuilt from a
 * restricted character set, so nothing from the network can add lines.
 *
 * Stage MAIL; reads hostname, dns_timeout_ms, spf_softfail,
 * spf_neutral, spf_permerror.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

struct spf_job {
	struct chk_ticket t;
	struct ipaddr client;
	enum action act[3];            /* softfail, neutral, permerror */
	const struct spf_outcome *out; /* during spf_done_cb only */
};

/* spf_sub_action - the action configured for a non-fail result. */
static enum action
spf_sub_action(const struct spf_job *j, enum spf_res r)
{
	switch (r) {
	case SPF_RES_SOFTFAIL:
		return j->act[0];
	case SPF_RES_NEUTRAL:
		return j->act[1];
	case SPF_RES_PERMERROR:
		return j->act[2];
	default:
		return ACT_OFF;
	}
}

/* spf_text - the reply text for a refused result. */
static void
spf_text(const struct spf_job *j, char *text, size_t len)
{
	const struct spf_outcome *o = j->out;
	char ip[INET6_ADDRSTRLEN];

	ipaddr_format(&j->client, ip, sizeof(ip));
	switch (o->result) {
	case SPF_RES_FAIL:
		if (o->explanation[0])
			snprintf(text, len, "SPF check failed: %.150s",
			         o->explanation);
		else
			snprintf(text, len,
			         "SPF check failed: domain %.100s does not "
			         "designate %s as permitted sender",
			         o->domain, ip);
		break;
	case SPF_RES_SOFTFAIL:
		snprintf(text, len,
		         "SPF check failed (softfail): domain %.100s does not "
		         "designate %s as permitted sender",
		         o->domain, ip);
		break;
	case SPF_RES_NEUTRAL:
		snprintf(text, len,
		         "SPF check failed (neutral): domain %.100s makes no "
		         "statement about %s",
		         o->domain, ip);
		break;
	case SPF_RES_PERMERROR:
		snprintf(text, len,
		         "SPF check failed: the SPF record of %.100s is "
		         "invalid (permerror)",
		         o->domain);
		break;
	default:
		snprintf(text, len,
		         "Temporary DNS failure checking the SPF record of "
		         "%.100s",
		         o->domain);
		break;
	}
}

/* spf_value_ok - c may appear in a header value we build. */
static bool
spf_value_ok(char c, bool local)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '.')
		return true;
	/* RFC 5322 atext in a local part, minus what RFC 8601 values and
	 * comments would choke on. */
	return local && c != '\0' && strchr("!#$%&'*+/=?^_`{|}~", c) != NULL;
}

/* spf_auth_results - the Authentication-Results line (with CRLF) into out,
 * for result r of identity (from, or helo when from is NULL or null),
 * with iprev from ptr (NULL: no iprev; "": fail, or temperror when
 * rdns_temp).  All values restricted to safe characters. */
void
spf_auth_results(char *out, size_t outlen, const char *authserv, enum spf_res r,
                 const struct mailpath *from, const char *helo,
                 const struct ipaddr *client, const char *ptr, bool rdns_temp)
{
	char prop[400], host[256], ip[INET6_ADDRSTRLEN], iprev[400];
	size_t n = 0, i;
	bool local_ok = true;

	for (i = 0; authserv && authserv[i] && n + 1 < sizeof(host); i++)
		if (spf_value_ok(authserv[i], false))
			host[n++] = authserv[i];
	host[n] = '\0';
	if (n == 0)
		snprintf(host, sizeof(host), "mailmoat");

	n = 0;
	if (from != NULL && !from->null && from->domain[0]) {
		n = (size_t)snprintf(prop, sizeof(prop), "smtp.mailfrom=");
		for (i = 0; from->local[i]; i++)
			if (!spf_value_ok(from->local[i], true))
				local_ok = false;
		if (local_ok && from->local[0] && !from->quoted) {
			for (i = 0; from->local[i] && n + 2 < sizeof(prop); i++)
				prop[n++] = from->local[i];
			prop[n++] = '@';
		}
		for (i = 0; from->domain[i] && n + 1 < sizeof(prop); i++)
			if (spf_value_ok(from->domain[i], false))
				prop[n++] = from->domain[i];
		prop[n] = '\0';
	} else {
		n = (size_t)snprintf(prop, sizeof(prop), "smtp.helo=");
		for (i = 0; helo && helo[i] && n + 1 < sizeof(prop); i++)
			if (spf_value_ok(helo[i], false))
				prop[n++] = helo[i];
		prop[n] = '\0';
	}

	iprev[0] = '\0';
	if (ptr != NULL && client != NULL) {
		char name[256];

		ipaddr_format(client, ip, sizeof(ip));
		n = 0;
		for (i = 0; ptr[i] && n + 1 < sizeof(name); i++)
			if (spf_value_ok(ptr[i], false))
				name[n++] = ptr[i];
		name[n] = '\0';
		if (name[0])
			snprintf(iprev, sizeof(iprev),
			         "; iprev=pass policy.iprev=%s (%s)", ip, name);
		else
			snprintf(iprev, sizeof(iprev),
			         "; iprev=%s policy.iprev=%s",
			         rdns_temp ? "temperror" : "fail", ip);
	}
	snprintf(out, outlen, "Authentication-Results: %s; spf=%s %s%s\r\n",
	         host, spf_res_name(r), prop, iprev);
}

/* spf_add_header - append the Authentication-Results line for s. */
static void
spf_add_header(struct session *s, enum spf_res r)
{
	char line[1200];
	const char *ptr = s->ptr;
	enum chk_status rd = s->results[CHK_RDNS].status;
	enum chk_status dy = s->results[CHK_DYNAMIC].status;

	/* No reverse lookup ran (rdns and dynamic off): say nothing. */
	if (!ptr[0] && (rd == CHK_NONE || rd == CHK_PENDING) &&
	    (dy == CHK_NONE || dy == CHK_PENDING))
		ptr = NULL;
	spf_auth_results(line, sizeof(line), s->cfg->hostname, r,
	                 s->has_from ? &s->from : NULL, s->helo, &s->client,
	                 ptr, rd == CHK_TEMPERR);
	buf_append(&s->add_headers, line, strlen(line));
}

/* spf_done_cb - on the loop: map the outcome into the session's slot. */
static void
spf_done_cb(void *arg, const struct spf_outcome *o, int rc)
{
	struct spf_job *j = arg;
	struct session *s;
	char text[256], ip[INET6_ADDRSTRLEN];
	enum action a;

	j->out = o;
	s = chk_ticket_session(&j->t);
	if (s == NULL)
		goto done; /* the session has gone or moved on */

	ipaddr_format(&j->client, ip, sizeof(ip));
	if (rc < 0) {
		snprintf(text, sizeof(text),
		         "Temporary failure checking SPF for %.100s",
		         o->domain[0] ? o->domain : "the sender");
		chk_set(s, CHK_SPF, CHK_TEMPERR, NULL, text,
		        "spf=temperror error=%d", rc);
		goto finish;
	}
	spf_text(j, text, sizeof(text));
	switch (o->result) {
	case SPF_RES_PASS:
	case SPF_RES_NONE:
		chk_set(s, CHK_SPF, CHK_PASS, NULL, "",
		        "spf=%s identity=%s domain=%s ip=%s",
		        spf_res_name(o->result),
		        o->helo_identity ? "helo" : "mailfrom", o->domain, ip);
		break;
	case SPF_RES_FAIL:
		chk_set(s, CHK_SPF, CHK_FAIL, "550 5.7.1", text,
		        "spf=fail identity=%s domain=%s ip=%s why=%s",
		        o->helo_identity ? "helo" : "mailfrom", o->domain, ip,
		        o->reason);
		break;
	case SPF_RES_TEMPERROR:
		chk_set(s, CHK_SPF, CHK_TEMPERR, NULL, text,
		        "spf=temperror domain=%s why=%s", o->domain, o->reason);
		break;
	default: /* softfail, neutral, permerror */
		a = spf_sub_action(j, o->result);
		if (a == ACT_REJECT || a == ACT_TEMPFAIL) {
			chk_set(s, CHK_SPF, CHK_FAIL,
			        a == ACT_REJECT ? "550 5.7.1" : "451 4.7.1",
			        text, "spf=%s domain=%s ip=%s why=%s",
			        spf_res_name(o->result), o->domain, ip,
			        o->reason);
		} else {
			if (a == ACT_LOG)
				log_info(
				        "id=%s client=%s action=log reason=spf "
				        "detail=\"spf=%s domain=%s\"",
				        s->sid, s->client_str,
				        spf_res_name(o->result), o->domain);
			chk_set(s, CHK_SPF, CHK_PASS, NULL, "",
			        "spf=%s domain=%s ip=%s why=%s",
			        spf_res_name(o->result), o->domain, ip,
			        o->reason);
		}
		break;
	}
finish:
	spf_add_header(s, rc < 0 ? SPF_RES_TEMPERROR : o->result);
	sess_check_done(s, CHK_SPF);
done:
	free(j);
}

/* spf_start - start the evaluation for s's MAIL FROM (or HELO). */
static void
spf_start(struct session *s)
{
	const struct config *c = s->cfg;
	struct spf_job *j;
	struct spf_query q = {0};
	char sender[330] = "";
	uv_loop_t *loop = s->tcp.loop ? s->tcp.loop : uv_default_loop();

	j = xcalloc(1, sizeof(*j));
	j->t = chk_ticket_make(s, CHK_SPF);
	j->client = s->client;
	j->act[0] = c->spf_softfail;
	j->act[1] = c->spf_neutral;
	j->act[2] = c->spf_permerror;
	if (s->has_from && !s->from.null && s->from.domain[0])
		addr_format(&s->from, sender, sizeof(sender));
	q.client = s->client;
	q.helo = s->helo;
	q.sender = sender;
	q.receiver = c->hostname ? c->hostname : "";
	q.timeout_ms = c->dns_timeout_ms;
	if (spf_eval_start(loop, &q, spf_done_cb, j) < 0) {
		free(j);
		chk_set(s, CHK_SPF, CHK_TEMPERR, NULL,
		        "Temporary failure checking SPF",
		        "spf=temperror bad client address");
		chk_done_later(s, CHK_SPF);
	}
}

const struct check chk_spf = {
        .name = "spf",
        .id = CHK_SPF,
        .stage = STAGE_MAIL,
        .start = spf_start,
};
