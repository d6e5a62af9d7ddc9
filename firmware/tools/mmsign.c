/*
 * mmsign - make keys, pack and sign firmware images, verify them, and make
 * the box's first-boot self-signed TLS certificate.
 *
 *   mmsign genkey PRIV.pem PUB.pem
 *   mmsign pack -b BOARD -v VERSION -c CODE -k KERNEL -r ROOTFS -s PRIV -o OUT
 *   mmsign verify PUB.pem IMAGE          prints board/version/code on success
 *   mmsign tlscert KEY.pem CERT.pem CN   EC P-256 key + self-signed cert
 *
 * Built twice: on the host against Debian's libmbedtls (the build signs
 * with it) and static for the box (first boot uses tlscert).  Signatures are
 * deterministic ECDSA (RFC 6979), so the same inputs give the same bytes.
 * Exit status 0 on success, 1 with a one-line message on stderr otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>

#include "fwimg.h"

static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;

/* die - print a message and exit 1 */
static void
die(const char *msg, const char *arg)
{
	fprintf(stderr, "mmsign: %s%s%s\n", msg, arg ? ": " : "",
	        arg ? arg : "");
	exit(1);
}

/* rng_init - seed the DRBG from the system entropy source */
static void
rng_init(void)
{
	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);
	if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
	                          (const unsigned char *)"mmsign", 6))
		die("cannot seed the random generator", NULL);
}

/* write_file - write n bytes to path atomically (temp file + rename) */
static void
write_file(const char *path, const void *p, size_t n, mode_t mode)
{
	char tmp[4096];
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (fd < 0 || write(fd, p, n) != (ssize_t)n || fsync(fd) < 0 ||
	    close(fd) < 0 || rename(tmp, path) < 0)
		die("cannot write", path);
}

/* gen_ec_key - make a fresh P-256 key in pk */
static void
gen_ec_key(mbedtls_pk_context *pk)
{
	mbedtls_pk_init(pk);
	if (mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) ||
	    mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*pk),
	                        mbedtls_ctr_drbg_random, &drbg))
		die("key generation failed", NULL);
}

/* cmd_genkey - write a new private/public key pair as PEM */
static int
cmd_genkey(const char *priv, const char *pub)
{
	unsigned char buf[4096];
	mbedtls_pk_context pk;

	rng_init();
	gen_ec_key(&pk);
	if (mbedtls_pk_write_key_pem(&pk, buf, sizeof(buf)))
		die("cannot encode the private key", NULL);
	write_file(priv, buf, strlen((char *)buf), 0600);
	if (mbedtls_pk_write_pubkey_pem(&pk, buf, sizeof(buf)))
		die("cannot encode the public key", NULL);
	write_file(pub, buf, strlen((char *)buf), 0644);
	mbedtls_pk_free(&pk);
	return 0;
}

/* slurp - read a whole file; dies on error */
static unsigned char *
slurp(const char *path, size_t *len)
{
	struct stat st;
	unsigned char *p;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &st) < 0)
		die("cannot open", path);
	p = malloc((size_t)st.st_size + 1);
	if (!p || read(fd, p, (size_t)st.st_size) != st.st_size)
		die("cannot read", path);
	close(fd);
	*len = (size_t)st.st_size;
	return p;
}

/* pad - round n up to the image alignment */
static size_t
pad(size_t n)
{
	return (n + FWIMG_ALIGN - 1) / FWIMG_ALIGN * FWIMG_ALIGN;
}

