/*
 * test_smtp.c - smtp.c driven by a fake owner.  The engine is pure, so
 * its peer is the hook table here: it records what the engine writes,
 * the commands and body bytes it hands over and the violations, and
 * answers at once (sync), later (deferred, the test calls smtp_accept),
 * or with a reply of its own.  Cases: whole dialogues, every reply code
 * path, line limits, pipelining and pre-greeting, STARTTLS input discard,
 * the SMTP smuggling sequences (tests/unit/data/smtp-eod-sequences.tsv,
 * split reads included), dot-stuffing and zero-copy output, too many
 * errors, RSET, the recipient limit.
 */
#include <stdlib.h>

#include "proxy.h"
#include "t.h"

enum fake_mode {
	FAKE_SYNC,  /* smtp_accept() from inside the command hook */
	FAKE_DEFER, /* the test answers */
};

struct fake {
	struct smtp e;
	enum fake_mode mode;
	struct buf out; /* everything written to the client */
	unsigned writes;
	struct buf body; /* body bytes */
	unsigned body_calls;
	bool body_in_input; /* every body span pointed into `input` */
	const char *input;  /* the buffer being fed, for the check above */
	size_t input_len;
	char cmds[512]; /* "EHLO MAIL RCPT ..." in order */
	int n_cmd;
	enum smtp_cmd last;
	char last_helo[600];
	char last_path[600];
	int last_addr_err;
	uint64_t last_size;
	bool last_8bit;
	struct smtp_args dot; /* the end-of-data args */
	int n_dot;
	int viol[2];
	int viol_ret;
	int closed;
	bool reject_rcpt;  /* answer RCPT with a 550 */
	bool accept_relay; /* accept RCPT even with addr_err */
};

static const char *const cmd_names[] = {
        [SMTP_CMD_EHLO] = "EHLO",         [SMTP_CMD_HELO] = "HELO",
        [SMTP_CMD_MAIL] = "MAIL",         [SMTP_CMD_RCPT] = "RCPT",
        [SMTP_CMD_DATA] = "DATA",         [SMTP_CMD_DOT] = "DOT",
        [SMTP_CMD_STARTTLS] = "STARTTLS", [SMTP_CMD_RSET] = "RSET",
        [SMTP_CMD_QUIT] = "QUIT",
};

/* fake_write - the client's view */
static void
fake_write(struct smtp *e, const char *buf, size_t len)
{
	struct fake *f = container_of(e, struct fake, e);

	buf_append(&f->out, buf, len);
	f->writes++;
}

/* fake_command - record, then answer as the mode says */
static void
fake_command(struct smtp *e, enum smtp_cmd cmd, const struct smtp_args *a)
{
	struct fake *f = container_of(e, struct fake, e);
	size_t n = strlen(f->cmds);

	snprintf(f->cmds + n, sizeof(f->cmds) - n, "%s%s", n ? " " : "",
	         cmd_names[cmd]);
	f->n_cmd++;
	f->last = cmd;
	if (a->helo != NULL)
		snprintf(f->last_helo, sizeof(f->last_helo), "%s", a->helo);
	if (a->path != NULL)
		addr_format(a->path, f->last_path, sizeof(f->last_path));
	f->last_addr_err = a->addr_err;
	f->last_size = a->size;
	f->last_8bit = a->body_8bit;
	if (cmd == SMTP_CMD_DOT) {
		f->dot = *a;
		f->n_dot++;
	}
	if (cmd == SMTP_CMD_RSET || cmd == SMTP_CMD_QUIT ||
	    f->mode != FAKE_SYNC)
		return;
	if (cmd == SMTP_CMD_DOT)
		smtp_reply(e, true, "250 2.0.0 Ok: queued");
	else if (cmd == SMTP_CMD_RCPT && a->addr_err != ADDR_OK &&
	         !f->accept_relay)
		smtp_reply(e, false, "550 5.7.1 Relaying denied [id=T]");
	else if (cmd == SMTP_CMD_RCPT && f->reject_rcpt)
		smtp_reply(e, false, "550 5.7.1 recipient <x@y> unknown");
	else
		smtp_accept(e);
}

/* fake_body - collect, and note whether it was zero-copy */
static void
fake_body(struct smtp *e, const char *buf, size_t len)
{
	struct fake *f = container_of(e, struct fake, e);

	buf_append(&f->body, buf, len);
	f->body_calls++;
	if (f->input == NULL || buf < f->input ||
	    buf + len > f->input + f->input_len)
		f->body_in_input = false;
}

/* fake_violation - count; optionally stop the session */
static int
fake_violation(struct smtp *e, enum smtp_violation v)
{
	struct fake *f = container_of(e, struct fake, e);

	f->viol[v]++;
	if (f->viol_ret < 0)
		smtp_close_reply(e,
		                 "554 5.5.0 Pipelining is not allowed [id=T]");
	return f->viol_ret;
}

/* fake_close - count */
static void
fake_close(struct smtp *e)
{
	struct fake *f = container_of(e, struct fake, e);

	f->closed++;
}

static const struct smtp_hooks fake_hooks = {
        .write = fake_write,
        .command = fake_command,
        .body = fake_body,
        .violation = fake_violation,
        .close = fake_close,
};

/* fake_new - an engine with test settings, banner not sent yet */
static struct fake *
fake_new(enum fake_mode mode)
{
	struct fake *f = xcalloc(1, sizeof(*f));

	smtp_init(&f->e, &fake_hooks);
	f->mode = mode;
	f->e.hostname = "mx.example.com";
	f->e.sid = "T1";
	f->e.size_limit = 10000;
	f->body_in_input = true;
	return f;
}

/* fake_free - everything */
static void
fake_free(struct fake *f)
{
	smtp_free(&f->e);
	buf_free(&f->out);
	buf_free(&f->body);
	free(f);
}

/* take - what was written since the last take, as a string */
static const char *
take(struct fake *f)
{
	static char s[16384];
	size_t n = f->out.len < sizeof(s) - 1 ? f->out.len : sizeof(s) - 1;

	if (n > 0)
		memcpy(s, f->out.data, n);
	s[n] = '\0';
	f->out.len = 0;
	return s;
}

/* say - feed a string in one read */
static void
say(struct fake *f, const char *s)
{
	f->input = s;
	f->input_len = strlen(s);
	smtp_input(&f->e, s, strlen(s));
	f->input = NULL;
}

