/*
 * firmware.c - /cgi-bin/firmware: versions and slots, image upload,
 * config backup and restore.
 *
 * GET: the running version and slot, the other slot's version (from its
 * image header, read off the partition named in /run/mailmoat-boot) and
 * the forms.  GET ?op=backup downloads the config file.
 *
 * POST multipart/form-data, parts in form order: csrf (first: nothing is
 * written before it is checked), op (flash or restore), then the file
 * (image or config).  An image is streamed, 64 KiB at a time, into
 * `mailmoat-flash -R -`, which checks its header (board, version) before
 * writing, writes it straight into the inactive slot and verifies it
 * there (hashes, signature) before the boot record names the slot: the
 * image is never held in RAM nor spooled (a 64 MB box takes a 34 MB
 * image; the data partition is smaller than one).  At most 64 MiB.  On
 * success the page says so and the box reboots into the new slot a few
 * seconds later (the page reloads itself).  A
 * config (at most 64 KiB) is checked by the daemon (`config check`) and
 * only then replaces the config (atomic write) and reloaded.
 *
 * Paths: $MAILMOAT_FLASH (CGI_SBIN/mailmoat-flash), $MAILMOAT_REBOOT
 * (/sbin/reboot).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgi.h"
#include "proxy.h"

#define MAX_IMAGE ((uint64_t)64 << 20)
#define MAX_CONF (64 * 1024)

struct up {
	const struct cgi_req *r;
	int part; /* parts seen */
	bool csrf_ok;
	char field[32]; /* current part's name */
	char val[128];  /* a small field's value */
	size_t vlen;
	char op[128];
	int fd;    /* the flash tool's stdin */
	int outfd; /* its stdout + stderr */
	pid_t pid;
	bool got_file;
	char *conf; /* restored config text */
	size_t conf_len;
	char err[256];
};

/* env_or - $name or def */
static const char *
env_or(const char *name, const char *def)
{
	const char *v = getenv(name);

	return v && *v ? v : def;
}

