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
 *   allow list, block list      the entries, one a line
 *   greylist list|del|flush     the greylist (greylist.c)
 *   backscatter list|del ADDR   backscatter blocks (backscatter.c)
 *   reload                      like SIGHUP
 *   decisions [FILTER]          recent decisions as log lines (history.c)
 *   series day|month            decision counts per action (history.c)
 *   config keys                 every config key and its default
 *   config check PATH           config_load() a candidate file: the same
 *                               checker as the daemon's own (reads only)
 *
 * A list change is written to its file in the uv thread pool (temp file,
 * fsync, rename: flash I/O never blocks the loop); the client gets its
 * answer when the file is on disk.  `greylist list` reads the triplets'
 * texts in the thread pool too (greylist_list_async) and answers after.
 *
 * Owns the listening uv_pipe_t and one uv_pipe_t per client (freed in its
 * close callback), the pending saves (struct ctl_save) and listings
 * (struct ctl_job).  Edits the lists of
 * the config new sessions get (sess_config()).  Reads control_socket,
 * allowlist, blocklist.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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
	bool sent;
	bool closing;
	struct ctl_save *save; /* a list being written for this request */
	struct ctl_job *job;   /* a listing being read for this request */
};

/* A greylist listing: its texts are read in the thread pool. */
struct ctl_job {
	struct ctl_client *c; /* NULL once the client has gone */
	struct buf lines;
};

/*
 * A list file written in the thread pool (fsync must not block the loop).
 * The text is a snapshot taken on the loop; seq orders the snapshots of
 * one file, so that an older one never lands after a newer one.
 */
struct ctl_save {
	uv_work_t work;
	struct ctl_client *c; /* NULL once the client has gone */
	int kind;             /* 0 allowlist, 1 blocklist */
	uint64_t seq;
	char *path;
	struct buf text;
	struct buf reply; /* what the client gets on success */
	int rc;
};

static void ctl_send(struct ctl_client *c);
static uv_mutex_t ctl_save_lock;
static uint64_t ctl_save_seq[2], ctl_saved_seq[2];

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

	if (c->save != NULL)
		c->save->c = NULL;
	if (c->job != NULL)
		c->job->c = NULL;
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

/* ctl_save_work_cb - in the thread pool: write the snapshot, unless a
 * newer one of the same file is already written. */
static void
ctl_save_work_cb(uv_work_t *w)
{
	struct ctl_save *sv = container_of(w, struct ctl_save, work);

	uv_mutex_lock(&ctl_save_lock);
	if (sv->seq > ctl_saved_seq[sv->kind]) {
		sv->rc = util_write_file_atomic(sv->path, sv->text.data,
		                                sv->text.len, 0644);
		if (sv->rc == 0)
			ctl_saved_seq[sv->kind] = sv->seq;
	}
	uv_mutex_unlock(&ctl_save_lock);
}

/* ctl_save_done_cb - back on the loop: answer the client, if still there. */
static void
ctl_save_done_cb(uv_work_t *w, int status)
{
	struct ctl_save *sv = container_of(w, struct ctl_save, work);
	struct ctl_client *c = sv->c;

	if (c != NULL) {
		c->save = NULL;
		if (sv->rc < 0)
			ctl_printf(&c->out,
			           "error: changed in memory but cannot save "
			           "%s: %s\n",
			           sv->path, strerror(-sv->rc));
		else
			buf_append(&c->out, sv->reply.data, sv->reply.len);
		ctl_send(c);
	}
	free(sv->path);
	buf_free(&sv->text);
	buf_free(&sv->reply);
	free(sv);
}

/* ctl_list_line_cb - one list entry as a line of the answer */
static void
ctl_list_line_cb(const char *text, void *arg)
{
	buf_append(arg, text, strlen(text));
	buf_append(arg, "\n", 1);
}

/* ctl_list - allow|block add|del ENTRY; a change is saved to the list
 * file before the answer (in the thread pool: c waits). */
