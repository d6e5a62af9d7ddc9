/*
 * test_tls.c - tls.c against a real mbedTLS client in the same process.
 *
 * Key and certificate generation into a temp dir (modes, CN, SAN,
 * validity, reload keeps the files), then handshakes between a tls.c
 * server object and an mbedTLS client context that pins the generated
 * certificate, wired together through memory: plaintext both ways,
 * 100 KB each way in random-sized chunks, the handshake fed one byte at
 * a time, garbage and tampered records, TLS 1.1 refused, close_notify.
 * Random sizes come from a fixed seed, so a failure can be replayed.
 * Prints "# tls memory" lines with the per-session heap use (mallinfo2).
 */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "proxy.h"
#include "t.h"

static char dir[64], key_path[128], cert_path[128];
static struct config cfg;

/* ------------------------------------------------------------- helpers */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

/* rng - xorshift64*, deterministic. */
static uint32_t
rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 0x2545f4914f6cdd1dULL) >> 32);
}

/* slurp - a whole file as a NUL-terminated string (caller frees). */
static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct buf b = {0};
	char tmp[4096];
	size_t n;

	if (!f)
		return NULL;
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		buf_append(&b, tmp, n);
	fclose(f);
	buf_append(&b, "", 1);
	if (len)
		*len = b.len - 1;
	return b.data;
}

/* heap_used - bytes malloc has handed out and not got back. */
static size_t
heap_used(void)
{
	return mallinfo2().uordblks;
}

static size_t heap_peak; /* highest heap_used() seen in handshake() */

/* The server side: what the tls.c hooks saw. */
struct srv {
	struct tls *t;
	struct buf wire;  /* ciphertext from send, for the client */
	struct buf plain; /* decrypted bytes */
	int n_ready, n_error, n_send;
	char why[200];
	bool echo;          /* tls_write every plain chunk back */
	const char *hello;  /* tls_write this from the ready hook */
	struct buf reenter; /* tls_input this from the plain hook */
};

/* srv_send_cb - ciphertext for the client. */
static void
srv_send_cb(struct tls *t, void *arg, const char *buf, size_t len)
{
	struct srv *s = arg;

	s->n_send++;
	buf_append(&s->wire, buf, len);
}

/* srv_plain_cb - plaintext from the client. */
static void
srv_plain_cb(struct tls *t, void *arg, const char *buf, size_t len)
{
	struct srv *s = arg;

	buf_append(&s->plain, buf, len);
	if (s->reenter.len > 0) {
		struct buf b = s->reenter;

		s->reenter = (struct buf){0};
		tls_input(t, b.data, b.len);
		buf_free(&b);
	}
	if (s->echo)
		tls_write(t, buf, len);
}

/* srv_ready_cb - handshake done. */
static void
srv_ready_cb(struct tls *t, void *arg)
{
	struct srv *s = arg;

	s->n_ready++;
	if (s->hello)
		tls_write(t, s->hello, strlen(s->hello));
}

/* srv_error_cb - fatal error. */
static void
srv_error_cb(struct tls *t, void *arg, const char *why)
{
	struct srv *s = arg;

	s->n_error++;
	snprintf(s->why, sizeof(s->why), "%s", why);
}

static const struct tls_hooks srv_hooks = {
        .send = srv_send_cb,
        .plain = srv_plain_cb,
        .ready = srv_ready_cb,
        .error = srv_error_cb,
};

/* The client side: an mbedTLS client reading from srv.wire. */
struct cli {
	mbedtls_ssl_config conf;
	mbedtls_ssl_context ssl;
	mbedtls_x509_crt ca;
	mbedtls_entropy_context ent;
	mbedtls_ctr_drbg_context drbg;
	struct srv *srv;
	size_t pos;      /* read position in srv->wire */
	size_t max_read; /* 0: any; else at most this per recv */
	struct buf out;  /* ciphertext for the server */
};

/* cli_send_cb - client ciphertext, collected for tls_input. */
static int
cli_send_cb(void *p, const unsigned char *buf, size_t len)
{
	struct cli *c = p;

	buf_append(&c->out, buf, len);
	return (int)len;
}

