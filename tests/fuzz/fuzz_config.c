/*
 * fuzz_config.c - libFuzzer harness for the config and list parsers.
 *
 * Each input is written to a file in a private temp directory and given
 * to config_load() (as mailmoat.conf) and to list_load() (as "list", a
 * name the config may reference: "allowlist = list").  Every line is also
 * fed to list_add()/list_del() and to the duration and size parsers.
 * Whatever the bytes, the parsers must return an error string or a
 * config, never crash, leak or read out of bounds.
 *
 * Build (tests/fuzz/run.sh does this):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iproxy -D_GNU_SOURCE \
 *     tests/fuzz/fuzz_config.c proxy/config.c proxy/list.c proxy/util.c \
 *     proxy/log.c ...
 * Seeds: tests/fuzz/seeds/config/.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy.h"

static char fuzz_dir[64];
static char conf_path[128];
static char list_path[128];

/* fuzz_write - replace path with the input bytes; 0 or -1 */
static int
fuzz_write(const char *path, const uint8_t *data, size_t size)
{
	FILE *f = fopen(path, "w");

	if (f == NULL)
		return -1;
	if (size > 0 && fwrite(data, 1, size, f) != size) {
		fclose(f);
		return -1;
	}
	return fclose(f) == 0 ? 0 : -1;
}

/* fuzz_lines - each line through list_add/list_del and the parsers */
static void
fuzz_lines(const uint8_t *data, size_t size)
{
	struct list *l = list_new();
	struct ipaddr ip;
	char line[512];
	uint64_t v;
	size_t i = 0;

	while (i < size) {
		size_t n = 0;

		while (i < size && data[i] != '\n') {
			if (n < sizeof(line) - 1)
				line[n++] = (char)data[i];
			i++;
		}
		i++;
		line[n] = '\0';
		if (strlen(line) != n)
			continue; /* embedded NUL: a C string stops there */
		config_parse_duration_ms(line, &v);
		config_parse_size(line, &v);
		if (list_add(l, line) == 0) {
			list_match_addr(l, line);
			list_match_domain(l, line);
			if (ipaddr_parse(&ip, line) == 0 &&
			    !list_match_ip(l, &ip))
				abort(); /* an added address must match */
			if (list_del(l, line) != 0)
				abort(); /* what was added can be deleted */
		}
	}
	list_free(l);
}

/* fuzz_cleanup - remove the private directory at exit */
static void
fuzz_cleanup(void)
{
	unlink(conf_path);
	unlink(list_path);
	rmdir(fuzz_dir);
}

/* LLVMFuzzerInitialize - a private directory for the input files */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* In RAM where there is a tmpfs: two files are written per input,
	 * and on the disk that was most of the harness's time. */
	snprintf(fuzz_dir, sizeof(fuzz_dir), "/dev/shm/fuzz_config.XXXXXX");
	if (mkdtemp(fuzz_dir) == NULL)
		snprintf(fuzz_dir, sizeof(fuzz_dir), "/tmp/fuzz_config.XXXXXX");
	if (fuzz_dir[1] == 't' && mkdtemp(fuzz_dir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(conf_path, sizeof(conf_path), "%s/mailmoat.conf", fuzz_dir);
	snprintf(list_path, sizeof(list_path), "%s/list", fuzz_dir);
	atexit(fuzz_cleanup);
	log_open(false, false);
	return 0;
}

/* LLVMFuzzerTestOneInput - one input through every parser */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	struct config *c;
	struct list *l;

	if (size > 64 * 1024)
		return 0;
	if (fuzz_write(list_path, data, size) != 0 ||
	    fuzz_write(conf_path, data, size) != 0)
		abort();
	err[0] = '\0';
	c = config_load(conf_path, err, sizeof(err));
	if (c == NULL && err[0] == '\0')
		abort(); /* a failure must say why */
	if (c != NULL) {
		config_ref(c);
		config_unref(c);
		config_unref(c);
	}
	err[0] = '\0';
	l = list_load(list_path, err, sizeof(err));
	if (l == NULL && err[0] == '\0')
		abort();
	list_free(l);
	fuzz_lines(data, size);
	return 0;
}
