/*
 * smtp.c - the server-side SMTP state machine (RFC 5321, 1870, 2034,
 * 3207, 6152), pure: it never touches a socket, a timer or the config.
 *
 * Public functions (proxy.h, smtp.c block):
 *   smtp_init/smtp_free   set up / release one engine (struct smtp, which
 *                         the owner embeds in its session).
 *   smtp_banner           "220 HOSTNAME ESMTP mailmoat"; input is parsed
 *                         from now on (smtp_refuse: a refusing greeting).
 *   smtp_input            bytes from the client, any segmentation.
 *   smtp_accept/_reply    the owner's answer to the command it was handed.
 *   smtp_close_reply      a final reply, then the close hook.
 *   smtp_tls_started      TLS is up: back to SMTP_ST_HELO (RFC 3207 4.2).
 *
 * What it owns: the command syntax, the order of commands (a table of
 * verbs with the states each is allowed in), the line limits (512 octets
 * per command line, 1000 per text line), the DATA scanner, the detection
 * of pre-greeting and pipelining talkers, and the replies it can give on
 * its own (5xx syntax and sequence errors, NOOP, RSET, VRFY, HELP, QUIT).
 * Every 4xx/5xx reply it makes ends with " [id=SID]".  Decisions (HELO,
 * MAIL, RCPT, DATA, end of data, STARTTLS) belong to the owner.
 *
 * Input: command lines are taken one at a time; the engine holds at most
 * one partial line, plus what a client sends while a command is with the
 * owner (a pipelining violation: PIPELINING is never advertised), capped
 * at SMTP_QUEUE_MAX.  The DATA scanner streams: body bytes go to the body
 * hook as spans of the input buffer, and only a CR LF "." CR LF (or "."
 * CR LF as the first line) ends the data.  A bare CR or LF never does (no
 * SMTP smuggling); it is rewritten as a line break, with the next line
 * dot-stuffed, so the backend never sees an early end of data either.
 *
 * Nothing here is asynchronous; the owner may answer from inside a hook
 * or later.  No config keys are read: the owner sets hostname, sid,
 * max_rcpt, size_limit and tls_offer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy.h"

#define SMTP_LINE_MAX 512   /* command line incl. CRLF, RFC 5321 4.5.3.1.4 */
#define SMTP_TEXT_MAX 1000  /* text line incl. CRLF, RFC 5321 4.5.3.1.6 */
#define SMTP_QUEUE_MAX 8192 /* input held while the owner decides */
#define SMTP_MAX_ERRORS 10  /* the 10th error reply becomes a 421 */

#define ST(s) (1u << (s))
#define ST_GREETED (ST(SMTP_ST_HELO) | ST(SMTP_ST_MAIL) | ST(SMTP_ST_RCPT))

/* Command flags. */
#define F_NOARG (1u << 0) /* no argument allowed */
#define F_ARG (1u << 1)   /* an argument is required */
#define F_ENDS (1u << 2)  /* ends the session: nothing after it */
#define F_OWNER (1u << 3) /* handed to the owner: the engine waits */

/* DATA scanner states (e->dstate). */
enum smtp_dstate {
	DS_BOL,    /* at the start of a line */
	DS_MID,    /* inside a line */
	DS_CR,     /* a CR seen, its LF not yet */
	DS_DOT,    /* "." at the start of a line, withheld */
	DS_DOTCR,  /* "." CR at the start of a line, withheld */
	DS_SYNBOL, /* after a bare CR/LF rewritten as a line break */
};

struct smtp_verb {
	const char *verb;
	void (*handler)(struct smtp *e, char *arg);
	unsigned states; /* ST() mask of the states it is allowed in */
	unsigned flags;
	const char *syntax; /* the 501 reply text for a bad argument */
};

static void smtp_do_helo(struct smtp *e, char *arg);
static void smtp_do_ehlo(struct smtp *e, char *arg);
static void smtp_do_mail(struct smtp *e, char *arg);
static void smtp_do_rcpt(struct smtp *e, char *arg);
static void smtp_do_data(struct smtp *e, char *arg);
static void smtp_do_rset(struct smtp *e, char *arg);
static void smtp_do_noop(struct smtp *e, char *arg);
static void smtp_do_quit(struct smtp *e, char *arg);
static void smtp_do_vrfy(struct smtp *e, char *arg);
static void smtp_do_help(struct smtp *e, char *arg);
static void smtp_do_starttls(struct smtp *e, char *arg);
static void smtp_do_unimpl(struct smtp *e, char *arg);

/*
 * The command table.  A verb used in a state outside its mask gets a 503
 * (smtp_sequence_error says which); F_ARG/F_NOARG violations get the
 * verb's 501 syntax text.
 */
