// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Unit tests: the log follower (user/daemon/follow.c) on a temp dir: partial lines,
 * rotation by rename, copy-truncate, a file that appears later, following
 * from the end, standard input. Every line must arrive once, in order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "follow.h"

static char dir[] = "/tmp/smtpgov-follow-XXXXXX";
static char path[300], rotated[300];

struct seen {
	char lines[64][64];
	int n;
};

static int on_line(void *arg, const char *line, size_t len)
{
	struct seen *s = arg;

	assert_true(s->n < 64);
	assert_int_equal(strlen(line), len);
	snprintf(s->lines[s->n++], sizeof(s->lines[0]), "%s", line);
	return 0;
}

static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/mail.log", dir);
	snprintf(rotated, sizeof(rotated), "%s/mail.log.1", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	unlink(rotated);
	rmdir(dir);
	return 0;
}

static void append(const char *p, const char *text)
{
	int fd = open(p, O_WRONLY | O_APPEND | O_CREAT, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

/* Wait (up to 1 s) for the follower's fd, then read; like the daemon's loop. */
static void pump(struct sg_follow *f)
{
	struct pollfd pfd = { .fd = sg_follow_fd(f), .events = POLLIN };

	while (poll(&pfd, 1, 200) > 0)
		assert_true(sg_follow_read(f) >= 0);
}

static void expect(const struct seen *s, const char *const *want, int n)
{
	if (s->n != n) {
		for (int i = 0; i < s->n; i++)
			print_error("got line %d: %s\n", i, s->lines[i]);
		fail_msg("%d lines, want %d", s->n, n);
	}
	for (int i = 0; i < n; i++)
		assert_string_equal(s->lines[i], want[i]);
}

static void test_partial_lines(void **state)
{
	static const char *const want[] = { "a1", "b2 long", "c3" };
	struct seen s = { .n = 0 };
	struct sg_follow *f;

	(void)state;
	unlink(path);
	append(path, "a1\nb2");
	assert_int_equal(sg_follow_open(&f, path, SG_FOLLOW_BEGIN, on_line, &s), 0);
	assert_int_equal(sg_follow_read(f), 0);
	pump(f);
	assert_int_equal(s.n, 1);           /* "b2" waits for its newline */
	append(path, " long");
	pump(f);
	assert_int_equal(s.n, 1);
	append(path, "\nc3\n");
	pump(f);
	expect(&s, want, 3);
	sg_follow_close(f);
}

static void test_rotation_by_rename(void **state)
{
	static const char *const want[] = { "new1", "late-in-old", "partial-in-old", "fresh1", "fresh2" };
	struct seen s = { .n = 0 };
	struct sg_follow *f;
	int wfd;

	(void)state;
	unlink(path);
	unlink(rotated);
	append(path, "old-before-start\n");
	assert_int_equal(sg_follow_open(&f, path, SG_FOLLOW_END, on_line, &s), 0);
	assert_int_equal(sg_follow_read(f), 0);
	wfd = open(path, O_WRONLY | O_APPEND);  /* the MTA's syslogd keeps its fd */
	assert_true(wfd >= 0);
	assert_int_equal(write(wfd, "new1\n", 5), 5);
	pump(f);
	assert_int_equal(rename(path, rotated), 0);
	pump(f);
	/* the writer has not reopened yet: these land in the rotated file */
	assert_int_equal(write(wfd, "late-in-old\npartial-in-old", 26), 26);
	pump(f);
	close(wfd);
	append(path, "fresh1\nfresh2\n");  /* reopened: a new file */
	pump(f);
	expect(&s, want, 5);
	sg_follow_close(f);
}

static void test_copy_truncate(void **state)
{
	static const char *const want[] = { "e1", "e2", "f1" };
	struct seen s = { .n = 0 };
	struct sg_follow *f;

	(void)state;
	unlink(path);
	append(path, "");
	assert_int_equal(sg_follow_open(&f, path, SG_FOLLOW_END, on_line, &s), 0);
	append(path, "e1\ne2\n");
	pump(f);
	assert_int_equal(truncate(path, 0), 0);   /* logrotate copytruncate */
	pump(f);
	append(path, "f1\n");
	pump(f);
	expect(&s, want, 3);
	sg_follow_close(f);
}

static void test_file_appears_later(void **state)
{
	static const char *const want[] = { "g1", "g2" };
	struct seen s = { .n = 0 };
	struct sg_follow *f;

	(void)state;
	unlink(path);
	assert_int_equal(sg_follow_open(&f, path, SG_FOLLOW_END, on_line, &s), 0);
	assert_int_equal(sg_follow_read(f), 0);
	pump(f);
	assert_int_equal(s.n, 0);
	append(path, "g1\n");           /* all of a new file counts */
	pump(f);
	append(path, "g2\n");
	pump(f);
	expect(&s, want, 2);
	sg_follow_close(f);
	/* a missing directory is an error */
	assert_int_equal(sg_follow_open(&f, "/nonexistent-smtpgov/dir/mail.log", SG_FOLLOW_END, on_line, &s),
			 -ENOENT);
}

static void test_stdin_pipe(void **state)
{
	static const char *const want[] = { "s1", "s2", "no newline at the end" };
	struct seen s = { .n = 0 };
	struct sg_follow *f;
	int p[2], saved = dup(STDIN_FILENO), r;

	(void)state;
	assert_int_equal(pipe(p), 0);
	assert_true(dup2(p[0], STDIN_FILENO) >= 0);
	close(p[0]);
	assert_int_equal(sg_follow_open(&f, "-", SG_FOLLOW_END, on_line, &s), 0);
	assert_int_equal(write(p[1], "s1\ns2\nno newline", 16), 16);
	assert_int_equal(write(p[1], " at the end", 11), 11);
	close(p[1]);
	struct pollfd pfd = { .fd = sg_follow_fd(f), .events = POLLIN };

	do {
		assert_true(poll(&pfd, 1, 1000) > 0);
		r = sg_follow_read(f);
	} while (r == 0);
	assert_int_equal(r, 1);                 /* the input ended */
	expect(&s, want, 3);
	sg_follow_close(f);
	dup2(saved, STDIN_FILENO);
	close(saved);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_partial_lines),
		cmocka_unit_test(test_rotation_by_rename),
		cmocka_unit_test(test_copy_truncate),
		cmocka_unit_test(test_file_appears_later),
		cmocka_unit_test(test_stdin_pipe),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