/* say_lines - feed each line of s in its own read (no pipelining) */
static void
say_lines(struct fake *f, const char *s)
{
	for (const char *nl; *s; s = nl + 1) {
		nl = strchr(s, '\n');
		smtp_input(&f->e, s, nl - s + 1);
	}
}

/* chat - one line, the full reply it got */
static const char *
chat(struct fake *f, const char *line)
{
	take(f);
	say(f, line);
	return take(f);
}

/* greeted - a sync session past EHLO */
static struct fake *
greeted(void)
{
	struct fake *f = fake_new(FAKE_SYNC);

	smtp_banner(&f->e);
	say(f, "EHLO client.example\r\n");
	take(f);
	return f;
}

/* in_data - a sync session inside DATA */
static struct fake *
in_data(void)
{
	struct fake *f = greeted();

	say(f, "MAIL FROM:<a@b.example>\r\n");
	say(f, "RCPT TO:<c@d.example>\r\n");
	say(f, "DATA\r\n");
	take(f);
	return f;
}

/* test_dialogue - a whole session, reply by reply */
static void
test_dialogue(void)
{
	struct fake *f = fake_new(FAKE_SYNC);

	t_begin("dialogue: banner, EHLO, MAIL, RCPT, DATA, dot, QUIT");
	say(f, "");
	smtp_banner(&f->e);
	T_STREQ(take(f), "220 mx.example.com ESMTP mailmoat\r\n");
	T_STREQ(chat(f, "EHLO client.example\r\n"),
	        "250-mx.example.com\r\n250-SIZE 10000\r\n250-8BITMIME\r\n"
	        "250 ENHANCEDSTATUSCODES\r\n");
	T_STREQ(f->last_helo, "client.example");
	T_CHECK(f->e.esmtp, "not esmtp");
	T_STREQ(chat(f, "MAIL FROM:<a@b.example> SIZE=300 BODY=8BITMIME\r\n"),
	        "250 2.1.0 Ok\r\n");
	T_STREQ(f->last_path, "a@b.example");
	T_INTEQ(f->last_size, 300);
	T_CHECK(f->last_8bit, "BODY=8BITMIME lost");
	T_STREQ(chat(f, "RCPT TO:<c@d.example>\r\n"), "250 2.1.5 Ok\r\n");
	T_STREQ(chat(f, "rcpt to:<e@d.example>\r\n"), "250 2.1.5 Ok\r\n");
	T_INTEQ(f->e.n_rcpt, 2);
	T_STREQ(chat(f, "DATA\r\n"), "354 End data with <CR><LF>.<CR><LF>\r\n");
	T_INTEQ(f->e.state, SMTP_ST_DATA);
	T_STREQ(chat(f, "Subject: hi\r\n\r\nbody\r\n.\r\n"),
	        "250 2.0.0 Ok: queued\r\n");
	T_INTEQ(f->n_dot, 1);
	T_INTEQ(f->dot.msg_size, 21);
	T_CHECK(!f->dot.bad_line_end && !f->dot.line_too_long &&
	                !f->dot.too_big,
	        "flags set on a clean message");
	T_CHECK(f->body.len == 21 &&
	                memcmp(f->body.data, "Subject: hi\r\n\r\nbody\r\n",
	                       21) == 0,
	        "body %zu bytes", f->body.len);
	T_INTEQ(f->e.state, SMTP_ST_MAIL);
	T_STREQ(chat(f, "QUIT\r\n"), "221 2.0.0 Bye\r\n");
	T_INTEQ(f->closed, 1);
	T_STREQ(f->cmds, "EHLO MAIL RCPT RCPT DATA DOT QUIT");
	T_INTEQ(f->viol[0] + f->viol[1], 0);
	say(f, "NOOP\r\n");
	T_STREQ(take(f), "");
	t_end();
	fake_free(f);
}

/* test_greetings - HELO, EHLO variants, STARTTLS offer */
static void
test_greetings(void)
{
	struct fake *f = fake_new(FAKE_SYNC);

	t_begin("HELO: 250 HOSTNAME, no ESMTP");
	smtp_banner(&f->e);
	take(f);
	T_STREQ(chat(f, "HELO client.example\r\n"), "250 mx.example.com\r\n");
	T_CHECK(!f->e.esmtp, "esmtp after HELO");
	T_STREQ(chat(f, "MAIL FROM:<a@b.example> SIZE=10\r\n"),
	        "555 5.5.4 Unsupported parameter [id=T1]\r\n");
	T_STREQ(chat(f, "HELO\r\n"),
	        "501 5.5.4 Syntax: HELO hostname [id=T1]\r\n");
	t_end();
	fake_free(f);

	t_begin("EHLO: SIZE without a number, STARTTLS offered, no PIPELINING");
	f = fake_new(FAKE_SYNC);
	f->e.size_limit = 0;
	f->e.tls_offer = true;
	smtp_banner(&f->e);
	take(f);
	T_STREQ(chat(f, "ehlo client.example\r\n"),
	        "250-mx.example.com\r\n250-SIZE\r\n250-8BITMIME\r\n"
	        "250-ENHANCEDSTATUSCODES\r\n250 STARTTLS\r\n");
	T_STREQ(chat(f, "EHLO\r\n"),
	        "501 5.5.4 Syntax: EHLO hostname [id=T1]\r\n");
	t_end();
	fake_free(f);
}

