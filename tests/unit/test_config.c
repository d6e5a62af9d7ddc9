/*
 * test_config.c - config.c: every key of SPEC.md 3 and ours parsed into
 * struct config, the defaults, durations, sizes, actions, dnsbl ranges,
 * lists and list files, and the error strings "PATH:LINE: what is wrong"
 * for unknown keys, bad values, duplicates, a missing backend, bad listen
 * addresses and bad list files.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "proxy.h"
#include "t.h"

static char tmpdir[] = "/tmp/test_config.XXXXXX";

/* tmp_path - name inside tmpdir (static buffer per slot) */
static const char *
tmp_path(const char *name)
{
	static char paths[4][300];
	static int slot;
	char *p = paths[slot++ % 4];

	snprintf(p, 300, "%s/%s", tmpdir, name);
	return p;
}

/* write_file - name in tmpdir with text; returns the path */
static const char *
write_file(const char *name, const char *text)
{
	const char *path = tmp_path(name);
	FILE *f = fopen(path, "w");

	if (f == NULL) {
		perror(path);
		exit(2);
	}
	fputs(text, f);
	fclose(f);
	return path;
}

/* load_text - write text as mailmoat.conf and load it */
static struct config *
load_text(const char *text, char *err, size_t errlen)
{
	const char *path = write_file("mailmoat.conf", text);

	return config_load(path, err, errlen);
}

/* sa_text - "addr port" of a sockaddr for comparisons */
static const char *
sa_text(const struct sockaddr_storage *ss)
{
	static char out[80];
	char a[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &s->sin_addr, a, sizeof(a));
		port = ntohs(s->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &s->sin6_addr, a, sizeof(a));
		port = ntohs(s->sin6_port);
	}
	snprintf(out, sizeof(out), "%s %u", a, port);
	return out;
}

#define B "backend = 192.0.2.10:25\n"