/* cli_recv_cb - client reads what the server sent. */
static int
cli_recv_cb(void *p, unsigned char *buf, size_t len)
{
	struct cli *c = p;
	size_t avail = c->srv->wire.len - c->pos;

	if (avail == 0)
		return MBEDTLS_ERR_SSL_WANT_READ;
	if (len > avail)
		len = avail;
	if (c->max_read && len > c->max_read)
		len = c->max_read;
	memcpy(buf, c->srv->wire.data + c->pos, len);
	c->pos += len;
	return (int)len;
}

/* cli_init - a client that trusts exactly the generated certificate. */
static int
cli_init(struct cli *c, struct srv *s, int max_minor)
{
	int r;

	memset(c, 0, sizeof(*c));
	c->srv = s;
	mbedtls_ssl_config_init(&c->conf);
	mbedtls_ssl_init(&c->ssl);
	mbedtls_x509_crt_init(&c->ca);
	mbedtls_entropy_init(&c->ent);
	mbedtls_ctr_drbg_init(&c->drbg);
	if ((r = mbedtls_ctr_drbg_seed(&c->drbg, mbedtls_entropy_func, &c->ent,
	                               NULL, 0)) != 0 ||
	    (r = mbedtls_x509_crt_parse_file(&c->ca, cert_path)) != 0 ||
	    (r = mbedtls_ssl_config_defaults(&c->conf, MBEDTLS_SSL_IS_CLIENT,
	                                     MBEDTLS_SSL_TRANSPORT_STREAM,
	                                     MBEDTLS_SSL_PRESET_DEFAULT)) != 0)
		return r;
	mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, &c->drbg);
	mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&c->conf, &c->ca, NULL);
	if (max_minor) {
		mbedtls_ssl_conf_min_version(&c->conf, 3, max_minor);
		mbedtls_ssl_conf_max_version(&c->conf, 3, max_minor);
	}
	if ((r = mbedtls_ssl_setup(&c->ssl, &c->conf)) != 0 ||
	    (r = mbedtls_ssl_set_hostname(&c->ssl, cfg.hostname)) != 0)
		return r;
	mbedtls_ssl_set_bio(&c->ssl, c, cli_send_cb, cli_recv_cb, NULL);
	return 0;
}

/* cli_free - everything cli_init set up. */
static void
cli_free(struct cli *c)
{
	mbedtls_ssl_free(&c->ssl);
	mbedtls_ssl_config_free(&c->conf);
	mbedtls_x509_crt_free(&c->ca);
	mbedtls_ctr_drbg_free(&c->drbg);
	mbedtls_entropy_free(&c->ent);
	buf_free(&c->out);
}

/*
 * cli_push - hand the client's pending ciphertext to the server, in
 * chunks of at most chunk bytes (0: all at once; -1: random sizes).
 */
static void
cli_push(struct cli *c, int chunk)
{
	size_t off = 0, n;

	while (off < c->out.len) {
		n = c->out.len - off;
		if (chunk > 0 && n > (size_t)chunk)
			n = (size_t)chunk;
		else if (chunk < 0) {
			size_t r = 1 + rng() % 3000;
			n = n < r ? n : r;
		}
		tls_input(c->srv->t, c->out.data + off, n);
		off += n;
	}
	c->out.len = 0;
}

/* handshake - step both sides until done or stuck; client's result. */
static int
handshake(struct cli *c, int chunk)
{
	int r, rounds;

	for (rounds = 0; rounds < 100000; rounds++) {
		r = mbedtls_ssl_handshake(&c->ssl);
		if (heap_used() > heap_peak)
			heap_peak = heap_used();
		cli_push(c, chunk);
		if (heap_used() > heap_peak)
			heap_peak = heap_used();
		if (r == 0)
			return 0;
		if (r != MBEDTLS_ERR_SSL_WANT_READ &&
		    r != MBEDTLS_ERR_SSL_WANT_WRITE)
			return r;
		if (c->srv->n_error)
			return -1;
	}
	return -2;
}

/* cli_read_all - decrypt everything the server sent so far into out. */
static int
cli_read_all(struct cli *c, struct buf *out)
{
	unsigned char tmp[5000];
	int r;

	for (;;) {
		r = mbedtls_ssl_read(&c->ssl, tmp, 1 + rng() % sizeof(tmp));
		if (r == MBEDTLS_ERR_SSL_WANT_READ)
			return 0;
		if (r <= 0)
			return r ? r : -1;
		buf_append(out, tmp, (size_t)r);
	}
}

