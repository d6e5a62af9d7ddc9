/*
 * dynamic.c - check "dynamic": refuse clients whose PTR name is that of a
 * dial-up / DSL / cable / DHCP pool.
 *
 * Public: chk_dynamic (check.h); the matcher dynamic_rules_parse(),
 * dynamic_rules_load(), dynamic_rules_free(), dynamic_match() (proxy.h).
 *
 * The rules come from data/dynamic-ptr.patterns (its header documents
 * the syntax); a copy is compiled in (dynamic_builtin.c) and the file
 * named by `dynamic_patterns` replaces it at startup and reload.  The
 * matcher is plain C plus POSIX <regex.h> (musl has it): exemptions,
 * IP-address fragments, pool keywords, provider regexes.
 *
 * The PTR name comes from the lookup rdns.c runs for the session
 * (rdns_lookup_start): no PTR, or a failed lookup, passes here: that is
 * rdns's business.  Every PTR name of the client is judged, confirmed or
 * not, since the pool names are what the provider publishes.
 * Stage CONNECT; reads dynamic_patterns.
 */
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define DYN_MAX_RULES 4096
#define DYN_MAX_TOKENS 64

struct dynamic_rules {
	struct strlist exempt, strong, keyword;
	regex_t *re, *xre; /* match: dynamic / not dynamic */
	char **re_src, **xre_src;
	int n_re, n_xre;
};

static struct dynamic_rules *dyn_current;

/* dyn_strlist_add - append a copy of s. */
static void
dyn_strlist_add(struct strlist *l, const char *s)
{
	l->v = xrealloc(l->v, (size_t)(l->n + 1) * sizeof(char *));
	l->v[l->n++] = xstrdup(s);
}

/* dyn_strlist_has - exact membership. */
static bool
dyn_strlist_has(const struct strlist *l, const char *s)
{
	int i;

	for (i = 0; i < l->n; i++)
		if (strcmp(l->v[i], s) == 0)
			return true;
	return false;
}

