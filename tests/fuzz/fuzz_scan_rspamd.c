/*
 * fuzz_scan_rspamd.c - libFuzzer harness for scan_rspamd_parse (scanproto.c),
 * the reader of what rspamd sends back.  Contract checked: fuzz_scan.h.
 * Seeds: tests/fuzz/seeds/scan_rspamd/ (answers of the real daemon and the
 * faults the tests play).
 */
#include "fuzz_scan.h"

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	return fuzz_scan_one(scan_rspamd_parse, data, size);
}
