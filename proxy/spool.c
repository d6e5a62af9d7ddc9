/*
 * spool.c - a message held back: bounded in RAM, the rest in a temp file.
 *
 * Public (proxy.h, spool block):
 *   spool_new()      an empty spool; ram_max bytes stay in memory
 *   spool_write()    append; above ram_max the bytes go to an unlinked
 *                    temporary file, written in the uv thread pool
 *   spool_pending()  bytes accepted but not yet on the file (the writer
 *                    pauses its source above a mark)
 *   spool_next()     read back from the start: a piece, 0 at the end, or
 *                    -EAGAIN while a file read runs (on_ready follows)
 *   spool_on_ready() the hook for "a file write or read finished"
 *   spool_free()     drop it (safe with a request in flight: the memory
 *                    goes when the request completes)
 *
 * The loop never waits on the disk: every write and read is a uv_fs
 * request with a callback; only the creation of the file (mkstemp in
 * $TMPDIR or /tmp, unlinked at once) is a direct call.  A file error is
 * sticky: spool_write() and spool_next() return it from then on.
 * on_ready never runs from inside a spool_* call.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy.h"

#define SPOOL_CHUNK (64 * 1024) /* one file read */

struct spool {
	uv_loop_t *loop;
	size_t ram_max;
	struct buf ram;   /* the first ram_max bytes */
	struct buf wq;    /* beyond ram_max, waiting for the file write */
	struct buf wbuf;  /* being written */
	struct buf rbuf;  /* the last file read */
	uint64_t on_file; /* bytes written to the file */
	uint64_t size;    /* all bytes accepted */
	uint64_t rpos;    /* read position, over ram then file */
	int fd;           /* -1: no file yet */
	int err;          /* sticky -errno */
	bool busy;        /* a uv_fs request in flight */
	bool reading;     /* ... and it is a read */
	bool rdone;       /* rbuf holds the read at rpos */
	bool dead;        /* spool_free() called while busy */
	uv_fs_t req;
	void (*ready)(struct spool *, void *);
	void *arg;
};

static void spool_kick(struct spool *sp);

/* spool_new - an empty spool keeping ram_max bytes in memory. */
struct spool *
spool_new(uv_loop_t *loop, size_t ram_max)
{
	struct spool *sp = xcalloc(1, sizeof(*sp));

	sp->loop = loop;
	sp->ram_max = ram_max;
	sp->fd = -1;
	return sp;
}

/* spool_on_ready - fn(sp, arg) after each finished file write or read. */
void
spool_on_ready(struct spool *sp, void (*fn)(struct spool *, void *), void *arg)
{
	sp->ready = fn;
	sp->arg = arg;
}

/* spool_destroy - the memory and the file. */
static void
spool_destroy(struct spool *sp)
{
	if (sp->fd >= 0)
		close(sp->fd);
	buf_free(&sp->ram);
	buf_free(&sp->wq);
	buf_free(&sp->wbuf);
	buf_free(&sp->rbuf);
	free(sp);
}

/* spool_free - drop sp; with a request in flight, when it completes. */
void
spool_free(struct spool *sp)
{
	if (sp == NULL)
		return;
	if (sp->busy) {
		sp->dead = true;
		return;
	}
	spool_destroy(sp);
}

/* spool_fs_cb - a file write or read finished. */
static void
spool_fs_cb(uv_fs_t *req)
{
	struct spool *sp = container_of(req, struct spool, req);
	ssize_t res = req->result;
	bool reading = sp->reading;

	uv_fs_req_cleanup(req);
	sp->busy = false;
	sp->reading = false;
	if (sp->dead) {
		spool_destroy(sp);
		return;
	}
	if (res < 0) {
		sp->err = (int)res;
	} else if (reading) {
		sp->rbuf.len = (size_t)res;
		sp->rdone = true;
		if (res == 0)
			sp->err = -EIO; /* the file is shorter than written */
	} else {
		/* A short write: the rest goes again, in front. */
		size_t n = (size_t)res;

		sp->on_file += n;
		if (n < sp->wbuf.len) {
			struct buf rest = {0};

			buf_append(&rest, sp->wbuf.data + n, sp->wbuf.len - n);
			buf_append(&rest, sp->wq.data, sp->wq.len);
			buf_free(&sp->wq);
			sp->wq = rest;
		}
		sp->wbuf.len = 0;
	}
	spool_kick(sp);
	if (sp->ready != NULL)
		sp->ready(sp, sp->arg);
}