/* test_errors - every engine reply code path */
static void
test_errors(void)
{
	static const struct {
		const char *name, *setup, *line, *want;
	} cases[] = {
	        {"500 unknown", "", "FOO bar\r\n",
	         "500 5.5.2 Command unrecognized [id=T1]\r\n"},
	        {"500 empty line", "", "\r\n",
	         "500 5.5.2 Command unrecognized [id=T1]\r\n"},
	        {"500 NUL in line", "", "NOOP\0x\r\n",
	         "500 5.5.2 Command unrecognized [id=T1]\r\n"},
	        {"502 EXPN", "", "EXPN staff\r\n",
	         "502 5.5.1 Command not implemented [id=T1]\r\n"},
	        {"502 AUTH", "", "AUTH PLAIN AGFiYwBkZWY=\r\n",
	         "502 5.5.1 Command not implemented [id=T1]\r\n"},
	        {"502 BDAT", "", "BDAT 10 LAST\r\n",
	         "502 5.5.1 Command not implemented [id=T1]\r\n"},
	        {"502 ETRN", "", "ETRN example.com\r\n",
	         "502 5.5.1 Command not implemented [id=T1]\r\n"},
	        {"502 STARTTLS not offered", "", "STARTTLS\r\n",
	         "502 5.5.1 Command not implemented [id=T1]\r\n"},
	        {"501 STARTTLS arg", "", "STARTTLS now\r\n",
	         "501 5.5.4 Syntax: STARTTLS [id=T1]\r\n"},
	        {"503 RCPT before MAIL", "", "RCPT TO:<c@d.example>\r\n",
	         "503 5.5.1 Error: need MAIL command [id=T1]\r\n"},
	        {"503 DATA before MAIL", "", "DATA\r\n",
	         "503 5.5.1 Error: need MAIL command [id=T1]\r\n"},
	        {"503 nested MAIL", "MAIL FROM:<a@b.example>\r\n",
	         "MAIL FROM:<a@b.example>\r\n",
	         "503 5.5.1 Error: nested MAIL command [id=T1]\r\n"},
	        {"503 DATA before RCPT", "MAIL FROM:<a@b.example>\r\n",
	         "DATA\r\n", "503 5.5.1 Error: need RCPT command [id=T1]\r\n"},
	        {"501 MAIL no FROM", "", "MAIL <a@b.example>\r\n",
	         "501 5.5.4 Syntax: MAIL FROM:<address> [id=T1]\r\n"},
	        {"501 MAIL no arg", "", "MAIL\r\n",
	         "501 5.5.4 Syntax: MAIL FROM:<address> [id=T1]\r\n"},
	        {"501 MAIL bad path", "", "MAIL FROM:a@b.example\r\n",
	         "501 5.1.7 Bad sender address syntax [id=T1]\r\n"},
	        {"501 MAIL junk after", "", "MAIL FROM:<a@b.example>x\r\n",
	         "501 5.1.7 Bad sender address syntax [id=T1]\r\n"},
	        {"501 RCPT no TO", "MAIL FROM:<>\r\n", "RCPT <c@d.example>\r\n",
	         "501 5.5.4 Syntax: RCPT TO:<address> [id=T1]\r\n"},
	        {"501 RCPT bad path", "MAIL FROM:<>\r\n", "RCPT TO:<c@>\r\n",
	         "501 5.1.3 Bad recipient address syntax [id=T1]\r\n"},
	        {"501 RCPT null path", "MAIL FROM:<>\r\n", "RCPT TO:<>\r\n",
	         "501 5.1.3 Bad recipient address syntax [id=T1]\r\n"},
	        {"501 DATA arg", "MAIL FROM:<>\r\nRCPT TO:<c@d.example>\r\n",
	         "DATA now\r\n", "501 5.5.4 Syntax: DATA [id=T1]\r\n"},
	        {"501 RSET arg", "", "RSET x\r\n",
	         "501 5.5.4 Syntax: RSET [id=T1]\r\n"},
	        {"501 VRFY no arg", "", "VRFY\r\n",
	         "501 5.5.4 Syntax: VRFY address [id=T1]\r\n"},
	        {"501 bad SIZE", "", "MAIL FROM:<a@b.example> SIZE=x1\r\n",
	         "501 5.5.4 Bad SIZE parameter [id=T1]\r\n"},
	        {"501 bad BODY", "", "MAIL FROM:<a@b.example> BODY=9BIT\r\n",
	         "501 5.5.4 Bad BODY parameter [id=T1]\r\n"},
	        {"504 BINARYMIME", "",
	         "MAIL FROM:<a@b.example> BODY=BINARYMIME\r\n",
	         "504 5.5.4 BODY=BINARYMIME is not supported [id=T1]\r\n"},
	        {"555 unknown MAIL param", "",
	         "MAIL FROM:<a@b.example> SMTPUTF8\r\n",
	         "555 5.5.4 Unsupported parameter [id=T1]\r\n"},
	        {"555 unknown RCPT param", "MAIL FROM:<>\r\n",
	         "RCPT TO:<c@d.example> NOTIFY=NEVER\r\n",
	         "555 5.5.4 Unsupported parameter [id=T1]\r\n"},
	        {"552 SIZE over the limit", "",
	         "MAIL FROM:<a@b.example> SIZE=10001\r\n",
	         "552 5.3.4 Message size exceeds fixed maximum message size "
	         "[id=T1]\r\n"},
	        {"SIZE at the limit", "",
	         "MAIL FROM:<a@b.example> SIZE=10000\r\n", "250 2.1.0 Ok\r\n"},
	        {"MAIL FROM: <a@b> tolerated", "",
	         "MAIL FROM: <a@b.example>\r\n", "250 2.1.0 Ok\r\n"},
	        {"verbs any case", "", "mAiL fRoM:<a@b.example>\r\n",
	         "250 2.1.0 Ok\r\n"},
	        {"bare LF command line", "", "NOOP\n", "250 2.0.0 Ok\r\n"},
	        {"trailing blanks", "", "NOOP  \t\r\n", "250 2.0.0 Ok\r\n"},
	        {"trailing tab", "", "NOOP\t\r\n", "250 2.0.0 Ok\r\n"},
	        {"VRFY discloses nothing", "", "VRFY root\r\n",
	         "252 2.5.2 Cannot VRFY user, but will accept message and "
	         "attempt delivery\r\n"},
	        {"HELP", "", "HELP\r\n",
	         "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT "
	         "VRFY HELP\r\n"},
	        {"NOOP with arg", "", "NOOP hello\r\n", "250 2.0.0 Ok\r\n"},
	        {"RSET", "MAIL FROM:<>\r\n", "RSET\r\n", "250 2.0.0 Ok\r\n"},
	        {"postmaster without domain", "MAIL FROM:<>\r\n",
	         "RCPT TO:<Postmaster>\r\n", "250 2.1.5 Ok\r\n"},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char name[128];
		struct fake *f = greeted();
		const char *l = cases[i].line;
		size_t len = strlen(l);

		snprintf(name, sizeof(name), "reply: %s", cases[i].name);
		t_begin(name);
		say_lines(f, cases[i].setup);
		take(f);
		if (strcmp(cases[i].name, "500 NUL in line") == 0)
			len = 8;
		smtp_input(&f->e, l, len);
		T_STREQ(take(f), cases[i].want);
		T_INTEQ(f->viol[1], 0);
		t_end();
		fake_free(f);
	}
}

