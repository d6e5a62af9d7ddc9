/*
 * config.c - /etc/mailmoat.conf: parse, validate, hold.
 *
 * Format (SPEC.md 3): `key = value` lines; '#' starts a comment at the
 * start of a line or after white space (so trailing comments work and a
 * '#' inside a word stays); lists are separated by spaces; durations are
 * seconds or carry ms/s/m/h/d; sizes carry K/M/G (binary); actions are
 * reject|tempfail|log|off.  Unknown keys, bad values, duplicate keys and a
 * missing backend are errors, reported as "PATH:LINE: what is wrong".
 *
 * One typed table (config_keys[]) drives parsing, defaults and range
 * checks: every key has a type, a default written as config text (parsed
 * by the same code, so defaults obey the same rules), the offset of its
 * field in struct config, and bounds.  Relative paths in values are taken
 * relative to the directory of the config file.  The allowlist, blocklist
 * and recipients files are loaded here (list_load); their own errors keep
 * their own PATH:LINE.
 *
 * config_load() returns a config with one reference; config_ref/unref
 * count sessions that still use an old config after SIGHUP; the last
 * unref frees it.  Nothing async; config_load() reads files and so runs
 * at startup or on reload, not per connection.
 *
 * Keys: every key of SPEC.md 3, action_<check> for the 13 checks, and
 * ours (docs/CONFIG.md): timeout_command, timeout_data, timeout_backend,
 *   backend_reuse,
 * max_backend_connections, max_recipients, helo_resolve, sender_mx,
 * sender_mx_private,
 * spf_softfail, spf_neutral, spf_permerror, dynamic_patterns, tld_list.
 * The scanner keys (scanner, scanner_timeout, scanner_fail,
 * scanner_max_size) are SPEC.md's; `scanner` is parsed by scanproto.c.
 * The DSN keys (SPEC.md 3, checks/dsn.c): backscatter_scope,
 * backscatter_threshold, dsn_msgid_domains, dsn_reference, outbound_listen,
 * outbound_clients, outbound_relay.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy.h"

#define CONFIG_LINE_MAX 4096

enum config_type {
	CT_STR,      /* free text without spaces; empty = NULL */
	CT_PATH,     /* a file name; relative to the config dir; empty = NULL */
	CT_HOSTNAME, /* a host name */
	CT_UINT,     /* decimal unsigned */
	CT_MS,       /* duration into unsigned milliseconds */
	CT_SEC,      /* duration into unsigned seconds */
	CT_SIZE,     /* K/M/G size into uint64_t bytes */
	CT_BOOL,     /* yes|no|on|off|true|false|1|0 */
	CT_ACTION,   /* reject|tempfail|log|off into enum action */
	CT_ENUM,     /* one of names[] into an int-sized enum */
	CT_LISTEN,   /* up to CONFIG_MAX_LISTEN socket addresses */
	CT_SOCKADDR, /* one socket address */
	CT_DOMAINS,  /* struct strlist of domains, lower case */
	CT_IPS,      /* local_addresses */
	CT_DNS,      /* dns_servers -> c-ares csv */
	CT_DNSBL,    /* dnsbl zones with optional return codes */
	CT_SCANNER,  /* clamd|spamd|rspamd:host:port */
	CT_BACKEND,  /* a socket address or "original" */
	CT_BRIDGE,   /* two interface names, or none */
	CT_SOCKOPT,  /* one socket address or "": ss_family 0 */
	CT_IPLIST,   /* IP addresses and CIDR nets into a struct list */
};

struct config_key {
	const char *key;
	enum config_type type;
	const char *def;   /* default as config text; NULL: none */
	size_t off;        /* offsetof(struct config, field) */
	uint64_t min, max; /* bounds for numbers, durations (ms), sizes */
	const char *const *names; /* CT_ENUM: value i is names[i] */
	bool required;
};

static const char *const transparent_names[] = {"off", "redirect", "tproxy",
                                                NULL};
static const char *const client_info_names[] = {"none", "xclient", "proxy",
                                                NULL};
static const char *const rcpt_verify_names[] = {"list", "backend", "both",
                                                NULL};
static const char *const sender_mx_names[] = {"mx", "mx-or-a", NULL};
static const char *const scanner_fail_names[] = {"tempfail", "accept", NULL};
static const char *const bs_scope_names[] = {"all", "null-sender", NULL};
static const char *const dsn_ref_names[] = {"domain", "sent", NULL};
static const char *const action_names[] = {"off", "log", "tempfail", "reject",
                                           NULL};
static const char *const check_names[CHK_COUNT] = {
        [CHK_DNSBL] = "dnsbl",
        [CHK_RDNS] = "rdns",
        [CHK_DYNAMIC] = "dynamic",
        [CHK_HELO] = "helo",
        [CHK_SENDER_TLD] = "sender_tld",
        [CHK_SENDER_MX] = "sender_mx",
        [CHK_SPF] = "spf",
        [CHK_PREGREET] = "pregreet",
        [CHK_PIPELINING] = "pipelining",
        [CHK_NULL_SENDER] = "null_sender",
        [CHK_DSN] = "dsn",
        [CHK_GREYLIST] = "greylist",
        [CHK_SCANNER] = "scanner",
};

#define OFF(f) offsetof(struct config, f)
#define SEC(n) ((uint64_t)(n)*1000u)
#define DAY SEC(86400)
#define ACTION_KEY(name, id)                                                   \
	{                                                                      \
		.key = "action_" name, .type = CT_ACTION, .def = "reject",     \
		.off = OFF(actions[id])                                        \
	}

