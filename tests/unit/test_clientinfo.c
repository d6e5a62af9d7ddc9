/*
 * test_clientinfo.c - the PROXY protocol v2 encoder (byte for byte
 * against the HAProxy spec's layout: TCP4, TCP6, a v4 client with a v6
 * destination sent v4-mapped, a buffer too small) and the XCLIENT line
 * builder (xtext, [UNAVAILABLE], IPV6: prefix, PROTO).
 */
#include <arpa/inet.h>

#include "proxy.h"
#include "t.h"

/* sa4 - "ip", port into a sockaddr_storage. */
static struct sockaddr_storage
sa_of(const char *text)
{
	struct sockaddr_storage ss;

	if (sockaddr_parse(&ss, text, 25) != 0)
		printf("# bad test address %s\n", text);
	return ss;
}

static const unsigned char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static void
test_proxy_v2(void)
{
	unsigned char out[64];
	struct sockaddr_storage src, dst;
	size_t n;

	t_begin("proxy v2: TCP4 203.0.113.10:40000 -> 192.0.2.25:25");
	src = sa_of("203.0.113.10:40000");
	dst = sa_of("192.0.2.25:25");
	n = clientinfo_proxy_v2(out, sizeof(out), (struct sockaddr *)&src,
	                        (struct sockaddr *)&dst);
	T_INTEQ(n, 28);
	T_CHECK(memcmp(out, sig, 12) == 0, "signature");
	T_INTEQ(out[12], 0x21);
	T_INTEQ(out[13], 0x11);
	T_INTEQ(out[14] * 256 + out[15], 12);
	{
		const unsigned char want[12] = {203, 0,  113,  10,   192, 0,
		                                2,   25, 0x9c, 0x40, 0,   25};

		T_CHECK(memcmp(out + 16, want, 12) == 0, "addresses/ports");
	}
	t_end();

	t_begin("proxy v2: TCP6 [2001:db8:1::10]:1025 -> [2001:db8:2::25]:25");
	src = sa_of("[2001:db8:1::10]:1025");
	dst = sa_of("[2001:db8:2::25]:25");
	n = clientinfo_proxy_v2(out, sizeof(out), (struct sockaddr *)&src,
	                        (struct sockaddr *)&dst);
	T_INTEQ(n, 52);
	T_INTEQ(out[13], 0x21);
	T_INTEQ(out[14] * 256 + out[15], 36);
	{
		struct in6_addr a;

		inet_pton(AF_INET6, "2001:db8:1::10", &a);
		T_CHECK(memcmp(out + 16, &a, 16) == 0, "src address");
		inet_pton(AF_INET6, "2001:db8:2::25", &a);
		T_CHECK(memcmp(out + 32, &a, 16) == 0, "dst address");
	}
	T_INTEQ(out[48] * 256 + out[49], 1025);
	T_INTEQ(out[50] * 256 + out[51], 25);
	t_end();

	t_begin("proxy v2: v4 client, v6 destination: TCP6 v4-mapped");
	src = sa_of("203.0.113.10:5000");
	dst = sa_of("[2001:db8:2::25]:25");
	n = clientinfo_proxy_v2(out, sizeof(out), (struct sockaddr *)&src,
	                        (struct sockaddr *)&dst);
	T_INTEQ(n, 52);
	T_INTEQ(out[13], 0x21);
	{
		const unsigned char want[16] = {0,   0, 0,   0, 0,    0,
		                                0,   0, 0,   0, 0xff, 0xff,
		                                203, 0, 113, 10};

		T_CHECK(memcmp(out + 16, want, 16) == 0, "mapped src");
	}
	t_end();

	t_begin("proxy v2: v4-mapped v6 on both sides is TCP4");
	src = sa_of("[::ffff:203.0.113.10]:5000");
	dst = sa_of("[::ffff:192.0.2.25]:25");
	n = clientinfo_proxy_v2(out, sizeof(out), (struct sockaddr *)&src,
	                        (struct sockaddr *)&dst);
	T_INTEQ(n, 28);
	T_INTEQ(out[13], 0x11);
	T_INTEQ(out[16], 203);
	T_INTEQ(out[20], 192);
	t_end();

	t_begin("proxy v2: buffer too small, unknown family: 0");
	src = sa_of("203.0.113.10:5000");
	dst = sa_of("192.0.2.25:25");
	T_INTEQ(clientinfo_proxy_v2(out, 27, (struct sockaddr *)&src,
	                            (struct sockaddr *)&dst),
	        0);
	src.ss_family = AF_UNIX;
	T_INTEQ(clientinfo_proxy_v2(out, sizeof(out), (struct sockaddr *)&src,
	                            (struct sockaddr *)&dst),
	        0);
	t_end();
}

static void
test_xclient(void)
{
	char line[1100], x[64];
	struct ipaddr ip;

	t_begin("xtext: plain, '+', '=', space, control, non-ASCII");
	clientinfo_xtext(x, sizeof(x), "mx.example.com");
	T_STREQ(x, "mx.example.com");
	clientinfo_xtext(x, sizeof(x), "a+b=c d\x01\xc3");
	T_STREQ(x, "a+2Bb+3Dc+20d+01+C3");
	clientinfo_xtext(x, 5, "ab+cd");
	T_STREQ(x, "ab"); /* "+2B" does not fit whole */
	t_end();

	t_begin("xclient: v4, confirmed name, EHLO");
	ipaddr_parse(&ip, "203.0.113.10");
	T_CHECK(clientinfo_xclient(line, sizeof(line), &ip, "mx.example.net",
	                           "mx.example.net", true),
	        "fits");
	T_STREQ(line, "XCLIENT ADDR=203.0.113.10 NAME=mx.example.net "
	              "HELO=mx.example.net PROTO=ESMTP");
	t_end();

	t_begin("xclient: no PTR, HELO with odd bytes, v6, SMTP");
	ipaddr_parse(&ip, "2001:db8:1::10");
	T_CHECK(clientinfo_xclient(line, sizeof(line), &ip, "", "we ird=+",
	                           false),
	        "fits");
	T_STREQ(line, "XCLIENT ADDR=IPV6:2001:db8:1::10 NAME=[UNAVAILABLE] "
	              "HELO=we+20ird+3D+2B PROTO=SMTP");
	T_CHECK(clientinfo_xclient(line, sizeof(line), &ip, NULL, NULL, true),
	        "fits");
	T_STREQ(line, "XCLIENT ADDR=IPV6:2001:db8:1::10 NAME=[UNAVAILABLE] "
	              "HELO=[UNAVAILABLE] PROTO=ESMTP");
	t_end();

	t_begin("xclient: too small a buffer says so");
	T_CHECK(!clientinfo_xclient(line, 20, &ip, "a", "b", true), "false");
	t_end();
}

int
main(void)
{
	test_proxy_v2();
	test_xclient();
	return t_exit();
}
