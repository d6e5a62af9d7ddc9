/*
 * cgi.c - shared helpers of the web UI CGI programs.
 *
 * Exports (cgi.h): cgi_html, cgi_error, cgi_conf_get, cgi_read_file,
 * cgi_run.  Everything writes to stdout, which BusyBox httpd sends to the
 * browser; nothing here keeps state.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgi.h"

/* cgi_html - write s to stdout with & < > " ' escaped */
void
cgi_html(const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&':
			fputs("&amp;", stdout);
			break;
		case '<':
			fputs("&lt;", stdout);
			break;
		case '>':
			fputs("&gt;", stdout);
			break;
		case '"':
			fputs("&quot;", stdout);
			break;
		case '\'':
			fputs("&#39;", stdout);
			break;
		default:
			putchar(*s);
		}
	}
}

/* cgi_error - send a Status: line and a plain-text reason; exits 0 */
void
cgi_error(int status, const char *reason)
{
	printf("Status: %d\r\nContent-Type: text/plain\r\n\r\n%s\n", status,
	       reason);
	exit(0);
}

/* trim - strip leading and trailing blanks in place */
static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' ||
	                 e[-1] == '\r'))
		*--e = '\0';
	return s;
}

/* cgi_conf_get - value of key in a "key = value" file; 0 or -ENOENT */
int
cgi_conf_get(const char *path, const char *key, char *out, size_t len)
{
	char line[1024], *k, *v, *eq;
	FILE *f = fopen(path, "r");

	if (!f)
		return -ENOENT;
	while (fgets(line, sizeof(line), f)) {
		if ((v = strchr(line, '#')))
			*v = '\0';
		eq = strchr(line, '=');
		if (!eq)
			continue;
		*eq = '\0';
		k = trim(line);
		v = trim(eq + 1);
		if (!strcmp(k, key)) {
			snprintf(out, len, "%s", v);
			fclose(f);
			return 0;
		}
	}
	fclose(f);
	return -ENOENT;
}

/* cgi_read_file - first line of a small file into out; 0 or -ENOENT */
int
cgi_read_file(const char *path, char *out, size_t len)
{
	FILE *f = fopen(path, "r");

	if (!f)
		return -ENOENT;
	if (!fgets(out, (int)len, f))
		out[0] = '\0';
	fclose(f);
	out[strcspn(out, "\r\n")] = '\0';
	return 0;
}

/* cgi_run - run argv with an empty environment, capture its output */
int
cgi_run(char *const argv[], char *out, size_t len)
{
	char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
	size_t got = 0;
	ssize_t n;
	int p[2], st, fd;
	pid_t pid;

	out[0] = '\0';
	if (pipe(p) < 0)
		return -1;
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0)
			dup2(fd, 0);
		dup2(p[1], 1);
		dup2(p[1], 2);
		close(p[0]);
		execve(argv[0], argv, envp);
		_exit(127);
	}
	close(p[1]);
	while ((n = read(p[0], out + got, len - 1 - got)) > 0) {
		got += (size_t)n;
		if (got == len - 1) {
			char sink[512];
			while (read(p[0], sink, sizeof(sink)) > 0)
				;
			break;
		}
	}
	out[got] = '\0';
	close(p[0]);
	if (waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
