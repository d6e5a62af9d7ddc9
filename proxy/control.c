/*
 * control.c - the unix socket mailmoatctl talks to.
 *
 * Public (proxy.h, control block):
 *   control_start()        listen on control_socket (mode 0660; a stale
 *                          socket file is removed first); 0 or -errno
 *   control_stop()         close the listener and every client
 *   control_reload_hook    set by main: what `reload` runs
 *
 * Protocol: the client sends one line, the daemon answers and closes.
 * The answer is "ok\n" followed by the payload, or "error: why\n".
 *   stats                       the JSON object of stats_json()
 *   allow add|del ADDR          IP, CIDR, address or @domain; saved to
 *                               the allowlist file (in memory only when
 *                               none is configured)
 *   block add|del ADDR          likewise, saved to the blocklist file
 *   greylist list|del ...       an error until greylisting exists
 *   reload                      like SIGHUP
 *
 * Owns the listening uv_pipe_t and one uv_pipe_t per client (freed in its
 * close callback).  Edits the lists of the config new sessions get
 * (sess_config()).  Reads control_socket, allowlist, blocklist.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy.h"

#define CTL_MAX_LINE 1024

struct ctl_client {
	uv_pipe_t pipe;
	uv_write_t wreq;
	struct ctl_client *next, *prev;
	struct buf in;
	struct buf out;
	bool answered;
	bool closing;
};

int (*control_reload_hook)(char *err, size_t errlen);

static uv_pipe_t ctl_server;
static bool ctl_open;
static struct ctl_client *ctl_clients;
static char *ctl_path;

/* ctl_client_free_cb - the client's pipe closed: free it. */
static void
ctl_client_free_cb(uv_handle_t *h)
{
	struct ctl_client *c =
	        container_of((uv_pipe_t *)h, struct ctl_client, pipe);

	buf_free(&c->in);
	buf_free(&c->out);
	free(c);
}

/* ctl_client_close - unlink and close a client. */
static void
ctl_client_close(struct ctl_client *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->prev)
		c->prev->next = c->next;
	else
		ctl_clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	uv_close((uv_handle_t *)&c->pipe, ctl_client_free_cb);
}

/* ctl_printf - append formatted text to b. */
static void __attribute__((format(printf, 2, 3)))
ctl_printf(struct buf *b, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(tmp))
		n = sizeof(tmp) - 1;
	buf_append(b, tmp, (size_t)n);
}

/* ctl_list - allow|block add|del ENTRY. */
static void
ctl_list(struct buf *out, bool allow, const char *verb, const char *entry)
{
	struct config *cfg = sess_config();
	const char *name = allow ? "allowlist" : "blocklist";
	struct list **lp;
	const char *path;
	int rc;

	if (cfg == NULL) {
		ctl_printf(out, "error: not running\n");
		return;
	}
	lp = allow ? &cfg->allow : &cfg->block;
	path = allow ? cfg->allowlist_path : cfg->blocklist_path;
	if (entry == NULL || entry[0] == '\0' || strchr(entry, ' ')) {
		ctl_printf(out, "error: usage: %s add|del ADDRESS\n",
		           allow ? "allow" : "block");
		return;
	}
	if (*lp == NULL)
		*lp = list_new();
	if (strcmp(verb, "add") == 0) {
		rc = list_add(*lp, entry);
		if (rc == -EINVAL) {
			ctl_printf(out,
			           "error: not an IP address, CIDR net, "
			           "address or @domain: %s\n",
			           entry);
			return;
		}
	} else if (strcmp(verb, "del") == 0) {
		rc = list_del(*lp, entry);
		if (rc == -ENOENT) {
			ctl_printf(out, "error: %s is not in the %s\n", entry,
			           name);
			return;
		}
		if (rc == -EINVAL) {
			ctl_printf(out, "error: not a valid entry: %s\n",
			           entry);
			return;
		}
	} else {
		ctl_printf(out, "error: usage: %s add|del ADDRESS\n",
		           allow ? "allow" : "block");
		return;
	}
	if (rc < 0) {
		ctl_printf(out, "error: %s\n", strerror(-rc));
		return;
	}
	if (path == NULL) {
		/* No file to keep it in: this run only, and say so. */
		log_info("control: %s %s %s (not saved: no %s file)", name,
		         verb, entry, name);
		ctl_printf(out,
		           "ok\n%s %s %s (in memory only: no %s file is "
		           "configured)\n",
		           name, strcmp(verb, "add") == 0 ? "added" : "deleted",
		           entry, name);
		return;
	}
	rc = list_save(*lp, path);
	if (rc < 0) {
		ctl_printf(out,
		           "error: changed in memory but cannot save %s: "
		           "%s\n",
		           path, strerror(-rc));
		return;
	}
	log_info("control: %s %s %s", name, verb, entry);
	ctl_printf(out, "ok\n%s %s %s\n", name,
	           strcmp(verb, "add") == 0 ? "added" : "deleted", entry);
}

