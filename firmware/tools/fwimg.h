/*
 * fwimg.h - the signed firmware image format, shared by the host tool
 * (mmsign) and the on-box updater (mailmoat-flash).
 *
 * Layout of an image file (all sizes in bytes):
 *
 *   [0, 4096)                header: ASCII "key=value\n" lines, NUL padded
 *   [4096, 4096+payload)     kernel (padded to 4096), squashfs root (padded)
 *   [4096+payload, +512)     signature trailer: "MMSIG001", 2-byte big-endian
 *                            DER length, ECDSA P-256 DER signature, zeros
 *
 * The signature covers SHA-256(header || payload).  The header names the
 * board, the version (text and a monotonic integer code), and offset, size
 * and SHA-256 of the kernel and of the root filesystem.
 */
#ifndef MAILMOAT_FWIMG_H
#define MAILMOAT_FWIMG_H

#include <stddef.h>
#include <stdint.h>

#define FWIMG_HDR_SIZE 4096
#define FWIMG_SIG_SIZE 512
#define FWIMG_ALIGN 4096
#define FWIMG_MAGIC "MAILMOAT-FW=1"
#define FWIMG_SIG_MAGIC "MMSIG001"

struct fwimg_hdr {
	char board[32];
	char version[32];
	uint64_t version_code;
	uint64_t kernel_offset, kernel_size;
	uint64_t rootfs_offset, rootfs_size;
	uint64_t payload_size;
	char kernel_sha256[65];
	char rootfs_sha256[65];
};

/* fwimg_parse_header - parse a 4096-byte header; 0 or -EINVAL (err says why) */
int fwimg_parse_header(const unsigned char *buf, struct fwimg_hdr *h, char *err,
                       size_t errlen);

/*
 * fwimg_verify - check the image file at path against the PEM public key
 * at pubkey: header syntax, total size (truncation), part hashes and the
 * ECDSA signature.  path may be a block device holding an image at its
 * start (a slot written by a streamed install).  Fills *h.  0 when valid, else
 * -EINVAL/-EIO/-ENOENT with a one-line reason in err.
 */
int fwimg_verify(const char *path, const char *pubkey, struct fwimg_hdr *h,
                 char *err, size_t errlen);

/* fwimg_hex - lower-case hex of n bytes into out (2n+1 bytes) */
void fwimg_hex(const unsigned char *p, size_t n, char *out);

#endif
