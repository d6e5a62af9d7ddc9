/*
 * lists.c - /cgi-bin/lists: the allowlist, the blocklist and the
 * backscatter blocks.
 *
 * GET shows each list (`allow list`, `block list`, `backscatter list`)
 * with a remove button per entry and an add form.  POST fields: list
 * (allow, block or backscatter), entry, op (add or del; backscatter only
 * del), csrf.  The entry is validated by the daemon's own list parser
 * (`allow add ENTRY` answers why it is refused); the daemon saves the
 * list file.  Every entry shown is escaped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgi.h"

/* del_button - a one-entry removal form */
static void
del_button(const struct cgi_req *r, const char *list, const char *entry)
{
	printf("<form method=\"post\" action=\"/cgi-bin/lists\" "
	       "style=\"display:inline\">");
	cgi_csrf_field(r);
	printf("<input type=\"hidden\" name=\"list\" value=\"%s\">"
	       "<input type=\"hidden\" name=\"op\" value=\"del\">"
	       "<input type=\"hidden\" name=\"entry\" value=\"",
	       list);
	cgi_html(entry);
	printf("\"><button type=\"submit\">remove</button></form>");
}

/* show - one list: its entries, removal buttons, the add form */
static void
show(const struct cgi_req *r, const char *list, const char *title, bool can_add)
{
	char cmd[64], *out, *line, *save = NULL;
	int rc, n = 0;

	printf("<h2>");
	cgi_html(title);
	printf("</h2>\n");
	snprintf(cmd, sizeof(cmd), "%s list", list);
	rc = cgi_ctl(cmd, &out);
	if (rc != 0) {
		cgi_msg(false, out);
	} else {
		printf("<table id=\"%s-entries\">\n", list);
		for (line = strtok_r(out, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save)) {
			char entry[512];

			if (line[0] == '#' || line[0] == '\0')
				continue;
			snprintf(entry, sizeof(entry), "%.*s",
			         (int)strcspn(line, " \t"), line);
			printf("<tr><td>");
			cgi_html(line);
			printf("</td><td>");
			del_button(r, list, entry);
			printf("</td></tr>\n");
			n++;
		}
		if (n == 0)
			printf("<tr><td><small>(empty)</small></td></tr>\n");
		printf("</table>\n");
	}
	free(out);
	if (!can_add)
		return;
	printf("<form method=\"post\" action=\"/cgi-bin/lists\">");
	cgi_csrf_field(r);
	printf("<input type=\"hidden\" name=\"list\" value=\"%s\">"
	       "<input type=\"hidden\" name=\"op\" value=\"add\">"
	       "<label for=\"entry-%s\">Add an IP, CIDR net, address or "
	       "@domain</label><input id=\"entry-%s\" name=\"entry\" "
	       "size=\"30\" required> <button type=\"submit\" "
	       "id=\"add-%s\">add</button></form>\n",
	       list, list, list, list);
}

/* main - show the lists, or change one */
int
main(void)
{
	struct cgi_req r;
	const char *list, *entry, *op;
	char cmd[512], *out = NULL, msg[1024];
	int rc = -2;

	cgi_begin(&r, true);
	msg[0] = '\0';
	if (r.post) {
		list = cgi_param(&r, "list");
		entry = cgi_param(&r, "entry");
		op = cgi_param(&r, "op");
		if (!list || !entry || !op ||
		    (strcmp(list, "allow") && strcmp(list, "block") &&
		     strcmp(list, "backscatter")) ||
		    (strcmp(op, "add") && strcmp(op, "del")) ||
		    (!strcmp(list, "backscatter") && strcmp(op, "del"))) {
			snprintf(msg, sizeof(msg),
			         "refused: list must be allow, block or "
			         "backscatter and op add or del");
		} else if (!cgi_ctl_word(entry)) {
			snprintf(msg, sizeof(msg),
			         "refused: the entry must be one word (no "
			         "spaces), at most 255 characters");
		} else {
			snprintf(cmd, sizeof(cmd), "%s %s %s", list, op, entry);
			rc = cgi_ctl(cmd, &out);
			snprintf(msg, sizeof(msg), "%s%s",
			         rc == 0 ? "" : "refused: ", out);
			msg[strcspn(msg, "\n")] = '\0';
			free(out);
		}
	}
	cgi_page_begin(&r, "Lists");
	if (msg[0])
		cgi_msg(rc == 0, msg);
	show(&r, "allow", "Allowlist (never checked)", true);
	show(&r, "block", "Blocklist (refused)", true);
	show(&r, "backscatter", "Backscatter blocks", false);
	cgi_page_end();
	return 0;
}