/* cli_write_all - encrypt all of buf (ssl_write may take part of it). */
static int
cli_write_all(struct cli *c, const char *buf, size_t len)
{
	int r;

	while (len > 0) {
		r = mbedtls_ssl_write(&c->ssl, (const unsigned char *)buf, len);
		if (r < 0)
			return r;
		buf += r;
		len -= (size_t)r;
	}
	return 0;
}

/* pair_new - a fresh server object and a client for it. */
static int
pair_new(struct srv *s, struct cli *c, int max_minor)
{
	memset(s, 0, sizeof(*s));
	s->t = tls_new(&srv_hooks, s);
	if (!s->t)
		return -1;
	return cli_init(c, s, max_minor);
}

/* pair_free - both sides. */
static void
pair_free(struct srv *s, struct cli *c)
{
	tls_free(s->t);
	s->t = NULL;
	buf_free(&s->wire);
	buf_free(&s->plain);
	cli_free(c);
}

/* ------------------------------------------------------------- cases */

/* test_no_init - before init: not available, tls_new gives NULL. */
static void
test_no_init(void)
{
	t_begin("no init: not available, tls_new is NULL");
	T_CHECK(!tls_available(), "available before init");
	T_CHECK(tls_new(&srv_hooks, NULL) == NULL, "tls_new not NULL");
	t_end();

	t_begin("init without tls_cert/tls_key: -EINVAL");
	T_INTEQ(tls_global_init(&cfg), -EINVAL);
	T_CHECK(!tls_available(), "available");
	t_end();
}

/* test_generate - first init creates key and certificate. */
static void
test_generate(void)
{
	mbedtls_x509_crt crt;
	mbedtls_pk_context pk;
	const mbedtls_x509_sequence *san;
	struct stat st;
	char dn[300];
	int r;

	t_begin("generate: init creates key and cert");
	cfg.tls_key = key_path;
	cfg.tls_cert = cert_path;
	T_INTEQ(tls_global_init(&cfg), 0);
	T_CHECK(tls_available(), "not available after init");
	T_CHECK(stat(key_path, &st) == 0, "no key file");
	T_INTEQ(st.st_mode & 0777, 0600);
	T_CHECK(stat(cert_path, &st) == 0, "no cert file");
	T_INTEQ(st.st_mode & 0077 & ~0044, 0); /* not group/other writable */
	t_end();

	t_begin("generate: no temp files left behind");
	{
		char cmd[200];
		snprintf(cmd, sizeof(cmd), "test $(ls -A %s | wc -l) = 2", dir);
		T_INTEQ(system(cmd), 0);
	}
	t_end();

	t_begin("generate: cert parses, CN and SAN are the hostname");
	mbedtls_x509_crt_init(&crt);
	r = mbedtls_x509_crt_parse_file(&crt, cert_path);
	T_INTEQ(r, 0);
	if (r == 0) {
		mbedtls_x509_dn_gets(dn, sizeof(dn), &crt.subject);
		T_STREQ(dn, "CN=mx.example.test");
		mbedtls_x509_dn_gets(dn, sizeof(dn), &crt.issuer);
		T_STREQ(dn, "CN=mx.example.test");
		san = &crt.subject_alt_names;
		T_CHECK(san->buf.p != NULL, "no subjectAltName");
		if (san->buf.p) {
			T_INTEQ(san->buf.tag,
			        MBEDTLS_ASN1_CONTEXT_SPECIFIC | 2);
			T_CHECK(san->buf.len == strlen("mx.example.test") &&
			                memcmp(san->buf.p, "mx.example.test",
			                       san->buf.len) == 0,
			        "SAN is not DNS:mx.example.test");
			T_CHECK(san->next == NULL, "more than one SAN");
		}
		T_INTEQ(crt.valid_to.year - crt.valid_from.year, 10);
		T_INTEQ(crt.version, 3);
		T_CHECK(!mbedtls_x509_time_is_future(&crt.valid_from),
		        "not valid yet");
		T_CHECK(mbedtls_pk_get_type(&crt.pk) == MBEDTLS_PK_ECKEY,
		        "not an EC key");
		T_CHECK(mbedtls_pk_ec(crt.pk)->grp.id ==
		                MBEDTLS_ECP_DP_SECP256R1,
		        "not P-256");
		T_CHECK(crt.serial.len >= 8, "serial of %zu bytes",
		        crt.serial.len);
		/* Self-signed: verifies against itself. */
		uint32_t flags = 0;
		T_INTEQ(mbedtls_x509_crt_verify(&crt, &crt, NULL,
		                                "mx.example.test", &flags, NULL,
		                                NULL),
		        0);
	}
	t_end();

	t_begin("generate: key file is the cert's key");
	mbedtls_pk_init(&pk);
	r = mbedtls_pk_parse_keyfile(&pk, key_path, NULL);
	T_INTEQ(r, 0);
	if (r == 0)
		T_INTEQ(mbedtls_pk_check_pair(&crt.pk, &pk), 0);
	mbedtls_pk_free(&pk);
	mbedtls_x509_crt_free(&crt);
	t_end();
}

