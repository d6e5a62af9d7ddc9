/*
 * fuzz_json.c - libFuzzer harness for json.c, the reader of rspamd's
 * answers.  Checked: json_parse returns a token count within the array
 * or an error; every token's span lies inside the input and its next
 * index is past it and within the count; json_str/json_num on every
 * token never overrun (ASan); an object's members can all be walked.
 * Seeds: tests/fuzz/seeds/json/.
 */
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	static struct json_tok t[512];
	const char *s = (const char *)data;
	char out[64];
	double v;
	int n, i;

	n = json_parse(s, size, t, ARRAY_LEN(t));
	if (n < 0)
		return 0;
	if (n == 0 || n > (int)ARRAY_LEN(t))
		abort();
	for (i = 0; i < n; i++) {
		if (t[i].start > t[i].end || t[i].end > size ||
		    t[i].next <= (uint32_t)i || t[i].next > (uint32_t)n)
			abort();
		json_str(s, t, i, out, sizeof(out));
		json_str(s, t, i, out, 1 + (size_t)(i % 7));
		json_num(s, t, i, &v);
		if (t[i].type == JSON_OBJ)
			json_get(s, t, i, "action");
	}
	if (t[0].next != (uint32_t)n)
		abort();
	return 0;
}
