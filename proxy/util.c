/*
 * util.c - small helpers every module uses.
 *
 * xmalloc() & co never return NULL: on exhaustion they log_panic(), so
 * callers do not check.  struct buf is a growable byte buffer.  struct
 * ipaddr is an address without port; v4-mapped IPv6 addresses are folded
 * to IPv4 so that lists and greylist keys see one form.  sockaddr_parse()
 * takes numeric "host:port" forms only (no resolver: it runs at config
 * load and must not block).  util_session_id() maps a counter to a short
 * printable id that does not repeat within a process and, thanks to a
 * per-process random seed, is unlikely to repeat across restarts.
 *
 * Owns nothing global but the session-id seed.  Nothing here is async.
 * Reads no config keys.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "proxy.h"

/* xmalloc - malloc that never returns NULL (size 0 gives a valid pointer) */
void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		log_panic("out of memory (%zu bytes)", n);
	return p;
}

/* xcalloc - calloc that never returns NULL and checks the product */
void *
xcalloc(size_t nmemb, size_t size)
{
	void *p;

	if (nmemb == 0 || size == 0)
		nmemb = size = 1;
	p = calloc(nmemb, size);
	if (p == NULL)
		log_panic("out of memory (%zu x %zu bytes)", nmemb, size);
	return p;
}

/* xrealloc - realloc that never returns NULL */
void *
xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL)
		log_panic("out of memory (realloc %zu bytes)", n);
	return q;
}

/* xstrdup - strdup that never returns NULL */
char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

/* xstrndup - copy at most n bytes of s, always NUL-terminated */
char *
xstrndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = xmalloc(len + 1);

	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

/* buf_append - append n bytes, growing geometrically */
void
buf_append(struct buf *b, const void *p, size_t n)
{
	if (n == 0)
		return;
	if (b->len + n < b->len)
		log_panic("buf_append: size overflow");
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 64;

		while (cap < b->len + n)
			cap *= 2;
		b->data = xrealloc(b->data, cap);
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

/* buf_consume - drop n bytes from the front (all of them if n >= len) */
void
buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

/* buf_free - release the storage; the buf is empty and reusable after */
void
buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

/* ipaddr_fold - turn a v4-mapped IPv6 address into plain IPv4 */
static void
ipaddr_fold(struct ipaddr *ip)
{
	struct in_addr v4;

	if (ip->family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&ip->u.v6))
		return;
	memcpy(&v4, &ip->u.v6.s6_addr[12], 4);
	memset(&ip->u, 0, sizeof(ip->u));
	ip->family = AF_INET;
	ip->u.v4 = v4;
}

/* ipaddr_from_sockaddr - the address part of sa; 0 or -EAFNOSUPPORT */
int
ipaddr_from_sockaddr(struct ipaddr *ip, const struct sockaddr *sa)
{
	memset(ip, 0, sizeof(*ip));
	if (sa->sa_family == AF_INET) {
		ip->family = AF_INET;
		ip->u.v4 = ((const struct sockaddr_in *)sa)->sin_addr;
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		ip->family = AF_INET6;
		ip->u.v6 = ((const struct sockaddr_in6 *)sa)->sin6_addr;
		ipaddr_fold(ip);
		return 0;
	}
	return -EAFNOSUPPORT;
}

/* ipaddr_parse - numeric IPv4 or IPv6 text (no brackets); 0 or -EINVAL */
int
ipaddr_parse(struct ipaddr *ip, const char *text)
{
	memset(ip, 0, sizeof(*ip));
	if (text == NULL)
		return -EINVAL;
	if (inet_pton(AF_INET, text, &ip->u.v4) == 1) {
		ip->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, text, &ip->u.v6) == 1) {
		ip->family = AF_INET6;
		ipaddr_fold(ip);
		return 0;
	}
	memset(ip, 0, sizeof(*ip));
	return -EINVAL;
}

/* ipaddr_format - the usual text form; "?" for an unset address */
void
ipaddr_format(const struct ipaddr *ip, char *out, size_t outlen)
{
	if (outlen == 0)
		return;
	if (ip->family == AF_INET) {
		if (inet_ntop(AF_INET, &ip->u.v4, out, outlen) != NULL)
			return;
	} else if (ip->family == AF_INET6) {
		if (inet_ntop(AF_INET6, &ip->u.v6, out, outlen) != NULL)
			return;
	}
	snprintf(out, outlen, "?");
}