/* The one table: SPEC.md 3 order, then the action_* keys, then ours. */
/* clang-format off */
static const struct config_key config_keys[] = {
	{.key = "listen", .type = CT_LISTEN, .def = "0.0.0.0:25",
	 .off = OFF(listen)},
	{.key = "backend", .type = CT_BACKEND, .off = OFF(backend),
	 .required = true},
	{.key = "transparent", .type = CT_ENUM, .def = "off",
	 .off = OFF(transparent), .names = transparent_names},
	{.key = "hostname", .type = CT_HOSTNAME, .off = OFF(hostname)},
	{.key = "local_domains", .type = CT_DOMAINS, .def = "",
	 .off = OFF(local_domains)},
	{.key = "local_addresses", .type = CT_IPS, .def = "",
	 .off = OFF(local_addresses)},
	{.key = "recipients", .type = CT_PATH, .off = OFF(recipients_path)},
	{.key = "recipient_verify", .type = CT_ENUM, .def = "list",
	 .off = OFF(recipient_verify), .names = rcpt_verify_names},
	{.key = "dns_servers", .type = CT_DNS, .off = OFF(dns_servers)},
	{.key = "dns_timeout", .type = CT_MS, .def = "5s",
	 .off = OFF(dns_timeout_ms), .min = 100, .max = SEC(300)},
	{.key = "dnsbl", .type = CT_DNSBL, .def = "", .off = OFF(dnsbl)},
	{.key = "allowlist", .type = CT_PATH, .off = OFF(allowlist_path)},
	{.key = "blocklist", .type = CT_PATH, .off = OFF(blocklist_path)},
	{.key = "greet_pause", .type = CT_MS, .def = "3s",
	 .off = OFF(greet_pause_ms), .min = 0, .max = SEC(300)},
	{.key = "pass_cache_ttl", .type = CT_SEC, .def = "1d",
	 .off = OFF(pass_cache_ttl_s), .min = 0, .max = 365 * DAY},
	{.key = "greylist_delay", .type = CT_SEC, .def = "5m",
	 .off = OFF(greylist_delay_s), .min = 0, .max = 30 * DAY},
	{.key = "greylist_window", .type = CT_SEC, .def = "2d",
	 .off = OFF(greylist_window_s), .min = SEC(1), .max = 365 * DAY},
	{.key = "greylist_lifetime", .type = CT_SEC, .def = "10d",
	 .off = OFF(greylist_lifetime_s), .min = SEC(1), .max = 3650 * DAY},
	{.key = "greylist_auto_allow", .type = CT_UINT, .def = "5",
	 .off = OFF(greylist_auto_allow), .min = 0, .max = 1000000},
	{.key = "backscatter_block", .type = CT_SEC, .def = "4d",
	 .off = OFF(backscatter_block_s), .min = 0, .max = 365 * DAY},
	{.key = "backscatter_scope", .type = CT_ENUM, .def = "all",
	 .off = OFF(backscatter_scope), .names = bs_scope_names},
	{.key = "backscatter_threshold", .type = CT_UINT, .def = "1",
	 .off = OFF(backscatter_threshold), .min = 1, .max = 1000000},
	{.key = "dsn_msgid_domains", .type = CT_DOMAINS, .def = "",
	 .off = OFF(dsn_msgid_domains)},
	{.key = "dsn_reference", .type = CT_ENUM, .def = "domain",
	 .off = OFF(dsn_reference), .names = dsn_ref_names},
	{.key = "outbound_listen", .type = CT_SOCKOPT, .def = "",
	 .off = OFF(outbound_listen)},
	{.key = "outbound_clients", .type = CT_IPLIST, .def = "192.168.1.10",
	 .off = OFF(outbound_clients)},
	{.key = "outbound_relay", .type = CT_SOCKOPT, .def = "",
	 .off = OFF(outbound_relay)},
	{.key = "state_dir", .type = CT_PATH, .def = "/data/mailmoat",
	 .off = OFF(state_dir)},
	{.key = "state_flush", .type = CT_SEC, .def = "5m",
	 .off = OFF(state_flush_s), .min = 0, .max = 7 * DAY},
	{.key = "control_socket", .type = CT_PATH, .def = "/run/mailmoat.sock",
	 .off = OFF(control_socket)},
	{.key = "max_connections", .type = CT_UINT, .def = "1000",
	 .off = OFF(max_connections), .min = 1, .max = 1000000},
	{.key = "max_per_ip", .type = CT_UINT, .def = "10",
	 .off = OFF(max_per_ip), .min = 1, .max = 1000000},
	{.key = "message_size_limit", .type = CT_SIZE, .def = "25M",
	 .off = OFF(message_size_limit), .min = 0,
	 .max = (uint64_t)1 << 40},
	{.key = "tls_cert", .type = CT_PATH, .off = OFF(tls_cert)},
	{.key = "tls_key", .type = CT_PATH, .off = OFF(tls_key)},
	{.key = "scanner", .type = CT_SCANNER, .off = OFF(scanner)},
	{.key = "scanner_timeout", .type = CT_MS, .def = "30s",
	 .off = OFF(scanner_timeout_ms), .min = 100, .max = SEC(3600)},
	{.key = "scanner_fail", .type = CT_ENUM, .def = "tempfail",
	 .off = OFF(scanner_fail), .names = scanner_fail_names},
	{.key = "scanner_max_size", .type = CT_SIZE, .def = "2M",
	 .off = OFF(scanner_max_size), .min = 0,
	 .max = (uint64_t)1 << 40},
	ACTION_KEY("dnsbl", CHK_DNSBL),
	ACTION_KEY("rdns", CHK_RDNS),
	ACTION_KEY("dynamic", CHK_DYNAMIC),
	ACTION_KEY("helo", CHK_HELO),
	ACTION_KEY("sender_tld", CHK_SENDER_TLD),
	ACTION_KEY("sender_mx", CHK_SENDER_MX),
	ACTION_KEY("spf", CHK_SPF),
	ACTION_KEY("pregreet", CHK_PREGREET),
	ACTION_KEY("pipelining", CHK_PIPELINING),
	ACTION_KEY("null_sender", CHK_NULL_SENDER),
	ACTION_KEY("dsn", CHK_DSN),
	ACTION_KEY("greylist", CHK_GREYLIST),
	ACTION_KEY("scanner", CHK_SCANNER),
	/* ours */
	{.key = "max_backend_connections", .type = CT_UINT, .def = "20",
	 .off = OFF(max_backend_connections), .min = 1, .max = 100000},
	{.key = "max_recipients", .type = CT_UINT, .def = "100",
	 .off = OFF(max_recipients), .min = 1, .max = SESS_MAX_RCPT},
	{.key = "timeout_command", .type = CT_MS, .def = "5m",
	 .off = OFF(timeout_command_ms), .min = 100, .max = SEC(3600)},
	{.key = "timeout_data", .type = CT_MS, .def = "3m",
	 .off = OFF(timeout_data_ms), .min = 100, .max = SEC(3600)},
	{.key = "timeout_backend", .type = CT_MS, .def = "2m",
	 .off = OFF(timeout_backend_ms), .min = 100, .max = SEC(3600)},
	{.key = "backend_reuse", .type = CT_MS, .def = "2s",
	 .off = OFF(backend_reuse_ms), .min = 0, .max = SEC(60)},
	{.key = "helo_resolve", .type = CT_BOOL, .def = "no",
	 .off = OFF(helo_resolve)},
	{.key = "sender_mx", .type = CT_ENUM, .def = "mx",
	 .off = OFF(sender_mx), .names = sender_mx_names},
	{.key = "sender_mx_private", .type = CT_BOOL, .def = "no",
	 .off = OFF(sender_mx_private)},
	{.key = "spf_softfail", .type = CT_ACTION, .def = "log",
	 .off = OFF(spf_softfail)},
	{.key = "spf_neutral", .type = CT_ACTION, .def = "off",
	 .off = OFF(spf_neutral)},
	{.key = "spf_permerror", .type = CT_ACTION, .def = "log",
	 .off = OFF(spf_permerror)},
	{.key = "dynamic_patterns", .type = CT_PATH,
	 .off = OFF(dynamic_patterns)},
	{.key = "tld_list", .type = CT_PATH, .off = OFF(tld_list)},
	{.key = "backend_client_info", .type = CT_ENUM, .def = "none",
	 .off = OFF(backend_client_info), .names = client_info_names},
	{.key = "bridge", .type = CT_BRIDGE, .def = "none", .off = OFF(bridge)},
	{.key = "metrics_token", .type = CT_STR, .off = OFF(metrics_token)},
};

