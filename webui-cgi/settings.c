/*
 * settings.c - /cgi-bin/settings: every config key in a form.
 *
 * The keys and their defaults come from the daemon (`config keys`), so a
 * key added to config.c appears here by itself; the current values are
 * the config file's (the admin's file, which this page edits).  Fields
 * are named after the keys and grouped by what they are about.
 *
 * POST (csrf checked by cgi_begin): the changed fields are put into a
 * copy of the file (other lines and comments kept; an emptied field
 * drops its line, so the key takes its default), written as a candidate
 * next to the config (same directory: relative paths mean the same),
 * and checked by the daemon's own checker (`config check CANDIDATE`).  A
 * refusal ("PATH:LINE: why") is shown next to the field of that line and
 * nothing changes.  A valid candidate replaces the config atomically
 * (temp file, fsync, rename; the file's mode and owner kept) and the
 * daemon reloads (`reload`).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgi.h"

#define MAX_KEYS 200
#define MAX_LINES 2000

struct key {
	char name[64];
	char def[256];
	char *cur;  /* value in the file, NULL: not set */
	char *want; /* submitted value */
	const char *err;
	int group;
};

static struct key keys[MAX_KEYS];
static int nkeys;

static const struct {
	const char *title;
	const char
	        *prefixes; /* space-separated: "name" exact, "name*" prefix */
} groups[] = {
        {"Network and mail flow",
         "listen backend transparent hostname local_domains local_addresses "
         "recipients recipient_verify backend_client_info bridge outbound_*"},
        {"Checks", "dns_* dnsbl helo_resolve sender_mx* spf_* "
                   "dynamic_patterns tld_list greet_pause"},
        {"Actions per check", "action_*"},
        {"Greylisting", "greylist_* pass_cache_ttl"},
        {"Backscatter and DSN", "backscatter_* dsn_*"},
        {"Scanners", "scanner*"},
        {"Lists", "allowlist blocklist"},
        {"Limits and timeouts",
         "max_* message_size_limit timeout_* backend_reuse"},
        {"TLS", "tls_*"},
        {"State, control and web UI",
         "state_dir state_flush control_socket metrics_token"},
        {"Other", ""},
};
#define NGROUPS (int)(sizeof(groups) / sizeof(groups[0]))

/* group_of - the group a key belongs to */
static int
group_of(const char *k)
{
	char pat[64];
	const char *p, *e;
	size_t n;
	int g;

	for (g = 0; g < NGROUPS - 1; g++) {
		for (p = groups[g].prefixes; *p; p = *e ? e + 1 : e) {
			e = p + strcspn(p, " ");
			n = (size_t)(e - p);
			if (n >= sizeof(pat))
				continue;
			memcpy(pat, p, n);
			pat[n] = '\0';
			if (n && pat[n - 1] == '*') {
				if (!strncmp(k, pat, n - 1))
					return g;
			} else if (!strcmp(k, pat)) {
				return g;
			}
		}
	}
	return NGROUPS - 1;
}

/* find - the key named k, or NULL */
static struct key *
find(const char *k)
{
	int i;

	for (i = 0; i < nkeys; i++)
		if (!strcmp(keys[i].name, k))
			return &keys[i];
	return NULL;
}

/* load_keys - `config keys` into keys[]; 0, or -1 (msg in *why) */
static int
load_keys(char **why)
{
	char *out, *line, *save = NULL, *tab;

	if (cgi_ctl("config keys", &out) != 0) {
		*why = out;
		return -1;
	}
	for (line = strtok_r(out, "\n", &save); line && nkeys < MAX_KEYS;
	     line = strtok_r(NULL, "\n", &save)) {
		tab = strchr(line, '\t');
		if (tab)
			*tab++ = '\0';
		snprintf(keys[nkeys].name, sizeof(keys[nkeys].name), "%s",
		         line);
		snprintf(keys[nkeys].def, sizeof(keys[nkeys].def), "%s",
		         tab ? tab : "");
		keys[nkeys].group = group_of(line);
		nkeys++;
	}
	free(out);
	return 0;
}

static char *lines[MAX_LINES];
static int nlines;

/* line_key - the key a config line sets (into k), value start or NULL */
static char *
line_key(const char *line, char *k, size_t klen)
{
	const char *p = line, *eq, *e;
	size_t n;

	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '#' || !*p)
		return NULL;
	eq = strchr(p, '=');
	if (!eq)
		return NULL;
	e = eq;
	while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	n = (size_t)(e - p);
	if (n == 0 || n >= klen)
		return NULL;
	memcpy(k, p, n);
	k[n] = '\0';
	return (char *)eq + 1;
}

