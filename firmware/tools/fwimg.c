/*
 * fwimg.c - parse and verify signed firmware images (format: fwimg.h).
 *
 * One source file for both verifiers: mmsign (host, Debian's libmbedtls)
 * and mailmoat-flash (on the box, static musl, trimmed mbedTLS).  Reads
 * the file twice with a fixed buffer: memory use does not grow with the
 * image.  Nothing here writes anywhere.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>

#include "fwimg.h"

/* seterr - format a reason into err and return rc */
static int
seterr(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return rc;
}

/* fwimg_hex - lower-case hex of n bytes into out (2n+1 bytes) */
void
fwimg_hex(const unsigned char *p, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = d[p[i] >> 4];
		out[2 * i + 1] = d[p[i] & 15];
	}
	out[2 * n] = '\0';
}

/* parse_u64 - strict decimal; 0 or -EINVAL */
static int
parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

/* copy_field - copy a text value that must fit and be printable */
static int
copy_field(char *dst, size_t dstlen, const char *v)
{
	size_t n = strlen(v), i;

	if (n == 0 || n >= dstlen)
		return -EINVAL;
	for (i = 0; i < n; i++)
		if (v[i] < 0x21 || v[i] > 0x7e)
			return -EINVAL;
	memcpy(dst, v, n + 1);
	return 0;
}

/* fwimg_parse_header - parse a 4096-byte header; 0 or -EINVAL */
int
fwimg_parse_header(const unsigned char *buf, struct fwimg_hdr *h, char *err,
                   size_t errlen)
{
	char text[FWIMG_HDR_SIZE + 1], *line, *save = NULL, *eq;
	size_t len;
	unsigned seen = 0;
	int rc = 0;

	memset(h, 0, sizeof(*h));
	memcpy(text, buf, FWIMG_HDR_SIZE);
	text[FWIMG_HDR_SIZE] = '\0';
	len = strlen(text);
	if (strncmp(text, FWIMG_MAGIC "\n", sizeof(FWIMG_MAGIC)) != 0)
		return seterr(err, errlen, -EINVAL,
		              "not a mailmoat firmware image (bad magic)");
	for (size_t i = len; i < FWIMG_HDR_SIZE; i++)
		if (buf[i] != 0)
			return seterr(err, errlen, -EINVAL,
			              "header padding is not zero");
	for (line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		eq = strchr(line, '=');
		if (!eq)
			return seterr(err, errlen, -EINVAL,
			              "header line without '='");
		*eq++ = '\0';
		if (!strcmp(line, "MAILMOAT-FW"))
			continue;
		else if (!strcmp(line, "board"))
			rc = copy_field(h->board, sizeof(h->board), eq),
			seen |= 1;
		else if (!strcmp(line, "version"))
			rc = copy_field(h->version, sizeof(h->version), eq),
			seen |= 2;
		else if (!strcmp(line, "version_code"))
			rc = parse_u64(eq, &h->version_code), seen |= 4;
		else if (!strcmp(line, "kernel_offset"))
			rc = parse_u64(eq, &h->kernel_offset), seen |= 8;
		else if (!strcmp(line, "kernel_size"))
			rc = parse_u64(eq, &h->kernel_size), seen |= 16;
		else if (!strcmp(line, "rootfs_offset"))
			rc = parse_u64(eq, &h->rootfs_offset), seen |= 32;
		else if (!strcmp(line, "rootfs_size"))
			rc = parse_u64(eq, &h->rootfs_size), seen |= 64;
		else if (!strcmp(line, "payload_size"))
			rc = parse_u64(eq, &h->payload_size), seen |= 128;
		else if (!strcmp(line, "kernel_sha256"))
			rc = copy_field(h->kernel_sha256, 65, eq), seen |= 256;
		else if (!strcmp(line, "rootfs_sha256"))
			rc = copy_field(h->rootfs_sha256, 65, eq), seen |= 512;
		else
			return seterr(err, errlen, -EINVAL,
			              "unknown header key '%.40s'", line);
		if (rc)
			return seterr(err, errlen, -EINVAL,
			              "bad header value for '%.40s'", line);
	}
	if (seen != 1023)
		return seterr(err, errlen, -EINVAL, "header lacks a field");
	/* Parts must lie inside the payload, aligned, without overflow. */
	if (h->payload_size > (1ULL << 32) ||
	    h->kernel_offset != FWIMG_HDR_SIZE ||
	    h->kernel_size > h->payload_size ||
	    h->rootfs_offset % FWIMG_ALIGN ||
	    h->rootfs_offset > FWIMG_HDR_SIZE + h->payload_size ||
	    h->rootfs_offset < h->kernel_offset + h->kernel_size ||
	    h->rootfs_size > h->payload_size ||
	    h->rootfs_offset + h->rootfs_size >
	            FWIMG_HDR_SIZE + h->payload_size)
		return seterr(err, errlen, -EINVAL,
		              "header sizes are inconsistent");
	return 0;
}

