/*
 * list.c - allow/block lists and the recipients list.
 *
 * A list file holds one entry per line: an IPv4 or IPv6 address, a CIDR
 * net ("10.0.0.0/8", "2001:db8::/32"), a full address ("user@example.com")
 * or a whole domain ("@example.com").  '#' starts a comment at the start
 * of a line or after white space; blank lines are ignored.  A bad line
 * makes list_load() fail with "PATH:LINE: bad entry \"...\"".
 *
 * Entries are kept in canonical form: addresses as inet_ntop() prints
 * them (a v4-mapped IPv6 address is IPv4), nets with their host bits
 * cleared, mail addresses and domains in lower case (matching is
 * case-insensitive on both parts).  Nets live in one array sorted by
 * (family, prefix length, network); a lookup masks the address once per
 * prefix length in use and binary-searches, so a few thousand entries
 * cost a handful of comparisons.  Addresses and domains are sorted string
 * arrays.
 *
 * list_add()/list_del() change a list at run time (mailmoatctl allow|block
 * add|del); list_save() rewrites the file atomically (temp file in the
 * same directory, fsync, rename, fsync of the directory).  It blocks on
 * the disk: callers on the event loop run it in the thread pool.  A saved
 * file lists the entries in canonical, sorted order; comments of the old
 * file are not kept.
 *
 * Owns the entries it holds.  Nothing async.  Reads no config keys.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy.h"

#define LIST_LINE_MAX 1024

struct list_net {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t plen;
	uint8_t a[16]; /* network, host bits zero; 4 bytes used for v4 */
};

struct list_strv {
	char **v;
	size_t n, cap;
};

struct list {
	struct list_net *nets;
	size_t n_nets, cap_nets;
	unsigned plen_count4[33];  /* entries per v4 prefix length */
	unsigned plen_count6[129]; /* entries per v6 prefix length */
	struct list_strv addrs;    /* "local@domain", lower case */
	struct list_strv domains;  /* "domain" of "@domain", lower case */
};

/* An entry parsed from text. */
enum list_kind { LIST_NET, LIST_ADDR, LIST_DOMAIN };
struct list_entry {
	enum list_kind kind;
	struct list_net net;
	char text[LIST_LINE_MAX + 1]; /* canonical text of addr or domain */
};

/* list_new - an empty list */
struct list *
list_new(void)
{
	return xcalloc(1, sizeof(struct list));
}

/* list_strv_free - free every string and the array */
static void
list_strv_free(struct list_strv *sv)
{
	size_t i;

	for (i = 0; i < sv->n; i++)
		free(sv->v[i]);
	free(sv->v);
	sv->v = NULL;
	sv->n = sv->cap = 0;
}

/* list_free - free l and everything in it; NULL is fine */
void
list_free(struct list *l)
{
	if (l == NULL)
		return;
	free(l->nets);
	list_strv_free(&l->addrs);
	list_strv_free(&l->domains);
	free(l);
}

/* list_strv_find - index of s, or where it would go (*found false) */
static size_t
list_strv_find(const struct list_strv *sv, const char *s, bool *found)
{
	size_t lo = 0, hi = sv->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(sv->v[mid], s);

		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

/* list_strv_add - insert s in order unless present */
static void
list_strv_add(struct list_strv *sv, const char *s)
{
	bool found;
	size_t i = list_strv_find(sv, s, &found);

	if (found)
		return;
	if (sv->n == sv->cap) {
		sv->cap = sv->cap ? sv->cap * 2 : 16;
		sv->v = xrealloc(sv->v, sv->cap * sizeof(*sv->v));
	}
	memmove(sv->v + i + 1, sv->v + i, (sv->n - i) * sizeof(*sv->v));
	sv->v[i] = xstrdup(s);
	sv->n++;
}

/* list_strv_del - remove s; 0 or -ENOENT */
static int
list_strv_del(struct list_strv *sv, const char *s)
{
	bool found;
	size_t i = list_strv_find(sv, s, &found);

	if (!found)
		return -ENOENT;
	free(sv->v[i]);
	memmove(sv->v + i, sv->v + i + 1, (sv->n - i - 1) * sizeof(*sv->v));
	sv->n--;
	return 0;
}

/* list_net_cmp - order by family, prefix length, then network bytes */
static int
list_net_cmp(const struct list_net *a, const struct list_net *b)
{
	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	if (a->plen != b->plen)
		return a->plen < b->plen ? -1 : 1;
	return memcmp(a->a, b->a, sizeof(a->a));
}

/* list_net_find - index of n, or where it would go (*found false) */
static size_t
list_net_find(const struct list *l, const struct list_net *n, bool *found)
{
	size_t lo = 0, hi = l->n_nets;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = list_net_cmp(&l->nets[mid], n);

		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

/* list_mask - clear the bits of a (len bytes) beyond prefix plen */
static void
list_mask(uint8_t *a, size_t len, unsigned plen)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (plen >= 8) {
			plen -= 8;
			continue;
		}
		a[i] &= (uint8_t)(0xff00u >> plen);
		plen = 0;
	}
}

