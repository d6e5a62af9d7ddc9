/*
 * flash.c - /cgi-bin/flash: upload a signed firmware image and install it
 * with mailmoat-flash (the full firmware page is a later issue).
 *
 * POST only, with Content-Type: application/x-mailmoat-image (a browser
 * form on another site cannot send that type, so this is the CSRF guard
 * until the web UI's tokens exist) and the image as the body, at most
 * 64 MiB.  The body goes to /tmp; `mailmoat-flash -R` verifies it and
 * writes the inactive slot; on success the box reboots a second after
 * the reply.  Query "check" verifies only (mailmoat-flash -n).  The reply
 * is text/plain: mailmoat-flash's one line, status 200 or 400.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cgi.h"

#define MAX_IMAGE (64L << 20)
#define UPLOAD "/tmp/mailmoat-upload.img"

/* save_body - copy CONTENT_LENGTH bytes of stdin into UPLOAD */
static void
save_body(long len)
{
	char buf[65536];
	ssize_t n;
	int fd;

	fd = open(UPLOAD, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		cgi_error(500, "cannot store the upload");
	while (len > 0) {
		n = read(0, buf,
		         len < (long)sizeof(buf) ? (size_t)len : sizeof(buf));
		if (n <= 0)
			break;
		if (write(fd, buf, (size_t)n) != n) {
			close(fd);
			unlink(UPLOAD);
			cgi_error(500, "no room for the upload");
		}
		len -= n;
	}
	close(fd);
}

/* main - take the upload, run mailmoat-flash, reply, maybe reboot */
int
main(void)
{
	const char *m = getenv("REQUEST_METHOD");
	const char *ct = getenv("CONTENT_TYPE");
	const char *cl = getenv("CONTENT_LENGTH");
	const char *q = getenv("QUERY_STRING");
	char out[2048];
	char *argv[] = {CGI_SBIN "/mailmoat-flash", "-R", UPLOAD, NULL};
	long len;
	int rc, check = q && !strcmp(q, "check");

	if (!m || strcmp(m, "POST"))
		cgi_error(405, "refused: POST the image");
	if (!ct || strcmp(ct, "application/x-mailmoat-image"))
		cgi_error(415, "refused: Content-Type must be"
		               " application/x-mailmoat-image");
	len = cl ? strtol(cl, NULL, 10) : -1;
	if (len <= 0)
		cgi_error(411, "refused: empty upload");
	if (len > MAX_IMAGE)
		cgi_error(413, "refused: image larger than 64 MiB");
	save_body(len);
	if (check)
		argv[1] = "-n";
	rc = cgi_run(argv, out, sizeof(out));
	unlink(UPLOAD);
	printf("Status: %d\r\nContent-Type: text/plain\r\n\r\n%s",
	       rc == 0 ? 200 : 400, out);
	fflush(stdout);
	if (rc == 0 && !check && fork() == 0) {
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
