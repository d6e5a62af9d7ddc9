/*
 * proxy.h - the table of contents of the mailmoat daemon.
 *
 * Shared types first, then one block per .c file listing exactly what
 * that file exports.  Dependencies point one way:
 *
 *   main -> listen -> session -> stage -> bodytap      (session_int.h)
 *   session, stage, bodytap -> { smtp, relay, tls, hdrfilter, verdict,
 *                                checks/registry }
 *   checks/<name> -> { dns, addr, list, config, sess_check_done() }
 *   checks/registry -> nothing of the session: the session binds its id
 *       lookup and sess_check_done() with chk_bind_session() at listen
 *   every module -> { util, log, config, stats }
 *
 * smtp.c knows nothing of sockets; checks never call the relay; nothing
 * but store.c (when it exists) touches flash.
 */
#ifndef MAILMOAT_PROXY_H
#define MAILMOAT_PROXY_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <uv.h>

#define MAILMOAT_VERSION "0.1.0"

#define container_of(ptr, type, member)                                        \
	((type *)((char *)(ptr)-offsetof(type, member)))

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---------------------------------------------------------------- util.c */

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* A growable byte buffer; len bytes of data, never NUL-terminated by API. */
struct buf {
	char *data;
	size_t len;
	size_t cap;
};
void buf_append(struct buf *b, const void *p, size_t n);
void buf_consume(struct buf *b, size_t n); /* drop n bytes from the front */
void buf_free(struct buf *b);

/* An IP address without port, v4 or v6 (v4-mapped v6 is folded to v4). */
struct ipaddr {
	int family; /* AF_INET or AF_INET6 */
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} u;
};
int ipaddr_from_sockaddr(struct ipaddr *ip, const struct sockaddr *sa);
int ipaddr_parse(struct ipaddr *ip, const char *text); /* 0 or -EINVAL */
void ipaddr_format(const struct ipaddr *ip, char *out, size_t outlen);
bool ipaddr_equal(const struct ipaddr *a, const struct ipaddr *b);
/* "1.2.3.4:25", "[::1]:25", "0.0.0.0:25"; default_port when none given */
int sockaddr_parse(struct sockaddr_storage *ss, const char *text,
                   int default_port);

/* Monotonic milliseconds (the loop's clock where a loop exists). */
uint64_t util_now_ms(void);
/* Short session id: 5 chars of [0-9A-Z] (no I, O), unique per process. */
void util_session_id(uint64_t counter, char out[8]);
bool util_strcaseeq(const char *a, const char *b);
/* util_write_file_atomic - temp file, fsync, rename, fsync of the
 * directory; blocking (thread pool); 0 or -errno. */
int util_write_file_atomic(const char *path, const void *data, size_t len,
                           unsigned mode);
/* util_data_line - the next line of a data file held in text[0..len):
 * blanks and a CR trimmed; blank lines and '#' comments skipped.  Sets
 * *a..*b to the line and *lineno to its number; false at the end. */
bool util_data_line(const char *text, size_t len, size_t *pos, int *lineno,
                    size_t *a, size_t *b);
void util_lowercase(char *s);
/* util_shown - printable, bounded copy of s for an error message. */
const char *util_shown(const char *s, char *out, size_t outlen);

/* ----------------------------------------------------------------- log.c */

enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_FATAL };

void log_open(bool use_syslog, bool verbose);
/* log_batch - stderr lines written once per turn of loop (a uv_prepare);
 * NULL: flush and stop (before uv_loop_close). */
void log_batch(uv_loop_t *loop);
void log_flush(void); /* the batched lines out now */
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* log_fatal: bad config or startup failure; exits with status 1. */
void log_fatal(const char *fmt, ...)
        __attribute__((format(printf, 1, 2), noreturn));
/* log_panic: an invariant broke; aborts for a core dump. */
void log_panic(const char *fmt, ...)
        __attribute__((format(printf, 1, 2), noreturn));
/*
 * log_kv_escape - append `value` to out as a key=value value: quoted when
 * it has spaces or quotes, control characters and non-ASCII escaped as \xNN,
 * "-" when empty or NULL.  Always NUL-terminates; truncates to outlen.
 */
void log_kv_escape(char *out, size_t outlen, const char *value);

/* -------------------------------------------------------------- config.c */

/* What a check does when it fails (SPEC.md 1: action_*). */
enum action { ACT_OFF, ACT_LOG, ACT_TEMPFAIL, ACT_REJECT };

enum transparent_mode {
	TRANSPARENT_OFF,
	TRANSPARENT_REDIRECT,
	TRANSPARENT_TPROXY
};
/* backend_client_info: how the backend learns the real client */
enum client_info { CLIENT_INFO_NONE, CLIENT_INFO_XCLIENT, CLIENT_INFO_PROXY };
enum rcpt_verify { RCPT_VERIFY_LIST, RCPT_VERIFY_BACKEND, RCPT_VERIFY_BOTH };
enum sender_mx_mode { SENDER_MX_MX, SENDER_MX_OR_A };
enum scanner_fail { SCANNER_FAIL_TEMPFAIL, SCANNER_FAIL_ACCEPT };
enum backscatter_scope { BS_SCOPE_ALL, BS_SCOPE_NULL_SENDER };
enum dsn_reference { DSN_REF_DOMAIN, DSN_REF_SENT };

/* The checks that have an action_* key, in SPEC.md order. */
enum chk_id {
	CHK_DNSBL,
	CHK_RDNS,
	CHK_DYNAMIC,
	CHK_HELO,
	CHK_SENDER_TLD,
	CHK_SENDER_MX,
	CHK_SPF,
	CHK_PREGREET,
	CHK_PIPELINING,
	CHK_NULL_SENDER,
	CHK_DSN,
	CHK_GREYLIST,
	CHK_SCANNER,
	CHK_COUNT
};

#define DNSBL_MAX_RANGES 8
struct dnsbl_zone {
	char *zone;                    /* "zen.spamhaus.org" */
	int n_ranges;                  /* 0: any 127.0.0.0/8 answer counts */
	uint32_t lo[DNSBL_MAX_RANGES]; /* host byte order, inclusive */
	uint32_t hi[DNSBL_MAX_RANGES];
};

struct strlist {
	char **v;
	int n;
};

#define CONFIG_MAX_LISTEN 8
#define CONFIG_MAX_SCANNERS 4

/* A content scanner on the network (key `scanner`, scanproto.c). */
enum scan_kind { SCAN_CLAMD, SCAN_SPAMD, SCAN_RSPAMD };
struct scan_server {
	enum scan_kind kind;
	struct sockaddr_storage addr;
	char name[64]; /* "clamd:192.168.1.20:3310", as configured */
};
#define CONFIG_MAX_LOCAL_ADDR 16

/*
 * struct config - one parsed, validated /etc/mailmoat.conf.
 * Immutable once loaded; reference counted so that SIGHUP can swap in a
 * new one while sessions finish on the old one.
 */
struct config {
	int refs;
	char *path;

	struct sockaddr_storage listen[CONFIG_MAX_LISTEN];
	int n_listen;
	struct sockaddr_storage backend;
	bool backend_original; /* backend = original: the connection's own
	                        * original destination (transparent modes) */
	enum transparent_mode transparent;
	enum client_info backend_client_info;
	char bridge[2][16]; /* bridge = IF1 IF2 (router side, server side) */
	int n_bridge;       /* 0: none, else 2 */
	char *hostname;
	struct strlist local_domains; /* lower case */
	struct ipaddr local_addresses[CONFIG_MAX_LOCAL_ADDR];
	int n_local_addresses;
	char *recipients_path; /* NULL: none */
	enum rcpt_verify recipient_verify;
	char *dns_servers; /* c-ares csv "ip:port,..."; NULL: resolv.conf */
	unsigned dns_timeout_ms;
	struct dnsbl_zone *dnsbl;
	int n_dnsbl;
	char *allowlist_path;
	char *blocklist_path;
	unsigned greet_pause_ms;
	unsigned greylist_delay_s;
	unsigned greylist_window_s;
	unsigned greylist_lifetime_s;
	unsigned greylist_auto_allow;
	unsigned pass_cache_ttl_s; /* 0: no pass cache */
	unsigned backscatter_block_s;
	enum backscatter_scope backscatter_scope;
	unsigned backscatter_threshold;   /* refused DSNs before a block */
	struct strlist dsn_msgid_domains; /* lower case */
	enum dsn_reference dsn_reference; /* domain | sent */
	struct sockaddr_storage outbound_listen; /* ss_family 0: none */
	struct list *outbound_clients; /* who may use outbound_listen */
	struct sockaddr_storage outbound_relay; /* ss_family 0: none */
	char *state_dir;
	unsigned state_flush_s;
	char *control_socket;
	unsigned max_connections;
	unsigned max_per_ip;
	unsigned max_backend_connections; /* ours: cap on relay sessions */
	unsigned max_recipients;          /* ours: default 100 */
	uint64_t message_size_limit;      /* bytes; 0 = none */
	char *tls_cert;
	char *tls_key;
	char *scanner; /* the value as written; NULL: none */
	struct scan_server scanners[CONFIG_MAX_SCANNERS];
	int n_scanners;
	unsigned scanner_timeout_ms;    /* connect to answer, default 30s */
	enum scanner_fail scanner_fail; /* what a scanner fault means */
	uint64_t scanner_max_size; /* larger: no spamd/rspamd, default 2M */
	enum action actions[CHK_COUNT];

