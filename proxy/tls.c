/*
 * tls.c - STARTTLS, server side, with mbedTLS 2.28 over memory buffers.
 *
 * Public functions (see the tls.c block of proxy.h):
 *
 *   tls_global_init(cfg)  load cfg->tls_key and cfg->tls_cert; a missing
 *                         key (or cert) is generated first: EC P-256 key,
 *                         self-signed certificate, CN and subjectAltName
 *                         DNS = cfg->hostname, 10 years, random serial.
 *                         Files are written atomically (temp, fsync,
 *                         rename, fsync dir); the key is mode 0600.
 *                         A missing last directory is created (0700).
 *                         Returns 0, -EINVAL (tls_cert/tls_key not set,
 *                         unparsable file, key does not match cert),
 *                         -errno from the file system, or -EIO (mbedTLS
 *                         failed).  Always log_warn()s the reason.  It may
 *                         be called again (SIGHUP): live sessions keep the
 *                         old key and certificate until they end.
 *   tls_global_free()     drop the global state (shutdown, tests).
 *   tls_available()       whether STARTTLS may be offered.
 *   tls_new(hooks, arg)   one server-side TLS session; NULL when TLS is
 *                         not available or mbedTLS could not set up.
 *   tls_input(t, ...)     ciphertext from the peer: drives the handshake,
 *                         then hands every decrypted byte to hooks->plain.
 *   tls_write(t, ...)     plaintext to the peer; written before the
 *                         handshake is done, it is queued until then.
 *   tls_version/cipher    "TLSv1.2", "TLS-ECDHE-ECDSA-WITH-AES-256-GCM-
 *                         SHA384"; "-" before the handshake is done.
 *   tls_close_notify(t)   send a close_notify before closing the socket.
 *   tls_free(t)           frees everything.  Never call it from inside a
 *                         hook: the session defers it to its close path.
 *
 * Hooks, all called on the caller's stack from tls_input()/tls_write():
 *   send   ciphertext to put on the wire.  The buffer is valid only
 *          during the call: the session copies it (uv_write).
 *   plain  decrypted bytes; valid only during the call.  The hook may
 *          call tls_write().
 *   ready  the handshake is done (once).  May call tls_write().
 *   error  fatal: handshake failure, alert, bad record, close_notify.
 *          Called once; afterwards tls_input/tls_write do nothing.
 * Pending ciphertext is always handed to send before any other hook is
 * called, so the peer sees alerts before the session closes.
 *
 * Nothing here blocks on the network: the BIO callbacks only move bytes
 * between mbedTLS and two buffers, and an empty input buffer is
 * MBEDTLS_ERR_SSL_WANT_READ.  tls_global_init() does file I/O (with
 * fsync) and is meant for startup or reload, before sessions use it.
 *
 * Config keys read: tls_cert, tls_key, hostname.
 *
 * Policy: TLS 1.2 only (mbedTLS 2.28 has no usable TLS 1.3: its
 * MBEDTLS_SSL_PROTO_TLS1_3_EXPERIMENTAL is an incomplete prototype),
 * ECDHE with AEAD first (AES-GCM, ChaCha20-Poly1305), then ECDHE with
 * CBC as a fallback for old clients; the server's order wins.  No client
 * certificates, no renegotiation, no session resumption.
 *
 * mbedTLS config options this file needs (for the firmware's trimmed
 * config.h):
 *   core:     MBEDTLS_SSL_TLS_C MBEDTLS_SSL_SRV_C MBEDTLS_SSL_PROTO_TLS1_2
 *             MBEDTLS_CIPHER_C MBEDTLS_MD_C MBEDTLS_ENTROPY_C
 *             MBEDTLS_CTR_DRBG_C MBEDTLS_AES_C MBEDTLS_BIGNUM_C
 *             MBEDTLS_OID_C MBEDTLS_ASN1_PARSE_C MBEDTLS_ASN1_WRITE_C
 *             MBEDTLS_BASE64_C (PEM) MBEDTLS_PEM_PARSE_C
 *             MBEDTLS_PEM_WRITE_C MBEDTLS_PK_C MBEDTLS_PK_PARSE_C
 *             MBEDTLS_PK_WRITE_C MBEDTLS_X509_USE_C MBEDTLS_X509_CRT_PARSE_C
 *             MBEDTLS_X509_CREATE_C MBEDTLS_X509_CRT_WRITE_C
 *             platform entropy: do NOT define MBEDTLS_NO_PLATFORM_ENTROPY
 *             (getrandom()/ /dev/urandom).
 *             do NOT define MBEDTLS_SSL_SRV_RESPECT_CLIENT_PREFERENCE.
 *   key exchange: MBEDTLS_KEY_EXCHANGE_ECDHE_ECDSA_ENABLED (our generated
 *             key) and MBEDTLS_KEY_EXCHANGE_ECDHE_RSA_ENABLED (an RSA
 *             key the admin installs; needs MBEDTLS_RSA_C MBEDTLS_PKCS1_V15
 *             MBEDTLS_PKCS1_V21), MBEDTLS_ECDH_C MBEDTLS_ECDSA_C
 *             MBEDTLS_ECP_C MBEDTLS_ECP_DP_SECP256R1_ENABLED
 *             MBEDTLS_ECP_DP_SECP384R1_ENABLED
 *             MBEDTLS_ECP_DP_CURVE25519_ENABLED
 *             MBEDTLS_ECDSA_DETERMINISTIC + MBEDTLS_HMAC_DRBG_C (optional)
 *   ciphers:  MBEDTLS_GCM_C MBEDTLS_CHACHA20_C MBEDTLS_POLY1305_C
 *             MBEDTLS_CHACHAPOLY_C; fallback MBEDTLS_CIPHER_MODE_CBC
 *             (suites not compiled in are skipped at init)
 *   hashes:   MBEDTLS_SHA256_C MBEDTLS_SHA512_C (SHA-384)
 *   recommended: MBEDTLS_SSL_EXTENDED_MASTER_SECRET,
 *             MBEDTLS_SSL_ENCRYPT_THEN_MAC (CBC fallback),
 *             MBEDTLS_ECP_NIST_OPTIM (faster P-256/P-384),
 *             MBEDTLS_HAVE_TIME MBEDTLS_HAVE_TIME_DATE (expired-cert warning).
 *   not needed: MBEDTLS_FS_IO (we read files ourselves), MBEDTLS_NET_C,
 *             MBEDTLS_SSL_CLI_C (only the unit test uses a client),
 *             MBEDTLS_SSL_PROTO_TLS1 / TLS1_1 / SSL3, MBEDTLS_SHA1_C for TLS
 *             (only for the CBC-SHA fallbacks, which we do not list),
 *             MBEDTLS_SSL_RENEGOTIATION, MBEDTLS_SSL_SESSION_TICKETS,
 *             MBEDTLS_SSL_CACHE_C, MBEDTLS_DHM_C,
 *             MBEDTLS_SSL_SERVER_NAME_INDICATION, MBEDTLS_ERROR_C (used
 *             for readable errors when present).
 *   memory:   MBEDTLS_SSL_IN_CONTENT_LEN must stay 16384 (peers may send
 *             full records); MBEDTLS_SSL_OUT_CONTENT_LEN may be cut to
 *             4096 to save 12 KiB per TLS session.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/asn1write.h>
#include <mbedtls/bignum.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ciphersuites.h>
#include <mbedtls/x509_crt.h>
#if defined(MBEDTLS_ERROR_C)
#include <mbedtls/error.h>
#endif

#include "proxy.h"

#define TLS_FILE_MAX (64 * 1024) /* largest key or cert file we read */
#define TLS_PEM_MAX 4096         /* generated key or cert, as PEM */
#define TLS_VALID_YEARS 10