/* test_sequence_before_helo - commands before EHLO */
static void
test_sequence_before_helo(void)
{
	struct fake *f = fake_new(FAKE_SYNC);

	t_begin("503 before EHLO");
	smtp_banner(&f->e);
	take(f);
	T_STREQ(chat(f, "MAIL FROM:<a@b.example>\r\n"),
	        "503 5.5.1 Error: send HELO/EHLO first [id=T1]\r\n");
	T_STREQ(chat(f, "RCPT TO:<a@b.example>\r\n"),
	        "503 5.5.1 Error: need MAIL command [id=T1]\r\n");
	T_STREQ(chat(f, "NOOP\r\n"), "250 2.0.0 Ok\r\n");
	T_INTEQ(f->n_cmd, 0);
	t_end();
	fake_free(f);
}

/* test_recipients - 452 at max_rcpt, 554 when none was accepted */
static void
test_recipients(void)
{
	struct fake *f = greeted();
	char line[64];
	int ok = 0;

	t_begin("recipients: the 101st gets 452 4.5.3");
	say(f, "MAIL FROM:<a@b.example>\r\n");
	take(f);
	for (int i = 0; i < 100; i++) {
		snprintf(line, sizeof(line), "RCPT TO:<u%d@d.example>\r\n", i);
		ok += strcmp(chat(f, line), "250 2.1.5 Ok\r\n") == 0;
	}
	T_INTEQ(ok, 100);
	T_STREQ(chat(f, "RCPT TO:<u100@d.example>\r\n"),
	        "452 4.5.3 Too many recipients [id=T1]\r\n");
	T_INTEQ(f->e.n_rcpt, 100);
	T_STREQ(chat(f, "DATA\r\n"), "354 End data with <CR><LF>.<CR><LF>\r\n");
	t_end();
	fake_free(f);

	t_begin("recipients: DATA with none accepted gets 554");
	f = greeted();
	f->reject_rcpt = true;
	say(f, "MAIL FROM:<a@b.example>\r\n");
	T_STREQ(chat(f, "RCPT TO:<c@d.example>\r\n"),
	        "550 5.7.1 recipient <x@y> unknown\r\n");
	T_STREQ(chat(f, "DATA\r\n"),
	        "554 5.5.1 Error: no valid recipients [id=T1]\r\n");
	T_INTEQ(f->e.state, SMTP_ST_RCPT);
	t_end();
	fake_free(f);

	t_begin("recipients: MAIL resets the count");
	f = greeted();
	f->e.max_rcpt = 1;
	say_lines(f, "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n");
	say(f, "RSET\r\n");
	take(f);
	say(f, "MAIL FROM:<a@b.example>\r\n");
	T_STREQ(chat(f, "RCPT TO:<c@d.example>\r\n"), "250 2.1.5 Ok\r\n");
	T_STREQ(chat(f, "RCPT TO:<e@d.example>\r\n"),
	        "452 4.5.3 Too many recipients [id=T1]\r\n");
	t_end();
	fake_free(f);
}

/* test_relay_hacks - RCPT relay forms go to the owner flagged */
static void
test_relay_hacks(void)
{
	static const struct {
		const char *rcpt;
		int err;
		const char *path;
	} cases[] = {
	        {"<@relay.example:c@d.example>", ADDR_EROUTE, "c@d.example"},
	        {"<c%other.example@d.example>", ADDR_ERELAY,
	         "c%other.example@d.example"},
	        {"<other.example!c@d.example>", ADDR_ERELAY,
	         "other.example!c@d.example"},
	        {"<\"c@other.example\"@d.example>", ADDR_ERELAY,
	         "\"c@other.example\"@d.example"},
	};
	char line[128], name[128];

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct fake *f = greeted();

		snprintf(name, sizeof(name), "relay hack refused: %s",
		         cases[i].rcpt);
		t_begin(name);
		say(f, "MAIL FROM:<a@b.example>\r\n");
		snprintf(line, sizeof(line), "RCPT TO:%s\r\n", cases[i].rcpt);
		T_STREQ(chat(f, line), "550 5.7.1 Relaying denied [id=T]\r\n");
		T_INTEQ(f->last_addr_err, cases[i].err);
		T_STREQ(f->last_path, cases[i].path);
		/* an owner that forgets: the engine refuses anyway */
		f->accept_relay = true;
		T_STREQ(chat(f, line), "550 5.7.1 Relaying denied [id=T1]\r\n");
		T_INTEQ(f->e.n_rcpt, 0);
		t_end();
		fake_free(f);
	}

	struct fake *f = greeted();

	t_begin("MAIL FROM source route: ignored, path kept");
	T_STREQ(chat(f, "MAIL FROM:<@r.example:a@b.example>\r\n"),
	        "250 2.1.0 Ok\r\n");
	T_INTEQ(f->last_addr_err, ADDR_EROUTE);
	T_STREQ(f->last_path, "a@b.example");
	t_end();
	fake_free(f);
}

/* test_line_limits - 512-octet command lines, 1000-octet text lines */
static void
test_line_limits(void)
{
	struct fake *f = greeted();
	char line[2100];

	t_begin("command line of 512 octets accepted, 513 refused");
	memset(line, 'x', sizeof(line));
	memcpy(line, "NOOP ", 5);
	memcpy(line + 510, "\r\n", 3);
	T_STREQ(chat(f, line), "250 2.0.0 Ok\r\n");
	memset(line, 'x', sizeof(line));
	memcpy(line, "NOOP ", 5);
	memcpy(line + 511, "\r\n", 3);
	T_STREQ(chat(f, line), "500 5.5.6 Line too long [id=T1]\r\n");
	t_end();

	t_begin("no CRLF: 500 once, rest of the line dropped");
	memset(line, 'x', 2000);
	line[2000] = '\0';
	T_STREQ(chat(f, line), "500 5.5.6 Line too long [id=T1]\r\n");
	T_STREQ(chat(f, line), "");
	T_CHECK(f->e.in.len == 0, "kept %zu bytes", f->e.in.len);
	T_STREQ(chat(f, "MAIL FROM:<a@b.example>\r\n"), ""); /* tail */
	T_STREQ(chat(f, "MAIL FROM:<a@b.example>\r\n"), "250 2.1.0 Ok\r\n");
	t_end();
	fake_free(f);

	t_begin("partial line kept across reads, then parsed");
	f = greeted();
	T_STREQ(chat(f, "MAIL FR"), "");
	T_STREQ(chat(f, "OM:<a@b.exa"), "");
	T_STREQ(chat(f, "mple>\r"), "");
	T_STREQ(chat(f, "\n"), "250 2.1.0 Ok\r\n");
	t_end();
	fake_free(f);

	t_begin("text line of 1000 octets ok, 1001 flagged");
	f = in_data();
	memset(line, 'y', sizeof(line));
	memcpy(line + 998, "\r\n.\r\n", 6);
	say(f, line);
	T_INTEQ(f->n_dot, 1);
	T_CHECK(!f->dot.line_too_long, "1000 flagged");
	say_lines(
	        f,
	        "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n");
	memset(line, 'y', sizeof(line));
	memcpy(line + 999, "\r\n.\r\n", 6);
	take(f);
	say(f, line);
	T_INTEQ(f->n_dot, 2);
	T_CHECK(f->dot.line_too_long, "1001 not flagged");
	T_CHECK(!f->dot.bad_line_end, "bad line end");
	t_end();
	fake_free(f);
}