static const struct smtp_verb smtp_verbs[] = {
        {.verb = "EHLO",
         .handler = smtp_do_ehlo,
         .states = ST_GREETED,
         .flags = F_ARG | F_OWNER,
         .syntax = "Syntax: EHLO hostname"},
        {.verb = "HELO",
         .handler = smtp_do_helo,
         .states = ST_GREETED,
         .flags = F_ARG | F_OWNER,
         .syntax = "Syntax: HELO hostname"},
        {.verb = "MAIL",
         .handler = smtp_do_mail,
         .states = ST(SMTP_ST_MAIL),
         .flags = F_ARG | F_OWNER,
         .syntax = "Syntax: MAIL FROM:<address>"},
        {.verb = "RCPT",
         .handler = smtp_do_rcpt,
         .states = ST(SMTP_ST_RCPT),
         .flags = F_ARG | F_OWNER,
         .syntax = "Syntax: RCPT TO:<address>"},
        {.verb = "DATA",
         .handler = smtp_do_data,
         .states = ST(SMTP_ST_RCPT),
         .flags = F_NOARG | F_OWNER,
         .syntax = "Syntax: DATA"},
        {.verb = "RSET",
         .handler = smtp_do_rset,
         .states = ST_GREETED,
         .flags = F_NOARG,
         .syntax = "Syntax: RSET"},
        {.verb = "NOOP", .handler = smtp_do_noop, .states = ST_GREETED},
        {.verb = "QUIT",
         .handler = smtp_do_quit,
         .states = ST_GREETED,
         .flags = F_ENDS},
        {.verb = "VRFY",
         .handler = smtp_do_vrfy,
         .states = ST_GREETED,
         .flags = F_ARG,
         .syntax = "Syntax: VRFY address"},
        {.verb = "HELP", .handler = smtp_do_help, .states = ST_GREETED},
        {.verb = "STARTTLS",
         .handler = smtp_do_starttls,
         .states = ST(SMTP_ST_MAIL),
         .flags = F_NOARG | F_OWNER,
         .syntax = "Syntax: STARTTLS"},
        /* Known, deliberately not implemented. */
        {.verb = "EXPN", .handler = smtp_do_unimpl, .states = ST_GREETED},
        {.verb = "TURN", .handler = smtp_do_unimpl, .states = ST_GREETED},
        {.verb = "ETRN", .handler = smtp_do_unimpl, .states = ST_GREETED},
        {.verb = "ATRN", .handler = smtp_do_unimpl, .states = ST_GREETED},
        {.verb = "BDAT", .handler = smtp_do_unimpl, .states = ST_GREETED},
        {.verb = "AUTH", .handler = smtp_do_unimpl, .states = ST_GREETED},
        {.verb = "SEND", .handler = smtp_do_unimpl, .states = ST_GREETED},
        {.verb = "SOML", .handler = smtp_do_unimpl, .states = ST_GREETED},
        {.verb = "SAML", .handler = smtp_do_unimpl, .states = ST_GREETED},
        {.verb = "VERB", .handler = smtp_do_unimpl, .states = ST_GREETED},
        {.verb = "XCLIENT", .handler = smtp_do_unimpl, .states = ST_GREETED},
        {.verb = "XFORWARD", .handler = smtp_do_unimpl, .states = ST_GREETED},
};

static void smtp_drain(struct smtp *e);

/* smtp_write - send a reply line (or lines) and its CRLF */
static void
smtp_write(struct smtp *e, const char *reply)
{
	size_t n = strlen(reply);
	char line[SMTP_LINE_MAX + 64];

	char *big = NULL, *out = line;

	/* One write per reply: with TLS that is one record. */
	if (n + 2 > sizeof(line))
		out = big = xmalloc(n + 2);
	memcpy(out, reply, n);
	memcpy(out + n, "\r\n", 2);
	e->hooks->write(e, out, n + 2);
	free(big);
}

/* smtp_close - stop for good and tell the owner (once) */
static void
smtp_close(struct smtp *e)
{
	if (e->state == SMTP_ST_CLOSED)
		return;
	e->state = SMTP_ST_CLOSED;
	e->waiting = false;
	e->hooks->close(e);
}

/*
 * smtp_error - an engine error reply, "CODE X.Y.Z text [id=SID]".  5xx
 * replies count toward SMTP_MAX_ERRORS; the one that reaches it is
 * replaced by a 421 and the session ends.
 */
static void
smtp_error(struct smtp *e, const char *code, const char *text)
{
	char line[SMTP_LINE_MAX];

	if (code[0] == '5' && ++e->n_errors >= SMTP_MAX_ERRORS) {
		snprintf(line, sizeof(line),
		         "421 4.7.0 Too many errors [id=%s]",
		         e->sid ? e->sid : "-");
		smtp_write(e, line);
		smtp_close(e);
		return;
	}
	snprintf(line, sizeof(line), "%s %s [id=%s]", code, text,
	         e->sid ? e->sid : "-");
	smtp_write(e, line);
}

