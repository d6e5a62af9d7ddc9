/*
 * decisions.c - /cgi-bin/decisions: the recent decisions, filtered.
 *
 * Query fields client, sender, recipient, action, reason, id (each a
 * case-insensitive substring; empty: any) become the filter of
 * `decisions` (history.c in the daemon).  The newest CGI_SHOWN matches are
 * shown, newest first, with the session id a sender's postmaster quotes.
 * Values are shown as the log writes them (non-printable bytes as \xNN),
 * HTML-escaped.  GET only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cgi.h"

#define CGI_SHOWN 500

static const char *const fields[] = {"client", "sender", "recipient",
                                     "action", "reason", "id"};
static const char *const cols[] = {"time", "id", "client", "ptr",    "helo",
                                   "from", "to", "action", "reason", "detail"};
#define NCOLS (sizeof(cols) / sizeof(cols[0]))

/* kv_get - the value of key in a log line (still log-escaped) */
static void
kv_get(const char *line, const char *key, char *out, size_t len)
{
	char pat[32];
	const char *p = line, *e;
	size_t n;

	out[0] = '\0';
	snprintf(pat, sizeof(pat), "%s=", key);
	for (;;) {
		p = strstr(p, pat);
		if (!p)
			return;
		if (p == line || p[-1] == ' ')
			break;
		p++;
	}
	p += strlen(pat);
	if (*p == '"') {
		for (e = p + 1; *e && *e != '"'; e++)
			if (*e == '\\' && e[1])
				e++;
		if (*e == '"')
			e++;
	} else {
		e = p + strcspn(p, " ");
	}
	n = (size_t)(e - p) < len - 1 ? (size_t)(e - p) : len - 1;
	memcpy(out, p, n);
	out[n] = '\0';
}

/* main - the filter form and the table */
int
main(void)
{
	struct cgi_req r;
	char filter[1400], cmd[1500], *out, **lines = NULL, v[1200];
	const char *val, *bad = NULL;
	char *line, *save = NULL;
	size_t i, n = 0, cap = 0, first, c;
	int rc;

	cgi_begin(&r, true);
	if (r.post)
		cgi_error(405, "only GET");
	filter[0] = '\0';
	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		val = cgi_param(&r, fields[i]);
		if (!val || !*val)
			continue;
		if (!cgi_ctl_word(val) || strlen(val) > 200) {
			bad = fields[i];
			continue;
		}
		snprintf(filter + strlen(filter),
		         sizeof(filter) - strlen(filter), " %s=%s", fields[i],
		         val);
	}
	cgi_page_begin(&r, "Recent decisions");
	printf("<form method=\"get\" action=\"/cgi-bin/decisions\">");
	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		val = cgi_param(&r, fields[i]);
		printf("<label for=\"%s\">%s</label>", fields[i], fields[i]);
		if (!strcmp(fields[i], "action")) {
			static const char *const acts[] = {
			        "", "accept", "tempfail", "reject", "log"};
			size_t a;

			printf("<select id=\"action\" name=\"action\">");
			for (a = 0; a < 5; a++)
				printf("<option value=\"%s\"%s>%s</option>",
				       acts[a],
				       val && !strcmp(val, acts[a])
				               ? " selected"
				               : "",
				       a ? acts[a] : "any");
			printf("</select>");
			continue;
		}
		printf("<input id=\"%s\" name=\"%s\" value=\"", fields[i],
		       fields[i]);
		cgi_html(val ? val : "");
		printf("\">");
	}
	printf("<p><button type=\"submit\" id=\"filter\">Filter</button> "
	       "<a href=\"/cgi-bin/decisions\">all</a></p></form>\n");
	if (bad) {
		snprintf(v, sizeof(v), "The %s filter must be one word.", bad);
		cgi_msg(false, v);
	}
	snprintf(cmd, sizeof(cmd), "decisions%s", filter);
	rc = cgi_ctl(cmd, &out);
	if (rc != 0) {
		cgi_msg(false, out);
		free(out);
		cgi_page_end();
		return 0;
	}
	for (line = strtok_r(out, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			lines = realloc(lines, cap * sizeof(*lines));
			if (!lines)
				cgi_error(500, "out of memory");
		}
		lines[n++] = line;
	}
	printf("<p>%zu matching decision%s%s.</p>\n", n, n == 1 ? "" : "s",
	       n > CGI_SHOWN ? ", the newest 500 shown" : "");
	printf("<div class=\"scroll\"><table id=\"decisions\"><tr>");
	for (c = 0; c < NCOLS; c++)
		printf("<th>%s</th>", cols[c]);
	printf("</tr>\n");
	first = n > CGI_SHOWN ? n - CGI_SHOWN : 0;
	for (i = n; i > first; i--) {
		printf("<tr>");
		for (c = 0; c < NCOLS; c++) {
			kv_get(lines[i - 1], cols[c], v, sizeof(v));
			printf("<td>");
			if (c == 0) {
				time_t t = (time_t)strtoll(v, NULL, 10);
				struct tm tm;
				char ts[32];

				gmtime_r(&t, &tm);
				strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S",
				         &tm);
				cgi_html(ts);
			} else if (c == 1) {
				printf("<code>");
				cgi_html(v);
				printf("</code>");
			} else {
				cgi_html(v);
			}
			printf("</td>");
		}
		printf("</tr>\n");
	}
	printf("</table></div>\n");
	free(lines);
	free(out);
	cgi_page_end();
	return 0;
}