/* test_pipelining - commands sent before our reply */
static void
test_pipelining(void)
{
	struct fake *f = fake_new(FAKE_DEFER);

	t_begin("pipelining: two commands in one read, owner says go on");
	smtp_banner(&f->e);
	take(f);
	say(f, "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n");
	T_INTEQ(f->viol[SMTP_VIOL_PIPELINING], 1);
	T_STREQ(f->cmds, "EHLO");
	T_STREQ(take(f), "");
	smtp_accept(&f->e);
	T_CHECK(strncmp(take(f), "250-mx", 6) == 0, "no EHLO reply");
	T_STREQ(f->cmds, "EHLO MAIL");
	smtp_accept(&f->e);
	T_STREQ(take(f), "250 2.1.0 Ok\r\n");
	t_end();

	t_begin("pipelining: bytes while the owner decides, reported once");
	say(f, "RCPT TO:<c@d.example>\r\n");
	say(f, "RCPT TO:<e@d.example>\r\n"); /* before the answer */
	say(f, "RCPT TO:<f@d.example>\r\n");
	T_INTEQ(f->viol[SMTP_VIOL_PIPELINING], 1);
	smtp_accept(&f->e);
	smtp_accept(&f->e);
	smtp_accept(&f->e);
	T_STREQ(take(f), "250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n");
	T_STREQ(f->cmds, "EHLO MAIL RCPT RCPT RCPT");
	t_end();

	t_begin("pipelining: after the dot");
	say(f, "DATA\r\n");
	smtp_accept(&f->e);
	take(f);
	say(f, "x\r\n.\r\nQUIT\r\n");
	T_INTEQ(f->n_dot, 1);
	smtp_reply(&f->e, true, "250 2.0.0 Ok: queued");
	T_STREQ(take(f), "250 2.0.0 Ok: queued\r\n221 2.0.0 Bye\r\n");
	T_INTEQ(f->closed, 1);
	t_end();
	fake_free(f);

	t_begin("pipelining: owner stops the session");
	f = fake_new(FAKE_SYNC);
	f->viol_ret = -1;
	smtp_banner(&f->e);
	take(f);
	say(f, "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n");
	T_STREQ(take(f), "554 5.5.0 Pipelining is not allowed [id=T]\r\n");
	T_INTEQ(f->n_cmd, 0);
	T_INTEQ(f->closed, 1);
	T_INTEQ(f->e.state, SMTP_ST_CLOSED);
	say(f, "QUIT\r\n");
	T_STREQ(take(f), "");
	t_end();
	fake_free(f);

	t_begin("pipelining: DATA and body in one read");
	f = greeted();
	f->mode = FAKE_DEFER;
	say(f, "MAIL FROM:<a@b.example>\r\n");
	smtp_accept(&f->e);
	say(f, "RCPT TO:<c@d.example>\r\n");
	smtp_accept(&f->e);
	take(f);
	say(f, "DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n");
	T_INTEQ(f->viol[SMTP_VIOL_PIPELINING], 1);
	T_INTEQ(f->body.len, 0);
	smtp_accept(&f->e);
	T_STREQ(take(f), "354 End data with <CR><LF>.<CR><LF>\r\n");
	T_INTEQ(f->n_dot, 1);
	T_INTEQ(f->body.len, 18);
	t_end();
	fake_free(f);

	t_begin("pipelining: too much queued input gets 421");
	f = greeted();
	f->mode = FAKE_DEFER;
	say(f, "MAIL FROM:<a@b.example>\r\n");
	for (int i = 0; i < 400 && !f->closed; i++)
		say(f, "RCPT TO:<c@d.example>\r\n");
	T_INTEQ(f->closed, 1);
	T_CHECK(strstr(take(f), "421 4.7.0 ") != NULL, "no 421");
	t_end();
	fake_free(f);
}

/* test_pregreet - talking before the banner */
static void
test_pregreet(void)
{
	struct fake *f = fake_new(FAKE_SYNC);

	t_begin("pregreet: reported, commands run after the banner");
	say(f, "EHLO c.example\r\n");
	say(f, "NOOP\r\n");
	T_INTEQ(f->viol[SMTP_VIOL_PREGREET], 1);
	T_STREQ(take(f), "");
	smtp_banner(&f->e);
	T_STREQ(f->cmds, "EHLO");
	T_CHECK(strstr(take(f), "250 2.0.0 Ok\r\n") != NULL, "NOOP lost");
	t_end();
	fake_free(f);

	t_begin("pregreet: owner stops the session");
	f = fake_new(FAKE_SYNC);
	f->viol_ret = -1;
	say(f, "EHLO c.example\r\n");
	T_INTEQ(f->closed, 1);
	smtp_banner(&f->e);
	T_STREQ(take(f), "554 5.5.0 Pipelining is not allowed [id=T]\r\n");
	T_INTEQ(f->n_cmd, 0);
	t_end();
	fake_free(f);
}