/*
 * The key, the certificate and the mbedtls_ssl_config that points at
 * them.  Every session holds a reference: a reload builds a new one and
 * the old one goes when its last session does.
 */
struct tls_ctx {
	int refs;
	mbedtls_ssl_config conf;
	mbedtls_x509_crt cert;
	mbedtls_pk_context key;
	int suites[16]; /* 0-terminated, only compiled-in suites */
};

struct tls {
	struct tls_ctx *ctx; /* a reference */
	mbedtls_ssl_context ssl;
	const struct tls_hooks *hooks;
	void *arg;
	struct buf in;    /* ciphertext from the peer ... */
	size_t in_pos;    /* ... of which this much was consumed */
	struct buf out;   /* ciphertext for hooks->send */
	struct buf early; /* plaintext written before the handshake */
	bool ready;       /* handshake done */
	bool failed;      /* error hook called: everything stops */
	bool busy;        /* inside tls_input/tls_write (re-entry) */
};

static mbedtls_entropy_context tls_entropy;
static mbedtls_ctr_drbg_context tls_drbg;
static bool tls_seeded;
static bool tls_shutdown;       /* tls_global_free() was called */
static unsigned tls_n_ctx;      /* contexts alive (current + old ones) */
static struct tls_ctx *tls_cur; /* NULL: STARTTLS not available */