/* clang-format on */

#define N_KEYS ARRAY_LEN(config_keys)

/* What a parse step needs to report and resolve. */
struct config_ctx {
	const char *path; /* the config file */
	const char *dir;  /* its directory, for relative paths */
	unsigned line;
	char *err;
	size_t errlen;
};

/* config_err - "PATH:LINE: what" into ctx->err; returns -EINVAL */
static int __attribute__((format(printf, 2, 3)))
config_err(struct config_ctx *ctx, const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(ctx->err, ctx->errlen, "%s:%u: %s", ctx->path, ctx->line,
	         what);
	return -EINVAL;
}

/* config_parse_uint - digits only into *v; 0 or -EINVAL (also overflow) */
static int
config_parse_uint(const char *s, uint64_t *v, const char **end)
{
	uint64_t n = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (n > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		n = n * 10 + (uint64_t)(*s - '0');
	}
	*v = n;
	*end = s;
	return 0;
}

/* A unit suffix and what it multiplies by. */
struct config_unit {
	const char *suffix;
	uint64_t mult;
};

static const struct config_unit config_time_units[] = {
        {"", 1000},         {"s", 1000},         {"ms", 1}, {"m", 60 * 1000},
        {"h", 3600 * 1000}, {"d", 86400 * 1000}, {NULL, 0},
};

static const struct config_unit config_size_units[] = {
        {"", 1},
        {"K", 1024},
        {"k", 1024},
        {"M", 1024 * 1024},
        {"m", 1024 * 1024},
        {"G", 1024 * 1024 * 1024},
        {"g", 1024 * 1024 * 1024},
        {NULL, 0},
};

/* config_parse_scaled - digits and one unit of units; 0 or -EINVAL */
static int
config_parse_scaled(const char *text, const struct config_unit *units,
                    uint64_t *out)
{
	const char *end;
	uint64_t n;

	if (text == NULL || config_parse_uint(text, &n, &end) != 0)
		return -EINVAL;
	for (; units->suffix != NULL; units++) {
		if (strcmp(end, units->suffix) != 0)
			continue;
		if (n > UINT64_MAX / units->mult)
			return -EINVAL;
		*out = n * units->mult;
		return 0;
	}
	return -EINVAL;
}