/* test_starttls - offer, buffered plaintext dropped, reset after */
static void
test_starttls(void)
{
	struct fake *f = fake_new(FAKE_SYNC);

	f->e.tls_offer = true;
	smtp_banner(&f->e);
	say(f, "EHLO c.example\r\n");
	take(f);
	t_begin("STARTTLS: injected plaintext after it is dropped");
	say(f, "STARTTLS\r\nMAIL FROM:<evil@x.example>\r\n");
	T_STREQ(take(f), "220 2.0.0 Ready to start TLS\r\n");
	T_INTEQ(f->viol[SMTP_VIOL_PIPELINING], 1);
	T_STREQ(f->cmds, "EHLO STARTTLS");
	T_INTEQ(f->e.in.len, 0);
	say(f, "RCPT TO:<evil@x.example>\r\n"); /* before the handshake */
	T_STREQ(f->cmds, "EHLO STARTTLS");
	smtp_tls_started(&f->e);
	T_INTEQ(f->e.state, SMTP_ST_HELO);
	T_CHECK(!f->e.esmtp, "esmtp kept");
	T_STREQ(chat(f, "MAIL FROM:<a@b.example>\r\n"),
	        "503 5.5.1 Error: send HELO/EHLO first [id=T1]\r\n");
	T_STREQ(chat(f, "EHLO c.example\r\n"),
	        "250-mx.example.com\r\n250-SIZE 10000\r\n250-8BITMIME\r\n"
	        "250 ENHANCEDSTATUSCODES\r\n");
	T_STREQ(chat(f, "STARTTLS\r\n"),
	        "503 5.5.1 Error: TLS already active [id=T1]\r\n");
	t_end();
	fake_free(f);

	t_begin("STARTTLS: not in a transaction, deferred answer");
	f = fake_new(FAKE_SYNC);
	f->e.tls_offer = true;
	smtp_banner(&f->e);
	say(f, "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n");
	take(f);
	T_STREQ(chat(f, "STARTTLS\r\n"),
	        "503 5.5.1 Error: MAIL transaction in progress [id=T1]\r\n");
	say(f, "RSET\r\n");
	f->mode = FAKE_DEFER;
	take(f);
	say(f, "STARTTLS\r\n");
	say(f, "MAIL FROM:<evil@x.example>\r\n");
	smtp_accept(&f->e);
	T_STREQ(take(f), "220 2.0.0 Ready to start TLS\r\n");
	T_STREQ(f->cmds, "EHLO MAIL RSET STARTTLS");
	T_INTEQ(f->e.in.len, 0);
	t_end();
	fake_free(f);
}

/* test_errors_limit - the 10th error becomes 421 and a close */
static void
test_errors_limit(void)
{
	struct fake *f = greeted();
	const char *r;
	int n500 = 0;

	t_begin("too many errors: 421 4.7.0 and close");
	for (int i = 0; i < 9; i++)
		n500 += strcmp(chat(f, "BOGUS\r\n"),
		               "500 5.5.2 Command unrecognized [id=T1]\r\n") ==
		        0;
	T_INTEQ(n500, 9);
	T_INTEQ(f->closed, 0);
	r = chat(f, "BOGUS\r\n");
	T_STREQ(r, "421 4.7.0 Too many errors [id=T1]\r\n");
	T_INTEQ(f->closed, 1);
	T_STREQ(chat(f, "NOOP\r\n"), "");
	t_end();
	fake_free(f);
}

/* test_rset - mid-transaction */
static void
test_rset(void)
{
	struct fake *f = greeted();

	t_begin("RSET mid-transaction: owner told, transaction gone");
	say_lines(f, "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n");
	take(f);
	T_STREQ(chat(f, "RSET\r\n"), "250 2.0.0 Ok\r\n");
	T_STREQ(f->cmds, "EHLO MAIL RCPT RSET");
	T_INTEQ(f->e.state, SMTP_ST_MAIL);
	T_INTEQ(f->e.n_rcpt, 0);
	T_STREQ(chat(f, "RCPT TO:<c@d.example>\r\n"),
	        "503 5.5.1 Error: need MAIL command [id=T1]\r\n");
	T_STREQ(chat(f, "DATA\r\n"),
	        "503 5.5.1 Error: need MAIL command [id=T1]\r\n");
	t_end();

	t_begin("EHLO mid-transaction resets it too");
	say_lines(f, "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n");
	take(f);
	T_CHECK(strncmp(chat(f, "EHLO c.example\r\n"), "250-", 4) == 0,
	        "EHLO refused");
	T_STREQ(f->cmds, "EHLO MAIL RCPT RSET MAIL RCPT RSET EHLO");
	T_STREQ(chat(f, "DATA\r\n"),
	        "503 5.5.1 Error: need MAIL command [id=T1]\r\n");
	t_end();
	fake_free(f);
}

/* test_refuse - a refusing greeting, waiting for QUIT */
static void
test_refuse(void)
{
	struct fake *f = fake_new(FAKE_SYNC);
	const char *no = "554 5.7.1 We don't accept mail from your IP [id=T1]";

	t_begin("smtp_refuse: every command but QUIT gets the greeting");
	smtp_refuse(&f->e, no);
	T_STREQ(take(f),
	        "554 5.7.1 We don't accept mail from your IP [id=T1]\r\n");
	T_STREQ(chat(f, "EHLO c.example\r\n"),
	        "554 5.7.1 We don't accept mail from your IP [id=T1]\r\n");
	T_STREQ(chat(f, "MAIL FROM:<a@b.example>\r\n"),
	        "554 5.7.1 We don't accept mail from your IP [id=T1]\r\n");
	T_INTEQ(f->n_cmd, 0);
	T_STREQ(chat(f, "QUIT\r\n"), "221 2.0.0 Bye\r\n");
	T_INTEQ(f->closed, 1);
	t_end();
	fake_free(f);
}