/* test_reload - a second init loads the files instead of regenerating. */
static void
test_reload(void)
{
	char *k1, *c1, *k2, *c2;
	struct stat s1, s2;

	t_begin("second init loads, does not regenerate");
	k1 = slurp(key_path, NULL);
	c1 = slurp(cert_path, NULL);
	stat(cert_path, &s1);
	T_INTEQ(tls_global_init(&cfg), 0);
	k2 = slurp(key_path, NULL);
	c2 = slurp(cert_path, NULL);
	stat(cert_path, &s2);
	T_CHECK(k1 && k2 && strcmp(k1, k2) == 0, "key changed");
	T_CHECK(c1 && c2 && strcmp(c1, c2) == 0, "cert changed");
	T_INTEQ(s1.st_ino, s2.st_ino);
	free(k2);
	free(c2);
	t_end();

	t_begin("missing cert: new cert for the existing key");
	unlink(cert_path);
	T_INTEQ(tls_global_init(&cfg), 0);
	k2 = slurp(key_path, NULL);
	c2 = slurp(cert_path, NULL);
	T_CHECK(k1 && k2 && strcmp(k1, k2) == 0, "key changed");
	T_CHECK(c2 && c1 && strcmp(c1, c2) != 0, "cert not regenerated");
	free(k1);
	free(c1);
	free(k2);
	free(c2);
	t_end();
}

