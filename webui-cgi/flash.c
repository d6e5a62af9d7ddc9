/*
 * flash.c - /cgi-bin/flash: install a signed firmware image, for scripts
 * (the firmware tests); people use /cgi-bin/firmware.
 *
 * Needs the web UI's login (cookie mmsid) and its CSRF token in the
 * header X-Mailmoat-CSRF (a form on another site can send neither).  POST
 * only, Content-Type: application/x-mailmoat-image, the image as the body
 * (at most 64 MiB).  The body goes straight to `mailmoat-flash -R -` on
 * its stdin, which checks the header, streams the image into the
 * inactive slot and verifies it there before activating it: nothing is
 * held in RAM or spooled (there is no check-only mode: a query is
 * refused).  The reply is text/plain: the tool's one line, status 200 or
 * 400.  On success the box reboots a
 * second after the reply.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgi.h"

#define MAX_IMAGE (64L << 20)

/* run_flash - mailmoat-flash -R - with our stdin (the body); its output
 * into out; the exit status or -1 */
static int
run_flash(char *out, size_t len)
{
	char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
	const char *tool = getenv("MAILMOAT_FLASH");
	char *argv[] = {
	        (char *)(tool && *tool ? tool : CGI_SBIN "/mailmoat-flash"),
	        "-R", "-", NULL};
	size_t got = 0;
	ssize_t n;
	int p[2], st;
	pid_t pid;

	out[0] = '\0';
	fflush(NULL);
	if (pipe(p) < 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(p[1], 1);
		dup2(p[1], 2);
		close(p[0]);
		execve(argv[0], argv, envp);
		_exit(127);
	}
	close(p[1]);
	while (got + 1 < len && (n = read(p[0], out + got, len - 1 - got)) > 0)
		got += (size_t)n;
	out[got] = '\0';
	close(p[0]);
	if (waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* main - take the upload, run mailmoat-flash, reply, maybe reboot */
int
main(void)
{
	struct cgi_req r;
	const char *m = getenv("REQUEST_METHOD");
	const char *ct = getenv("CONTENT_TYPE");
	const char *cl = getenv("CONTENT_LENGTH");
	const char *q = getenv("QUERY_STRING");
	char out[2048];
	long len;
	int rc;

	if (!m || strcmp(m, "POST"))
		cgi_error(405, "refused: POST the image");
	if (!ct || strcmp(ct, "application/x-mailmoat-image"))
		cgi_error(415, "refused: Content-Type must be"
		               " application/x-mailmoat-image");
	cgi_begin(&r, true); /* the session and the CSRF header */
	if (q && *q)
		cgi_error(400, "refused: no query (the image is streamed "
		               "into the slot; there is no check-only mode)");
	len = cl ? strtol(cl, NULL, 10) : -1;
	if (len <= 0)
		cgi_error(411, "refused: empty upload");
	if (len > MAX_IMAGE)
		cgi_error(413, "refused: image larger than 64 MiB");
	rc = run_flash(out, sizeof(out));
	printf("Status: %d\r\nContent-Type: text/plain\r\n\r\n%s",
	       rc == 0 ? 200 : 400, out);
	fflush(stdout);
	if (rc == 0 && fork() == 0) {
		/* Let httpd deliver the reply, then restart into the slot. */
		setsid();
		close(0);
		close(1);
		close(2);
		sleep(1);
		execl("/sbin/reboot", "reboot", (char *)NULL);
		_exit(1);
	}
	return 0;
}