/* test_full - the SPEC.md 3 example (files made local), every key */
static void
test_full(void)
{
	char err[512], want[512];
	struct config *c;
	struct ipaddr ip;
	char ipbuf[64];
	int i;

	write_file("recipients", "@example.com\nboss@example.org\n");
	write_file("allow", "198.51.100.0/24\n@friend.example\n");
	write_file("block", "203.0.113.66\n");
	write_file("tlds.txt", "COM\nORG\n");
	write_file("dyn.txt", "dip\n");
	c = load_text(
	        "# the SPEC.md example\n"
	        "listen            = 0.0.0.0:25 [::]:25\n"
	        "backend           = 192.168.1.10:25       # the internal mail "
	        "server\n"
	        "transparent       = off                   # off | redirect | "
	        "tproxy\n"
	        "hostname          = MX.Example.com\n"
	        "local_domains     = example.com Example.ORG\n"
	        "local_addresses   = 203.0.113.5 2001:db8::5\n"
	        "recipients        = recipients   # relative to the config\n"
	        "recipient_verify  = both\n"
	        "dns_servers       = 127.0.0.1:53 [::1]:5353 127.0.0.2\n"
	        "dns_timeout       = 7s\n"
	        "dnsbl             = zen.spamhaus.org "
	        "bl.spamcop.net=127.0.0.2..127.0.0.11,127.0.0.20\n"
	        "allowlist         = allow\n"
	        "blocklist         = BLOCKPATH\n"
	        "greet_pause       = 4s\n"
	        "greylist_delay    = 6m\n"
	        "greylist_window   = 3d\n"
	        "greylist_lifetime = 11d\n"
	        "greylist_auto_allow = 7\n"
	        "backscatter_block = 5d\n"
	        "state_dir         = /data/mailmoat2\n"
	        "state_flush       = 90\n"
	        "control_socket    = /run/mm.sock\n"
	        "max_connections   = 500\n"
	        "max_per_ip        = 3\n"
	        "message_size_limit = 10M\n"
	        "tls_cert          = /data/tls/cert.pem    # STARTTLS\n"
	        "tls_key           = /data/tls/key.pem\n"
	        "scanner           = clamd:192.168.1.20:3310\n"
	        "action_dnsbl      = reject\n"
	        "action_rdns       = tempfail\n"
	        "action_dynamic    = log\n"
	        "action_helo       = off\n"
	        "action_sender_tld = log\n"
	        "action_sender_mx  = tempfail\n"
	        "action_spf        = off\n"
	        "action_pregreet   = log\n"
	        "action_pipelining = off\n"
	        "action_null_sender = tempfail\n"
	        "action_dsn        = log\n"
	        "action_greylist   = off\n"
	        "action_scanner    = log\n"
	        "max_backend_connections = 7\n"
	        "max_recipients    = 50\n"
	        "timeout_command   = 1m\n"
	        "timeout_data      = 2m\n"
	        "timeout_backend   = 30s\n"
	        "helo_resolve      = yes\n"
	        "sender_mx         = mx-or-a\n"
	        "spf_softfail      = reject\n"
	        "spf_neutral       = log\n"
	        "spf_permerror     = tempfail\n"
	        "dynamic_patterns  = dyn.txt\n"
	        "tld_list          = tlds.txt\n",
	        err, sizeof(err));
	/* The text above names BLOCKPATH: it must fail with that key. */
	t_begin("full: missing list file is an error at its line");
	T_CHECK(c == NULL, "loaded with a missing blocklist");
	snprintf(want, sizeof(want),
	         "%s:14: cannot read blocklist file \"%s\": No such file or "
	         "directory",
	         tmp_path("mailmoat.conf"), tmp_path("BLOCKPATH"));
	T_STREQ(err, want);
	t_end();
	config_unref(c);

	write_file("BLOCKPATH", "203.0.113.66\n");
	c = config_load(tmp_path("mailmoat.conf"), err, sizeof(err));
	t_begin("full: loads");
	T_CHECK(c != NULL, "error: %s", err);
	t_end();
	if (c == NULL)
		return;

	t_begin("full: listen, backend, transparent, hostname");
	T_INTEQ(c->n_listen, 2);
	T_STREQ(sa_text(&c->listen[0]), "0.0.0.0 25");
	T_STREQ(sa_text(&c->listen[1]), ":: 25");
	T_STREQ(sa_text(&c->backend), "192.168.1.10 25");
	T_INTEQ(c->transparent, TRANSPARENT_OFF);
	T_STREQ(c->hostname, "mx.example.com");
	T_INTEQ(c->refs, 1);
	T_STREQ(c->path, tmp_path("mailmoat.conf"));
	t_end();

	t_begin("full: local_domains lower case, local_addresses");
	T_INTEQ(c->local_domains.n, 2);
	if (c->local_domains.n == 2) {
		T_STREQ(c->local_domains.v[0], "example.com");
		T_STREQ(c->local_domains.v[1], "example.org");
	}
	T_INTEQ(c->n_local_addresses, 2);
	ipaddr_format(&c->local_addresses[0], ipbuf, sizeof(ipbuf));
	T_STREQ(ipbuf, "203.0.113.5");
	ipaddr_format(&c->local_addresses[1], ipbuf, sizeof(ipbuf));
	T_STREQ(ipbuf, "2001:db8::5");
	t_end();

	t_begin("full: recipients resolved and loaded, recipient_verify");
	T_STREQ(c->recipients_path, tmp_path("recipients"));
	T_CHECK(c->recipients != NULL, "recipients not loaded");
	T_CHECK(list_match_addr(c->recipients, "anyone@example.com"),
	        "@example.com");
	T_CHECK(list_match_addr(c->recipients, "Boss@example.org"), "boss");
	T_CHECK(!list_match_addr(c->recipients, "other@example.org"), "other");
	T_INTEQ(c->recipient_verify, RCPT_VERIFY_BOTH);
	t_end();

	t_begin("full: dns_servers csv, dns_timeout");
	T_STREQ(c->dns_servers ? c->dns_servers : "(null)",
	        "127.0.0.1:53,[::1]:5353,127.0.0.2:53");
	T_INTEQ(c->dns_timeout_ms, 7000);
	t_end();

	t_begin("full: dnsbl zones and ranges");
	T_INTEQ(c->n_dnsbl, 2);
	if (c->n_dnsbl == 2) {
		T_STREQ(c->dnsbl[0].zone, "zen.spamhaus.org");
		T_INTEQ(c->dnsbl[0].n_ranges, 0);
		T_STREQ(c->dnsbl[1].zone, "bl.spamcop.net");
		T_INTEQ(c->dnsbl[1].n_ranges, 2);
		T_INTEQ(c->dnsbl[1].lo[0], 0x7f000002);
		T_INTEQ(c->dnsbl[1].hi[0], 0x7f00000b);
		T_INTEQ(c->dnsbl[1].lo[1], 0x7f000014);
		T_INTEQ(c->dnsbl[1].hi[1], 0x7f000014);
	}
	t_end();

	t_begin("full: allowlist and blocklist loaded");
	T_STREQ(c->allowlist_path, tmp_path("allow"));
	ipaddr_parse(&ip, "198.51.100.7");
	T_CHECK(c->allow && list_match_ip(c->allow, &ip), "allow ip");
	T_CHECK(c->allow && list_match_addr(c->allow, "x@friend.example"),
	        "allow @domain");
	ipaddr_parse(&ip, "203.0.113.66");
	T_CHECK(c->block && list_match_ip(c->block, &ip), "block ip");
	t_end();

	t_begin("full: durations");
	T_INTEQ(c->greet_pause_ms, 4000);
	T_INTEQ(c->greylist_delay_s, 360);
	T_INTEQ(c->greylist_window_s, 3 * 86400);
	T_INTEQ(c->greylist_lifetime_s, 11 * 86400);
	T_INTEQ(c->greylist_auto_allow, 7);
	T_INTEQ(c->backscatter_block_s, 5 * 86400);
	T_INTEQ(c->state_flush_s, 90);
	T_INTEQ(c->timeout_command_ms, 60000);
	T_INTEQ(c->timeout_data_ms, 120000);
	T_INTEQ(c->timeout_backend_ms, 30000);
	t_end();

	t_begin("full: paths, caps, size, tls, scanner");
	T_STREQ(c->state_dir, "/data/mailmoat2");
	T_STREQ(c->control_socket, "/run/mm.sock");
	T_INTEQ(c->max_connections, 500);
	T_INTEQ(c->max_per_ip, 3);
	T_INTEQ(c->message_size_limit, 10 * 1024 * 1024);
	T_STREQ(c->tls_cert, "/data/tls/cert.pem");
	T_STREQ(c->tls_key, "/data/tls/key.pem");
	T_STREQ(c->scanner, "clamd:192.168.1.20:3310");
	T_INTEQ(c->max_backend_connections, 7);
	T_INTEQ(c->max_recipients, 50);
	t_end();

	t_begin("full: actions");
	{
		static const enum action want_act[CHK_COUNT] = {
		        ACT_REJECT, ACT_TEMPFAIL, ACT_LOG, ACT_OFF,
		        ACT_LOG,    ACT_TEMPFAIL, ACT_OFF, ACT_LOG,
		        ACT_OFF,    ACT_TEMPFAIL, ACT_LOG, ACT_OFF,
		        ACT_LOG};

		for (i = 0; i < CHK_COUNT; i++)
			T_CHECK(c->actions[i] == want_act[i],
			        "action_%s: got %s, want %s",
			        config_check_name(i),
			        config_action_name(c->actions[i]),
			        config_action_name(want_act[i]));
	}
	t_end();

	t_begin("full: ours");
	T_CHECK(c->helo_resolve, "helo_resolve");
	T_INTEQ(c->sender_mx, SENDER_MX_OR_A);
	T_INTEQ(c->spf_softfail, ACT_REJECT);
	T_INTEQ(c->spf_neutral, ACT_LOG);
	T_INTEQ(c->spf_permerror, ACT_TEMPFAIL);
	T_STREQ(c->dynamic_patterns, tmp_path("dyn.txt"));
	T_STREQ(c->tld_list, tmp_path("tlds.txt"));
	t_end();

	t_begin("config_ref/unref keeps it alive");
	config_ref(c);
	T_INTEQ(c->refs, 2);
	config_unref(c);
	T_INTEQ(c->refs, 1);
	t_end();
	config_unref(c);
}

