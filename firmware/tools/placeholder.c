/*
 * placeholder.c - INTERIM stand-in for mailmoat and mailmoatctl, used by
 * the firmware build only while proxy/ does not link yet (firmware/app.sh
 * says so loudly and the image records DAEMON=placeholder).  It accepts
 * SMTP connections on port 25 and refuses every transaction, so nothing
 * that depends on the real daemon can pass by accident.
 */
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* main - banner, then 554 to everything; mailmoatctl variant prints {} */
int
main(int argc, char **argv)
{
#ifdef PLACEHOLDER_CTL
	puts("{\"placeholder\": true}");
	return 0;
#else
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(25) };
	static const char b[] = "220 placeholder ESMTP mailmoat placeholder"
				" (daemon not built)\r\n";
	static const char r[] = "554 5.3.0 placeholder daemon\r\n";
	char buf[512];
	int s, c, one = 1;

	s = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) || listen(s, 8))
		return 1;
	for (;;) {
		c = accept(s, NULL, NULL);
		if (c < 0)
			continue;
		if (write(c, b, sizeof(b) - 1) > 0)
			while (read(c, buf, sizeof(buf)) > 0 &&
			       strncmp(buf, "QUIT", 4) &&
			       write(c, r, sizeof(r) - 1) > 0)
				;
		close(c);
	}
#endif
}
