// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Unit tests: which log `log = auto` chooses (user/core/logsource.c), from
 * what the host has, and the explicit values of `log`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>
#include "logsource.h"

#define NOW  1800000000LL
#define DAY  86400

static struct sg_logsource_facts facts(void)
{
	struct sg_logsource_facts f = { .now = NOW, .postconf = "postconf -c /etc/postfix",
					.maillog_file = "", .journal = "" };
	return f;
}

static struct sg_logsource pick(const struct sg_logsource_facts *f)
{
	struct sg_logsource s;

	sg_logsource_choose(f, &s);
	return s;
}

static void expect(const struct sg_logsource_facts *f, int kind, const char *spec, const char *why)
{
	struct sg_logsource s = pick(f);

	assert_int_equal(s.kind, kind);
	assert_string_equal(s.spec, spec);
	if (!strstr(s.reason, why))
		fail_msg("reason '%s' does not say '%s'", s.reason, why);
	assert_null(strchr(s.reason, '\n'));
}

static void test_maillog_file_first(void **state)
{
	struct sg_logsource_facts f = facts();

	(void)state;
	f.maillog_file = "/var/log/postfix.log";
	f.syslog[0] = (struct sg_logsource_file){ true, NOW - 5 };   /* even with mail.log */
	f.journal_open = true;
	f.journal_newest = NOW - 1;
	expect(&f, SG_LOGSRC_FILE, "/var/log/postfix.log",
	       "Postfix's maillog_file (postconf -c /etc/postfix -h maillog_file)");
}

static void test_syslog_file_being_written(void **state)
{
	struct sg_logsource_facts f = facts();

	(void)state;
	f.syslog[0] = (struct sg_logsource_file){ true, NOW - 300 };
	f.journal_open = true;
	f.journal_newest = NOW - 10;
	expect(&f, SG_LOGSRC_FILE, "/var/log/mail.log", "/var/log/mail.log is being written (last written 5m ago)");
	assert_non_null(strstr(pick(&f).reason, "no maillog_file (postconf -c /etc/postfix)"));
	/* Fedora's name */
	f.syslog[0].exists = false;
	f.syslog[1] = (struct sg_logsource_file){ true, NOW - 3 * 3600 };
	expect(&f, SG_LOGSRC_FILE, "/var/log/maillog", "is being written (last written 3h ago)");
}

static void test_stale_file_newer_journal(void **state)
{
	struct sg_logsource_facts f = facts();

	(void)state;
	/* rsyslog removed three days ago; Postfix logs to the journal since */
	f.syslog[0] = (struct sg_logsource_file){ true, NOW - 3 * DAY };
	f.journal_open = true;
	f.journal_newest = NOW - 60;
	expect(&f, SG_LOGSRC_JOURNAL, "journal", "the system journal has Postfix entries (newest 60s ago)");
	assert_non_null(strstr(pick(&f).reason, "not being written"));
	/* a quiet server: the file is as recent as the journal's newest entry */
	f.journal_newest = NOW - 3 * DAY + 30;
	expect(&f, SG_LOGSRC_FILE, "/var/log/mail.log", "as recent as the journal's Postfix entries");
	/* an old file and a journal without Postfix: the file is all there is */
	f.journal_newest = 0;
	expect(&f, SG_LOGSRC_FILE, "/var/log/mail.log", "exists and the journal has no Postfix entries");
}

static void test_debian12_journal(void **state)
{
	struct sg_logsource_facts f = facts();

	(void)state;
	f.journal_open = true;
	f.journal_newest = NOW - 7200;
	expect(&f, SG_LOGSRC_JOURNAL, "journal", "no /var/log/mail.log or /var/log/maillog");
	expect(&f, SG_LOGSRC_JOURNAL, "journal", "newest 2h ago");
	/* a journal of the config's `journal` key */
	f.journal = "/srv/ct/var/log/journal";
	expect(&f, SG_LOGSRC_JOURNAL, "journal:/srv/ct/var/log/journal",
	       "/srv/ct/var/log/journal has Postfix entries");
	assert_string_equal(pick(&f).path, "/srv/ct/var/log/journal");
	/* a journal with no Postfix entry yet still beats waiting for a file */
	f.journal_newest = 0;
	expect(&f, SG_LOGSRC_JOURNAL, "journal:/srv/ct/var/log/journal", "no Postfix entries yet");
}

static void test_nothing_waits_for_mail_log(void **state)
{
	struct sg_logsource_facts f = facts();

	(void)state;
	f.maillog_file = NULL;       /* postconf is not installed */
	f.postconf = "postconf";
	expect(&f, SG_LOGSRC_FILE, "/var/log/mail.log", "no maillog_file (postconf gave no answer)");
	expect(&f, SG_LOGSRC_FILE, "/var/log/mail.log", "no journal");
}

static void test_exim(void **state)
{
	struct sg_logsource_facts f = facts();

	(void)state;
	f.exim = true;
	f.maillog_file = "/var/log/postfix.log";    /* a Postfix beside it is not ours */
	f.syslog[0] = (struct sg_logsource_file){ true, NOW };
	f.journal_open = true;
	f.journal_newest = NOW;
	f.exim_log[1] = (struct sg_logsource_file){ true, NOW - 5 };
	expect(&f, SG_LOGSRC_FILE, "/var/log/exim/main.log", "Exim's main log");
	f.exim_log[1].exists = false;
	expect(&f, SG_LOGSRC_JOURNAL, "journal", "has Exim entries");
	f.journal_newest = 0;
	expect(&f, SG_LOGSRC_FILE, "/var/log/exim4/mainlog", "waiting for Exim's main log");
}

static void test_parse(void **state)
{
	struct sg_logsource s;
	char err[256];

	(void)state;
	assert_int_equal(sg_logsource_parse("auto", "", &s, err, sizeof(err)), 1);
	assert_int_equal(sg_logsource_parse("-", "", &s, err, sizeof(err)), 0);
	assert_int_equal(s.kind, SG_LOGSRC_STDIN);
	assert_string_equal(s.spec, "-");
	assert_int_equal(sg_logsource_parse("journal", "", &s, err, sizeof(err)), 0);
	assert_int_equal(s.kind, SG_LOGSRC_JOURNAL);
	assert_string_equal(s.spec, "journal");
	assert_int_equal(sg_logsource_parse("journal", "/j/x.journal", &s, err, sizeof(err)), 0);
	assert_string_equal(s.spec, "journal:/j/x.journal");
	assert_int_equal(sg_logsource_parse("journal:/var/log/journal", "", &s, err, sizeof(err)), 0);
	assert_string_equal(s.path, "/var/log/journal");
	assert_int_equal(sg_logsource_parse("/var/log/mail.log", "", &s, err, sizeof(err)), 0);
	assert_int_equal(s.kind, SG_LOGSRC_FILE);
	assert_string_equal(s.spec, "/var/log/mail.log");
	assert_int_equal(sg_logsource_parse("journal:rel", "", &s, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "journal:PATH wants an absolute path"));
	assert_int_equal(sg_logsource_parse("", "", &s, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "empty log"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_maillog_file_first),
		cmocka_unit_test(test_syslog_file_being_written),
		cmocka_unit_test(test_stale_file_newer_journal),
		cmocka_unit_test(test_debian12_journal),
		cmocka_unit_test(test_nothing_waits_for_mail_log),
		cmocka_unit_test(test_exim),
		cmocka_unit_test(test_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
