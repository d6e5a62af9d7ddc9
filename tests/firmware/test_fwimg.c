/*
 * test_fwimg.c - the image header parser and verifier (firmware/tools/
 * fwimg.c) against hostile headers: each case must be refused with a
 * reason, never crash or accept.  Built and run by tests/firmware/run.sh
 * on the host (Debian's libmbedtls); the same file runs on the box.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fwimg.h"
#include "t.h"

static const char good[] =
        "MAILMOAT-FW=1\nboard=x86_64\nversion=1.0\nversion_code=7\n"
        "kernel_offset=4096\nkernel_size=10\nkernel_sha256=%s\n"
        "rootfs_offset=8192\nrootfs_size=10\nrootfs_sha256=%s\n"
        "payload_size=8192\n";
static const char zeros[] =
        "0000000000000000000000000000000000000000000000000000000000000000";

/* mk - a header from fmt into buf (zero padded) */
static void
mk(unsigned char *buf, const char *text)
{
	memset(buf, 0, FWIMG_HDR_SIZE);
	memcpy(buf, text, strlen(text));
}

struct hcase {
	const char *name;
	const char *from, *to; /* replace in the good header; NULL: keep */
	const char *append;    /* added at the end */
	int want;
};

static const struct hcase cases[] = {
        {"good header parses", NULL, NULL, NULL, 0},
        {"bad magic", "MAILMOAT-FW=1", "MAILMOAT-FW=2", NULL, -EINVAL},
        {"missing board", "board=x86_64\n", "", NULL, -EINVAL},
        {"unknown key", NULL, NULL, "evil=1\n", -EINVAL},
        {"line without =", NULL, NULL, "junk\n", -EINVAL},
        {"negative size", "kernel_size=10", "kernel_size=-1", NULL, -EINVAL},
        {"size overflow", "rootfs_size=10", "rootfs_size=18446744073709551615",
         NULL, -EINVAL},
        {"huge payload", "payload_size=8192", "payload_size=99999999999", NULL,
         -EINVAL},
        {"rootfs beyond payload", "rootfs_offset=8192", "rootfs_offset=12288",
         NULL, -EINVAL},
        {"rootfs offset wraps around", "rootfs_offset=8192\nrootfs_size=10",
         "rootfs_offset=18446744073709547520\nrootfs_size=4096", NULL, -EINVAL},
        {"unaligned rootfs", "rootfs_offset=8192", "rootfs_offset=8193", NULL,
         -EINVAL},
        {"kernel overlaps rootfs", "kernel_size=10", "kernel_size=5000", NULL,
         -EINVAL},
        {"board with a space", "board=x86_64", "board=x86 64", NULL, -EINVAL},
        {"version too long", "version=1.0",
         "version=1234567890123456789012345678901234567890", NULL, -EINVAL},
        {"trailing garbage number", "version_code=7", "version_code=7x", NULL,
         -EINVAL},
};

/* replace - copy s into out with the first from replaced by to */
static void
replace(char *out, size_t len, const char *s, const char *from, const char *to)
{
	const char *p = from ? strstr(s, from) : NULL;

	if (!p) {
		snprintf(out, len, "%s", s);
		return;
	}
	snprintf(out, len, "%.*s%s%s", (int)(p - s), s, to, p + strlen(from));
}

/* main - run the header cases, then file-level cases */
int
main(int argc, char **argv)
{
	unsigned char buf[FWIMG_HDR_SIZE];
	char text[FWIMG_HDR_SIZE], base[FWIMG_HDR_SIZE], err[256];
	struct fwimg_hdr h;
	size_t i;
	int rc;

	snprintf(base, sizeof(base), good, zeros, zeros);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		t_begin(cases[i].name);
		replace(text, sizeof(text), base, cases[i].from, cases[i].to);
		if (cases[i].append)
			strncat(text, cases[i].append,
			        sizeof(text) - strlen(text) - 1);
		mk(buf, text);
		err[0] = '\0';
		rc = fwimg_parse_header(buf, &h, err, sizeof(err));
		T_INTEQ(rc, cases[i].want);
		T_CHECK(rc == 0 || err[0], "refused without a reason");
		t_end();
	}

	t_begin("non-zero padding after the header text");
	mk(buf, base);
	buf[FWIMG_HDR_SIZE - 1] = 'x';
	T_INTEQ(fwimg_parse_header(buf, &h, err, sizeof(err)), -EINVAL);
	t_end();

	t_begin("header without NUL at all");
	memset(buf, 'A', sizeof(buf));
	T_INTEQ(fwimg_parse_header(buf, &h, err, sizeof(err)), -EINVAL);
	t_end();

	if (argc == 3) {
		/* argv[1] = public key, argv[2] = a valid image */
		t_begin("valid image verifies");
		T_INTEQ(fwimg_verify(argv[2], argv[1], &h, err, sizeof(err)),
		        0);
		t_end();
		t_begin("missing image is refused");
		T_CHECK(fwimg_verify("/nonexistent.img", argv[1], &h, err,
		                     sizeof(err)) < 0,
		        "accepted");
		t_end();
		t_begin("missing key is refused");
		T_CHECK(fwimg_verify(argv[2], "/nonexistent.pub", &h, err,
		                     sizeof(err)) < 0,
		        "accepted");
		t_end();
	}
	return t_exit();
}