	/* ours, with defaults; see docs/CONFIG.md */
	unsigned timeout_command_ms; /* per command, default 5m */
	unsigned timeout_data_ms;    /* between data chunks, default 3m */
	unsigned timeout_backend_ms; /* backend reply, default 2m */
	unsigned backend_reuse_ms;   /* keep an idle backend connection, 2s */
	bool helo_resolve;           /* HELO name must resolve */
	enum sender_mx_mode sender_mx;
	bool sender_mx_private;    /* MX hosts may be in private ranges */
	enum action spf_softfail;  /* default log */
	enum action spf_neutral;   /* default off */
	enum action spf_permerror; /* default log */
	char *dynamic_patterns;    /* pattern file for CHK_DYNAMIC */
	char *tld_list;            /* IANA TLD list file */
	char *metrics_token;       /* read-only token of /cgi-bin/metrics */

	/* Loaded from the files named above (owned by the config). */
	struct list *allow;
	struct list *block;
	struct list *recipients;
};

/*
 * config_load - parse and validate path.  On error returns NULL and writes
 * "PATH:LINE: what is wrong" to err.  Referenced files (lists) are loaded
 * too, and their errors are reported with their own PATH:LINE.
 */
struct config *config_load(const char *path, char *err, size_t errlen);
struct config *config_ref(struct config *c);
void config_unref(struct config *c);
/* config_check_name - "dnsbl" -> CHK_DNSBL; -1 if unknown */
int config_check_id(const char *name);
const char *config_check_name(enum chk_id id);
const char *config_action_name(enum action a);
/* config_key_info - name and default (NULL: none) of key i of the key
 * table, in its order; false past the end. */
bool config_key_info(size_t i, const char **name, const char **def);
/* Parsers shared with the web UI: 0 on success, -EINVAL otherwise. */
int config_parse_duration_ms(const char *text, uint64_t *ms);
int config_parse_size(const char *text, uint64_t *bytes);

/* ---------------------------------------------------------------- list.c */

/*
 * struct list - an allow/block list or the recipients list: IPv4/IPv6
 * addresses and CIDR nets, full addresses (local@domain), and "@domain"
 * entries.  Lines: one entry each, '#' comments, blank lines ignored.
 */
struct list;
struct list *list_new(void);
/* list_load - returns NULL and "PATH:LINE: ..." in err on a bad line. */
struct list *list_load(const char *path, char *err, size_t errlen);
void list_free(struct list *l);
/* list_add/list_del - one entry as in the file; 0, -EINVAL, -ENOENT. */
int list_add(struct list *l, const char *entry);
int list_del(struct list *l, const char *entry);
bool list_match_ip(const struct list *l, const struct ipaddr *ip);
/* matches "local@domain" exactly or via "@domain" (case-insensitive). */
bool list_match_addr(const struct list *l, const char *addr);
bool list_match_domain(const struct list *l, const char *domain);
/* list_save - atomic rewrite (temp file, fsync, rename); blocking. */
int list_save(const struct list *l, const char *path);
/* list_text - the file text list_save() writes, into out. */
void list_text(const struct list *l, struct buf *out);
/* list_foreach - calls fn for each entry in its text form. */
void list_foreach(const struct list *l, void (*fn)(const char *, void *),
                  void *arg);

/* ---------------------------------------------------------------- addr.c */

/*
 * Address and name syntax (RFC 5321 4.1.2, RFC 1035 labels).
 * struct mailpath is a parsed reverse- or forward-path.
 */
struct mailpath {
	char local[65];   /* local part, unquoted form as sent */
	char domain[256]; /* lower case; "" for the null path */
	bool null;        /* "<>" */
	bool quoted;      /* local part was a quoted string */
};

enum addr_err {
	ADDR_OK = 0,
	ADDR_ESYNTAX = -1,  /* not a valid path */
	ADDR_ETOOLONG = -2, /* part over its RFC 5321 limit */
	ADDR_EROUTE = -3,   /* source route "<@a,@b:x@y>" */
	ADDR_ERELAY = -4,   /* %-hack, bang path, '@' in a quoted local part */
};

/* addr_parse_path - text is what follows "FROM:" / "TO:" up to the
 * closing '>' inclusive; *end gets the first byte after it. */
int addr_parse_path(const char *text, struct mailpath *p, const char **end);
/* addr_is_fqdn - RFC 1035 labels, at least one dot, no trailing dot. */
bool addr_is_fqdn(const char *name);
/* addr_is_domain - lenient: '_' allowed, one label enough (config). */
bool addr_is_domain(const char *name);
/* addr_tld - pointer to the last label of name. */
const char *addr_tld(const char *name);
/* addr_format - "local@domain" (quoted local part re-quoted) or "". */
void addr_format(const struct mailpath *p, char *out, size_t outlen);

/* ---------------------------------------------------------------- smtp.c */

/*
 * The server-side SMTP state machine.  Pure: it never touches a socket.
 * The owner feeds it bytes with smtp_input(), and it calls back through
 * struct smtp_hooks.  Commands that need a decision (EHLO/HELO, MAIL,
 * RCPT, DATA, end of data, STARTTLS) are handed to the owner, and the
 * engine waits until the owner answers with smtp_accept() or
 * smtp_reply(); input that arrives meanwhile is a pipelining violation.
 */
enum smtp_state {
	SMTP_ST_CONNECT, /* before the banner */
	SMTP_ST_HELO,    /* waiting for EHLO/HELO */
	SMTP_ST_MAIL,    /* greeted, no transaction */
	SMTP_ST_RCPT,    /* MAIL accepted */
	SMTP_ST_DATA,    /* inside the message body */
	SMTP_ST_CLOSED,
};

enum smtp_cmd {
	SMTP_CMD_EHLO,
	SMTP_CMD_HELO,
	SMTP_CMD_MAIL,
	SMTP_CMD_RCPT,
	SMTP_CMD_DATA,
	SMTP_CMD_DOT, /* end of data */
	SMTP_CMD_STARTTLS,
	SMTP_CMD_RSET, /* informational: engine already replied */
	SMTP_CMD_QUIT, /* informational: engine already replied */
};

enum smtp_violation {
	SMTP_VIOL_PREGREET,   /* talked before the banner */
	SMTP_VIOL_PIPELINING, /* sent before our reply */
};

/* What the owner learns about a command; valid during the hook only. */
struct smtp_args {
	const char *helo;            /* EHLO/HELO argument */
	const struct mailpath *path; /* MAIL / RCPT */
	uint64_t size;               /* MAIL SIZE=, 0 if absent */
	bool body_8bit;              /* MAIL BODY=8BITMIME */
	/* end of data */
	uint64_t msg_size;  /* body bytes seen */
	bool bad_line_end;  /* bare CR or LF seen: must refuse */
	bool line_too_long; /* a text line over 1000 octets */
	bool too_big;       /* over message_size_limit */
	/* MAIL / RCPT: enum addr_err of the path; ADDR_OK, or ADDR_EROUTE /
	 * ADDR_ERELAY (path still filled).  For RCPT the owner must refuse
	 * these ("550 5.7.1 Relaying denied", reason=relay); should it accept
	 * one anyway, the engine refuses it itself: never an open relay.
	 * For MAIL they are informational (a source route is ignored). */
	int addr_err;
};

struct smtp;
struct smtp_hooks {
	/* Send bytes to the client. */
	void (*write)(struct smtp *, const char *buf, size_t len);
	/* A command for the owner; answer later with smtp_accept/reply. */
	void (*command)(struct smtp *, enum smtp_cmd, const struct smtp_args *);
	/* Canonical body bytes (CRLF lines, dot-stuffed), final "." withheld.
	 */
	void (*body)(struct smtp *, const char *buf, size_t len);
	/* A protocol violation.  Return 0 to go on, or -1 after having
	 * replied and asked for the close yourself. */
	int (*violation)(struct smtp *, enum smtp_violation);
	/* The engine is done (QUIT answered, or fatal error). */
	void (*close)(struct smtp *);
};