/* test_bad_files - broken files are an error and stay untouched. */
static void
test_bad_files(void)
{
	struct config bad = cfg;
	char kp[160], cp[160], *k;
	FILE *f;

	snprintf(kp, sizeof(kp), "%s/bad.key", dir);
	snprintf(cp, sizeof(cp), "%s/bad.crt", dir);
	bad.tls_key = kp;
	bad.tls_cert = cp;

	t_begin("garbage key file: -EINVAL, file kept, old setup kept");
	f = fopen(kp, "w");
	fputs("-----BEGIN EC PRIVATE KEY-----\nnot base64 at all\n"
	      "-----END EC PRIVATE KEY-----\n",
	      f);
	fclose(f);
	T_INTEQ(tls_global_init(&bad), -EINVAL);
	k = slurp(kp, NULL);
	T_CHECK(k && strstr(k, "not base64"), "key file overwritten");
	free(k);
	T_CHECK(tls_available(), "old setup dropped");
	t_end();

	t_begin("garbage cert file: -EINVAL");
	unlink(kp);
	f = fopen(cp, "w");
	fputs("hello\n", f);
	fclose(f);
	/* The key is missing, so a new key and cert are made: the garbage
	 * cert is replaced (it could never match a new key). */
	T_INTEQ(tls_global_init(&bad), 0);
	T_INTEQ(tls_global_init(&cfg), 0); /* back to the main pair */
	f = fopen(cp, "w");
	fputs("hello\n", f);
	fclose(f);
	T_INTEQ(tls_global_init(&bad), -EINVAL);
	t_end();

	t_begin("key path is a directory or a FIFO: -EINVAL, no hang");
	{
		struct config odd = cfg;
		char fifo[160];

		odd.tls_key = dir;
		T_INTEQ(tls_global_init(&odd), -EINVAL);
		snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
		T_CHECK(mkfifo(fifo, 0600) == 0, "mkfifo");
		odd.tls_key = fifo;
		T_INTEQ(tls_global_init(&odd), -EINVAL);
		unlink(fifo);
		T_CHECK(tls_available(), "old setup dropped");
	}
	t_end();

	t_begin("cert does not match key: -EINVAL");
	bad.tls_cert = cert_path; /* cert of the main key */
	T_INTEQ(tls_global_init(&bad), -EINVAL);
	t_end();

	t_begin("key two directories deep in nothing: -ENOENT, old kept");
	snprintf(kp, sizeof(kp), "%s/nodir/sub/x.key", dir);
	snprintf(cp, sizeof(cp), "%s/nodir/sub/x.crt", dir);
	bad.tls_key = kp;
	bad.tls_cert = cp;
	T_INTEQ(tls_global_init(&bad), -ENOENT);
	T_CHECK(tls_available(), "old setup dropped");
	t_end();

	t_begin("missing last directory is created (0700)");
	{
		struct stat st;
		char d[96];

		snprintf(d, sizeof(d), "%s/newdir", dir);
		snprintf(kp, sizeof(kp), "%s/key.pem", d);
		snprintf(cp, sizeof(cp), "%s/cert.pem", d);
		T_INTEQ(tls_global_init(&bad), 0);
		T_CHECK(stat(d, &st) == 0, "no %s", d);
		T_INTEQ(st.st_mode & 0777, 0700);
		T_CHECK(access(kp, R_OK) == 0 && access(cp, R_OK) == 0,
		        "files not written");
		unlink(kp);
		unlink(cp);
		rmdir(d);
		T_INTEQ(tls_global_init(&cfg), 0); /* back to the main pair */
	}
	t_end();

	t_begin("hostname unfit for a certificate: -EINVAL");
	snprintf(kp, sizeof(kp), "%s/h.key", dir);
	snprintf(cp, sizeof(cp), "%s/h.crt", dir);
	bad.hostname = "bad,name=x";
	T_INTEQ(tls_global_init(&bad), -EINVAL);
	T_CHECK(access(kp, F_OK) != 0, "a key was written anyway");
	unlink(kp);
	t_end();

	unlink(kp);
	unlink(cp);
	snprintf(kp, sizeof(kp), "%s/bad.key", dir);
	snprintf(cp, sizeof(cp), "%s/bad.crt", dir);
	unlink(kp);
	unlink(cp);
}

/* test_handshake - pinned client, both directions, version and suite. */
static void
test_handshake(void)
{
	struct srv s;
	struct cli c;
	struct buf got = {0};

	t_begin("handshake: client pins the cert, TLS 1.2 ECDHE-ECDSA "
	        "AES-256-GCM");
	T_INTEQ(pair_new(&s, &c, 0), 0);
	T_STREQ(tls_version(s.t), "-");
	T_STREQ(tls_cipher(s.t), "-");
	T_INTEQ(handshake(&c, 0), 0);
	T_INTEQ(s.n_ready, 1);
	T_INTEQ(s.n_error, 0);
	T_INTEQ(mbedtls_ssl_get_verify_result(&c.ssl), 0);
	T_STREQ(tls_version(s.t), "TLSv1.2");
	T_STREQ(tls_cipher(s.t), "TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384");
	T_STREQ(mbedtls_ssl_get_ciphersuite(&c.ssl),
	        "TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384");
	t_end();

	t_begin("plaintext client -> server");
	T_INTEQ(cli_write_all(&c, "EHLO client.test\r\n", 18), 0);
	cli_push(&c, 0);
	buf_append(&s.plain, "", 1);
	T_STREQ(s.plain.data, "EHLO client.test\r\n");
	s.plain.len = 0;
	t_end();

	t_begin("plaintext server -> client");
	tls_write(s.t, "250 mx.example.test\r\n", 21);
	T_INTEQ(cli_read_all(&c, &got), 0);
	buf_append(&got, "", 1);
	T_STREQ(got.data, "250 mx.example.test\r\n");
	T_INTEQ(s.n_error, 0);
	t_end();

	t_begin("close_notify from the client: error hook, once");
	mbedtls_ssl_close_notify(&c.ssl);
	cli_push(&c, 0);
	T_INTEQ(s.n_error, 1);
	T_CHECK(strstr(s.why, "close_notify") != NULL, "why: %s", s.why);
	tls_input(s.t, "x", 1); /* ignored after the error */
	T_INTEQ(s.n_error, 1);
	t_end();

	buf_free(&got);
	pair_free(&s, &c);
}