/* ctl_command - one request line into an answer. */
static void
ctl_command(char *line, struct buf *out)
{
	char *argv[4] = {NULL, NULL, NULL, NULL};
	char *save = NULL, *tok;
	int argc = 0;
	char err[512];

	for (tok = strtok_r(line, " \t", &save); tok != NULL && argc < 4;
	     tok = strtok_r(NULL, " \t", &save))
		argv[argc++] = tok;
	if (argc == 0) {
		ctl_printf(out, "error: empty command\n");
		return;
	}
	if (strcmp(argv[0], "stats") == 0 && argc == 1) {
		buf_append(out, "ok\n", 3);
		stats_json(out);
		buf_append(out, "\n", 1);
	} else if (strcmp(argv[0], "allow") == 0 && argc == 3) {
		ctl_list(out, true, argv[1], argv[2]);
	} else if (strcmp(argv[0], "block") == 0 && argc == 3) {
		ctl_list(out, false, argv[1], argv[2]);
	} else if (strcmp(argv[0], "allow") == 0 ||
	           strcmp(argv[0], "block") == 0) {
		ctl_printf(out, "error: usage: %s add|del ADDRESS\n", argv[0]);
	} else if (strcmp(argv[0], "greylist") == 0) {
		ctl_printf(out, "error: greylisting is not enabled in this "
		                "build\n");
	} else if (strcmp(argv[0], "reload") == 0 && argc == 1) {
		if (control_reload_hook == NULL) {
			ctl_printf(out, "error: reload is not available\n");
		} else if (control_reload_hook(err, sizeof(err)) < 0) {
			ctl_printf(out,
			           "error: %s; the old configuration "
			           "stays\n",
			           err);
		} else {
			ctl_printf(out, "ok\nreloaded\n");
		}
	} else {
		ctl_printf(out, "error: unknown command (stats, allow add|del, "
		                "block add|del, greylist list|del, reload)\n");
	}
}

/* ctl_write_cb - the answer is out: close. */
static void
ctl_write_cb(uv_write_t *req, int status)
{
	struct ctl_client *c = container_of(req, struct ctl_client, wreq);

	ctl_client_close(c);
}

/* ctl_answer - run the request and send the answer. */
static void
ctl_answer(struct ctl_client *c, char *line)
{
	uv_buf_t b;

	c->answered = true;
	uv_read_stop((uv_stream_t *)&c->pipe);
	ctl_command(line, &c->out);
	b = uv_buf_init(c->out.data, (unsigned)c->out.len);
	if (uv_write(&c->wreq, (uv_stream_t *)&c->pipe, &b, 1, ctl_write_cb) <
	    0)
		ctl_client_close(c);
}

/* ctl_alloc_cb - requests are small: one static buffer. */
static void
ctl_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	static char rbuf[1024];

	b->base = rbuf;
	b->len = sizeof(rbuf);
}

/* ctl_read_cb - collect the request line. */
static void
ctl_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
	struct ctl_client *c =
	        container_of((uv_pipe_t *)st, struct ctl_client, pipe);
	char *nl;

	if (c->answered || nread == 0)
		return;
	if (nread > 0)
		buf_append(&c->in, b->base, (size_t)nread);
	if (c->in.len > CTL_MAX_LINE) {
		buf_free(&c->in);
		buf_append(&c->in, "", 1);
		ctl_answer(c, c->in.data);
		return;
	}
	nl = c->in.len ? memchr(c->in.data, '\n', c->in.len) : NULL;
	if (nl == NULL && nread > 0)
		return;
	/* A line, or EOF after a request without newline. */
	if (nl != NULL)
		*nl = '\0';
	else
		buf_append(&c->in, "", 1);
	if (nl != NULL && nl > c->in.data && nl[-1] == '\r')
		nl[-1] = '\0';
	if (nread < 0 && c->in.len == 0) {
		ctl_client_close(c);
		return;
	}
	ctl_answer(c, c->in.data);
}

/* ctl_connection_cb - a client connected. */
static void
ctl_connection_cb(uv_stream_t *server, int status)
{
	struct ctl_client *c;

	if (status < 0) {
		log_warn("control: accept: %s", uv_strerror(status));
		return;
	}
	c = xcalloc(1, sizeof(*c));
	uv_pipe_init(server->loop, &c->pipe, 0);
	if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0) {
		c->closing = true;
		uv_close((uv_handle_t *)&c->pipe, ctl_client_free_cb);
		return;
	}
	c->next = ctl_clients;
	if (ctl_clients)
		ctl_clients->prev = c;
	ctl_clients = c;
	uv_read_start((uv_stream_t *)&c->pipe, ctl_alloc_cb, ctl_read_cb);
}

/* control_start - listen on cfg->control_socket; 0 or -errno. */
int
control_start(uv_loop_t *loop, const struct config *cfg)
{
	struct stat st;
	int rc;

	if (cfg->control_socket == NULL || cfg->control_socket[0] == '\0')
		return 0;
	free(ctl_path);
	ctl_path = xstrdup(cfg->control_socket);
	if (lstat(ctl_path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(ctl_path); /* stale, from a previous run */
	uv_pipe_init(loop, &ctl_server, 0);
	ctl_open = true;
	rc = uv_pipe_bind(&ctl_server, ctl_path);
	if (rc == 0) {
		chmod(ctl_path, 0660);
		rc = uv_listen((uv_stream_t *)&ctl_server, 16,
		               ctl_connection_cb);
	}
	if (rc < 0) {
		uv_close((uv_handle_t *)&ctl_server, NULL);
		ctl_open = false;
		return rc;
	}
	return 0;
}

/* control_stop - close the listener (removing the socket) and clients. */
void
control_stop(void)
{
	if (ctl_open) {
		uv_close((uv_handle_t *)&ctl_server, NULL);
		ctl_open = false;
		if (ctl_path != NULL)
			unlink(ctl_path);
	}
	while (ctl_clients != NULL)
		ctl_client_close(ctl_clients);
	free(ctl_path);
	ctl_path = NULL;
}