struct smtp {
	const struct smtp_hooks *hooks;
	enum smtp_state state;
	bool waiting;          /* a command is with the owner */
	enum smtp_cmd pending; /* which one */
	bool esmtp;            /* greeted with EHLO */
	bool tls_offer;        /* advertise STARTTLS */
	bool tls_active;
	unsigned n_rcpt; /* accepted recipients in this transaction */
	unsigned max_rcpt;
	uint64_t size_limit;  /* 0 = none */
	const char *hostname; /* for the EHLO reply; owned by the config */
	const char *sid;      /* session id, appended to error replies */
	struct buf in;        /* unparsed input: a partial line, or what
	                       * came while waiting (capped at 8 KiB) */
	/* DATA scanner state */
	unsigned dstate;
	uint64_t msg_size;
	unsigned line_len;
	bool bad_line_end, line_too_long;
	unsigned n_errors; /* syntax errors: too many closes */
	/* private to smtp.c */
	bool too_big;    /* body over size_limit: no more body calls */
	bool busy;       /* inside the input loop (hooks may answer) */
	bool tls_wait;   /* 220 sent for STARTTLS, TLS not up yet */
	bool skip_line;  /* discarding an overlong line up to LF */
	bool cr_in_span; /* DATA: the pending CR is in this read */
	bool viol_pregreet, viol_pipelining; /* reported once each */
	int pending_addr_err;                /* of the RCPT with the owner */
	unsigned n_rcpt_tried; /* RCPT commands in this transaction */
	const char *refuse;    /* smtp_refuse(): the reply to everything */
};

void smtp_init(struct smtp *e, const struct smtp_hooks *hooks);
void smtp_free(struct smtp *e);
/* smtp_banner - send "220 hostname ESMTP mailmoat" and start reading. */
void smtp_banner(struct smtp *e);
/* smtp_input - feed bytes from the client (plaintext). */
void smtp_input(struct smtp *e, const char *buf, size_t len);
/* smtp_accept - the pending command is accepted: the engine sends the
 * standard success reply (250 / EHLO list / 354 / 220 for STARTTLS) and
 * moves on.  For SMTP_CMD_DOT the owner must use smtp_reply() with the
 * backend's reply instead. */
void smtp_accept(struct smtp *e);
/* smtp_reply - answer the pending command with a full reply line (or a
 * multi-line reply), "CODE X.Y.Z text" without CRLF; ok says whether the
 * command succeeded (a 2xx), so the engine knows the next state. */
void smtp_reply(struct smtp *e, bool ok, const char *reply);
/* smtp_close_reply - send a final reply (421/554...) and stop. */
void smtp_close_reply(struct smtp *e, const char *reply);
/* smtp_tls_started - TLS is up: reset to SMTP_ST_HELO (RFC 3207). */
void smtp_tls_started(struct smtp *e);
/* smtp_refuse - instead of smtp_banner: send reply (e.g. "554 5.7.1 ...")
 * as the greeting, then answer every command but QUIT with it (RFC 5321
 * 3.1: wait for QUIT).  reply is the owner's; keep it until smtp_free.
 *
 * Notes on the hooks: they run synchronously from smtp_input/smtp_banner/
 * smtp_accept/smtp_reply; a hook may answer at once (smtp_accept/reply/
 * close_reply) but must not call smtp_input nor free the engine (free it
 * after the close hook has returned, e.g. in a uv_close callback).
 * The close hook is called at most once: after QUIT, after the engine's own
 * 421 (too many errors / too much input), and from smtp_close_reply().
 * Each violation is reported at most once per session.  After the size
 * limit is exceeded the body hook gets no more bytes (too_big is set).
 * Command lines may end in a bare LF; only DATA is strict about CRLF. */
void smtp_refuse(struct smtp *e, const char *reply);

/* ---------------------------------------------------------------- json.c */

/*
 * A small, strict, bounded JSON reader (RFC 8259) for scanner answers:
 * tokens in the caller's array, pointing into the caller's text.
 */
enum json_type {
	JSON_OBJ,
	JSON_ARR,
	JSON_STR,
	JSON_NUM,
	JSON_TRUE,
	JSON_FALSE,
	JSON_NULL
};
#define JSON_MAX_DEPTH 16
struct json_tok {
	enum json_type type;
	uint32_t start, end; /* text span; strings: inside the quotes */
	uint32_t n;          /* object: members; array: elements */
	uint32_t next;       /* the first token after this value */
};
/* json_parse - the number of tokens (t[0]: the document), or -EINVAL
 * (not exactly one value) / -E2BIG (over max tokens or too deep). */
int json_parse(const char *s, size_t n, struct json_tok *t, unsigned max);
/* json_get - the value token of key in object obj, or -1. */
int json_get(const char *s, const struct json_tok *t, int obj, const char *key);
/* json_str - string token i unescaped (UTF-8) into out; false if not a
 * string or truncated.  json_num - number token i. */
bool json_str(const char *s, const struct json_tok *t, int i, char *out,
              size_t outlen);
bool json_num(const char *s, const struct json_tok *t, int i, double *v);

/* ----------------------------------------------------------- scanproto.c */

/*
 * The scanner protocols, pure: request encoders and reply parsers for
 * clamd (INSTREAM), spamd (SPAMC/1.5 SYMBOLS) and rspamd (HTTP /checkv2).
 * A parser gets all the reply read so far (eof: the scanner closed) and
 * returns 0 (need more) or 1 (done, *r filled).  A reply that is
 * malformed, longer than SCAN_REPLY_MAX or cut short is SCAN_FAULT.
 */
enum scan_verdict {
	SCAN_CLEAN,  /* OK / not spam / rspamd "no action" */
	SCAN_VIRUS,  /* clamd: what = the signature name */
	SCAN_SPAM,   /* spamd spam, rspamd "reject": refuse */
	SCAN_SOFT,   /* rspamd "soft reject" / "greylist": 451 */
	SCAN_HEADER, /* rspamd "add header" / "rewrite subject": deliver */
	SCAN_LIMIT,  /* clamd: INSTREAM size limit exceeded */
	SCAN_FAULT,  /* an error reply, malformed, or a transport failure */
};
#define SCAN_REPLY_MAX (256 * 1024)
#define SCAN_CLAMD_CHUNK (64 * 1024) /* largest INSTREAM chunk we send */
struct scan_reply {
	enum scan_verdict verdict;
	char what[128]; /* virus name, rspamd action, what went wrong */
	bool has_score;
	double score, required;
	char symbols[256];  /* "GTUBE,MISSING_DATE": the rules that hit */
	char headers[1024]; /* header lines (CRLF each) rspamd wants added */
};
/* What rspamd is told about the transaction (request headers). */
struct scan_meta {
	const char *client; /* "203.0.113.9" */
	const char *helo;   /* "" if none */
	const char *from;   /* "a@b.example", "" for <> */
	const char *const *rcpt;
	unsigned n_rcpt;
	const char *ptr;      /* forward-confirmed PTR, "" if none */
	const char *queue_id; /* the session id */
};
const char *scan_kind_name(enum scan_kind k); /* "clamd" */
/* scan_server_parse - "clamd:IP:PORT" / "spamd:[v6]:PORT"; 0 or -EINVAL */
int scan_server_parse(const char *text, struct scan_server *out);
/* scan_clamd_command - "zINSTREAM" and its NUL (SCAN_CLAMD_COMMAND_LEN). */
extern const char scan_clamd_command[];
#define SCAN_CLAMD_COMMAND_LEN 10
/* scan_clamd_chunk - the 4-byte big-endian length before a chunk; 0 ends. */
void scan_clamd_chunk(unsigned char hdr[4], uint32_t len);
int scan_clamd_parse(const char *p, size_t n, bool eof, struct scan_reply *r);
/* scan_spamd_request - the request head for a len-byte message. */
void scan_spamd_request(struct buf *b, uint64_t len);
int scan_spamd_parse(const char *p, size_t n, bool eof, struct scan_reply *r);
/* scan_rspamd_request - the HTTP head for a len-byte message; values
 * from the client are cut at control characters. */
void scan_rspamd_request(struct buf *b, const struct scan_meta *m,
                         uint64_t len);
int scan_rspamd_parse(const char *p, size_t n, bool eof, struct scan_reply *r);

/* ------------------------------------------------------ checks/scanner.c */

/* (chk_scanner in check.h: every scanner sees the message before the
 * final dot; its figures are the "scanners" section of the stats) */

