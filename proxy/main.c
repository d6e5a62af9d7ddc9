/*
 * main.c - startup, the loop, signals, privilege drop.
 *
 *   mailmoat -c FILE [-s] [-v]       run in the foreground (stderr log;
 *                                    -s: syslog, -v: verbose)
 *   mailmoat -c FILE --check-config  validate: exit 0, or print
 *                                    "FILE:LINE: what is wrong", exit 1
 *
 * SIGHUP reloads the config (lists too): new sessions get it, live ones
 * keep theirs; a bad new config is logged and the old one kept.
 * SIGTERM/SIGINT drain: stop accepting, let transactions finish (bounded
 * by session.c), then exit 0 with every handle closed.  SIGPIPE ignored.
 * RLIMIT_NOFILE is raised to its hard limit.  With MAILMOAT_USER set and
 * started as root, the daemon switches to that user after binding.
 *
 * State (counters, greylist, ...) lives in the store (store.c, the only
 * code touching state_dir): loaded at start, one write burst from the
 * thread pool every state_flush, a final blocking one at exit.
 *
 * Owns the current config reference, the signal handles, the flush timer. Reads
 * every key through the modules it starts (tls_cert/tls_key decide whether TLS
 * is set up here).
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy.h"
#include "checks/check.h"

static uv_loop_t *loop;
static struct config *cfg;
static uv_signal_t sig_hup, sig_term, sig_int;
static uv_timer_t flush_timer;
static bool draining;

/* usage - how to call us, on stderr; exits 2. */
static void
usage(void)
{
	fprintf(stderr,
	        "usage: mailmoat -c FILE [-s] [-v] [--check-config]\n"
	        "  -c FILE          the configuration (/etc/mailmoat.conf)\n"
	        "  -s               log to syslog instead of stderr\n"
	        "  -v               verbose (debug) logging\n"
	        "  --check-config   validate FILE and exit (0: good, 1: "
	        "bad)\n");
	exit(2);
}

/* main_reload - load the config again; 0, or -1 with the reason in err. */
static int
main_reload(char *err, size_t errlen)
{
	struct config *n;

	n = config_load(cfg->path, err, errlen);
	if (n == NULL)
		return -1;
	if (chk_init_all(n, err, errlen) < 0) {
		config_unref(n);
		return -1;
	}
	if (dns_reconfigure(n) < 0)
		log_warn("reload: DNS settings not applied");
	if (n->n_listen != cfg->n_listen ||
	    memcmp(n->listen, cfg->listen,
	           sizeof(n->listen[0]) * (size_t)n->n_listen) != 0)
		log_warn("reload: a new listen address needs a restart");
	if ((n->tls_cert == NULL) != (cfg->tls_cert == NULL))
		log_warn("reload: TLS settings need a restart");
	sess_reload(n);
	config_unref(cfg);
	cfg = n;
	log_info("reload: %s loaded", cfg->path);
	return 0;
}

/* main_drained - the last session is gone: close what keeps the loop. */
static void
main_drained(void)
{
	log_info("drained: exiting");
	uv_close((uv_handle_t *)&sig_hup, NULL);
	uv_close((uv_handle_t *)&sig_term, NULL);
	uv_close((uv_handle_t *)&sig_int, NULL);
	uv_close((uv_handle_t *)&flush_timer, NULL);
	chk_shutdown();
	dns_shutdown();
	relay_shutdown();
	backend_stop();
}

/* main_signal_cb - SIGHUP reloads, SIGTERM/SIGINT drain. */
static void
main_signal_cb(uv_signal_t *h, int signum)
{
	char err[512];

	if (signum == SIGHUP) {
		if (draining)
			return;
		if (main_reload(err, sizeof(err)) < 0)
			log_warn("reload: %s; keeping the old configuration",
			         err);
		return;
	}
	if (draining) {
		log_info("second signal %d: draining already", signum);
		return;
	}
	draining = true;
	log_info("signal %d: draining (no new connections)", signum);
	control_stop();
	sess_drain(main_drained);
}

/* main_flush_cb - what changed to flash, at most once per state_flush. */
static void
main_flush_cb(uv_timer_t *t)
{
	int rc = store_flush(NULL, NULL);

	if (rc == -EBUSY)
		log_info("store: the previous flush is still running");
}

/* main_state_open - the state of the previous run, from state_dir. */
static void
main_state_open(void)
{
	char err[256];

	if (store_open(loop, cfg, err, sizeof(err)) < 0)
		log_warn("store: %s: state is not kept", err);
	stats_store_open();
	history_open();
}

/* main_rlimit - as many descriptors as we may have. */
static void
main_rlimit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn("setrlimit NOFILE: %s", strerror(errno));
	}
}

