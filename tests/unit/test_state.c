// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* Unit tests: the state file of learned caps (user/core/state.c): round trip and corruption. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "state.h"

static char dir[] = "/tmp/smtpgov-state-XXXXXX";
static char path[300], tmp[310];

static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/sub/state", dir);   /* sub/ is created on save */
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	return 0;
}

static int teardown(void **state)
{
	char sub[310];

	(void)state;
	unlink(path);
	unlink(tmp);
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	rmdir(sub);
	rmdir(dir);
	return 0;
}

static void write_file(const char *text)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static void sample(struct sg_state *st)
{
	memset(st, 0, sizeof(*st));
	st->n = 2;
	snprintf(st->g[0].name, sizeof(st->g[0].name), "google");
	st->g[0].cap = 3;
	st->g[0].signals = 12;
	st->g[0].changed = 1795521600;
	snprintf(st->g[0].reason, sizeof(st->g[0].reason), "rule gmail-421-4.4.5, queue id ABC123");
	snprintf(st->g[1].name, sizeof(st->g[1].name), "microsoft");
	st->g[1].cap = 0;
	st->g[1].resume_cap = 1;
	st->g[1].paused_until = 1795522500;
	st->g[1].signals = 1;
	st->g[1].changed = 1795521600;
	snprintf(st->g[1].reason, sizeof(st->g[1].reason), "rule ms-4.7.652-connections,\nqueue id X");
}

static void test_round_trip(void **state)
{
	struct sg_state a, b;
	char err[512];

	(void)state;
	sample(&a);
	assert_int_equal(sg_state_save(path, &a), 0);
	assert_int_equal(access(tmp, F_OK), -1);     /* renamed into place */
	assert_int_equal(sg_state_load(path, &b, err, sizeof(err)), 0);
	assert_int_equal(b.n, 2);
	assert_string_equal(b.g[0].name, "google");
	assert_int_equal(b.g[0].cap, 3);
	assert_int_equal(b.g[0].signals, 12);
	assert_int_equal(b.g[0].changed, 1795521600);
	assert_string_equal(b.g[0].reason, "rule gmail-421-4.4.5, queue id ABC123");
	assert_int_equal(b.g[1].cap, 0);
	assert_int_equal(b.g[1].resume_cap, 1);
	assert_int_equal(b.g[1].paused_until, 1795522500);
	/* a newline in a reason cannot break the format */
	assert_string_equal(b.g[1].reason, "rule ms-4.7.652-connections, queue id X");
	assert_non_null(sg_state_find(&b, "microsoft"));
	assert_null(sg_state_find(&b, "yahoo"));
	/* saving again replaces the file whole */
	a.n = 1;
	assert_int_equal(sg_state_save(path, &a), 0);
	assert_int_equal(sg_state_load(path, &b, err, sizeof(err)), 0);
	assert_int_equal(b.n, 1);
}

static void test_corrupt_and_foreign(void **state)
{
	static const struct { const char *text; int r; const char *why; } cases[] = {
		{ "", -EBADMSG, "empty file" },
		{ "smtpgov-state 1\ngroup google cap 3 resume 0 paused_until 0 signals 1 changed 0 reason x\n",
		  -EBADMSG, "no end line" },
		{ "smtpgov-state 1\ngroup google cap 3 resume 0 paused_until 0 signals 1 changed 0 reason x\nend 2\n",
		  -EBADMSG, "does not match" },
		{ "smtpgov-state 1\ngroup google cap three\nend 1\n", -EBADMSG, "malformed" },
		{ "smtpgov-state 1\ngroup google cap 3 resume 0 paused_until 0 signals 1 changed 0 reason x\nend 1\nmore\n",
		  -EBADMSG, "after the end" },
		{ "smtpgov-state 1\ngroup google cap 3 resume 0 paused_until 0 signals 1 changed 0 reason x",
		  -EBADMSG, "truncated" },
		{ "smtpgov-state 1\ngroup google cap 999999 resume 0 paused_until 0 signals 1 changed 0 reason x\nend 1\n",
		  -EBADMSG, "malformed" },
		/* Found by fuzzing: refused whole, never clamped or half-read. */
		{ "smtpgov-state 1\ngroup google cap 99999999999999999999 resume 0 paused_until 0 signals 1 changed 0 reason x\nend 1\n",
		  -EBADMSG, "malformed" },
		{ "smtpgov-state 1\ngroup google cap 0 resume 1 paused_until 99999999999999 signals 1 changed 1795521600 reason x\nend 1\n",
		  -EBADMSG, "malformed" },
		{ "smtpgov-state 1\ngroup google cap 0 resume 1 paused_until 1805521600 signals 1 changed 1795521600 reason x\nend 1\n",
		  -EBADMSG, "malformed" },   /* a pause longer than any smtpgov sets */
		{ "smtpgov-state 1\ngroup google cap -1 resume 0 paused_until 0 signals 1 changed 0 reason x\nend 1\n",
		  -EBADMSG, "malformed" },
		{ "smtpgov-state 1\ngroup google cap 3 resume 0 paused_until 0 signals -1 changed 0 reason x\nend 1\n",
		  -EBADMSG, "malformed" },
		{ "smtpgov-state 1\ngroup google cap 3 resume 0 paused_until 0 signals 1 changed -5 reason x\nend 1\n",
		  -EBADMSG, "malformed" },
		{ "smtpgov-state 1\ngroup google cap 3 resume 0 paused_until 0 signals 1 changed 0 reason x\n"
		  "group google cap 1 resume 0 paused_until 0 signals 1 changed 0 reason y\nend 2\n",
		  -EBADMSG, "group given twice" },
		{ "smtpgov-state 1\ngroup google cap 3 resume 0 paused_until 0 signals 1 changed 0 reason x\nend 1 junk\n",
		  -EBADMSG, "does not match" },
		{ "smtpgov-state 1\ngroup google cap 3x resume 0 paused_until 0 signals 1 changed 0 reason x\nend 1\n",
		  -EBADMSG, "malformed" },
		{ "smtpgov-state 1\ngroup google cap 3  resume 0 paused_until 0 signals 1 changed 0 reason x\nend 1\n",
		  -EBADMSG, "malformed" },
		{ "smtpgov-state 1 trailing\nend 0\n", -EPROTO, "another smtpgov version" },
		{ "root:x:0:0:root:/root:/bin/bash\n", -EPROTO, "not a smtpgov state file" },
		{ "smtpgov-state 2\nend 0\n", -EPROTO, "another smtpgov version" },
	};
	struct sg_state st;
	char err[512];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		write_file(cases[i].text);
		assert_int_equal(sg_state_load(path, &st, err, sizeof(err)), cases[i].r);
		if (!strstr(err, cases[i].why) || strncmp(err, path, strlen(path)))
			fail_msg("case %zu: error '%s' lacks the path or '%s'", i, err, cases[i].why);
		assert_int_equal(st.n, 0);        /* nothing of it is trusted */
	}
	write_file("smtpgov-state 1\nend 0\n");
	assert_int_equal(sg_state_load(path, &st, err, sizeof(err)), 0);
	unlink(path);
	assert_int_equal(sg_state_load(path, &st, err, sizeof(err)), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_corrupt_and_foreign),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