/* ------------------------------------------------------------- scanner.c */

/*
 * Non-blocking clients of the scanners: one connection per message per
 * scanner on the loop.  done() is called once (never from inside these
 * calls) unless the job was cancelled; the job frees itself afterwards.
 */
struct scan_job;
typedef void (*scan_done_fn)(void *arg, const struct scan_reply *r);
/* scan_open - connect to srv now; timeout_ms for the connect, and for
 * the answer after scan_end(). */
struct scan_job *scan_open(uv_loop_t *loop, const struct scan_server *srv,
                           unsigned timeout_ms, scan_done_fn done, void *arg);
/* scan_body - clamd: message bytes, copied and streamed in chunks. */
void scan_body(struct scan_job *j, const char *p, size_t n);
/* scan_end - the message is complete.  spamd/rspamd: req is the whole
 * request (scan_spamd_request/scan_rspamd_request + message), taken
 * over (*req is emptied); clamd: NULL. */
void scan_end(struct scan_job *j, struct buf *req);
/* scan_truncated - clamd got only the first part (its StreamMaxLength). */
bool scan_truncated(const struct scan_job *j);
void scan_cancel(struct scan_job *j);
/* scan_health_json - {"NAME": {"status": "up", "scans": ...}, ...}. */
void scan_health_json(struct buf *b);

/* ----------------------------------------------------------- hdrfilter.c */

/*
 * Drops Authentication-Results fields that claim our authserv-id from
 * the header section of a message (RFC 8601 section 5).  Streaming.
 */
typedef void (*hdrfilter_out_fn)(void *arg, const char *p, size_t n);
struct hdrfilter {
	unsigned state;
	bool dropping; /* the current field is dropped */
	const char *authserv_id;
	size_t held;
	char hold[512]; /* a header line's start, until decided */
};
void hdrfilter_init(struct hdrfilter *f, const char *authserv_id);
void hdrfilter_feed(struct hdrfilter *f, const char *p, size_t n,
                    hdrfilter_out_fn out, void *arg);
void hdrfilter_end(struct hdrfilter *f, hdrfilter_out_fn out, void *arg);

/* ----------------------------------------------------------------- dns.c */

/*
 * The only c-ares/libuv glue.  One channel on the loop, one uv_poll_t per
 * c-ares socket, one timer.  A TTL-clamped cache in front.  Callbacks run
 * on the loop, never synchronously from dns_query().
 */
enum dns_status {
	DNS_OK = 0,     /* answer with >= 1 record of the type */
	DNS_NODATA = 1, /* name exists, no record of the type */
	DNS_NXDOMAIN = 2,
	DNS_TEMPFAIL = 3, /* SERVFAIL, timeout, refused, ... */
};

struct dns_rr {
	union {
		struct in_addr a;
		struct in6_addr aaaa;
		struct {
			uint16_t pref;
			char *host;
		} mx;
		char *name; /* PTR, CNAME */
		char *txt;  /* TXT: strings of one record joined */
	} u;
};

struct dns_answer {
	enum dns_status status;
	int type; /* ns_t_a, ns_t_aaaa, ns_t_mx, ns_t_ptr, ns_t_txt */
	unsigned ttl;
	int n;
	struct dns_rr rr[];
};

typedef void (*dns_cb)(void *arg, const struct dns_answer *ans);

int dns_init(uv_loop_t *loop, const struct config *cfg);
int dns_reconfigure(const struct config *cfg);
/* dns_query - starts a lookup; cb gets the answer (valid during cb). */
int dns_query(const char *name, int type, dns_cb cb, void *arg);
/* dns_reverse_name - "4.3.2.1.in-addr.arpa" / nibble form for v6,
 * with suffix (".in-addr.arpa", or a DNSBL zone) appended. */
void dns_reverse_name(const struct ipaddr *ip, const char *zone, char *out,
                      size_t outlen);
void dns_shutdown(void);
/* dns_parse - decode a response for records of type; 0 or -EBADMSG.
 * *out is new (dns_answer_free); rcode SERVFAIL etc. give DNS_TEMPFAIL. */
int dns_parse(const unsigned char *msg, size_t len, int type,
              struct dns_answer **out);
void dns_answer_free(struct dns_answer *a);
void dns_cache_flush(void);
/* dns_cache_peek - the cached answer for (name, type) or NULL (a miss);
 * synchronous, sends nothing; valid until the loop runs again. */
const struct dns_answer *dns_cache_peek(const char *name, int type);
/* dns_cache_add - cache a copy of ans for its TTL (tests, fuzzers). */
void dns_cache_add(const char *name, int type, const struct dns_answer *ans);
struct dns_stats {
	uint64_t queries;   /* dns_query() calls */
	uint64_t hits;      /* answered from the cache */
	uint64_t sent;      /* went to a server */
	uint64_t tempfails; /* SERVFAIL, timeout, ... */
	uint64_t timeouts;
	uint64_t cached;    /* entries in the cache now */
	uint64_t peek_hits; /* dns_cache_peek() answered (SPF) */
	uint64_t joined;    /* waited on the same lookup in flight */
};
void dns_stats_get(struct dns_stats *out);
/* dns_tick_add - fn runs on the loop after dns_init(), after each
 * dns_reconfigure(), and every 30 s (at most 4 functions). */
void dns_tick_add(void (*fn)(void));

/* ----------------------------------------------------------------- spf.c */

/*
 * SPF (RFC 7208) via the project's patched libspf2, on the loop: its DNS
 * layer answers from dns.c's cache (dns_cache_peek), misses are fetched
 * with dns_query() and the evaluation runs again.  Needs dns_init().
 */
enum spf_res {
	SPF_RES_NONE,
	SPF_RES_NEUTRAL,
	SPF_RES_PASS,
	SPF_RES_FAIL,
	SPF_RES_SOFTFAIL,
	SPF_RES_TEMPERROR,
	SPF_RES_PERMERROR,
};

struct spf_query {
	struct ipaddr client;
	const char *helo;        /* EHLO/HELO name; NULL or "" if none */
	const char *sender;      /* "local@domain"; NULL or "": null sender,
	                          * the HELO identity is checked */
	const char *receiver;    /* our host name for %{r}; NULL: "unknown" */
	unsigned timeout_ms;     /* dns_timeout; the whole evaluation may take
	                          * 6 times that; 0: 5000 */
	const char *default_exp; /* NULL: none (explanation stays "") */
};

struct spf_outcome {
	enum spf_res result;
	bool helo_identity;    /* postmaster@HELO was checked */
	int errcode;           /* libspf2's SPF_errcode_t, for logs */
	unsigned dns_queries;  /* sent to dns.c (misses of the cache) */
	unsigned runs;         /* libspf2 evaluations (DNS rounds + 1) */
	char domain[256];      /* the domain checked (sanitized) */
	char explanation[256]; /* fail only: exp= text, sanitized; "" if none */
	char reason[192];      /* why, for logs (sanitized) */
};

/* spf_done_fn - the outcome (valid during the call); rc < 0: libspf2
 * could not be set up (result temperror). */
typedef void (*spf_done_fn)(void *arg, const struct spf_outcome *out, int rc);
/* spf_eval_start - copies q; fn runs later on loop, never from here.
 * 0, or -EINVAL (bad address family; fn not called). */
int spf_eval_start(uv_loop_t *loop, const struct spf_query *q, spf_done_fn fn,
                   void *arg);
const char *spf_res_name(enum spf_res r);
/* spf_sanitize - printable ASCII only: tab/CR/LF -> space, others -> "?". */
void spf_sanitize(char *out, size_t outlen, const char *in);

/* ------------------------------------------------------- checks/spf.c */

/* spf_auth_results - "Authentication-Results: HOST; spf=R smtp.mailfrom=A
 * [; iprev=...]\r\n" into out (values restricted to safe characters);
 * from NULL or null: smtp.helo=; ptr NULL: no iprev, "": fail/temperror. */
void spf_auth_results(char *out, size_t outlen, const char *authserv,
                      enum spf_res r, const struct mailpath *from,
                      const char *helo, const struct ipaddr *client,
                      const char *ptr, bool rdns_temp);

/* ----------------------------------------------------------------- tld.c */

/*
 * The IANA TLD list (data/tlds.txt, compiled in; `tld_list` replaces it
 * at load/reload).  tld_load(NULL) loads the built-in copy.
 */
int tld_load(const char *path, char *err, size_t errlen);
int tld_parse(const char *text, size_t len, const char *name, char *err,
              size_t errlen);
bool tld_registered(const char *tld); /* "com", any case, no dot */
size_t tld_count(void);
void tld_free(void);
extern const char tld_builtin_text[]; /* tld_builtin.c (generated) */

