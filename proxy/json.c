/*
 * json.c - a small, strict, bounded JSON reader (RFC 8259).
 *
 * Public (proxy.h):
 *   json_parse()    tokenize a whole document into a caller's token array
 *   json_get()      the value of a key in an object token
 *   json_str()      a string token, unescaped into a buffer (UTF-8)
 *   json_num()      a number token as a double
 *
 * The reader is for answers from scanners on the network (rspamd): it
 * accepts exactly RFC 8259 (no comments, no trailing commas, no NaN, no
 * control characters in strings, no lone surrogates), one value with
 * optional white space around it, and refuses what does not fit the
 * bounds: at most max tokens, at most JSON_MAX_DEPTH levels of nesting.
 * Nothing is allocated; tokens point into the caller's text.  Pure.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

/* The parser's cursor. */
struct json_p {
	const char *s;
	size_t n, i;
	struct json_tok *t;
	unsigned max, used;
};

static int json_value(struct json_p *p, unsigned depth);

/* json_ws - skip the four white space characters of RFC 8259 */
static void
json_ws(struct json_p *p)
{
	while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' ||
	                       p->s[p->i] == '\n' || p->s[p->i] == '\r'))
		p->i++;
}

/* json_new - the next token slot, or -1 when the array is full */
static int
json_new(struct json_p *p, enum json_type type)
{
	struct json_tok *t;

	if (p->used == p->max)
		return -1;
	t = &p->t[p->used];
	memset(t, 0, sizeof(*t));
	t->type = type;
	t->start = (uint32_t)p->i;
	return (int)p->used++;
}

/* json_hex4 - four hex digits at s into *v; false if not hex */
static bool
json_hex4(const char *s, unsigned *v)
{
	unsigned i, x = 0;

	for (i = 0; i < 4; i++) {
		char c = s[i];

		x <<= 4;
		if (c >= '0' && c <= '9')
			x |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			x |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			x |= (unsigned)(c - 'A' + 10);
		else
			return false;
	}
	*v = x;
	return true;
}

