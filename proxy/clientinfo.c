/*
 * clientinfo.c - telling the internal server who the real client is,
 * when the box cannot connect from the client's own address
 * (`backend_client_info = proxy | xclient`).
 *
 * Public (proxy.h, clientinfo block):
 *   clientinfo_proxy_v2()  the binary PROXY protocol v2 header (HAProxy's
 *                 spec, section 2.2): signature, version 2 + PROXY, TCP
 *                 over IPv4 or IPv6, then source and destination address
 *                 and port; what Postfix's smtpd_upstream_proxy_protocol
 *                 = haproxy, Exim and Haraka accept as the first bytes
 *   clientinfo_xtext()     RFC 3461 xtext ("+XX" for '+', '=', controls,
 *                 space and non-ASCII)
 *   clientinfo_xclient()   Postfix's XCLIENT command line: ADDR (IPV6:
 *                 prefix for v6), NAME ([UNAVAILABLE] without a
 *                 forward-confirmed PTR), HELO, PROTO=ESMTP|SMTP
 *
 * Pure functions: no state, no I/O.  relay.c sends what they build.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "proxy.h"

static const unsigned char proxy_v2_sig[12] = {
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* proxy_addr6 - sa's address as 16 bytes (v4 as v4-mapped) and port. */
static bool
proxy_addr6(const struct sockaddr *sa, unsigned char a[16], uint16_t *port)
{
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		memcpy(a, &s6->sin6_addr, 16);
		*port = s6->sin6_port;
		return true;
	}
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		memset(a, 0, 10);
		a[10] = a[11] = 0xff;
		memcpy(a + 12, &s4->sin_addr, 4);
		*port = s4->sin_port;
		return true;
	}
	return false;
}

/* proxy_is_v4 - a v4 address, or a v4-mapped v6 one (into a4). */
static bool
proxy_is_v4(const unsigned char a[16])
{
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0,    0,
	                                         0, 0, 0, 0, 0xff, 0xff};

	return memcmp(a, mapped, 12) == 0;
}

/* clientinfo_proxy_v2 - the header for src -> dst; its length or 0. */
size_t
clientinfo_proxy_v2(unsigned char *out, size_t outlen,
                    const struct sockaddr *src, const struct sockaddr *dst)
{
	unsigned char sa[16], da[16];
	uint16_t sp, dp; /* network byte order */
	bool v4;
	size_t n, alen;

	if (!proxy_addr6(src, sa, &sp) || !proxy_addr6(dst, da, &dp))
		return 0;
	v4 = proxy_is_v4(sa) && proxy_is_v4(da);
	alen = v4 ? 12 : 36;
	n = 16 + alen;
	if (outlen < n)
		return 0;
	memcpy(out, proxy_v2_sig, 12);
	out[12] = 0x21;             /* version 2, PROXY */
	out[13] = v4 ? 0x11 : 0x21; /* TCP over IPv4 / IPv6 */
	out[14] = (unsigned char)(alen >> 8);
	out[15] = (unsigned char)alen;
	if (v4) {
		memcpy(out + 16, sa + 12, 4);
		memcpy(out + 20, da + 12, 4);
		memcpy(out + 24, &sp, 2);
		memcpy(out + 26, &dp, 2);
	} else {
		memcpy(out + 16, sa, 16);
		memcpy(out + 32, da, 16);
		memcpy(out + 48, &sp, 2);
		memcpy(out + 50, &dp, 2);
	}
	return n;
}

/* clientinfo_xtext - xtext of s; an encoding that does not fit whole is
 * left out (out always NUL-terminated). */
void
clientinfo_xtext(char *out, size_t outlen, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	if (outlen == 0)
		return;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c >= '!' && c <= '~' && c != '+' && c != '=') {
			if (o + 1 >= outlen)
				break;
			out[o++] = (char)c;
		} else {
			if (o + 3 >= outlen)
				break;
			out[o++] = '+';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
}

/* clientinfo_xclient - the XCLIENT line for addr/name/helo. */
bool
clientinfo_xclient(char *out, size_t outlen, const struct ipaddr *addr,
                   const char *name, const char *helo, bool esmtp)
{
	char a[INET6_ADDRSTRLEN + 8], ip[INET6_ADDRSTRLEN];
	char xn[256 * 3 + 1], xh[256 * 3 + 1];
	int n;

	ipaddr_format(addr, ip, sizeof(ip));
	snprintf(a, sizeof(a), "%s%s", addr->family == AF_INET6 ? "IPV6:" : "",
	         ip);
	if (name != NULL && name[0] != '\0')
		clientinfo_xtext(xn, sizeof(xn), name);
	else
		snprintf(xn, sizeof(xn), "[UNAVAILABLE]");
	if (helo != NULL && helo[0] != '\0')
		clientinfo_xtext(xh, sizeof(xh), helo);
	else
		snprintf(xh, sizeof(xh), "[UNAVAILABLE]");
	n = snprintf(out, outlen, "XCLIENT ADDR=%s NAME=%s HELO=%s PROTO=%s", a,
	             xn, xh, esmtp ? "ESMTP" : "SMTP");
	return n > 0 && (size_t)n < outlen;
}