/* ipaddr_equal - same family and same bytes */
bool
ipaddr_equal(const struct ipaddr *a, const struct ipaddr *b)
{
	if (a->family != b->family)
		return false;
	if (a->family == AF_INET)
		return a->u.v4.s_addr == b->u.v4.s_addr;
	if (a->family == AF_INET6)
		return memcmp(&a->u.v6, &b->u.v6, sizeof(a->u.v6)) == 0;
	return false;
}

/* util_parse_port - decimal 0..65535, digits only; -1 when bad */
static int
util_parse_port(const char *s)
{
	long v = 0;

	if (*s == '\0' || strlen(s) > 5)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
	}
	return v > 65535 ? -1 : (int)v;
}

/*
 * sockaddr_parse - "1.2.3.4:25", "[::1]:25", "1.2.3.4", "[::1]" or a bare
 * "::1" (then default_port applies; a negative default_port makes the port
 * mandatory).  Numeric addresses only.  0 or -EINVAL.
 */
int
sockaddr_parse(struct sockaddr_storage *ss, const char *text, int default_port)
{
	char host[INET6_ADDRSTRLEN + 8];
	const char *port = NULL;
	const char *colon;
	size_t hlen;
	int p;

	memset(ss, 0, sizeof(*ss));
	if (text == NULL || *text == '\0')
		return -EINVAL;
	if (text[0] == '[') {
		const char *close = strchr(text, ']');

		if (close == NULL)
			return -EINVAL;
		hlen = (size_t)(close - text - 1);
		if (hlen == 0 || hlen >= sizeof(host))
			return -EINVAL;
		memcpy(host, text + 1, hlen);
		host[hlen] = '\0';
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != '\0')
			return -EINVAL;
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			return -EINVAL;
		s6->sin6_family = AF_INET6;
		goto port;
	}
	colon = strchr(text, ':');
	if (colon != NULL && strchr(colon + 1, ':') != NULL) {
		/* Several colons and no brackets: a bare IPv6 address. */
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		if (inet_pton(AF_INET6, text, &s6->sin6_addr) != 1)
			return -EINVAL;
		s6->sin6_family = AF_INET6;
		goto port;
	}
	hlen = colon ? (size_t)(colon - text) : strlen(text);
	if (hlen == 0 || hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, text, hlen);
	host[hlen] = '\0';
	if (colon != NULL)
		port = colon + 1;
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
		return -EINVAL;
	s4->sin_family = AF_INET;

port:
	if (port != NULL) {
		p = util_parse_port(port);
	} else {
		p = default_port;
		if (p > 65535)
			p = -1;
	}
	if (p < 0) {
		memset(ss, 0, sizeof(*ss));
		return -EINVAL;
	}
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)p);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)p);
	return 0;
}

/* util_now_ms - CLOCK_MONOTONIC in milliseconds */
uint64_t
util_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*
 * Session ids: 5 symbols of a 34-letter alphabet (0-9, A-Z without I and
 * O, which read like 1 and 0), so SID_SPACE = 34^5 distinct ids.  The id
 * of counter c is perm((c + seed) mod SID_SPACE) where perm is a bijection
 * of [0, SID_SPACE): two rounds of an affine map (multiplier coprime to
 * 34 = 2 * 17) around a rotation of the base-34 digits.  Distinct counters
 * below SID_SPACE therefore give distinct ids, and neighbouring counters
 * give unrelated-looking ids.
 */
static const char sid_alphabet[] = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";
#define SID_BASE 34u
#define SID_LEN 5
#define SID_SPACE (34u * 34u * 34u * 34u * 34u) /* 45435424 */

static uint64_t sid_seed;
static bool sid_seeded;

/* util_sid_seed - a per-process random offset, read once */
static uint64_t
util_sid_seed(void)
{
	uint64_t s = 0;

	if (sid_seeded)
		return sid_seed;
	if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != (ssize_t)sizeof(s)) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		s = (uint64_t)ts.tv_nsec * 2654435761u ^
		    (uint64_t)ts.tv_sec << 20 ^ (uint64_t)getpid();
	}
	sid_seed = s % SID_SPACE;
	sid_seeded = true;
	return sid_seed;
}