/* ECDHE + AEAD first, in our order of preference; CBC last. */
static const int tls_suite_pref[] = {
        MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384,
        MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
        MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384,
        MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
};

static const mbedtls_ecp_group_id tls_curves[] = {
        MBEDTLS_ECP_DP_CURVE25519,
        MBEDTLS_ECP_DP_SECP256R1,
        MBEDTLS_ECP_DP_SECP384R1,
        MBEDTLS_ECP_DP_NONE,
};

/* tls_strerror - a readable mbedTLS error, with its code. */
static void
tls_strerror(int err, char *out, size_t outlen)
{
	char text[96] = "mbedTLS error";

#if defined(MBEDTLS_ERROR_C)
	mbedtls_strerror(err, text, sizeof(text));
#endif
	snprintf(out, outlen, "%s (-0x%04x)", text, (unsigned)-err);
}

/* tls_seed - seed the DRBG once per process from the platform entropy. */
static int
tls_seed(void)
{
	static const char pers[] = "mailmoat-tls";
	char why[128];
	int r;

	if (tls_seeded)
		return 0;
	mbedtls_entropy_init(&tls_entropy);
	mbedtls_ctr_drbg_init(&tls_drbg);
	r = mbedtls_ctr_drbg_seed(&tls_drbg, mbedtls_entropy_func, &tls_entropy,
	                          (const unsigned char *)pers,
	                          sizeof(pers) - 1);
	if (r != 0) {
		tls_strerror(r, why, sizeof(why));
		log_warn("tls: cannot seed the random generator: %s", why);
		mbedtls_ctr_drbg_free(&tls_drbg);
		mbedtls_entropy_free(&tls_entropy);
		return -EIO;
	}
	tls_seeded = true;
	return 0;
}

/*
 * tls_read_file - read a whole (small) file into a NUL-terminated
 * buffer, as mbedTLS's PEM parsers want it; *len counts the NUL.
 * Returns 0 or -errno (-EFBIG over TLS_FILE_MAX, -EINVAL if not a
 * regular file); the caller frees *out.  secret: warn if the file is
 * readable by group or others.
 */
static int
tls_read_file(const char *path, bool secret, unsigned char **out, size_t *len)
{
	unsigned char *data = NULL;
	struct stat st;
	size_t n = 0;
	ssize_t got;
	int fd, err = 0;

	/* O_NONBLOCK: a FIFO given by mistake must not hang the start. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	if (secret && (st.st_mode & 077))
		log_warn("tls: %s is readable by group or others (chmod 600)",
		         path);
	data = xmalloc(TLS_FILE_MAX + 1);
	for (;;) {
		got = read(fd, data + n, TLS_FILE_MAX + 1 - n);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			goto out;
		}
		if (got == 0)
			break;
		n += (size_t)got;
		if (n > TLS_FILE_MAX) {
			err = -EFBIG;
			goto out;
		}
	}
	data[n] = '\0';
	*out = data;
	*len = n + 1;
	data = NULL;
out:
	if (data) {
		mbedtls_platform_zeroize(data, TLS_FILE_MAX + 1);
		free(data);
	}
	close(fd);
	return err;
}

/*
 * tls_save - util_write_file_atomic(), creating the file's directory (one
 * level, mode 0700) when it is missing: on first boot /data/tls may not exist.
 */
static int
tls_save(const char *path, const char *pem, mode_t mode)
{
	char dir[4096];
	char *slash;
	int err;

	err = util_write_file_atomic(path, pem, strlen(pem), mode);
	if (err != -ENOENT)
		return err;
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		return err;
	*slash = '\0';
	if (mkdir(dir, 0700) < 0)
		return errno == EEXIST ? err : -errno;
	log_info("tls: created directory %s", dir);
	return util_write_file_atomic(path, pem, strlen(pem), mode);
}

/*
 * tls_san_ext - the DER of a subjectAltName extension with one dNSName
 * (mbedTLS 2.28 has no x509write helper for it).  The ASN.1 writers work
 * backwards from the end of buf; returns the DER length, the DER starts
 * at *start, or a negative mbedTLS error.
 */
static int
tls_san_ext(const char *host, unsigned char *buf, size_t size,
            unsigned char **start)
{
	unsigned char *p = buf + size;
	size_t hlen = strlen(host);
	int len = 0, r;

	if ((r = mbedtls_asn1_write_raw_buffer(
	             &p, buf, (const unsigned char *)host, hlen)) < 0)
		return r;
	len += r;
	if ((r = mbedtls_asn1_write_len(&p, buf, (size_t)len)) < 0)
		return r;
	len += r;
	/* dNSName [2] IMPLICIT IA5String */
	if ((r = mbedtls_asn1_write_tag(&p, buf,
	                                MBEDTLS_ASN1_CONTEXT_SPECIFIC | 2)) < 0)
		return r;
	len += r;
	if ((r = mbedtls_asn1_write_len(&p, buf, (size_t)len)) < 0)
		return r;
	len += r;
	if ((r = mbedtls_asn1_write_tag(&p, buf,
	                                MBEDTLS_ASN1_CONSTRUCTED |
	                                        MBEDTLS_ASN1_SEQUENCE)) < 0)
		return r;
	len += r;
	*start = p;
	return len;
}

/* tls_hostname_ok - a name we can put in CN= and a dNSName as is. */
static bool
tls_hostname_ok(const char *h)
{
	size_t n = strlen(h);

	if (n == 0 || n > 253)
		return false;
	for (; *h; h++)
		if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') ||
		      (*h >= '0' && *h <= '9') || *h == '-' || *h == '.' ||
		      *h == '_'))
			return false;
	return true;
}

