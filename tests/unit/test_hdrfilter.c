/*
 * test_hdrfilter.c - forged Authentication-Results fields (our
 * authserv-id) leave the header section, everything else passes byte for
 * byte; each case fed whole, one byte at a time, and in uneven pieces.
 */
#include <stdlib.h>

#include "proxy.h"
#include "t.h"

static struct buf got;

/* out_cb - collect what passes. */
static void
out_cb(void *arg, const char *p, size_t n)
{
	buf_append(&got, p, n);
}

/* run - filter in with reads of `step` bytes (0: pseudo-random). */
static void
run(const char *in, size_t step)
{
	struct hdrfilter f;
	size_t n = strlen(in), i = 0, k;
	unsigned seed = 7;

	got.len = 0;
	hdrfilter_init(&f, "mx.example.com");
	while (i < n) {
		seed = seed * 1103515245u + 12345u;
		k = step ? step : 1 + (seed >> 16) % 13;
		if (k > n - i)
			k = n - i;
		hdrfilter_feed(&f, in + i, k, out_cb, NULL);
		i += k;
	}
	hdrfilter_end(&f, out_cb, NULL);
	buf_append(&got, "", 1);
	got.len--;
}

struct tcase {
	const char *name;
	const char *in;
	const char *want; /* NULL: unchanged */
};

static const struct tcase cases[] = {
        {"no Authentication-Results: unchanged",
         "From: a@b\r\nSubject: hi\r\n\r\nbody\r\n", NULL},
        {"ours is removed",
         "Authentication-Results: mx.example.com; spf=pass\r\nSubject: x\r\n"
         "\r\nb\r\n",
         "Subject: x\r\n\r\nb\r\n"},
        {"ours with continuation lines: all of it goes",
         "Received: x\r\nAuthentication-Results: mx.example.com;\r\n\tspf=pass"
         " smtp.mailfrom=a@b;\r\n iprev=pass\r\nSubject: x\r\n\r\nb\r\n",
         "Received: x\r\nSubject: x\r\n\r\nb\r\n"},
        {"name and id in any case, white space before the colon",
         "authentication-results :   MX.Example.COM ; spf=pass\r\n\r\nb\r\n",
         "\r\nb\r\n"},
        {"the id folded onto the next line is still ours",
         "Authentication-Results:\r\n mx.example.com; spf=pass\r\nX: y\r\n\r\n",
         "X: y\r\n\r\n"},
        {"with a version after the id",
         "Authentication-Results: mx.example.com 1; spf=pass\r\n\r\n", "\r\n"},
        {"another server's is kept",
         "Authentication-Results: mx.other.example; spf=pass\r\n\r\nb\r\n",
         NULL},
        {"a longer id that starts like ours is kept",
         "Authentication-Results: mx.example.com.evil; spf=pass\r\n\r\n", NULL},
        {"a shorter id is kept",
         "Authentication-Results: example.com; spf=pass\r\n\r\n", NULL},
        {"a similar field name is kept",
         "Authentication-Results-Original: mx.example.com; spf=pass\r\n\r\n",
         NULL},
        {"in the body it is text, kept",
         "Subject: x\r\n\r\nAuthentication-Results: mx.example.com; x\r\n",
         NULL},
        {"two forged ones around a good one",
         "Authentication-Results: mx.example.com; a\r\nAuthentication-Results:"
         " other.example; b\r\nAuthentication-Results: mx.example.com; c\r\n"
         "\r\n",
         "Authentication-Results: other.example; b\r\n\r\n"},
        {"a message with no body and no empty line",
         "Subject: x\r\nAuthentication-Results: mx.example.com; a\r\n",
         "Subject: x\r\n"},
        {"an empty message", "", NULL},
        {"a header line without a colon is kept",
         "not a header\r\nAuthentication-Results: mx.example.com; a\r\n\r\n",
         "not a header\r\n\r\n"},
};

/* main - the table, three ways each, plus an over-long field name. */
int
main(void)
{
	static const size_t steps[] = {0, 1, 3, 100000};
	char name[160], longline[2000];
	size_t i, j;

	for (i = 0; i < ARRAY_LEN(cases); i++) {
		const char *want = cases[i].want ? cases[i].want : cases[i].in;

		for (j = 0; j < ARRAY_LEN(steps); j++) {
			snprintf(name, sizeof(name), "%s (reads of %s)",
			         cases[i].name,
			         steps[j] == 0   ? "random size"
			         : steps[j] == 1 ? "1 byte"
			         : steps[j] == 3 ? "3 bytes"
			                         : "all");
			t_begin(name);
			run(cases[i].in, steps[j]);
			T_STREQ(got.data ? got.data : "", want);
			t_end();
		}
	}
	t_begin("a header line longer than the hold buffer passes whole");
	memset(longline, 'a', sizeof(longline));
	memcpy(longline, "X-Long: ", 8);
	memcpy(longline + sizeof(longline) - 10, "\r\n\r\nbody\r\n", 10);
	longline[sizeof(longline) - 1] = '\0';
	run(longline, 0);
	T_STREQ(got.data, longline);
	t_end();
	buf_free(&got);
	return t_exit();
}
