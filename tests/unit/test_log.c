// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* Unit test: log lines (user/core/log.c), plain and with the journal's priorities. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "log.h"

/* Log one line of each level with stderr on a temp file; return its text. */
static void capture(bool journal, char *buf, size_t len)
{
	char path[] = "/tmp/smtpgov-test-log-XXXXXX", js[64];
	int fd = mkstemp(path), saved = dup(STDERR_FILENO);
	struct stat st;
	ssize_t n;

	assert_true(fd >= 0 && saved >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	if (journal)
		setenv("JOURNAL_STREAM", js, 1);
	else
		setenv("JOURNAL_STREAM", "1:2", 1);      /* another stream: not ours */
	fflush(stderr);
	dup2(fd, STDERR_FILENO);
	sg_log_level = SG_LOG_DEBUG;
	pr_err("e %d", 1);
	pr_warn("w");
	pr_info("i");
	pr_debug("d");
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	unsetenv("JOURNAL_STREAM");
	n = pread(fd, buf, len - 1, 0);
	assert_true(n > 0);
	buf[n] = '\0';
	close(fd);
	unlink(path);
}

static void test_plain(void **state)
{
	char buf[512];

	(void)state;
	capture(false, buf, sizeof(buf));
	assert_string_equal(buf, "smtpgov: e 1\nsmtpgov: warning: w\nsmtpgov: i\nsmtpgov: debug: d\n");
}

static void test_journal_priorities(void **state)
{
	char buf[512];

	(void)state;
	capture(true, buf, sizeof(buf));
	assert_string_equal(buf, "<3>smtpgov: e 1\n<4>smtpgov: warning: w\n<6>smtpgov: i\n"
			    "<7>smtpgov: debug: d\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_journal_priorities),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