/* smtp_violation - report one kind once; true if the session must stop */
static bool
smtp_violation(struct smtp *e, enum smtp_violation v)
{
	bool *seen = v == SMTP_VIOL_PREGREET ? &e->viol_pregreet
	                                     : &e->viol_pipelining;

	if (*seen)
		return false;
	*seen = true;
	if (e->hooks->violation(e, v) == 0)
		return e->state == SMTP_ST_CLOSED;
	/* The owner replied and closes; make sure nothing else happens. */
	e->state = SMTP_ST_CLOSED;
	e->waiting = false;
	return true;
}

/* smtp_reset_txn - forget the mail transaction (RSET, EHLO, end of data) */
static void
smtp_reset_txn(struct smtp *e)
{
	if (e->state == SMTP_ST_RCPT || e->state == SMTP_ST_DATA)
		e->state = SMTP_ST_MAIL;
	e->n_rcpt = 0;
	e->n_rcpt_tried = 0;
}

/* smtp_hand - give a command to the owner and wait for its answer */
static void
smtp_hand(struct smtp *e, enum smtp_cmd cmd, const struct smtp_args *a)
{
	e->waiting = true;
	e->pending = cmd;
	e->hooks->command(e, cmd, a);
}

/* smtp_init - a fresh engine in SMTP_ST_CONNECT, defaults for the limits */
void
smtp_init(struct smtp *e, const struct smtp_hooks *hooks)
{
	memset(e, 0, sizeof(*e));
	e->hooks = hooks;
	e->state = SMTP_ST_CONNECT;
	e->max_rcpt = SESS_MAX_RCPT;
	e->hostname = "localhost";
	e->sid = "-";
}

/* smtp_free - release the input buffer; the struct itself is the owner's */
void
smtp_free(struct smtp *e)
{
	buf_free(&e->in);
	e->state = SMTP_ST_CLOSED;
}

/* smtp_banner - the 220 greeting; queued pre-greeting input runs now */
void
smtp_banner(struct smtp *e)
{
	char line[SMTP_LINE_MAX];

	if (e->state != SMTP_ST_CONNECT)
		return;
	snprintf(line, sizeof(line), "220 %s ESMTP mailmoat", e->hostname);
	smtp_write(e, line);
	e->state = SMTP_ST_HELO;
	smtp_drain(e);
}

/* smtp_refuse - a refusing greeting; then every command but QUIT gets it */
void
smtp_refuse(struct smtp *e, const char *reply)
{
	if (e->state != SMTP_ST_CONNECT)
		return;
	smtp_write(e, reply);
	e->refuse = reply;
	e->state = SMTP_ST_HELO;
	smtp_drain(e);
}

/* smtp_ehlo_reply - the multi-line EHLO reply; never PIPELINING */
static void
smtp_ehlo_reply(struct smtp *e)
{
	const char *ext[6];
	char size[32], out[SMTP_LINE_MAX * 2];
	size_t n = 0, o;

	if (e->size_limit > 0)
		snprintf(size, sizeof(size), "SIZE %llu",
		         (unsigned long long)e->size_limit);
	else
		snprintf(size, sizeof(size), "SIZE");
	ext[n++] = size;
	ext[n++] = "8BITMIME";
	ext[n++] = "ENHANCEDSTATUSCODES";
	if (e->tls_offer && !e->tls_active)
		ext[n++] = "STARTTLS";
	o = snprintf(out, sizeof(out), "250-%.255s\r\n", e->hostname);
	for (size_t i = 0; i < n; i++)
		o += snprintf(out + o, sizeof(out) - o, "250%c%s\r\n",
		              i + 1 < n ? '-' : ' ', ext[i]);
	e->hooks->write(e, out, o);
}

/* smtp_answered - the owner's answer went out: next state, more input */
static void
smtp_answered(struct smtp *e, bool ok)
{
	enum smtp_cmd cmd = e->pending;

	e->waiting = false;
	switch (cmd) {
	case SMTP_CMD_EHLO:
	case SMTP_CMD_HELO:
		if (ok) {
			smtp_reset_txn(e);
			e->state = SMTP_ST_MAIL;
			e->esmtp = cmd == SMTP_CMD_EHLO;
		}
		break;
	case SMTP_CMD_MAIL:
		if (ok) {
			e->state = SMTP_ST_RCPT;
			e->n_rcpt = 0;
			e->n_rcpt_tried = 0;
		}
		break;
	case SMTP_CMD_RCPT:
		if (ok)
			e->n_rcpt++;
		break;
	case SMTP_CMD_DATA:
		if (ok) {
			e->state = SMTP_ST_DATA;
			e->dstate = DS_BOL;
			e->msg_size = 0;
			e->line_len = 0;
			e->bad_line_end = false;
			e->line_too_long = false;
			e->too_big = false;
			e->cr_in_span = false;
		}
		break;
	case SMTP_CMD_DOT:
		smtp_reset_txn(e);
		break;
	case SMTP_CMD_STARTTLS:
		if (ok) {
			/* CVE-2011-0411: plaintext sent before the handshake
			 * must not be read as if it came over TLS. */
			e->tls_wait = true;
			if (!e->busy)
				e->in.len = 0;
		}
		break;
	default:
		break;
	}
	if (e->state != SMTP_ST_CLOSED)
		smtp_drain(e);
}