/* tls_gen_key - a new EC P-256 key into key (set up by the caller). */
static int
tls_gen_key(mbedtls_pk_context *key, char *why, size_t whylen)
{
	int r;

	r = mbedtls_pk_setup(key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
	if (r == 0)
		r = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1,
		                        mbedtls_pk_ec(*key),
		                        mbedtls_ctr_drbg_random, &tls_drbg);
	if (r != 0)
		tls_strerror(r, why, whylen);
	return r == 0 ? 0 : -EIO;
}

/* tls_time_str - "YYYYMMDDhhmmss" (UTC) of t plus years, for x509write. */
static void
tls_time_str(time_t t, int years, char out[16])
{
	struct tm tm;

	gmtime_r(&t, &tm);
	tm.tm_year += years;
	if (tm.tm_mon == 1 && tm.tm_mday == 29)
		tm.tm_mday = 28; /* no Feb 29 in most target years */
	if (strftime(out, 16, "%Y%m%d%H%M%S", &tm) != 14)
		snprintf(out, 16, "20491231235959");
}

/*
 * tls_gen_cert - a self-signed certificate for key as PEM into pem:
 * CN = host, subjectAltName DNS:host, valid from an hour ago for
 * TLS_VALID_YEARS years, 16-byte random serial, ECDSA/RSA with SHA-256.
 */
static int
tls_gen_cert(mbedtls_pk_context *key, const char *host, unsigned char *pem,
             size_t pemlen, char *why, size_t whylen)
{
	mbedtls_x509write_cert crt;
	mbedtls_mpi serial;
	unsigned char rnd[16], san[300], *san_der = NULL;
	char subject[300], from[16], until[16];
	time_t now = time(NULL);
	int r, san_len;

	mbedtls_x509write_crt_init(&crt);
	mbedtls_mpi_init(&serial);
	snprintf(subject, sizeof(subject), "CN=%s", host);
	tls_time_str(now - 3600, 0, from);
	tls_time_str(now - 3600, TLS_VALID_YEARS, until);

	/* A positive serial of at most 127 bits, never zero. */
	if ((r = mbedtls_ctr_drbg_random(&tls_drbg, rnd, sizeof(rnd))) != 0)
		goto out;
	rnd[0] &= 0x7f;
	rnd[0] |= 0x01;
	if ((r = mbedtls_mpi_read_binary(&serial, rnd, sizeof(rnd))) != 0)
		goto out;

	mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
	mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
	mbedtls_x509write_crt_set_subject_key(&crt, key);
	mbedtls_x509write_crt_set_issuer_key(&crt, key);
	if ((r = mbedtls_x509write_crt_set_serial(&crt, &serial)) != 0 ||
	    (r = mbedtls_x509write_crt_set_validity(&crt, from, until)) != 0 ||
	    (r = mbedtls_x509write_crt_set_subject_name(&crt, subject)) != 0 ||
	    (r = mbedtls_x509write_crt_set_issuer_name(&crt, subject)) != 0 ||
	    (r = mbedtls_x509write_crt_set_basic_constraints(&crt, 0, -1)) != 0)
		goto out;
	san_len = tls_san_ext(host, san, sizeof(san), &san_der);
	if (san_len < 0) {
		r = san_len;
		goto out;
	}
	r = mbedtls_x509write_crt_set_extension(
	        &crt, MBEDTLS_OID_SUBJECT_ALT_NAME,
	        MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), 0, san_der,
	        (size_t)san_len);
	if (r != 0)
		goto out;
	r = mbedtls_x509write_crt_pem(&crt, pem, pemlen,
	                              mbedtls_ctr_drbg_random, &tls_drbg);
