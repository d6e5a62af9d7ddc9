/*
 * fuzz_tls.c - libFuzzer harness: arbitrary bytes into a fresh server
 * tls object through tls_input(), in chunks whose size the first byte
 * picks, with hooks that write back (as the session does).  Must never
 * crash, leak or hang.  Seeds: tests/tls/seeds/ (real ClientHellos from
 * openssl s_client).  Built and run briefly by tests/tls/run.sh:
 *
 *   clang -fsanitize=fuzzer,address,undefined ... fuzz_tls.c proxy/tls.c
 *   FUZZ_TLS_DIR=/tmp/x ./fuzz_tls -runs=N tests/tls/seeds
 *
 * FUZZ_TLS_DIR is where the key and certificate are generated (once).
 */
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

/* fz_send_cb - ciphertext out: dropped. */
static void
fz_send_cb(struct tls *t, void *arg, const char *buf, size_t len)
{
}

/* fz_plain_cb - echo, as an SMTP reply would be written. */
static void
fz_plain_cb(struct tls *t, void *arg, const char *buf, size_t len)
{
	tls_write(t, buf, len);
}

/* fz_ready_cb - write a reply right away. */
static void
fz_ready_cb(struct tls *t, void *arg)
{
	tls_write(t, "220 ready\r\n", 11);
}

/* fz_error_cb - fatal error: nothing to do, the harness frees. */
static void
fz_error_cb(struct tls *t, void *arg, const char *why)
{
}

static const struct tls_hooks fz_hooks = {
        .send = fz_send_cb,
        .plain = fz_plain_cb,
        .ready = fz_ready_cb,
        .error = fz_error_cb,
};

/* fz_init - key and certificate in FUZZ_TLS_DIR (default /tmp). */
static void
fz_init(void)
{
	static char cert[512], key[512];
	const char *dir = getenv("FUZZ_TLS_DIR");
	struct config cfg = {0};

	if (!dir)
		dir = "/tmp";
	snprintf(cert, sizeof(cert), "%s/fuzz_tls.crt", dir);
	snprintf(key, sizeof(key), "%s/fuzz_tls.key", dir);
	cfg.tls_cert = cert;
	cfg.tls_key = key;
	cfg.hostname = "fuzz.test";
	log_open(false, false);
	if (tls_global_init(&cfg) != 0)
		abort();
}

/* LLVMFuzzerTestOneInput - one connection's worth of client bytes. */
int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	static int inited;
	struct tls *t;
	size_t step, off = 0, k;

	if (!inited) {
		fz_init();
		inited = 1;
	}
	t = tls_new(&fz_hooks, NULL);
	if (!t)
		abort();
	step = size ? (size_t)(data[0] % 64) + 1 : 1;
	while (off < size) {
		k = size - off < step ? size - off : step;
		tls_input(t, (const char *)data + off, k);
		off += k;
	}
	tls_free(t);
	return 0;
}