/* config_parse_duration_ms - "30", "30s", "500ms", "5m", "2h", "1d" */
int
config_parse_duration_ms(const char *text, uint64_t *ms)
{
	return config_parse_scaled(text, config_time_units, ms);
}

/* config_parse_size - "1048576", "512K", "25M", "1G" (binary units) */
int
config_parse_size(const char *text, uint64_t *bytes)
{
	return config_parse_scaled(text, config_size_units, bytes);
}

/* config_check_id - "dnsbl" -> CHK_DNSBL; -1 if unknown */
int
config_check_id(const char *name)
{
	int i;

	if (name == NULL)
		return -1;
	for (i = 0; i < CHK_COUNT; i++)
		if (strcmp(check_names[i], name) == 0)
			return i;
	return -1;
}

/* config_check_name - CHK_DNSBL -> "dnsbl"; "?" when out of range */
const char *
config_check_name(enum chk_id id)
{
	if ((int)id < 0 || id >= CHK_COUNT)
		return "?";
	return check_names[id];
}

/* config_action_name - ACT_REJECT -> "reject" */
const char *
config_action_name(enum action a)
{
	if ((int)a < 0 || a > ACT_REJECT)
		return "?";
	return action_names[a];
}

/* config_words - split a value on spaces/tabs into at most max words */
static int
config_words(char *value, char **words, int max)
{
	int n = 0;
	char *save = NULL, *w;

	for (w = strtok_r(value, " \t", &save); w != NULL;
	     w = strtok_r(NULL, " \t", &save)) {
		if (n == max)
			return -E2BIG;
		words[n++] = w;
	}
	return n;
}

/* config_set_str - replace the string at field (freeing the old one) */
static void
config_set_str(char **field, const char *value)
{
	free(*field);
	*field = value ? xstrdup(value) : NULL;
}

/* config_resolve - value relative to the config's directory when relative */
static char *
config_resolve(const struct config_ctx *ctx, const char *value)
{
	size_t n;
	char *p;

	if (value[0] == '/' || ctx->dir == NULL)
		return xstrdup(value);
	n = strlen(ctx->dir) + strlen(value) + 2;
	p = xmalloc(n);
	snprintf(p, n, "%s/%s", ctx->dir, value);
	return p;
}

/* config_parse_dnsbl_one - "zone" or "zone=a,b..c" into z; 0 or -EINVAL */
static int
config_parse_dnsbl_one(const char *text, struct dnsbl_zone *z)
{
	char buf[CONFIG_LINE_MAX];
	char *eq, *save = NULL, *item;

	if (strlen(text) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, text);
	memset(z, 0, sizeof(*z));
	eq = strchr(buf, '=');
	if (eq != NULL)
		*eq = '\0';
	if (!addr_is_domain(buf))
		return -EINVAL;
	if (eq != NULL) {
		if (eq[1] == '\0')
			return -EINVAL;
		for (const char *c = eq + 1; *c; c++)
			if (c[0] == ',' && (c[1] == ',' || c[1] == '\0'))
				return -EINVAL;
		if (eq[1] == ',')
			return -EINVAL;
		for (item = strtok_r(eq + 1, ",", &save); item != NULL;
		     item = strtok_r(NULL, ",", &save)) {
			char *dots = strstr(item, "..");
			struct in_addr lo, hi;

			if (z->n_ranges == DNSBL_MAX_RANGES)
				return -EINVAL;
			if (dots != NULL) {
				*dots = '\0';
				if (inet_pton(AF_INET, item, &lo) != 1 ||
				    inet_pton(AF_INET, dots + 2, &hi) != 1)
					return -EINVAL;
			} else {
				if (inet_pton(AF_INET, item, &lo) != 1)
					return -EINVAL;
				hi = lo;
			}
			z->lo[z->n_ranges] = ntohl(lo.s_addr);
			z->hi[z->n_ranges] = ntohl(hi.s_addr);
			if (z->lo[z->n_ranges] > z->hi[z->n_ranges])
				return -EINVAL;
			z->n_ranges++;
		}
	}
	util_lowercase(buf);
	z->zone = xstrdup(buf);
	return 0;
}

/* config_free_dnsbl - free every zone of c */
static void
config_free_dnsbl(struct config *c)
{
	int i;

	for (i = 0; i < c->n_dnsbl; i++)
		free(c->dnsbl[i].zone);
	free(c->dnsbl);
	c->dnsbl = NULL;
	c->n_dnsbl = 0;
}

/* config_free_strlist - free the words and the array */
static void
config_free_strlist(struct strlist *sl)
{
	int i;

	for (i = 0; i < sl->n; i++)
		free(sl->v[i]);
	free(sl->v);
	sl->v = NULL;
	sl->n = 0;
}

/* config_format_sockaddr - "a.b.c.d:p" or "[v6]:p" for the c-ares csv */
static void
config_format_sockaddr(const struct sockaddr_storage *ss, char *out,
                       size_t outlen)
{
	char a[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
		snprintf(out, outlen, "%s:%u", a, ntohs(s4->sin_port));
	} else {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
		snprintf(out, outlen, "[%s]:%u", a, ntohs(s6->sin6_port));
	}
}

/* config_set - parse value (trimmed, may be "") for key k into c */
static int
config_set(struct config *c, const struct config_key *k, char *value,
           struct config_ctx *ctx)
{
	char *field = (char *)c + k->off;
	char shown[128];
	char *words[64];
	uint64_t v = 0;
	int n, i;

