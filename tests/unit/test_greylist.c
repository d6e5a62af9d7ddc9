/*
 * test_greylist.c - greylisting logic: triplet networks (/24, /64, PTR
 * registered domain), sender normalisation, the cycle (new, too early,
 * pass, renewal, expiry), auto-allow, eviction order, list/del/flush,
 * persistence through the store (the compact index "triplets", texts on
 * flash: listing after a reload and after a compaction), the take-over
 * of the generic tables of earlier versions.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "proxy.h"
#include "fakeclock.h"
#include "t.h"

/* sender - greylist_sender of local@domain ("" local: null). */
static const char *
sender(const char *local, const char *domain)
{
	static char out[400];
	struct mailpath p = {0};

	snprintf(p.local, sizeof(p.local), "%s", local);
	snprintf(p.domain, sizeof(p.domain), "%s", domain);
	p.null = local[0] == '\0';
	greylist_sender(&p, out, sizeof(out));
	return out;
}

/* net - greylist_net of an address text and a PTR. */
static const char *
net(const char *ip, const char *ptr)
{
	static char out[300];
	struct ipaddr a;

	ipaddr_parse(&a, ip);
	greylist_net(&a, ptr, out, sizeof(out));
	return out;
}

/* main - the cases. */
int
main(void)
{
	struct config cfg = {0};
	char dir[] = "/tmp/test_greylist.XXXXXX";
	unsigned w;

	cfg.greylist_delay_s = 300;
	cfg.greylist_window_s = 2 * 86400;
	cfg.greylist_lifetime_s = 10 * 86400;
	cfg.greylist_auto_allow = 3;

	t_begin("network: /24, /64, the PTR's registered domain");
	T_STREQ(net("192.0.2.77", ""), "192.0.2.0/24");
	T_STREQ(net("192.0.2.77", NULL), "192.0.2.0/24");
	T_STREQ(net("2001:db8:1:2:3:4:5:6", ""), "2001:db8:1:2::/64");
	T_STREQ(net("209.85.1.2", "mail-ej1-f41.google.com"), "google.com");
	T_STREQ(net("192.0.2.1", "a.b.example.co.uk."), "example.co.uk");
	T_STREQ(net("192.0.2.1", "co.uk"), "192.0.2.0/24");
	t_end();

	t_begin("sender normalisation: BATV, SRS, +ext, VERP, case, <>");
	T_STREQ(sender("", ""), "<>");
	T_STREQ(sender("Alice", "Example.COM"), "alice@example.com");
	T_STREQ(sender("prvs=4168f7a4ba=alice", "example.com"),
	        "alice@example.com");
	T_STREQ(sender("alice+news", "example.com"), "alice@example.com");
	T_STREQ(sender("SRS0=HHH=TT=orig.example=bob", "forwarder.test"),
	        "bob@orig.example");
	T_STREQ(sender("SRS1=HHH=fwd1.test==HHH=TT=orig.example=bob",
	               "fwd2.test"),
	        "bob@orig.example");
	T_STREQ(sender("bounce-12345-67", "lists.example"),
	        "bounce-#-#@lists.example");
	T_STREQ(sender("bounce-12399-68", "lists.example"),
	        "bounce-#-#@lists.example");
	t_end();

	T_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	cfg.state_dir = dir;
	store_clock_hooks(wall_cb, mono_cb);
	store_open(uv_default_loop(), &cfg, NULL, 0);
	greylist_open();

	t_begin("cycle: new, too early, passes after the delay, stays passed");
	{
		const char *t = "192.0.2.0/24 a@x.example b@y.example";

		T_INTEQ(greylist_lookup(&cfg, t, &w), GL_R_NEW);
		greylist_record(&cfg, t);
		tick(100);
		T_INTEQ(greylist_lookup(&cfg, t, &w), GL_R_WAIT);
		T_INTEQ(w, 100);
		tick(212);
		T_INTEQ(greylist_lookup(&cfg, t, &w), GL_R_PASS);
		T_INTEQ(w, 312);
		tick(9 * 86400);
		T_INTEQ(greylist_lookup(&cfg, t, &w), GL_R_PASS);
		greylist_delivered(&cfg, t); /* renewed: 10 more days */
		tick(5 * 86400);
		T_INTEQ(greylist_lookup(&cfg, t, &w), GL_R_PASS);
		tick(11 * 86400);
		T_INTEQ(greylist_lookup(&cfg, t, &w), GL_R_NEW);
	}
	t_end();

	t_begin("window: a retry after greylist_window starts over");
	{
		const char *t = "192.0.2.0/24 c@x.example b@y.example";

		greylist_record(&cfg, t);
		tick(2 * 86400 + 1);
		T_INTEQ(greylist_lookup(&cfg, t, &w), GL_R_NEW);
	}
	t_end();

	t_begin("auto-allow after greylist_auto_allow deliveries of a net");
	{
		const char *t = "198.51.100.0/24 a@x.example b@y.example";

		greylist_record(&cfg, t);
		tick(301);
		T_INTEQ(greylist_lookup(&cfg, t, &w), GL_R_PASS);
		for (int i = 0; i < 3; i++)
			greylist_delivered(&cfg, t);
		T_INTEQ(greylist_lookup(
		                &cfg,
		                "198.51.100.0/24 new@z.example b@y.example",
		                &w),
		        GL_R_AUTO);
		T_INTEQ(greylist_lookup(
		                &cfg,
		                "203.0.113.0/24 new@z.example b@y.example", &w),
		        GL_R_NEW);
	}
	t_end();

	t_begin("list, del, flush; persisted through the store");
	{
		struct buf b = {0};
		uint64_t e, p, ps, aa;

		greylist_record(&cfg, "203.0.113.0/24 s@x.example r@y.example");
		T_INTEQ(greylist_list("*s@x.example*", &b), 1);
		buf_append(&b, "", 1);
		T_CHECK(strstr(b.data, "203.0.113.0/24 s@x.example r@y.example "
		                       "pending age=0s") != NULL,
		        "%s", b.data);
		buf_free(&b);
		greylist_stats(&e, &p, &ps, &aa);
		T_INTEQ(e, 2);
		T_INTEQ(p, 1);
		T_INTEQ(ps, 1);
		T_INTEQ(aa, 1);
		store_close();
		store_clock_hooks(wall_cb, mono_cb);
		store_open(uv_default_loop(), &cfg, NULL, 0);
		greylist_open();
		T_INTEQ(greylist_list(NULL, &b), 2);
		buf_free(&b);
		T_INTEQ(greylist_del("203.0.113.0/24 s@x.example r@y.example"),
		        0);
		T_INTEQ(greylist_del("203.0.113.0/24 s@x.example r@y.example"),
		        -ENOENT);
		T_INTEQ(greylist_flush(), 1);
		T_INTEQ(greylist_list(NULL, &b), 0);
		buf_free(&b);
	}
	t_end();

	t_begin("full: the oldest pending go first, passed ones stay");
	{
		char t[100];
		size_t passed = 0;
		struct buf b = {0};

		greylist_set_capacity(1000);
		for (int i = 0; i < 200; i++) {
			snprintf(t, sizeof(t), "10.0.0.0/24 p%d@x r@y", i);
			greylist_record(&cfg, t);
		}
		tick(301);
		for (int i = 0; i < 200; i++) {
			snprintf(t, sizeof(t), "10.0.0.0/24 p%d@x r@y", i);
			passed += greylist_lookup(&cfg, t, &w) == GL_R_PASS;
		}
		T_INTEQ(passed, 200);
		for (int i = 0; i < 2000; i++) {
			snprintf(t, sizeof(t), "10.0.1.0/24 n%d@x r@y", i);
			greylist_record(&cfg, t);
			tick(1);
		}
		T_CHECK(greylist_list(NULL, &b) <= 1000, "bounded");
		buf_free(&b);
		for (int i = 0; i < 200; i++) {
			snprintf(t, sizeof(t), "10.0.0.0/24 p%d@x r@y", i);
			if (greylist_lookup(&cfg, t, &w) != GL_R_PASS) {
				T_CHECK(0, "passed %d evicted", i);
				break;
			}
		}
		T_INTEQ(greylist_lookup(&cfg, "10.0.1.0/24 n1999@x r@y", &w),
		        GL_R_WAIT);
		T_INTEQ(greylist_lookup(&cfg, "10.0.1.0/24 n0@x r@y", &w),
		        GL_R_NEW);
		greylist_set_capacity(0);
		T_CHECK(greylist_capacity() >= 10000, "derived capacity");
	}
	t_end();

	t_begin("texts listed after a compaction; a del is not listed");
	{
		struct buf b = {0};

		greylist_flush();
		greylist_record(&cfg,
		                "192.0.2.0/24 keep@x.example r@y.example");
		greylist_record(&cfg,
		                "192.0.2.0/24 gone@x.example r@y.example");
		store_flush_now();
		T_INTEQ(greylist_del("192.0.2.0/24 gone@x.example r@y.example"),
		        0);
		store_compact();
		store_flush_now();
		store_close();
		store_clock_hooks(wall_cb, mono_cb);
		store_open(uv_default_loop(), &cfg, NULL, 0);
		greylist_open();
		T_INTEQ(greylist_list(NULL, &b), 1);
		buf_append(&b, "", 1);
		T_CHECK(strstr(b.data,
		               "192.0.2.0/24 keep@x.example r@y.example "
		               "pending") != NULL,
		        "%s", b.data);
		buf_free(&b);
		T_INTEQ(greylist_list("*gone*", &b), 0);
		buf_free(&b);
	}
	t_end();

	t_begin("the tables of earlier versions are taken over");
	{
		struct store_table *old, *text;
		struct {
			uint32_t first, passed, seen;
			uint16_t count;
			uint8_t state, pad;
		} ov = {0};
		const char *tr = "198.51.100.0/24 old@x.example r@y.example";
		uint64_t h = 1469598103934665603ull;
		char tv[120] = {0};
		struct buf b = {0};

		greylist_flush();
		for (const char *c = tr; *c; c++)
			h = (h ^ (unsigned char)*c) * 1099511628211ull;
		old = store_table("greylist", 16);
		text = store_table("greylist_text", 120);
		ov.first = ov.passed = ov.seen = (uint32_t)store_now();
		ov.state = 2; /* passed */
		store_put(old, &h, 8, &ov, store_now() + 86400);
		snprintf(tv, sizeof(tv), "%s", tr);
		store_put(text, &h, 8, tv, store_now() + 86400);
		store_close();
		store_clock_hooks(wall_cb, mono_cb);
		store_open(uv_default_loop(), &cfg, NULL, 0);
		greylist_open();
		T_INTEQ(greylist_lookup(&cfg, tr, &w), GL_R_PASS);
		T_CHECK(store_table_find("greylist") == NULL, "old table gone");
		T_INTEQ(greylist_list("*old@*", &b), 1);
		buf_free(&b);
		store_close(); /* a snapshot without the old tables */
		store_clock_hooks(wall_cb, mono_cb);
		store_open(uv_default_loop(), &cfg, NULL, 0);
		T_CHECK(store_table_find("greylist") == NULL, "not on flash");
		greylist_open();
		T_INTEQ(greylist_lookup(&cfg, tr, &w), GL_R_PASS);
	}
	t_end();

	store_close();
	{
		char p[80];

		snprintf(p, sizeof(p), "%s/store.snap", dir);
		unlink(p);
		snprintf(p, sizeof(p), "%s/store.jnl", dir);
		unlink(p);
		snprintf(p, sizeof(p), "%s/triplets.txt", dir);
		unlink(p);
		rmdir(dir);
	}
	return t_exit();
}