/* smtp_accept - the pending command is accepted: the standard reply */
void
smtp_accept(struct smtp *e)
{
	char line[SMTP_LINE_MAX];

	if (!e->waiting || e->state == SMTP_ST_CLOSED)
		return;
	switch (e->pending) {
	case SMTP_CMD_EHLO:
		smtp_ehlo_reply(e);
		break;
	case SMTP_CMD_HELO:
		snprintf(line, sizeof(line), "250 %.255s", e->hostname);
		smtp_write(e, line);
		break;
	case SMTP_CMD_MAIL:
		smtp_write(e, "250 2.1.0 Ok");
		break;
	case SMTP_CMD_RCPT:
		if (e->pending_addr_err != ADDR_OK) {
			/* The owner let a relay hack through: not here. */
			e->waiting = false;
			smtp_error(e, "550 5.7.1", "Relaying denied");
			if (e->state != SMTP_ST_CLOSED)
				smtp_drain(e);
			return;
		}
		smtp_write(e, "250 2.1.5 Ok");
		break;
	case SMTP_CMD_DATA:
		smtp_write(e, "354 End data with <CR><LF>.<CR><LF>");
		break;
	case SMTP_CMD_DOT:
		smtp_write(e, "250 2.0.0 Ok");
		break;
	case SMTP_CMD_STARTTLS:
		smtp_write(e, "220 2.0.0 Ready to start TLS");
		break;
	default:
		break;
	}
	smtp_answered(e, true);
}

/* smtp_reply - the owner's own reply to the pending command */
void
smtp_reply(struct smtp *e, bool ok, const char *reply)
{
	if (!e->waiting || e->state == SMTP_ST_CLOSED)
		return;
	if (ok && e->pending == SMTP_CMD_RCPT &&
	    e->pending_addr_err != ADDR_OK) {
		smtp_accept(e); /* refuses it */
		return;
	}
	smtp_write(e, reply);
	smtp_answered(e, ok);
}

/* smtp_close_reply - a final reply, then the close hook */
void
smtp_close_reply(struct smtp *e, const char *reply)
{
	if (e->state == SMTP_ST_CLOSED)
		return;
	smtp_write(e, reply);
	smtp_close(e);
}

/* smtp_tls_started - TLS is up: forget everything said before (RFC 3207) */
void
smtp_tls_started(struct smtp *e)
{
	if (e->state == SMTP_ST_CLOSED)
		return;
	e->tls_active = true;
	e->tls_wait = false;
	e->waiting = false;
	e->esmtp = false;
	e->state = SMTP_ST_HELO;
	e->n_rcpt = 0;
	e->n_rcpt_tried = 0;
	if (!e->busy)
		e->in.len = 0;
}

/* ---------------------------------------------------------- commands */

/* smtp_do_helo - HELO name: the owner decides */
static void
smtp_do_helo(struct smtp *e, char *arg)
{
	struct smtp_args a = {.helo = arg};

	if (e->state == SMTP_ST_RCPT) {
		smtp_reset_txn(e);
		e->hooks->command(e, SMTP_CMD_RSET, &a);
	}
	smtp_hand(e, SMTP_CMD_HELO, &a);
}

/* smtp_do_ehlo - EHLO name: the owner decides, accept lists extensions */
static void
smtp_do_ehlo(struct smtp *e, char *arg)
{
	struct smtp_args a = {.helo = arg};

	/* RFC 5321 4.1.4: an EHLO in a transaction also resets it. */
	if (e->state == SMTP_ST_RCPT) {
		smtp_reset_txn(e);
		e->hooks->command(e, SMTP_CMD_RSET, &a);
	}
	smtp_hand(e, SMTP_CMD_EHLO, &a);
}

/* smtp_prefix - if s starts with kw (any case), the rest; else NULL */
static char *
smtp_prefix(char *s, const char *kw)
{
	size_t n = strlen(kw);

	if (strncasecmp(s, kw, n) != 0)
		return NULL;
	s += n;
	/* "MAIL FROM: <a@b>" is common in the wild */
	while (*s == ' ')
		s++;
	return s;
}

/* smtp_parse_u64 - all digits, at most 20 of them; 0 or -EINVAL */
static int
smtp_parse_u64(const char *s, uint64_t *v)
{
	uint64_t x = 0;
	size_t n = 0;

	for (; *s; s++, n++) {
		if (*s < '0' || *s > '9' || n >= 20)
			return -EINVAL;
		if (x > (UINT64_MAX - (*s - '0')) / 10)
			return -EINVAL;
		x = x * 10 + (*s - '0');
	}
	if (n == 0)
		return -EINVAL;
	*v = x;
	return 0;
}

