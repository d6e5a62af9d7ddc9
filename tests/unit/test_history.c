/*
 * test_history.c - the decision ring and chart series (proxy/history.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"
#include "t.h"

/* lines - number of lines in b */
static int
lines(const struct buf *b)
{
	size_t i;
	int n = 0;

	for (i = 0; i < b->len; i++)
		n += b->data[i] == '\n';
	return n;
}

/* run - history_decisions(filter) into a NUL-terminated buffer */
static int
run(const char *filter, struct buf *b)
{
	int rc;

	buf_free(b);
	rc = history_decisions(b, filter);
	buf_append(b, "", 1);
	b->len--;
	return rc;
}

int
main(void)
{
	struct buf b = {0};
	uint64_t t0 = 1800000000; /* a multiple of 300 */
	int i;

	history_reset();
	history_add_fields(t0, "AAAA1", "192.0.2.1", NULL, "<img src=x>",
	                   "<a@b.example>", "<c@d.example>", "reject", "dnsbl",
	                   "zen=127.0.0.2");
	history_add_fields(t0 + 10, "BBBB2", "198.51.100.7", "mx.example",
	                   "mx.example", "<x@y.example>", "<c@d.example>",
	                   "accept", "-", NULL);
	history_add_fields(t0 + 400, "CCCC3", "192.0.2.1", NULL, "h", "<>",
	                   "<e@d.example>", "tempfail", "greylist", NULL);

	t_begin("history: decisions as log lines, oldest first");
	T_INTEQ(run("", &b), 0);
	T_INTEQ(lines(&b), 3);
	{
		const char *want = "time=1800000000 id=AAAA1 client=192.0.2.1 "
		                   "ptr=- helo=\"<img src=x>\" "
		                   "from=<a@b.example> to=<c@d.example> "
		                   "action=reject reason=dnsbl "
		                   "detail=\"zen=127.0.0.2\"\n";

		T_CHECK(strncmp(b.data, want, strlen(want)) == 0, "%s", b.data);
	}
	t_end();

	t_begin("history: filters by field, word, several terms");
	run("client=192.0.2.1", &b);
	T_INTEQ(lines(&b), 2);
	run("client=192.0.2.1 action=tempfail", &b);
	T_INTEQ(lines(&b), 1);
	T_CHECK(strstr(b.data, "id=CCCC3") != NULL, "%s", b.data);
	run("sender=X@Y", &b);
	T_INTEQ(lines(&b), 1);
	run("recipient=c@d", &b);
	T_INTEQ(lines(&b), 2);
	run("reason=dnsbl", &b);
	T_INTEQ(lines(&b), 1);
	run("BBBB2", &b);
	T_INTEQ(lines(&b), 1);
	run("action=", &b);
	T_INTEQ(lines(&b), 3);
	run("nothing-like-this", &b);
	T_INTEQ(lines(&b), 0);
	T_INTEQ(run("bogus=1", &b), -EINVAL);
	t_end();

	t_begin("history: ring keeps the last HIST_MAX");
	for (i = 0; i < HIST_MAX + 5; i++)
		history_add_fields(t0 + 1000, "R", "203.0.113.9", NULL, "h",
		                   "<s@x>", "<r@y>", "log", "helo", NULL);
	run("", &b);
	T_INTEQ(lines(&b), HIST_MAX);
	run("id=AAAA1", &b);
	T_INTEQ(lines(&b), 0);
	t_end();

	t_begin("history: day and month series per action");
	history_reset();
	history_add_fields(t0, "A", "c", NULL, "h", "f", "t", "reject", "x",
	                   NULL);
	history_add_fields(t0 + 299, "A", "c", NULL, "h", "f", "t", "accept",
	                   "x", NULL);
	history_add_fields(t0 + 300, "A", "c", NULL, "h", "f", "t", "accept",
	                   "x", NULL);
	buf_free(&b);
	T_INTEQ(history_series(&b, "day", t0 + 300), 0);
	buf_append(&b, "", 1);
	T_CHECK(strncmp(b.data, "span=300 buckets=288 ", 21) == 0, "%s",
	        b.data);
	T_INTEQ(lines(&b), 289);
	T_CHECK(strstr(b.data, "1800000000 1 0 1 0\n1800000300 1 0 0 0\n") !=
	                NULL,
	        "buckets");
	/* A day later the old buckets read as empty. */
	buf_free(&b);
	history_series(&b, "day", t0 + 86400 + 300);
	buf_append(&b, "", 1);
	T_CHECK(strstr(b.data, " 1 0") == NULL, "stale bucket shown");
	buf_free(&b);
	history_series(&b, "month", t0 + 300);
	buf_append(&b, "", 1);
	T_INTEQ(lines(&b), 31);
	T_CHECK(strstr(b.data, " 2 0 1 0\n") != NULL, "month: %s", b.data);
	T_INTEQ(history_series(&b, "year", t0), -EINVAL);
	buf_free(&b);
	t_end();

	t_begin("history: persisted blob loads back; a bad one is refused");
	{
		struct buf blob = {0}, before = {0}, after = {0};
		char *bad;

		history_add_fields(t0 + 5, "PERS1", "203.0.113.5", "p.example",
		                   "<img src=x>", "<a@b>", "<c@d>,<e@f>",
		                   "tempfail", "greylist", "x y");
		history_blob(&blob);
		history_decisions(&before, "");
		history_series(&before, "day", t0 + 300);
		history_reset();
		T_INTEQ(history_load_blob(blob.data, blob.len), 0);
		history_decisions(&after, "");
		history_series(&after, "day", t0 + 300);
		T_INTEQ(after.len, before.len);
		T_CHECK(after.len == before.len &&
		                memcmp(after.data, before.data, after.len) == 0,
		        "differs after reload");
		bad = malloc(blob.len);
		memcpy(bad, blob.data, blob.len);
		T_INTEQ(history_load_blob(bad, blob.len - 3), -EINVAL);
		bad[0] ^= 1;
		T_INTEQ(history_load_blob(bad, blob.len), -EINVAL);
		T_INTEQ(history_load_blob(bad, 3), -EINVAL);
		buf_free(&after);
		history_decisions(&after, "");
		history_series(&after, "day", t0 + 300);
		T_CHECK(after.len == before.len &&
		                memcmp(after.data, before.data, after.len) ==
		                        0 &&
		                memmem(after.data, after.len, "PERS1", 5),
		        "a bad blob changed the history");
		free(bad);
		buf_free(&blob);
		buf_free(&before);
		buf_free(&after);
	}
	t_end();
	return t_exit();
}
