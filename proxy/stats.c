/*
 * stats.c - the daemon's counters and their JSON form.
 *
 * Public:
 *   stats                   the counters, bumped by session.c
 *   stats_count_reason()    one more decision with this reason
 *   stats_json()            the object `mailmoatctl stats` prints
 *   stats_add_section()     other modules add a named JSON value
 *   stats_json_string()     JSON string escaping for those sections
 *   stats_store_open()      counters of the previous run from the store's
 *                           blob "counters"; saved there before each flush
 *
 * Owns a small fixed table of reasons (their names are ours, not the
 * client's), the section registry and the text of the "counters" blob
 * ("# mailmoat counters v1", "key value" and "reason name value" lines;
 * the format of the counters file of earlier versions, which store.c
 * takes over once).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proxy.h"

#define STATS_MAX_REASONS 48

struct stats stats;

static struct {
	char name[32];
	uint64_t count;
} reasons[STATS_MAX_REASONS];
static unsigned n_reasons;

/* Every module that has figures of its own adds a section: a growing
 * table, never a limit that a new module could hit at startup. */
static struct section {
	const char *name;
	void (*fn)(struct buf *);
} * sections;
static unsigned n_sections, cap_sections;

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
	/* One word of [A-Za-z0-9_.-]: safe in JSON, logs and the file. */
	for (char *p = reasons[n_reasons].name; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' &&
		    *p != '-')
			*p = '_';
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
	if (n_sections == cap_sections) {
		cap_sections = cap_sections ? 2 * cap_sections : 16;
		sections = xrealloc(sections, cap_sections * sizeof(*sections));
	}
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
	stats_num(b, "backend_released", stats.backend_released, false);
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

/* ------------------------------------------------------------ state */

#define STATS_FILE "counters"

static const struct {
	const char *key;
	uint64_t *v;
} stats_keys[] = {
        {"connections_total", &stats.connections_total},
        {"accepted", &stats.accepted},
        {"tempfailed", &stats.tempfailed},
        {"rejected", &stats.rejected},
        {"logged", &stats.logged},
};

/* stats_snapshot - the counters file's text into b. */
static void
stats_snapshot(struct buf *b)
{
	char line[128];
	unsigned i;
	int n;

	buf_append(b, "# mailmoat counters v1\n", 23);
	for (i = 0; i < ARRAY_LEN(stats_keys); i++) {
		n = snprintf(line, sizeof(line), "%s %" PRIu64 "\n",
		             stats_keys[i].key, *stats_keys[i].v);
		buf_append(b, line, (size_t)n);
	}
	for (i = 0; i < n_reasons; i++) {
		n = snprintf(line, sizeof(line), "reason %s %" PRIu64 "\n",
		             reasons[i].name, reasons[i].count);
		buf_append(b, line, (size_t)n);
	}
}

/* stats_parse - counters text (the "counters" blob, or the file of
 * earlier versions) added to the counters; bad lines are skipped. */
static void
stats_parse(const char *text, size_t len)
{
	char line[256], key[64], name[64];
	unsigned long long v;
	size_t pos = 0;
	unsigned i, lineno = 0;

	while (pos < len) {
		size_t e = pos, n;

		while (e < len && text[e] != '\n')
			e++;
		n = e - pos < sizeof(line) - 1 ? e - pos : sizeof(line) - 1;
		memcpy(line, text + pos, n);
		line[n] = '\0';
		pos = e + 1;
		lineno++;
		if (line[0] == '#' || line[0] == '\0')
			continue;
		if (sscanf(line, "reason %63s %llu", name, &v) == 2 && v > 0) {
			int k;

			stats_count_reason(name);
			k = stats_reason_find(name);
			if (k < 0)
				k = stats_reason_find("other");
			if (k >= 0)
				reasons[k].count += v - 1;
			continue;
		}
		if (sscanf(line, "%63s %llu", key, &v) == 2) {
			for (i = 0; i < ARRAY_LEN(stats_keys); i++)
				if (strcmp(stats_keys[i].key, key) == 0)
					*stats_keys[i].v = v;
			continue;
		}
		log_warn("counters:%u: not a counter line, skipped", lineno);
	}
}

static struct buf last_saved;

/* stats_flush_cb - before each store burst: the counters blob, when it
 * changed. */
static void
stats_flush_cb(void)
{
	struct buf b = {0};

	stats_snapshot(&b);
	if (b.len != last_saved.len ||
	    memcmp(b.data, last_saved.data, b.len) != 0) {
		store_blob_set("counters", b.data, b.len);
		last_saved.len = 0;
		buf_append(&last_saved, b.data, b.len);
	}
	buf_free(&b);
}

/* stats_store_open - counters of the previous run from the store (blob
 * "counters"), and saving them at every flush from now on. */
void
stats_store_open(void)
{
	const void *p;
	size_t n;

	p = store_blob_get("counters", &n);
	if (p != NULL) {
		stats_parse(p, n);
		buf_append(&last_saved, p, n);
	}
	store_on_flush(stats_flush_cb);
}

/* stats_free - release what the state code keeps (at exit). */
void
stats_free(void)
{
	buf_free(&last_saved);
	free(sections);
	sections = NULL;
	n_sections = cap_sections = 0;
}