/* write_all - n bytes to fd; 0 or -1 */
static int
write_all(int fd, const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* flash_start - run `mailmoat-flash -R -` with a pipe on its stdin */
static int
flash_start(struct up *u)
{
	char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
	char *argv[] = {
	        (char *)env_or("MAILMOAT_FLASH", CGI_SBIN "/mailmoat-flash"),
	        "-R", "-", NULL};
	int in[2], out[2];

	if (pipe2(in, O_CLOEXEC) < 0)
		return -1;
	if (pipe2(out, O_CLOEXEC) < 0) {
		close(in[0]);
		close(in[1]);
		return -1;
	}
	fflush(NULL);
	u->pid = fork();
	if (u->pid < 0)
		return -1;
	if (u->pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(out[1], 2);
		execve(argv[0], argv, envp);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	u->fd = in[1];
	u->outfd = out[0];
	return 0;
}

/* flash_finish - the tool's answer (its output) and exit status */
static int
flash_finish(struct up *u, char *out, size_t len)
{
	size_t got = 0;
	ssize_t n;
	int st;

	if (u->fd >= 0) {
		close(u->fd);
		u->fd = -1;
	}
	while (got + 1 < len &&
	       (n = read(u->outfd, out + got, len - 1 - got)) > 0)
		got += (size_t)n;
	out[got] = '\0';
	close(u->outfd);
	if (waitpid(u->pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* up_begin - a part starts: the csrf part must come first */
static int
up_begin(void *arg, const char *name, const char *filename)
{
	struct up *u = arg;

	u->part++;
	snprintf(u->field, sizeof(u->field), "%s", name);
	u->vlen = 0;
	u->val[0] = '\0';
	if (u->part == 1 && strcmp(name, "csrf")) {
		snprintf(u->err, sizeof(u->err), "refused: missing CSRF token");
		return -1;
	}
	if (u->part > 1 && !u->csrf_ok)
		return -1;
	if (!strcmp(name, "image")) {
		if (strcmp(u->op, "flash") || u->got_file) {
			snprintf(u->err, sizeof(u->err),
			         "refused: unexpected image");
			return -1;
		}
		if (flash_start(u) < 0) {
			snprintf(u->err, sizeof(u->err),
			         "cannot run the flash tool: %s",
			         strerror(errno));
			return -1;
		}
		u->got_file = true;
	} else if (!strcmp(name, "config")) {
		if (strcmp(u->op, "restore") || u->got_file) {
			snprintf(u->err, sizeof(u->err),
			         "refused: unexpected config");
			return -1;
		}
		u->got_file = true;
	}
	return 0;
}

/* up_data - image bytes go to the flash tool, small fields to val */
static int
up_data(void *arg, const char *p, size_t n)
{
	struct up *u = arg;
	char *nc;

	if (!strcmp(u->field, "image")) {
		/* EPIPE: the tool refused the image (it says why). */
		if (write_all(u->fd, p, n) < 0)
			return -1;
		return 0;
	}
	if (!strcmp(u->field, "config")) {
		if (u->conf_len + n > MAX_CONF) {
			snprintf(u->err, sizeof(u->err),
			         "refused: a config is at most 64 KiB");
			return -1;
		}
		nc = realloc(u->conf, u->conf_len + n + 1);
		if (!nc)
			return -1;
		u->conf = nc;
		memcpy(u->conf + u->conf_len, p, n);
		u->conf_len += n;
		u->conf[u->conf_len] = '\0';
		return 0;
	}
	if (u->vlen + n >= sizeof(u->val))
		return -1;
	memcpy(u->val + u->vlen, p, n);
	u->vlen += n;
	u->val[u->vlen] = '\0';
	return 0;
}

/* up_end - a part is complete */
static int
up_end(void *arg)
{
	struct up *u = arg;

	if (!strcmp(u->field, "csrf")) {
		u->csrf_ok = cgi_csrf_ok(u->r, u->val);
		if (!u->csrf_ok) {
			snprintf(u->err, sizeof(u->err),
			         "refused: wrong CSRF token");
			return -1;
		}
	} else if (!strcmp(u->field, "op")) {
		snprintf(u->op, sizeof(u->op), "%s", u->val);
	} else if (!strcmp(u->field, "image")) {
		close(u->fd);
		u->fd = -1;
	}
	return 0;
}

/* other_version - the version in the other slot's image header */
static void
other_version(const char *slot, char *out, size_t len)
{
	char dev[256], hdr[4097], *v;
	int fd;
	ssize_t n;

	snprintf(out, len, "-");
	if (cgi_conf_get("/run/mailmoat-boot",
	                 !strcmp(slot, "A") ? "slot_b" : "slot_a", dev,
	                 sizeof(dev)))
		return;
	fd = open(dev, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, hdr, 4096);
	close(fd);
	if (n <= 0)
		return;
	hdr[n] = '\0';
	/* the magic line: "MAILMOAT-FW=1" (fwimg.h), "MAILMOAT-FW" before */
	if (strncmp(hdr, "MAILMOAT-FW=1\n", 14) &&
	    strncmp(hdr, "MAILMOAT-FW\n", 12)) {
		snprintf(out, len, "(no image)");
		return;
	}
	v = strstr(hdr, "\nversion=");
	if (v) {
		v += 9;
		snprintf(out, len, "%.*s", (int)strcspn(v, "\n"), v);
	}
}

/* backup - the config file as a download */
static void
backup(void)
{
	FILE *f = fopen(cgi_conf_path(), "r");
	char buf[4096];
	size_t n;

	if (!f)
		cgi_error(500, "cannot read the config");
	printf("Content-Type: text/plain; charset=utf-8\r\n"
	       "Content-Disposition: attachment; filename=\"mailmoat.conf\"\r\n"
	       "Cache-Control: no-store\r\n\r\n");
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, n, stdout);
	fclose(f);
}

/* restore - check the uploaded config with the daemon, then apply */
static int
restore(const char *text, size_t len, char *msg, size_t mlen)
{
	char real[PATH_MAX], cand[PATH_MAX + 32], cmd[PATH_MAX + 64], *ans;
	char dir[PATH_MAX], *slash;
	struct stat st;
	int rc;

	if (!text || memchr(text, '\0', len)) {
		snprintf(msg, mlen, "refused: not a text file");
		return -1;
	}
	if (!realpath(cgi_conf_path(), real))
		snprintf(real, sizeof(real), "%s", cgi_conf_path());
	snprintf(dir, sizeof(dir), "%s", real);
	slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	snprintf(cand, sizeof(cand), "%s/.mailmoat.conf.webui",
	         slash ? dir : ".");
	if (!cgi_ctl_word(cand) ||
	    cgi_write_atomic(cand, text, len, 0644) < 0) {
		snprintf(msg, mlen, "cannot write the candidate");
		return -1;
	}
	snprintf(cmd, sizeof(cmd), "config check %s", cand);
	rc = cgi_ctl(cmd, &ans);
	unlink(cand);
	if (rc != 0) {
		snprintf(msg, mlen, "refused, nothing changed: %s", ans);
		free(ans);
		return -1;
	}
	free(ans);
	if (stat(real, &st) < 0)
		st.st_mode = 0644;
	if (cgi_write_atomic(real, text, len, (int)(st.st_mode & 0777)) < 0) {
		snprintf(msg, mlen, "cannot write the config");
		return -1;
	}
	if (chown(real, st.st_uid, st.st_gid) < 0) {
		/* not root: the file stays ours */
	}
	rc = cgi_ctl("reload", &ans);
	snprintf(msg, mlen,
	         rc == 0 ? "config restored and reloaded"
	                 : "restored, but the reload failed: %s",
	         ans);
	free(ans);
	return rc == 0 ? 0 : -1;
}

/* info - the version table and the forms */
static void
info(const struct cgi_req *r)
{
	struct cgi_box box;
	char trial[16], other[64];

	cgi_box_info(&box);
	if (cgi_conf_get("/run/mailmoat-boot", "trial", trial, sizeof(trial)))
		snprintf(trial, sizeof(trial), "-");
	other_version(box.slot, other, sizeof(other));
	printf("<table id=\"slots\"><tr><th>running version</th><td>");
	cgi_html(box.version);
	printf("</td></tr><tr><th>board</th><td>");
	cgi_html(box.board);
	printf("</td></tr><tr><th>running slot</th><td>");
	cgi_html(box.slot);
	printf("%s</td></tr><tr><th>other slot</th><td>",
	       !strcmp(trial, "1") ? " (trial boot)" : "");
	cgi_html(other);
	printf("</td></tr></table>\n");
	printf("<h2>Install a signed image</h2>"
	       "<form method=\"post\" action=\"/cgi-bin/firmware\" "
	       "enctype=\"multipart/form-data\">");
	cgi_csrf_field(r);
	printf("<input type=\"hidden\" name=\"op\" value=\"flash\">"
	       "<label for=\"image\">Image file</label>"
	       "<input type=\"file\" id=\"image\" name=\"image\" required>"
	       "<p><button type=\"submit\" id=\"flash\">Upload</button> "
	       "<small>The image goes to the inactive slot; the box then "
	       "restarts on it, and falls back to this slot if it does not "
	       "come up.</small></p></form>\n");
	printf("<h2>Configuration backup</h2><p><a id=\"backup\" "
	       "href=\"/cgi-bin/firmware?op=backup\">Download "
	       "mailmoat.conf</a></p>"
	       "<form method=\"post\" action=\"/cgi-bin/firmware\" "
	       "enctype=\"multipart/form-data\">");
	cgi_csrf_field(r);
	printf("<input type=\"hidden\" name=\"op\" value=\"restore\">"
	       "<label for=\"config\">Restore a config (checked first)</label>"
	       "<input type=\"file\" id=\"config\" name=\"config\" required>"
	       "<p><button type=\"submit\" id=\"restore\">Restore</button></p>"
	       "</form>\n");
}

/* main - show, back up, or take an upload */
int
main(void)
{
	struct cgi_req r;
	struct up u = {.fd = -1, .outfd = -1};
	struct cgi_mp_ops ops = {up_begin, up_data, up_end, &u};
	const char *cl = getenv("CONTENT_LENGTH"), *op;
	char err[256], out[2048], msg[2048];
	int rc, frc = -1, ok = 0, flashed = 0;
	uint64_t len;

	cgi_begin(&r, true);
	if (!r.post) {
		op = cgi_param(&r, "op");
		if (op && !strcmp(op, "backup")) {
			backup();
			return 0;
		}
		cgi_page_begin(&r, "Firmware");
		info(&r);
		cgi_page_end();
		return 0;
	}
	if (!r.multipart)
		cgi_error(400, "refused: send the form (multipart/form-data)");
	len = cl ? strtoull(cl, NULL, 10) : 0;
	if (len > MAX_IMAGE + 65536)
		cgi_error(413, "refused: larger than 64 MiB");
	u.r = &r;
	msg[0] = '\0';
	signal(SIGPIPE, SIG_IGN); /* a refusing flash tool closes its stdin */
	rc = cgi_multipart(0, r.boundary, len, &ops, err, sizeof(err));
	if (u.pid > 0) {
		/* Whatever happened to the upload, the tool has the last word
		 * (a cut upload is "truncated" to it: nothing is activated). */
		if (u.fd >= 0) {
			close(u.fd);
			u.fd = -1;
		}
		frc = flash_finish(&u, out, sizeof(out));
		out[strcspn(out, "\n")] = '\0';
	}
	if (!u.csrf_ok)
		cgi_error(403, "refused: missing or wrong CSRF token");
	if (u.pid > 0) {
		snprintf(msg, sizeof(msg), "%s",
		         out[0] ? out : "the flash tool gave no answer");
		ok = frc == 0 && rc == 0;
		flashed = ok;
	} else if (rc < 0 || !u.got_file) {
		snprintf(msg, sizeof(msg), "%s",
		         u.err[0] ? u.err
		         : rc < 0 ? err
		                  : "no file was sent");
	} else if (!strcmp(u.op, "restore")) {
		ok = restore(u.conf, u.conf_len, msg, sizeof(msg)) == 0;
	} else {
		snprintf(msg, sizeof(msg), "refused: unknown op");
	}
	free(u.conf);
	if (!ok)
		printf("Status: 400 Bad Request\r\n");
	if (flashed)
		printf("Refresh: 90; url=/cgi-bin/firmware\r\n");
	cgi_page_begin(&r, "Firmware");
	cgi_msg(ok, msg);
	if (flashed) {
		printf("<p id=\"progress\">Verified and written to the "
		       "inactive "
		       "slot. The box restarts on it now; this page reloads in "
		       "90 seconds.</p>\n");
		cgi_page_end();
		fflush(stdout);
		if (fork() == 0) {
			char *rb[] = {(char *)env_or("MAILMOAT_REBOOT",
			                             "/sbin/reboot"),
			              NULL};

			setsid();
			close(0);
			close(1);
			close(2);
			sleep(2);
			execv(rb[0], rb);
			_exit(1);
		}
		return 0;
	}
	info(&r);
	cgi_page_end();
	return 0;
}
