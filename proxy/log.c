/*
 * log.c - the daemon's logging: stderr by default, syslog with -s.
 *
 * log_open(use_syslog, verbose) picks the sink; before it is called, lines
 * go to stderr.  On stderr a line reads
 *   2026-11-22T19:16:15.123Z mailmoat[1234]: INFO message
 * and is written with one write(2) so concurrent writers do not interleave
 * within a line.  On syslog the facility is LOG_MAIL with LOG_PID.
 * log_debug() prints only when verbose.  log_fatal() exits with status 1
 * (bad config, startup failure); log_panic() aborts for a core dump.
 *
 * log_batch(loop): from then on stderr lines are collected in a static
 * buffer and written together once per loop turn (a uv_prepare handle,
 * before the loop waits for I/O), or when the buffer is full: at a high
 * message rate several decision lines of one turn cost one write(2)
 * instead of one each; lines keep their order, and everything logged in a
 * turn is out before the loop sleeps.  log_fatal() and log_panic() flush
 * first; log_batch(NULL) flushes and closes the handle (before
 * uv_loop_close).  A crash loses at most the lines of its own turn.
 * Syslog lines are not batched (one datagram each).
 *
 * Messages are formatted into a stack buffer: log_panic() is what
 * xmalloc() calls when memory runs out, so nothing here allocates.
 * Control characters in a message are replaced by '?' so that one call is
 * one line; values chosen by clients belong in log_kv_escape() first.
 *
 * Owns the sink choice (statics), the batch buffer and its uv_prepare_t.
 * Reads no config.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "proxy.h"

#define LOG_LINE_MAX 2048

#define LOG_BATCH_MAX (32 * 1024)

static bool log_use_syslog;
static bool log_verbose;
static long log_pid;
static bool log_batching;
static uv_prepare_t log_prep;
static size_t log_batch_len;
static char log_batch_buf[LOG_BATCH_MAX];

/* log_write_all - p to stderr, whole (EINTR retried). */
static void
log_write_all(const char *p, size_t left)
{
	while (left > 0) {
		ssize_t w = write(STDERR_FILENO, p, left);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		p += w;
		left -= (size_t)w;
	}
}

/* log_flush - the batched lines out now. */
void
log_flush(void)
{
	int saved_errno = errno;

	if (log_batch_len > 0)
		log_write_all(log_batch_buf, log_batch_len);
	log_batch_len = 0;
	errno = saved_errno;
}

/* log_prep_cb - once per loop turn, before it waits. */
static void
log_prep_cb(uv_prepare_t *h)
{
	(void)h;
	log_flush();
}

/* log_batch - batch stderr lines per turn of loop; NULL: stop (flush). */
void
log_batch(uv_loop_t *loop)
{
	if (loop != NULL && !log_batching && !log_use_syslog) {
		uv_prepare_init(loop, &log_prep);
		uv_prepare_start(&log_prep, log_prep_cb);
		uv_unref((uv_handle_t *)&log_prep);
		log_batching = true;
	} else if (loop == NULL && log_batching) {
		log_batching = false;
		log_flush();
		uv_close((uv_handle_t *)&log_prep, NULL);
	}
}

/* log_open - choose stderr or syslog, and whether debug lines show */
void
log_open(bool use_syslog, bool verbose)
{
	if (log_use_syslog && !use_syslog)
		closelog();
	log_use_syslog = use_syslog;
	log_verbose = verbose;
	log_pid = (long)getpid();
	if (use_syslog)
		openlog("mailmoat", LOG_PID | LOG_NDELAY, LOG_MAIL);
}

/* log_vwrite - format one line and send it to the current sink */
static void
log_vwrite(int prio, const char *level, const char *fmt, va_list ap)
{
	char msg[LOG_LINE_MAX];
	char line[LOG_LINE_MAX + 96];
	int saved_errno = errno;
	struct timespec ts;
	struct tm tm;
	size_t i;
	int n;

	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		snprintf(msg, sizeof(msg), "(unprintable log message)");
	for (i = 0; msg[i]; i++) {
		unsigned char c = (unsigned char)msg[i];

		if (c < 0x20 && c != '\t')
			msg[i] = '?';
		else if (c == 0x7f)
			msg[i] = '?';
	}
	if (log_use_syslog) {
		syslog(prio, "%s %s", level, msg);
		errno = saved_errno;
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(
	        line, sizeof(line),
	        "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ mailmoat[%ld]: %s %s\n",
	        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	        tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L,
	        log_pid ? log_pid : (long)getpid(), level, msg);
	if (n < 0)
		goto out;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	if (log_batching && prio > LOG_CRIT) {
		if (log_batch_len + (size_t)n > sizeof(log_batch_buf))
			log_flush();
		memcpy(log_batch_buf + log_batch_len, line, (size_t)n);
		log_batch_len += (size_t)n;
		goto out;
	}
	log_flush(); /* the batch first: lines keep their order */
	log_write_all(line, (size_t)n);
out:
	errno = saved_errno;
}

/* log_debug - tracing, shown only when verbose */
void
log_debug(const char *fmt, ...)
{
	va_list ap;

	if (!log_verbose)
		return;
	va_start(ap, fmt);
	log_vwrite(LOG_DEBUG, "DEBUG", fmt, ap);
	va_end(ap);
}

/* log_info - a normal event */
void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_INFO, "INFO", fmt, ap);
	va_end(ap);
}

/* log_warn - a session or request fails; the daemon goes on */
void
log_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_WARNING, "WARN", fmt, ap);
	va_end(ap);
}

/* log_fatal - bad config or startup failure: log and exit(1) */
void
log_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_batching = false; /* written at once, behind the batch */
	log_vwrite(LOG_ERR, "FATAL", fmt, ap);
	va_end(ap);
	exit(1);
}

/* log_panic - a broken invariant: log and abort() for a core dump */
void
log_panic(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_CRIT, "PANIC", fmt, ap);
	va_end(ap);
	abort();
}

/* log_kv_needs_escape - bytes written as \xNN */
static bool
log_kv_needs_escape(unsigned char c)
{
	return c < 0x20 || c >= 0x7f || c == '"' || c == '\\';
}

/*
 * log_kv_escape - value as it goes after "key=" in a decision line.
 * Control characters, '"', '\\' and non-ASCII bytes become \xNN (so a
 * quoted value never holds a quote and a reader splits on unquoted
 * spaces); the value is quoted when it holds a space, '=' or a quote;
 * "-" stands for an empty or NULL value.  Truncation never cuts an escape
 * in half and keeps the closing quote.
 */
void
log_kv_escape(char *out, size_t outlen, const char *value)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p;
	bool quote = false;
	size_t o = 0, room;

	if (out == NULL || outlen == 0)
		return;
	if (value == NULL || *value == '\0') {
		snprintf(out, outlen, "-");
		return;
	}
	for (p = (const unsigned char *)value; *p; p++)
		if (*p == ' ' || *p == '=' || *p == '"')
			quote = true;
	/* room: bytes usable for content, keeping the NUL and quotes. */
	room = outlen - 1;
	if (quote) {
		if (room < 2) {
			out[0] = '\0';
			return;
		}
		room -= 2;
		out[o++] = '"';
	}
	for (p = (const unsigned char *)value; *p; p++) {
		size_t used = o - (quote ? 1 : 0);

		if (log_kv_needs_escape(*p)) {
			if (used + 4 > room)
				break;
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		} else {
			if (used + 1 > room)
				break;
			out[o++] = (char)*p;
		}
	}
	if (quote)
		out[o++] = '"';
	out[o] = '\0';
}