	util_shown(value, shown, sizeof(shown));
	switch (k->type) {
	case CT_STR:
	case CT_PATH:
	case CT_HOSTNAME:
		if (strpbrk(value, " \t") != NULL)
			return config_err(ctx,
			                  "bad value \"%s\" for %s: "
			                  "one word expected",
			                  shown, k->key);
		if (k->type == CT_HOSTNAME) {
			if (!addr_is_domain(value))
				return config_err(ctx,
				                  "bad host name \"%s\" "
				                  "for %s",
				                  shown, k->key);
			config_set_str((char **)field, value);
			util_lowercase(*(char **)field);
		} else if (*value == '\0') {
			config_set_str((char **)field, NULL);
		} else if (k->type == CT_PATH) {
			free(*(char **)field);
			*(char **)field = config_resolve(ctx, value);
		} else {
			config_set_str((char **)field, value);
		}
		return 0;

	case CT_UINT: {
		const char *end;

		if (config_parse_uint(value, &v, &end) != 0 || *end != '\0')
			return config_err(ctx,
			                  "bad number \"%s\" for "
			                  "%s",
			                  shown, k->key);
	}
		if (v < k->min || v > k->max)
			return config_err(ctx,
			                  "%s = %s out of range "
			                  "(%llu..%llu)",
			                  k->key, shown,
			                  (unsigned long long)k->min,
			                  (unsigned long long)k->max);
		*(unsigned *)field = (unsigned)v;
		return 0;

	case CT_MS:
	case CT_SEC:
		if (config_parse_duration_ms(value, &v) != 0)
			return config_err(ctx, "bad duration \"%s\" for %s",
			                  shown, k->key);
		if (v < k->min || v > k->max)
			return config_err(ctx,
			                  "%s = %s out of range "
			                  "(%llums..%llums)",
			                  k->key, shown,
			                  (unsigned long long)k->min,
			                  (unsigned long long)k->max);
		if (k->type == CT_MS)
			*(unsigned *)field = (unsigned)v;
		else
			*(unsigned *)field = (unsigned)(v / 1000);
		return 0;

	case CT_SIZE:
		if (config_parse_size(value, &v) != 0)
			return config_err(ctx, "bad size \"%s\" for %s", shown,
			                  k->key);
		if (v < k->min || v > k->max)
			return config_err(ctx, "%s = %s out of range", k->key,
			                  shown);
		*(uint64_t *)field = v;
		return 0;

	case CT_BOOL:
		if (!strcmp(value, "yes") || !strcmp(value, "on") ||
		    !strcmp(value, "true") || !strcmp(value, "1"))
			*(bool *)field = true;
		else if (!strcmp(value, "no") || !strcmp(value, "off") ||
		         !strcmp(value, "false") || !strcmp(value, "0"))
			*(bool *)field = false;
		else
			return config_err(ctx,
			                  "bad value \"%s\" for %s "
			                  "(yes|no)",
			                  shown, k->key);
		return 0;

	case CT_ACTION:
		for (i = 0; action_names[i] != NULL; i++)
			if (strcmp(value, action_names[i]) == 0) {
				*(enum action *)field = (enum action)i;
				return 0;
			}
		return config_err(ctx,
		                  "bad action \"%s\" for %s "
		                  "(reject|tempfail|log|off)",
		                  shown, k->key);

	case CT_ENUM:
		for (i = 0; k->names[i] != NULL; i++)
			if (strcmp(value, k->names[i]) == 0) {
				*(int *)field = i;
				return 0;
			}
		{
			char want[128] = "";

			for (i = 0; k->names[i] != NULL; i++) {
				if (i > 0)
					strcat(want, "|");
				strcat(want, k->names[i]);
			}
			return config_err(ctx, "bad value \"%s\" for %s (%s)",
			                  shown, k->key, want);
		}

	case CT_LISTEN:
		n = config_words(value, words, CONFIG_MAX_LISTEN);
		if (n == -E2BIG)
			return config_err(ctx,
			                  "too many addresses for %s "
			                  "(at most %d)",
			                  k->key, CONFIG_MAX_LISTEN);
		if (n == 0)
			return config_err(ctx, "%s needs at least one address",
			                  k->key);
		for (i = 0; i < n; i++)
			if (sockaddr_parse(&c->listen[i], words[i], 25) != 0)
				return config_err(ctx,
				                  "bad address \"%s\" for "
				                  "%s",
				                  util_shown(words[i], shown,
				                             sizeof(shown)),
				                  k->key);
		for (i = 0; i < n; i++)
			for (int j = 0; j < i; j++)
				if (memcmp(&c->listen[i], &c->listen[j],
				           sizeof(c->listen[i])) == 0)
					return config_err(
					        ctx,
					        "listen address \"%s\" given "
					        "twice",
					        util_shown(words[i], shown,
					                   sizeof(shown)));
		c->n_listen = n;
		return 0;

	case CT_SOCKADDR:
		if (*value == '\0' || strpbrk(value, " \t") != NULL ||
		    sockaddr_parse((struct sockaddr_storage *)field, value,
		                   25) != 0)
			return config_err(ctx, "bad address \"%s\" for %s",
			                  shown, k->key);
		return 0;

	case CT_SOCKOPT:
		memset(field, 0, sizeof(struct sockaddr_storage));
		if (*value == '\0')
			return 0;
		if (strpbrk(value, " \t") != NULL ||
		    sockaddr_parse((struct sockaddr_storage *)field, value,
		                   25) != 0)
			return config_err(ctx, "bad address \"%s\" for %s",
			                  shown, k->key);
		return 0;

	case CT_IPLIST: {
		struct list **lp = (struct list **)field;
		struct ipaddr ip;
		char *slash;

		list_free(*lp);
		*lp = list_new();
		n = config_words(value, words, ARRAY_LEN(words));
		if (n < 0)
			return config_err(ctx,
			                  "too many addresses for %s (at "
			                  "most %zu)",
			                  k->key, ARRAY_LEN(words));
		for (i = 0; i < n; i++) {
			slash = strchr(words[i], '/');
			if (slash != NULL)
				*slash = '\0';
			if (ipaddr_parse(&ip, words[i]) != 0)
				return config_err(ctx,
				                  "bad IP address \"%s\" "
				                  "for %s",
				                  util_shown(words[i], shown,
				                             sizeof(shown)),
				                  k->key);
			if (slash != NULL)
				*slash = '/';
			if (list_add(*lp, words[i]) != 0)
				return config_err(ctx,
				                  "bad IP address or net "
				                  "\"%s\" for %s",
				                  util_shown(words[i], shown,
				                             sizeof(shown)),
				                  k->key);
		}
		return 0;
	}

	case CT_DOMAINS: {
		struct strlist *sl = (struct strlist *)field;

		config_free_strlist(sl);
		n = config_words(value, words, ARRAY_LEN(words));
		if (n < 0)
			return config_err(ctx,
			                  "too many domains for "
			                  "%s (at most %zu)",
			                  k->key, ARRAY_LEN(words));
		for (i = 0; i < n; i++)
			if (!addr_is_domain(words[i]))
				return config_err(ctx,
				                  "bad domain "
				                  "\"%s\" for %s",
				                  util_shown(words[i], shown,
				                             sizeof(shown)),
				                  k->key);
		sl->v = xcalloc((size_t)n + 1, sizeof(char *));
		for (i = 0; i < n; i++) {
			sl->v[i] = xstrdup(words[i]);
			util_lowercase(sl->v[i]);
		}
		sl->n = n;
		return 0;
	}

	case CT_IPS:
		n = config_words(value, words, CONFIG_MAX_LOCAL_ADDR);
		if (n < 0)
			return config_err(ctx,
			                  "too many addresses for %s (at "
			                  "most %d)",
			                  k->key, CONFIG_MAX_LOCAL_ADDR);
		for (i = 0; i < n; i++)
			if (ipaddr_parse(&c->local_addresses[i], words[i]) != 0)
				return config_err(ctx,
				                  "bad IP address \"%s\" "
				                  "for %s",
				                  util_shown(words[i], shown,
				                             sizeof(shown)),
				                  k->key);
		c->n_local_addresses = n;
		return 0;

	case CT_DNS: {
		struct buf b = {0};
		struct sockaddr_storage ss;
		char one[INET6_ADDRSTRLEN + 10];

		n = config_words(value, words, 8);
		if (n < 0)
			return config_err(ctx,
			                  "too many servers for "
			                  "%s (at most 8)",
			                  k->key);
		for (i = 0; i < n; i++) {
			if (sockaddr_parse(&ss, words[i], 53) != 0) {
				buf_free(&b);
				return config_err(ctx,
				                  "bad address "
				                  "\"%s\" for %s",
				                  util_shown(words[i], shown,
				                             sizeof(shown)),
				                  k->key);
			}
			config_format_sockaddr(&ss, one, sizeof(one));
			if (i > 0)
				buf_append(&b, ",", 1);
			buf_append(&b, one, strlen(one));
		}
		free(c->dns_servers);
		c->dns_servers = NULL;
		if (n > 0) {
			buf_append(&b, "", 1);
			c->dns_servers = b.data; /* takes ownership */
		}
		return 0;
	}

	case CT_DNSBL:
		config_free_dnsbl(c);
		n = config_words(value, words, ARRAY_LEN(words));
		if (n < 0)
			return config_err(ctx,
			                  "too many zones for %s (at most "
			                  "%zu)",
			                  k->key, ARRAY_LEN(words));
		c->dnsbl = xcalloc((size_t)n + 1, sizeof(struct dnsbl_zone));
		for (i = 0; i < n; i++) {
			if (config_parse_dnsbl_one(words[i], &c->dnsbl[i]) != 0)
				return config_err(
				        ctx,
				        "bad dnsbl entry \"%s\" "
				        "(want ZONE or ZONE=127.0.0.2,"
				        "127.0.0.4..127.0.0.7)",
				        util_shown(words[i], shown,
				                   sizeof(shown)));
			c->n_dnsbl = i + 1;
		}
		return 0;

	case CT_BACKEND:
		c->backend_original = strcmp(value, "original") == 0;
		if (c->backend_original) {
			memset(field, 0, sizeof(c->backend));
			return 0;
		}
		if (*value == '\0' || strpbrk(value, " \t") != NULL ||
		    sockaddr_parse((struct sockaddr_storage *)field, value,
		                   25) != 0)
			return config_err(ctx, "bad address \"%s\" for %s",
			                  shown, k->key);
		return 0;

	case CT_BRIDGE:
		c->n_bridge = 0;
		if (*value == '\0' || strcmp(value, "none") == 0 ||
		    strcmp(value, "(none)") == 0)
			return 0;
		n = config_words(value, words, 3);
		if (n != 2 || strcmp(words[0], words[1]) == 0)
			return config_err(
			        ctx,
			        "bad value \"%s\" for %s (two "
			        "interfaces: ROUTER-SIDE SERVER-SIDE, "
			        "or none)",
			        shown, k->key);
		for (i = 0; i < 2; i++) {
			size_t len = strlen(words[i]);

			if (len == 0 || len >= sizeof(c->bridge[0]) ||
			    strspn(words[i], "abcdefghijklmnopqrstuvwxyz"
			                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
			                     "0123456789._-") != len)
				return config_err(ctx,
				                  "bad interface name \"%s\" "
				                  "for %s",
				                  util_shown(words[i], shown,
				                             sizeof(shown)),
				                  k->key);
			memcpy(c->bridge[i], words[i], len + 1);
		}
		c->n_bridge = 2;
		return 0;

	case CT_SCANNER:
		n = config_words(value, words, CONFIG_MAX_SCANNERS);
		if (n < 0)
			return config_err(ctx, "too many scanners (at most %d)",
			                  CONFIG_MAX_SCANNERS);
		for (i = 0; i < n; i++)
			if (scan_server_parse(words[i], &c->scanners[i]) != 0)
				return config_err(ctx,
				                  "bad scanner \"%s\" (want "
				                  "clamd:HOST:PORT, spamd:HOST:"
				                  "PORT or rspamd:HOST:PORT)",
				                  util_shown(words[i], shown,
				                             sizeof(shown)));
		c->n_scanners = n;
		config_set_str((char **)field, NULL);
		if (n > 0) {
			/* config_words cut value into words: join them. */
			struct buf b = {0};

			for (i = 0; i < n; i++) {
				if (i > 0)
					buf_append(&b, " ", 1);
				buf_append(&b, words[i], strlen(words[i]));
			}
			buf_append(&b, "", 1);
			*(char **)field = b.data; /* takes ownership */
		}
		return 0;
	}
	return config_err(ctx, "internal error: key %s", k->key);
}