/*
 * test_memory - heap bytes per server session (glibc mallinfo2; under
 * ASan or Valgrind it reads 0 and only the leak check there counts).
 * Runs after a first handshake, so the global key's cached ECP tables
 * are not counted as per-session.
 */
static void
test_memory(void)
{
	struct srv s;
	struct cli c;
	struct buf got = {0};
	size_t h0, h1, h2, h3, h4;

	t_begin("memory per session (see # lines)");
	memset(&s, 0, sizeof(s));
	h0 = heap_used();
	s.t = tls_new(&srv_hooks, &s);
	h1 = heap_used();
	T_CHECK(s.t != NULL, "tls_new");
	T_INTEQ(cli_init(&c, &s, 0), 0);
	h2 = heap_used();
	heap_peak = 0;
	T_INTEQ(handshake(&c, 0), 0);
	T_INTEQ(cli_write_all(&c, "NOOP\r\n", 6), 0);
	cli_push(&c, 0);
	tls_write(s.t, "250 ok\r\n", 8);
	T_INTEQ(cli_read_all(&c, &got), 0);
	buf_free(&got);
	buf_free(&s.wire);
	buf_free(&s.plain);
	cli_free(&c);
	h3 = heap_used();
	tls_free(s.t);
	h4 = heap_used();
	if (h1 > h0) {
		printf("# tls memory: server session idle after tls_new: "
		       "%zu bytes\n",
		       h1 - h0);
		printf("# tls memory: handshake peak above both idle contexts "
		       "(server + client): %zu bytes\n",
		       heap_peak > h2 ? heap_peak - h2 : 0);
		printf("# tls memory: server session established: %zu bytes\n",
		       h3 - h0);
		/* Not a leak check (ASan and Valgrind do that): glibc counts
		 * chunks parked in its tcache as in use. */
		printf("# tls memory: still counted after tls_free (glibc "
		       "tcache): %zd bytes\n",
		       (ssize_t)(h4 - h0));
		T_CHECK(h3 - h0 < 48 * 1024, "%zu bytes per session", h3 - h0);
	}
	t_end();
}

/* test_bulk - 100 KB each way in random-sized chunks. */
static void
test_bulk(void)
{
	enum { N = 100 * 1024 };
	struct srv s;
	struct cli c;
	struct buf got = {0};
	char *data = xmalloc(N);
	size_t i, off, n;

	for (i = 0; i < N; i++)
		data[i] = (char)rng();

	t_begin("100 KB client -> server, random ciphertext chunks");
	T_INTEQ(pair_new(&s, &c, 0), 0);
	T_INTEQ(handshake(&c, -1), 0);
	for (off = 0; off < N; off += n) {
		n = 1 + rng() % 20000;
		if (n > N - off)
			n = N - off;
		T_INTEQ(cli_write_all(&c, data + off, n), 0);
		cli_push(&c, -1);
	}
	T_INTEQ(s.plain.len, N);
	T_CHECK(s.plain.len == N && memcmp(s.plain.data, data, N) == 0,
	        "plaintext differs");
	T_INTEQ(s.n_error, 0);
	t_end();

	t_begin("100 KB server -> client, random tls_write sizes");
	for (off = 0; off < N; off += n) {
		n = 1 + rng() % 40000;
		if (n > N - off)
			n = N - off;
		tls_write(s.t, data + off, n);
		if (rng() % 2)
			T_INTEQ(cli_read_all(&c, &got), 0);
	}
	T_INTEQ(cli_read_all(&c, &got), 0);
	T_INTEQ(got.len, N);
	T_CHECK(got.len == N && memcmp(got.data, data, N) == 0,
	        "plaintext differs");
	t_end();

	t_begin("echo: tls_write from inside the plain hook");
	s.echo = true;
	got.len = 0;
	T_INTEQ(cli_write_all(&c, data, N), 0);
	cli_push(&c, -1);
	T_INTEQ(cli_read_all(&c, &got), 0);
	T_INTEQ(got.len, N);
	T_CHECK(got.len == N && memcmp(got.data, data, N) == 0, "echo differs");
	T_INTEQ(s.n_error, 0);
	t_end();

	t_begin("tls_input re-entered from the plain hook: order kept");
	s.echo = false;
	s.plain.len = 0;
	T_INTEQ(cli_write_all(&c, "ONE\r\n", 5), 0);
	{
		struct buf rec1 = c.out;

		c.out = (struct buf){0};
		T_INTEQ(cli_write_all(&c, "TWO\r\n", 5), 0);
		s.reenter = c.out;
		c.out = (struct buf){0};
		tls_input(s.t, rec1.data, rec1.len);
		buf_free(&rec1);
	}
	buf_append(&s.plain, "", 1);
	T_STREQ(s.plain.data, "ONE\r\nTWO\r\n");
	T_INTEQ(s.n_error, 0);
	t_end();

	t_begin("tampered record after the handshake: error hook");
	T_INTEQ(cli_write_all(&c, "RSET\r\n", 6), 0);
	T_CHECK(c.out.len > 10, "no record");
	c.out.data[c.out.len - 3] ^= 0x40;
	cli_push(&c, 0);
	T_INTEQ(s.n_error, 1);
	T_CHECK(s.why[0] != '\0', "no reason");
	t_end();

	pair_free(&s, &c);
	buf_free(&got);
	free(data);
}