/* test_data_body - dot-stuffing, zero copy, flags, size */
static void
test_data_body(void)
{
	static const char msg[] =
	        "Subject: dots\r\n\r\n..leading dot\r\n.x\r\n...\r\nend\r\n";
	struct fake *f = in_data();
	char big[3000];

	t_begin("DATA: dot-stuffed lines pass as sent, zero copy");
	say(f, msg);
	T_INTEQ(f->n_dot, 0);
	T_CHECK(f->body.len == strlen(msg) &&
	                memcmp(f->body.data, msg, f->body.len) == 0,
	        "body differs (%zu bytes)", f->body.len);
	T_CHECK(f->body_calls <= 1 + 2 * 3, "%u calls", f->body_calls);
	say(f, ".\r\n");
	T_INTEQ(f->n_dot, 1);
	T_INTEQ(f->dot.msg_size, strlen(msg));
	t_end();
	fake_free(f);

	t_begin("DATA: plain message in one read is one body call");
	f = in_data();
	memset(big, 'a', sizeof(big));
	for (size_t i = 70; i + 2 < sizeof(big); i += 72)
		memcpy(big + i, "\r\n", 2);
	memcpy(big + sizeof(big) - 6, "\r\n.\r\n", 6);
	f->body_calls = 0;
	say(f, big);
	T_INTEQ(f->body_calls, 1);
	T_CHECK(f->body_in_input, "body bytes copied");
	T_INTEQ(f->body.len, sizeof(big) - 4);
	T_INTEQ(f->n_dot, 1);
	t_end();
	fake_free(f);

	t_begin("DATA: over the size limit: too_big, no more body");
	f = in_data();
	f->e.size_limit = 100;
	memset(big, 'b', 200);
	memcpy(big + 200, "\r\n.\r\n", 6);
	say(f, big);
	T_INTEQ(f->n_dot, 1);
	T_CHECK(f->dot.too_big, "too_big not set");
	T_CHECK(f->body.len <= 100, "%zu body bytes", f->body.len);
	t_end();
	fake_free(f);

	t_begin("DATA: bare LF and bare CR flagged, canonical output");
	f = in_data();
	say(f, "a\nb\rc\r\n.\n.\r.\r\n");
	T_INTEQ(f->n_dot, 0); /* the last "." follows a bare CR */
	say(f, "\r\n.\r\n");
	T_INTEQ(f->n_dot, 1);
	T_CHECK(f->dot.bad_line_end, "not flagged");
	buf_append(&f->body, "", 1);
	T_STREQ(f->body.data, "a\r\nb\r\nc\r\n..\r\n..\r\n..\r\n\r\n");
	t_end();
	fake_free(f);

	t_begin("DATA: empty message");
	f = in_data();
	say(f, ".\r\n");
	T_INTEQ(f->n_dot, 1);
	T_INTEQ(f->dot.msg_size, 0);
	T_INTEQ(f->body.len, 0);
	t_end();
	fake_free(f);
}

/* hexbytes - "0d 0a 2e" into bytes; returns the count */
static size_t
hexbytes(const char *s, char *out, size_t cap)
{
	size_t n = 0;
	char *end;

	while (*s && n < cap) {
		long v = strtol(s, &end, 16);

		if (end == s)
			break;
		out[n++] = (char)v;
		s = end;
	}
	return n;
}

/* has_bare - a CR not before LF or an LF not after CR in p + CRLF */
static bool
has_bare(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\r' && (i + 1 < n ? p[i + 1] != '\n' : false))
			return true;
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			return true;
	}
	/* a final CR is followed by the CR of the "\r\n.\r\n" we add */
	return n > 0 && p[n - 1] == '\r';
}

/* body_has_early_end - would the backend see an end of data? */
static bool
body_has_early_end(const struct buf *b)
{
	if (b->len >= 3 && memcmp(b->data, ".\r\n", 3) == 0)
		return true;
	for (size_t i = 0; i + 5 <= b->len; i++)
		if (memcmp(b->data + i, "\r\n.\r\n", 5) == 0)
			return true;
	return false;
}

/*
 * test_smuggling - each sequence of the TSV right after the 354, one
 * read per '|' segment; the ones marked 1 must end the data at their
 * last byte, the others must not (and then "\r\n.\r\n" ends it).  Run
 * again with every byte in its own read.
 */
static void
test_smuggling(void)
{
	FILE *fp;
	char line[512];
	int n = 0;

	fp = fopen("tests/unit/data/smtp-eod-sequences.tsv", "r");
	if (fp == NULL)
		fp = fopen("/work/shared/data/smtp-smuggling/eod-sequences.tsv",
		           "r");
	t_begin("smuggling: data file");
	T_CHECK(fp != NULL, "smtp-eod-sequences.tsv not found");
	t_end();
	while (fp != NULL && fgets(line, sizeof(line), fp) != NULL) {
		char *id = line, *hex, *want, name[600];
		char seg[8][64], all[256];
		size_t segn[8], alln = 0;
		int nseg = 0;

		if (line[0] == '#')
			continue;
		hex = strchr(line, '\t');
		if (hex == NULL)
			continue;
		*hex++ = '\0';
		want = strchr(hex, '\t');
		if (want == NULL)
			continue;
		*want++ = '\0';
		for (char *s = hex, *bar; nseg < 8; s = bar + 1) {
			bar = strchr(s, '|');
			if (bar != NULL)
				*bar = '\0';
			segn[nseg] = hexbytes(s, seg[nseg], sizeof(seg[0]));
			memcpy(all + alln, seg[nseg], segn[nseg]);
			alln += segn[nseg++];
			if (bar == NULL)
				break;
		}
		n++;
		for (int bytewise = 0; bytewise < 2; bytewise++) {
			struct fake *f = in_data();
			bool end = want[0] == '1';

			snprintf(name, sizeof(name), "smuggling: %s%s", id,
			         bytewise ? " (byte by byte)" : "");
			t_begin(name);
			if (bytewise) {
				for (size_t i = 0; i < alln; i++)
					smtp_input(&f->e, all + i, 1);
			} else {
				for (int k = 0; k < nseg; k++)
					smtp_input(&f->e, seg[k], segn[k]);
			}
			T_INTEQ(f->n_dot, end ? 1 : 0);
			T_CHECK(!body_has_early_end(&f->body),
			        "early end in the body");
			if (!end) {
				say(f, "\r\n.\r\n");
				T_INTEQ(f->n_dot, 1);
				T_CHECK(!body_has_early_end(&f->body),
				        "early end in the body");
				T_CHECK(f->body.len >= 2 &&
				                memcmp(f->body.data +
				                               f->body.len - 2,
				                       "\r\n", 2) == 0,
				        "body does not end in CRLF");
				T_CHECK(f->dot.bad_line_end ==
				                has_bare(all, alln),
				        "bad_line_end %d", f->dot.bad_line_end);
			} else {
				T_CHECK(!f->dot.bad_line_end,
				        "bad_line_end set");
			}
			/* the session goes on as commands */
			T_STREQ(take(f), "250 2.0.0 Ok: queued\r\n");
			T_STREQ(chat(f, "NOOP\r\n"), "250 2.0.0 Ok\r\n");
			t_end();
			fake_free(f);
		}
	}
	if (fp != NULL)
		fclose(fp);
	t_begin("smuggling: all 20 sequences read");
	T_INTEQ(n, 20);
	t_end();
}

