/*
 * metrics.c - /cgi-bin/metrics: the daemon's counters in the Prometheus
 * text format (version 0.0.4), every name prefixed mailmoat_.
 *
 * Access: a logged-in session, or the config's metrics_token (read-only:
 * this page changes nothing) as "Authorization: Bearer TOKEN" or
 * ?token=TOKEN.  Names come from `stats`: top-level numbers as
 * mailmoat_KEY (the totals are counters, the rest gauges), reasons as
 * mailmoat_reason_total{reason="..."}, and every section of other modules
 * as mailmoat_SECTION_FIELD{name="..."} gauges (booleans 1/0), so new
 * figures appear without changes here.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgi.h"

struct sample {
	char name[128];
	char labels[300];
	char value[48];
	bool counter;
};

static struct sample *samples;
static size_t nsamples, capsamples;

static const char *const counters[] = {"connections_total", "accepted",
                                       "tempfailed", "rejected", "logged"};

/* Better words than "mailmoat X (from mailmoatctl stats)" for some. */
static const char *const helps[][2] = {
        {"mailmoat_backend_reachable",
         "1 if the internal mail server answered the last connection or "
         "probe, 0 if that failed (absent: not known yet)."},
        {"mailmoat_backend_failures",
         "Connections to the internal mail server that failed."},
        {"mailmoat_backend_last_ok",
         "Unix time the internal mail server last answered (0: never)."},
};

/* help - the # HELP text of a metric */
static void
help(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(helps) / sizeof(helps[0]); i++) {
		if (!strcmp(helps[i][0], name)) {
			printf("# HELP %s %s\n", name, helps[i][1]);
			return;
		}
	}
	printf("# HELP %s mailmoat %s (from mailmoatctl stats).\n", name,
	       name + 9);
}

/* clean - s as a metric name part: [a-z0-9_] */
static void
clean(const char *s, char *out, size_t len)
{
	size_t o = 0;

	for (; *s && o + 1 < len; s++)
		out[o++] = isalnum((unsigned char)*s)
		                   ? (char)tolower((unsigned char)*s)
		                   : '_';
	out[o] = '\0';
}

/* label_esc - a label value with \ " and newline escaped */
static void
label_esc(const char *s, char *out, size_t len)
{
	size_t o = 0;

	for (; *s && o + 3 < len; s++) {
		if (*s == '\\' || *s == '"') {
			out[o++] = '\\';
			out[o++] = *s;
		} else if (*s == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else {
			out[o++] = *s;
		}
	}
	out[o] = '\0';
}

/* add - one sample */
static void
add(const char *name, const char *lname, const char *lval, const char *val,
    bool counter)
{
	struct sample *s;
	char esc[256];

	if (nsamples == capsamples) {
		capsamples = capsamples ? capsamples * 2 : 64;
		samples = realloc(samples, capsamples * sizeof(*samples));
		if (!samples)
			cgi_error(500, "out of memory");
	}
	s = &samples[nsamples++];
	snprintf(s->name, sizeof(s->name), "mailmoat_%s", name);
	s->labels[0] = '\0';
	if (lname) {
		label_esc(lval, esc, sizeof(esc));
		snprintf(s->labels, sizeof(s->labels), "{%s=\"%s\"}", lname,
		         esc);
	}
	snprintf(s->value, sizeof(s->value), "%s", val);
	s->counter = counter;
}

/* leaf_fn - a stats value into samples */
static void
leaf_fn(void *arg, int depth, char *const *path, const char *val, size_t n,
        char kind)
{
	char v[48], a[64], b[64], name[140];
	size_t i;
	bool counter = false;

	if (kind == 's' || kind == 'z' || n >= sizeof(v))
		return;
	if (kind == 'b')
		snprintf(v, sizeof(v), "%d", val[0] == 't');
	else
		snprintf(v, sizeof(v), "%.*s", (int)n, val);
	if (depth == 1) {
		clean(path[0], a, sizeof(a));
		for (i = 0; i < sizeof(counters) / sizeof(counters[0]); i++)
			counter |= !strcmp(path[0], counters[i]);
		if (counter && strcmp(a, "connections_total"))
			snprintf(name, sizeof(name), "%s_total", a);
		else
			snprintf(name, sizeof(name), "%s", a);
		add(name, NULL, NULL, v, counter);
	} else if (depth == 2 && !strcmp(path[0], "reasons")) {
		add("reason_total", "reason", path[1], v, true);
	} else if (depth == 2) {
		clean(path[0], a, sizeof(a));
		clean(path[1], b, sizeof(b));
		snprintf(name, sizeof(name), "%s_%s", a, b);
		add(name, NULL, NULL, v, false);
	} else if (depth == 3) {
		clean(path[0], a, sizeof(a));
		clean(path[2], b, sizeof(b));
		snprintf(name, sizeof(name), "%s_%s", a, b);
		add(name, "name", path[1], v, false);
	}
}

/* cmp - by name, stable enough: then by labels */
static int
cmp(const void *x, const void *y)
{
	const struct sample *a = x, *b = y;
	int c = strcmp(a->name, b->name);

	return c ? c : strcmp(a->labels, b->labels);
}

/* authorized - a session or the metrics_token */
static bool
authorized(const struct cgi_req *r)
{
	char tok[256];
	const char *h = getenv("HTTP_AUTHORIZATION"), *q;

	if (r->session[0])
		return true;
	if (cgi_conf_get(cgi_conf_path(), "metrics_token", tok, sizeof(tok)) ||
	    !tok[0])
		return false;
	if (h && !strncmp(h, "Bearer ", 7) && cgi_eq(h + 7, tok))
		return true;
	q = cgi_kv_get(r->q, r->nq, "token");
	return q && cgi_eq(q, tok);
}

/* main - the exposition */
int
main(void)
{
	struct cgi_req r;
	char *stats;
	size_t i;
	int rc;

	cgi_begin(&r, false);
	if (r.post)
		cgi_error(405, "only GET");
	if (!authorized(&r))
		cgi_error(401, "log in or send the metrics_token");
	rc = cgi_ctl("stats", &stats);
	printf("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
	       "Cache-Control: no-store\r\n\r\n");
	printf("# HELP mailmoat_up Whether the daemon answered on its control "
	       "socket.\n# TYPE mailmoat_up gauge\nmailmoat_up %d\n",
	       rc == 0);
	if (rc != 0 || cgi_json_walk(stats, leaf_fn, NULL) < 0) {
		free(stats);
		return 0;
	}
	qsort(samples, nsamples, sizeof(*samples), cmp);
	for (i = 0; i < nsamples; i++) {
		if (i == 0 || strcmp(samples[i].name, samples[i - 1].name)) {
			help(samples[i].name);
			printf("# TYPE %s %s\n", samples[i].name,
			       samples[i].counter ? "counter" : "gauge");
		}
		printf("%s%s %s\n", samples[i].name, samples[i].labels,
		       samples[i].value);
	}
	free(samples);
	free(stats);
	return 0;
}