/* test_defaults - a config with only the backend */
static void
test_defaults(void)
{
	char err[512], host[256] = "";
	struct config *c = load_text(B, err, sizeof(err));
	int i;

	t_begin("defaults: loads with backend only");
	T_CHECK(c != NULL, "error: %s", err);
	t_end();
	if (c == NULL)
		return;
	t_begin("defaults: values of SPEC.md 3");
	T_INTEQ(c->n_listen, 1);
	T_STREQ(sa_text(&c->listen[0]), "0.0.0.0 25");
	T_INTEQ(c->transparent, TRANSPARENT_OFF);
	gethostname(host, sizeof(host) - 1);
	util_lowercase(host);
	T_STREQ(c->hostname, host);
	T_INTEQ(c->local_domains.n, 0);
	T_INTEQ(c->n_local_addresses, 0);
	T_CHECK(c->recipients_path == NULL && c->recipients == NULL,
	        "recipients");
	T_INTEQ(c->recipient_verify, RCPT_VERIFY_LIST);
	T_CHECK(c->dns_servers == NULL, "dns_servers");
	T_INTEQ(c->dns_timeout_ms, 5000);
	T_INTEQ(c->n_dnsbl, 0);
	T_CHECK(c->allow == NULL && c->block == NULL, "lists");
	T_INTEQ(c->greet_pause_ms, 3000);
	T_INTEQ(c->greylist_delay_s, 300);
	T_INTEQ(c->greylist_window_s, 2 * 86400);
	T_INTEQ(c->greylist_lifetime_s, 10 * 86400);
	T_INTEQ(c->greylist_auto_allow, 5);
	T_INTEQ(c->backscatter_block_s, 4 * 86400);
	T_STREQ(c->state_dir, "/data/mailmoat");
	T_INTEQ(c->state_flush_s, 300);
	T_STREQ(c->control_socket, "/run/mailmoat.sock");
	T_INTEQ(c->max_connections, 1000);
	T_INTEQ(c->max_per_ip, 10);
	T_INTEQ(c->message_size_limit, 25 * 1024 * 1024);
	T_CHECK(c->tls_cert == NULL && c->tls_key == NULL, "tls");
	T_CHECK(c->scanner == NULL, "scanner");
	for (i = 0; i < CHK_COUNT; i++)
		T_CHECK(c->actions[i] == ACT_REJECT, "action_%s: %s",
		        config_check_name(i),
		        config_action_name(c->actions[i]));
	t_end();
	t_begin("defaults: ours");
	T_INTEQ(c->max_backend_connections, 20);
	T_INTEQ(c->max_recipients, 100);
	T_INTEQ(c->timeout_command_ms, 300000);
	T_INTEQ(c->timeout_data_ms, 180000);
	T_INTEQ(c->timeout_backend_ms, 120000);
	T_CHECK(!c->helo_resolve, "helo_resolve");
	T_INTEQ(c->sender_mx, SENDER_MX_MX);
	T_INTEQ(c->spf_softfail, ACT_LOG);
	T_INTEQ(c->spf_neutral, ACT_OFF);
	T_INTEQ(c->spf_permerror, ACT_LOG);
	T_CHECK(c->dynamic_patterns == NULL && c->tld_list == NULL,
	        "pattern files");
	t_end();
	config_unref(c);
}