/* ---------------------------------------------------- checks/dynamic.c */

/* Dynamic-pool PTR patterns (data/dynamic-ptr.patterns, syntax there). */
struct dynamic_rules;
struct dynamic_rules *dynamic_rules_parse(const char *text, size_t len,
                                          const char *name, char *err,
                                          size_t errlen);
struct dynamic_rules *dynamic_rules_load(const char *path, char *err,
                                         size_t errlen); /* NULL: built-in */
void dynamic_rules_free(struct dynamic_rules *r);
/* dynamic_match - does ptr look like a pool name?  ip may be NULL; why
 * gets the rule that decided ("keyword dsl", "ip-in-name", ...). */
bool dynamic_match(const struct dynamic_rules *r, const char *ptr,
                   const struct ipaddr *ip, char *why, size_t whylen);
extern const char dynamic_builtin_text[]; /* dynamic_builtin.c (generated) */

/* ------------------------------------------------------- checks/rdns.c */

/*
 * One PTR lookup + forward confirmation per session, shared by the rdns
 * and dynamic checks: each asks with rdns_lookup_start() and gets fn
 * called (on the loop, with a live session of the same generation) when
 * the lookup is complete.
 */
struct session;
#define RDNS_MAX_NAMES 4
struct rdns_ptr {
	enum dns_status status; /* of the PTR query */
	int n;                  /* PTR names kept (capped) */
	char name[RDNS_MAX_NAMES][256];
	int confirmed;     /* index of the confirmed name, or -1 */
	bool fwd_tempfail; /* a forward lookup failed temporarily */
};
typedef void (*rdns_done_fn)(struct session *s, const struct rdns_ptr *r);
void rdns_lookup_start(struct session *s, enum chk_id who, rdns_done_fn fn);

/* ------------------------------------------------------- checks/helo.c */

/* helo_judge - the DNS-free part of the helo check: CHK_PASS, or CHK_FAIL
 * with the reply text (no code) in text. */
int helo_judge(const struct config *cfg, const struct ipaddr *client,
               const char *helo, char *text, size_t textlen);

/* ------------------------------------------------------ checks/dnsbl.c */

/* dnsbl_stats_json - zone health for `mailmoatctl stats` ("dnsbl": {...}),
 * registered with stats_add_section() by the check's init. */
void dnsbl_stats_json(struct buf *b);

/* ----------------------------------------------------------------- dsn.c */

/*
 * The DSN scanner: pure and streaming, bounded memory (one allocation of
 * about 17 KiB) and constant work per byte whatever the size or nesting.
 * Fed the unstuffed message in any pieces; at the end it says what kind of
 * notification it is and whether it refers to a message of ours - a
 * Message-ID for which match() says yes (see dsn.c for where it looks).
 */
enum dsn_kind {
	DSN_KIND_OTHER,     /* null sender, nothing more recognised */
	DSN_KIND_REPORT,    /* RFC 3464 multipart/report delivery-status */
	DSN_KIND_MDN,       /* RFC 8098 disposition-notification */
	DSN_KIND_AUTOREPLY, /* RFC 3834 Auto-Submitted, vacation markers */
	DSN_KIND_LEGACY,    /* plain-text bounce (mailer-daemon, subject) */
};
/* dsn_match_fn - is this Message-ID (no angle brackets) ours? */
typedef bool (*dsn_match_fn)(void *arg, const char *id, size_t len);
struct dsn_result {
	enum dsn_kind kind;
	bool referenced; /* a reference to a message of ours was found */
	bool capped;     /* nesting beyond the caps was skipped */
	unsigned ids;    /* Message-ID candidates seen */
	uint64_t bytes;  /* fed */
	char ref[256];   /* the id that matched */
	char first[256]; /* the first id seen ("" if none) */
};
struct dsn_scan;
struct dsn_scan *dsn_scan_new(dsn_match_fn match, void *arg);
void dsn_scan_feed(struct dsn_scan *d, const char *p, size_t n);
void dsn_scan_end(struct dsn_scan *d, struct dsn_result *out);
void dsn_scan_free(struct dsn_scan *d);
const char *dsn_kind_name(enum dsn_kind k);
/* dsn_domain_under - dom[0..n) is name or a subdomain of it (any case). */
bool dsn_domain_under(const char *dom, size_t n, const char *name);
/* dsn_id_ours - the id's domain is hostname, one of local_domains or
 * dsn_msgid_domains, or a subdomain of one. */
bool dsn_id_ours(const struct config *cfg, const char *id, size_t n);

/* --------------------------------------------------------- backscatter.c */

/*
 * Hosts that sent us backscatter (DSNs for mail we never sent): a count
 * per client IP and per PTR domain, and a block of backscatter_block once
 * backscatter_threshold DSNs were refused.  Kept in the state store
 * (table "backscatter"); store time (store_now()).
 */
int bs_init(const struct config *cfg);
/* bs_refused - count a refused DSN of ip / ptr ("" if none); true if the
 * client is blocked now. */
bool bs_refused(const struct config *cfg, const struct ipaddr *ip,
                const char *ptr);
/* bs_lookup - blocked by IP or PTR domain?  key: what matched. */
bool bs_lookup(const struct ipaddr *ip, const char *ptr, char *key,
               size_t keylen, uint64_t *until);
bool bs_has_domains(void); /* any PTR-domain entry at all */
/* bs_list_text - one line per entry, blocks first, at most max lines. */
void bs_list_text(struct buf *out, size_t max);
int bs_del(const char *key); /* an IP address or a domain: 0 or -ENOENT */
size_t bs_blocked_count(void);
void bs_ptr_domain(const char *ptr, char *out, size_t outlen);
void bs_format_time(uint64_t t, char *out, size_t outlen);
uint64_t bs_now(void);
void bs_free(void);

/* -------------------------------------------------------------- msgids.c */

/*
 * The Message-IDs the box saw leave through outbound_listen: a compact
 * hashed set (store table "msgids": 8-byte hash keys) for dsn_reference =
 * sent, and a streaming reader of an outgoing message's Message-ID field.
 */
void msgids_add(const char *id, size_t n, uint64_t expires); /* store s */
bool msgids_has(const char *id, size_t n);
size_t msgids_count(void);
void msgids_free(void);
struct msgids_tap {
	bool done, found, in_field, over;
	size_t llen, len;
	char line[1000];
	char id[1000];
};
void msgids_tap_init(struct msgids_tap *t);
void msgids_tap_feed(struct msgids_tap *t, const char *p, size_t n);
bool msgids_tap_id(const struct msgids_tap *t, char *out, size_t outlen);

/* ------------------------------------------------------------ outbound.c */

/*
 * Outbound learning: who may use outbound_listen, and the Message-IDs of
 * what the smarthost took (msgids.c), for dsn_reference = sent.  The
 * session calls these for its outbound sessions.
 */
struct session;
bool outbound_client_ok(const struct config *cfg, const struct ipaddr *ip);
void outbound_refusal(const char *sid, char *out, size_t outlen);
void outbound_body(struct session *s, const char *p, size_t n);
void outbound_delivered(struct session *s); /* 2xx to the dot */
void outbound_end(struct session *s);       /* transaction over */
void outbound_stats_json(struct buf *b);

/* ------------------------------------------------------------- verdict.c */

enum chk_status {
	CHK_NONE = 0, /* not run */
	CHK_PENDING,
	CHK_PASS,
	CHK_FAIL,    /* the check says: refuse */
	CHK_TEMPERR, /* could not decide (DNS): tempfail at most */
};

/* A check's result, stored in the session's slot. */
struct chk_result {
	enum chk_status status;
	const char
	        *code;  /* reject code, e.g. "554 5.7.1"; NULL: stage default */
	char text[160]; /* reply text after the code (truncated) */
	char detail[128]; /* log detail, e.g. "zen.spamhaus.org=127.0.0.2" */
};

enum verdict_kind {
	VERDICT_ACCEPT,
	VERDICT_LOG,
	VERDICT_TEMPFAIL,
	VERDICT_REJECT
};

struct verdict {
	enum verdict_kind kind;
	int check;       /* enum chk_id or a registry slot; -1: none */
	char reply[320]; /* full reply line incl. session id, no CRLF */
};

/*
 * verdict_decide - pure: given one check's result and its action, the
 * decision.  Reject with a TEMPERR result becomes a tempfail; tempfail
 * turns a reject code into "451 4.7.1" keeping the text; log and off
 * accept (log is counted as would-have-been).
 */
void verdict_decide(const struct chk_result *r, enum action act,
                    const char *sid, struct verdict *out);