/* test_bad_line_end_flags - which sequences must be refused at the end */
static void
test_bad_line_end_flags(void)
{
	static const struct {
		const char *in;
		bool bad;
	} cases[] = {
	        {"\n.\n", true},       {"\r.\r", true},
	        {"\r\n.\n", true},     {"\r\n..\r\n", false},
	        {"\r\n. \r\n", false}, {"\r\n\0.\r\n", false},
	        {"x\r\r\n", true},     {"\n", true},
	};

	t_begin("DATA: bad_line_end exactly for bare CR/LF");
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct fake *f = in_data();
		size_t len = strlen(cases[i].in);

		if (i == 5)
			len = 6;
		smtp_input(&f->e, cases[i].in, len);
		say(f, "\r\n.\r\n");
		T_CHECK(f->n_dot == 1 && f->dot.bad_line_end == cases[i].bad,
		        "case %zu: dot %d bad %d", i, f->n_dot,
		        f->dot.bad_line_end);
		fake_free(f);
	}
	t_end();
}

/* test_split_reads - a dialogue byte by byte gives the same replies */
static void
test_split_reads(void)
{
	static const char *const lines[] = {
	        "EHLO c.example\r\n",
	        "MAIL FROM:<a@b.example>\r\n",
	        "RCPT TO:<c@d.example>\r\n",
	        "DATA\r\n",
	        "Subject: s\r\n\r\n..dot\r\nline\r\n.\r\n",
	        "RSET\r\n",
	        "QUIT\r\n",
	};
	struct fake *a = fake_new(FAKE_SYNC), *b = fake_new(FAKE_SYNC);
	char ra[2048], rb[2048];

	t_begin("split reads: byte by byte equals line by line");
	smtp_banner(&a->e);
	smtp_banner(&b->e);
	for (size_t i = 0; i < ARRAY_LEN(lines); i++) {
		say(a, lines[i]);
		for (const char *p = lines[i]; *p; p++)
			smtp_input(&b->e, p, 1);
	}
	snprintf(ra, sizeof(ra), "%s", take(a));
	snprintf(rb, sizeof(rb), "%s", take(b));
	T_STREQ(rb, ra);
	T_STREQ(b->cmds, a->cmds);
	T_CHECK(a->body.len == b->body.len &&
	                memcmp(a->body.data, b->body.data, a->body.len) == 0,
	        "bodies differ");
	T_INTEQ(b->viol[0] + b->viol[1], 0);
	T_INTEQ(b->closed, 1);
	t_end();
	fake_free(a);
	fake_free(b);
}

/* test_reply_multiline - the owner's multi-line reply goes as it is */
static void
test_reply_multiline(void)
{
	struct fake *f = fake_new(FAKE_DEFER);

	t_begin("smtp_reply: multi-line text, refused EHLO keeps state");
	smtp_banner(&f->e);
	take(f);
	say(f, "EHLO c.example\r\n");
	smtp_reply(&f->e, false, "550-5.7.1 one\r\n550 5.7.1 two");
	T_STREQ(take(f), "550-5.7.1 one\r\n550 5.7.1 two\r\n");
	T_INTEQ(f->e.state, SMTP_ST_HELO);
	smtp_reply(&f->e, false, "stray"); /* nothing pending */
	T_STREQ(take(f), "");
	t_end();

	t_begin("smtp_reply: a 3 KB reply goes out in one write");
	{
		char big[3000];

		memset(big, 'z', sizeof(big));
		memcpy(big, "550 5.7.1 ", 10);
		big[sizeof(big) - 1] = '\0';
		say(f, "EHLO c.example\r\n");
		f->writes = 0;
		smtp_reply(&f->e, false, big);
		T_INTEQ(f->writes, 1);
		T_INTEQ(f->out.len, sizeof(big) - 1 + 2);
		take(f);
	}
	t_end();
	fake_free(f);
}

/* test_closing - smtp_close_reply mid-DATA, input after the end */
static void
test_closing(void)
{
	struct fake *f = in_data();
	char junk[9000];

	t_begin("close mid-DATA: final reply, close hook once, input ignored");
	say(f, "Subject: x\r\n\r\npart");
	smtp_close_reply(&f->e,
	                 "421 4.4.2 Timeout, closing connection [id=T1]");
	T_STREQ(take(f), "421 4.4.2 Timeout, closing connection [id=T1]\r\n");
	T_INTEQ(f->closed, 1);
	f->body.len = 0;
	say(f, "more\r\n.\r\nQUIT\r\n");
	smtp_close_reply(&f->e, "421 again");
	T_STREQ(take(f), "");
	T_INTEQ(f->body.len, 0);
	T_INTEQ(f->n_dot, 0);
	T_INTEQ(f->closed, 1);
	t_end();
	fake_free(f);

	t_begin("pregreet flood: 421 and close, nothing kept");
	f = fake_new(FAKE_SYNC);
	memset(junk, 'j', sizeof(junk));
	smtp_input(&f->e, junk, sizeof(junk));
	T_INTEQ(f->closed, 1);
	T_CHECK(strncmp(take(f), "421 4.7.0 ", 10) == 0, "no 421");
	smtp_banner(&f->e);
	T_STREQ(take(f), "");
	T_INTEQ(f->e.in.len, 0);
	t_end();
	fake_free(f);

	t_begin("STARTTLS before EHLO: 503");
	f = fake_new(FAKE_SYNC);
	f->e.tls_offer = true;
	smtp_banner(&f->e);
	take(f);
	T_STREQ(chat(f, "STARTTLS\r\n"),
	        "503 5.5.1 Error: send HELO/EHLO first [id=T1]\r\n");
	T_INTEQ(f->n_cmd, 0);
	t_end();
	fake_free(f);
}

int
main(void)
{
	test_dialogue();
	test_greetings();
	test_errors();
	test_sequence_before_helo();
	test_recipients();
	test_relay_hacks();
	test_line_limits();
	test_pipelining();
	test_pregreet();
	test_starttls();
	test_errors_limit();
	test_rset();
	test_refuse();
	test_data_body();
	test_smuggling();
	test_bad_line_end_flags();
	test_split_reads();
	test_reply_multiline();
	test_closing();
	return t_exit();
}