/* cmd_pack - assemble header + kernel + rootfs and sign them */
static int
cmd_pack(int argc, char **argv)
{
	const char *board = NULL, *version = NULL, *code = NULL, *kpath = NULL;
	const char *rpath = NULL, *key = NULL, *out = NULL;
	unsigned char *k, *r, *img, d[32], sig[MBEDTLS_ECDSA_MAX_LEN];
	char khex[65], rhex[65], err[256];
	size_t klen, rlen, payload, total, siglen;
	mbedtls_pk_context pk;
	struct fwimg_hdr h;
	int opt, n;

	while ((opt = getopt(argc, argv, "b:v:c:k:r:s:o:")) != -1) {
		switch (opt) {
		case 'b':
			board = optarg;
			break;
		case 'v':
			version = optarg;
			break;
		case 'c':
			code = optarg;
			break;
		case 'k':
			kpath = optarg;
			break;
		case 'r':
			rpath = optarg;
			break;
		case 's':
			key = optarg;
			break;
		case 'o':
			out = optarg;
			break;
		default:
			die("pack: bad option", NULL);
		}
	}
	if (!board || !version || !code || !kpath || !rpath || !key || !out)
		die("pack needs -b -v -c -k -r -s -o", NULL);
	k = slurp(kpath, &klen);
	r = slurp(rpath, &rlen);
	payload = pad(klen) + pad(rlen);
	total = FWIMG_HDR_SIZE + payload + FWIMG_SIG_SIZE;
	img = calloc(1, total);
	if (!img)
		die("out of memory", NULL);
	mbedtls_sha256_ret(k, klen, d, 0);
	fwimg_hex(d, 32, khex);
	mbedtls_sha256_ret(r, rlen, d, 0);
	fwimg_hex(d, 32, rhex);
	n = snprintf((char *)img, FWIMG_HDR_SIZE,
	             FWIMG_MAGIC
	             "\nboard=%s\nversion=%s\nversion_code=%s\n"
	             "kernel_offset=%d\nkernel_size=%zu\nkernel_sha256=%s\n"
	             "rootfs_offset=%zu\nrootfs_size=%zu\nrootfs_sha256=%s\n"
	             "payload_size=%zu\n",
	             board, version, code, FWIMG_HDR_SIZE, klen, khex,
	             FWIMG_HDR_SIZE + pad(klen), rlen, rhex, payload);
	if (n <= 0 || n >= FWIMG_HDR_SIZE)
		die("header too long", NULL);
	if (fwimg_parse_header(img, &h, err, sizeof(err)))
		die("bad header", err);
	memcpy(img + FWIMG_HDR_SIZE, k, klen);
	memcpy(img + FWIMG_HDR_SIZE + pad(klen), r, rlen);
	mbedtls_sha256_ret(img, FWIMG_HDR_SIZE + payload, d, 0);

	rng_init();
	mbedtls_pk_init(&pk);
	if (mbedtls_pk_parse_keyfile(&pk, key, NULL) ||
	    !mbedtls_pk_can_do(&pk, MBEDTLS_PK_ECDSA))
		die("cannot load the signing key", key);
	if (mbedtls_pk_sign(&pk, MBEDTLS_MD_SHA256, d, 32, sig, &siglen,
	                    mbedtls_ctr_drbg_random, &drbg) ||
	    siglen > FWIMG_SIG_SIZE - 10)
		die("signing failed", NULL);
	memcpy(img + FWIMG_HDR_SIZE + payload, FWIMG_SIG_MAGIC, 8);
	img[FWIMG_HDR_SIZE + payload + 8] = (unsigned char)(siglen >> 8);
	img[FWIMG_HDR_SIZE + payload + 9] = (unsigned char)siglen;
	memcpy(img + FWIMG_HDR_SIZE + payload + 10, sig, siglen);
	write_file(out, img, total, 0644);
	mbedtls_pk_free(&pk);
	free(img);
	free(k);
	free(r);
	return 0;
}

/* cmd_verify - verify IMAGE against PUB and print its identity */
static int
cmd_verify(const char *pub, const char *image)
{
	struct fwimg_hdr h;
	char err[256];

	if (fwimg_verify(image, pub, &h, err, sizeof(err)))
		die(err, NULL);
	printf("board=%s\nversion=%s\nversion_code=%llu\n", h.board, h.version,
	       (unsigned long long)h.version_code);
	return 0;
}

/* cmd_tlscert - new P-256 key and a 10-year self-signed cert for CN */
static int
cmd_tlscert(const char *keypath, const char *certpath, const char *cn)
{
	unsigned char buf[4096], serial[16];
	char subject[300];
	mbedtls_x509write_cert crt;
	mbedtls_pk_context pk;
	mbedtls_mpi sn;

	rng_init();
	gen_ec_key(&pk);
	if (mbedtls_pk_write_key_pem(&pk, buf, sizeof(buf)))
		die("cannot encode the TLS key", NULL);
	snprintf(subject, sizeof(subject), "CN=%s", cn);
	mbedtls_x509write_crt_init(&crt);
	mbedtls_mpi_init(&sn);
	mbedtls_ctr_drbg_random(&drbg, serial, sizeof(serial));
	serial[0] &= 0x7f;
	mbedtls_mpi_read_binary(&sn, serial, sizeof(serial));
	mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
	mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
	mbedtls_x509write_crt_set_subject_key(&crt, &pk);
	mbedtls_x509write_crt_set_issuer_key(&crt, &pk);
	if (mbedtls_x509write_crt_set_subject_name(&crt, subject) ||
	    mbedtls_x509write_crt_set_issuer_name(&crt, subject) ||
	    mbedtls_x509write_crt_set_serial(&crt, &sn) ||
	    mbedtls_x509write_crt_set_validity(&crt, "20240101000000",
	                                       "20491231235959") ||
	    mbedtls_x509write_crt_set_basic_constraints(&crt, 0, -1))
		die("cannot build the certificate", NULL);
	write_file(keypath, buf, strlen((char *)buf), 0600);
	if (mbedtls_x509write_crt_pem(&crt, buf, sizeof(buf),
	                              mbedtls_ctr_drbg_random, &drbg))
		die("cannot sign the certificate", NULL);
	write_file(certpath, buf, strlen((char *)buf), 0644);
	mbedtls_x509write_crt_free(&crt);
	mbedtls_mpi_free(&sn);
	mbedtls_pk_free(&pk);
	return 0;
}

/* main - dispatch the subcommand */
int
main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "genkey"))
		return cmd_genkey(argv[2], argv[3]);
	if (argc >= 2 && !strcmp(argv[1], "pack"))
		return cmd_pack(argc - 1, argv + 1);
	if (argc == 4 && !strcmp(argv[1], "verify"))
		return cmd_verify(argv[2], argv[3]);
	if (argc == 5 && !strcmp(argv[1], "tlscert"))
		return cmd_tlscert(argv[2], argv[3], argv[4]);
	fprintf(stderr, "usage: mmsign genkey PRIV PUB | pack -b BOARD -v VER"
	                " -c CODE -k KERNEL -r ROOTFS -s PRIV -o OUT |"
	                " verify PUB IMAGE | tlscert KEY CERT CN\n");
	return 2;
}
