/*
 * test_backscatter.c - the backscatter table (a store table): threshold,
 * block by IP and PTR domain, expiry (the store's injected clocks), del,
 * list, counts.
 */
#include <stdlib.h>
#include <time.h>

#include "proxy.h"
#include "t.h"

static uint64_t now = 1000000;

/* the store's clocks: wall and monotonic move together */
static time_t
wall_cb(void)
{
	return (time_t)now;
}

static uint64_t
mono_cb(void)
{
	return now * 1000000000ull;
}

int
main(void)
{
	struct config cfg = {0};
	struct ipaddr a, b;
	struct buf out = {0};
	char key[256];
	uint64_t until;

	store_clock_hooks(wall_cb, mono_cb);
	cfg.backscatter_block_s = 4 * 86400;
	cfg.backscatter_threshold = 2;
	ipaddr_parse(&a, "192.0.2.7");
	ipaddr_parse(&b, "2001:db8::9");

	t_begin("below the threshold: counted, not blocked");
	T_CHECK(!bs_refused(&cfg, &a, ""), "blocked after one");
	T_CHECK(!bs_lookup(&a, "", key, sizeof(key), &until), "lookup");
	T_INTEQ(bs_blocked_count(), 0);
	t_end();

	t_begin("at the threshold: blocked for backscatter_block");
	T_CHECK(bs_refused(&cfg, &a, ""), "not blocked after two");
	T_CHECK(bs_lookup(&a, "", key, sizeof(key), &until), "lookup");
	T_STREQ(key, "192.0.2.7");
	T_INTEQ(until, now + 4 * 86400);
	T_INTEQ(bs_blocked_count(), 1);
	t_end();

	t_begin("by PTR domain: another IP of the same registered domain");
	cfg.backscatter_threshold = 1;
	T_CHECK(bs_refused(&cfg, &b, "MX1.Bounce.Example."), "not blocked");
	T_CHECK(bs_has_domains(), "no domains");
	T_CHECK(bs_lookup(&a, "", key, sizeof(key), &until), "a");
	ipaddr_parse(&a, "198.51.100.1");
	T_CHECK(bs_lookup(&a, "mx1.bounce.example", key, sizeof(key), &until),
	        "same PTR, other IP");
	T_STREQ(key, "bounce.example");
	T_CHECK(bs_lookup(&a, "mx2.bounce.example", key, sizeof(key), &until),
	        "other host of the registered domain");
	T_CHECK(!bs_lookup(&a, "mx1.bounce.example.net", key, sizeof(key),
	                   &until),
	        "other domain");
	T_INTEQ(bs_blocked_count(), 3);
	t_end();

	t_begin("list: blocks with their end in UTC");
	bs_list_text(&out, 100);
	buf_append(&out, "", 1);
	T_CHECK(strstr(out.data, "192.0.2.7 blocked until 1970-01-16 ") != NULL,
	        "got %s", out.data);
	T_CHECK(strstr(out.data, "\nbounce.example blocked until") != NULL,
	        "got %s", out.data);
	t_end();

	t_begin("del lifts a block; unknown is -ENOENT");
	T_INTEQ(bs_del("MX1.bounce.example"), 0);
	T_CHECK(!bs_lookup(&a, "mx1.bounce.example", key, sizeof(key), &until),
	        "still blocked");
	T_CHECK(!bs_has_domains(), "domains left");
	T_CHECK(bs_del("203.0.113.1") < 0, "deleted an unknown");
	t_end();

	t_begin("blocks expire after backscatter_block");
	now += 4 * 86400 - 1;
	T_CHECK(bs_lookup(&b, "", key, sizeof(key), &until), "gone early");
	now += 1;
	T_CHECK(!bs_lookup(&b, "", key, sizeof(key), &until), "still there");
	T_INTEQ(bs_blocked_count(), 0);
	t_end();

	t_begin("backscatter_block = 0 blocks nobody");
	cfg.backscatter_block_s = 0;
	T_CHECK(!bs_refused(&cfg, &b, "x.example"), "blocked");
	t_end();

	bs_free();
	buf_free(&out);
	return t_exit();
}
