// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* Unit tests: CIDR parsing and the userspace range table (user/core/cidr.c, user/core/ranges.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>
#include "cidr.h"
#include "ranges.h"

static void parse_ok(const char *in, int family, int prefix, const char *canon)
{
	struct sg_cidr c;
	char err[64], out[SG_CIDR_STRLEN];

	assert_int_equal(sg_cidr_parse(in, false, &c, err, sizeof(err)), 0);
	assert_int_equal(c.family, family);
	assert_int_equal(c.prefix, prefix);
	sg_cidr_format(&c, out, sizeof(out));
	assert_string_equal(out, canon);
}

static void parse_bad(const char *in, const char *why)
{
	struct sg_cidr c;
	char err[64];

	assert_int_equal(sg_cidr_parse(in, false, &c, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, why);
}

static void test_parse(void **state)
{
	(void)state;
	parse_ok("142.250.0.0/15", 4, 15, "142.250.0.0/15");
	parse_ok("0.0.0.0/0", 4, 0, "0.0.0.0/0");
	parse_ok("192.0.2.7/32", 4, 32, "192.0.2.7/32");
	parse_ok("2a01:111:f400::/48", 6, 48, "2a01:111:f400::/48");
	parse_ok("2001:db8::25/128", 6, 128, "2001:db8::25/128");
	parse_ok("::ffff:104.47.0.0/113", 4, 17, "104.47.0.0/17");   /* v4-mapped */
	parse_bad("10.0.0.1/8", "host bits set");
	parse_bad("2001:db8::1/32", "host bits set");
	parse_bad("10.0.0.0/33", "prefix length out of range");
	parse_bad("2001:db8::/129", "prefix length out of range");
	parse_bad("10.0.0.0/", "bad prefix length");
	parse_bad("10.0.0.0/-1", "bad prefix length");
	parse_bad("10.0.0.0/8x", "bad prefix length");
	parse_bad("10.0.0/8", "not an IP address");
	parse_bad("example.com/24", "not an IP address");
	parse_bad("", "not an IP address");
	parse_bad("10.0.0.0", "missing /prefix length");
}

static void test_addr(void **state)
{
	struct sg_cidr a;

	(void)state;
	assert_int_equal(sg_addr_parse("::ffff:142.250.1.27", &a), 0);
	assert_int_equal(a.family, 4);
	assert_int_equal(a.addr[0], 142);
	assert_int_equal(sg_addr_parse("2a00:1450:4013:c06::1b", &a), 0);
	assert_int_equal(a.family, 6);
	assert_int_equal(sg_addr_parse("123.456.789.123", &a), -EINVAL);
}

static struct sg_cidr C(const char *s)
{
	struct sg_cidr c;

	assert_int_equal(sg_cidr_parse(s, true, &c, NULL, 0), 0);
	return c;
}

static void test_table(void **state)
{
	struct sg_ranges r = { 0 };
	struct sg_cidr c;
	char err[128];
	int ga, gb;

	(void)state;
	c = C("74.125.0.0/16"); sg_ranges_add(&r, &c, 0);
	c = C("74.125.136.0/24"); sg_ranges_add(&r, &c, 0);     /* nested, same group */
	c = C("2607:f8b0::/32"); sg_ranges_add(&r, &c, 0);
	c = C("40.92.0.0/15"); sg_ranges_add(&r, &c, 1);
	c = C("74.124.0.0/16"); sg_ranges_add(&r, &c, 2);
	assert_int_equal(sg_ranges_finish(&r, &ga, &gb, err, sizeof(err)), 0);
	assert_int_equal(r.n, 4);                                /* the nested one folds away */
	assert_int_equal(sg_ranges_count(&r, 0, 4), 1);
	assert_int_equal(sg_ranges_count(&r, 0, 6), 1);

	c = C("74.125.136.26"); assert_int_equal(sg_ranges_lookup(&r, &c), 0);
	c = C("74.125.255.255"); assert_int_equal(sg_ranges_lookup(&r, &c), 0);
	c = C("74.126.0.0"); assert_int_equal(sg_ranges_lookup(&r, &c), -1);
	c = C("74.124.9.9"); assert_int_equal(sg_ranges_lookup(&r, &c), 2);
	c = C("40.93.255.1"); assert_int_equal(sg_ranges_lookup(&r, &c), 1);
	c = C("40.94.0.1"); assert_int_equal(sg_ranges_lookup(&r, &c), -1);
	c = C("2607:f8b0:400e:c04::1b"); assert_int_equal(sg_ranges_lookup(&r, &c), 0);
	c = C("2607:f8b1::1"); assert_int_equal(sg_ranges_lookup(&r, &c), -1);
	c = C("0.0.0.1"); assert_int_equal(sg_ranges_lookup(&r, &c), -1);
	sg_ranges_free(&r);
}

static void test_overlap_rejected(void **state)
{
	struct sg_ranges r = { 0 };
	struct sg_cidr c;
	char err[128];
	int ga = -1, gb = -1;

	(void)state;
	c = C("52.100.0.0/14"); sg_ranges_add(&r, &c, 1);
	c = C("52.101.68.0/24"); sg_ranges_add(&r, &c, 3);
	assert_int_equal(sg_ranges_finish(&r, &ga, &gb, err, sizeof(err)), -EEXIST);
	assert_string_equal(err, "52.101.68.0/24 overlaps 52.100.0.0/14");
	assert_int_equal(ga, 3);
	assert_int_equal(gb, 1);
	sg_ranges_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_addr),
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_overlap_rejected),
	};

	return cmocka_run_group_tests_name("cidr", tests, NULL, NULL);
}