out:
	if (r != 0)
		tls_strerror(r, why, whylen);
	mbedtls_mpi_free(&serial);
	mbedtls_x509write_crt_free(&crt);
	return r == 0 ? 0 : -EIO;
}

/*
 * tls_load_or_create - fill ctx->key and ctx->cert from the files,
 * generating what is missing.  A missing key means a new key and a new
 * certificate (an old certificate cannot match it); a missing
 * certificate with a good key means a new certificate for that key.
 * Files that exist but do not parse are never overwritten.
 */
static int
tls_load_or_create(struct tls_ctx *ctx, const struct config *cfg)
{
	const char *kpath = cfg->tls_key, *cpath = cfg->tls_cert;
	const char *host = cfg->hostname ? cfg->hostname : "localhost";
	unsigned char *kdata = NULL, *cdata = NULL;
	unsigned char pem[TLS_PEM_MAX];
	size_t klen = 0, clen = 0;
	char why[160];
	int err, r;
	bool new_key = false;

	err = tls_read_file(kpath, true, &kdata, &klen);
	if (err == -ENOENT && !tls_hostname_ok(host)) {
		/* A new key needs a new certificate: check before writing. */
		log_warn("tls: hostname \"%s\" cannot go in a certificate",
		         host);
		err = -EINVAL;
		goto out;
	} else if (err == -ENOENT) {
		if ((err = tls_gen_key(&ctx->key, why, sizeof(why))) != 0) {
			log_warn("tls: cannot generate a key: %s", why);
			goto out;
		}
		r = mbedtls_pk_write_key_pem(&ctx->key, pem, sizeof(pem));
		if (r != 0) {
			tls_strerror(r, why, sizeof(why));
			log_warn("tls: cannot encode the key: %s", why);
			err = -EIO;
			goto out;
		}
		err = tls_save(kpath, (char *)pem, 0600);
		mbedtls_platform_zeroize(pem, sizeof(pem));
		if (err != 0) {
			log_warn("tls: cannot write %s: %s", kpath,
			         strerror(-err));
			goto out;
		}
		log_info("tls: generated a new EC P-256 key in %s", kpath);
		new_key = true;
	} else if (err != 0) {
		log_warn("tls: cannot read %s: %s", kpath, strerror(-err));
		goto out;
	} else {
		r = mbedtls_pk_parse_key(&ctx->key, kdata, klen, NULL, 0);
		if (r != 0) {
			tls_strerror(r, why, sizeof(why));
			log_warn("tls: %s: not a usable private key: %s", kpath,
			         why);
			err = -EINVAL;
			goto out;
		}
	}

	err = new_key ? -ENOENT : tls_read_file(cpath, false, &cdata, &clen);
	if (err == -ENOENT) {
		if (!tls_hostname_ok(host)) {
			log_warn("tls: hostname \"%s\" cannot go in a "
			         "certificate",
			         host);
			err = -EINVAL;
			goto out;
		}
		err = tls_gen_cert(&ctx->key, host, pem, sizeof(pem), why,
		                   sizeof(why));
		if (err != 0) {
			log_warn("tls: cannot create a certificate: %s", why);
			goto out;
		}
		err = tls_save(cpath, (char *)pem, 0644);
		if (err != 0) {
			log_warn("tls: cannot write %s: %s", cpath,
			         strerror(-err));
			goto out;
		}
		log_info(
		        "tls: generated a self-signed certificate for %s in %s",
		        host, cpath);
		r = mbedtls_x509_crt_parse(&ctx->cert, pem,
		                           strlen((char *)pem) + 1);
	} else if (err != 0) {
		log_warn("tls: cannot read %s: %s", cpath, strerror(-err));
		goto out;
	} else {
		r = mbedtls_x509_crt_parse(&ctx->cert, cdata, clen);
	}
	if (r < 0) {
		tls_strerror(r, why, sizeof(why));
		log_warn("tls: %s: not a usable certificate: %s", cpath, why);
		err = -EINVAL;
		goto out;
	}
	if (r > 0) /* a chain: the first one parsed, r others did not */
		log_warn("tls: %s: %d certificate(s) of the chain skipped",
		         cpath, r);
#if defined(MBEDTLS_HAVE_TIME_DATE)
	if (mbedtls_x509_time_is_past(&ctx->cert.valid_to))
		log_warn("tls: %s has expired: clients that check will refuse "
		         "it (delete it for a new self-signed one)",
		         cpath);
#endif
	if ((r = mbedtls_pk_check_pair(&ctx->cert.pk, &ctx->key)) != 0) {
		log_warn("tls: %s does not match the key in %s", cpath, kpath);
		err = -EINVAL;
		goto out;
	}
	err = 0;
out:
	if (kdata) {
		mbedtls_platform_zeroize(kdata, klen);
		free(kdata);
	}
	free(cdata);
	return err;
}

