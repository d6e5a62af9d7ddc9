/*
 * addr.c - mail address and host name syntax (RFC 5321 4.1.2, RFC 1035).
 *
 * Public functions (proxy.h, addr.c block):
 *   addr_parse_path()  a reverse- or forward-path "<...>" into a struct
 *                      mailpath; ADDR_OK, or a negative enum addr_err.
 *                      ADDR_EROUTE and ADDR_ERELAY still fill the path
 *                      (the route stripped), so that MAIL FROM can ignore
 *                      a source route and RCPT TO can log what was asked.
 *   addr_is_fqdn()     a host name of RFC 1035 labels with at least one
 *                      dot and a TLD that is not all digits (HELO check).
 *   addr_tld()         the last label of a name.
 *   addr_format()      "local@domain", a quoted local part re-quoted.
 *
 * Pure functions: no allocation, no I/O, no config.  The grammar is the
 * strict RFC 5321 one (no comments, no folding white space, no obsolete
 * RFC 5322 forms); address literals are IPv4 or "IPv6:" only.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>

#include "proxy.h"

#define ADDR_LOCAL_MAX 64   /* RFC 5321 4.5.3.1.1, as sent (quotes too) */
#define ADDR_DOMAIN_MAX 255 /* RFC 5321 4.5.3.1.2 */
#define ADDR_PATH_MAX 256   /* RFC 5321 4.5.3.1.3, with "<" and ">" */
#define ADDR_LABEL_MAX 63   /* RFC 1035 2.3.4 */

/* addr_is_atext - RFC 5322 atext: letters, digits and !#$%&'*+-/=?^_`{|}~ */
static bool
addr_is_atext(unsigned char c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* addr_is_letdig - an ASCII letter or digit (no locale) */
static bool
addr_is_letdig(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9');
}

/*
 * addr_domain_len - length of the RFC 5321 Domain at s (sub-domains of
 * Let-dig [Ldh-str], 1..63 octets each, separated by single dots, no
 * trailing dot), or 0 if there is none.  *labels gets the label count.
 */
static size_t
addr_domain_len(const char *s, int *labels)
{
	size_t i = 0, start;

	*labels = 0;
	for (;;) {
		start = i;
		if (!addr_is_letdig(s[i]))
			return 0;
		while (addr_is_letdig(s[i]) || s[i] == '-')
			i++;
		if (s[i - 1] == '-' || i - start > ADDR_LABEL_MAX)
			return 0;
		(*labels)++;
		if (s[i] != '.')
			return i;
		i++;
	}
}

/* addr_ipv4_len - length of a dotted-quad Snum.Snum.Snum.Snum at s, or 0 */
static size_t
addr_ipv4_len(const char *s)
{
	size_t i = 0;
	int part, digits, val;

	for (part = 0; part < 4; part++) {
		if (part > 0) {
			if (s[i] != '.')
				return 0;
			i++;
		}
		val = 0;
		for (digits = 0; digits < 3 && s[i] >= '0' && s[i] <= '9';
		     digits++)
			val = val * 10 + (s[i++] - '0');
		if (digits == 0 || val > 255 || (s[i] >= '0' && s[i] <= '9'))
			return 0;
	}
	return i;
}

/*
 * addr_literal_len - length of the address literal at s ("[" ... "]"),
 * or 0 if it is not an IPv4 or IPv6 literal.  General address literals
 * ("[tag:...]") have no registered tag and are refused.
 */
static size_t
addr_literal_len(const char *s)
{
	const char *close;
	char v6[64];
	struct in6_addr a6;
	size_t n;

	if (s[0] != '[')
		return 0;
	n = addr_ipv4_len(s + 1);
	if (n > 0 && s[1 + n] == ']')
		return n + 2;
	if (strncasecmp(s + 1, "IPv6:", 5) != 0)
		return 0;
	close = strchr(s + 6, ']');
	if (close == NULL || (size_t)(close - (s + 6)) >= sizeof(v6))
		return 0;
	n = close - (s + 6);
	memcpy(v6, s + 6, n);
	v6[n] = '\0';
	/* inet_pton accepts leading zeros up to four hex digits and the
	 * "::" forms of RFC 4291, which is what RFC 5321 IPv6-addr means. */
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)v6[i]) && v6[i] != ':' &&
		    v6[i] != '.')
			return 0;
	if (inet_pton(AF_INET6, v6, &a6) != 1)
		return 0;
	return n + 7;
}

/*
 * addr_parse_local - the Local-part at s into p->local (unquoted form).
 * Returns its length as sent, or 0 if it is not valid.  *relay is set for
 * '%' or '!' anywhere in it, and for '@' in a quoted string.
 */
static size_t
addr_parse_local(const char *s, struct mailpath *p, bool *relay)
{
	size_t i = 0, o = 0;
	unsigned char c;

	if (s[0] == '"') {
		p->quoted = true;
		for (i = 1;; i++) {
			c = s[i];
			if (c == '"')
				break;
			if (c == '\\') {
				c = s[++i];
				if (c < 32 || c > 126)
					return 0;
			} else if (c < 32 || c > 126) {
				return 0; /* also the missing close quote */
			}
			/* A backend unquotes before its %-hack or bang-path
			 * rewriting: quoting must not hide them. */
			if (c == '@' || c == '%' || c == '!')
				*relay = true;
			if (o < sizeof(p->local) - 1)
				p->local[o++] = c;
		}
		p->local[o] = '\0';
		return i + 1;
	}
	for (;;) {
		if (!addr_is_atext(s[i]))
			return 0; /* empty atom: leading or double dot */
		while (addr_is_atext(s[i])) {
			if (s[i] == '%' || s[i] == '!')
				*relay = true;
			if (o < sizeof(p->local) - 1)
				p->local[o++] = s[i];
			i++;
		}
		if (s[i] != '.')
			break;
		if (o < sizeof(p->local) - 1)
			p->local[o++] = '.';
		i++;
	}
	p->local[o] = '\0';
	return i;
}

