/*
 * passcache.c - the pass cache for the connection tests (as postscreen's
 * cache): a client IP that waited out the greet pause and passed the
 * connect checks is remembered for pass_cache_ttl, and then gets its
 * banner at once instead of waiting greet_pause again.
 *
 * Public: passcache_hit(), passcache_add() (proxy.h).
 *
 * State: store table "pass_cache" (key: the 4 or 16 address bytes, no
 * value; the store's expiry is the end of the TTL).  The DNS-based
 * connect checks still run on every connection, answered from dns.c's
 * cache within their TTLs.  Reads config key pass_cache_ttl.
 */
#include <string.h>

#include "proxy.h"

/* passcache_table - the table, opened at first use. */
static struct store_table *
passcache_table(void)
{
	static struct store_table *t;

	if (t == NULL)
		t = store_table("pass_cache", 1);
	return t;
}

/* passcache_key - the address bytes of ip; their length. */
static size_t
passcache_key(const struct ipaddr *ip, const void **key)
{
	if (ip->family == AF_INET) {
		*key = &ip->u.v4;
		return 4;
	}
	*key = &ip->u.v6;
	return 16;
}

/* passcache_hit - did ip pass within pass_cache_ttl? */
bool
passcache_hit(const struct config *cfg, const struct ipaddr *ip)
{
	const void *k;
	size_t n = passcache_key(ip, &k);

	if (cfg->pass_cache_ttl_s == 0)
		return false;
	return store_get(passcache_table(), k, n) != NULL;
}

/* passcache_add - ip passed the greet pause and the connect checks. */
void
passcache_add(const struct config *cfg, const struct ipaddr *ip)
{
	const void *k;
	size_t n = passcache_key(ip, &k);
	unsigned char one = 1;

	if (cfg->pass_cache_ttl_s == 0)
		return;
	store_put(passcache_table(), k, n, &one,
	          store_now() + cfg->pass_cache_ttl_s);
}