static void
ctl_list(struct ctl_client *c, bool allow, const char *verb, const char *entry)
{
	struct buf *out = &c->out;
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
	if (strcmp(verb, "list") == 0) {
		buf_append(out, "ok\n", 3);
		list_foreach(*lp, ctl_list_line_cb, out);
		return;
	}
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
	log_info("control: %s %s %s", name, verb, entry);
	c->save = xcalloc(1, sizeof(*c->save));
	c->save->c = c;
	c->save->kind = allow ? 0 : 1;
	c->save->seq = ++ctl_save_seq[c->save->kind];
	c->save->path = xstrdup(path);
	list_text(*lp, &c->save->text);
	ctl_printf(&c->save->reply, "ok\n%s %s %s\n", name,
	           strcmp(verb, "add") == 0 ? "added" : "deleted", entry);
	uv_queue_work(c->pipe.loop, &c->save->work, ctl_save_work_cb,
	              ctl_save_done_cb);
}

/* ctl_config - config keys | config check PATH */
static void
ctl_config(struct ctl_client *c, int argc, char **argv)
{
	struct buf *out = &c->out;
	const char *name, *def;
	struct config *cand;
	char err[1024];
	size_t i;

	if (argc == 2 && strcmp(argv[1], "keys") == 0) {
		buf_append(out, "ok\n", 3);
		for (i = 0; config_key_info(i, &name, &def); i++)
			ctl_printf(out, "%s\t%s\n", name, def ? def : "");
	} else if (argc == 3 && strcmp(argv[1], "check") == 0) {
		/* Like a reload, this reads the file on the loop (small). */
		cand = config_load(argv[2], err, sizeof(err));
		if (cand == NULL) {
			ctl_printf(out, "error: %s\n", err);
			return;
		}
		config_unref(cand);
		ctl_printf(out, "ok\nvalid\n");
	} else {
		ctl_printf(out, "error: usage: config keys | config check "
		                "PATH\n");
	}
}

/* ctl_greylist_listed - the listing is complete: answer, if the client
 * is still there. */
static void
ctl_greylist_listed(size_t n, void *arg)
{
	struct ctl_job *j = arg;
	struct ctl_client *c = j->c;

	if (c != NULL) {
		c->job = NULL;
		buf_append(&c->out, "ok\n", 3);
		if (j->lines.len)
			buf_append(&c->out, j->lines.data, j->lines.len);
		ctl_send(c);
	}
	buf_free(&j->lines);
	free(j);
}

/* ctl_greylist - "greylist list [PATTERN]", "greylist del NET SENDER
 * RCPT", "greylist flush" (args: the rest of the line).  A listing is
 * answered when its texts have been read (greylist_list_async). */
static void
ctl_greylist(struct ctl_client *c, char *args)
{
	struct buf *out = &c->out;
	char *verb, *rest;
	size_t n;

	args += strspn(args, " \t");
	verb = args;
	rest = verb + strcspn(verb, " \t");
	if (*rest != '\0')
		*rest++ = '\0';
	rest += strspn(rest, " \t");
	n = strlen(rest);
	while (n > 0 && (rest[n - 1] == ' ' || rest[n - 1] == '\t'))
		rest[--n] = '\0';
	if (strcmp(verb, "list") == 0) {
		struct ctl_job *j = xcalloc(1, sizeof(*j));

		j->c = c;
		c->job = j;
		greylist_list_async(n ? rest : NULL, &j->lines,
		                    ctl_greylist_listed, j);
	} else if (strcmp(verb, "del") == 0 && n > 0) {
		/* one space between the three parts, as list prints them */
		char t[1024], *w = t;

		for (char *r = rest; *r && w < t + sizeof(t) - 1; r++)
			if (!((*r == ' ' || *r == '\t') && w > t &&
			      w[-1] == ' '))
				*w++ = *r == '\t' ? ' ' : *r;
		*w = '\0';
		if (greylist_del(t) == 0)
			ctl_printf(out, "ok\ngreylist triplet deleted\n");
		else
			ctl_printf(out, "error: no such triplet (NET SENDER "
			                "RCPT as greylist list prints it)\n");
	} else if (strcmp(verb, "flush") == 0 && n == 0) {
		ctl_printf(out, "ok\n%zu greylist triplets deleted\n",
		           greylist_flush());
	} else {
		ctl_printf(out, "error: usage: greylist list [PATTERN] | del "
		                "NET SENDER RCPT | flush\n");
	}
}

