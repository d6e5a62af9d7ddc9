/*
 * status.c - /cgi-bin/status: the minimal status page (version, board,
 * slot, uptime, memory and `mailmoatctl stats`) until the full web UI lands.
 *
 * Reads /etc/mailmoat/version, /etc/mailmoat/board, /run/mailmoat-boot and
 * control_socket from /etc/mailmoat.conf.  GET only; needs the web UI's
 * login (cgi_begin).  Every value is escaped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgi.h"
#include "proxy.h"

/* meminfo - MemTotal and MemTotal - MemAvailable in KiB; 0 or -1 */
static int
meminfo(long *total, long *used)
{
	char line[128];
	long avail = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	*total = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		sscanf(line, "MemTotal: %ld", total);
		sscanf(line, "MemAvailable: %ld", &avail);
	}
	fclose(f);
	if (*total < 0 || avail < 0)
		return -1;
	*used = *total - avail;
	return 0;
}

/* main - print the status page */
int
main(void)
{
	struct cgi_box box;
	char host[256], sock[256];
	char stats[16384], up[64], mt[32], mu[32];
	long total, used;
	const char *m = getenv("REQUEST_METHOD");
	char *argv[] = {CGI_SBIN "/mailmoatctl", "-S", sock, "stats", NULL};
	struct cgi_req r;
	int rc;

	if (m && strcmp(m, "GET") && strcmp(m, "HEAD"))
		cgi_error(405, "only GET");
	cgi_begin(&r, true);
	cgi_box_info(&box);
	if (cgi_conf_get(cgi_conf_path(), "hostname", host, sizeof(host)))
		snprintf(host, sizeof(host), "-");
	if (cgi_conf_get(cgi_conf_path(), "control_socket", sock, sizeof(sock)))
		snprintf(sock, sizeof(sock), "/run/mailmoat.sock");
	if (cgi_read_file("/proc/uptime", up, sizeof(up)) == 0)
		up[strcspn(up, " ")] = '\0';
	else
		snprintf(up, sizeof(up), "-");
	rc = cgi_run(argv, stats, sizeof(stats));
	if (meminfo(&total, &used) == 0) {
		snprintf(mt, sizeof(mt), "%ld", total);
		snprintf(mu, sizeof(mu), "%ld", used);
	} else {
		snprintf(mt, sizeof(mt), "-");
		snprintf(mu, sizeof(mu), "-");
	}

	printf("Content-Type: text/html; charset=utf-8\r\n"
	       "Cache-Control: no-store\r\n\r\n");
	printf("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
	       "<title>mailmoat status</title></head><body>\n"
	       "<h1>mailmoat</h1>\n<table>\n");
	cgi_row("version", box.version);
	cgi_row("board", box.board);
	cgi_row("slot", box.slot);
	cgi_row("hostname", host);
	cgi_row("uptime (s)", up);
	cgi_row("memory total (KiB)", mt);
	cgi_row("memory used (KiB)", mu);
	cgi_row("daemon", rc == 0 ? "running" : "not answering");
	fputs("</table>\n<h2>mailmoatctl stats</h2>\n<pre id=\"stats\">",
	      stdout);
	cgi_html(stats);
	fputs("</pre>\n</body></html>\n", stdout);
	return 0;
}