/* value_of - the value text after '=' without comment and blanks */
static char *
value_of(const char *v)
{
	char *s, *e, *c;

	while (*v == ' ' || *v == '\t')
		v++;
	s = strdup(v);
	if (!s)
		cgi_error(500, "out of memory");
	for (c = s; *c; c++)
		if (*c == '#' && (c == s || c[-1] == ' ' || c[-1] == '\t')) {
			*c = '\0';
			break;
		}
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' ||
	                 e[-1] == '\n'))
		*--e = '\0';
	return s;
}

/* load_file - the config's lines, and each key's current value */
static int
load_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *line = NULL, k[64], *v;
	size_t cap = 0;
	ssize_t n;
	struct key *kk;

	if (!f)
		return -1;
	while (nlines < MAX_LINES && (n = getline(&line, &cap, f)) >= 0) {
		line[strcspn(line, "\r\n")] = '\0';
		lines[nlines++] = strdup(line);
		v = line_key(line, k, sizeof(k));
		if (v && (kk = find(k)) && !kk->cur)
			kk->cur = value_of(v);
	}
	free(line);
	fclose(f);
	return 0;
}

/* trim_dup - a copy of s without blanks around it */
static char *
trim_dup(const char *s)
{
	char *d, *e;

	while (*s == ' ' || *s == '\t')
		s++;
	d = strdup(s);
	if (!d)
		cgi_error(500, "out of memory");
	e = d + strlen(d);
	while (e > d && (e[-1] == ' ' || e[-1] == '\t'))
		*--e = '\0';
	return d;
}

/* same - two values equal (NULL and "" are the same: not set) */
static bool
same(const char *a, const char *b)
{
	return !strcmp(a ? a : "", b ? b : "");
}

/* build - the candidate text; line_of[i]: the key of candidate line i+1 */
static char *
build(struct key **line_of, int max, size_t *len)
{
	char *out = NULL, k[64];
	size_t n = 0;
	FILE *f = open_memstream(&out, &n);
	struct key *kk;
	int i, ln = 0;
	bool *done = calloc((size_t)nkeys, sizeof(bool));

	if (!f || !done)
		cgi_error(500, "out of memory");
	for (i = 0; i < nlines; i++) {
		kk = line_key(lines[i], k, sizeof(k)) ? find(k) : NULL;
		if (kk && kk->want && !done[kk - keys]) {
			done[kk - keys] = true;
			if (!same(kk->want, kk->cur)) {
				if (!kk->want[0])
					continue; /* emptied: the default */
				fprintf(f, "%s = %s\n", kk->name, kk->want);
				if (ln < max)
					line_of[ln] = kk;
				ln++;
				continue;
			}
		}
		fprintf(f, "%s\n", lines[i]);
		if (ln < max)
			line_of[ln] = kk;
		ln++;
	}
	for (i = 0; i < nkeys; i++) {
		kk = &keys[i];
		if (done[i] || kk->cur || !kk->want || !kk->want[0])
			continue;
		fprintf(f, "%s = %s\n", kk->name, kk->want);
		if (ln < max)
			line_of[ln] = kk;
		ln++;
	}
	fclose(f);
	free(done);
	*len = n;
	return out;
}

