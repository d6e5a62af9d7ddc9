/*
 * mailmoat-flash - install a signed firmware image into the inactive slot.
 *
 *   mailmoat-flash [-n] [-f] [-R] IMAGE
 *   mailmoat-flash [-f] [-R] -          (the image on stdin)
 *     -n  check only: verify and report, write nothing
 *     -f  accept a version that is not newer than the running one
 *     -R  do not reboot afterwards (the web UI reboots after replying)
 *
 * IMAGE "-" takes the image from stdin (the web UI's upload; a 64 MB box
 * never holds a 34 MB image in RAM).  The header is read and checked first
 * (syntax, board, version; nothing is written for an image that fails
 * these).  When the data partition has room for the image (and
 * SPOOL_SLACK more), the upload is spooled there and verified in full
 * before the slot is touched: a bad image writes nothing to the slots.
 * Only when it has no room is the image streamed straight into the
 * inactive slot, read back and verified there before the boot record
 * names it; a slot that fails verification gets its header wiped, so it
 * never claims a version, and the running slot stays the one that boots.
 * $MAILMOAT_FLASH_SPOOL names another spool directory ("" : never spool).
 *
 * Checks, in order, before anything is written: signature and integrity
 * (fwimg_verify against /etc/mailmoat/fw.pub), board (/etc/mailmoat/board),
 * version code (/etc/mailmoat/version_code, must grow unless -f).  Then it
 * writes the whole image to the inactive slot partition, reads it back and
 * compares the SHA-256, and only then updates the boot record: the new slot
 * is tried once at the next boot; rcS commits it when mailmoat serves, else
 * the boot selector falls back to the old slot.  The data partition is never
 * touched.  The partitions and the running slot come from /run/mailmoat-boot,
 * written by the boot selector (/init of the initramfs).  While the running
 * slot is still on its trial boot (not committed), flashing is refused: the
 * other slot is then the only known-good one.
 *
 * Output: one line, "valid: ..." / "flashed: ..." on stdout (exit 0) or
 * "refused: <reason>" on stderr (exit 1; exit 2 for I/O errors).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <mbedtls/sha256.h>

#include "fwimg.h"

#define ETC "/etc/mailmoat"
#define BOOTINFO "/run/mailmoat-boot"
#define SPOOL_DIR "/data"              /* the data partition */
#define SPOOL_SLACK (4u * 1024 * 1024) /* left free for the daemon's state */

/* refuse - print a refusal and exit 1 */
static void
refuse(const char *why)
{
	fprintf(stderr, "refused: %s\n", why);
	exit(1);
}

/* ioerr - print an I/O error and exit 2 */
static void
ioerr(const char *what, const char *path)
{
	fprintf(stderr, "error: %s %s: %s\n", what, path, strerror(errno));
	exit(2);
}

/* read_line - first line of a small file into out; 0 or -ENOENT */
static int
read_line(const char *path, char *out, size_t outlen)
{
	FILE *f = fopen(path, "r");

	if (!f)
		return -ENOENT;
	if (!fgets(out, (int)outlen, f))
		out[0] = '\0';
	fclose(f);
	out[strcspn(out, "\r\n")] = '\0';
	return 0;
}

/* bootinfo - value of key in /run/mailmoat-boot into out; 0 or -ENOENT */
static int
bootinfo(const char *key, char *out, size_t outlen)
{
	char line[256];
	size_t kl = strlen(key);
	FILE *f = fopen(BOOTINFO, "r");

	if (!f)
		return -ENOENT;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = '\0';
		if (!strncmp(line, key, kl) && line[kl] == '=') {
			snprintf(out, outlen, "%s", line + kl + 1);
			fclose(f);
			return 0;
		}
	}
	fclose(f);
	return -ENOENT;
}

/* copy_to_slot - write the image file to dev, fsync, read back, compare */
static void
copy_to_slot(const char *image, const char *dev, uint64_t total)
{
	static unsigned char buf[65536];
	unsigned char d1[32], d2[32];
	mbedtls_sha256_context c;
	uint64_t left;
	ssize_t n;
	int in, out;

	in = open(image, O_RDONLY);
	if (in < 0)
		ioerr("cannot open", image);
	out = open(dev, O_RDWR);
	if (out < 0)
		ioerr("cannot open", dev);
	mbedtls_sha256_init(&c);
	mbedtls_sha256_starts_ret(&c, 0);
	for (left = total; left > 0; left -= (uint64_t)n) {
		n = read(in, buf, left < sizeof(buf) ? left : sizeof(buf));
		if (n <= 0)
			ioerr("read error on", image);
		mbedtls_sha256_update_ret(&c, buf, (size_t)n);
		if (write(out, buf, (size_t)n) != n)
			ioerr("write error on", dev);
	}
	mbedtls_sha256_finish_ret(&c, d1);
	if (fsync(out) < 0)
		ioerr("fsync failed on", dev);
	/* Read back what the medium now holds. */
	if (lseek(out, 0, SEEK_SET) < 0)
		ioerr("seek failed on", dev);
	posix_fadvise(out, 0, 0, POSIX_FADV_DONTNEED);
	mbedtls_sha256_starts_ret(&c, 0);
	for (left = total; left > 0; left -= (uint64_t)n) {
		n = read(out, buf, left < sizeof(buf) ? left : sizeof(buf));
		if (n <= 0)
			ioerr("read-back error on", dev);
		mbedtls_sha256_update_ret(&c, buf, (size_t)n);
	}
	mbedtls_sha256_finish_ret(&c, d2);
	mbedtls_sha256_free(&c);
	close(in);
	close(out);
	if (memcmp(d1, d2, 32) != 0) {
		fprintf(stderr, "error: read-back of %s does not match\n", dev);
		exit(2);
	}
}