static void
ctl_command(struct ctl_client *c, char *line)
{
	struct buf *out = &c->out;
	char *argv[4] = {NULL, NULL, NULL, NULL};
	char *save = NULL, *tok;
	int argc = 0;
	char err[512];

	if (strncmp(line, "decisions", 9) == 0 &&
	    (line[9] == '\0' || line[9] == ' ' || line[9] == '\t')) {
		struct buf lines = {0};

		if (history_decisions(&lines, line + 9) < 0) {
			ctl_printf(out, "error: unknown filter key (client "
			                "sender recipient action reason id "
			                "helo ptr detail)\n");
		} else {
			buf_append(out, "ok\n", 3);
			if (lines.len)
				buf_append(out, lines.data, lines.len);
		}
		buf_free(&lines);
		return;
	}
	if (strncmp(line, "greylist", 8) == 0 &&
	    (line[8] == '\0' || line[8] == ' ' || line[8] == '\t')) {
		ctl_greylist(c, line + 8);
		return;
	}
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
	} else if ((strcmp(argv[0], "allow") == 0 ||
	            strcmp(argv[0], "block") == 0) &&
	           argc == 2 && strcmp(argv[1], "list") == 0) {
		ctl_list(c, argv[0][0] == 'a', "list", "-");
	} else if (strcmp(argv[0], "allow") == 0 && argc == 3) {
		ctl_list(c, true, argv[1], argv[2]);
	} else if (strcmp(argv[0], "block") == 0 && argc == 3) {
		ctl_list(c, false, argv[1], argv[2]);
	} else if (strcmp(argv[0], "allow") == 0 ||
	           strcmp(argv[0], "block") == 0) {
		ctl_printf(out, "error: usage: %s add|del ADDRESS\n", argv[0]);
	} else if (strcmp(argv[0], "backscatter") == 0 && argc == 2 &&
	           strcmp(argv[1], "list") == 0) {
		buf_append(out, "ok\n", 3);
		bs_list_text(out, 100000);
	} else if (strcmp(argv[0], "backscatter") == 0 && argc == 3 &&
	           strcmp(argv[1], "del") == 0) {
		if (bs_del(argv[2]) == 0)
			ctl_printf(out, "ok\nbackscatter block of %s deleted\n",
			           argv[2]);
		else
			ctl_printf(out,
			           "error: %s is not in the backscatter "
			           "table\n",
			           argv[2]);
	} else if (strcmp(argv[0], "backscatter") == 0) {
		ctl_printf(out, "error: usage: backscatter list|del ADDR\n");
	} else if (strcmp(argv[0], "series") == 0 && argc == 2) {
		struct buf b = {0};

		if (history_series(&b, argv[1], store_now()) < 0) {
			ctl_printf(out, "error: usage: series day|month\n");
		} else {
			buf_append(out, "ok\n", 3);
			buf_append(out, b.data, b.len);
		}
		buf_free(&b);
	} else if (strcmp(argv[0], "config") == 0) {
		ctl_config(c, argc, argv);
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
		ctl_printf(
		        out,
		        "error: unknown command (stats, allow add|del, "
		        "block add|del, greylist list|del|flush, backscatter "
		        "list|del, decisions, series, config, reload)\n");
	}
}

/* ctl_write_cb - the answer is out: close. */
static void
ctl_write_cb(uv_write_t *req, int status)
{
	struct ctl_client *c = container_of(req, struct ctl_client, wreq);

	ctl_client_close(c);
}

/* ctl_send - the answer in c->out goes out (once); then c closes. */
static void
ctl_send(struct ctl_client *c)
{
	uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);

	if (c->sent)
		return;
	c->sent = true;
	if (uv_write(&c->wreq, (uv_stream_t *)&c->pipe, &b, 1, ctl_write_cb) <
	    0)
		ctl_client_close(c);
}

/* ctl_answer - run the request and send the answer. */
static void
ctl_answer(struct ctl_client *c, char *line)
{
	c->answered = true;
	uv_read_stop((uv_stream_t *)&c->pipe);
	ctl_command(c, line);
	if (c->save == NULL && c->job == NULL) /* else their callbacks do */
		ctl_send(c);
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

	static bool lock_made;

	if (cfg->control_socket == NULL || cfg->control_socket[0] == '\0')
		return 0;
	if (!lock_made) {
		uv_mutex_init(&ctl_save_lock);
		lock_made = true;
	}
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