/* dyn_strlist_free - free the strings and the vector. */
static void
dyn_strlist_free(struct strlist *l)
{
	int i;

	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* dynamic_rules_free - free a rule set (NULL is fine). */
void
dynamic_rules_free(struct dynamic_rules *r)
{
	int i;

	if (r == NULL)
		return;
	dyn_strlist_free(&r->exempt);
	dyn_strlist_free(&r->strong);
	dyn_strlist_free(&r->keyword);
	for (i = 0; i < r->n_re; i++) {
		regfree(&r->re[i]);
		free(r->re_src[i]);
	}
	for (i = 0; i < r->n_xre; i++) {
		regfree(&r->xre[i]);
		free(r->xre_src[i]);
	}
	free(r->re);
	free(r->re_src);
	free(r->xre);
	free(r->xre_src);
	free(r);
}

/* dyn_word_ok - a keyword: lower-case letters and digits, 1..63. */
static bool
dyn_word_ok(const char *w)
{
	size_t n = strlen(w);

	if (n == 0 || n > 63)
		return false;
	for (; *w; w++)
		if (!((*w >= 'a' && *w <= 'z') || (*w >= '0' && *w <= '9')))
			return false;
	return true;
}

/* dyn_regex_add - compile and append one expression; 0 or -EINVAL. */
static int
dyn_regex_add(regex_t **v, char ***src, int *n, const char *ere, char *msg,
              size_t msglen)
{
	regex_t re;
	int rc;

	rc = regcomp(&re, ere, REG_EXTENDED | REG_ICASE | REG_NOSUB);
	if (rc != 0) {
		regerror(rc, &re, msg, msglen);
		return -EINVAL;
	}
	*v = xrealloc(*v, (size_t)(*n + 1) * sizeof(regex_t));
	*src = xrealloc(*src, (size_t)(*n + 1) * sizeof(char *));
	(*v)[*n] = re;
	(*src)[*n] = xstrdup(ere);
	(*n)++;
	return 0;
}

/*
 * dynamic_rules_parse - rules from text (the pattern-file syntax); name
 * is for messages.  NULL and "NAME:LINE: what" in err on a bad line.
 */
struct dynamic_rules *
dynamic_rules_parse(const char *text, size_t len, const char *name, char *err,
                    size_t errlen)
{
	struct dynamic_rules *r = xcalloc(1, sizeof(*r));
	size_t pos = 0;
	int line = 0, n_rules = 0;
	char l[1024], msg[128];

	size_t a, b;

	while (util_data_line(text, len, &pos, &line, &a, &b)) {
		char *verb, *arg;

		if (b - a >= sizeof(l) || memchr(text + a, '\0', b - a)) {
			snprintf(err, errlen, "%s:%d: line too long", name,
			         line);
			goto fail;
		}
		if (++n_rules > DYN_MAX_RULES) {
			snprintf(err, errlen, "%s:%d: too many rules", name,
			         line);
			goto fail;
		}
		memcpy(l, text + a, b - a);
		l[b - a] = '\0';
		verb = l;
		arg = l + strcspn(l, " \t");
		if (*arg)
			*arg++ = '\0';
		arg += strspn(arg, " \t");
		if (*arg == '\0') {
			snprintf(err, errlen,
			         "%s:%d: \"%.20s\" needs an argument", name,
			         line, verb);
			goto fail;
		}
		if (strcmp(verb, "regex") == 0 ||
		    strcmp(verb, "exempt-regex") == 0) {
			bool ex = verb[0] == 'e';

			if (dyn_regex_add(ex ? &r->xre : &r->re,
			                  ex ? &r->xre_src : &r->re_src,
			                  ex ? &r->n_xre : &r->n_re, arg, msg,
			                  sizeof(msg)) < 0) {
				snprintf(err, errlen, "%s:%d: bad regex: %s",
				         name, line, msg);
				goto fail;
			}
			continue;
		}
		util_lowercase(arg);
		if (!dyn_word_ok(arg)) {
			snprintf(err, errlen,
			         "%s:%d: \"%.40s\" is not a word (a-z, 0-9)",
			         name, line, arg);
			goto fail;
		}
		if (strcmp(verb, "exempt") == 0)
			dyn_strlist_add(&r->exempt, arg);
		else if (strcmp(verb, "strong") == 0)
			dyn_strlist_add(&r->strong, arg);
		else if (strcmp(verb, "keyword") == 0)
			dyn_strlist_add(&r->keyword, arg);
		else {
			snprintf(err, errlen,
			         "%s:%d: unknown directive \"%.20s\"", name,
			         line, verb);
			goto fail;
		}
	}
	return r;
fail:
	dynamic_rules_free(r);
	return NULL;
}

/* dynamic_rules_load - rules from path; NULL path: the built-in copy. */
struct dynamic_rules *
dynamic_rules_load(const char *path, char *err, size_t errlen)
{
	struct dynamic_rules *r;
	struct buf b = {0};
	char chunk[8192];
	size_t n;
	FILE *f;

	if (path == NULL)
		return dynamic_rules_parse(
		        dynamic_builtin_text, strlen(dynamic_builtin_text),
		        "(built-in dynamic patterns)", err, errlen);
	f = fopen(path, "r");
	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		buf_append(&b, chunk, n);
		if (b.len > (4u << 20)) {
			snprintf(err, errlen, "%s: file too big", path);
			fclose(f);
			buf_free(&b);
			return NULL;
		}
	}
	fclose(f);
	r = dynamic_rules_parse(b.data ? b.data : "", b.len, path, err, errlen);
	buf_free(&b);
	return r;
}

/* dyn_num - one run of digits in the host part. */
struct dyn_num {
	unsigned val;
	unsigned len;
	size_t end; /* offset just after the run */
	size_t start;
};

/*
 * dyn_ip_in_name - is the IPv4 address written into the host part?  As 3
 * or 4 consecutive decimal runs in order or reversed, as one 12-digit run
 * (zero-padded octets), or as 8 hex digits anywhere.
 */
