/*
 * fuzz_store.c - the store's loader on arbitrary bytes: the first byte
 * splits the input into a snapshot image and a journal image; whatever
 * loads must then serialise and be dropped without a crash or a leak.
 */
#include <stddef.h>
#include <stdint.h>

#include "proxy.h"

/* LLVMFuzzerTestOneInput - one input. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t cut, good, dropped;
	struct store_table *t;

	if (size < 1)
		return 0;
	cut = (size_t)data[0] * (size - 1) / 255;
	store_load_mem(data + 1, cut, data + 1 + cut, size - 1 - cut, &good,
	               &dropped);
	/* The tables the loader made must be usable. */
	t = store_table("greylist", 24);
	(void)store_get(t, "k", 1);
	store_close();
	return 0;
}