/* main_drop_privileges - MAILMOAT_USER, when started as root. */
static void
main_drop_privileges(const struct config *cfg)
{
	const char *user = getenv("MAILMOAT_USER");
	struct passwd *pw;

	if (user == NULL || user[0] == '\0' || geteuid() != 0)
		return;
	pw = getpwnam(user);
	if (pw == NULL)
		log_fatal("MAILMOAT_USER=%s: no such user", user);
	if (transparent_keep_caps(cfg, true) < 0 || setgroups(0, NULL) < 0 ||
	    setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
		log_fatal("cannot switch to user %s: %s", user,
		          strerror(errno));
	/* tproxy: connections from the client's address need CAP_NET_ADMIN */
	if (transparent_keep_caps(cfg, false) < 0)
		log_fatal("cannot keep CAP_NET_ADMIN for tproxy as %s: %s",
		          user, strerror(errno));
	log_info("running as user %s", user);
}

/* main_walk_cb - name a handle still open at exit (a leak). */
static void
main_walk_cb(uv_handle_t *h, void *arg)
{
	log_warn("handle still open at exit: %s", uv_handle_type_name(h->type));
}

/* main - parse the command line, start everything, run the loop. */
int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
	        {"check-config", no_argument, NULL, 'C'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *path = NULL;
	bool use_syslog = false, verbose = false, check_only = false;
	char err[512];
	int c, rc;

	while ((c = getopt_long(argc, argv, "c:svh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 's':
			use_syslog = true;
			break;
		case 'v':
			verbose = true;
			break;
		case 'C':
			check_only = true;
			break;
		default:
			usage();
		}
	}
	if (path == NULL || optind != argc)
		usage();

	if (check_only) {
		cfg = config_load(path, err, sizeof(err));
		if (cfg == NULL || chk_init_all(cfg, err, sizeof(err)) < 0) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		config_unref(cfg);
		return 0;
	}

	log_open(use_syslog, verbose);
	signal(SIGPIPE, SIG_IGN);
	main_rlimit();
	cfg = config_load(path, err, sizeof(err));
	if (cfg == NULL)
		log_fatal("%s", err);

	/* Flash writes and list saves run in the uv thread pool (SPF runs
	 * on the loop since it reads dns.c's cache); a slow SD card can
	 * hold a worker, so give the pool more than libuv's 4.  libuv
	 * reads this at its first uv_queue_work(); an operator's value
	 * in the environment wins. */
	setenv("UV_THREADPOOL_SIZE", "16", 0);
	loop = uv_default_loop();
	chk_set_loop(loop);
	main_state_open(); /* before the checks: they open store tables */
	if (chk_init_all(cfg, err, sizeof(err)) < 0)
		log_fatal("%s", err);
	if (cfg->tls_cert != NULL && cfg->tls_key != NULL) {
		rc = tls_global_init(cfg);
		if (rc < 0)
			log_warn("TLS not available (%s): STARTTLS not offered",
			         strerror(-rc));
	}
	rc = dns_init(loop, cfg);
	if (rc < 0)
		log_fatal("DNS resolver: %s", strerror(-rc));
	rc = sess_listen(loop, cfg);
	if (rc < 0)
		log_fatal("cannot listen on every configured address");
	backend_start(loop);
	rc = control_start(loop, cfg);
	if (rc < 0)
		log_warn("control socket %s: %s", cfg->control_socket,
		         strerror(-rc));
	control_reload_hook = main_reload;
	main_drop_privileges(cfg);

	uv_signal_init(loop, &sig_hup);
	uv_signal_init(loop, &sig_term);
	uv_signal_init(loop, &sig_int);
	uv_signal_start(&sig_hup, main_signal_cb, SIGHUP);
	uv_signal_start(&sig_term, main_signal_cb, SIGTERM);
	uv_signal_start(&sig_int, main_signal_cb, SIGINT);
	uv_timer_init(loop, &flush_timer);
	if (cfg->state_flush_s > 0)
		uv_timer_start(&flush_timer, main_flush_cb,
		               cfg->state_flush_s * 1000ull,
		               cfg->state_flush_s * 1000ull);
	log_info("mailmoat %s started: backend and %d listener(s) from %s",
	         MAILMOAT_VERSION, cfg->n_listen, cfg->path);

	log_batch(loop);
	uv_run(loop, UV_RUN_DEFAULT);
	log_batch(NULL);
	uv_run(loop, UV_RUN_NOWAIT); /* the batch handle's close */

	store_close();
	stats_free();
	tls_global_free();
	config_unref(cfg);
	cfg = NULL;
	rc = uv_loop_close(loop);
	if (rc != 0) {
		uv_walk(loop, main_walk_cb, NULL);
		log_warn("uv_loop_close: %s", uv_strerror(rc));
		return 1;
	}
	log_info("stopped");
	return 0;
}
