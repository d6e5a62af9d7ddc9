/*
 * bodytap.c - the message body on its way from the client to the relay.
 *
 * Shared (session_int.h): sess_send_headers() (Received and the checks'
 * header lines in front of the message), sess_smtp_body_cb() (the
 * engine's body hook: through the header filter to the relay),
 * sess_body_out().
 *
 * Config keys: hostname (Received, the header filter's authserv-id).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "session_int.h"

/* sess_send_headers - Received + the checks' header lines, before the
 * first body byte. */
void
sess_send_headers(struct sess *x)
{
	struct session *s = &x->s;
	char hdr[1024], date[64], helo[64], ptr[64];
	struct tm tm;
	time_t now = time(NULL);
	int n;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	/* Client-chosen names: printable, no spaces or parentheses. */
	log_kv_escape(helo, sizeof(helo), s->helo);
	log_kv_escape(ptr, sizeof(ptr), s->ptr[0] ? s->ptr : "unknown");
	for (char *p = helo; *p; p++)
		if (*p == '"' || *p == '(' || *p == ')' || *p == ' ')
			*p = '_';
	n = snprintf(hdr, sizeof(hdr),
	             "Received: from %s (%s [%s])\r\n\tby %s (mailmoat) with "
	             "%s id %s;\r\n\t%s\r\n",
	             helo, ptr, s->client_str, s->cfg->hostname,
	             s->smtp.tls_active ? "ESMTPS"
	                                : (s->smtp.esmtp ? "ESMTP" : "SMTP"),
	             s->sid, date);
	if (n > 0 && (size_t)n < sizeof(hdr))
		relay_body(s->relay, hdr, (size_t)n);
	if (s->add_headers.len > 0)
		relay_body(s->relay, s->add_headers.data, s->add_headers.len);
}

/* sess_body_out - message bytes that passed the header filter. */
void
sess_body_out(void *arg, const char *p, size_t n)
{
	struct sess *x = arg;

	if (x->s.relay != NULL)
		relay_body(x->s.relay, p, n);
}

/* sess_smtp_body_cb - canonical body bytes: straight to the backend. */
void
sess_smtp_body_cb(struct smtp *e, const char *buf, size_t len)
{
	struct session *s = container_of(e, struct session, smtp);
	struct sess *x = sess_x(s);

	if (s->relay != NULL && x->in_data)
		hdrfilter_feed(x->hf, buf, len, sess_body_out, x);
}