/* config_key_info - name and default (NULL: none) of key i; false past
 * the end.  For `mailmoatctl config keys` (the web UI's settings). */
bool
config_key_info(size_t i, const char **name, const char **def)
{
	if (i >= N_KEYS)
		return false;
	*name = config_keys[i].key;
	*def = config_keys[i].def;
	return true;
}

/* config_find_key - the table entry for key, or NULL */
static const struct config_key *
config_find_key(const char *key)
{
	size_t i;

	for (i = 0; i < N_KEYS; i++)
		if (strcmp(config_keys[i].key, key) == 0)
			return &config_keys[i];
	return NULL;
}

/* config_defaults - every default of the table, through config_set */
static void
config_defaults(struct config *c)
{
	struct config_ctx ctx = {.path = "(defaults)"};
	char err[256], value[128];
	char host[256];
	size_t i;

	ctx.err = err;
	ctx.errlen = sizeof(err);
	for (i = 0; i < N_KEYS; i++) {
		if (config_keys[i].def == NULL)
			continue;
		snprintf(value, sizeof(value), "%s", config_keys[i].def);
		if (config_set(c, &config_keys[i], value, &ctx) != 0)
			log_panic("config default: %s", err);
	}
	memset(host, 0, sizeof(host));
	if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
		snprintf(host, sizeof(host), "localhost");
	c->hostname = xstrdup(host);
	util_lowercase(c->hostname);
}

