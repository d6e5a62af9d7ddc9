/*
 * hdrfilter.c - removes forged Authentication-Results header fields from
 * a message on its way to the internal server.
 *
 * Public (proxy.h, hdrfilter block):
 *   hdrfilter_init()  start a message; authserv_id is our hostname
 *   hdrfilter_feed()  canonical body bytes in, the kept ones to out()
 *   hdrfilter_end()   end of data: anything still held goes out
 *
 * mailmoat adds its own Authentication-Results field (SPF, iprev).  RFC
 * 8601 section 5: a border MTA must remove fields that claim to come from
 * its own authserv-id, or a sender could forge "spf=pass" and the
 * internal server's filters would trust it.  Only the header section is
 * looked at; a field is dropped with its continuation lines.  To decide,
 * the start of each header line is held (at most HF_HOLD_MAX bytes, then
 * it is kept as is); every other byte goes out as a span of the input.
 *
 * Owns nothing; no I/O.  Reads no config key (the caller passes the
 * authserv-id, `hostname`).
 */
#include <string.h>
#include <strings.h>

#include "proxy.h"

#define HF_NAME "Authentication-Results"

enum hf_state {
	HF_LINE, /* at the start of a header line */
	HF_HOLD, /* holding a line start until it is decided */
	HF_KEEP, /* rest of a kept line */
	HF_DROP, /* rest of a dropped line */
	HF_BODY, /* past the empty line: everything passes */
};

/* hdrfilter_init - a new message. */
void
hdrfilter_init(struct hdrfilter *f, const char *authserv_id)
{
	f->state = HF_LINE;
	f->dropping = false;
	f->held = 0;
	f->authserv_id = authserv_id;
}

/*
 * hf_decide - does the held field start say enough?  1: keep the field,
 * 0: drop it, -1: need more (the authserv-id may even be on a folded
 * continuation line).  A continuation line follows its field.
 */
static int
hf_decide(const struct hdrfilter *f, bool line_complete)
{
	const char *p = f->hold, *end = f->hold + f->held, *colon, *id, *te;
	size_t nlen = strlen(HF_NAME), idlen = strlen(f->authserv_id);

	if (p[0] == ' ' || p[0] == '\t')
		return f->dropping ? 0 : 1;
	colon = memchr(p, ':', f->held);
	if (colon == NULL)
		return line_complete || f->held > nlen + 1 ? 1 : -1;
	id = colon + 1;
	/* the field name may have white space before its colon */
	while (colon > p && (colon[-1] == ' ' || colon[-1] == '\t'))
		colon--;
	if ((size_t)(colon - p) != nlen || strncasecmp(p, HF_NAME, nlen) != 0)
		return 1;
	while (id < end && strchr(" \t\r\n", *id) != NULL)
		id++;
	for (te = id; te < end && strchr(" \t\r\n;(", *te) == NULL; te++)
		;
	if (te == end)
		return -1;
	/* ours only if the whole token is: not "mx.example.com.evil" */
	return (size_t)(te - id) == idlen &&
	                       strncasecmp(id, f->authserv_id, idlen) == 0
	               ? 0
	               : 1;
}

/* hf_flush - the held bytes go out (kept) or away (dropped). */
static void
hf_flush(struct hdrfilter *f, bool keep, hdrfilter_out_fn out, void *arg)
{
	if (keep && f->held > 0)
		out(arg, f->hold, f->held);
	f->held = 0;
}

/*
 * hdrfilter_feed - filter p[0..n).  Bytes of kept lines go to out() as
 * spans of p where they can, held ones from the filter's own buffer.
 */
void
hdrfilter_feed(struct hdrfilter *f, const char *p, size_t n,
               hdrfilter_out_fn out, void *arg)
{
	size_t i = 0, span = 0;

	while (i < n) {
		switch (f->state) {
		case HF_BODY:
			i = n;
			break;
		case HF_LINE:
			if (p[i] == '\r' || p[i] == '\n') {
				/* the empty line: the body follows */
				f->state = HF_BODY;
				break;
			}
			if (span < i)
				out(arg, p + span, i - span);
			span = i;
			f->state = HF_HOLD;
			break;
		case HF_HOLD: {
			const char *nl;
			size_t take;
			bool eol;
			int d;

			if (f->held > 0 && f->hold[f->held - 1] == '\n' &&
			    p[i] != ' ' && p[i] != '\t') {
				/* the field ended undecided: keep it */
				hf_flush(f, true, out, arg);
				f->dropping = false;
				f->state = HF_LINE;
				break;
			}
			nl = memchr(p + i, '\n', n - i);
			take = (nl ? (size_t)(nl - p) + 1 : n) - i;
			if (take > sizeof(f->hold) - f->held)
				take = sizeof(f->hold) - f->held;
			memcpy(f->hold + f->held, p + i, take);
			f->held += take;
			i += take;
			span = i;
			d = hf_decide(f, f->hold[f->held - 1] == '\n');
			if (d < 0 && f->held == sizeof(f->hold))
				d = 1; /* too long to judge: keep it */
			if (d < 0)
				break;
			eol = f->hold[f->held - 1] == '\n';
			if (f->hold[0] != ' ' && f->hold[0] != '\t')
				f->dropping = d == 0;
			hf_flush(f, d == 1, out, arg);
			if (eol)
				f->state = HF_LINE;
			else
				f->state = d == 1 ? HF_KEEP : HF_DROP;
			break;
		}
		case HF_KEEP:
		case HF_DROP: {
			const char *nl = memchr(p + i, '\n', n - i);
			size_t stop = nl ? (size_t)(nl - p) + 1 : n;

			if (f->state == HF_DROP) {
				if (span < i)
					out(arg, p + span, i - span);
				span = stop;
			}
			i = stop;
			if (nl != NULL)
				f->state = HF_LINE;
			break;
		}
		}
	}
	if (span < n && f->state != HF_HOLD)
		out(arg, p + span, n - span);
}

/* hdrfilter_end - end of data: a line start still held is kept. */
void
hdrfilter_end(struct hdrfilter *f, hdrfilter_out_fn out, void *arg)
{
	if (f->state == HF_HOLD)
		hf_flush(f, true, out, arg);
	f->state = HF_BODY;
}