/* test_bytewise - every byte of the handshake a separate tls_input. */
static void
test_bytewise(void)
{
	struct srv s;
	struct cli c;
	struct buf got = {0};
	int sends;

	t_begin("handshake one byte at a time, both directions");
	T_INTEQ(pair_new(&s, &c, 0), 0);
	c.max_read = 1;
	s.hello = "220 early\r\n";
	tls_write(s.t, "queued before ready\r\n", 21);
	T_INTEQ(handshake(&c, 1), 0);
	T_INTEQ(s.n_ready, 1);
	T_INTEQ(s.n_error, 0);
	sends = s.n_send;
	T_INTEQ(cli_read_all(&c, &got), 0);
	buf_append(&got, "", 1);
	T_STREQ(got.data, "queued before ready\r\n220 early\r\n");
	t_end();

	t_begin("application data one byte at a time");
	T_INTEQ(cli_write_all(&c, "QUIT\r\n", 6), 0);
	cli_push(&c, 1);
	buf_append(&s.plain, "", 1);
	T_STREQ(s.plain.data, "QUIT\r\n");
	T_INTEQ(s.n_send, sends); /* nothing to send for app data in */
	t_end();

	buf_free(&got);
	pair_free(&s, &c);
}

/* test_garbage - non-TLS input and random bytes: error hook, no crash. */
static void
test_garbage(void)
{
	struct srv s;
	unsigned char junk[600];
	int i, errors = 0;
	size_t j, n;

	t_begin("plaintext SMTP instead of a ClientHello: error hook");
	memset(&s, 0, sizeof(s));
	s.t = tls_new(&srv_hooks, &s);
	T_CHECK(s.t != NULL, "tls_new");
	tls_input(s.t, "EHLO garbage.test\r\n", 19);
	T_INTEQ(s.n_error, 1);
	T_INTEQ(s.n_ready, 0);
	T_CHECK(strstr(s.why, "handshake") != NULL, "why: %s", s.why);
	tls_write(s.t, "x", 1); /* ignored */
	tls_input(s.t, "more", 4);
	T_INTEQ(s.n_error, 1);
	tls_free(s.t);
	buf_free(&s.wire);
	t_end();

	t_begin("500 random inputs (some with a TLS record header)");
	for (i = 0; i < 500; i++) {
		memset(&s, 0, sizeof(s));
		s.t = tls_new(&srv_hooks, &s);
		n = 1 + rng() % sizeof(junk);
		for (j = 0; j < n; j++)
			junk[j] = (unsigned char)rng();
		if (i % 2) { /* handshake record, TLS 1.2, plausible length */
			junk[0] = 22;
			junk[1] = 3;
			junk[2] = 3;
			if (n > 5) {
				junk[3] = (unsigned char)((n - 5) >> 8);
				junk[4] = (unsigned char)(n - 5);
			}
			if (n > 5 && i % 4 == 1)
				junk[5] = 1; /* ClientHello */
		}
		tls_input(s.t, (const char *)junk, n);
		errors += s.n_error;
		T_CHECK(s.n_error <= 1, "error hook called %d times",
		        s.n_error);
		T_CHECK(s.n_ready == 0, "random bytes completed a handshake");
		tls_free(s.t);
		buf_free(&s.wire);
		buf_free(&s.plain);
	}
	printf("# garbage: %d of 500 inputs got the error hook at once, "
	       "the rest wait for more\n",
	       errors);
	T_CHECK(errors > 200, "only %d errors", errors);
	t_end();
}