/* addr_parse_route - skip an A-d-l "@a,@b:" at s; its length or 0 */
static size_t
addr_parse_route(const char *s)
{
	size_t i = 0, n;
	int labels;

	for (;;) {
		if (s[i] != '@')
			return 0;
		i++;
		n = s[i] == '[' ? addr_literal_len(s + i)
		                : addr_domain_len(s + i, &labels);
		if (n == 0)
			return 0;
		i += n;
		if (s[i] == ':')
			return i + 1;
		if (s[i] != ',')
			return 0;
		i++;
	}
}

/* addr_parse_path - "<>", "<local@domain>" or "<@route:local@domain>" */
int
addr_parse_path(const char *text, struct mailpath *p, const char **end)
{
	const char *s = text, *dom;
	size_t n, route = 0, dlen;
	bool relay = false;
	int labels;

	memset(p, 0, sizeof(*p));
	if (end != NULL)
		*end = text;
	if (s[0] != '<')
		return ADDR_ESYNTAX;
	s++;
	if (s[0] == '>') {
		p->null = true;
		if (end != NULL)
			*end = s + 1;
		return ADDR_OK;
	}
	if (s[0] == '@') {
		route = addr_parse_route(s);
		if (route == 0)
			return ADDR_ESYNTAX;
		s += route;
	}
	n = addr_parse_local(s, p, &relay);
	if (n == 0 || s[n] != '@')
		goto syntax;
	/* a syntax error anywhere wins over a length error */
	dom = s + n + 1;
	dlen = dom[0] == '[' ? addr_literal_len(dom)
	                     : addr_domain_len(dom, &labels);
	if (dlen == 0 || dom[dlen] != '>')
		goto syntax;
	if (end != NULL)
		*end = dom + dlen + 1;
	if (n > ADDR_LOCAL_MAX || dlen > ADDR_DOMAIN_MAX ||
	    n + 1 + dlen + 2 > ADDR_PATH_MAX) {
		p->local[0] = '\0';
		return ADDR_ETOOLONG;
	}
	memcpy(p->domain, dom, dlen);
	p->domain[dlen] = '\0';
	util_lowercase(p->domain);
	if (route > 0)
		return ADDR_EROUTE;
	return relay ? ADDR_ERELAY : ADDR_OK;

syntax:
	memset(p, 0, sizeof(*p));
	return ADDR_ESYNTAX;
}

/* addr_is_fqdn - RFC 1035 host name, >= 2 labels, TLD not all digits */
bool
addr_is_fqdn(const char *name)
{
	size_t n;
	int labels;
	const char *tld;

	if (name == NULL)
		return false;
	n = addr_domain_len(name, &labels);
	if (n == 0 || name[n] != '\0' || n > 253 || labels < 2)
		return false;
	for (tld = addr_tld(name); *tld; tld++)
		if (!(*tld >= '0' && *tld <= '9'))
			return true;
	return false;
}

/*
 * addr_is_domain - a lenient domain: labels of letters, digits, '-' and
 * '_' (1..63 octets), no empty label, at most 253 octets; one label is
 * enough.  For names an administrator writes (config, lists).
 */
bool
addr_is_domain(const char *d)
{
	size_t len = strlen(d), label = 0;

	if (len == 0 || len > 253 || d[0] == '.' || d[len - 1] == '.')
		return false;
	for (; *d; d++) {
		char c = *d;

		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return false;
		if (++label > 63)
			return false;
	}
	return true;
}

/* addr_tld - pointer to the last label of name (all of it if no dot) */
const char *
addr_tld(const char *name)
{
	const char *dot = strrchr(name, '.');

	return dot != NULL ? dot + 1 : name;
}

/* addr_format - "local@domain"; quoted local parts re-quoted; "" for <> */
void
addr_format(const struct mailpath *p, char *out, size_t outlen)
{
	size_t o = 0;
	const char *s;

	if (outlen == 0)
		return;
	out[0] = '\0';
	if (p->null)
		return;
	/* worst case of the local part: every octet escaped, plus quotes */
	char tmp[2 * sizeof(p->local) + 3 + sizeof(p->domain)];

	if (p->quoted) {
		tmp[o++] = '"';
		for (s = p->local; *s; s++) {
			if (*s == '"' || *s == '\\')
				tmp[o++] = '\\';
			tmp[o++] = *s;
		}
		tmp[o++] = '"';
	} else {
		for (s = p->local; *s; s++)
			tmp[o++] = *s;
	}
	tmp[o++] = '@';
	for (s = p->domain; *s; s++)
		tmp[o++] = *s;
	tmp[o] = '\0';
	if (o >= outlen)
		o = outlen - 1;
	memcpy(out, tmp, o);
	out[o] = '\0';
}
