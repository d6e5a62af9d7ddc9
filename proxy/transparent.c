/*
 * transparent.c - the socket-level parts of in-line interception
 * (`transparent = redirect | tproxy`).
 *
 * Public (proxy.h, transparent block):
 *   transparent_listener_init()  uv_tcp_init for a listener; for tproxy
 *                  the socket is created here and gets IP_TRANSPARENT /
 *                  IPV6_TRANSPARENT before the caller's uv_tcp_bind(), so
 *                  that it takes connections for any routed destination
 *   transparent_original_dst()   where the client meant to connect:
 *                  redirect: SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST (the
 *                  address before the NAT); tproxy and off: the accepted
 *                  socket's own local address (TPROXY keeps it)
 *   transparent_dst_ours()       the open-path guard: the original
 *                  destination must be one of local_addresses, the
 *                  configured backend or a listen address
 *   transparent_backend()        the backend of one connection: the
 *                  configured one, or with `backend = original` the
 *                  original destination itself
 *   transparent_session_dst()    at accept: s->dst, s->dst_str (the
 *                  decision log's dst=), counted per destination
 *   transparent_relay_client()   what relay_open_for() needs for s
 *   transparent_stats_json()     the "transparent" object of stats
 *   transparent_keep_caps()      keeps CAP_NET_ADMIN across the drop to
 *                  MAILMOAT_USER (tproxy only)
 *   transparent_outgoing_init()  for tproxy: the relay's socket toward
 *                  the backend gets IP_TRANSPARENT and is bound to the
 *                  client's address (port 0) before connect, so that the
 *                  internal server sees the real client
 *
 * Owns nothing; every call is a few system calls on a descriptor that
 * the caller owns (no blocking I/O).  Reads transparent, backend,
 * backend = original, local_addresses, listen.
 *
 * The kernel side (iptables TPROXY / REDIRECT, the policy route for
 * marked packets) is installed by rootfs/usr/sbin/mailmoat-intercept.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "proxy.h"

/* From <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h>,
 * which clash with glibc's <netinet/in.h>. */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

#ifndef IP_TRANSPARENT
#define IP_TRANSPARENT 19
#endif
#ifndef IPV6_TRANSPARENT
#define IPV6_TRANSPARENT 75
#endif
#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* transparent_set - IP_TRANSPARENT (v4) or IPV6_TRANSPARENT on fd. */
static int
transparent_set(int fd, int family)
{
	int one = 1;
	int rc;

	if (family == AF_INET6)
		rc = setsockopt(fd, IPPROTO_IPV6, IPV6_TRANSPARENT, &one,
		                sizeof(one));
	else
		rc = setsockopt(fd, IPPROTO_IP, IP_TRANSPARENT, &one,
		                sizeof(one));
	return rc == 0 ? 0 : -errno;
}

/* sa_len_of - the length of a v4 or v6 socket address. */
static socklen_t
sa_len_of(const struct sockaddr *sa)
{
	return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
	                                 : sizeof(struct sockaddr_in);
}

/* transparent_listener_init - uv_tcp_init h for a listener on sa; for
 * tproxy with its socket made now and marked transparent (needs
 * CAP_NET_ADMIN).  0 or a negative errno; h is initialised either way
 * (the caller closes it). */
int
transparent_listener_init(uv_loop_t *loop, uv_tcp_t *h,
                          const struct config *cfg, const struct sockaddr *sa)
{
	static bool stats_added;
	uv_os_fd_t fd;
	int rc;

	if (cfg->transparent != TRANSPARENT_OFF && !stats_added) {
		stats_added = true;
		stats_add_section("transparent", transparent_stats_json);
	}
	if (cfg->transparent != TRANSPARENT_TPROXY)
		return uv_tcp_init(loop, h);
	rc = uv_tcp_init_ex(loop, h, sa->sa_family);
	if (rc < 0) {
		uv_tcp_init(loop, h);
		return rc;
	}
	rc = uv_fileno((uv_handle_t *)h, &fd);
	if (rc < 0)
		return rc;
	return transparent_set(fd, sa->sa_family);
}

/* transparent_original_dst - the original destination of the accepted
 * connection h into out.  redirect: the conntrack entry's original
 * destination (a connection that was not NATed - straight to the box -
 * has its own local address); tproxy and off: the local address.
 * 0 or a negative errno. */
int
transparent_original_dst(const uv_tcp_t *h, enum transparent_mode mode,
                         struct sockaddr_storage *out)
{
	struct sockaddr_storage local;
	int len = sizeof(local);
	uv_os_fd_t fd;
	socklen_t slen;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = uv_tcp_getsockname(h, (struct sockaddr *)&local, &len);
	if (rc < 0)
		return rc;
	if (mode == TRANSPARENT_REDIRECT &&
	    uv_fileno((const uv_handle_t *)h, &fd) == 0) {
		slen = sizeof(*out);
		if (local.ss_family == AF_INET6)
			rc = getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, out,
			                &slen);
		else
			rc = getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, out,
			                &slen);
		if (rc == 0 &&
		    (out->ss_family == AF_INET || out->ss_family == AF_INET6))
			return 0;
		/* ENOENT: no NAT entry (a direct connection) */
	}
	memcpy(out, &local, sizeof(local));
	return 0;
}