/*
 * smtp_mail_params - the ESMTP parameters after the reverse-path.
 * Returns true if the command may go on; false after an error reply.
 */
static bool
smtp_mail_params(struct smtp *e, char *p, struct smtp_args *a)
{
	char *kw, *val, *save = NULL;

	for (kw = strtok_r(p, " ", &save); kw != NULL;
	     kw = strtok_r(NULL, " ", &save)) {
		val = strchr(kw, '=');
		if (val != NULL)
			*val++ = '\0';
		if (!e->esmtp) {
			smtp_error(e, "555 5.5.4", "Unsupported parameter");
			return false;
		}
		if (strcasecmp(kw, "SIZE") == 0) {
			if (val == NULL || smtp_parse_u64(val, &a->size) != 0) {
				smtp_error(e, "501 5.5.4",
				           "Bad SIZE parameter");
				return false;
			}
			if (e->size_limit > 0 && a->size > e->size_limit) {
				smtp_error(e, "552 5.3.4",
				           "Message size exceeds fixed maximum "
				           "message size");
				return false;
			}
		} else if (strcasecmp(kw, "BODY") == 0) {
			if (val != NULL && strcasecmp(val, "7BIT") == 0) {
				a->body_8bit = false;
			} else if (val != NULL &&
			           strcasecmp(val, "8BITMIME") == 0) {
				a->body_8bit = true;
			} else if (val != NULL &&
			           strcasecmp(val, "BINARYMIME") == 0) {
				smtp_error(e, "504 5.5.4",
				           "BODY=BINARYMIME is not supported");
				return false;
			} else {
				smtp_error(e, "501 5.5.4",
				           "Bad BODY parameter");
				return false;
			}
		} else {
			smtp_error(e, "555 5.5.4", "Unsupported parameter");
			return false;
		}
	}
	return true;
}

/* smtp_do_mail - MAIL FROM:<path> [SIZE=n] [BODY=7BIT|8BITMIME] */
static void
smtp_do_mail(struct smtp *e, char *arg)
{
	struct mailpath path;
	struct smtp_args a = {.path = &path};
	const char *end;
	char *rest;
	int r;

	rest = smtp_prefix(arg, "FROM:");
	if (rest == NULL) {
		smtp_error(e, "501 5.5.4", "Syntax: MAIL FROM:<address>");
		return;
	}
	r = addr_parse_path(rest, &path, &end);
	if (r == ADDR_ESYNTAX || r == ADDR_ETOOLONG ||
	    (*end != '\0' && *end != ' ')) {
		smtp_error(e, "501 5.1.7", "Bad sender address syntax");
		return;
	}
	/* A source route is ignored (RFC 5321 4.1.1.3, 3.6.1); a %-hack or
	 * bang path in a sender is no relay attempt: both go through. */
	a.addr_err = r;
	if (!smtp_mail_params(e, (char *)end, &a))
		return;
	smtp_hand(e, SMTP_CMD_MAIL, &a);
}

/* smtp_do_rcpt - RCPT TO:<path>; relay hacks go to the owner flagged */
static void
smtp_do_rcpt(struct smtp *e, char *arg)
{
	struct mailpath path;
	struct smtp_args a = {.path = &path};
	const char *end;
	char *rest;
	int r;

	rest = smtp_prefix(arg, "TO:");
	if (rest == NULL) {
		smtp_error(e, "501 5.5.4", "Syntax: RCPT TO:<address>");
		return;
	}
	if (strncasecmp(rest, "<postmaster>", 12) == 0) {
		/* RFC 5321 4.5.1: always accepted without a domain; the
		 * owner gets it with domain "" and decides. */
		memset(&path, 0, sizeof(path));
		strcpy(path.local, "postmaster");
		end = rest + 12;
		r = ADDR_OK;
	} else {
		r = addr_parse_path(rest, &path, &end);
	}
	if (r == ADDR_ESYNTAX || r == ADDR_ETOOLONG || path.null) {
		smtp_error(e, "501 5.1.3", "Bad recipient address syntax");
		return;
	}
	if (*end == ' ' && end[1] != '\0') {
		smtp_error(e, "555 5.5.4", "Unsupported parameter");
		return;
	}
	if (*end != '\0' && *end != ' ') {
		smtp_error(e, "501 5.1.3", "Bad recipient address syntax");
		return;
	}
	if (e->n_rcpt >= e->max_rcpt) {
		e->n_rcpt_tried++;
		smtp_error(e, "452 4.5.3", "Too many recipients");
		return;
	}
	e->n_rcpt_tried++;
	a.addr_err = r;
	e->pending_addr_err = r;
	smtp_hand(e, SMTP_CMD_RCPT, &a);
}

/* smtp_do_data - DATA: needs an accepted recipient, then the owner */
static void
smtp_do_data(struct smtp *e, char *arg)
{
	struct smtp_args a = {0};

	if (e->n_rcpt_tried == 0) {
		smtp_error(e, "503 5.5.1", "Error: need RCPT command");
		return;
	}
	if (e->n_rcpt == 0) {
		smtp_error(e, "554 5.5.1", "Error: no valid recipients");
		return;
	}
	smtp_hand(e, SMTP_CMD_DATA, &a);
}