/* hash_range - SHA-256 of [off, off+len) of fd into out[32] */
static int
hash_range(int fd, uint64_t off, uint64_t len, mbedtls_sha256_context *whole,
           unsigned char out[32])
{
	static unsigned char buf[65536];
	mbedtls_sha256_context c;
	ssize_t n;
	size_t want;

	mbedtls_sha256_init(&c);
	mbedtls_sha256_starts_ret(&c, 0);
	if (lseek(fd, (off_t)off, SEEK_SET) < 0)
		return -EIO;
	while (len > 0) {
		want = len < sizeof(buf) ? (size_t)len : sizeof(buf);
		n = read(fd, buf, want);
		if (n <= 0) {
			mbedtls_sha256_free(&c);
			return -EIO;
		}
		mbedtls_sha256_update_ret(&c, buf, (size_t)n);
		if (whole)
			mbedtls_sha256_update_ret(whole, buf, (size_t)n);
		len -= (uint64_t)n;
	}
	mbedtls_sha256_finish_ret(&c, out);
	mbedtls_sha256_free(&c);
	return 0;
}

/* fwimg_verify - check image file against a PEM public key (see fwimg.h) */
int
fwimg_verify(const char *path, const char *pubkey, struct fwimg_hdr *h,
             char *err, size_t errlen)
{
	unsigned char hdr[FWIMG_HDR_SIZE], sig[FWIMG_SIG_SIZE], d[32];
	char hex[65];
	mbedtls_sha256_context whole;
	mbedtls_pk_context pk;
	struct stat st;
	size_t siglen;
	int fd, rc;

	mbedtls_pk_init(&pk);
	mbedtls_sha256_init(&whole);
	fd = open(path, O_RDONLY);
	if (fd < 0) {
		rc = seterr(err, errlen, -ENOENT, "cannot open %s: %s", path,
		            strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) < 0 ||
	    (!S_ISBLK(st.st_mode) && st.st_size < FWIMG_HDR_SIZE) ||
	    read(fd, hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr)) {
		rc = seterr(err, errlen, -EINVAL,
		            "image is truncated (no complete header)");
		goto out;
	}
	rc = fwimg_parse_header(hdr, h, err, errlen);
	if (rc)
		goto out;
	/* A slot partition (streamed install) is larger than its image:
	 * the header's sizes say where the image ends. */
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(fd, 0, SEEK_END);

		st.st_size = end >= (off_t)(FWIMG_HDR_SIZE + h->payload_size +
		                            FWIMG_SIG_SIZE)
		                     ? (off_t)(FWIMG_HDR_SIZE +
		                               h->payload_size + FWIMG_SIG_SIZE)
		                     : end;
	}
	if ((uint64_t)st.st_size !=
	    FWIMG_HDR_SIZE + h->payload_size + FWIMG_SIG_SIZE) {
		rc = seterr(err, errlen, -EINVAL,
		            "image size %lld does not match its header (%llu):"
		            " truncated or padded",
		            (long long)st.st_size,
		            (unsigned long long)(FWIMG_HDR_SIZE +
		                                 h->payload_size +
		                                 FWIMG_SIG_SIZE));
		goto out;
	}
	rc = hash_range(fd, h->kernel_offset, h->kernel_size, NULL, d);
	fwimg_hex(d, 32, hex);
	if (rc || strcmp(hex, h->kernel_sha256)) {
		rc = seterr(err, errlen, -EINVAL,
		            "image is corrupt or tampered: kernel SHA-256 "
		            "mismatch");
		goto out;
	}
	rc = hash_range(fd, h->rootfs_offset, h->rootfs_size, NULL, d);
	fwimg_hex(d, 32, hex);
	if (rc || strcmp(hex, h->rootfs_sha256)) {
		rc = seterr(err, errlen, -EINVAL,
		            "image is corrupt or tampered: root filesystem "
		            "SHA-256 mismatch");
		goto out;
	}
	mbedtls_sha256_starts_ret(&whole, 0);
	if (hash_range(fd, 0, FWIMG_HDR_SIZE + h->payload_size, &whole, d) ||
	    pread(fd, sig, sizeof(sig),
	          (off_t)(FWIMG_HDR_SIZE + h->payload_size)) !=
	            (ssize_t)sizeof(sig)) {
		rc = seterr(err, errlen, -EIO, "read error on %s", path);
		goto out;
	}
	mbedtls_sha256_finish_ret(&whole, d);
	if (memcmp(sig, FWIMG_SIG_MAGIC, 8) != 0) {
		rc = seterr(err, errlen, -EINVAL, "image is not signed");
		goto out;
	}
	siglen = (size_t)sig[8] << 8 | sig[9];
	if (siglen == 0 || siglen > FWIMG_SIG_SIZE - 10) {
		rc = seterr(err, errlen, -EINVAL, "bad signature block");
		goto out;
	}
	if (mbedtls_pk_parse_public_keyfile(&pk, pubkey) != 0 ||
	    !mbedtls_pk_can_do(&pk, MBEDTLS_PK_ECDSA)) {
		rc = seterr(err, errlen, -EINVAL,
		            "cannot load the public key %s", pubkey);
		goto out;
	}
	if (mbedtls_pk_verify(&pk, MBEDTLS_MD_SHA256, d, 32, sig + 10,
	                      siglen) != 0) {
		rc = seterr(err, errlen, -EINVAL,
		            "bad signature: image is tampered or not signed"
		            " with this box's key");
		goto out;
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	mbedtls_pk_free(&pk);
	mbedtls_sha256_free(&whole);
	return rc;
}
