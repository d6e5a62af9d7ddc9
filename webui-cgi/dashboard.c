/*
 * dashboard.c - /cgi-bin/dashboard: the box at a glance.
 *
 * Version, board, slot, uptime and the data partition's use (files the
 * firmware provides, statvfs of state_dir); from the daemon (`stats`):
 * sessions now, counters by action and by reason, greylist size and every
 * section other modules add (DNSBL zones, scanners, backscatter, ...)
 * shown generically; whether the internal mail server (the `backend`
 * section) is reachable, in words, next to the daemon's own state; `series
 * day|month` as two inline SVG charts.  GET only.  Every value is escaped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "cgi.h"
#include "proxy.h"

static const char *const series_names[4] = {"accept", "tempfail", "reject",
                                            "log"};
static const char *const series_colours[4] = {"#4a8", "#e90", "#c33", "#68c"};

struct dash {
	int section; /* 0 top level, 1 reasons, 2 other sections */
	char cur[128];
	int open;
};

/* top_fn - the top-level numbers and the reasons table */
static void
top_fn(void *arg, int depth, char *const *path, const char *val, size_t n,
       char kind)
{
	struct dash *d = arg;
	char v[512], k[300];

	if (kind == 's')
		cgi_json_unquote(val, n, v, sizeof(v));
	else
		snprintf(v, sizeof(v), "%.*s", (int)n, val);
	if (d->section == 0 && depth == 1 && strcmp(path[0], "version"))
		cgi_row(path[0], v);
	if (d->section == 1 && depth == 2 && !strcmp(path[0], "reasons"))
		cgi_row(path[1], v);
	if (d->section == 2 && depth >= 2 && strcmp(path[0], "reasons")) {
		if (strcmp(d->cur, path[0])) {
			if (d->open)
				fputs("</table></div>\n", stdout);
			snprintf(d->cur, sizeof(d->cur), "%s", path[0]);
			fputs("<h3>", stdout);
			cgi_html(path[0]);
			fputs("</h3><div class=\"scroll\"><table>\n", stdout);
			d->open = 1;
		}
		snprintf(k, sizeof(k), "%s%s%s%s%s", path[1],
		         depth > 2 ? " " : "", depth > 2 ? path[2] : "",
		         depth > 3 ? " " : "", depth > 3 ? path[3] : "");
		cgi_row(k, v);
	}
}

/* What the "backend" section says (docs/CONTROL.md). */
struct be_health {
	char status[16];
	char last_error[160];
	long long since, checked;
};

/* be_fn - the backend section's fields */
static void
be_fn(void *arg, int depth, char *const *path, const char *val, size_t n,
      char kind)
{
	struct be_health *h = arg;
	char v[32];

	if (depth != 2 || strcmp(path[0], "backend"))
		return;
	snprintf(v, sizeof(v), "%.*s", (int)(n < sizeof(v) ? n : 0), val);
	if (!strcmp(path[1], "status") && kind == 's')
		cgi_json_unquote(val, n, h->status, sizeof(h->status));
	else if (!strcmp(path[1], "last_error") && kind == 's')
		cgi_json_unquote(val, n, h->last_error, sizeof(h->last_error));
	else if (!strcmp(path[1], "since"))
		h->since = atoll(v);
	else if (!strcmp(path[1], "checked"))
		h->checked = atoll(v);
}

/* ago - "12 s ago", "5 min ago", "3 h ago", "2 d ago" */
static void
ago(long long t, char *out, size_t len)
{
	long long d = (long long)time(NULL) - t;

	if (d < 0)
		d = 0;
	if (d < 120)
		snprintf(out, len, "%lld s ago", d);
	else if (d < 7200)
		snprintf(out, len, "%lld min ago", d / 60);
	else if (d < 172800)
		snprintf(out, len, "%lld h ago", d / 3600);
	else
		snprintf(out, len, "%lld d ago", d / 86400);
}

/* backend_row - "reachable" or "DOWN ... : why", with how old that is */
static void
backend_row(const char *stats)
{
	struct be_health h = {{0}};
	char host[128], text[512], a1[32], a2[32], when[32];
	time_t since;
	struct tm tm;

	cgi_json_walk(stats, be_fn, &h);
	if (cgi_conf_get(cgi_conf_path(), "backend", host, sizeof(host)))
		snprintf(host, sizeof(host), "-");
	ago(h.checked, a1, sizeof(a1));
	ago(h.since, a2, sizeof(a2));
	since = (time_t)h.since;
	gmtime_r(&since, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", &tm);
	if (!strcmp(h.status, "up"))
		snprintf(text, sizeof(text), "%s: reachable (it answered %s)",
		         host, a1);
	else if (!strcmp(h.status, "down"))
		snprintf(text, sizeof(text),
		         "%s: UNREACHABLE since %s (%s): %s (last try %s)",
		         host, when, a2, h.last_error, a1);
	else if (h.status[0])
		snprintf(text, sizeof(text),
		         "%s: not known yet (no connection to it so far; "
		         "checked after 5 quiet minutes)",
		         host);
	else
		snprintf(text, sizeof(text), "%s: - (the daemon does not say)",
		         host);
	fprintf(stdout,
	        "<tr id=\"backend\"><th>mail server (backend)</th>"
	        "<td%s>",
	        strcmp(h.status, "down") ? "" : " class=\"err\"");
	cgi_html(text);
	fputs("</td></tr>\n", stdout);
}

static uint64_t s_start, s_span;

/* label - hh:mm or mm-dd under a bar */
static void
label(int i, char *buf, size_t len)
{
	time_t t = (time_t)(s_start + (uint64_t)i * s_span);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, s_span < 86400 ? "%H:%M" : "%m-%d", &tm);
}