/* smtp_do_rset - RSET: answered here, the owner is told */
static void
smtp_do_rset(struct smtp *e, char *arg)
{
	struct smtp_args a = {0};

	smtp_reset_txn(e);
	smtp_write(e, "250 2.0.0 Ok");
	e->hooks->command(e, SMTP_CMD_RSET, &a);
}

/* smtp_do_noop - NOOP */
static void
smtp_do_noop(struct smtp *e, char *arg)
{
	smtp_write(e, "250 2.0.0 Ok");
}

/* smtp_do_quit - QUIT: 221 and the end */
static void
smtp_do_quit(struct smtp *e, char *arg)
{
	struct smtp_args a = {0};

	smtp_write(e, "221 2.0.0 Bye");
	e->hooks->command(e, SMTP_CMD_QUIT, &a);
	smtp_close(e);
}

/* smtp_do_vrfy - VRFY: never discloses users (RFC 5321 3.5.3) */
static void
smtp_do_vrfy(struct smtp *e, char *arg)
{
	smtp_write(e, "252 2.5.2 Cannot VRFY user, but will accept message "
	              "and attempt delivery");
}

/* smtp_do_help - HELP */
static void
smtp_do_help(struct smtp *e, char *arg)
{
	smtp_write(e, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET "
	              "NOOP QUIT VRFY HELP");
}

/* smtp_do_starttls - STARTTLS: only when offered, before MAIL */
static void
smtp_do_starttls(struct smtp *e, char *arg)
{
	struct smtp_args a = {0};

	if (e->tls_active) {
		smtp_error(e, "503 5.5.1", "Error: TLS already active");
		return;
	}
	if (!e->tls_offer) {
		smtp_error(e, "502 5.5.1", "Command not implemented");
		return;
	}
	smtp_hand(e, SMTP_CMD_STARTTLS, &a);
}

/* smtp_do_unimpl - a known command we do not implement */
static void
smtp_do_unimpl(struct smtp *e, char *arg)
{
	smtp_error(e, "502 5.5.1", "Command not implemented");
}

/* smtp_sequence_error - the 503 for a verb outside its states */
static void
smtp_sequence_error(struct smtp *e, const struct smtp_verb *v)
{
	const char *why = "Error: bad sequence of commands";

	if (e->state == SMTP_ST_HELO && v->handler != smtp_do_rcpt &&
	    v->handler != smtp_do_data)
		why = "Error: send HELO/EHLO first";
	else if (v->handler == smtp_do_mail)
		why = "Error: nested MAIL command";
	else if (v->handler == smtp_do_rcpt || v->handler == smtp_do_data)
		why = "Error: need MAIL command";
	else if (v->handler == smtp_do_starttls)
		why = "Error: MAIL transaction in progress";
	smtp_error(e, "503 5.5.1", why);
}

/*
 * smtp_line - one complete command line (CRLF stripped, NUL-terminated).
 * more: the client already sent bytes after it.  Enforces the pipelining
 * rule and the state mask, then dispatches.
 */
static void
smtp_line(struct smtp *e, char *line, size_t len, bool more)
{
	const struct smtp_verb *v = NULL;
	char *arg;
	size_t vlen;

	while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
		line[--len] = '\0';
	vlen = strcspn(line, " ");
	for (size_t i = 0; i < ARRAY_LEN(smtp_verbs); i++) {
		if (strlen(smtp_verbs[i].verb) == vlen &&
		    strncasecmp(line, smtp_verbs[i].verb, vlen) == 0) {
			v = &smtp_verbs[i];
			break;
		}
	}
	if (more && !(v != NULL && (v->flags & F_ENDS)) &&
	    smtp_violation(e, SMTP_VIOL_PIPELINING))
		return;
	if (e->refuse != NULL && !(v != NULL && (v->flags & F_ENDS))) {
		/* refused at connect: the same reply until QUIT, and a
		 * client that keeps talking counts its errors */
		if (++e->n_errors >= SMTP_MAX_ERRORS) {
			smtp_write(e, e->refuse);
			smtp_close(e);
			return;
		}
		smtp_write(e, e->refuse);
		return;
	}
	if (memchr(line, '\0', len) != NULL || v == NULL) {
		smtp_error(e, "500 5.5.2", "Command unrecognized");
		return;
	}
	arg = line + vlen;
	while (*arg == ' ')
		arg++;
	if (!(v->states & ST(e->state))) {
		smtp_sequence_error(e, v);
		return;
	}
	if (((v->flags & F_ARG) && *arg == '\0') ||
	    ((v->flags & F_NOARG) && *arg != '\0')) {
		smtp_error(e, "501 5.5.4", v->syntax);
		return;
	}
	v->handler(e, arg);
}

