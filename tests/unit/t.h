/*
 * t.h - the unit-test harness: a table of named cases, "got ..., want ..."
 * messages, one "ok - name" / "not ok - name" line per case.
 */
#ifndef MAILMOAT_T_H
#define MAILMOAT_T_H

#include <stdio.h>
#include <string.h>

static int t_failed, t_cur_failed;
static const char *t_cur;

/* t_begin/t_end bracket one named case. */
static inline void
t_begin(const char *name)
{
	t_cur = name;
	t_cur_failed = 0;
}

static inline void
t_end(void)
{
	printf("%s - %s\n", t_cur_failed ? "not ok" : "ok", t_cur);
	t_failed += t_cur_failed;
}

#define T_CHECK(cond, ...)                                                     \
	do {                                                                   \
		if (!(cond)) {                                                 \
			printf("#   %s:%d: %s: ", __FILE__, __LINE__, t_cur);  \
			printf(__VA_ARGS__);                                   \
			printf("\n");                                          \
			t_cur_failed = 1;                                      \
		}                                                              \
	} while (0)

#define T_STREQ(got, want)                                                     \
	T_CHECK(strcmp((got), (want)) == 0, "got \"%s\", want \"%s\"", (got),  \
	        (want))
#define T_INTEQ(got, want)                                                     \
	T_CHECK((long long)(got) == (long long)(want), "got %lld, want %lld",  \
	        (long long)(got), (long long)(want))

/* t_exit - main's return value. */
static inline int
t_exit(void)
{
	return t_failed ? 1 : 0;
}

#endif