/* chart - `series WHICH` as an SVG bar chart */
static void
chart(const char *which, const char *title)
{
	char cmd[32], *out, *line, *save = NULL;
	uint64_t *v[4], start = 0;
	unsigned long long t, a[4];
	int n = 0, max = 400, i;

	snprintf(cmd, sizeof(cmd), "series %s", which);
	if (cgi_ctl(cmd, &out) != 0) {
		cgi_msg(false, out);
		free(out);
		return;
	}
	for (i = 0; i < 4; i++)
		v[i] = calloc((size_t)max, sizeof(uint64_t));
	for (line = strtok_r(out, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "span=", 5) == 0) {
			s_span = strtoull(line + 5, NULL, 10);
			continue;
		}
		if (n < max && sscanf(line, "%llu %llu %llu %llu %llu", &t,
		                      &a[0], &a[1], &a[2], &a[3]) == 5) {
			if (n == 0)
				start = t;
			for (i = 0; i < 4; i++)
				v[i][n] = a[i];
			n++;
		}
	}
	s_start = start;
	cgi_svg_chart(title, n, 4, (const uint64_t *const *)v, series_names,
	              series_colours, s_span < 86400 ? 36 : 5, label);
	for (i = 0; i < 4; i++)
		free(v[i]);
	free(out);
}

/* uptime_str - seconds as "3d 4h 5m" */
static void
uptime_str(long long s, char *out, size_t len)
{
	if (s < 0)
		snprintf(out, len, "-");
	else
		snprintf(out, len, "%lldd %lldh %lldm", s / 86400,
		         s / 3600 % 24, s / 60 % 60);
}

/* main - the dashboard */
int
main(void)
{
	struct cgi_req r;
	struct dash d = {0};
	struct statvfs vfs;
	struct cgi_box box;
	char host[256], sdir[256];
	char up[64], dup[64], flash[96], *stats;
	int rc;

	cgi_begin(&r, true);
	if (r.post)
		cgi_error(405, "only GET");
	rc = cgi_ctl("stats", &stats);
	cgi_box_info(&box);
	if (cgi_conf_get(cgi_conf_path(), "hostname", host, sizeof(host)))
		snprintf(host, sizeof(host), "-");
	if (cgi_conf_get(cgi_conf_path(), "state_dir", sdir, sizeof(sdir)))
		snprintf(sdir, sizeof(sdir), "/data/mailmoat");
	if (cgi_read_file("/proc/uptime", up, sizeof(up)) == 0)
		uptime_str(atoll(up), up, sizeof(up));
	else
		snprintf(up, sizeof(up), "-");
	if (statvfs(sdir, &vfs) == 0 && vfs.f_blocks > 0)
		snprintf(
		        flash, sizeof(flash), "%llu of %llu MiB used (%d%%)",
		        (unsigned long long)((vfs.f_blocks - vfs.f_bfree) *
		                                     vfs.f_frsize >>
		                             20),
		        (unsigned long long)(vfs.f_blocks * vfs.f_frsize >> 20),
		        (int)((vfs.f_blocks - vfs.f_bfree) * 100 /
		              vfs.f_blocks));
	else
		snprintf(flash, sizeof(flash), "-");

	cgi_page_begin(&r, "Dashboard");
	fputs("<h2>Box</h2><table id=\"box\">\n", stdout);
	cgi_row("version", box.version);
	cgi_row("board", box.board);
	cgi_row("slot", box.slot);
	cgi_row("hostname", host);
	cgi_row("box uptime", up);
	cgi_row("data partition", flash);
	if (rc == 0) {
		uptime_str(cgi_json_num(stats, "uptime"), dup, sizeof(dup));
		cgi_row("daemon", "running");
		cgi_row("daemon uptime", dup);
		backend_row(stats);
	} else {
		cgi_row("daemon", "not answering");
	}
	fputs("</table>\n", stdout);
	if (rc != 0) {
		cgi_msg(false, stats);
		free(stats);
		cgi_page_end();
		return 0;
	}
	fputs("<h2>Decisions over time</h2>\n", stdout);
	chart("day", "last 24 hours (5-minute buckets)");
	chart("month", "last 30 days (daily)");
	fputs("<h2>Counters</h2><table id=\"counters\">\n", stdout);
	d.section = 0;
	cgi_json_walk(stats, top_fn, &d);
	fputs("</table>\n<h2>Reasons</h2><table id=\"reasons\">\n", stdout);
	d.section = 1;
	cgi_json_walk(stats, top_fn, &d);
	if (strstr(stats, "\"reasons\":{}"))
		fputs("<tr><td><small>(no refusals yet)</small></td></tr>\n",
		      stdout);
	fputs("</table>\n<h2>Health</h2>\n", stdout);
	d.section = 2;
	cgi_json_walk(stats, top_fn, &d);
	if (d.open)
		fputs("</table></div>\n", stdout);
	free(stats);
	cgi_page_end();
	return 0;
}