/* test_errors - texts that must fail, with the exact message */
static void
test_errors(void)
{
	static const struct {
		const char *name;
		const char *text;
		const char *want; /* after "PATH:" */
	} cases[] = {
	        {"unknown key", B "# ok\nfoo = bar\n",
	         "3: unknown key \"foo\""},
	        {"unknown key case", B "Listen = 0.0.0.0:25\n",
	         "2: unknown key \"Listen\""},
	        {"missing backend", "listen = 0.0.0.0:25\n# end\n",
	         "2: missing required key \"backend\""},
	        {"empty file", "", "1: missing required key \"backend\""},
	        {"duplicate key", B "greet_pause = 1s\ngreet_pause = 2s\n",
	         "3: duplicate key \"greet_pause\" (first set on line 2)"},
	        {"duplicate backend", B B,
	         "2: duplicate key \"backend\" (first "
	         "set on line 1)"},
	        {"no equals", B "greet_pause 3s\n",
	         "2: expected \"key = value\", got \"greet_pause 3s\""},
	        {"no key", B "= 3\n", "2: missing key before '='"},
	        {"bad duration suffix", B "greet_pause = 5x\n",
	         "2: bad duration \"5x\" for greet_pause"},
	        {"bad duration empty", B "greet_pause =\n",
	         "2: bad duration \"\" for greet_pause"},
	        {"bad duration negative", B "greylist_delay = -5m\n",
	         "2: bad duration \"-5m\" for greylist_delay"},
	        {"bad duration two words", B "greylist_delay = 5 m\n",
	         "2: bad duration \"5 m\" for greylist_delay"},
	        {"bad duration float", B "dns_timeout = 1.5s\n",
	         "2: bad duration \"1.5s\" for dns_timeout"},
	        {"duration overflow",
	         B "greylist_delay = 99999999999999999999d\n",
	         "2: bad duration \"99999999999999999999d\" for "
	         "greylist_delay"},
	        {"duration out of range", B "dns_timeout = 50ms\n",
	         "2: dns_timeout = 50ms out of range (100ms..300000ms)"},
	        {"bad size", B "message_size_limit = 10X\n",
	         "2: bad size \"10X\" for message_size_limit"},
	        {"bad size MB", B "message_size_limit = 10MB\n",
	         "2: bad size \"10MB\" for message_size_limit"},
	        {"size out of range", B "message_size_limit = 2048G\n",
	         "2: message_size_limit = 2048G out of range"},
	        {"bad number", B "max_connections = ten\n",
	         "2: bad number \"ten\" for max_connections"},
	        {"number zero", B "max_per_ip = 0\n",
	         "2: max_per_ip = 0 out of range (1..1000000)"},
	        {"max_recipients over cap", B "max_recipients = 101\n",
	         "2: max_recipients = 101 out of range (1..100)"},
	        {"bad action", B "action_dnsbl = drop\n",
	         "2: bad action \"drop\" for action_dnsbl "
	         "(reject|tempfail|log|off)"},
	        {"action for unknown check", B "action_foo = reject\n",
	         "2: unknown key \"action_foo\""},
	        {"bad spf action", B "spf_softfail = maybe\n",
	         "2: bad action \"maybe\" for spf_softfail "
	         "(reject|tempfail|log|off)"},
	        {"bad transparent", B "transparent = yes\n",
	         "2: bad value \"yes\" for transparent (off|redirect|tproxy)"},
	        {"bad recipient_verify", B "recipient_verify = ldap\n",
	         "2: bad value \"ldap\" for recipient_verify "
	         "(list|backend|both)"},
	        {"bad sender_mx", B "sender_mx = a\n",
	         "2: bad value \"a\" for sender_mx (mx|mx-or-a)"},
	        {"bad bool", B "helo_resolve = maybe\n",
	         "2: bad value \"maybe\" for helo_resolve (yes|no)"},
	        {"bad listen address",
	         B "listen = 0.0.0.0:25 mail.example:25\n",
	         "2: bad address \"mail.example:25\" for listen"},
	        {"bad listen port", B "listen = 0.0.0.0:99999\n",
	         "2: bad address \"0.0.0.0:99999\" for listen"},
	        {"listen twice", B "listen = 127.0.0.1:25 [::1]:25 127.0.0.1\n",
	         "2: listen address \"127.0.0.1\" given twice"},
	        {"empty listen", B "listen =\n",
	         "2: listen needs at least one address"},
	        {"too many listen",
	         B "listen = 127.0.0.1:1 127.0.0.1:2 "
	           "127.0.0.1:3 127.0.0.1:4 127.0.0.1:5 "
	           "127.0.0.1:6 127.0.0.1:7 127.0.0.1:8 "
	           "127.0.0.1:9\n",
	         "2: too many addresses for listen (at most 8)"},
	        {"bad backend", "backend = localhost:25\n",
	         "1: bad address \"localhost:25\" for backend"},
	        {"two backends", "backend = 127.0.0.1:25 127.0.0.2:25\n",
	         "1: bad address \"127.0.0.1:25 127.0.0.2:25\" for backend"},
	        {"bad hostname", B "hostname = mx..example.com\n",
	         "2: bad host name \"mx..example.com\" for hostname"},
	        {"bad local domain",
	         B "local_domains = example.com exa$mple.org\n",
	         "2: bad domain \"exa$mple.org\" for local_domains"},
	        {"bad local address", B "local_addresses = 203.0.113.5 1.2.3\n",
	         "2: bad IP address \"1.2.3\" for local_addresses"},
	        {"bad dns server", B "dns_servers = 127.0.0.1:53 dns.example\n",
	         "2: bad address \"dns.example\" for dns_servers"},
	        {"bad dnsbl range order",
	         B "dnsbl = zen.spamhaus.org=127.0.0.9..127.0.0.2\n",
	         "2: bad dnsbl entry \"zen.spamhaus.org=127.0.0.9..127.0.0.2\" "
	         "(want ZONE or ZONE=127.0.0.2,127.0.0.4..127.0.0.7)"},
	        {"bad dnsbl code", B "dnsbl = bl.example=127.0.0\n",
	         "2: bad dnsbl entry \"bl.example=127.0.0\" "
	         "(want ZONE or ZONE=127.0.0.2,127.0.0.4..127.0.0.7)"},
	        {"bad dnsbl empty codes", B "dnsbl = bl.example=\n",
	         "2: bad dnsbl entry \"bl.example=\" "
	         "(want ZONE or ZONE=127.0.0.2,127.0.0.4..127.0.0.7)"},
	        {"bad dnsbl double comma",
	         B "dnsbl = bl.example=127.0.0.2,,127.0.0.3\n",
	         "2: bad dnsbl entry \"bl.example=127.0.0.2,,127.0.0.3\" "
	         "(want ZONE or ZONE=127.0.0.2,127.0.0.4..127.0.0.7)"},
	        {"bad dnsbl zone", B "dnsbl = bl..example\n",
	         "2: bad dnsbl entry \"bl..example\" "
	         "(want ZONE or ZONE=127.0.0.2,127.0.0.4..127.0.0.7)"},
	        {"too many dnsbl ranges",
	         B
	         "dnsbl = b.example=127.0.0.1,127.0.0.2,"
	         "127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7,127.0.0.8,"
	         "127.0.0.9\n",
	         "2: bad dnsbl entry \"b.example=127.0.0.1,127.0.0.2,127.0.0.3,"
	         "127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7,127.0.0.8,127.0.0."
	         "9\" "
	         "(want ZONE or ZONE=127.0.0.2,127.0.0.4..127.0.0.7)"},
	        {"bad scanner kind", B "scanner = sophos:127.0.0.1:4010\n",
	         "2: bad scanner \"sophos:127.0.0.1:4010\" (want "
	         "clamd:HOST:PORT, "
	         "spamd:HOST:PORT or rspamd:HOST:PORT)"},
	        {"scanner without port", B "scanner = clamd:127.0.0.1\n",
	         "2: bad scanner \"clamd:127.0.0.1\" (want clamd:HOST:PORT, "
	         "spamd:HOST:PORT or rspamd:HOST:PORT)"},
	        {"scanner list with a bad one",
	         B "scanner = clamd:127.0.0.1:3310 spamd:host.example:783\n",
	         "2: bad scanner \"spamd:host.example:783\" (want "
	         "clamd:HOST:PORT, "
	         "spamd:HOST:PORT or rspamd:HOST:PORT)"},
	        {"too many scanners",
	         B "scanner = clamd:127.0.0.1:1 clamd:127.0.0.1:2 "
	           "clamd:127.0.0.1:3 clamd:127.0.0.1:4 clamd:127.0.0.1:5\n",
	         "2: too many scanners (at most 4)"},
	        {"scanner v6 without brackets", B "scanner = clamd:::1:3310\n",
	         "2: bad scanner \"clamd:::1:3310\" (want clamd:HOST:PORT, "
	         "spamd:HOST:PORT or rspamd:HOST:PORT)"},
	        {"bad scanner_fail", B "scanner_fail = ignore\n",
	         "2: bad value \"ignore\" for scanner_fail (tempfail|accept)"},
	        {"bad scanner_timeout", B "scanner_timeout = 10ms\n",
	         "2: scanner_timeout = 10ms out of range (100ms..3600000ms)"},
	        {"bad scanner_max_size", B "scanner_max_size = 2X\n",
	         "2: bad size \"2X\" for scanner_max_size"},
	        {"tls_cert without key", B "tls_cert = /x/cert.pem\n",
	         "2: tls_cert and tls_key must be set together"},
	        {"path with space", B "state_dir = /data/my state\n",
	         "2: bad value \"/data/my state\" for state_dir: one word "
	         "expected"},
	        {"control chars shown", B "foo\x01 = 1\n",
	         "2: unknown key \"foo?\""},
	        {"nul byte", B "greet_pause = 1\0s\n", "2: NUL byte in line"},
	};
	char err[512], want[600], name[128];
	size_t i;

	for (i = 0; i < ARRAY_LEN(cases); i++) {
		struct config *c;

		snprintf(name, sizeof(name), "error %s", cases[i].name);
		t_begin(name);
		err[0] = '\0';
		if (strcmp(cases[i].name, "nul byte") == 0) {
			/* fputs stops at the NUL: write the bytes. */
			static const char nul[] = B "greet_pause = 1\0s\n";
			FILE *f = fopen(tmp_path("mailmoat.conf"), "w");

			fwrite(nul, 1, sizeof(nul) - 1, f);
			fclose(f);
			c = config_load(tmp_path("mailmoat.conf"), err,
			                sizeof(err));
		} else {
			c = load_text(cases[i].text, err, sizeof(err));
		}
		T_CHECK(c == NULL, "loaded, want an error");
		snprintf(want, sizeof(want), "%s:%s", tmp_path("mailmoat.conf"),
		         cases[i].want);
		T_STREQ(err, want);
		config_unref(c);
		t_end();
	}
}