/* apply - validate and save; 0 saved, -1 refused (errors set) */
static int
apply(const char *real, char *gerr, size_t glen)
{
	static struct key *line_of[MAX_LINES + MAX_KEYS];
	char cand[PATH_MAX + 32], cmd[PATH_MAX + 64], *ans, *text, *p;
	char dir[PATH_MAX], *slash;
	struct stat st;
	size_t len, cl;
	unsigned long ln;
	int rc, i, bad = 0;

	for (i = 0; i < nkeys; i++) {
		if (keys[i].want && strpbrk(keys[i].want, "\r\n")) {
			keys[i].err = "one line only";
			bad = 1;
		}
	}
	if (bad)
		return -1;
	memset(line_of, 0, sizeof(line_of));
	text = build(line_of, MAX_LINES + MAX_KEYS, &len);
	snprintf(dir, sizeof(dir), "%s", real);
	slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	snprintf(cand, sizeof(cand), "%s/.mailmoat.conf.webui",
	         slash ? dir : ".");
	if (cgi_write_atomic(cand, text, len, 0644) < 0) {
		snprintf(gerr, glen, "cannot write %s: %s", cand,
		         strerror(errno));
		free(text);
		return -1;
	}
	if (!cgi_ctl_word(cand)) {
		snprintf(gerr, glen, "the config's path has spaces");
		unlink(cand);
		free(text);
		return -1;
	}
	snprintf(cmd, sizeof(cmd), "config check %s", cand);
	rc = cgi_ctl(cmd, &ans);
	if (rc != 0) {
		cl = strlen(cand);
		p = ans;
		if (!strncmp(ans, cand, cl) && ans[cl] == ':') {
			ln = strtoul(ans + cl + 1, &p, 10);
			if (*p == ':')
				p++;
			while (*p == ' ')
				p++;
			if (ln >= 1 && ln <= MAX_LINES + MAX_KEYS &&
			    line_of[ln - 1]) {
				line_of[ln - 1]->err = strdup(p);
				p = NULL;
			}
		}
		if (p)
			snprintf(gerr, glen, "refused: %s", p);
		else
			snprintf(gerr, glen,
			         "refused: see the message next to the field; "
			         "nothing was changed");
		free(ans);
		unlink(cand);
		free(text);
		return -1;
	}
	free(ans);
	unlink(cand);
	if (stat(real, &st) < 0)
		st.st_mode = 0644;
	if (cgi_write_atomic(real, text, len, (int)(st.st_mode & 0777)) < 0) {
		snprintf(gerr, glen, "cannot write %s: %s", real,
		         strerror(errno));
		free(text);
		return -1;
	}
	if (chown(real, st.st_uid, st.st_gid) < 0) {
		/* not root (make run, tests): the file stays ours */
	}
	free(text);
	rc = cgi_ctl("reload", &ans);
	if (rc != 0) {
		snprintf(gerr, glen, "saved, but the reload failed: %s", ans);
		free(ans);
		return -1;
	}
	free(ans);
	return 0;
}

/* field - one key's input, its default and its error */
static void
field(const struct key *k, bool show_want)
{
	const char *v = show_want && k->want ? k->want : k->cur;

	printf("<label for=\"%s\">%s</label>", k->name, k->name);
	printf("<input id=\"%s\" name=\"%s\" size=\"40\" value=\"", k->name,
	       k->name);
	cgi_html(v ? v : "");
	printf("\" placeholder=\"");
	cgi_html(k->def);
	printf("\"> <small>default: ");
	cgi_html(k->def[0] ? k->def : "(none)");
	printf("</small>");
	if (k->err) {
		printf(" <span class=\"err\" id=\"err-%s\">", k->name);
		cgi_html(k->err);
		printf("</span>");
	}
	printf("\n");
}

/* main - the form, or apply it */
int
main(void)
{
	struct cgi_req r;
	char real[PATH_MAX], gerr[PATH_MAX * 2 + 512], *why;
	const char *v;
	int i, g, ok = -2, any;

	cgi_begin(&r, true);
	gerr[0] = '\0';
	if (load_keys(&why) < 0) {
		cgi_page_begin(&r, "Settings");
		cgi_msg(false, why);
		cgi_page_end();
		return 0;
	}
	if (!realpath(cgi_conf_path(), real))
		snprintf(real, sizeof(real), "%s", cgi_conf_path());
	if (load_file(real) < 0)
		snprintf(gerr, sizeof(gerr), "cannot read %s", real);
	if (r.post && !gerr[0]) {
		for (i = 0; i < nkeys; i++)
			if ((v = cgi_kv_get(r.f, r.nf, keys[i].name)))
				keys[i].want = trim_dup(v);
		ok = apply(real, gerr, sizeof(gerr));
		if (ok == 0) {
			nlines = 0;
			for (i = 0; i < nkeys; i++) {
				free(keys[i].cur);
				keys[i].cur = NULL;
			}
			load_file(real);
		}
	}
	cgi_page_begin(&r, "Settings");
	if (ok == 0)
		cgi_msg(true, "Saved; the daemon reloaded its configuration.");
	if (gerr[0])
		cgi_msg(false, gerr);
	printf("<p><small>Config file: ");
	cgi_html(real);
	printf(". An empty field means the default. Every value is checked "
	       "by the daemon before it is saved.</small></p>\n");
	printf("<form method=\"post\" action=\"/cgi-bin/settings\" "
	       "id=\"settings\">");
	cgi_csrf_field(&r);
	for (g = 0; g < NGROUPS; g++) {
		any = 0;
		for (i = 0; i < nkeys; i++) {
			if (keys[i].group != g)
				continue;
			if (!any)
				printf("<fieldset><legend>%s</legend>\n",
				       groups[g].title);
			any = 1;
			field(&keys[i], ok == -1);
		}
		if (any)
			printf("</fieldset>\n");
	}
	printf("<p><button type=\"submit\" id=\"apply\">Apply</button></p>"
	       "</form>\n");
	cgi_page_end();
	return 0;
}
