/*
 * fuzz_scan_spamd.c - libFuzzer harness for scan_spamd_parse (scanproto.c),
 * the reader of what spamd sends back.  Contract checked: fuzz_scan.h.
 * Seeds: tests/fuzz/seeds/scan_spamd/ (answers of the real daemon and the
 * faults the tests play).
 */
#include "fuzz_scan.h"

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	return fuzz_scan_one(scan_spamd_parse, data, size);
}
