/*
 * cgi.h - shared helpers of the web UI CGI programs (cgi.c).
 *
 * The full web UI is a later issue; for now: HTML escaping, error replies,
 * reading small config values and running a helper program with a clean
 * environment and capturing its output.
 */
#ifndef MAILMOAT_CGI_H
#define MAILMOAT_CGI_H

#include <stddef.h>

#ifndef CGI_SBIN
#define CGI_SBIN "/usr/sbin"
#endif
#ifndef CGI_ETC
#define CGI_ETC "/etc"
#endif

/* cgi_html - write s to stdout with & < > " ' escaped */
void cgi_html(const char *s);
/* cgi_error - send a Status: line and a plain-text reason; exits 0 */
void cgi_error(int status, const char *reason) __attribute__((noreturn));
/* cgi_conf_get - value of key in a "key = value" file into out; 0/-ENOENT */
int cgi_conf_get(const char *path, const char *key, char *out, size_t len);
/* cgi_read_file - first line of a small file into out; 0/-ENOENT */
int cgi_read_file(const char *path, char *out, size_t len);
/*
 * cgi_run - run argv (absolute path) with an empty environment and stdin
 * from /dev/null; its stdout+stderr go into out (NUL-terminated, truncated
 * to len).  Returns the exit status, or -1 if it could not run.
 */
int cgi_run(char *const argv[], char *out, size_t len);

#endif
