/*
 * test_helo.c - helo_judge (the DNS-free part of the helo check) and the
 * TLD list: table of named cases, taken in part from
 * /work/shared/data/helo-checks/helo-vectors.yaml (Haraka test data,
 * re-expressed; RFC 5321 where they differ).
 */
#include <stdio.h>
#include <string.h>

#include "proxy.h"
#include "checks/check.h"
#include "t.h"

static const struct {
	const char *name, *helo, *client, *want; /* want: "" = pass */
} cases[] = {
        {"fqdn", "great.domain.com", "192.0.2.1", ""},
        {"fqdn mixed case", "Mail.Example.ORG", "192.0.2.1", ""},
        {"unregistered tld", "great.domain.non-existent-tld", "192.0.2.1",
         "HELO name has an unregistered TLD"},
        {"idn tld (a-label)", "mail.example.xn--p1ai", "192.0.2.1", ""},
        {"bare word", "A2345678", "192.0.2.1",
         "Invalid HELO name (not a fully qualified domain name): A2345678"},
        {"localhost", "localhost", "127.0.0.1",
         "Invalid HELO name (not a fully qualified domain name): localhost"},
        {"localhost.localdomain", "localhost.localdomain", "127.0.0.1",
         "Invalid HELO name (not a fully qualified domain name): "
         "localhost.localdomain"},
        {"bare ipv4", "192.168.1.1", "192.168.1.1",
         "Invalid HELO name (not a fully qualified domain name): 192.168.1.1"},
        {"underscore", "my_host.example.com", "192.0.2.1",
         "Invalid HELO name (not a fully qualified domain name): "
         "my_host.example.com"},
        {"trailing dot", "mail.example.com.", "192.0.2.1",
         "Invalid HELO name (not a fully qualified domain name): "
         "mail.example.com."},
        {"empty label", "mail..example.com", "192.0.2.1",
         "Invalid HELO name (not a fully qualified domain name): "
         "mail..example.com"},
        {"hyphen edge", "-mail.example.com", "192.0.2.1",
         "Invalid HELO name (not a fully qualified domain name): "
         "-mail.example.com"},
        {"empty", "", "192.0.2.1", "Invalid HELO name (empty)"},
        {"our hostname", "MX.example.com", "192.0.2.1",
         "HELO name claims to be us"},
        {"our domain", "example.org", "192.0.2.1", "HELO name claims to be us"},
        {"literal equal", "[192.168.1.2]", "192.168.1.2", ""},
        {"literal mismatch", "[10.0.1.1]", "10.0.1.2",
         "HELO address literal does not match your IP"},
        {"literal ours", "[203.0.113.5]", "192.0.2.1",
         "HELO name claims to be us"},
        {"literal ipv6 equal", "[IPv6:2001:db8::25]", "2001:db8::25", ""},
        {"literal ipv6 long form", "[IPv6:2001:0db8:0:0:0:0:0:25]",
         "2001:db8::25", ""},
        {"literal ipv6 mismatch", "[IPv6:2001:db8::26]", "2001:db8::25",
         "HELO address literal does not match your IP"},
        {"literal ipv6 without tag", "[2001:db8::25]", "2001:db8::25",
         "Invalid HELO address literal: [2001:db8::25]"},
        {"literal garbage", "[1.2.3]", "1.2.3.4",
         "Invalid HELO address literal: [1.2.3]"},
        {"literal unclosed", "[1.2.3.4", "1.2.3.4",
         "Invalid HELO address literal: [1.2.3.4"},
        {"literal ipv4 for ipv6 client", "[192.0.2.1]", "2001:db8::1",
         "HELO address literal does not match your IP"},
        {"numeric tld", "mail.example.123", "192.0.2.1",
         "Invalid HELO name (not a fully qualified domain name): "
         "mail.example.123"},
};

int
main(void)
{
	struct config cfg = {0};
	char *doms[] = {"example.org", "example.net"};
	char err[256], text[192];
	unsigned i;

	cfg.hostname = "mx.example.com";
	cfg.local_domains.v = doms;
	cfg.local_domains.n = 2;
	ipaddr_parse(&cfg.local_addresses[0], "203.0.113.5");
	cfg.n_local_addresses = 1;

	t_begin("tld: built-in list loads");
	T_CHECK(tld_load(NULL, err, sizeof(err)) == 0, "%s", err);
	T_CHECK(tld_count() == 1437, "got %zu TLDs", tld_count());
	T_CHECK(tld_registered("com") && tld_registered("DE") &&
	                tld_registered("xn--p1ai") &&
	                !tld_registered("invalidtld") && !tld_registered("") &&
	                !tld_registered("local"),
	        "membership");
	t_end();

	t_begin("tld: file replaces the list, bad file keeps the old one");
	T_CHECK(tld_parse("# v1\nCOM\n\nexample\n", 18, "t", err,
	                  sizeof(err)) == 0,
	        "%s", err);
	T_CHECK(tld_count() == 2 && tld_registered("example") &&
	                !tld_registered("de"),
	        "count %zu", tld_count());
	T_CHECK(tld_parse("com\nno way\n", 11, "t", err, sizeof(err)) < 0,
	        "accepted");
	T_STREQ(err, "t:2: not a TLD: \"no way\"");
	T_CHECK(tld_parse("# only comments\n", 16, "t", err, sizeof(err)) < 0,
	        "accepted an empty list");
	T_CHECK(tld_count() == 2, "old list kept");
	T_CHECK(tld_load("/nonexistent/tlds", err, sizeof(err)) < 0, "loaded");
	T_CHECK(tld_load("data/tlds.txt", err, sizeof(err)) == 0, "%s", err);
	T_CHECK(tld_count() == 1437, "got %zu", tld_count());
	t_end();

	for (i = 0; i < ARRAY_LEN(cases); i++) {
		struct ipaddr client;
		char name[128];
		int st;

		snprintf(name, sizeof(name), "helo: %s", cases[i].name);
		t_begin(name);
		ipaddr_parse(&client, cases[i].client);
		st = helo_judge(&cfg, &client, cases[i].helo, text,
		                sizeof(text));
		if (cases[i].want[0] == '\0') {
			T_CHECK(st == CHK_PASS, "%s: failed: %s", cases[i].helo,
			        text);
		} else {
			T_CHECK(st == CHK_FAIL, "%s: passed", cases[i].helo);
			T_STREQ(text, cases[i].want);
		}
		t_end();
	}
	tld_free();
	return t_exit();
}
