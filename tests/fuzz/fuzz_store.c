/*
 * fuzz_store.c - the store's loader on arbitrary bytes: the first byte
 * splits the input into a snapshot image and the rest, the second byte
 * splits the rest into a journal image and a text file image (the texts
 * of a compact index, NAME.txt); whatever loads must then serve, be
 * serialised and dropped without a crash or a leak.
 */
#include <stddef.h>
#include <stdint.h>

#include "proxy.h"

/* LLVMFuzzerTestOneInput - one input. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t cut, cut2, good, dropped;
	struct store_table *t;
	struct store_index *x;
	uint32_t v[4] = {1, 2, 3, 4};

	if (size < 2)
		return 0;
	cut = (size_t)data[0] * (size - 2) / 255;
	cut2 = (size_t)data[1] * (size - 2 - cut) / 255;
	store_load_mem(data + 2, cut, data + 2 + cut, cut2, &good, &dropped);
	store_text_scan_mem(data + 2 + cut + cut2, size - 2 - cut - cut2, &good,
	                    &dropped);
	/* The tables and indexes the loader made must be usable. */
	t = store_table("greylist_net", 8);
	(void)store_get(t, "k", 1);
	x = store_index("triplets", 16, 1000);
	(void)store_iget(x, 0x1234, 0);
	store_iput(x, 0x1234, v, 0);
	store_idel(x, 0x4321);
	(void)store_icount(x);
	(void)store_isweep(x);
	store_close();
	return 0;
}