/* write_bootrec - record "try slot once" in the boot record partition */
static void
write_bootrec(const char *dev, const char *active, const char *trial)
{
	char rec[512];
	int fd;

	memset(rec, 0, sizeof(rec));
	snprintf(rec, sizeof(rec), "MMBOOT=1\nactive=%s\ntry=%s\ntries=0\n",
	         active, trial);
	fd = open(dev, O_WRONLY);
	if (fd < 0)
		ioerr("cannot open", dev);
	if (write(fd, rec, sizeof(rec)) != (ssize_t)sizeof(rec) ||
	    fsync(fd) < 0)
		ioerr("cannot write", dev);
	close(fd);
}

/*
 * on_trial - whether the boot record still names slot as on trial: the
 * running slot has not been committed yet, so the other slot is the only
 * known-good one and must not be overwritten.
 */
static int
on_trial(const char *dev, const char *slot)
{
	char rec[513], want[16];
	ssize_t n;
	int fd = open(dev, O_RDONLY);

	if (fd < 0)
		ioerr("cannot open", dev);
	n = read(fd, rec, 512);
	close(fd);
	if (n != 512)
		ioerr("cannot read", dev);
	rec[512] = '\0';
	snprintf(want, sizeof(want), "\ntry=%s\n", slot);
	return strstr(rec, want) != NULL;
}

/* wipe_header - zero the first header of dev (a failed streamed install) */
static void
wipe_header(const char *dev)
{
	static unsigned char zero[FWIMG_HDR_SIZE];
	int fd = open(dev, O_WRONLY);

	if (fd < 0)
		return;
	if (write(fd, zero, sizeof(zero)) == (ssize_t)sizeof(zero))
		fsync(fd);
	close(fd);
}

/* stream_to_slot - the rest of an image (header already read) from stdin
 * into dev; exits on error */
static void
stream_to_slot(const unsigned char *hdr, const char *dev, uint64_t total)
{
	static unsigned char buf[65536];
	uint64_t left;
	ssize_t n;
	off_t end;
	int out = open(dev, O_RDWR);

	if (out < 0)
		ioerr("cannot open", dev);
	end = lseek(out, 0, SEEK_END);
	if (end < 0 || (uint64_t)end < total) {
		close(out);
		refuse("the image is larger than the slot partition");
	}
	if (lseek(out, 0, SEEK_SET) < 0 ||
	    write(out, hdr, FWIMG_HDR_SIZE) != FWIMG_HDR_SIZE)
		ioerr("write error on", dev);
	for (left = total - FWIMG_HDR_SIZE; left > 0; left -= (uint64_t)n) {
		n = read(0, buf, left < sizeof(buf) ? left : sizeof(buf));
		if (n <= 0) {
			close(out);
			wipe_header(dev);
			refuse("image is truncated (the upload ended early)");
		}
		if (write(out, buf, (size_t)n) != n) {
			close(out);
			wipe_header(dev);
			ioerr("write error on", dev);
		}
	}
	if (fsync(out) < 0)
		ioerr("fsync failed on", dev);
	posix_fadvise(out, 0, 0, POSIX_FADV_DONTNEED);
	close(out);
}

/* spool_upload - the image (header already read) from stdin into a file
 * in the spool directory when it has room; its path, or NULL (no room:
 * stream into the slot).  A short upload is refused, the file removed. */
static const char *
spool_upload(const unsigned char *hdr, uint64_t total)
{
	static char path[256];
	static unsigned char buf[65536];
	const char *dir = getenv("MAILMOAT_FLASH_SPOOL");
	struct statvfs sv;
	uint64_t left;
	ssize_t n;
	int fd;

	if (dir == NULL)
		dir = SPOOL_DIR;
	if (*dir == '\0' || statvfs(dir, &sv) < 0 ||
	    (uint64_t)sv.f_bavail * sv.f_frsize < total + SPOOL_SLACK)
		return NULL;
	snprintf(path, sizeof(path), "%s/.mailmoat-upload.XXXXXX", dir);
	fd = mkstemp(path);
	if (fd < 0)
		return NULL;
	if (write(fd, hdr, FWIMG_HDR_SIZE) != FWIMG_HDR_SIZE)
		goto ioerror;
	for (left = total - FWIMG_HDR_SIZE; left > 0; left -= (uint64_t)n) {
		n = read(0, buf, left < sizeof(buf) ? left : sizeof(buf));
		if (n <= 0) {
			close(fd);
			unlink(path);
			refuse("image is truncated (the upload ended early)");
		}
		if (write(fd, buf, (size_t)n) != n)
			goto ioerror;
	}
	close(fd);
	return path;
ioerror:
	close(fd);
	unlink(path);
	ioerr("write error on", path);
	return NULL;
}