/* config_free - free everything c owns, then c */
static void
config_free(struct config *c)
{
	size_t i;

	for (i = 0; i < N_KEYS; i++) {
		const struct config_key *k = &config_keys[i];

		if (k->type == CT_STR || k->type == CT_PATH ||
		    k->type == CT_HOSTNAME || k->type == CT_DNS ||
		    k->type == CT_SCANNER) {
			char **f = (char **)((char *)c + k->off);

			free(*f);
			*f = NULL;
		}
	}
	config_free_strlist(&c->local_domains);
	config_free_strlist(&c->dsn_msgid_domains);
	list_free(c->outbound_clients);
	config_free_dnsbl(c);
	list_free(c->allow);
	list_free(c->block);
	list_free(c->recipients);
	free(c->path);
	free(c);
}

/* config_ref - one more user of c */
struct config *
config_ref(struct config *c)
{
	c->refs++;
	return c;
}

/* config_unref - one user fewer; the last one frees c */
void
config_unref(struct config *c)
{
	if (c == NULL)
		return;
	if (c->refs <= 0)
		log_panic("config_unref: refs %d", c->refs);
	if (--c->refs == 0)
		config_free(c);
}

/* config_load_list - load one list file named by key (line in seen) */
static int
config_load_list(struct config_ctx *ctx, const char *key, const char *path,
                 unsigned line, struct list **out)
{
	if (path == NULL)
		return 0;
	ctx->line = line;
	if (access(path, R_OK) != 0)
		return config_err(ctx, "cannot read %s file \"%s\": %s", key,
		                  path, strerror(errno));
	*out = list_load(path, ctx->err, ctx->errlen);
	return *out ? 0 : -EINVAL;
}

/* config_check_file - a file named by key must be readable */
static int
config_check_file(struct config_ctx *ctx, const char *key, const char *path,
                  unsigned line)
{
	if (path == NULL)
		return 0;
	ctx->line = line;
	if (access(path, R_OK) != 0)
		return config_err(ctx, "cannot read %s file \"%s\": %s", key,
		                  path, strerror(errno));
	return 0;
}

