/*
 * outbound.c - outbound learning: the office server's own outgoing mail
 * through outbound_listen, relayed in-line to outbound_relay, and the
 * Message-IDs it carried recorded for dsn_reference = sent.
 *
 * Public (proxy.h, outbound block):
 *   outbound_client_ok()  may this client use outbound_listen?
 *                         (outbound_clients; nobody else)
 *   outbound_refusal()    the 554 greeting for anybody else
 *   outbound_body()       the unstuffed message of an outbound session
 *                         (its top header section is read for the
 *                         Message-ID; the rest costs nothing)
 *   outbound_delivered()  the smarthost took it (2xx to the dot): the
 *                         Message-ID is recorded (msgids.c) for
 *                         backscatter_block + OUTBOUND_RETRY_S
 *   outbound_end()        the transaction is over: free what it held
 *
 * The session code owns the listener and the relay; this file only
 * decides who may use it and what is learnt.  Per session: one struct
 * msgids_tap (2 KiB) in s->outbound_tap while a message streams.
 * Reads outbound_clients, backscatter_block.  Nothing async.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy.h"

/* How long a bounce may still come after backscatter_block: the retry
 * time of the far MTA's queue (Postfix maximal_queue_lifetime, 5d). */
#define OUTBOUND_RETRY_S (5u * 86400u)

static uint64_t outbound_learned; /* stats "outbound_learned" */

/* outbound_client_ok - client in outbound_clients? */
bool
outbound_client_ok(const struct config *cfg, const struct ipaddr *ip)
{
	return cfg->outbound_clients != NULL &&
	       list_match_ip(cfg->outbound_clients, ip);
}

/* outbound_refusal - the greeting for a client not allowed (no CRLF). */
void
outbound_refusal(const char *sid, char *out, size_t outlen)
{
	snprintf(out, outlen,
	         "554 5.7.1 This port is only for our own outgoing mail "
	         "[id=%s]",
	         sid);
}

/* outbound_body - a piece of the message of outbound session s. */
void
outbound_body(struct session *s, const char *p, size_t n)
{
	if (s->outbound_tap == NULL) {
		s->outbound_tap = xmalloc(sizeof(struct msgids_tap));
		msgids_tap_init(s->outbound_tap);
	}
	msgids_tap_feed(s->outbound_tap, p, n);
}

/* outbound_delivered - the smarthost took the message: learn its id. */
void
outbound_delivered(struct session *s)
{
	char id[256];

	if (!s->outbound || s->outbound_tap == NULL)
		return;
	if (msgids_tap_id(s->outbound_tap, id, sizeof(id))) {
		msgids_add(id, strlen(id),
		           store_now() + s->cfg->backscatter_block_s +
		                   OUTBOUND_RETRY_S);
		outbound_learned++;
		log_debug("id=%s outbound Message-ID <%s> recorded", s->sid,
		          id);
	}
	outbound_end(s);
}

/* outbound_end - the transaction is over (delivered or not). */
void
outbound_end(struct session *s)
{
	free(s->outbound_tap);
	s->outbound_tap = NULL;
}

/* outbound_stats_json - {"learned": N, "recorded": N}. */
void
outbound_stats_json(struct buf *b)
{
	char t[96];

	snprintf(t, sizeof(t), "{\"learned\": %llu, \"recorded\": %zu}",
	         (unsigned long long)outbound_learned, msgids_count());
	buf_append(b, t, strlen(t));
}
