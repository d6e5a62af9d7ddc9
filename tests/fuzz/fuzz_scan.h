/*
 * fuzz_scan.h - what the three scanner reply harnesses (fuzz_scan_*.c)
 * share: run one parser of scanproto.c on the input and check its
 * contract.
 *
 * Input: byte 0 bit 0 says eof (the scanner closed); the rest is the
 * reply.  Checked: the parser returns 0 (need more) or 1 (done), always 1
 * at eof or past SCAN_REPLY_MAX; a known verdict; every text field is
 * NUL-terminated and printable; header lines are "Name: value" CRLF
 * lines with no CR or LF inside (no header injection into the message);
 * parsing is deterministic.  ASan/UBSan do the rest.
 */
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

/* fuzz_printable - s is NUL-terminated within n and printable ASCII */
static void
fuzz_printable(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n && s[i] != '\0'; i++)
		if (s[i] < ' ' || s[i] > '~')
			abort();
	if (i == n)
		abort();
}

/* fuzz_headers - only "Name: value\r\n" lines */
static void
fuzz_headers(const char *h)
{
	while (*h != '\0') {
		const char *crlf = strstr(h, "\r\n"), *colon = strchr(h, ':');
		const char *p;

		if (crlf == NULL || colon == NULL || colon > crlf ||
		    colon == h || colon[1] != ' ')
			abort();
		for (p = h; p < crlf; p++)
			if (*p == '\r' || *p == '\n' || *p == '\0')
				abort();
		h = crlf + 2;
	}
}

/* fuzz_scan_one - the harness body for parse */
static int
fuzz_scan_one(int (*parse)(const char *, size_t, bool, struct scan_reply *),
              const unsigned char *data, size_t size)
{
	struct scan_reply a, b;
	bool eof;
	int rc;

	if (size < 1)
		return 0;
	eof = data[0] & 1;
	rc = parse((const char *)data + 1, size - 1, eof, &a);
	if (rc != 0 && rc != 1)
		abort();
	if (eof && rc != 1)
		abort();
	if (rc == 0)
		return 0;
	if (a.verdict > SCAN_FAULT)
		abort();
	fuzz_printable(a.what, sizeof(a.what));
	fuzz_printable(a.symbols, sizeof(a.symbols));
	if (memchr(a.headers, '\0', sizeof(a.headers)) == NULL)
		abort();
	fuzz_headers(a.headers);
	if (parse((const char *)data + 1, size - 1, eof, &b) != rc ||
	    b.verdict != a.verdict || strcmp(a.what, b.what) != 0 ||
	    strcmp(a.headers, b.headers) != 0)
		abort();
	return 0;
}