/* verdict_default_code - a check's reject code when its result names none
 * (dnsbl "554 5.7.1", pregreet "554 5.5.0", null_sender "550 5.5.3" ...). */
const char *verdict_default_code(int id);
/* verdict_wins - should cand replace best as the stage's decision (a
 * reject beats a tempfail beats an accept or log; the first of equals)? */
bool verdict_wins(const struct verdict *cand, const struct verdict *best);

/* ------------------------------------------------------------- stats.c */

struct stats {
	uint64_t connections_total;
	uint64_t connections_active;
	uint64_t accepted;         /* messages the backend took (250 relayed) */
	uint64_t tempfailed;       /* 4xx decisions */
	uint64_t rejected;         /* 5xx decisions */
	uint64_t logged;           /* action=log: would have been refused */
	uint64_t greylist_entries; /* set by the greylist module, if any */
	uint64_t backend_released; /* held bodies that gave their backend
	                            * connection back (stage.c) */
};
extern struct stats stats;
void stats_count_reason(const char *reason); /* reasons{} object */
/* stats_json - the `mailmoatctl stats` object into b. */
void stats_json(struct buf *b);
/* stats_add_section - stats_json adds "name": <what fn appends> (a JSON
 * value); for modules with their own figures (dns zone health...). */
void stats_add_section(const char *name, void (*fn)(struct buf *b));
/* stats_json_string - append s as a JSON string literal (escaped). */
void stats_json_string(struct buf *b, const char *s);
/* stats_store_open - counters of the previous run from the store's blob
 * "counters" (after store_open); they are saved there at each flush. */
void stats_store_open(void);
void stats_free(void);

/* --------------------------------------------------------------- psl.c */

/* psl_registered - the registered domain (public suffix + one label, PSL
 * from data/public_suffix_list.dat, compiled in) of a host name, lower
 * case, into out; false when name is itself a public suffix or bad. */
bool psl_registered(const char *name, char *out, size_t outlen);

/* ---------------------------------------------------------- greylist.c */

/* Greylisting logic on store tables (the check is checks/greylist.c).  A
 * triplet is the text "NET SENDER RCPT": NET the registered domain of a
 * forward-confirmed PTR, else the /24 or /64. */
enum gl_result { GL_R_NEW, GL_R_WAIT, GL_R_PASS, GL_R_AUTO };
void greylist_open(void); /* the tables, after store_open */
void greylist_net(const struct ipaddr *ip, const char *ptr, char *out,
                  size_t outlen);
struct mailpath;
void greylist_sender(const struct mailpath *from, char *out, size_t outlen);
void greylist_triplet(const struct ipaddr *ip, const char *ptr,
                      const struct mailpath *from, const struct mailpath *rcpt,
                      char *out, size_t outlen);
enum gl_result greylist_lookup(const struct config *cfg, const char *triplet,
                               unsigned *waited);
void greylist_record(const struct config *cfg, const char *triplet);
void greylist_delivered(const struct config *cfg, const char *triplet);
size_t greylist_list(const char *pattern, struct buf *out);
/* greylist_list_async - the same, the texts read in the thread pool;
 * done(n, arg) on the loop when out holds the lines. */
void greylist_list_async(const char *pattern, struct buf *out,
                         void (*done)(size_t n, void *arg), void *arg);
int greylist_del(const char *triplet);
size_t greylist_flush(void);
void greylist_stats(uint64_t *entries, uint64_t *pending, uint64_t *passed,
                    uint64_t *auto_allowed);
size_t greylist_capacity(void);
void greylist_set_capacity(size_t n); /* tests; 0: derived */

/* ---------------------------------------------------------- passcache.c */

/* The pass cache (as postscreen's): a client IP that passed the greet
 * pause and the connect checks gets its banner at once for
 * pass_cache_ttl (store table "pass_cache"). */
bool passcache_hit(const struct config *cfg, const struct ipaddr *ip);
void passcache_add(const struct config *cfg, const struct ipaddr *ip);

/* ------------------------------------------------------------- store.c */

/* The flash-backed state store: the only code touching state_dir.  Named
 * tables of small fixed-size records and named blobs in RAM, persisted
 * as a checksummed journal + snapshot, one write burst per state_flush
 * from the thread pool (docs/STORE.md). */
#define STORE_KEY_MAX 255
int store_open(uv_loop_t *loop, const struct config *cfg, char *err,
               size_t errlen);
void store_close(void); /* final flush, blocking: at exit; frees all */
/* store_flush - one burst of what changed, from the thread pool; done (may
 * be NULL) gets 0 or -errno on the loop.  -EBUSY: one is running; -ENOENT:
 * no state_dir.  store_flush_now - the same, blocking (exit, tests). */
int store_flush(void (*done)(int rc, void *arg), void *arg);
int store_flush_now(void);
/* store_on_flush - fn runs just before each burst (set blobs there). */
void store_on_flush(void (*fn)(void));
struct store_table;
/* store_table - a named table (created on first call, its records loaded
 * from flash); val_size fixed per table (a different size drops what was
 * stored); keys are byte strings of 1..255 bytes. */
struct store_table *store_table(const char *name, size_t val_size);
/* put/get/del - put replaces; get returns a pointer valid until the next
 * call that changes the table (8-byte aligned; copy what you keep); expires is
 * store time (store_now()), 0 = never; an expired record is gone. */
int store_put(struct store_table *t, const void *key, size_t klen,
              const void *val, uint64_t expires);
const void *store_get(struct store_table *t, const void *key, size_t klen);
int store_get_expires(struct store_table *t, const void *key, size_t klen,
                      uint64_t *expires);
int store_del(struct store_table *t, const void *key, size_t klen);
/* store_foreach - fn for each live record while it returns true; fn may
 * store_del() the record it got or put an existing key, not add keys. */
void store_foreach(struct store_table *t,
                   bool (*fn)(const void *key, size_t klen, const void *val,
                              uint64_t expires, void *arg),
                   void *arg);
size_t store_count(struct store_table *t);
/* store_table_find - the table if it exists (loaded or asked for), else
 * NULL (not created).  store_table_drop - it and its records go. */
struct store_table *store_table_find(const char *name);
void store_table_drop(struct store_table *t);
/* store_compact - the next burst is a whole snapshot (tests, bench). */
void store_compact(void);
/* A compact index: records keyed by a nonzero u64 (a hash of what the
 * caller keys on) with fixed small values (<= 240 bytes) and a 32-bit
 * expiry, in one open-addressing slot array (no allocation per record);
 * journalled as records, snapshotted as blocks by the thread pool from a
 * copy of the slots (docs/STORE.md).  name: [a-z0-9_]; max sizes the
 * slots (0: no bound).  iget: the value alive at now (store_now()),
 * valid until the index changes.  iforeach: fn must not change it. */
struct store_index;
struct store_index *store_index(const char *name, size_t val_size, size_t max);
int store_iput(struct store_index *x, uint64_t key, const void *val,
               uint64_t expires);
const void *store_iget(struct store_index *x, uint64_t key, uint64_t now);
int store_idel(struct store_index *x, uint64_t key);
void store_iclear(struct store_index *x);
void store_iforeach(struct store_index *x,
                    bool (*fn)(uint64_t key, const void *val, uint64_t expires,
                               void *arg),
                    void *arg);
size_t store_icount(const struct store_index *x);
size_t store_isweep(struct store_index *x); /* expired ones go now */
size_t store_imem(const struct store_index *x);
/* store_text_put - a text for key, kept on flash only (STATE_DIR/NAME.txt,
 * appended at the next burst, compacted with the snapshots); for
 * listing.  store_text_foreach - fn once per live record with its text
 * (NULL when none was found); reads the file on the calling thread.
 * store_text_foreach_async - the same with the file read in the thread
 * pool; fn and then done(arg) run on the loop. */
void store_text_put(struct store_index *x, uint64_t key, const char *text);
void store_text_foreach(struct store_index *x,
                        void (*fn)(uint64_t key, const void *val,
                                   uint64_t expires, const char *text,
                                   size_t tlen, void *arg),
                        void *arg);
void store_text_foreach_async(struct store_index *x,
                              void (*fn)(uint64_t key, const void *val,
                                         uint64_t expires, const char *text,
                                         size_t tlen, void *arg),
                              void (*done)(void *arg), void *arg);
void store_text_scan_mem(const void *p, size_t n, size_t *good, size_t *bad);
/* store_now - wall seconds, corrected for clock jumps (monotonic within a
 * run; see docs/STORE.md "Clock").  store_clock_hooks - tests only. */
uint64_t store_now(void);
void store_clock_hooks(time_t (*wall)(void), uint64_t (*mono_ns)(void));
/* store_blob_* - one opaque blob (<= 4 MiB) per name (counters, chart
 * series, decision ring): saved whole at the next flush after a set. */
