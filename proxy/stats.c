/*
 * stats.c - the daemon's counters and their JSON form.
 *
 * Public:
 *   stats                   the counters, bumped by session.c
 *   stats_count_reason()    one more decision with this reason
 *   stats_json()            the object `mailmoatctl stats` prints
 *   stats_add_section()     other modules add a named JSON value
 *   stats_json_string()     JSON string escaping for those sections
 *   stats_load/stats_save() the counters file in state_dir (at start and
 *                           at a clean exit; blocking)
 *   stats_save_async()      the same from the thread pool, when changed
 *
 * Owns a small fixed table of reasons (their names are ours, not the
 * client's), the section registry and STATE_DIR/counters (written as a
 * temp file, fsync, rename, fsync of the directory).  Reads state_dir
 * through its callers.
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

/* stats_write_file - text to dir/counters, atomically.  Blocking: the
 * thread pool or exit. */
static int
stats_write_file(const char *dir, const char *text, size_t len)
{
	char path[4096];

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, STATS_FILE) >=
	    sizeof(path))
		return -ENAMETOOLONG;
	return util_write_file_atomic(path, text, len, 0644);
}

/* stats_save - the counters to state_dir now (blocking: at exit). */
int
stats_save(const char *state_dir)
{
	struct buf b = {0};
	int rc;

	if (state_dir == NULL || state_dir[0] == '\0')
		return 0;
	stats_snapshot(&b);
	rc = stats_write_file(state_dir, b.data, b.len);
	buf_free(&b);
	return rc;
}

/* stats_load - counters saved by an earlier run; 0, -ENOENT when there
 * are none yet, or -errno.  Bad lines are skipped with a warning. */
int
stats_load(const char *state_dir)
{
	char path[4096], line[256], key[64], name[64];
	unsigned long long v;
	unsigned i, lineno = 0;
	FILE *f;

	if (state_dir == NULL || state_dir[0] == '\0')
		return -ENOENT;
	snprintf(path, sizeof(path), "%s/%s", state_dir, STATS_FILE);
	f = fopen(path, "re");
	if (f == NULL)
		return -errno;
	while (fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		if (line[0] == '#' || line[0] == '\n')
			continue;
		if (sscanf(line, "reason %63s %llu", name, &v) == 2) {
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
		log_warn("%s:%u: not a counter line, skipped", path, lineno);
	}
	fclose(f);
	return 0;
}

struct stats_save_req {
	uv_work_t req;
	char *dir;
	struct buf text;
	int rc;
};

static bool save_busy;
static struct buf last_saved;

/* stats_save_work - in the thread pool: write the file. */
static void
stats_save_work(uv_work_t *req)
{
	struct stats_save_req *w =
	        container_of(req, struct stats_save_req, req);

	w->rc = stats_write_file(w->dir, w->text.data, w->text.len);
}

/* stats_save_done - back on the loop: report, free. */
static void
stats_save_done(uv_work_t *req, int status)
{
	struct stats_save_req *w =
	        container_of(req, struct stats_save_req, req);

	if (w->rc < 0)
		log_warn("counters: cannot save in %s: %s", w->dir,
		         strerror(-w->rc));
	save_busy = false;
	free(w->dir);
	buf_free(&w->text);
	free(w);
}

/* stats_save_async - save in the thread pool if anything changed since
 * the last save (one at a time). */
void
stats_save_async(uv_loop_t *loop, const char *state_dir)
{
	struct stats_save_req *w;

	if (save_busy || state_dir == NULL || state_dir[0] == '\0')
		return;
	w = xcalloc(1, sizeof(*w));
	stats_snapshot(&w->text);
	if (w->text.len == last_saved.len &&
	    memcmp(w->text.data, last_saved.data, w->text.len) == 0) {
		buf_free(&w->text);
		free(w);
		return;
	}
	last_saved.len = 0;
	buf_append(&last_saved, w->text.data, w->text.len);
	w->dir = xstrdup(state_dir);
	save_busy = true;
	if (uv_queue_work(loop, &w->req, stats_save_work, stats_save_done) <
	    0) {
		save_busy = false;
		free(w->dir);
		buf_free(&w->text);
		free(w);
	}
}

/* stats_free - release what the state code keeps (at exit). */
void
stats_free(void)
{
	buf_free(&last_saved);
}