static bool
dyn_ip_in_name(const char *host, const struct dyn_num *num, int n,
               const unsigned char o[4], char *why, size_t whylen)
{
	char hex[9];
	int i, k;

	snprintf(hex, sizeof(hex), "%02x%02x%02x%02x", o[0], o[1], o[2], o[3]);
	if (strstr(host, hex)) {
		snprintf(why, whylen, "ip-in-name (hex)");
		return true;
	}
	for (i = 0; i < n; i++) {
		if (num[i].len == 12) {
			char d[13];
			size_t s = num[i].end - 12;

			memcpy(d, host + s, 12);
			d[12] = '\0';
			for (k = 0; k < 4; k++) {
				unsigned v =
				        (unsigned)(d[k * 3] - '0') * 100 +
				        (unsigned)(d[k * 3 + 1] - '0') * 10 +
				        (unsigned)(d[k * 3 + 2] - '0');
				if (v != o[k])
					break;
			}
			if (k == 4) {
				snprintf(why, whylen, "ip-in-name (12 digits)");
				return true;
			}
		}
	}
	/* three consecutive runs equal to three consecutive octets,
	 * forwards or backwards */
	for (i = 0; i + 2 < n; i++) {
		for (k = 0; k < 2; k++) {
			bool fw = true, bw = true;

			for (int j = 0; j < 3; j++) {
				if (num[i + j].len > 3 ||
				    num[i + j].val != o[k + j])
					fw = false;
				if (num[i + j].len > 3 ||
				    num[i + j].val != o[3 - k - j])
					bw = false;
			}
			if (fw || bw) {
				snprintf(why, whylen, "ip-in-name");
				return true;
			}
		}
	}
	return false;
}

/*
 * dynamic_match - the rules, in order: fewer than three labels: no;
 * exempt-regex or an exempt token: no; a regex: yes; the client's IPv4
 * address in the host part, or four small numbers in a row: yes; a
 * strong keyword token: yes; a keyword token with a digit in its label:
 * yes.
 */
bool
dynamic_match(const struct dynamic_rules *r, const char *ptr,
              const struct ipaddr *ip, char *why, size_t whylen)
{
	char name[256], host[256], tok[256];
	struct dyn_num num[DYN_MAX_TOKENS];
	size_t n = ptr ? strlen(ptr) : 0, i, hostlen;
	int dots = 0, n_num = 0, k;
	bool digit = false, kw = false;
	char kwname[64] = "";

	if (why && whylen)
		why[0] = '\0';
	if (r == NULL || n == 0 || n >= sizeof(name))
		return false;
	memcpy(name, ptr, n + 1);
	if (name[n - 1] == '.')
		name[--n] = '\0';
	util_lowercase(name);
	for (i = 0; i < n; i++)
		if (name[i] == '.')
			dots++;
	if (dots < 2)
		return false;
	for (k = 0; k < r->n_xre; k++)
		if (regexec(&r->xre[k], name, 0, NULL, 0) == 0) {
			snprintf(why, whylen, "exempt-regex %d", k + 1);
			return false;
		}
	/* host part: everything before the last two labels */
	hostlen = n;
	for (k = 0; k < 2; k++) {
		while (hostlen > 0 && name[hostlen - 1] != '.')
			hostlen--;
		if (hostlen > 0)
			hostlen--;
	}
	memcpy(host, name, hostlen);
	host[hostlen] = '\0';

	/* tokens: exemptions and keywords */
	for (i = 0; i <= hostlen;) {
		size_t e = i, wl = 0;

		while (e < hostlen && host[e] != '.' && host[e] != '-' &&
		       host[e] != '_')
			e++;
		if (e > i) {
			memcpy(tok, host + i, e - i);
			tok[e - i] = '\0';
			while (tok[wl] >= 'a' && tok[wl] <= 'z')
				wl++;
			char word[256];
			memcpy(word, tok, wl);
			word[wl] = '\0';
			if (dyn_strlist_has(&r->exempt, tok) ||
			    (wl && dyn_strlist_has(&r->exempt, word))) {
				snprintf(why, whylen, "exempt %s",
				         wl ? word : tok);
				return false;
			}
			if (!kw &&
			    (dyn_strlist_has(&r->strong, tok) ||
			     (wl && dyn_strlist_has(&r->strong, word)))) {
				kw = true;
				snprintf(kwname, sizeof(kwname), "strong %.50s",
				         dyn_strlist_has(&r->strong, tok)
				                 ? tok
				                 : word);
			}
		}
		i = e + 1;
	}
	for (k = 0; k < r->n_re; k++)
		if (regexec(&r->re[k], name, 0, NULL, 0) == 0) {
			snprintf(why, whylen, "regex %d", k + 1);
			return true;
		}

	/* numbers in the host part */
	for (i = 0; i < hostlen && n_num < DYN_MAX_TOKENS;) {
		if (host[i] >= '0' && host[i] <= '9') {
			size_t s = i;
			unsigned v = 0;

			digit = true;
			while (i < hostlen && host[i] >= '0' &&
			       host[i] <= '9') {
				if (v < 100000)
					v = v * 10 + (unsigned)(host[i] - '0');
				i++;
			}
			num[n_num].val = v;
			num[n_num].len = (unsigned)(i - s);
			num[n_num].start = s;
			num[n_num].end = i;
			n_num++;
		} else {
			i++;
		}
	}
	if (ip && ip->family == AF_INET &&
	    dyn_ip_in_name(host, num, n_num, (const unsigned char *)&ip->u.v4,
	                   why, whylen))
		return true;
	/* four numbers 0..255 in a row, single separators */
	for (k = 0; k + 3 < n_num; k++) {
		int j;

		for (j = 0; j < 4; j++) {
			if (num[k + j].len > 3 || num[k + j].val > 255)
				break;
			if (j > 0 && num[k + j].start != num[k + j - 1].end + 1)
				break;
		}
		if (j == 4) {
			snprintf(why, whylen, "four numbers");
			return true;
		}
	}
	if (kw) {
		snprintf(why, whylen, "%s", kwname);
		return true;
	}
	if (!digit)
		return false;
	/* a weak keyword needs a digit in its own label */
	for (i = 0; i < hostlen;) {
		size_t le = i, t;
		bool label_digit = false;

		while (le < hostlen && host[le] != '.')
			le++;
		for (t = i; t < le; t++)
			if (host[t] >= '0' && host[t] <= '9')
				label_digit = true;
		for (t = i; label_digit && t < le;) {
			size_t e = t, wl = 0;

			while (e < le && host[e] != '-' && host[e] != '_')
				e++;
			if (e > t) {
				memcpy(tok, host + t, e - t);
				tok[e - t] = '\0';
				while (tok[wl] >= 'a' && tok[wl] <= 'z')
					wl++;
				bool full = dyn_strlist_has(&r->keyword, tok);
				tok[wl] = '\0';
				if (full ||
				    (wl && dyn_strlist_has(&r->keyword, tok))) {
					snprintf(why, whylen, "keyword %s",
					         tok);
					return true;
				}
			}
			t = e + 1;
		}
		i = le + 1;
	}
	return false;
}

