/*
 * stats.c - the daemon's counters and their JSON form.
 *
 * Public:
 *   stats                   the counters, bumped by session.c
 *   stats_count_reason()    one more decision with this reason
 *   stats_json()            the object `mailmoatctl stats` prints
 *   stats_add_section()     other modules add a named JSON value
 *   stats_json_string()     JSON string escaping for those sections
 *
 * Owns a small fixed table of reasons (their names are ours, not the
 * client's) and the section registry.  Reads no config key.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "proxy.h"

#define STATS_MAX_REASONS 48
#define STATS_MAX_SECTIONS 8

struct stats stats;

static struct {
	char name[32];
	uint64_t count;
} reasons[STATS_MAX_REASONS];
static unsigned n_reasons;

static struct {
	const char *name;
	void (*fn)(struct buf *);
} sections[STATS_MAX_SECTIONS];
static unsigned n_sections;

static time_t started;

/* stats_reason_find - index of a reason, or -1. */
static int
stats_reason_find(const char *reason)
{
	unsigned i;

	for (i = 0; i < n_reasons; i++)
		if (strcmp(reasons[i].name, reason) == 0)
			return (int)i;
	return -1;
}

/* stats_count_reason - one more decision with this reason; when the table
 * is full, new reasons count as "other" (the last slot). */
void
stats_count_reason(const char *reason)
{
	int i;

	if (started == 0)
		started = time(NULL);
	if (reason == NULL || reason[0] == '\0')
		reason = "-";
	i = stats_reason_find(reason);
	if (i < 0 && n_reasons >= STATS_MAX_REASONS - 1) {
		reason = "other";
		i = stats_reason_find(reason);
	}
	if (i >= 0) {
		reasons[i].count++;
		return;
	}
	if (n_reasons == STATS_MAX_REASONS)
		return;
	snprintf(reasons[n_reasons].name, sizeof(reasons[0].name), "%s",
		 reason);
	reasons[n_reasons].count = 1;
	n_reasons++;
}

/* stats_add_section - stats_json will add "name": fn's value. */
void
stats_add_section(const char *name, void (*fn)(struct buf *b))
{
	unsigned i;

	for (i = 0; i < n_sections; i++) {
		if (strcmp(sections[i].name, name) == 0) {
			sections[i].fn = fn;
			return;
		}
	}
	if (n_sections == STATS_MAX_SECTIONS)
		log_panic("stats: too many sections (%s)", name);
	sections[n_sections].name = name;
	sections[n_sections].fn = fn;
	n_sections++;
}

/* stats_json_string - append s as a JSON string literal. */
void
stats_json_string(struct buf *b, const char *s)
{
	char esc[8];
	const unsigned char *p;

	buf_append(b, "\"", 1);
	for (p = (const unsigned char *)(s ? s : ""); *p; p++) {
		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			buf_append(b, esc, 2);
		} else if (*p < 0x20 || *p == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", *p);
			buf_append(b, esc, 6);
		} else {
			buf_append(b, p, 1);
		}
	}
	buf_append(b, "\"", 1);
}

/* stats_num - append ,"key":value (first: without the comma). */
static void
stats_num(struct buf *b, const char *key, uint64_t v, bool first)
{
	char tmp[96];
	int n;

	n = snprintf(tmp, sizeof(tmp), "%s\"%s\":%" PRIu64, first ? "" : ",",
		     key, v);
	buf_append(b, tmp, (size_t)n);
}

/* stats_json - the `mailmoatctl stats` object into b (no newline). */
void
stats_json(struct buf *b)
{
	unsigned i;
	time_t now = time(NULL);

	if (started == 0)
		started = now;
	buf_append(b, "{", 1);
	stats_num(b, "connections_total", stats.connections_total, true);
	stats_num(b, "connections_active", stats.connections_active, false);
	stats_num(b, "accepted", stats.accepted, false);
	stats_num(b, "tempfailed", stats.tempfailed, false);
	stats_num(b, "rejected", stats.rejected, false);
	stats_num(b, "logged", stats.logged, false);
	buf_append(b, ",\"reasons\":{", 12);
	for (i = 0; i < n_reasons; i++) {
		char tmp[32];
		int n;

		if (i > 0)
			buf_append(b, ",", 1);
		stats_json_string(b, reasons[i].name);
		n = snprintf(tmp, sizeof(tmp), ":%" PRIu64, reasons[i].count);
		buf_append(b, tmp, (size_t)n);
	}
	buf_append(b, "}", 1);
	stats_num(b, "greylist_entries", stats.greylist_entries, false);
	stats_num(b, "backend_connections", relay_open_count, false);
	stats_num(b, "uptime", (uint64_t)(now > started ? now - started : 0),
		  false);
	buf_append(b, ",\"version\":", 11);
	stats_json_string(b, MAILMOAT_VERSION);
	for (i = 0; i < n_sections; i++) {
		size_t before;

		buf_append(b, ",", 1);
		stats_json_string(b, sections[i].name);
		buf_append(b, ":", 1);
		before = b->len;
		sections[i].fn(b);
		if (b->len == before)
			buf_append(b, "null", 4);
	}
	buf_append(b, "}", 1);
}