/* sa_ip_equal - same IP address (v4-mapped v6 folded), any port. */
static bool
sa_ip_equal(const struct sockaddr *a, const struct ipaddr *ip)
{
	struct ipaddr x;

	return ipaddr_from_sockaddr(&x, a) == 0 && ipaddr_equal(&x, ip);
}

/* transparent_dst_ours - may a connection to dst be served?  Always with
 * transparent = off.  Otherwise dst's address must be one of
 * local_addresses, the configured backend's, or a listen address (a
 * wildcard listen address names no destination).  With backend =
 * original only local_addresses count: the connection goes on to dst
 * itself, and the box's own addresses there would loop. */
bool
transparent_dst_ours(const struct config *cfg, const struct sockaddr *dst)
{
	struct ipaddr ip, any;
	int i;

	if (cfg->transparent == TRANSPARENT_OFF)
		return true;
	if (ipaddr_from_sockaddr(&ip, dst) != 0)
		return false;
	for (i = 0; i < cfg->n_local_addresses; i++)
		if (ipaddr_equal(&ip, &cfg->local_addresses[i]))
			return true;
	if (cfg->backend_original)
		return false;
	if (sa_ip_equal((const struct sockaddr *)&cfg->backend, &ip))
		return true;
	for (i = 0; i < cfg->n_listen; i++) {
		const struct sockaddr *l =
		        (const struct sockaddr *)&cfg->listen[i];

		if (ipaddr_from_sockaddr(&any, l) != 0)
			continue;
		if (sa_ip_equal(l, &ip) &&
		    !(any.family == AF_INET && any.u.v4.s_addr == INADDR_ANY) &&
		    !(any.family == AF_INET6 &&
		      IN6_IS_ADDR_UNSPECIFIED(&any.u.v6)))
			return true;
	}
	return false;
}

/* transparent_backend - the backend for a connection whose original
 * destination is dst: a copy of cfg->backend, or dst itself with
 * backend = original. */
void
transparent_backend(const struct config *cfg, const struct sockaddr *dst,
                    struct sockaddr_storage *out)
{
	memset(out, 0, sizeof(*out));
	if (cfg->backend_original)
		memcpy(out, dst, sa_len_of(dst));
	else
		memcpy(out, &cfg->backend, sizeof(*out));
}

/* transparent_outgoing_init - uv_tcp_init h for a connection to backend;
 * for tproxy (spoof) with a socket that is transparent and bound to
 * client's address, port 0 (chosen at connect).  On any failure h is a
 * plain handle (the connection comes from our own address) and the
 * negative errno says why (-EAFNOSUPPORT: a client of the other family
 * than the backend cannot be spoofed); 0 when h is spoofing. */
