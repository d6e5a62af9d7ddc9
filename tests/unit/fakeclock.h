/*
 * fakeclock.h - the fake clocks of the store's unit tests: wall seconds
 * and monotonic nanoseconds that move only by tick(), for
 * store_set_clocks(wall_cb, mono_cb)-style hooks.  Included once per test
 * program (static state).
 */
#ifndef MM_FAKECLOCK_H
#define MM_FAKECLOCK_H

#include <stdint.h>
#include <time.h>

static time_t fake_wall = 1700000000;
static uint64_t fake_mono = 5000000000ull;

static inline time_t
wall_cb(void)
{
	return fake_wall;
}

static inline uint64_t
mono_cb(void)
{
	return fake_mono;
}

/* tick - both clocks advance by s seconds. */
static inline void
tick(unsigned s)
{
	fake_wall += s;
	fake_mono += s * 1000000000ull;
}

#endif