/* smtp_take_line - the next command line of p; bytes used, 0 if partial */
static size_t
smtp_take_line(struct smtp *e, const char *p, size_t n)
{
	const char *lf = memchr(p, '\n', n);
	char line[SMTP_LINE_MAX];
	size_t used, len;

	if (e->skip_line) {
		if (lf == NULL)
			return n;
		e->skip_line = false;
		return lf - p + 1;
	}
	if (lf == NULL) {
		if (n < SMTP_LINE_MAX)
			return 0;
		/* Already too long without its end: answer, then drop the
		 * rest of it as it comes. */
		e->skip_line = true;
		smtp_error(e, "500 5.5.6", "Line too long");
		return n;
	}
	used = lf - p + 1;
	len = used - 1;
	if (len > 0 && p[len - 1] == '\r')
		len--;
	if (used > SMTP_LINE_MAX) {
		smtp_error(e, "500 5.5.6", "Line too long");
		return used;
	}
	memcpy(line, p, len);
	line[len] = '\0';
	smtp_line(e, line, len, used < n);
	return used;
}

/* ------------------------------------------------------- DATA scanner */

/* smtp_emit - canonical body bytes to the owner, counted */
static void
smtp_emit(struct smtp *e, const char *p, size_t n)
{
	if (n == 0 || e->too_big)
		return;
	e->msg_size += n;
	if (e->size_limit > 0 && e->msg_size > e->size_limit) {
		e->too_big = true;
		return;
	}
	e->hooks->body(e, p, n);
}

/*
 * smtp_text_run - skip ordinary text in p[i..n): returns the index of the
 * next CR or LF (or n), counting the octets on the current text line.
 * The body is ~95% of what the proxy reads, so this is its hot loop: two
 * memchr() passes cost far less than a test per byte.
 */
static inline size_t
smtp_text_run(struct smtp *e, const char *p, size_t i, size_t n)
{
	const char *s = p + i;
	const char *stop = memchr(s, '\n', n - i);
	const char *cr;

	if (stop == NULL)
		stop = p + n;
	cr = memchr(s, '\r', (size_t)(stop - s));
	if (cr != NULL)
		stop = cr;
	/* line_len saturates: only "over the limit" matters */
	if ((size_t)(stop - s) > SMTP_TEXT_MAX ||
	    (e->line_len += (unsigned)(stop - s)) > SMTP_TEXT_MAX - 2) {
		e->line_too_long = true;
		e->line_len = SMTP_TEXT_MAX;
	}
	return (size_t)(stop - p);
}

/* smtp_end_of_data - the final "." CRLF: hand the message to the owner */
static void
smtp_end_of_data(struct smtp *e, bool more)
{
	struct smtp_args a = {
	        .msg_size = e->msg_size,
	        .bad_line_end = e->bad_line_end,
	        .line_too_long = e->line_too_long,
	        .too_big = e->too_big,
	};

	smtp_reset_txn(e); /* what follows are commands again */
	if (more && smtp_violation(e, SMTP_VIOL_PIPELINING))
		return;
	smtp_hand(e, SMTP_CMD_DOT, &a);
}

/*
 * smtp_data_scan - body bytes of p; returns how many were used (all of
 * them, unless the end of data is among them).  Valid input goes out as
 * spans of p.  Withheld bytes (a leading "." or ".\r", a CR at the end
 * of p) are implied by the state and re-sent from constants.
 */