int store_blob_set(const char *name, const void *p, size_t n);
const void *store_blob_get(const char *name, size_t *n);
struct store_counters {
	uint64_t bursts, snapshots, bytes_written, write_errors;
	uint64_t load_records, load_dropped, load_ms, clock_jumps;
	uint64_t jnl_bytes, live_bytes;
	uint64_t serialise_us; /* the last burst's time on the loop */
};
void store_counters_get(struct store_counters *out);
uint32_t store_crc32(uint32_t crc, const void *p, size_t n);
/* store_load_mem - the loader on memory images (fuzzer, tests). */
void store_load_mem(const void *snap, size_t snap_len, const void *jnl,
                    size_t jnl_len, size_t *good, size_t *dropped);

/* ------------------------------------------------------------- session.c */

#define SESS_MAX_RCPT 100

/* Stages at which checks run. */
enum stage {
	STAGE_CONNECT = 1 << 0,
	STAGE_HELO = 1 << 1,
	STAGE_MAIL = 1 << 2,
	STAGE_RCPT = 1 << 3,
	STAGE_DATA = 1 << 4, /* end of data */
};

struct relay;
struct tls;

/*
 * struct session - one client connection.  Checks read the public part
 * (client, ptr, helo, from, rcpt) and write only their result slot.
 */
struct session {
	uint64_t id;        /* unique, never reused */
	char sid[8];        /* printable id, in replies and log lines */
	uint32_t gen;       /* bumped at each stage start: stale answers drop */
	struct config *cfg; /* a reference */

	/* public to checks */
	struct ipaddr client;
	char client_str[INET6_ADDRSTRLEN];
	struct sockaddr_storage peer;       /* the client's address and port */
	struct sockaddr_storage dst;        /* its original destination */
	char dst_str[INET6_ADDRSTRLEN + 8]; /* "192.0.2.25:25", "[v6]:25" */
	char ptr[256]; /* forward-confirmed PTR name, "" if none */
	char helo[256];
	struct mailpath from;
	bool has_from;
	struct mailpath rcpt; /* the recipient being checked */
	bool allowlisted;     /* client IP or sender in the allowlist */
	bool outbound;        /* came in on outbound_listen (outbound.c) */
	struct msgids_tap *outbound_tap; /* outbound.c: this message's id */
	struct chk_result results[CHK_COUNT];
	/* Header lines (each ending CRLF) that go in front of the message
	 * to the backend: Received, Authentication-Results.  Checks append. */
	struct buf add_headers;
	/* The recipients the backend accepted in this transaction (valid
	 * until the next MAIL or RSET; n_to of them). */
	const struct mailpath *to;
	unsigned n_to;
	/* STAGE_DATA checks (check.h: body, hold, data_begin): */
	void *chk_state[CHK_COUNT]; /* a check's own per-session state; it
	                             * frees it in cancel() */
	struct buf eod_headers;     /* header lines (each CRLF-terminated) that
	                             * DATA checks append during their start();
	                             * they go in front of the message when the
	                             * body was held (else they are dropped) */
	uint64_t msg_bytes;         /* unstuffed bytes tapped so far */

	/* private to the session (session.c, listen.c, stage.c, bodytap.c) */
	uv_tcp_t tcp;
	uv_timer_t timer;
	struct smtp smtp;
	struct relay *relay;
	struct tls *tls;
	unsigned pending_checks;
	unsigned stage;
	unsigned open_handles;
	bool closing;
	void *priv; /* session.c's own state */
};

/* sess_find - the live session with this id, or NULL (it has gone). */
struct session *sess_find(uint64_t id);

/* One decision (the fields of its log line, unescaped; "" when empty). */
struct decision_rec {
	const char *id;     /* session id */
	uint64_t time;      /* wall-clock seconds */
	const char *client; /* IP address text */
	const char *ptr, *helo;
	const char *from;   /* "<a@b>", "<>" */
	const char *to;     /* "<a@b>" or, at end of data, "<a@b>,<c@d>" */
	const char *action; /* accept, log, tempfail, reject */
	const char *reason; /* check name, backend, timeout, limit, ... */
	const char *detail;
};
/* sess_on_decision - fn runs for every decision log line (on the loop,
 * the record valid during the call; at most 4 subscribers). */
void sess_on_decision(void (*fn)(const struct decision_rec *d));
/* sess_on_delivered - fn(s) after the backend's 2xx to the final dot,
 * before the client gets it (s->from, s->to, s->n_to valid; at most 4). */
void sess_on_delivered(void (*fn)(struct session *s));

/* --------------------------------------------------------------- listen.c */

/* sess_listen - open every listener of cfg on loop. */
int sess_listen(uv_loop_t *loop, struct config *cfg);
/* sess_reload - new sessions use cfg; live ones keep theirs. */
void sess_reload(struct config *cfg);
/* sess_drain - stop accepting, close idle sessions, call done when none. */
void sess_drain(void (*done)(void));
/* sess_config - the config new sessions get (control.c edits its lists). */
struct config *sess_config(void);

/* ---------------------------------------------------------------- stage.c */

/* sess_check_done - a check finished: result already in s->results[id].
 * Safe to call for a session that has gone (ignored). */
void sess_check_done(struct session *s, enum chk_id id);

/* -------------------------------------------------------------- bodytap.c */

/*
 * The body path: client -> tap (every active STAGE_DATA check's body(),
 * unstuffed) and -> header filter -> relay, or -> the hold spool when a
 * DATA check asked for it (check.h: hold), sent at the end of data with
 * s->eod_headers in front once every DATA check passed.
 */
/* bodytap_unstuff - canonical dot-stuffed CRLF text -> the message
 * (leading dots removed), fed in pieces of any size: *mid_line carries
 * the state (false at the start).  out gets spans of the input. */
void bodytap_unstuff(bool *mid_line, const char *p, size_t n,
                     void (*out)(void *arg, const char *p, size_t n),
                     void *arg);

/* ---------------------------------------------------------------- spool.c */

/* A message held back: ram_max bytes in memory, the rest in an unlinked
 * temp file ($TMPDIR or /tmp) written and read in the thread pool. */
struct spool;
struct spool *spool_new(uv_loop_t *loop, size_t ram_max);
void spool_free(struct spool *sp); /* safe with a request in flight */
int spool_write(struct spool *sp, const char *p, size_t n); /* 0/-errno */
size_t spool_pending(const struct spool *sp); /* not yet on the file */
uint64_t spool_size(const struct spool *sp);
/* spool_next - read back from the start: > 0 bytes at *p (valid until the
 * next call), 0 at the end, -EAGAIN (fn of spool_on_ready follows), or an
 * error.  spool_on_ready's fn runs after each finished file request,
 * never inside a spool_* call. */
ssize_t spool_next(struct spool *sp, const char **p);
void spool_on_ready(struct spool *sp, void (*fn)(struct spool *, void *),
                    void *arg);

/* --------------------------------------------------------------- relay.c */

/*
 * The client side toward the internal mail server.  Each call sends one
 * command; its reply comes back through relay_reply_cb.  Body bytes are
 * queued; relay_dot() sends the held-back final dot.  relay_abort() drops
 * the connection without the dot (nothing is delivered).
 */
typedef void (*relay_reply_cb)(
        struct relay *, void *arg, int code,
        const char *reply /* full text, CRLF-free lines joined by \r\n */);
struct relay *relay_open(uv_loop_t *loop, const struct config *cfg,
                         const struct sockaddr *backend, const char *helo,
                         relay_reply_cb cb, void *arg);
/* relay_mail - queued; sent with the relay_rcpt() that must follow. */
void relay_mail(struct relay *r, const char *path_with_params);
void relay_rcpt(struct relay *r, const char *path);
void relay_data(struct relay *r);
void relay_body(struct relay *r, const char *buf, size_t len);
size_t relay_queued(const struct relay *r); /* bytes not yet written */
void relay_dot(struct relay *r);
void relay_rset(struct relay *r);
void relay_abort(struct relay *r); /* frees r after its handles close */
void relay_quit(struct relay *r);  /* polite close, frees r */
/* relay_on_drain - cb runs when relay_queued() falls below 64 KiB. */
void relay_on_drain(struct relay *r, void (*cb)(struct relay *, void *arg));
/* A failure (backend down, timeout, gone, bad reply) is reported once to
 * relay_reply_cb as code -1 with the reason as reply; then relay_abort(). */
