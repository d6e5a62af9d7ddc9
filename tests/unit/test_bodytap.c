/*
 * test_bodytap.c - the body tap's unstuffing (each case whole, one byte at
 * a time, and in uneven pieces) and the hold spool (in memory, spilled to
 * its temp file and read back in order, freed with a request in flight).
 */
#include <errno.h>
#include <stdlib.h>

#include "proxy.h"
#include "t.h"

static struct buf got;

/* out_cb - collect what the tap passes on. */
static void
out_cb(void *arg, const char *p, size_t n)
{
	(*(unsigned *)arg)++;
	buf_append(&got, p, n);
}

/* unstuff - in through bodytap_unstuff() in pieces of step (0: uneven). */
static void
unstuff(const char *in, size_t n, size_t step)
{
	bool mid = false;
	size_t i = 0, k;
	unsigned seed = 11, calls = 0;

	got.len = 0;
	while (i < n) {
		seed = seed * 1103515245u + 12345u;
		k = step ? step : 1 + (seed >> 16) % 17;
		if (k > n - i)
			k = n - i;
		bodytap_unstuff(&mid, in + i, k, out_cb, &calls);
		i += k;
	}
}

static const struct {
	const char *name, *in, *want;
} cases[] = {
        {"plain", "Subject: x\r\n\r\nhello\r\n", "Subject: x\r\n\r\nhello\r\n"},
        {"leading dot", "..hidden\r\n", ".hidden\r\n"},
        {"dot line", "a\r\n..\r\nb\r\n", "a\r\n.\r\nb\r\n"},
        {"dot in line", "a.b\r\n x..y\r\n", "a.b\r\n x..y\r\n"},
        {"first byte", ".\r\n", "\r\n"},
        {"many", "..a\r\n..b\r\n...c\r\nd\r\n", ".a\r\n.b\r\n..c\r\nd\r\n"},
        {"empty lines", "\r\n\r\n..\r\n\r\n", "\r\n\r\n.\r\n\r\n"},
        {"no final crlf", "x\r\n..y", "x\r\n.y"},
        {"empty", "", ""},
};

/* test_unstuff - every case at every chunking. */
static void
test_unstuff(void)
{
	static const size_t steps[] = {0, 1, 2, 3, 1000};
	char name[96];
	unsigned i, j;

	for (i = 0; i < ARRAY_LEN(cases); i++) {
		for (j = 0; j < ARRAY_LEN(steps); j++) {
			snprintf(name, sizeof(name), "unstuff %s step %zu",
			         cases[i].name, steps[j]);
			t_begin(name);
			unstuff(cases[i].in, strlen(cases[i].in), steps[j]);
			buf_append(&got, "", 1);
			T_STREQ(got.data, cases[i].want);
			t_end();
		}
	}
}

/* test_unstuff_spans - pieces without a stuffed dot pass as one span
 * (no copy, no per-byte calls). */
static void
test_unstuff_spans(void)
{
	bool mid = false;
	unsigned calls = 0;
	const char *in = "a long line without dots at the start";

	t_begin("unstuff passes a piece as one span");
	got.len = 0;
	bodytap_unstuff(&mid, in, strlen(in), out_cb, &calls);
	T_INTEQ(calls, 1);
	T_INTEQ(got.len, strlen(in));
	T_CHECK(mid, "mid_line set after a partial line");
	t_end();
}

struct reader {
	struct spool *sp;
	struct buf out;
	bool done;
	int err;
};

/* read_more - drain the spool as far as it goes. */
static void
read_more(struct reader *r)
{
	const char *p;
	ssize_t n;

	while (!r->done) {
		n = spool_next(r->sp, &p);
		if (n > 0) {
			buf_append(&r->out, p, (size_t)n);
			continue;
		}
		if (n == -EAGAIN)
			return;
		r->done = true;
		r->err = (int)n;
	}
}

/* ready_cb - a spool file request finished. */
static void
ready_cb(struct spool *sp, void *arg)
{
	read_more(arg);
}

/* spool_case - write total bytes in uneven pieces, read them back. */
static void
spool_case(const char *name, size_t ram, size_t total)
{
	uv_loop_t loop;
	struct reader r = {0};
	struct buf want = {0};
	unsigned seed = 5;
	size_t i = 0, k;
	int rc = 0;

	t_begin(name);
	uv_loop_init(&loop);
	r.sp = spool_new(&loop, ram);
	spool_on_ready(r.sp, ready_cb, &r);
	while (i < total) {
		char piece[5000];

		seed = seed * 1103515245u + 12345u;
		k = 1 + (seed >> 16) % sizeof(piece);
		if (k > total - i)
			k = total - i;
		for (size_t j = 0; j < k; j++)
			piece[j] = (char)('a' + (i + j) % 23);
		rc |= spool_write(r.sp, piece, k);
		buf_append(&want, piece, k);
		i += k;
	}
	T_INTEQ(rc, 0);
	T_INTEQ(spool_size(r.sp), total);
	read_more(&r);
	uv_run(&loop, UV_RUN_DEFAULT);
	T_CHECK(r.done, "spool read to its end");
	T_INTEQ(r.err, 0);
	T_INTEQ(spool_pending(r.sp), 0);
	T_INTEQ(r.out.len, total);
	T_CHECK(r.out.len == want.len &&
	                memcmp(r.out.data, want.data, want.len) == 0,
	        "read back what was written");
	spool_free(r.sp);
	uv_loop_close(&loop);
	buf_free(&r.out);
	buf_free(&want);
	t_end();
}

/* count_cb - counts ready calls. */
static void
count_cb(struct spool *sp, void *arg)
{
	(*(unsigned *)arg)++;
}

/* test_spool_free_in_flight - free while the file write runs: no leak
 * (asan and valgrind runs), no callback afterwards. */
static void
test_spool_free_in_flight(void)
{
	uv_loop_t loop;
	struct spool *sp;
	static char big[300 * 1024];
	unsigned calls = 0;

	t_begin("spool freed with a write in flight");
	uv_loop_init(&loop);
	sp = spool_new(&loop, 1024);
	spool_on_ready(sp, count_cb, &calls);
	memset(big, 'x', sizeof(big));
	T_INTEQ(spool_write(sp, big, sizeof(big)), 0);
	T_CHECK(spool_pending(sp) > 0, "the file write is behind");
	spool_free(sp);
	uv_run(&loop, UV_RUN_DEFAULT);
	T_INTEQ(calls, 0);
	T_INTEQ(uv_loop_close(&loop), 0);
	t_end();
}

int
main(void)
{
	test_unstuff();
	test_unstuff_spans();
	spool_case("spool in memory only", 1 << 20, 100000);
	spool_case("spool spilled to its file", 4096, 3 * 1024 * 1024 + 17);
	spool_case("spool empty", 4096, 0);
	test_spool_free_in_flight();
	buf_free(&got);
	return t_exit();
}