/* ------------------------------------------------------------ the check */

/* dynamic_init - (re)load the pattern file. */
static int
dynamic_init(const struct config *cfg, char *err, size_t errlen)
{
	struct dynamic_rules *r;

	r = dynamic_rules_load(cfg->dynamic_patterns, err, errlen);
	if (r == NULL)
		return -EINVAL;
	dynamic_rules_free(dyn_current);
	dyn_current = r;
	return 0;
}

/* dynamic_done_cb - the session's PTR lookup is complete. */
static void
dynamic_done_cb(struct session *s, const struct rdns_ptr *p)
{
	char why[96];
	int i;

	/* with action_rdns = off nobody else records the confirmed name */
	if (s->ptr[0] == '\0' && p->confirmed >= 0)
		snprintf(s->ptr, sizeof(s->ptr), "%s", p->name[p->confirmed]);
	for (i = 0; i < p->n; i++) {
		if (dynamic_match(dyn_current, p->name[i], &s->client, why,
		                  sizeof(why))) {
			chk_set(s, CHK_DYNAMIC, CHK_FAIL, "550 5.7.1",
			        "You are a dynamic host - please use your "
			        "providers mailserver to send emails",
			        "ptr=%s rule=\"%s\"", p->name[i], why);
			sess_check_done(s, CHK_DYNAMIC);
			return;
		}
	}
	if (p->n == 0)
		chk_set(s, CHK_DYNAMIC, CHK_PASS, NULL, "", "no PTR");
	else
		chk_set(s, CHK_DYNAMIC, CHK_PASS, NULL, "", "ptr=%s",
		        p->name[0]);
	sess_check_done(s, CHK_DYNAMIC);
}

/* dynamic_start - wait for the shared PTR lookup. */
static void
dynamic_start(struct session *s)
{
	if (dyn_current == NULL) {
		char err[256];

		dyn_current = dynamic_rules_load(NULL, err, sizeof(err));
		if (dyn_current == NULL)
			log_panic("dynamic: built-in patterns: %s", err);
	}
	rdns_lookup_start(s, CHK_DYNAMIC, dynamic_done_cb);
}

const struct check chk_dynamic = {
        .name = "dynamic",
        .id = CHK_DYNAMIC,
        .stage = STAGE_CONNECT,
        .init = dynamic_init,
        .start = dynamic_start,
};