extern unsigned relay_open_count;    /* connections, parked ones too */
extern unsigned relay_idle_count;    /* parked for reuse (backend_reuse) */
extern unsigned relay_leaving_count; /* quit, RSET/QUIT on the way */
bool relay_can_open(const struct config *cfg);
void relay_shutdown(void); /* QUIT the parked connections */
/* relay_on_slot - fn() when a connection closes or is parked (a slot
 * under max_backend_connections frees up); may run inside any relay_*
 * call: fn only schedules. */
void relay_on_slot(void (*fn)(void));
bool relay_idle_now(const struct relay *r); /* nothing outstanding */
struct relay_client;                        /* clientinfo block */
/* relay_open_for - relay_open for one client (ci copied; NULL: as
 * relay_open): spoofed source (tproxy), PROXY v2 header first, or XCLIENT
 * after the EHLO when offered.  Such connections are never reused. */
struct relay *relay_open_for(uv_loop_t *loop, const struct config *cfg,
                             const struct sockaddr *backend, const char *helo,
                             const struct relay_client *ci, relay_reply_cb cb,
                             void *arg);
extern unsigned relay_spoof_failed; /* tproxy source binds that failed */

/* ------------------------------------------------------------- backend.c */

/*
 * Is the internal mail server reachable: what the relay last saw of it,
 * and a probe (connect, banner, QUIT) when that is older than 5 minutes.
 * `mailmoatctl stats` section "backend".
 */
void backend_ok(void);                /* it answered */
void backend_failed(const char *why); /* a session's connection failed */
void backend_start(uv_loop_t *loop);  /* stats section, probe timer */
void backend_stop(void);              /* at drain */
/* backend_probe - probe cfg->backend now: 0, -EBUSY while one runs. */
int backend_probe(uv_loop_t *loop, const struct config *cfg);
void backend_json(struct buf *b);

/* --------------------------------------------------------- transparent.c */

/*
 * The socket-level parts of in-line interception: transparent listeners,
 * the original destination, the open-path guard, the spoofing socket.
 */
int transparent_listener_init(uv_loop_t *loop, uv_tcp_t *h,
                              const struct config *cfg,
                              const struct sockaddr *sa);
int transparent_original_dst(const uv_tcp_t *h, enum transparent_mode mode,
                             struct sockaddr_storage *out);
bool transparent_dst_ours(const struct config *cfg, const struct sockaddr *dst);
void transparent_backend(const struct config *cfg, const struct sockaddr *dst,
                         struct sockaddr_storage *out);
int transparent_outgoing_init(uv_loop_t *loop, uv_tcp_t *h,
                              const struct sockaddr *backend,
                              const struct ipaddr *client);
struct session;
struct relay_client;
/* transparent_session_dst - at accept: s->dst and s->dst_str from s->tcp
 * (counted per destination for `mailmoatctl stats`, "transparent"). */
void transparent_session_dst(struct session *s);
/* transparent_relay_client - the backend of s and who its client is. */
void transparent_relay_client(const struct session *s,
                              struct sockaddr_storage *backend,
                              struct relay_client *ci);
extern unsigned long transparent_refused; /* reason=transparent */
/* transparent_keep_caps - before/after main's setuid(): tproxy keeps
 * CAP_NET_ADMIN (IP_TRANSPARENT per connection); 0 or -errno. */
int transparent_keep_caps(const struct config *cfg, bool before);
/* transparent_stats_json - the "transparent" stats object. */
void transparent_stats_json(struct buf *b);

/* ---------------------------------------------------------- clientinfo.c */

/*
 * Telling the backend who the real client is: the PROXY protocol v2
 * header and Postfix's XCLIENT command (pure encoders).
 */
#define CLIENTINFO_PROXY_MAX 52 /* a TCP6 header */
/* clientinfo_proxy_v2 - PROXY v2 (PROXY, TCP4 or TCP6: v4 with a v6 peer
 * is sent v4-mapped) for src -> dst into out; its length, or 0 if out is
 * too small or an address is neither v4 nor v6. */
size_t clientinfo_proxy_v2(unsigned char *out, size_t outlen,
                           const struct sockaddr *src,
                           const struct sockaddr *dst);
/* clientinfo_xtext - RFC 3461 xtext of s into out (truncated whole). */
void clientinfo_xtext(char *out, size_t outlen, const char *s);
/* clientinfo_xclient - "XCLIENT ADDR=.. NAME=.. HELO=.. PROTO=.." (no
 * CRLF); name NULL/"": [UNAVAILABLE]; helo NULL/"": [UNAVAILABLE].
 * false if it does not fit. */
bool clientinfo_xclient(char *out, size_t outlen, const struct ipaddr *addr,
                        const char *name, const char *helo, bool esmtp);

/* The client a relay connection speaks for (relay_open_for). */
struct relay_client {
	enum client_info info;       /* none | xclient | proxy */
	bool spoof;                  /* tproxy: connect from client's address */
	struct ipaddr client;        /* the client */
	struct sockaddr_storage src; /* client address and port */
	struct sockaddr_storage dst; /* its original destination */
	char name[256];              /* confirmed PTR name, "" if none */
	char helo[256];              /* its HELO/EHLO name */
	bool esmtp;                  /* it said EHLO */
};

/* ----------------------------------------------------------------- tls.c */

/*
 * STARTTLS server side over memory buffers: the session feeds ciphertext
 * in and gets plaintext out; ciphertext to send comes through a hook.
 */
struct tls_hooks {
	void (*send)(struct tls *, void *arg, const char *buf, size_t len);
	void (*plain)(struct tls *, void *arg, const char *buf, size_t len);
	void (*ready)(struct tls *, void *arg); /* handshake done */
	void (*error)(struct tls *, void *arg, const char *why);
};
/* tls_global_init - load or create key + self-signed cert; 0 or -errno */
int tls_global_init(const struct config *cfg);
void tls_global_free(void); /* shutdown; live sessions keep theirs */
bool tls_available(void);
/* tls_new - NULL if !tls_available() or mbedTLS failed.  Hook buffers are
 * valid only during the call (send: copy it).  Never tls_free() from
 * inside a hook; tls_write() from plain/ready is fine. */
struct tls *tls_new(const struct tls_hooks *h, void *arg);
void tls_input(struct tls *t, const char *buf, size_t len);
void tls_write(struct tls *t, const char *buf, size_t len);
const char *tls_version(const struct tls *t); /* "TLSv1.2"; "-" before */
const char *tls_cipher(const struct tls *t);
/* tls_close_notify - a close_notify alert via send, before the close. */
void tls_close_notify(struct tls *t);
void tls_free(struct tls *t);

/* -------------------------------------------------------------- history.c */

/* The recent decisions (a ring) and the chart series, for `mailmoatctl
 * decisions` and the web UI.  Values are the raw ones (not log-escaped);
 * longer ones are cut. */
#define HIST_MAX 2048
#define HIST_ACTIONS 4 /* accept tempfail reject log */
struct hist_rec {
	uint64_t t; /* wall seconds */
	char id[16];
	char client[48];
	char ptr[64];
	char helo[64];
	char from[128];
	char to[160];
	char action[12];
	char reason[16];
	char detail[96];
};
void history_add(const struct hist_rec *r);
void history_add_fields(uint64_t t, const char *id, const char *client,
                        const char *ptr, const char *helo, const char *from,
                        const char *to, const char *action, const char *reason,
                        const char *detail);
/* history_decisions - the matching ones as log lines ("time=T id=..."),
 * oldest first.  Filter: terms "key=value" (client sender|from
 * recipient|to action reason id helo ptr detail; case-insensitive
 * substring) or bare words; 0, or -EINVAL for an unknown key. */
int history_decisions(struct buf *b, const char *filter);
/* history_series - which "day" (288 x 5 min) or "month" (30 x 1 day): a
 * header line "span=S buckets=N actions=accept,tempfail,reject,log", then
 * "START A T R L" per bucket, oldest first, the last one holding now. */
int history_series(struct buf *b, const char *which, uint64_t now);
void history_reset(void);
/* history_open - subscribe to sess_on_decision and load the store's blob
 * "history" (after store_open); the blob is set before each flush. */
void history_open(void);
/* history_blob / history_load_blob - the persisted form (tests); load:
 * 0, or -EINVAL for a blob that does not parse (nothing changed). */
void history_blob(struct buf *b);
int history_load_blob(const void *p, size_t n);

/* -------------------------------------------------------------- control.c */

/* control_start - the unix socket mailmoatctl talks to. */
int control_start(uv_loop_t *loop, const struct config *cfg);
void control_stop(void);
/* control_reload_hook - what `mailmoatctl reload` runs (main sets it):
 * 0, or -1 with the reason in err. */
extern int (*control_reload_hook)(char *err, size_t errlen);

#endif
