/*
 * greylist.c - /cgi-bin/greylist: search and delete greylist triplets.
 *
 * GET: field q (a pattern, one word; empty: all) -> `greylist list
 * [PATTERN]`; each answer line is shown with a delete button for its
 * first three words (the triplet NET SENDER RCPT).  POST: op=del,
 * triplet, csrf -> `greylist del NET SENDER RCPT`.  Whatever the daemon
 * answers is shown, escaped.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgi.h"

/* triplet_len - length of the first three words of line ("NET SENDER
 * RCPT", one space apart), or 0 when it has fewer */
static size_t
triplet_len(const char *line)
{
	size_t n = 0;
	int w;

	for (w = 0; w < 3; w++) {
		if (w > 0) {
			if (line[n] != ' ')
				return 0;
			n++;
		}
		if (line[n] <= ' ' || line[n] == 0x7f)
			return 0;
		while ((unsigned char)line[n] > ' ' && line[n] != 0x7f)
			n++;
	}
	return n;
}

/* triplet_ok - t is exactly a triplet: three safe words */
static bool
triplet_ok(const char *t)
{
	size_t n = triplet_len(t);

	return n > 0 && n < 600 && t[n] == '\0';
}

/* main - search form, table, delete */
int
main(void)
{
	struct cgi_req r;
	const char *q, *t, *op;
	char cmd[600], *out, msg[1024], *line, *save = NULL;
	int rc = -2, n = 0;

	cgi_begin(&r, true);
	msg[0] = '\0';
	if (r.post) {
		t = cgi_param(&r, "triplet");
		op = cgi_param(&r, "op");
		if (!op || strcmp(op, "del") || !t || !triplet_ok(t)) {
			snprintf(msg, sizeof(msg),
			         "refused: op must be del and triplet "
			         "\"NET SENDER RCPT\"");
		} else {
			snprintf(cmd, sizeof(cmd), "greylist del %s", t);
			rc = cgi_ctl(cmd, &out);
			snprintf(msg, sizeof(msg), "%s%s",
			         rc == 0 ? "" : "refused: ", out);
			msg[strcspn(msg, "\n")] = '\0';
			if (rc == 0 && !msg[0])
				snprintf(msg, sizeof(msg), "deleted %s", t);
			free(out);
		}
	}
	q = cgi_param(&r, "q");
	if (q && *q && !cgi_ctl_word(q))
		q = NULL;
	cgi_page_begin(&r, "Greylist");
	if (msg[0])
		cgi_msg(rc == 0, msg);
	printf("<form method=\"get\" action=\"/cgi-bin/greylist\">"
	       "<label for=\"q\">Search (client net, sender or recipient)"
	       "</label><input id=\"q\" name=\"q\" value=\"");
	cgi_html(q ? q : "");
	printf("\"> <button type=\"submit\" id=\"search\">Search</button>"
	       "</form>\n");
	snprintf(cmd, sizeof(cmd), "greylist list%s%s", q && *q ? " " : "",
	         q && *q ? q : "");
	rc = cgi_ctl(cmd, &out);
	if (rc != 0) {
		cgi_msg(false, out);
	} else {
		printf("<div class=\"scroll\"><table id=\"triplets\">\n");
		for (line = strtok_r(out, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save)) {
			char first[600];

			if (line[0] == '#' || !line[0])
				continue;
			snprintf(first, sizeof(first), "%.*s",
			         (int)triplet_len(line), line);
			if (!first[0])
				continue; /* not a triplet line */
			printf("<tr><td>");
			cgi_html(line);
			printf("</td><td><form method=\"post\" "
			       "action=\"/cgi-bin/greylist\">");
			cgi_csrf_field(&r);
			printf("<input type=\"hidden\" name=\"op\" "
			       "value=\"del\">"
			       "<input type=\"hidden\" name=\"triplet\" "
			       "value=\"");
			cgi_html(first);
			printf("\"><button type=\"submit\">delete</button>"
			       "</form></td></tr>\n");
			n++;
		}
		if (n == 0)
			printf("<tr><td><small>(no "
			       "triplets)</small></td></tr>\n");
		printf("</table></div>\n");
	}
	free(out);
	cgi_page_end();
	return 0;
}