/* test_close_notify - our close_notify reaches the client. */
static void
test_close_notify(void)
{
	struct srv s;
	struct cli c;
	struct buf got = {0};
	int sends;

	t_begin("tls_close_notify: client sees close_notify after the reply");
	T_INTEQ(pair_new(&s, &c, 0), 0);
	T_INTEQ(handshake(&c, 0), 0);
	tls_write(s.t, "221 bye\r\n", 9);
	tls_close_notify(s.t);
	T_INTEQ(cli_read_all(&c, &got), MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY);
	buf_append(&got, "", 1);
	T_STREQ(got.data, "221 bye\r\n");
	sends = s.n_send;
	tls_write(s.t, "more", 4); /* ignored after close_notify */
	tls_close_notify(s.t);
	T_INTEQ(s.n_send, sends);
	T_INTEQ(s.n_error, 0);
	buf_free(&got);
	pair_free(&s, &c);
	t_end();

	t_begin("tls_close_notify before the handshake: nothing sent");
	memset(&s, 0, sizeof(s));
	s.t = tls_new(&srv_hooks, &s);
	tls_close_notify(s.t);
	T_INTEQ(s.n_send, 0);
	T_INTEQ(s.n_error, 0);
	tls_free(s.t);
	t_end();
}

/* test_old_client - a TLS 1.1-only client is refused. */
static void
test_old_client(void)
{
	struct srv s;
	struct cli c;

	t_begin("TLS 1.1 client refused (minimum is TLS 1.2)");
	T_INTEQ(pair_new(&s, &c, MBEDTLS_SSL_MINOR_VERSION_2), 0);
	T_CHECK(handshake(&c, 0) != 0, "handshake succeeded");
	T_INTEQ(s.n_ready, 0);
	T_INTEQ(s.n_error, 1);
	/* The version itself must be the reason, not a missing suite. */
	T_CHECK(strstr(s.why, "-0x6e80") != NULL,
	        "not a protocol version error: %s", s.why);
	pair_free(&s, &c);
	t_end();
}

/* test_reload_live - a reload while a session lives keeps it working. */
static void
test_reload_live(void)
{
	struct srv s;
	struct cli c;

	t_begin("session outlives tls_global_init and tls_global_free");
	T_INTEQ(pair_new(&s, &c, 0), 0);
	T_INTEQ(tls_global_init(&cfg), 0);
	tls_global_free();
	T_CHECK(!tls_available(), "available after free");
	T_INTEQ(handshake(&c, 0), 0);
	T_INTEQ(s.n_ready, 1);
	pair_free(&s, &c);
	t_end();
}

/* main - run the cases in order (they share the generated files). */
int
main(void)
{
	char cmd[200];

	log_open(false, false);
	snprintf(dir, sizeof(dir), "/tmp/test_tls.XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(key_path, sizeof(key_path), "%s/tls.key", dir);
	snprintf(cert_path, sizeof(cert_path), "%s/tls.crt", dir);
	cfg.hostname = "mx.example.test";

	test_no_init();
	test_generate();
	test_reload();
	test_bad_files();
	test_handshake();
	test_memory();
	test_bulk();
	test_bytewise();
	test_garbage();
	test_close_notify();
	test_old_client();
	test_reload_live();

	tls_global_free();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		return 1;
	return t_exit();
}