/* util_sid_rotate - rotate the 5 base-34 digits of x by two places */
static uint64_t
util_sid_rotate(uint64_t x)
{
	uint64_t hi = x / (SID_BASE * SID_BASE * SID_BASE);
	uint64_t lo = x % (SID_BASE * SID_BASE * SID_BASE);

	return lo * SID_BASE * SID_BASE + hi;
}

/* util_session_id - counter -> 5-char id, NUL-terminated in out */
void
util_session_id(uint64_t counter, char out[8])
{
	uint64_t x = (counter % SID_SPACE + util_sid_seed()) % SID_SPACE;
	int i;

	x = (x * 7368787u + 1299709u) % SID_SPACE; /* 7368787 is prime */
	x = util_sid_rotate(x);
	x = (x * 2750159u + 15485863u) % SID_SPACE; /* 2750159 is prime */
	for (i = SID_LEN - 1; i >= 0; i--) {
		out[i] = sid_alphabet[x % SID_BASE];
		x /= SID_BASE;
	}
	out[SID_LEN] = '\0';
}

/* util_strcaseeq - ASCII case-insensitive equality; NULL equals NULL only */
bool
util_strcaseeq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcasecmp(a, b) == 0;
}

/* util_data_line - next non-blank, non-comment line, trimmed */
bool
util_data_line(const char *text, size_t len, size_t *pos, int *lineno,
               size_t *a, size_t *b)
{
	while (*pos < len) {
		const char *nl = memchr(text + *pos, '\n', len - *pos);
		size_t end = nl ? (size_t)(nl - text) : len;

		++*lineno;
		*a = *pos;
		*b = end;
		*pos = end + 1;
		while (*a < *b && (text[*a] == ' ' || text[*a] == '\t'))
			++*a;
		while (*b > *a &&
		       (text[*b - 1] == ' ' || text[*b - 1] == '\t' ||
		        text[*b - 1] == '\r'))
			--*b;
		if (*a < *b && text[*a] != '#')
			return true;
	}
	return false;
}

/* util_fsync_dir - fsync the directory holding path (after a rename). */
static int
util_fsync_dir(const char *path)
{
	char dir[4096];
	char *slash;
	int fd, err = 0;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		snprintf(dir, sizeof(dir), ".");
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		err = -errno;
	close(fd);
	return err;
}

/*
 * util_write_file_atomic - write data to path with the given mode: a temp
 * file next to it, fsync, rename over, fsync the directory, so that after
 * a power cut path holds the old or the new text, never a mix.  Blocking:
 * on the event loop's behalf run it in the thread pool.  0 or -errno; on
 * error path is untouched.
 */
int
util_write_file_atomic(const char *path, const void *data, size_t len,
                       unsigned mode)
{
	char tmp[4096];
	const char *p = data;
	ssize_t w;
	int fd, err = 0;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path) >=
	    sizeof(tmp))
		return -ENAMETOOLONG;
	fd = mkstemp(tmp);
	if (fd < 0)
		return -errno;
	if (fchmod(fd, (mode_t)mode) < 0) {
		err = -errno;
		goto out;
	}
	while (len > 0) {
		w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			goto out;
		}
		p += w;
		len -= (size_t)w;
	}
	if (fsync(fd) < 0) {
		err = -errno;
		goto out;
	}
out:
	if (close(fd) < 0 && err == 0)
		err = -errno;
	if (err == 0 && rename(tmp, path) < 0)
		err = -errno;
	if (err != 0)
		unlink(tmp);
	else
		err = util_fsync_dir(path);
	return err;
}

/* util_shown - a printable, bounded copy of a bad value for error
 * messages: controls, non-ASCII and '"' become '?'; a value longer than
 * 100 characters or than out has room for ends in "..." */
const char *
util_shown(const char *s, char *out, size_t outlen)
{
	size_t o = 0, lim = outlen > 4 ? outlen - 4 : 0;

	if (lim > 100)
		lim = 100;
	for (; *s && o < lim; s++) {
		unsigned char c = (unsigned char)*s;

		out[o++] = (c < 0x20 || c >= 0x7f || c == '"') ? '?' : (char)c;
	}
	if (*s && outlen > 4) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	if (outlen > 0)
		out[o] = '\0';
	return out;
}

/* util_lowercase - ASCII lower-case s in place */
void
util_lowercase(char *s)
{
	for (; s && *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}