/* test_values - single keys: accepted forms */
static void
test_values(void)
{
	char err[512];
	struct config *c;

	t_begin("durations: 30, 30s, 500ms, 5m, 2h, 1d, 0");
	c = load_text(B "greet_pause = 30\ndns_timeout = 500ms\n"
	                "greylist_delay = 2h\ngreylist_window = 1d\n"
	                "timeout_command = 5m\nbackscatter_block = 0\n"
	                "state_flush = 30s\n",
	              err, sizeof(err));
	T_CHECK(c != NULL, "%s", err);
	if (c) {
		T_INTEQ(c->greet_pause_ms, 30000);
		T_INTEQ(c->dns_timeout_ms, 500);
		T_INTEQ(c->greylist_delay_s, 7200);
		T_INTEQ(c->greylist_window_s, 86400);
		T_INTEQ(c->timeout_command_ms, 300000);
		T_INTEQ(c->backscatter_block_s, 0);
		T_INTEQ(c->state_flush_s, 30);
	}
	config_unref(c);
	t_end();

	t_begin("sizes: bytes, K, M, G, 0");
	{
		static const struct {
			const char *in;
			uint64_t want;
		} sz[] = {{"0", 0},
		          {"1000", 1000},
		          {"512K", 512 * 1024},
		          {"512k", 512 * 1024},
		          {"25M", 25ull << 20},
		          {"1G", 1ull << 30}};
		size_t i;
		char text[128];

		for (i = 0; i < ARRAY_LEN(sz); i++) {
			snprintf(text, sizeof(text),
			         B "message_size_limit = %s\n", sz[i].in);
			c = load_text(text, err, sizeof(err));
			T_CHECK(c != NULL, "%s: %s", sz[i].in, err);
			if (c)
				T_CHECK(c->message_size_limit == sz[i].want,
				        "%s: got %llu", sz[i].in,
				        (unsigned long long)
				                c->message_size_limit);
			config_unref(c);
		}
	}
	t_end();

	t_begin("config_parse_duration_ms / config_parse_size direct");
	{
		uint64_t v = 0;

		T_INTEQ(config_parse_duration_ms("90", &v), 0);
		T_INTEQ(v, 90000);
		T_INTEQ(config_parse_duration_ms("1d", &v), 0);
		T_INTEQ(v, 86400000);
		T_INTEQ(config_parse_duration_ms("", &v), -EINVAL);
		T_INTEQ(config_parse_duration_ms("m", &v), -EINVAL);
		T_INTEQ(config_parse_duration_ms("5 s", &v), -EINVAL);
		T_INTEQ(config_parse_duration_ms("5S", &v), -EINVAL);
		T_INTEQ(config_parse_duration_ms(NULL, &v), -EINVAL);
		T_INTEQ(config_parse_size("3K", &v), 0);
		T_INTEQ(v, 3072);
		T_INTEQ(config_parse_size("3T", &v), -EINVAL);
		T_INTEQ(config_parse_size("-1", &v), -EINVAL);
		T_INTEQ(config_parse_size("99999999999999999999", &v), -EINVAL);
	}
	t_end();

	t_begin("transparent modes and recipient_verify backend");
	c = load_text(B "transparent = tproxy\nrecipient_verify = backend\n",
	              err, sizeof(err));
	T_CHECK(c != NULL, "%s", err);
	if (c) {
		T_INTEQ(c->transparent, TRANSPARENT_TPROXY);
		T_INTEQ(c->recipient_verify, RCPT_VERIFY_BACKEND);
	}
	config_unref(c);
	c = load_text(B "transparent = redirect\n", err, sizeof(err));
	T_CHECK(c != NULL && c->transparent == TRANSPARENT_REDIRECT, "%s", err);
	config_unref(c);
	t_end();

	t_begin("comments: full-line, trailing, '#' inside a word");
	write_file("a#b", "10.0.0.1\n");
	c = load_text(
	        "   # indented comment\n\n" B
	        "allowlist = a#b   # the file is a#b\n"
	        "hostname = mx.example.com# no space: part of the value?\n",
	        err, sizeof(err));
	/* "mx.example.com#" is not a host name: '#' needs white space. */
	T_CHECK(c == NULL, "loaded");
	config_unref(c);
	c = load_text("   # indented comment\n\n" B
	              "allowlist = a#b   # the file is a#b\n"
	              "hostname\t=\tmx.example.com\t# tabs\r\n",
	              err, sizeof(err));
	T_CHECK(c != NULL, "%s", err);
	if (c) {
		T_STREQ(c->allowlist_path, tmp_path("a#b"));
		T_STREQ(c->hostname, "mx.example.com");
	}
	config_unref(c);
	t_end();

	t_begin("UTF-8 byte order mark on line 1 is skipped");
	c = load_text("\xef\xbb\xbf" B "greet_pause = 1s\n", err, sizeof(err));
	T_CHECK(c != NULL, "%s", err);
	if (c)
		T_INTEQ(c->greet_pause_ms, 1000);
	config_unref(c);
	t_end();

	t_begin("backend default port, v6 backend, v6 listen");
	c = load_text("backend = 127.0.0.1\nlisten = [::1]:2525 127.0.0.1\n",
	              err, sizeof(err));
	T_CHECK(c != NULL, "%s", err);
	if (c) {
		T_STREQ(sa_text(&c->backend), "127.0.0.1 25");
		T_INTEQ(c->n_listen, 2);
		T_STREQ(sa_text(&c->listen[0]), "::1 2525");
		T_STREQ(sa_text(&c->listen[1]), "127.0.0.1 25");
	}
	config_unref(c);
	t_end();

	t_begin("scanner forms");
	{
		static const char *const ok[] = {"clamd:127.0.0.1:3310",
		                                 "spamd:[::1]:783",
		                                 "rspamd:10.0.0.2:11333"};
		char text[128];
		size_t i;

		for (i = 0; i < ARRAY_LEN(ok); i++) {
			snprintf(text, sizeof(text), B "scanner = %s\n", ok[i]);
			c = load_text(text, err, sizeof(err));
			T_CHECK(c != NULL && c->scanner &&
			                strcmp(c->scanner, ok[i]) == 0,
			        "%s: %s", ok[i], err);
			config_unref(c);
		}
	}
	t_end();

	t_begin("scanner list, timeout, fail, max size");
	c = load_text(B "scanner = clamd:127.0.0.1:3310  spamd:[::1]:783 "
	                "rspamd:10.0.0.2:11333\n"
	                "scanner_timeout = 5s\nscanner_fail = accept\n"
	                "scanner_max_size = 512K\n",
	              err, sizeof(err));
	T_CHECK(c != NULL, "%s", err);
	if (c) {
		T_INTEQ(c->n_scanners, 3);
		T_INTEQ(c->scanners[0].kind, SCAN_CLAMD);
		T_INTEQ(c->scanners[1].kind, SCAN_SPAMD);
		T_INTEQ(c->scanners[2].kind, SCAN_RSPAMD);
		T_STREQ(c->scanners[1].name, "spamd:[::1]:783");
		T_INTEQ(c->scanners[1].addr.ss_family, AF_INET6);
		T_INTEQ(ntohs(((struct sockaddr_in *)&c->scanners[2].addr)
		                      ->sin_port),
		        11333);
		T_STREQ(c->scanner, "clamd:127.0.0.1:3310 spamd:[::1]:783 "
		                    "rspamd:10.0.0.2:11333");
		T_INTEQ(c->scanner_timeout_ms, 5000);
		T_INTEQ(c->scanner_fail, SCANNER_FAIL_ACCEPT);
		T_INTEQ(c->scanner_max_size, 512 * 1024);
	}
	config_unref(c);
	c = load_text(B, err, sizeof(err));
	T_CHECK(c != NULL, "%s", err);
	if (c) {
		T_INTEQ(c->n_scanners, 0);
		T_INTEQ(c->scanner_timeout_ms, 30000);
		T_INTEQ(c->scanner_fail, SCANNER_FAIL_TEMPFAIL);
		T_INTEQ(c->scanner_max_size, 2 * 1024 * 1024);
	}
	config_unref(c);
	t_end();

	t_begin("empty list values");
	c = load_text(B "local_domains =\ndnsbl =   # none\n"
	                "local_addresses =\ndns_servers =\n",
	              err, sizeof(err));
	T_CHECK(c != NULL, "%s", err);
	if (c) {
		T_INTEQ(c->local_domains.n, 0);
		T_INTEQ(c->n_dnsbl, 0);
		T_INTEQ(c->n_local_addresses, 0);
		T_CHECK(c->dns_servers == NULL, "dns_servers");
	}
	config_unref(c);
	t_end();

	t_begin("bool forms");
	{
		static const char *const yes[] = {"yes", "on", "true", "1"};
		static const char *const no[] = {"no", "off", "false", "0"};
		char text[128];
		size_t i;

		for (i = 0; i < 4; i++) {
			snprintf(text, sizeof(text), B "helo_resolve = %s\n",
			         yes[i]);
			c = load_text(text, err, sizeof(err));
			T_CHECK(c && c->helo_resolve, "%s", yes[i]);
			config_unref(c);
			snprintf(text, sizeof(text), B "helo_resolve = %s\n",
			         no[i]);
			c = load_text(text, err, sizeof(err));
			T_CHECK(c && !c->helo_resolve, "%s", no[i]);
			config_unref(c);
		}
	}
	t_end();
}

