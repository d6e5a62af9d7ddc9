/*
 * test_stats.c - the counters' JSON: keys, reasons, escaping, sections.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "proxy.h"
#include "t.h"

/* json - stats_json() as a C string (caller frees). */
static char *
json(void)
{
	struct buf b = {0};

	stats_json(&b);
	buf_append(&b, "", 1);
	return b.data;
}

/* section_dns - a section as dns.c would add it. */
static void
section_dns(struct buf *b)
{
	buf_append(b, "{\"zones\":1}", 11);
}

/* section_empty - a section that appends nothing: becomes null. */
static void
section_empty(struct buf *b)
{
}

/* main - the cases. */
int
main(void)
{
	static const char *const keys[] = {
	        "\"connections_total\":",
	        "\"connections_active\":",
	        "\"accepted\":",
	        "\"tempfailed\":",
	        "\"rejected\":",
	        "\"logged\":",
	        "\"reasons\":{",
	        "\"greylist_entries\":",
	        "\"backend_connections\":",
	        "\"uptime\":",
	        "\"version\":\"" MAILMOAT_VERSION "\"",
	};
	char *j;
	unsigned i;
	int k;

	t_begin("fresh counters: every key, zero, empty reasons");
	j = json();
	for (i = 0; i < ARRAY_LEN(keys); i++)
		T_CHECK(strstr(j, keys[i]) != NULL, "no %s in %s", keys[i], j);
	T_CHECK(strstr(j, "\"accepted\":0,") != NULL, "got %s", j);
	T_CHECK(strstr(j, "\"reasons\":{}") != NULL, "got %s", j);
	T_CHECK(j[0] == '{' && j[strlen(j) - 1] == '}', "got %s", j);
	free(j);
	t_end();

	t_begin("counters and reasons move");
	stats.connections_total = 7;
	stats.rejected = 3;
	stats.tempfailed = 1;
	stats_count_reason("dnsbl");
	stats_count_reason("dnsbl");
	stats_count_reason("relay");
	j = json();
	T_CHECK(strstr(j, "\"connections_total\":7,") != NULL, "got %s", j);
	T_CHECK(strstr(j, "\"rejected\":3,") != NULL, "got %s", j);
	T_CHECK(strstr(j, "\"reasons\":{\"dnsbl\":2,\"relay\":1}") != NULL,
	        "got %s", j);
	free(j);
	t_end();

	t_begin("reason names become one safe word, NULL counts as -");
	stats_count_reason("we\"ird\\\n");
	stats_count_reason(NULL);
	j = json();
	T_CHECK(strstr(j, "\"we_ird__\":1") != NULL, "got %s", j);
	T_CHECK(strstr(j, "\"-\":1") != NULL, "got %s", j);
	free(j);
	t_end();

	t_begin("too many reasons fold into other");
	for (k = 0; k < 100; k++) {
		char r[16];

		snprintf(r, sizeof(r), "r%d", k);
		stats_count_reason(r);
	}
	j = json();
	T_CHECK(strstr(j, "\"other\":") != NULL, "got %s", j);
	T_CHECK(strstr(j, "\"r99\"") == NULL, "got %s", j);
	free(j);
	t_end();

	t_begin("sections: added after the counters; empty is null");
	stats_add_section("dns", section_dns);
	stats_add_section("empty", section_empty);
	j = json();
	T_CHECK(strstr(j, ",\"dns\":{\"zones\":1}") != NULL, "got %s", j);
	T_CHECK(strstr(j, ",\"empty\":null}") != NULL, "got %s", j);
	free(j);
	t_end();

	t_begin("sections: as many as the modules add (9 used to panic)");
	{
		static char names[40][8];

		for (k = 0; k < 40; k++) {
			snprintf(names[k], sizeof(names[k]), "s%d", k);
			stats_add_section(names[k], section_empty);
		}
		j = json();
		T_CHECK(strstr(j, "\"s0\":null") != NULL, "got %s", j);
		T_CHECK(strstr(j, "\"s39\":null}") != NULL, "got %s", j);
		T_CHECK(strstr(j, ",\"dns\":{\"zones\":1}") != NULL, "got %s",
		        j);
		free(j);
	}
	t_end();

	t_begin("json string escaping");
	{
		struct buf b = {0};

		stats_json_string(&b, "a\"b\\c\td\x7f");
		buf_append(&b, "", 1);
		T_STREQ(b.data, "\"a\\\"b\\\\c\\u0009d\\u007f\"");
		buf_free(&b);
	}
	t_end();
	t_begin("counters: saved in the store, loaded back, old file upgraded");
	{
		char dir[] = "/tmp/test_stats.XXXXXX", path[64];
		struct config c = {0};
		FILE *f;

		T_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
		c.state_dir = dir;
		T_INTEQ(store_open(uv_default_loop(), &c, NULL, 0), 0);
		stats_store_open();
		stats.accepted = 42;
		store_close();
		memset(&stats, 0, sizeof(stats));
		T_INTEQ(store_open(uv_default_loop(), &c, NULL, 0), 0);
		stats_store_open();
		T_INTEQ(stats.accepted, 42);
		T_INTEQ(stats.rejected, 3);
		T_INTEQ(stats.connections_total, 7);
		j = json();
		/* dnsbl was 2: loading adds the saved counts to the live ones
		 */
		T_CHECK(strstr(j, "\"dnsbl\":4") != NULL, "got %s", j);
		free(j);
		store_close();
		snprintf(path, sizeof(path), "%s/store.snap", dir);
		unlink(path);
		snprintf(path, sizeof(path), "%s/store.jnl", dir);
		unlink(path);
		/* The counters file of earlier versions, with bad lines. */
		snprintf(path, sizeof(path), "%s/counters", dir);
		f = fopen(path, "w");
		fputs("garbage here\nrejected 5\n\x01\xff\nlogged x\n", f);
		fclose(f);
		T_INTEQ(store_open(uv_default_loop(), &c, NULL, 0), 0);
		stats_store_open();
		T_INTEQ(stats.rejected, 5);
		T_INTEQ(stats.accepted, 42);
		store_close();
		unlink(path);
		snprintf(path, sizeof(path), "%s/store.snap", dir);
		unlink(path);
		snprintf(path, sizeof(path), "%s/store.jnl", dir);
		unlink(path);
		T_INTEQ(rmdir(dir), 0);
		stats_free();
	}
	t_end();
	return t_exit();
}
