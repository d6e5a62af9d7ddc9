/*
 * mailmoatctl.c - talk to the daemon's control socket.
 *
 *   mailmoatctl [-S SOCKET] COMMAND...
 *
 * Sends COMMAND (its words joined by spaces) as one line, prints the
 * answer's payload on stdout and exits 0; on an error answer (or when the
 * daemon cannot be reached) prints the reason on stderr and exits 1.
 * Commands: stats, allow add|del ADDR, block add|del ADDR,
 * greylist list|del ..., backscatter list|del ADDR, decisions [FILTER],
 * series day|month, config keys|check PATH, reload.  Plain sockets: no
 * libuv here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/mailmoat.sock"
#define MAX_ANSWER (1024 * 1024)

/* usage - how to call us; exits 2. */
static void
usage(void)
{
	fprintf(stderr,
	        "usage: mailmoatctl [-S SOCKET] COMMAND...\n"
	        "  stats                    counters as JSON\n"
	        "  allow add|del ADDR       IP, CIDR, address or @domain\n"
	        "  block add|del ADDR       likewise\n"
	        "  allow list, block list   the entries\n"
	        "  greylist list [PATTERN]  greylist triplets (glob or "
	        "substring)\n"
	        "  greylist del NET SENDER RCPT   forget one triplet\n"
	        "  greylist flush           forget every triplet\n"
	        "  backscatter list|del ADDR  backscatter blocks (IP or "
	        "domain)\n"
	        "  decisions [FILTER]       recent decisions (key=value ...)\n"
	        "  series day|month         decision counts for the charts\n"
	        "  config keys              config keys and defaults\n"
	        "  config check PATH        validate a candidate config\n"
	        "  reload                   reload the configuration\n"
	        "  (default socket: " DEFAULT_SOCKET ")\n");
	exit(2);
}

/* main - one request, one answer. */
int
main(int argc, char **argv)
{
	const char *path = DEFAULT_SOCKET;
	char req[1024], *ans;
	size_t rl = 0, al = 0;
	struct sockaddr_un sun;
	struct timeval tv = {.tv_sec = 30};
	int fd, i, c, rc = 1;
	ssize_t n;

	while ((c = getopt(argc, argv, "+S:h")) != -1) {
		if (c == 'S')
			path = optarg;
		else
			usage();
	}
	if (optind >= argc)
		usage();
	for (i = optind; i < argc; i++) {
		size_t l = strlen(argv[i]);

		if (rl + l + 2 > sizeof(req) || strpbrk(argv[i], "\r\n")) {
			fprintf(stderr, "mailmoatctl: command too long or "
			                "malformed\n");
			return 1;
		}
		if (rl > 0)
			req[rl++] = ' ';
		memcpy(req + rl, argv[i], l);
		rl += l;
	}
	req[rl++] = '\n';

	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "mailmoatctl: socket path too long: %s\n",
		        path);
		return 1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		fprintf(stderr, "mailmoatctl: cannot connect to %s: %s\n", path,
		        strerror(errno));
		return 1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (write(fd, req, rl) != (ssize_t)rl) {
		fprintf(stderr, "mailmoatctl: write to %s: %s\n", path,
		        strerror(errno));
		return 1;
	}
	ans = malloc(MAX_ANSWER + 1);
	if (ans == NULL) {
		fprintf(stderr, "mailmoatctl: out of memory\n");
		return 1;
	}
	while (al < MAX_ANSWER &&
	       (n = read(fd, ans + al, MAX_ANSWER - al)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "mailmoatctl: read from %s: %s\n", path,
			        strerror(errno));
			free(ans);
			return 1;
		}
		al += (size_t)n;
	}
	close(fd);
	ans[al] = '\0';
	if (strncmp(ans, "ok\n", 3) == 0) {
		fputs(ans + 3, stdout);
		rc = 0;
	} else if (strncmp(ans, "error: ", 7) == 0) {
		fprintf(stderr, "mailmoatctl: %s", ans + 7);
		if (al == 0 || ans[al - 1] != '\n')
			fputc('\n', stderr);
	} else {
		fprintf(stderr,
		        "mailmoatctl: unexpected answer from the daemon\n");
	}
	free(ans);
	return rc;
}