/* test_list_files - errors inside list files keep their own PATH:LINE */
static void
test_list_files(void)
{
	char err[512], want[600];
	struct config *c;

	t_begin("bad allowlist line reported with the list's path");
	write_file("allow.bad", "10.0.0.1\n# x\n10.0.0.0/99\n");
	c = load_text(B "allowlist = allow.bad\n", err, sizeof(err));
	T_CHECK(c == NULL, "loaded");
	snprintf(want, sizeof(want), "%s:3: bad entry \"10.0.0.0/99\"",
	         tmp_path("allow.bad"));
	T_STREQ(err, want);
	config_unref(c);
	t_end();

	t_begin("missing recipients file named at the config line");
	c = load_text(B "\nrecipients = /nonexistent/recipients\n", err,
	              sizeof(err));
	T_CHECK(c == NULL, "loaded");
	snprintf(want, sizeof(want),
	         "%s:3: cannot read recipients file "
	         "\"/nonexistent/recipients\": "
	         "No such file or directory",
	         tmp_path("mailmoat.conf"));
	T_STREQ(err, want);
	config_unref(c);
	t_end();

	t_begin("missing tld_list file");
	c = load_text(B "tld_list = /nonexistent/tlds\n", err, sizeof(err));
	T_CHECK(c == NULL, "loaded");
	config_unref(c);
	t_end();

	t_begin("missing config file");
	c = config_load(tmp_path("nope.conf"), err, sizeof(err));
	T_CHECK(c == NULL, "loaded");
	snprintf(want, sizeof(want),
	         "%s: cannot open: No such file or directory",
	         tmp_path("nope.conf"));
	T_STREQ(err, want);
	t_end();

	t_begin("shipped rootfs/etc/mailmoat.conf parses");
	{
		c = config_load("rootfs/etc/mailmoat.conf", err, sizeof(err));
		T_CHECK(c != NULL, "%s", err);
		config_unref(c);
	}
	t_end();
}

/* test_names - check and action names */
static void
test_names(void)
{
	static const char *const names[CHK_COUNT] = {
	        "dnsbl",      "rdns",        "dynamic", "helo",
	        "sender_tld", "sender_mx",   "spf",     "pregreet",
	        "pipelining", "null_sender", "dsn",     "greylist",
	        "scanner"};
	int i;

	t_begin("config_check_name/id round trip");
	for (i = 0; i < CHK_COUNT; i++) {
		T_STREQ(config_check_name(i), names[i]);
		T_INTEQ(config_check_id(names[i]), i);
	}
	T_INTEQ(config_check_id("nope"), -1);
	T_INTEQ(config_check_id(NULL), -1);
	t_end();
	t_begin("config_action_name");
	T_STREQ(config_action_name(ACT_OFF), "off");
	T_STREQ(config_action_name(ACT_LOG), "log");
	T_STREQ(config_action_name(ACT_TEMPFAIL), "tempfail");
	T_STREQ(config_action_name(ACT_REJECT), "reject");
	t_end();
}

int
main(void)
{
	char cmd[128];

	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	test_full();
	test_defaults();
	test_errors();
	test_values();
	test_list_files();
	test_names();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", tmpdir);
	return t_exit();
}