/* json_utf8_len - length of a valid UTF-8 sequence at s (n left), 0 if bad */
static size_t
json_utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0], need, cp, i;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		need = 1, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		need = 2, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		need = 3, cp = c & 0x07;
	else
		return 0;
	if (n < need + 1)
		return 0;
	for (i = 1; i <= need; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((need == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (need == 3 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return need + 1;
}

/* json_string - a string at p->i (the opening quote); -1 if malformed */
static int
json_string(struct json_p *p)
{
	int k;

	p->i++; /* the quote */
	k = json_new(p, JSON_STR);
	if (k < 0)
		return -1;
	while (p->i < p->n) {
		unsigned char c = (unsigned char)p->s[p->i];

		if (c == '"') {
			p->t[k].end = (uint32_t)p->i;
			p->i++;
			p->t[k].next = p->used;
			return k;
		}
		if (c < 0x20)
			return -1;
		if (c == '\\') {
			unsigned v, lo;

			if (p->i + 1 >= p->n)
				return -1;
			switch (p->s[p->i + 1]) {
			case '"':
			case '\\':
			case '/':
			case 'b':
			case 'f':
			case 'n':
			case 'r':
			case 't':
				p->i += 2;
				continue;
			case 'u':
				if (p->i + 6 > p->n ||
				    !json_hex4(p->s + p->i + 2, &v))
					return -1;
				p->i += 6;
				if (v >= 0xdc00 && v <= 0xdfff)
					return -1; /* lone low surrogate */
				if (v >= 0xd800 && v <= 0xdbff) {
					if (p->i + 6 > p->n ||
					    p->s[p->i] != '\\' ||
					    p->s[p->i + 1] != 'u' ||
					    !json_hex4(p->s + p->i + 2, &lo) ||
					    lo < 0xdc00 || lo > 0xdfff)
						return -1;
					p->i += 6;
				}
				continue;
			default:
				return -1;
			}
		}
		{
			size_t l = json_utf8_len((const unsigned char *)p->s +
			                                 p->i,
			                         p->n - p->i);

			if (l == 0)
				return -1;
			p->i += l;
		}
	}
	return -1;
}

/* json_number - RFC 8259 number grammar; -1 if malformed */
static int
json_number(struct json_p *p)
{
	int k = json_new(p, JSON_NUM);
	size_t d;

	if (k < 0)
		return -1;
	if (p->i < p->n && p->s[p->i] == '-')
		p->i++;
	if (p->i >= p->n)
		return -1;
	if (p->s[p->i] == '0') {
		p->i++;
	} else if (p->s[p->i] >= '1' && p->s[p->i] <= '9') {
		while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
			p->i++;
	} else {
		return -1;
	}
	if (p->i < p->n && p->s[p->i] == '.') {
		p->i++;
		for (d = 0;
		     p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9'; d++)
			p->i++;
		if (d == 0)
			return -1;
	}
	if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
		p->i++;
		if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-'))
			p->i++;
		for (d = 0;
		     p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9'; d++)
			p->i++;
		if (d == 0)
			return -1;
	}
	p->t[k].end = (uint32_t)p->i;
	p->t[k].next = p->used;
	return k;
}

/* json_word - true, false or null */
static int
json_word(struct json_p *p, const char *w, enum json_type type)
{
	size_t l = strlen(w);
	int k;

	if (p->n - p->i < l || memcmp(p->s + p->i, w, l) != 0)
		return -1;
	k = json_new(p, type);
	if (k < 0)
		return -1;
	p->i += l;
	p->t[k].end = (uint32_t)p->i;
	p->t[k].next = p->used;
	return k;
}

/* json_container - an object or an array at p->i */
static int
json_container(struct json_p *p, unsigned depth)
{
	bool obj = p->s[p->i] == '{';
	char close = obj ? '}' : ']';
	int k = json_new(p, obj ? JSON_OBJ : JSON_ARR);

	if (k < 0 || depth >= JSON_MAX_DEPTH)
		return -1;
	p->i++;
	json_ws(p);
	if (p->i < p->n && p->s[p->i] == close) {
		p->i++;
		goto done;
	}
	for (;;) {
		json_ws(p);
		if (obj) {
			if (p->i >= p->n || p->s[p->i] != '"' ||
			    json_string(p) < 0)
				return -1;
			json_ws(p);
			if (p->i >= p->n || p->s[p->i] != ':')
				return -1;
			p->i++;
		}
		if (json_value(p, depth + 1) < 0)
			return -1;
		p->t[k].n++;
		json_ws(p);
		if (p->i >= p->n)
			return -1;
		if (p->s[p->i] == ',') {
			p->i++;
			continue;
		}
		if (p->s[p->i] != close)
			return -1;
		p->i++;
		break;
	}
done:
	p->t[k].end = (uint32_t)p->i;
	p->t[k].next = p->used;
	return k;
}

/* json_value - any value at p->i, after white space */
static int
json_value(struct json_p *p, unsigned depth)
{
	json_ws(p);
	if (p->i >= p->n)
		return -1;
	switch (p->s[p->i]) {
	case '{':
	case '[':
		return json_container(p, depth);
	case '"':
		return json_string(p);
	case 't':
		return json_word(p, "true", JSON_TRUE);
	case 'f':
		return json_word(p, "false", JSON_FALSE);
	case 'n':
		return json_word(p, "null", JSON_NULL);
	default:
		return json_number(p);
	}
}

/*
 * json_parse - tokenize s[0..n) into t[0..max): the number of tokens
 * (t[0] is the document's value), or -EINVAL if it is not exactly one
 * JSON value, -E2BIG if it needs more than max tokens or nests deeper
 * than JSON_MAX_DEPTH, or is longer than 2^31 bytes.
 */
int
json_parse(const char *s, size_t n, struct json_tok *t, unsigned max)
{
	struct json_p p = {.s = s, .n = n, .t = t, .max = max};

	if (n > (size_t)1 << 31)
		return -E2BIG;
	if (json_value(&p, 0) < 0)
		return p.used == p.max ? -E2BIG : -EINVAL;
	json_ws(&p);
	if (p.i != n)
		return -EINVAL;
	return (int)p.used;
}

/* json_get - the value token of key in object token obj, or -1 */
int
json_get(const char *s, const struct json_tok *t, int obj, const char *key)
{
	size_t kl = strlen(key);
	unsigned m;
	int k;

	if (obj < 0 || t[obj].type != JSON_OBJ)
		return -1;
	for (m = 0, k = obj + 1; m < t[obj].n; m++, k = (int)t[k + 1].next) {
		/* Keys are compared raw: the names we look up need no
		 * escapes, and an escaped spelling of one is not it. */
		if (t[k].end - t[k].start == kl &&
		    memcmp(s + t[k].start, key, kl) == 0)
			return k + 1;
	}
	return -1;
}

/* json_put_utf8 - code point cp as UTF-8 at out[*o] if it fits */
static bool
json_put_utf8(char *out, size_t outlen, size_t *o, unsigned cp)
{
	unsigned char b[4];
	size_t l, i;

	if (cp < 0x80)
		b[0] = (unsigned char)cp, l = 1;
	else if (cp < 0x800)
		b[0] = (unsigned char)(0xc0 | (cp >> 6)),
		b[1] = (unsigned char)(0x80 | (cp & 0x3f)), l = 2;
	else if (cp < 0x10000)
		b[0] = (unsigned char)(0xe0 | (cp >> 12)),
		b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f)),
		b[2] = (unsigned char)(0x80 | (cp & 0x3f)), l = 3;
	else
		b[0] = (unsigned char)(0xf0 | (cp >> 18)),
		b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f)),
		b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f)),
		b[3] = (unsigned char)(0x80 | (cp & 0x3f)), l = 4;
	if (*o + l >= outlen)
		return false;
	for (i = 0; i < l; i++)
		out[(*o)++] = (char)b[i];
	return true;
}