/* list_count - the per-prefix counter of net n */
static unsigned *
list_count(struct list *l, const struct list_net *n)
{
	return n->family == AF_INET ? &l->plen_count4[n->plen]
	                            : &l->plen_count6[n->plen];
}

/* list_is_local - a plausible local part: printable, no space, no '@' */
static bool
list_is_local(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > 64)
		return false;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= 0x20 || c >= 0x7f || c == '@' || c == '<' || c == '>')
			return false;
	}
	return true;
}

/* list_parse_net - "addr" or "addr/plen"; 0 or -EINVAL */
static int
list_parse_net(const char *text, struct list_net *n)
{
	char addr[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(text, '/');
	size_t alen = slash ? (size_t)(slash - text) : strlen(text);
	struct ipaddr ip;
	long plen;
	bool mapped;

	if (alen == 0 || alen >= sizeof(addr))
		return -EINVAL;
	memcpy(addr, text, alen);
	addr[alen] = '\0';
	if (ipaddr_parse(&ip, addr) != 0)
		return -EINVAL;
	/* ipaddr_parse folds ::ffff:a.b.c.d to v4: the prefix shifts too. */
	mapped = ip.family == AF_INET && strchr(addr, ':') != NULL;
	memset(n, 0, sizeof(*n));
	n->family = (uint8_t)ip.family;
	if (ip.family == AF_INET)
		memcpy(n->a, &ip.u.v4, 4);
	else
		memcpy(n->a, &ip.u.v6, 16);
	if (slash == NULL) {
		n->plen = ip.family == AF_INET ? 32 : 128;
		return 0;
	}
	if (slash[1] == '\0' || strlen(slash + 1) > 3)
		return -EINVAL;
	plen = 0;
	for (const char *p = slash + 1; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		plen = plen * 10 + (*p - '0');
	}
	if (mapped) {
		if (plen < 96 || plen > 128)
			return -EINVAL;
		plen -= 96;
	}
	if (plen > (ip.family == AF_INET ? 32 : 128))
		return -EINVAL;
	n->plen = (uint8_t)plen;
	list_mask(n->a, ip.family == AF_INET ? 4 : 16, (unsigned)plen);
	return 0;
}

/* list_parse - classify and canonicalise one entry; 0 or -EINVAL */
static int
list_parse(const char *text, struct list_entry *e)
{
	const char *at;
	size_t len = strlen(text);

	if (len == 0 || len > LIST_LINE_MAX)
		return -EINVAL;
	at = strrchr(text, '@');
	if (at == NULL) {
		e->kind = LIST_NET;
		return list_parse_net(text, &e->net);
	}
	if (!addr_is_domain(at + 1))
		return -EINVAL;
	if (at == text) {
		e->kind = LIST_DOMAIN;
		memcpy(e->text, at + 1, len);
	} else {
		if (!list_is_local(text, (size_t)(at - text)))
			return -EINVAL;
		e->kind = LIST_ADDR;
		memcpy(e->text, text, len + 1);
	}
	util_lowercase(e->text);
	return 0;
}

/* list_add_entry - insert a parsed entry unless present */
static void
list_add_entry(struct list *l, const struct list_entry *e)
{
	bool found;
	size_t i;

	switch (e->kind) {
	case LIST_ADDR:
		list_strv_add(&l->addrs, e->text);
		return;
	case LIST_DOMAIN:
		list_strv_add(&l->domains, e->text);
		return;
	case LIST_NET:
		break;
	}
	i = list_net_find(l, &e->net, &found);
	if (found)
		return;
	if (l->n_nets == l->cap_nets) {
		l->cap_nets = l->cap_nets ? l->cap_nets * 2 : 16;
		l->nets = xrealloc(l->nets, l->cap_nets * sizeof(*l->nets));
	}
	memmove(l->nets + i + 1, l->nets + i,
	        (l->n_nets - i) * sizeof(*l->nets));
	l->nets[i] = e->net;
	l->n_nets++;
	(*list_count(l, &e->net))++;
}

/* list_add - add one entry as written in a list file; 0 or -EINVAL */
int
list_add(struct list *l, const char *entry)
{
	struct list_entry e;

	if (entry == NULL || list_parse(entry, &e) != 0)
		return -EINVAL;
	list_add_entry(l, &e);
	return 0;
}

/* list_del - remove one entry (same canonical form); 0, -EINVAL, -ENOENT */
int
list_del(struct list *l, const char *entry)
{
	struct list_entry e;
	bool found;
	size_t i;

	if (entry == NULL || list_parse(entry, &e) != 0)
		return -EINVAL;
	switch (e.kind) {
	case LIST_ADDR:
		return list_strv_del(&l->addrs, e.text);
	case LIST_DOMAIN:
		return list_strv_del(&l->domains, e.text);
	case LIST_NET:
		break;
	}
	i = list_net_find(l, &e.net, &found);
	if (!found)
		return -ENOENT;
	(*list_count(l, &e.net))--;
	memmove(l->nets + i, l->nets + i + 1,
	        (l->n_nets - i - 1) * sizeof(*l->nets));
	l->n_nets--;
	return 0;
}

/* list_match_ip - is ip inside any address or net of the list? */
bool
list_match_ip(const struct list *l, const struct ipaddr *ip)
{
	struct list_net key;
	const unsigned *count;
	unsigned maxlen, plen;
	size_t alen;
	bool found;

	if (l == NULL || ip == NULL || l->n_nets == 0)
		return false;
	memset(&key, 0, sizeof(key));
	if (ip->family == AF_INET) {
		count = l->plen_count4;
		maxlen = 32;
		alen = 4;
	} else if (ip->family == AF_INET6) {
		count = l->plen_count6;
		maxlen = 128;
		alen = 16;
	} else {
		return false;
	}
	key.family = (uint8_t)ip->family;
	for (plen = 0; plen <= maxlen; plen++) {
		if (count[plen] == 0)
			continue;
		memset(key.a, 0, sizeof(key.a));
		memcpy(key.a, &ip->u, alen);
		key.plen = (uint8_t)plen;
		list_mask(key.a, alen, plen);
		list_net_find(l, &key, &found);
		if (found)
			return true;
	}
	return false;
}

/* list_match_domain - is there an "@domain" entry for domain? */
bool
list_match_domain(const struct list *l, const char *domain)
{
	char d[256];
	size_t len;
	bool found;

	if (l == NULL || domain == NULL || l->domains.n == 0)
		return false;
	len = strlen(domain);
	if (len == 0 || len >= sizeof(d))
		return false;
	memcpy(d, domain, len + 1);
	if (d[len - 1] == '.') /* a rooted name is the same domain */
		d[len - 1] = '\0';
	util_lowercase(d);
	list_strv_find(&l->domains, d, &found);
	return found;
}

/* list_match_addr - "local@domain" listed, or its domain listed */
bool
list_match_addr(const struct list *l, const char *addr)
{
	char a[LIST_LINE_MAX + 1];
	const char *at;
	size_t len;
	bool found;

	if (l == NULL || addr == NULL)
		return false;
	len = strlen(addr);
	if (len == 0 || len >= sizeof(a))
		return false;
	memcpy(a, addr, len + 1);
	util_lowercase(a);
	at = strrchr(a, '@');
	if (at == NULL)
		return false;
	if (l->addrs.n > 0) {
		list_strv_find(&l->addrs, a, &found);
		if (found)
			return true;
	}
	return list_match_domain(l, at + 1);
}

/* list_net_format - canonical text of a net: "addr" or "addr/plen" */
static void
list_net_format(const struct list_net *n, char *out, size_t outlen)
{
	char a[INET6_ADDRSTRLEN];
	unsigned full = n->family == AF_INET ? 32 : 128;

	inet_ntop(n->family, n->a, a, sizeof(a));
	if (n->plen == full)
		snprintf(out, outlen, "%s", a);
	else
		snprintf(out, outlen, "%s/%u", a, n->plen);
}

/* list_foreach - fn(text, arg) for nets, then addresses, then "@domains" */
void
list_foreach(const struct list *l, void (*fn)(const char *, void *), void *arg)
{
	char text[LIST_LINE_MAX + 2];
	size_t i;

	if (l == NULL)
		return;
	for (i = 0; i < l->n_nets; i++) {
		list_net_format(&l->nets[i], text, sizeof(text));
		fn(text, arg);
	}
	for (i = 0; i < l->addrs.n; i++)
		fn(l->addrs.v[i], arg);
	for (i = 0; i < l->domains.n; i++) {
		snprintf(text, sizeof(text), "@%s", l->domains.v[i]);
		fn(text, arg);
	}
}

/* list_load - read path into a new list; NULL and "PATH:LINE: ..." on error */
struct list *
list_load(const char *path, char *err, size_t errlen)
{
	struct list *l = NULL;
	struct list_entry *e = NULL;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	unsigned lineno = 0;
	FILE *f;

	f = fopen(path, "r");
	if (f == NULL) {
		snprintf(err, errlen, "%s: cannot open: %s", path,
		         strerror(errno));
		return NULL;
	}
	l = list_new();
	e = xmalloc(sizeof(*e));
	while ((n = getline(&line, &cap, f)) >= 0) {
		char *s = line, *end, *tok;
		char shown[84]; /* 80 characters, then "..." */

		lineno++;
		if (lineno == 1 && strncmp(s, "\xef\xbb\xbf", 3) == 0)
			s += 3; /* a UTF-8 byte order mark from an editor */
		if ((size_t)n != strlen(line)) {
			snprintf(err, errlen, "%s:%u: NUL byte in line", path,
			         lineno);
			goto fail;
		}
		/* Cut the comment: '#' at the start or after white space. */
		for (end = s; *end; end++)
			if (*end == '#' &&
			    (end == s || end[-1] == ' ' || end[-1] == '\t'))
				break;
		*end = '\0';
		while (end > s && (end[-1] == ' ' || end[-1] == '\t' ||
		                   end[-1] == '\n' || end[-1] == '\r'))
			*--end = '\0';
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == '\0')
			continue;
		tok = s;
		util_shown(tok, shown, sizeof(shown));
		if (strpbrk(tok, " \t") != NULL || list_parse(tok, e) != 0) {
			snprintf(err, errlen, "%s:%u: bad entry \"%s\"", path,
			         lineno, shown);
			goto fail;
		}
		list_add_entry(l, e);
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s:%u: read error: %s", path, lineno + 1,
		         strerror(errno));
		goto fail;
	}
	free(line);
	free(e);
	fclose(f);
	return l;

fail:
	free(line);
	free(e);
	fclose(f);
	list_free(l);
	return NULL;
}

/* list_text_line_cb - one entry line into the buf in arg */
static void
list_text_line_cb(const char *text, void *arg)
{
	buf_append(arg, text, strlen(text));
	buf_append(arg, "\n", 1);
}

/* list_text - l as the file text list_save() writes. */
void
list_text(const struct list *l, struct buf *out)
{
	static const char head[] =
	        "# written by mailmoat: one entry per line\n";

	buf_append(out, head, sizeof(head) - 1);
	list_foreach(l, list_text_line_cb, out);
}

/* list_save - atomic rewrite of path with l's entries; 0 or -errno.
 * Blocking (fsync): on the loop's behalf, list_text() there and
 * util_write_file_atomic() in the thread pool. */
int
list_save(const struct list *l, const char *path)
{
	struct buf b = {0};
	int rc;

	list_text(l, &b);
	rc = util_write_file_atomic(path, b.data, b.len, 0644);
	buf_free(&b);
	return rc;
}
