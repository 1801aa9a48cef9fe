// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* Unit tests: config loading and validation (user/core/config.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "config.h"
#include "mta.h"

static char dir[] = "/tmp/smtpgov-unit-XXXXXX";
static char path[256];
static struct sg_config cfg;
static char err[1024];

static int load(const char *text)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	return sg_config_load(&cfg, path, err, sizeof(err));
}

static void expect_error(const char *text, const char *msg)
{
	if (load(text) == 0)
		fail_msg("accepted: %s", text);
	if (!strstr(err, msg))
		fail_msg("error '%s' does not contain '%s'", err, msg);
}

static void test_builtin_only(void **state)
{
	struct sg_cidr a;
	int g;

	(void)state;
	assert_int_equal(sg_config_load(&cfg, NULL, err, sizeof(err)), 0);
	assert_int_equal(cfg.ngroups, 4);
	assert_int_equal(cfg.nports, 1);
	assert_int_equal(cfg.ports[0], 25);
	assert_int_equal(cfg.mode, SG_MODE_ENFORCE);
	assert_string_equal(cfg.log, "auto");
	assert_string_equal(cfg.journal, "");
	assert_int_equal(cfg.blind_warning, 15 * 60);
	g = sg_config_group(&cfg, "microsoft");
	assert_true(g >= 0);
	assert_int_equal(cfg.groups[g].nranges4, 4);
	assert_int_equal(cfg.groups[g].nranges6, 2);
	/* every observed Gmail MX address of the shared data is in google */
	const char *gmail[] = { "74.125.24.26", "108.177.14.27", "172.217.197.26", "64.233.165.26",
				"66.102.1.26", "72.14.205.27", "173.194.76.26", "209.85.137.27",
				"142.250.107.26", "142.251.8.27", "2607:f8b0:400e:c04::1b",
				"2a00:1450:4013:c06::1b" };
	for (size_t i = 0; i < sizeof(gmail) / sizeof(gmail[0]); i++) {
		assert_int_equal(sg_addr_parse(gmail[i], &a), 0);
		assert_int_equal(sg_ranges_lookup(&cfg.ranges, &a), sg_config_group(&cfg, "google"));
	}
	assert_int_equal(sg_addr_parse("104.47.57.161", &a), 0);
	assert_int_equal(sg_ranges_lookup(&cfg.ranges, &a), g);
	assert_int_equal(sg_addr_parse("98.136.96.92", &a), 0);
	assert_int_equal(sg_ranges_lookup(&cfg.ranges, &a), sg_config_group(&cfg, "yahoo"));
	assert_int_equal(sg_addr_parse("17.56.9.31", &a), 0);
	assert_int_equal(sg_ranges_lookup(&cfg.ranges, &a), sg_config_group(&cfg, "apple"));
	assert_int_equal(sg_addr_parse("94.100.176.20", &a), 0);   /* mail.ru */
	assert_int_equal(sg_ranges_lookup(&cfg.ranges, &a), -1);
	sg_config_free(&cfg);
}

