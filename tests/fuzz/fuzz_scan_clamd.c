/*
 * fuzz_scan_clamd.c - libFuzzer harness for scan_clamd_parse (scanproto.c),
 * the reader of what clamd sends back.  Contract checked: fuzz_scan.h.
 * Seeds: tests/fuzz/seeds/scan_clamd/ (answers of the real daemon and the
 * faults the tests play).
 */
#include "fuzz_scan.h"

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	return fuzz_scan_one(scan_clamd_parse, data, size);
}