/* read_full - exactly n bytes from fd; 0 or -1 */
static int
read_full(int fd, unsigned char *p, size_t n)
{
	ssize_t r;

	while (n > 0) {
		r = read(fd, p, n);
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* main - verify, check board and version, write, mark, reboot */
int
main(int argc, char **argv)
{
	char err[256], board[64], cur[32], slot[8], dev[128], rec[128];
	char msg[512];
	struct fwimg_hdr h;
	unsigned long long curcode;
	unsigned char hdr[FWIMG_HDR_SIZE];
	int opt, check_only = 0, force = 0, reboot = 1, streamed;
	const char *other, *spool = NULL;

	while ((opt = getopt(argc, argv, "nfR")) != -1) {
		switch (opt) {
		case 'n':
			check_only = 1;
			break;
		case 'f':
			force = 1;
			break;
		case 'R':
			reboot = 0;
			break;
		default:
			fprintf(stderr, "usage: mailmoat-flash [-n] [-f] [-R]"
			                " IMAGE\n");
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: mailmoat-flash [-n] [-f] [-R] IMAGE\n");
		return 2;
	}
	streamed = strcmp(argv[optind], "-") == 0;
	if (streamed && check_only)
		refuse("-n needs an image file");
	if (streamed) {
		if (read_full(0, hdr, sizeof(hdr)) < 0)
			refuse("image is truncated (no complete header)");
		if (fwimg_parse_header(hdr, &h, err, sizeof(err)))
			refuse(err);
	} else if (fwimg_verify(argv[optind], ETC "/fw.pub", &h, err,
	                        sizeof(err))) {
		refuse(err);
	}
	if (read_line(ETC "/board", board, sizeof(board)))
		ioerr("cannot read", ETC "/board");
	if (strcmp(h.board, board) != 0) {
		snprintf(msg, sizeof(msg),
		         "image is for board '%s', this box"
		         " is '%s'",
		         h.board, board);
		refuse(msg);
	}
	if (read_line(ETC "/version_code", cur, sizeof(cur)))
		ioerr("cannot read", ETC "/version_code");
	curcode = strtoull(cur, NULL, 10);
	if (h.version_code <= curcode && !force) {
		snprintf(msg, sizeof(msg),
		         "image version %s (%llu) is not"
		         " newer than the running one (%llu); use -f to force",
		         h.version, (unsigned long long)h.version_code,
		         curcode);
		refuse(msg);
	}
	if (check_only) {
		printf("valid: board=%s version=%s version_code=%llu\n",
		       h.board, h.version, (unsigned long long)h.version_code);
		return 0;
	}
	if (bootinfo("slot", slot, sizeof(slot)) ||
	    bootinfo("bootrec", rec, sizeof(rec)))
		ioerr("cannot read", BOOTINFO);
	if (on_trial(rec, slot))
		refuse("the running slot is still on its trial boot; flash"
		       " again once it is committed (mailmoat serving)");
	other = strcmp(slot, "A") == 0 ? "B" : "A";
	if (bootinfo(strcmp(other, "A") == 0 ? "slot_a" : "slot_b", dev,
	             sizeof(dev)))
		ioerr("cannot read", BOOTINFO);
	if (streamed)
		spool = spool_upload(hdr, FWIMG_HDR_SIZE + h.payload_size +
		                                  FWIMG_SIG_SIZE);
	if (spool != NULL) {
		/* verified whole before anything goes to the slot */
		if (fwimg_verify(spool, ETC "/fw.pub", &h, err, sizeof(err))) {
			unlink(spool);
			refuse(err);
		}
		copy_to_slot(spool, dev,
		             FWIMG_HDR_SIZE + h.payload_size + FWIMG_SIG_SIZE);
		unlink(spool);
	} else if (streamed) {
		stream_to_slot(hdr, dev,
		               FWIMG_HDR_SIZE + h.payload_size +
		                       FWIMG_SIG_SIZE);
		if (fwimg_verify(dev, ETC "/fw.pub", &h, err, sizeof(err))) {
			wipe_header(dev);
			snprintf(msg, sizeof(msg),
			         "%s (the inactive slot was not activated)",
			         err);
			refuse(msg);
		}
	} else {
		copy_to_slot(argv[optind], dev,
		             FWIMG_HDR_SIZE + h.payload_size + FWIMG_SIG_SIZE);
	}
	write_bootrec(rec, slot, other);
	printf("flashed: version %s into slot %s (%s); it is tried once at"
	       " the next boot%s\n",
	       h.version, other, dev, reboot ? ", rebooting" : "");
	fflush(stdout);
	sync();
	if (reboot)
		execl("/sbin/reboot", "reboot", (char *)NULL);
	return 0;
}