/* config_strip - cut the comment and the white space around a value */
static char *
config_strip(char *s)
{
	char *end;

	for (end = s; *end; end++)
		if (*end == '#' &&
		    (end == s || end[-1] == ' ' || end[-1] == '\t'))
			break;
	*end = '\0';
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' ||
	                   end[-1] == '\r' || end[-1] == '\n'))
		*--end = '\0';
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* config_line_of - the line where key was set, 0 if never */
static unsigned
config_line_of(const unsigned *seen, const char *key)
{
	const struct config_key *k = config_find_key(key);

	return k ? seen[k - config_keys] : 0;
}

/*
 * config_load - parse and validate path into a new config (refs 1).
 * NULL and "PATH:LINE: what is wrong" in err on any error.
 */
struct config *
config_load(const char *path, char *err, size_t errlen)
{
	struct config_ctx ctx = {.path = path, .err = err, .errlen = errlen};
	unsigned seen[N_KEYS];
	struct config *c = NULL;
	char *line = NULL, *dir = NULL, *slash;
	size_t cap = 0, i;
	ssize_t n;
	FILE *f;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	f = fopen(path, "r");
	if (f == NULL) {
		snprintf(err, errlen, "%s: cannot open: %s", path,
		         strerror(errno));
		return NULL;
	}
	dir = xstrdup(path);
	slash = strrchr(dir, '/');
	if (slash == NULL) {
		free(dir);
		dir = NULL; /* relative to the working directory */
	} else if (slash == dir) {
		slash[1] = '\0';
	} else {
		*slash = '\0';
	}
	ctx.dir = dir;
	memset(seen, 0, sizeof(seen));
	c = xcalloc(1, sizeof(*c));
	c->refs = 1;
	c->path = xstrdup(path);
	config_defaults(c);

	while ((n = getline(&line, &cap, f)) >= 0) {
		const struct config_key *k;
		char *s, *eq, *key, *value, *kend;
		char shown[128];

		ctx.line++;
		if ((size_t)n != strlen(line)) {
			config_err(&ctx, "NUL byte in line");
			goto fail;
		}
		if (n > CONFIG_LINE_MAX) {
			config_err(&ctx, "line too long (over %d bytes)",
			           CONFIG_LINE_MAX);
			goto fail;
		}
		s = line;
		if (ctx.line == 1 && strncmp(s, "\xef\xbb\xbf", 3) == 0)
			s += 3; /* a UTF-8 byte order mark from an editor */
		s = config_strip(s);
		if (*s == '\0')
			continue;
		eq = strchr(s, '=');
		if (eq == NULL) {
			config_err(&ctx, "expected \"key = value\", got \"%s\"",
			           util_shown(s, shown, sizeof(shown)));
			goto fail;
		}
		key = s;
		kend = eq;
		while (kend > key && (kend[-1] == ' ' || kend[-1] == '\t'))
			kend--;
		*kend = '\0';
		value = eq + 1;
		while (*value == ' ' || *value == '\t')
			value++;
		if (*key == '\0') {
			config_err(&ctx, "missing key before '='");
			goto fail;
		}
		k = config_find_key(key);
		if (k == NULL) {
			config_err(&ctx, "unknown key \"%s\"",
			           util_shown(key, shown, sizeof(shown)));
			goto fail;
		}
		if (seen[k - config_keys] != 0) {
			config_err(&ctx,
			           "duplicate key \"%s\" (first set on "
			           "line %u)",
			           k->key, seen[k - config_keys]);
			goto fail;
		}
		seen[k - config_keys] = ctx.line;
		if (config_set(c, k, value, &ctx) != 0)
			goto fail;
	}
	if (ferror(f)) {
		config_err(&ctx, "read error: %s", strerror(errno));
		goto fail;
	}

	/* Whole-file rules, reported at the end of the file. */
	ctx.line = ctx.line ? ctx.line : 1;
	for (i = 0; i < N_KEYS; i++)
		if (config_keys[i].required && seen[i] == 0) {
			config_err(&ctx, "missing required key \"%s\"",
			           config_keys[i].key);
			goto fail;
		}
	if (c->backend_original && c->transparent == TRANSPARENT_OFF) {
		ctx.line = config_line_of(seen, "backend");
		config_err(&ctx, "backend = original needs transparent = "
		                 "redirect or tproxy");
		goto fail;
	}
	if ((c->tls_cert == NULL) != (c->tls_key == NULL)) {
		ctx.line = config_line_of(seen,
		                          c->tls_cert ? "tls_cert" : "tls_key");
		config_err(&ctx, "tls_cert and tls_key must be set together");
		goto fail;
	}
	if (config_load_list(&ctx, "allowlist", c->allowlist_path,
	                     config_line_of(seen, "allowlist"), &c->allow) ||
	    config_load_list(&ctx, "blocklist", c->blocklist_path,
	                     config_line_of(seen, "blocklist"), &c->block) ||
	    config_load_list(&ctx, "recipients", c->recipients_path,
	                     config_line_of(seen, "recipients"),
	                     &c->recipients) ||
	    config_check_file(&ctx, "dynamic_patterns", c->dynamic_patterns,
	                      config_line_of(seen, "dynamic_patterns")) ||
	    config_check_file(&ctx, "tld_list", c->tld_list,
	                      config_line_of(seen, "tld_list")))
		goto fail;

	free(line);
	free(dir);
	fclose(f);
	return c;

fail:
	free(line);
	free(dir);
	fclose(f);
	config_free(c);
	return NULL;
}