int
transparent_outgoing_init(uv_loop_t *loop, uv_tcp_t *h,
                          const struct sockaddr *backend,
                          const struct ipaddr *client)
{
	struct sockaddr_storage src;
	int one = 1;
	int fd, rc;

	uv_tcp_init(loop, h);
	memset(&src, 0, sizeof(src));
	if (client->family == AF_INET && backend->sa_family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&src;

		s4->sin_family = AF_INET;
		s4->sin_addr = client->u.v4;
	} else if (client->family == AF_INET6 &&
	           backend->sa_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&src;

		s6->sin6_family = AF_INET6;
		s6->sin6_addr = client->u.v6;
	} else {
		return -EAFNOSUPPORT;
	}
	fd = socket(backend->sa_family,
	            SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	rc = transparent_set(fd, backend->sa_family);
	/* the port is picked at connect time (4-tuple unique): many
	 * connections from one client address need no port each */
	if (rc == 0)
		(void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		                 sizeof(one));
	if (rc == 0 && bind(fd, (const struct sockaddr *)&src,
	                    sa_len_of((const struct sockaddr *)&src)) != 0)
		rc = -errno;
	if (rc == 0)
		rc = uv_tcp_open(h, fd);
	if (rc < 0)
		close(fd);
	return rc;
}

/* ------------------------------------------------ sessions and stats */

#define TRANSPARENT_DST_SLOTS 16

unsigned long transparent_refused;
static unsigned long transparent_sessions;
static struct {
	char dst[INET6_ADDRSTRLEN + 8];
	unsigned long n;
} dst_count[TRANSPARENT_DST_SLOTS];
static unsigned long dst_other; /* destinations beyond the slots */

/* transparent_format - "192.0.2.25:25" / "[2001:db8::25]:25". */
static void
transparent_format(const struct sockaddr *sa, char *out, size_t outlen)
{
	struct ipaddr ip;
	char a[INET6_ADDRSTRLEN];
	unsigned port;

	if (ipaddr_from_sockaddr(&ip, sa) != 0) {
		snprintf(out, outlen, "-");
		return;
	}
	ipaddr_format(&ip, a, sizeof(a));
	port = ntohs(sa->sa_family == AF_INET6
	                     ? ((const struct sockaddr_in6 *)sa)->sin6_port
	                     : ((const struct sockaddr_in *)sa)->sin_port);
	snprintf(out, outlen, ip.family == AF_INET6 ? "[%s]:%u" : "%s:%u", a,
	         port);
}

/* transparent_count - one more session for destination text d. */
static void
transparent_count(const char *d)
{
	int i;

	transparent_sessions++;
	for (i = 0; i < TRANSPARENT_DST_SLOTS; i++) {
		if (dst_count[i].dst[0] == '\0')
			snprintf(dst_count[i].dst, sizeof(dst_count[i].dst),
			         "%s", d);
		if (strcmp(dst_count[i].dst, d) == 0) {
			dst_count[i].n++;
			return;
		}
	}
	dst_other++;
}

/* transparent_session_dst - where s's client meant to connect (at
 * accept), when something needs it (a transparent mode, backend =
 * original, a PROXY header); counted in transparent modes. */
void
transparent_session_dst(struct session *s)
{
	const struct config *c = s->cfg;

	if (c->transparent == TRANSPARENT_OFF && !c->backend_original &&
	    c->backend_client_info != CLIENT_INFO_PROXY) {
		/* nobody asks for it: no system call per connection */
		memset(&s->dst, 0, sizeof(s->dst));
		snprintf(s->dst_str, sizeof(s->dst_str), "-");
		return;
	}
	if (transparent_original_dst(&s->tcp, s->cfg->transparent, &s->dst) <
	    0) {
		memset(&s->dst, 0, sizeof(s->dst));
		snprintf(s->dst_str, sizeof(s->dst_str), "-");
	} else {
		transparent_format((const struct sockaddr *)&s->dst, s->dst_str,
		                   sizeof(s->dst_str));
	}
	if (s->cfg->transparent != TRANSPARENT_OFF)
		transparent_count(s->dst_str);
}

/* transparent_relay_client - backend (the configured one or s->dst) and
 * ci: spoof with tproxy, backend_client_info, the client's identity. */
void
transparent_relay_client(const struct session *s,
                         struct sockaddr_storage *backend,
                         struct relay_client *ci)
{
	transparent_backend(s->cfg, (const struct sockaddr *)&s->dst, backend);
	memset(ci, 0, sizeof(*ci));
	ci->info = s->cfg->backend_client_info;
	ci->spoof = s->cfg->transparent == TRANSPARENT_TPROXY;
	ci->client = s->client;
	memcpy(&ci->src, &s->peer, sizeof(ci->src));
	memcpy(&ci->dst, &s->dst, sizeof(ci->dst));
	snprintf(ci->name, sizeof(ci->name), "%s", s->ptr);
	snprintf(ci->helo, sizeof(ci->helo), "%s", s->helo);
	ci->esmtp = s->smtp.esmtp;
}

/* transparent_stats_json - {"sessions":N,"refused":N,"spoof_failed":N,
 * "dst":{"192.0.2.25:25":N,...},"dst_other":N} */
void
transparent_stats_json(struct buf *b)
{
	char num[64];
	int i, n;

	n = snprintf(num, sizeof(num), "{\"sessions\":%lu,\"refused\":%lu,",
	             transparent_sessions, transparent_refused);
	buf_append(b, num, (size_t)n);
	n = snprintf(num, sizeof(num), "\"spoof_failed\":%u,\"dst\":{",
	             relay_spoof_failed);
	buf_append(b, num, (size_t)n);
	for (i = 0; i < TRANSPARENT_DST_SLOTS && dst_count[i].dst[0]; i++) {
		if (i > 0)
			buf_append(b, ",", 1);
		stats_json_string(b, dst_count[i].dst);
		n = snprintf(num, sizeof(num), ":%lu", dst_count[i].n);
		buf_append(b, num, (size_t)n);
	}
	n = snprintf(num, sizeof(num), "},\"dst_other\":%lu}", dst_other);
	buf_append(b, num, (size_t)n);
}

/* ------------------------------------------------ privilege drop */

/* transparent_keep_caps - around main's setuid() to MAILMOAT_USER: with
 * tproxy every backend connection needs IP_TRANSPARENT, i.e.
 * CAP_NET_ADMIN.  before: PR_SET_KEEPCAPS (the permitted set survives the
 * setuid); after: CAP_NET_ADMIN alone, effective and permitted.  Nothing
 * for other modes.  0 or a negative errno. */
int
transparent_keep_caps(const struct config *cfg, bool before)
{
	struct __user_cap_header_struct hdr = {
	        .version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct data[2];

	if (cfg->transparent != TRANSPARENT_TPROXY)
		return 0;
	if (before)
		return prctl(PR_SET_KEEPCAPS, 1L, 0L, 0L, 0L) == 0 ? 0 : -errno;
	memset(data, 0, sizeof(data));
	data[0].effective = data[0].permitted = 1u << CAP_NET_ADMIN;
	if (syscall(SYS_capset, &hdr, data) != 0)
		return -errno;
	return 0;
}