/* spool_kick - start the next file write when none runs. */
static void
spool_kick(struct spool *sp)
{
	struct buf tmp;
	uv_buf_t b;
	int rc;

	if (sp->busy || sp->err < 0 || sp->wq.len == 0)
		return;
	tmp = sp->wbuf;
	sp->wbuf = sp->wq;
	sp->wq = tmp;
	sp->wq.len = 0;
	b = uv_buf_init(sp->wbuf.data, (unsigned)sp->wbuf.len);
	rc = uv_fs_write(sp->loop, &sp->req, sp->fd, &b, 1,
	                 (int64_t)sp->on_file, spool_fs_cb);
	if (rc < 0) {
		sp->err = rc;
		return;
	}
	sp->busy = true;
}

/* spool_open - the temporary file, unlinked at once. */
static int
spool_open(struct spool *sp)
{
	const char *dir = getenv("TMPDIR");
	char path[512];
	int fd;

	if (dir == NULL || dir[0] == '\0')
		dir = "/tmp";
	snprintf(path, sizeof(path), "%s/mailmoat-spool-XXXXXX", dir);
	fd = mkstemp(path);
	if (fd < 0)
		return -errno;
	unlink(path);
	sp->fd = fd;
	return 0;
}

/* spool_write - append n bytes; 0 or the sticky -errno of the file. */
int
spool_write(struct spool *sp, const char *p, size_t n)
{
	size_t room;
	int rc;

	if (sp->err < 0)
		return sp->err;
	sp->size += n;
	room = sp->ram.len < sp->ram_max ? sp->ram_max - sp->ram.len : 0;
	if (room > 0) {
		size_t k = n < room ? n : room;

		buf_append(&sp->ram, p, k);
		p += k;
		n -= k;
	}
	if (n == 0)
		return 0;
	if (sp->fd < 0) {
		rc = spool_open(sp);
		if (rc < 0) {
			sp->err = rc;
			return rc;
		}
	}
	buf_append(&sp->wq, p, n);
	spool_kick(sp);
	return sp->err;
}

/* spool_pending - bytes accepted but not yet on the file. */
size_t
spool_pending(const struct spool *sp)
{
	return sp->wq.len + sp->wbuf.len;
}

/* spool_size - every byte accepted so far. */
uint64_t
spool_size(const struct spool *sp)
{
	return sp->size;
}

/*
 * spool_next - the next piece from the start: > 0 bytes at *p (valid
 * until the next spool_* call), 0 at the end, -EAGAIN while a file write
 * or read runs (on_ready follows), or the file's -errno.
 */
ssize_t
spool_next(struct spool *sp, const char **p)
{
	uint64_t fpos;
	uv_buf_t b;
	int rc;

	if (sp->rpos < sp->ram.len) {
		*p = sp->ram.data + sp->rpos;
		rc = (int)(sp->ram.len - sp->rpos);
		sp->rpos = sp->ram.len;
		return rc;
	}
	if (sp->rpos >= sp->size)
		return 0;
	if (sp->err < 0)
		return sp->err;
	if (sp->rdone) {
		sp->rdone = false;
		*p = sp->rbuf.data;
		sp->rpos += sp->rbuf.len;
		return (ssize_t)sp->rbuf.len;
	}
	if (sp->busy || spool_pending(sp) > 0)
		return -EAGAIN; /* every byte reaches the file first */
	fpos = sp->rpos - sp->ram.len;
	if (sp->rbuf.cap < SPOOL_CHUNK) {
		sp->rbuf.len = 0;
		buf_append(&sp->rbuf, "", 0);
		sp->rbuf.data = xrealloc(sp->rbuf.data, SPOOL_CHUNK);
		sp->rbuf.cap = SPOOL_CHUNK;
	}
	b = uv_buf_init(sp->rbuf.data,
	                (unsigned)(sp->on_file - fpos < SPOOL_CHUNK
	                                   ? sp->on_file - fpos
	                                   : SPOOL_CHUNK));
	rc = uv_fs_read(sp->loop, &sp->req, sp->fd, &b, 1, (int64_t)fpos,
	                spool_fs_cb);
	if (rc < 0) {
		sp->err = rc;
		return rc;
	}
	sp->busy = true;
	sp->reading = true;
	return -EAGAIN;
}
