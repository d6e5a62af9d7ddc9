/*
 * test_msgids.c - the outgoing Message-ID set and its header reader.
 */
#include <stdlib.h>
#include <time.h>

#include "proxy.h"
#include "t.h"

/* tap - the Message-ID of text fed in pieces of step bytes. */
static const char *
tap(const char *text, size_t step)
{
	static char out[256];
	struct msgids_tap t;
	size_t i, n = strlen(text), k;

	msgids_tap_init(&t);
	for (i = 0; i < n; i += k) {
		k = step && step < n - i ? step : n - i;
		msgids_tap_feed(&t, text + i, k);
	}
	if (!msgids_tap_id(&t, out, sizeof(out)))
		return "(none)";
	return out;
}

int
main(void)
{
	uint64_t later = store_now() + 3600;
	char id[64];
	int i;

	t_begin("recorded ids are found, domain case folded, brackets "
	        "optional");
	msgids_add("<abc.1@Mail.Ours.Test>", 22, later);
	T_CHECK(msgids_has("abc.1@mail.ours.test", 20), "lower case domain");
	T_CHECK(msgids_has("<abc.1@MAIL.OURS.TEST>", 22), "brackets");
	T_CHECK(!msgids_has("ABC.1@mail.ours.test", 20), "local part folded");
	T_CHECK(!msgids_has("forged@ours.test", 16), "made-up id found");
	t_end();

	t_begin("expired ids do not count");
	msgids_add("old@ours.test", 13, store_now() - 1);
	T_CHECK(!msgids_has("old@ours.test", 13), "expired found");
	t_end();

	t_begin("100000 ids: all found");
	for (i = 0; i < 100000; i++) {
		snprintf(id, sizeof(id), "m%d@ours.test", i);
		msgids_add(id, strlen(id), later);
	}
	for (i = 0; i < 100000; i += 997) {
		snprintf(id, sizeof(id), "m%d@ours.test", i);
		T_CHECK(msgids_has(id, strlen(id)), "lost %s", id);
	}
	T_CHECK(msgids_count() >= 100000, "count %zu", msgids_count());
	T_CHECK(!msgids_has("m100000@ours.test", 17), "never added");
	t_end();

	t_begin("header reader: Message-ID of the top section, folded, any "
	        "case");
	T_STREQ(tap("From: a@b\r\nMESSAGE-ID:\r\n <x.1@ours.test>\r\n\r\n"
	            "Message-ID: <body@x>\r\n",
	            0),
	        "x.1@ours.test");
	T_STREQ(tap("From: a@b\r\nMessage-Id: <y@ours.test>\r\n\r\n", 1),
	        "y@ours.test");
	T_STREQ(tap("From: a@b\r\n\r\nMessage-ID: <body@x>\r\n", 3), "(none)");
	T_STREQ(tap("Message-ID: no-brackets\r\n\r\n", 0), "(none)");
	t_end();

	msgids_free();
	return t_exit();
}