/*
 * tls_ctx_unref - drop a reference; the last one frees the context.  The
 * DRBG goes with the last context once tls_global_free() was called:
 * sessions still use it until then.
 */
static void
tls_ctx_unref(struct tls_ctx *ctx)
{
	if (!ctx || --ctx->refs > 0)
		return;
	mbedtls_ssl_config_free(&ctx->conf);
	mbedtls_x509_crt_free(&ctx->cert);
	mbedtls_pk_free(&ctx->key);
	free(ctx);
	if (--tls_n_ctx == 0 && tls_shutdown && tls_seeded) {
		mbedtls_ctr_drbg_free(&tls_drbg);
		mbedtls_entropy_free(&tls_entropy);
		tls_seeded = false;
	}
}

/* tls_ctx_conf - the server policy (see the header) into ctx->conf. */
static int
tls_ctx_conf(struct tls_ctx *ctx)
{
	mbedtls_ssl_config *c = &ctx->conf;
	char why[128];
	size_t i, n = 0;
	int r;

	r = mbedtls_ssl_config_defaults(c, MBEDTLS_SSL_IS_SERVER,
	                                MBEDTLS_SSL_TRANSPORT_STREAM,
	                                MBEDTLS_SSL_PRESET_DEFAULT);
	if (r == 0)
		r = mbedtls_ssl_conf_own_cert(c, &ctx->cert, &ctx->key);
	if (r != 0) {
		tls_strerror(r, why, sizeof(why));
		log_warn("tls: cannot set up: %s", why);
		return -EIO;
	}
	mbedtls_ssl_conf_rng(c, mbedtls_ctr_drbg_random, &tls_drbg);
	mbedtls_ssl_conf_min_version(c, MBEDTLS_SSL_MAJOR_VERSION_3,
	                             MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_max_version(c, MBEDTLS_SSL_MAJOR_VERSION_3,
	                             MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_authmode(c, MBEDTLS_SSL_VERIFY_NONE);
	/* A suite that is not compiled in must not be listed: mbedTLS
	 * fails the handshake if a client offers it. */
	for (i = 0; i < ARRAY_LEN(tls_suite_pref); i++)
		if (mbedtls_ssl_ciphersuite_from_id(tls_suite_pref[i]))
			ctx->suites[n++] = tls_suite_pref[i];
	ctx->suites[n] = 0;
	if (n == 0) {
		log_warn("tls: no usable cipher suite in this mbedTLS build");
		return -EINVAL;
	}
	mbedtls_ssl_conf_ciphersuites(c, ctx->suites);
	mbedtls_ssl_conf_curves(c, tls_curves);
	return 0;
}

/* tls_global_init - load or create key + self-signed cert; 0 or -errno */
int
tls_global_init(const struct config *cfg)
{
	struct tls_ctx *ctx;
	int err;

	if (!cfg->tls_cert || !cfg->tls_key || !*cfg->tls_cert ||
	    !*cfg->tls_key) {
		log_warn("tls: tls_cert and tls_key are not both set: "
		         "STARTTLS is off");
		tls_ctx_unref(tls_cur);
		tls_cur = NULL;
		return -EINVAL;
	}
	if ((err = tls_seed()) != 0)
		return err;
	tls_shutdown = false;
	ctx = xcalloc(1, sizeof(*ctx));
	ctx->refs = 1;
	tls_n_ctx++;
	mbedtls_ssl_config_init(&ctx->conf);
	mbedtls_x509_crt_init(&ctx->cert);
	mbedtls_pk_init(&ctx->key);
	if ((err = tls_load_or_create(ctx, cfg)) != 0 ||
	    (err = tls_ctx_conf(ctx)) != 0) {
		/* On reload, a broken new setup keeps the old one. */
		tls_ctx_unref(ctx);
		return err;
	}
	tls_ctx_unref(tls_cur);
	tls_cur = ctx;
	return 0;
}

/* tls_global_free - drop the global state; live sessions keep theirs. */
void
tls_global_free(void)
{
	struct tls_ctx *ctx = tls_cur;

	tls_shutdown = true;
	tls_cur = NULL;
	if (ctx)
		tls_ctx_unref(ctx);
	else if (tls_n_ctx == 0 && tls_seeded) {
		mbedtls_ctr_drbg_free(&tls_drbg);
		mbedtls_entropy_free(&tls_entropy);
		tls_seeded = false;
	}
}

/* tls_available - whether STARTTLS can be offered. */
bool
tls_available(void)
{
	return tls_cur != NULL;
}

/* tls_bio_send_cb - mbedTLS output: collect it for hooks->send. */
static int
tls_bio_send_cb(void *p, const unsigned char *buf, size_t len)
{
	struct tls *t = p;

	buf_append(&t->out, buf, len);
	return (int)len;
}

/* tls_bio_recv_cb - mbedTLS input from what tls_input() buffered. */
static int
tls_bio_recv_cb(void *p, unsigned char *buf, size_t len)
{
	struct tls *t = p;
	size_t avail = t->in.len - t->in_pos;

	if (avail == 0)
		return MBEDTLS_ERR_SSL_WANT_READ;
	if (len > avail)
		len = avail;
	memcpy(buf, t->in.data + t->in_pos, len);
	t->in_pos += len;
	if (t->in_pos == t->in.len)
		t->in.len = t->in_pos = 0;
	return (int)len;
}

/* tls_new - a server-side session on the current key and certificate. */
struct tls *
tls_new(const struct tls_hooks *h, void *arg)
{
	struct tls *t;
	char why[128];
	int r;

	if (!tls_cur)
		return NULL;
	t = xcalloc(1, sizeof(*t));
	t->hooks = h;
	t->arg = arg;
	mbedtls_ssl_init(&t->ssl);
	if ((r = mbedtls_ssl_setup(&t->ssl, &tls_cur->conf)) != 0) {
		tls_strerror(r, why, sizeof(why));
		log_warn("tls: cannot start a session: %s", why);
		mbedtls_ssl_free(&t->ssl);
		free(t);
		return NULL;
	}
	t->ctx = tls_cur;
	t->ctx->refs++;
	mbedtls_ssl_set_bio(&t->ssl, t, tls_bio_send_cb, tls_bio_recv_cb, NULL);
	return t;
}

/* tls_flush - hand collected ciphertext to hooks->send. */
static void
tls_flush(struct tls *t)
{
	struct buf b = t->out;

	if (b.len == 0)
		return;
	/* Detach the buffer first: send may call tls_write(), which
	 * collects (and may reallocate) anew while send reads this one. */
	t->out = (struct buf){0};
	t->hooks->send(t, t->arg, b.data, b.len);
	if (t->out.data == NULL) {
		b.len = 0;
		t->out = b; /* keep the allocation for the next record */
	} else {
		buf_free(&b);
	}
}

/* tls_fail - flush what mbedTLS wants to say (an alert), then error. */
static void
tls_fail(struct tls *t, const char *what, int err)
{
	char why[160], e[128];

	if (t->failed)
		return;
	t->failed = true;
	tls_flush(t);
	if (err == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
		snprintf(why, sizeof(why), "%s: peer sent close_notify", what);
	else if (err == 0)
		snprintf(why, sizeof(why), "%s: connection closed", what);
	else {
		tls_strerror(err, e, sizeof(e));
		snprintf(why, sizeof(why), "%s: %s", what, e);
	}
	t->hooks->error(t, t->arg, why);
}

/*
 * tls_encrypt - mbedtls_ssl_write all of buf (it takes at most one
 * record per call).  Our BIO never refuses output and we only write
 * after the handshake, so WANT_WRITE/WANT_READ cannot happen here; if
 * they did, retrying could spin forever, so they are fatal like any
 * other error.
 */
static void
tls_encrypt(struct tls *t, const char *buf, size_t len)
{
	int r;

	while (len > 0 && !t->failed) {
		r = mbedtls_ssl_write(&t->ssl, (const unsigned char *)buf, len);
		if (r <= 0) {
			tls_fail(t, "write", r);
			return;
		}
		buf += r;
		len -= (size_t)r;
	}
}

/* tls_write - encrypt plaintext for the peer (queued until ready). */
void
tls_write(struct tls *t, const char *buf, size_t len)
{
	if (t->failed || len == 0)
		return;
	if (!t->ready) {
		buf_append(&t->early, buf, len);
		return;
	}
	tls_encrypt(t, buf, len);
	if (!t->failed)
		tls_flush(t);
}

/*
 * tls_handshake - step the handshake as far as the buffered input goes.
 * Returns true when it is complete, false when it needs more input or
 * failed (then t->failed is set).
 */
static bool
tls_handshake(struct tls *t)
{
	int r;

	for (;;) {
		r = mbedtls_ssl_handshake(&t->ssl);
		if (r == 0)
			break;
		/* WANT_WRITE cannot happen (our BIO takes everything);
		 * waiting for input is safer than spinning on it. */
		if (r == MBEDTLS_ERR_SSL_WANT_READ ||
		    r == MBEDTLS_ERR_SSL_WANT_WRITE) {
			tls_flush(t);
			return false;
		}
		tls_fail(t, "handshake", r);
		return false;
	}
	t->ready = true;
	/* Plaintext written before now goes first, in the order written,
	 * and goes out in the same send as the server's Finished. */
	if (t->early.len > 0) {
		tls_encrypt(t, t->early.data, t->early.len);
		buf_free(&t->early);
	}
	tls_flush(t);
	if (t->failed)
		return false;
	log_debug("tls: handshake done, %s %s", tls_version(t), tls_cipher(t));
	t->hooks->ready(t, t->arg);
	return !t->failed;
}

/* tls_input - ciphertext from the peer; plaintext goes to hooks->plain. */
void
tls_input(struct tls *t, const char *buf, size_t len)
{
	unsigned char plain[4096];
	int r;

	if (t->failed)
		return;
	buf_append(&t->in, buf, len);
	if (t->busy)
		return; /* re-entered from a hook: the outer loop reads it */
	t->busy = true;
	if (!t->ready && !tls_handshake(t))
		goto out;
	while (!t->failed) {
		r = mbedtls_ssl_read(&t->ssl, plain, sizeof(plain));
		if (r == MBEDTLS_ERR_SSL_WANT_READ ||
		    r == MBEDTLS_ERR_SSL_WANT_WRITE) {
			tls_flush(t);
			break;
		}
		if (r <= 0) {
			tls_fail(t, "read", r);
			break;
		}
		tls_flush(t);
		t->hooks->plain(t, t->arg, (const char *)plain, (size_t)r);
	}
out:
	t->busy = false;
	mbedtls_platform_zeroize(plain, sizeof(plain));
}

/* tls_version - the negotiated protocol, "-" before the handshake. */
const char *
tls_version(const struct tls *t)
{
	return t && t->ready ? mbedtls_ssl_get_version(&t->ssl) : "-";
}

/* tls_cipher - the negotiated suite, "-" before the handshake. */
const char *
tls_cipher(const struct tls *t)
{
	const char *s =
	        t && t->ready ? mbedtls_ssl_get_ciphersuite(&t->ssl) : NULL;

	return s ? s : "-";
}

/*
 * tls_close_notify - tell the peer we are done (a close_notify alert,
 * through hooks->send) before the session closes the socket after its
 * last reply; OpenSSL 3 peers otherwise see an "unexpected eof".  Does
 * nothing before the handshake is done or after an error; tls_write and
 * tls_input do nothing afterwards.
 */
void
tls_close_notify(struct tls *t)
{
	int r;

	if (!t->ready || t->failed)
		return;
	r = mbedtls_ssl_close_notify(&t->ssl);
	tls_flush(t);
	if (r != 0)
		log_debug("tls: close_notify: -0x%04x", (unsigned)-r);
	/* No error hook: the session is closing on its own. */
	t->failed = true;
}

/* tls_free - free the session (never from inside one of its hooks). */
void
tls_free(struct tls *t)
{
	if (!t)
		return;
	mbedtls_ssl_free(&t->ssl);
	tls_ctx_unref(t->ctx);
	t->ctx = NULL;
	buf_free(&t->in);
	buf_free(&t->out);
	buf_free(&t->early);
	free(t);
}