static size_t
smtp_data_scan(struct smtp *e, const char *p, size_t n)
{
	size_t i = 0, span = 0;
	unsigned char c;

	while (i < n) {
		c = p[i];
		switch (e->dstate) {
		case DS_MID:
			/* the fast path: ordinary text up to the next CR or LF,
			 * found with memchr (vectorised in libc) */
			i = smtp_text_run(e, p, i, n);
			if (i == n)
				break;
			if (p[i] == '\r') {
				e->dstate = DS_CR;
				e->cr_in_span = true;
			} else {
				/* bare LF: a line break, flagged */
				smtp_emit(e, p + span, i - span);
				smtp_emit(e, "\r\n", 2);
				span = i + 1;
				e->bad_line_end = true;
				e->line_len = 0;
				e->dstate = DS_SYNBOL;
			}
			i++;
			break;
		case DS_BOL:
		case DS_SYNBOL:
			e->line_len = 0;
			if (c == '.' && e->dstate == DS_BOL) {
				smtp_emit(e, p + span, i - span);
				span = i + 1;
				e->line_len = 1;
				e->dstate = DS_DOT;
				i++;
			} else if (c == '.') {
				/* a line made by a rewrite: stuff its dot */
				smtp_emit(e, p + span, i - span);
				smtp_emit(e, ".", 1);
				span = i;
				e->line_len = 1;
				e->dstate = DS_MID;
			} else {
				e->dstate = DS_MID; /* c is seen there */
			}
			break;
		case DS_CR:
			if (c == '\n') {
				if (!e->cr_in_span)
					smtp_emit(e, "\r", 1);
				e->dstate = DS_BOL;
				i++;
				break;
			}
			/* bare CR: the CR becomes a line break */
			if (e->cr_in_span)
				smtp_emit(e, p + span, i - 1 - span);
			smtp_emit(e, "\r\n", 2);
			span = i;
			e->bad_line_end = true;
			e->line_len = 0;
			e->dstate = DS_SYNBOL; /* c is seen there */
			break;
		case DS_DOT:
			if (c == '\r') {
				e->dstate = DS_DOTCR;
				span = i + 1;
				i++;
			} else if (c == '\n') {
				/* ".\n" must not reach the backend as ".\r\n"
				 */
				smtp_emit(e, "..\r\n", 4);
				span = i + 1;
				e->bad_line_end = true;
				e->dstate = DS_SYNBOL;
				i++;
			} else {
				smtp_emit(e, ".", 1);
				span = i;
				e->dstate = DS_MID; /* c is seen there */
			}
			break;
		case DS_DOTCR:
			if (c == '\n') {
				smtp_end_of_data(e, i + 1 < n);
				return i + 1;
			}
			/* "." bare CR: stuffed, the CR a line break */
			smtp_emit(e, "..\r\n", 4);
			span = i;
			e->bad_line_end = true;
			e->dstate = DS_SYNBOL;
			break;
		}
	}
	if (e->dstate == DS_CR && e->cr_in_span) {
		/* the CR is the last byte: hold it until its LF shows */
		smtp_emit(e, p + span, n - 1 - span);
		e->cr_in_span = false;
	} else if (e->dstate != DS_DOT && e->dstate != DS_DOTCR) {
		smtp_emit(e, p + span, n - span);
	}
	return n;
}

/* ------------------------------------------------------------- input */

/*
 * smtp_feed - process p until a command waits for the owner or the
 * session ends; returns the bytes used (a partial line is left).
 */
static size_t
smtp_feed(struct smtp *e, const char *p, size_t n)
{
	size_t off = 0, used;

	e->busy = true;
	while (off < n) {
		if (e->state == SMTP_ST_CLOSED || e->tls_wait) {
			off = n; /* dropped */
			break;
		}
		if (e->waiting)
			break;
		if (e->state == SMTP_ST_DATA) {
			off += smtp_data_scan(e, p + off, n - off);
			continue;
		}
		used = smtp_take_line(e, p + off, n - off);
		if (used == 0)
			break;
		off += used;
	}
	e->busy = false;
	return off;
}

/* smtp_queue - keep input for later, within SMTP_QUEUE_MAX */
static void
smtp_queue(struct smtp *e, const char *buf, size_t len)
{
	char line[SMTP_LINE_MAX];

	if (e->in.len + len > SMTP_QUEUE_MAX) {
		snprintf(line, sizeof(line),
		         "421 4.7.0 Too much input without waiting for "
		         "replies [id=%s]",
		         e->sid ? e->sid : "-");
		smtp_close_reply(e, line);
		return;
	}
	buf_append(&e->in, buf, len);
}

/* smtp_drain - process queued input, as far as it goes */
static void
smtp_drain(struct smtp *e)
{
	size_t used;

	if (e->busy)
		return; /* the loop below us goes on by itself */
	while (e->in.len > 0 && !e->waiting && e->state != SMTP_ST_CLOSED &&
	       !e->tls_wait) {
		used = smtp_feed(e, e->in.data, e->in.len);
		buf_consume(&e->in, used);
		if (used == 0)
			break;
	}
	if (e->state == SMTP_ST_CLOSED || e->tls_wait)
		e->in.len = 0;
	if (e->in.len == 0 && e->in.cap > SMTP_LINE_MAX * 2)
		buf_free(&e->in); /* idle sessions stay small */
}

/* smtp_input - bytes from the client */
void
smtp_input(struct smtp *e, const char *buf, size_t len)
{
	size_t used;

	if (len == 0 || e->state == SMTP_ST_CLOSED)
		return;
	if (e->state == SMTP_ST_CONNECT) {
		if (smtp_violation(e, SMTP_VIOL_PREGREET))
			return;
		smtp_queue(e, buf, len);
		return;
	}
	if (e->tls_wait) {
		/* plaintext between our 220 and the handshake: injected */
		smtp_violation(e, SMTP_VIOL_PIPELINING);
		return;
	}
	if (e->waiting || e->busy) {
		if (smtp_violation(e, SMTP_VIOL_PIPELINING))
			return;
		smtp_queue(e, buf, len);
		return;
	}
	if (e->in.len > 0) {
		smtp_queue(e, buf, len);
		smtp_drain(e);
		return;
	}
	/* The common case: straight from the caller's buffer. */
	used = smtp_feed(e, buf, len);
	if (used < len && e->state != SMTP_ST_CLOSED && !e->tls_wait)
		smtp_queue(e, buf + used, len - used);
}