/*
 * json_str - string token i unescaped into out (NUL-terminated); false
 * if i is not a string or it does not fit (out then holds what fit).
 * The token was validated by json_parse, so escapes are well formed.
 */
bool
json_str(const char *s, const struct json_tok *t, int i, char *out,
         size_t outlen)
{
	size_t p, o = 0;
	bool fit = true;

	if (outlen == 0)
		return false;
	out[0] = '\0';
	if (i < 0 || t[i].type != JSON_STR)
		return false;
	for (p = t[i].start; p < t[i].end && fit;) {
		unsigned cp, lo;

		if (s[p] != '\\') {
			if (o + 1 >= outlen) {
				fit = false;
				break;
			}
			out[o++] = s[p++];
			continue;
		}
		switch (s[p + 1]) {
		case 'b':
			cp = '\b';
			break;
		case 'f':
			cp = '\f';
			break;
		case 'n':
			cp = '\n';
			break;
		case 'r':
			cp = '\r';
			break;
		case 't':
			cp = '\t';
			break;
		case 'u':
			json_hex4(s + p + 2, &cp);
			if (cp >= 0xd800 && cp <= 0xdbff) {
				json_hex4(s + p + 8, &lo);
				cp = 0x10000 + ((cp - 0xd800) << 10) +
				     (lo - 0xdc00);
				p += 6;
			}
			p += 4;
			break;
		default:
			cp = (unsigned char)s[p + 1];
			break;
		}
		p += 2;
		fit = json_put_utf8(out, outlen, &o, cp);
	}
	out[o] = '\0';
	return fit;
}

/* json_num - number token i into *v; false if not a number */
bool
json_num(const char *s, const struct json_tok *t, int i, double *v)
{
	char tmp[64];
	size_t l;

	if (i < 0 || t[i].type != JSON_NUM)
		return false;
	l = t[i].end - t[i].start;
	if (l >= sizeof(tmp))
		return false;
	memcpy(tmp, s + t[i].start, l);
	tmp[l] = '\0';
	*v = strtod(tmp, NULL);
	return true;
}