static void test_full_file(void **state)
{
	FILE *fp;
	char rf[300];
	struct sg_cidr a;
	int g;

	(void)state;
	snprintf(rf, sizeof(rf), "%s/partner.cidr", dir);
	fp = fopen(rf, "w");
	fputs("# partner MX\n203.0.113.0/24\n2001:db8:25::/48 # v6\n\n", fp);
	fclose(fp);
	assert_int_equal(load("[global]\nports = 25 587\nmode = dry-run ; comment\nstate = /tmp/x\n"
			      "retry_command = postqueue -c /etc/postfix -i %q\nretry_delay = 2s\n"
			      "room_max = 300\nretry_timeout = 5s\n"
			      "log = journal\njournal = /var/lib/machines/mx/var/log/journal\n"
			      "blind_warning = 1h\n"
			      "[group microsoft]\ncap = 1\nmin_cap = 1\nmax_cap = 6\ndecrease = 0.25\n"
			      "cooldown = 2m\nincrease_after = 20\nincrease_interval = 1h\npause = 1d\n"
			      "[group partner-relay]\nranges = 198.51.100.0/24\n"
			      "  192.0.2.0/25, 192.0.2.128/25\nranges_file = partner.cidr\nverdict = queue\n"
			      "queue_wait = 90s\nper_source = no\n"
			      "[rule outlook-max]\ngroup = microsoft\ndsn = 4.7.652\n"
			      "match = exceeded the maximum number of connections\nclass = concurrency\n"
			      "action = pause\n"), 0);
	assert_int_equal(cfg.nports, 2);
	assert_int_equal(cfg.ports[1], 587);
	assert_int_equal(cfg.mode, SG_MODE_DRY_RUN);
	assert_string_equal(cfg.state, "/tmp/x");
	assert_string_equal(cfg.retry_command, "postqueue -c /etc/postfix -i %q");
	assert_int_equal(cfg.retry_delay, 2);
	assert_int_equal(cfg.room_max, 300);
	assert_int_equal(cfg.retry_timeout, 5);
	assert_string_equal(cfg.log, "journal");
	assert_string_equal(cfg.journal, "/var/lib/machines/mx/var/log/journal");
	assert_int_equal(cfg.blind_warning, 3600);
	g = sg_config_group(&cfg, "microsoft");
	assert_int_equal(cfg.groups[g].cap, 1);
	assert_int_equal(cfg.groups[g].max_cap, 6);
	assert_int_equal(cfg.groups[g].cooldown, 120);
	assert_int_equal(cfg.groups[g].increase_interval, 3600);
	assert_int_equal(cfg.groups[g].pause, 86400);
	assert_true(cfg.groups[g].decrease > 0.24 && cfg.groups[g].decrease < 0.26);
	assert_int_equal(cfg.groups[g].nranges4, 4);       /* built-in ranges kept */
	g = sg_config_group(&cfg, "partner-relay");
	assert_true(g >= 0);
	assert_int_equal(cfg.groups[g].nranges4, 4);
	assert_int_equal(cfg.groups[g].nranges6, 1);
	assert_int_equal(cfg.groups[g].verdict, SG_VERDICT_QUEUE);
	assert_int_equal(cfg.groups[g].queue_wait, 90);
	assert_false(cfg.groups[g].per_source);
	assert_true(cfg.groups[sg_config_group(&cfg, "microsoft")].per_source);  /* the default */
	assert_int_equal(cfg.max_sources, SG_DEFAULT_SOURCES);
	assert_int_equal(sg_addr_parse("203.0.113.9", &a), 0);
	assert_int_equal(sg_ranges_lookup(&cfg.ranges, &a), g);
	assert_int_equal(cfg.nrules, 1);
	assert_int_equal(cfg.rules[0].group, sg_config_group(&cfg, "microsoft"));
	assert_int_equal(cfg.rules[0].action, SG_ACTION_PAUSE);
	assert_string_equal(cfg.rules[0].dsn, "4.7.652");
	sg_config_free(&cfg);
}

