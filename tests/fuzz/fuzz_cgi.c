/*
 * fuzz_cgi.c - the web UI's parsers of network input (webui-cgi/cgi.c,
 * included whole: it is not part of the daemon's library) and the
 * decision filter of `mailmoatctl decisions` (proxy/history.c).
 *
 * The first byte picks the target: 0 urlencoded form, 1 Cookie header,
 * 2 multipart body (boundary "B"), 3 JSON walk, 4 decision filter,
 * 5 stored password line (parsed), 6 the persisted decision history blob.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../webui-cgi/cgi.c"
#include "proxy.h"

static int
mp_begin(void *arg, const char *name, const char *fn)
{
	return name[0] == 'x' ? -1 : 0;
}

static int
mp_data(void *arg, const char *p, size_t n)
{
	volatile char c = n ? p[n - 1] : 0;

	(void)c;
	return 0;
}

static int
mp_end(void *arg)
{
	return 0;
}

static void
json_fn(void *arg, int depth, char *const *path, const char *val, size_t n,
        char kind)
{
	char buf[64];
	int i;

	for (i = 0; i < depth; i++)
		(void)strlen(path[i]);
	if (kind == 's')
		cgi_json_unquote(val, n, buf, sizeof(buf));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cgi_kv kv[16];
	char *s, out[128], err[128];
	struct buf b = {0};
	static bool seeded;
	int fd;

	if (size < 1)
		return 0;
	s = malloc(size);
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	switch (data[0] % 7) {
	case 0:
		cgi_parse_urlencoded(s, kv, 16);
		break;
	case 1:
		cgi_cookie_get(s, "mmsid", out, sizeof(out));
		break;
	case 2: {
		struct cgi_mp_ops ops = {mp_begin, mp_data, mp_end, NULL};

		fd = memfd_create("fuzz", 0);
		if (fd >= 0) {
			if (write(fd, data + 1, size - 1) ==
			    (ssize_t)(size - 1)) {
				lseek(fd, 0, SEEK_SET);
				cgi_multipart(fd, "B", 1 << 20, &ops, err,
				              sizeof(err));
			}
			close(fd);
		}
		break;
	}
	case 3:
		cgi_json_walk(s, json_fn, NULL);
		break;
	case 4:
		if (!seeded) {
			history_add_fields(1800000000, "ABCDE", "192.0.2.1",
			                   "p", "<img src=x>", "<a@b>", "<c@d>",
			                   "reject", "dnsbl", "z=1");
			seeded = true;
		}
		history_decisions(&b, s);
		buf_free(&b);
		break;
	case 5: {
		/* The parser only: the hash itself is PBKDF2's 100,000 rounds
		 * (up to CGI_PBKDF2_ITER_MAX), seconds per input under ASan. */
		struct cgi_pwhash h;

		if (cgi_parse_password(s, &h) == 0 &&
		    (h.iter < 1 || h.iter > CGI_PBKDF2_ITER_MAX))
			abort();
		break;
	}
	case 6:
		if (history_load_blob(data + 1, size - 1) == 0) {
			history_decisions(&b, "action=reject");
			buf_free(&b);
		}
		break;
	}
	free(s);
	return 0;
}