static void test_mta(void **state)
{
	struct sg_mta m;

	(void)state;
	assert_int_equal(sg_mta_parse("postfix", &m, err, sizeof(err)), 0);
	assert_int_equal(m.kind, SG_MTA_POSTFIX);
	assert_string_equal(m.arg, "");
	assert_int_equal(sg_mta_parse("postfix:/etc/postfix-out", &m, err, sizeof(err)), 0);
	assert_string_equal(m.arg, "/etc/postfix-out");
	assert_int_equal(sg_mta_parse("exim:/run/exim4/exim.pid", &m, err, sizeof(err)), 0);
	assert_int_equal(m.kind, SG_MTA_EXIM);
	assert_string_equal(sg_mta_name(m.kind), "exim");
	assert_int_equal(sg_mta_parse("exim:", &m, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "bad MTA 'exim:': the pid file must be an absolute path");
	assert_int_equal(sg_mta_parse("postfixx", &m, err, sizeof(err)), -EINVAL);
	assert_int_equal(load("[global]\nmta = postfix:/etc/postfix\n"), 0);
	assert_string_equal(cfg.mta, "postfix:/etc/postfix");
	sg_config_free(&cfg);
}

static void test_override_and_no_builtin(void **state)
{
	(void)state;
	assert_int_equal(load("[group google]\nranges = 74.125.0.0/16\n"), 0);
	assert_int_equal(cfg.groups[sg_config_group(&cfg, "google")].nranges4, 1);
	assert_int_equal(cfg.groups[sg_config_group(&cfg, "google")].nranges6, 0);
	sg_config_free(&cfg);
	assert_int_equal(load("[global]\nbuiltin = no\n[group lo]\nranges = 127.0.0.0/8\n"), 0);
	assert_int_equal(cfg.ngroups, 1);
	assert_int_equal(cfg.groups[0].verdict, SG_VERDICT_QUEUE);        /* the default */
	sg_config_free(&cfg);
	assert_int_equal(load("[group lo]\nranges = 127.0.0.0/8\n[global]\nbuiltin = no\nverdict = refuse\n"), 0);
	assert_int_equal(cfg.groups[0].verdict, SG_VERDICT_REFUSE);       /* [global] after the group */
	assert_int_equal(sg_config_group(&cfg, "google"), -1);
	sg_config_free(&cfg);
}

static void test_errors(void **state)
{
	char big[64 * 40 + 64] = "[global]\nbuiltin = no\n";

	(void)state;
	expect_error("[group x]\nranges = 10.0.0.0/33\n", ":2: bad CIDR '10.0.0.0/33' in [group x]: prefix length out of range");
	expect_error("[group x]\nranges = 10.0.0.1/8\n", "host bits set");
	expect_error("[group x]\nranges = 74.125.1.0/24\n",
		     "overlapping ranges in two groups: 74.125.1.0/24 overlaps 74.125.0.0/16 ([group x] and [group google])");
	expect_error("[group x]\ncap = 2\n", "[group x] has no ranges");
	expect_error("[group x]\nranges = 10.0.0.0/8\ncap = 20\n", "[group x] cap 20 is outside [min_cap 1, max_cap 10]");
	expect_error("[group x]\nranges = 10.0.0.0/8\nmin_cap = 5\nmax_cap = 3\ncap = 4\n", "min_cap 5 is above max_cap 3");
	expect_error("[group x]\nranges = 10.0.0.0/8\ncapp = 2\n", ":3: unknown key 'capp' in [group x]");
	expect_error("[global]\nport = 25\n", "unknown key 'port' in [global]");
	expect_error("[globl]\n", ":1: bad section [globl]");
	expect_error("[global]\nports = 25 0\n", "bad value '25 0' for 'ports'");
	expect_error("[global]\nports = 1 2 3 4 5 6 7 8 9\n", "bad value");
	expect_error("[global]\nmode = strict\n", "bad value 'strict' for 'mode'");
	expect_error("[global]\nmax_sources = 0\n", "bad value '0' for 'max_sources'");
	expect_error("[global]\nmax_sources = 1024\n", "bad value '1024' for 'max_sources'");
	expect_error("[group x]\nranges = 10.0.0.0/8\nper_source = maybe\n", "bad value 'maybe' for 'per_source'");
	expect_error("[group x]\nranges = 10.0.0.0/8\ncooldown = 5y\n", "bad value '5y' for 'cooldown'");
	expect_error("[group x]\nranges = 10.0.0.0/8\ndecrease = 1.5\n", "bad value '1.5' for 'decrease'");
	expect_error("[group x]\nranges = 10.0.0.0/8\ncap = 2\ncap = 3\n", "'cap' given twice");
	expect_error("[group x y]\n", "bad section [group x y]");
	expect_error("[group x]\nranges_file = /nonexistent/file\n", "ranges_file /nonexistent/file of [group x]: No such file or directory");
	expect_error("[rule r]\nmatch = (unclosed\n", "bad regex for 'match' in [rule r]");
	expect_error("[rule r]\ngroup = nosuch\n", "[rule r] names unknown group 'nosuch'");
	expect_error("[rule r]\ndsn = 4.7\n", "bad value '4.7' for 'dsn'");
	expect_error("[global]\nlog = journal:var/log/journal\n", "bad log 'journal:var/log/journal': journal:PATH wants an absolute path");
	expect_error("[global]\njournal = x.journal\n", "journal 'x.journal' must be an absolute path");
	expect_error("[global]\nblind_warning = 8d\n", "bad value '8d' for 'blind_warning'");
	expect_error("[global]\nretry_command = postqueue -i\n", "retry_command 'postqueue -i' has no %q");
	expect_error("[global]\nroom_max = 0\n", "bad value '0' for 'room_max' in [global]");
	expect_error("[global]\nmta = sendmail\n", "bad MTA 'sendmail': want postfix[:CONFIG_DIR] or exim[:PID_FILE]");
	expect_error("[global]\nmta = postfix:etc\n", "bad MTA 'postfix:etc': the config directory must be an absolute path");
	expect_error("[group x]\nranges = 10.0.0.0/8 10.0.0.0/8 10.0.0.0/8 10.0.0.0/8 10.0.0.0/8 10.0.0.0/8 "
		     "10.0.0.0/8 10.0.0.0/8 10.0.0.0/8 10.0.0.0/8 10.0.0.0/8 10.0.0.0/8 10.0.0.0/8 10.0.0.0/8 "
		     "10.0.0.0/8 10.0.0.0/8 10.0.0.0/8 10.0.0.0/8 10.0.0.0/8 10.0.0.0/8\n", ":2: line longer than");
	/* Found by fuzzing. A key before any section used to crash (NULL field base). */
	expect_error("mode=\n", ":1: key 'mode' before the first section header");
	expect_error("; comment\nports = 25\n[global]\n", ":2: key 'ports' before the first section header");
	/* inih cuts a section name at 49 characters: "[group" + 40 spaces + "partner]" made "part" */
	expect_error("[group                                        partner]\nranges = 10.0.0.0/8\n",
		     ":1: section header [group                                        partner] longer than 49");
	expect_error("[global]\nbuiltin = no\n", "no groups: builtin = no and no [group NAME] section");
	expect_error("[global]\nbuiltin = no\n[rule r]\nclass = rate\n", "no groups");
	{
		/* The longest line inih reads whole passes, with the next line's number
		 * right; one more character is refused on its own line. */
		char text[600], val[300];

		memset(val, '1', sizeof(val));
		snprintf(text, sizeof(text), "[global]\nstate = /%.*s\nbogus = 1\n", 198 - 9, val);
		expect_error(text, ":3: unknown key 'bogus' in [global]");
		snprintf(text, sizeof(text), "[global]\nstate = /%.*s\nbogus = 1\n", 199 - 9, val);
		expect_error(text, ":2: line longer than 198 characters");
		snprintf(text, sizeof(text), "[global]\n%.*s = 1\n", 60, val);
		expect_error(text, ":2: key name longer than 49 characters");
	}
	{
		/* inih would cut the line at the NUL and take "enf" as the mode's whole value */
		static const char nul[] = "[global]\nmode = dry-run\0 junk\n";
		FILE *fp = fopen(path, "w");

		assert_non_null(fp);
		fwrite(nul, 1, sizeof(nul) - 1, fp);
		fclose(fp);
		assert_int_equal(sg_config_load(&cfg, path, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, ":2: NUL byte in the line"));
	}
	/* more groups than the map holds */
	for (int i = 0; i < SG_MAX_GROUPS + 1; i++) {
		char sec[64];

		snprintf(sec, sizeof(sec), "[group g%d]\nranges = 10.%d.0.0/16\n", i, i);
		strcat(big, sec);
	}
	expect_error(big, "more than 64 groups");
	/* the missing file itself */
	assert_int_equal(sg_config_load(&cfg, "/nonexistent.conf", err, sizeof(err)), -ENOENT);
	assert_string_equal(err, "config /nonexistent.conf: No such file or directory");
}

static void test_too_many_ranges(void **state)
{
	char rf[300];
	FILE *fp;

	(void)state;
	snprintf(rf, sizeof(rf), "%s/many.cidr", dir);
	fp = fopen(rf, "w");
	for (int i = 0; i <= SG_MAX_RANGES4; i++)
		fprintf(fp, "10.%d.%d.0/24\n", i / 256, i % 256);
	fclose(fp);
	expect_error("[global]\nbuiltin = no\n[group x]\nranges_file = many.cidr\n", "ranges: the maps hold 16384");
}

static void test_duration(void **state)
{
	uint32_t d;

	(void)state;
	assert_int_equal(sg_parse_duration("30s", &d), 0); assert_int_equal(d, 30);
	assert_int_equal(sg_parse_duration("15m", &d), 0); assert_int_equal(d, 900);
	assert_int_equal(sg_parse_duration("4h", &d), 0); assert_int_equal(d, 14400);
	assert_int_equal(sg_parse_duration("1d", &d), 0); assert_int_equal(d, 86400);
	assert_int_equal(sg_parse_duration("42", &d), 0); assert_int_equal(d, 42);
	assert_int_not_equal(sg_parse_duration("m", &d), 0);
	assert_int_not_equal(sg_parse_duration("5mm", &d), 0);
	assert_int_not_equal(sg_parse_duration("-5", &d), 0);
	assert_int_not_equal(sg_parse_duration("99999999999d", &d), 0);
	assert_int_equal(sg_parse_duration_ms("250ms", &d), 0); assert_int_equal(d, 250);
	assert_int_equal(sg_parse_duration_ms("2s", &d), 0); assert_int_equal(d, 2000);
	assert_int_equal(sg_parse_duration_ms("0", &d), 0); assert_int_equal(d, 0);
	assert_int_not_equal(sg_parse_duration_ms("ms", &d), 0);
	assert_int_not_equal(sg_parse_duration_ms("1.5s", &d), 0);
	assert_int_not_equal(sg_parse_duration_ms("9999999999ms", &d), 0);
	assert_int_not_equal(sg_parse_duration_ms("9999999d", &d), 0);
}

/* idle_close: the default, [global] for groups that set none (also a
 * [global] after the group), a group's own, errors. */
static void test_idle_close(void **state)
{
	(void)state;
	assert_int_equal(load("[group x]\nranges = 10.0.0.0/8\n"), 0);
	assert_int_equal(cfg.idle_close, SG_IDLE_CLOSE_DEFAULT);
	assert_int_equal(cfg.groups[sg_config_group(&cfg, "x")].idle_close, SG_IDLE_CLOSE_DEFAULT);
	assert_int_equal(cfg.groups[sg_config_group(&cfg, "google")].idle_close, SG_IDLE_CLOSE_DEFAULT);
	sg_config_free(&cfg);
	assert_int_equal(load("[group x]\nranges = 10.0.0.0/8\n[group y]\nranges = 192.168.0.0/16\n"
			      "idle_close = 1s\n[group google]\nidle_close = 0\n[global]\nidle_close = 500ms\n"), 0);
	assert_int_equal(cfg.groups[sg_config_group(&cfg, "x")].idle_close, 500);
	assert_int_equal(cfg.groups[sg_config_group(&cfg, "y")].idle_close, 1000);
	assert_int_equal(cfg.groups[sg_config_group(&cfg, "google")].idle_close, 0);
	assert_int_equal(cfg.groups[sg_config_group(&cfg, "microsoft")].idle_close, 500);
	sg_config_free(&cfg);
	expect_error("[global]\nidle_close = soon\n", "bad value 'soon' for 'idle_close'");
	expect_error("[group x]\nranges = 10.0.0.0/8\nidle_close = 2h\n", "bad value '2h' for 'idle_close'");
}

static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/smtpgov.conf", dir);
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_builtin_only),
		cmocka_unit_test(test_full_file),
		cmocka_unit_test(test_override_and_no_builtin),
		cmocka_unit_test(test_mta),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_too_many_ranges),
		cmocka_unit_test(test_duration),
		cmocka_unit_test(test_idle_close),
	};

	return cmocka_run_group_tests_name("config", tests, setup, teardown);
}
