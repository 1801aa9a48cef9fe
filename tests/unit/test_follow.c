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
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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
	assert_int_equal(sg_follow_open(&f, path, NULL, SG_FOLLOW_BEGIN, on_line, &s), 0);
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

/* A fresh log holding `first`, followed from its end. */
static struct sg_follow *fresh_log(struct seen *s, const char *first)
{
	struct sg_follow *f;

	unlink(path);
	unlink(rotated);
	append(path, first);
	assert_int_equal(sg_follow_open(&f, path, NULL, SG_FOLLOW_END, on_line, s), 0);
	assert_int_equal(sg_follow_read(f), 0);
	return f;
}

static void test_rotation_by_rename(void **state)
{
	static const char *const want[] = { "new1", "late-in-old", "partial-in-old", "fresh1", "fresh2" };
	struct seen s = { .n = 0 };
	struct sg_follow *f;
	int wfd;

	(void)state;
	f = fresh_log(&s, "old-before-start\n");
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
	assert_int_equal(sg_follow_open(&f, path, NULL, SG_FOLLOW_END, on_line, &s), 0);
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
	assert_int_equal(sg_follow_open(&f, path, NULL, SG_FOLLOW_END, on_line, &s), 0);
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
	assert_int_equal(sg_follow_open(&f, "/nonexistent-smtpgov/dir/mail.log", NULL, SG_FOLLOW_END, on_line, &s),
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
	assert_int_equal(sg_follow_open(&f, "-", NULL, SG_FOLLOW_END, on_line, &s), 0);
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

/* ---- rotation under load -------------------------------------------------
 * A writer appends numbered lines at 20,000 lines/s, each in two write()s
 * (so a rotation can fall inside a line), like a syslog daemon holding its
 * fd; it rotates the log ten times the way logrotate does, then keeps
 * writing to its old fd for a while (lines between the rename and its
 * reopen). The follower runs meanwhile in this thread. Every line must
 * arrive exactly once and intact.
 */
enum rot { ROT_RENAME, ROT_COPYTRUNCATE, ROT_DELETE };

#define RATE        20000        /* lines a second */
#define ROTATIONS   10
#define LINES_APART 2000         /* lines between rotations: 100 ms */
#define LATE_LINES  40           /* lines into the old fd before the reopen */
#define LONG_SEQ    777          /* this line is longer than any buffer */
#define LONG_LEN    (200 * 1024)
#define TOTAL       ((ROTATIONS + 1) * LINES_APART)

struct load {
	enum rot how;
	atomic_bool done;
	int count[TOTAL];
	int bad;                 /* lines that are not what was written */
};

static void line_text(char *buf, size_t len, int seq)
{
	snprintf(buf, len, "seq %08d payload %08x end", seq, (unsigned)seq * 2654435761u);
}

static int on_load_line(void *arg, const char *line, size_t len)
{
	struct load *l = arg;
	char want[64];
	int seq;

	if (sscanf(line, "seq %d", &seq) != 1 || seq < 0 || seq >= TOTAL) {
		l->bad++;
		return 0;
	}
	line_text(want, sizeof(want), seq);
	if (seq == LONG_SEQ ? len != 64 * 1024 - 1 || strncmp(line, want, strlen(want))
			    : strcmp(line, want))
		l->bad++;
	l->count[seq]++;
	return 0;
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		assert_true(w > 0);
		p += w;
		n -= (size_t)w;
	}
}

static void copy_file(const char *from, const char *to)
{
	char buf[65536];
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ssize_t n;

	assert_true(in >= 0 && out >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		write_all(out, buf, (size_t)n);
	close(in);
	close(out);
}

static void rotated_name(char *buf, size_t len, int i)
{
	snprintf(buf, len, "%s.%d", path, i);
}

static void *writer(void *arg)
{
	struct load *l = arg;
	struct timespec t0, now;
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644), reopen_at = -1, rot = 0;
	char line[64], *big = malloc(LONG_LEN);

	assert_true(fd >= 0 && big);
	memset(big, 'x', LONG_LEN);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int seq = 0; seq < TOTAL; seq++) {
		size_t n;

		line_text(line, sizeof(line), seq);
		n = strlen(line);
		write_all(fd, line, n / 2);
		if (seq && seq % LINES_APART == 0 && rot < ROTATIONS) {
			char to[320];

			/* Mid-line, as logrotate can be. */
			rotated_name(to, sizeof(to), ++rot);
			if (l->how == ROT_RENAME) {
				assert_int_equal(rename(path, to), 0);
				close(open(path, O_WRONLY | O_CREAT, 0644));   /* `create` */
				reopen_at = seq + LATE_LINES;
			} else if (l->how == ROT_DELETE) {
				assert_int_equal(unlink(path), 0);
				reopen_at = seq + LATE_LINES;
			} else {
				/* copytruncate cuts a line written across it in the file
				 * itself: finish this one first. Nothing is written
				 * between the copy and the truncation (that loss is
				 * copytruncate's own, documented by logrotate). */
				write_all(fd, line + n / 2, n - n / 2);
				write_all(fd, "\n", 1);
				copy_file(path, to);
				assert_int_equal(truncate(path, 0), 0);
				continue;
			}
		}
		write_all(fd, line + n / 2, n - n / 2);
		if (seq == LONG_SEQ)
			write_all(fd, big, LONG_LEN);
		write_all(fd, "\n", 1);
		if (seq == reopen_at) {          /* the writer's HUP: a new fd */
			close(fd);
			fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
			assert_true(fd >= 0);
			reopen_at = -1;
		}
		/* pace: seq lines by now */
		if (seq % 20 == 19) {
			long long due_ns = (long long)(seq + 1) * 1000000000LL / RATE, el;

			clock_gettime(CLOCK_MONOTONIC, &now);
			el = (now.tv_sec - t0.tv_sec) * 1000000000LL + (now.tv_nsec - t0.tv_nsec);
			if (due_ns > el) {
				struct timespec d = { 0, (long)(due_ns - el) };

				nanosleep(&d, NULL);
			}
		}
	}
	close(fd);
	free(big);
	atomic_store(&l->done, true);
	return NULL;
}

static void rotation_under_load(enum rot how)
{
	struct load *l = calloc(1, sizeof(*l));
	struct sg_follow *f;
	pthread_t th;
	int missing = 0, twice = 0;

	assert_non_null(l);
	l->how = how;
	unlink(path);
	close(open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644));
	assert_int_equal(sg_follow_open(&f, path, NULL, SG_FOLLOW_END, on_load_line, l), 0);
	assert_int_equal(sg_follow_read(f), 0);
	assert_int_equal(pthread_create(&th, NULL, writer, l), 0);
	while (!atomic_load(&l->done)) {
		struct pollfd pfd = { .fd = sg_follow_fd(f), .events = POLLIN };

		if (poll(&pfd, 1, 100) > 0)
			assert_true(sg_follow_read(f) >= 0);
	}
	pthread_join(th, NULL);
	pump(f);
	assert_true(sg_follow_read(f) >= 0);
	for (int i = 0; i < TOTAL; i++) {
		if (l->count[i] == 0 && missing++ < 5)
			print_error("line %d never came\n", i);
		if (l->count[i] > 1 && twice++ < 5)
			print_error("line %d came %d times\n", i, l->count[i]);
	}
	print_message("rotation %s: %d lines, %d rotations: %d missing, %d more than once, %d garbled\n",
		      how == ROT_RENAME ? "by rename" : how == ROT_DELETE ? "by delete" : "by copytruncate",
		      TOTAL, ROTATIONS, missing, twice, l->bad);
	sg_follow_close(f);
	for (int i = 1; i <= ROTATIONS; i++) {
		char p[320];

		rotated_name(p, sizeof(p), i);
		unlink(p);
	}
	assert_int_equal(missing, 0);
	assert_int_equal(twice, 0);
	assert_int_equal(l->bad, 0);
	free(l);
}

static void test_rotation_rename_under_load(void **state)
{
	(void)state;
	rotation_under_load(ROT_RENAME);
}

static void test_rotation_copytruncate_under_load(void **state)
{
	(void)state;
	rotation_under_load(ROT_COPYTRUNCATE);
}

static void test_delete_recreate_under_load(void **state)
{
	(void)state;
	rotation_under_load(ROT_DELETE);
}

/* copytruncate while the follower was not looking: lines written after
 * its last read went into the copy, and the file has grown past the old
 * offset again by the time it wakes. */
static void test_copytruncate_regrown(void **state)
{
	static const char *const want[] = { "read-before", "only-in-the-copy",
					    "new-line-1-is-long-enough", "new-line-2-is-long-enough" };
	struct seen s = { .n = 0 };
	struct sg_follow *f;

	(void)state;
	f = fresh_log(&s, "");
	append(path, "read-before\n");
	pump(f);
	append(path, "only-in-the-copy\n");
	copy_file(path, rotated);
	assert_int_equal(truncate(path, 0), 0);
	append(path, "new-line-1-is-long-enough\nnew-line-2-is-long-enough\n");
	assert_int_equal(sg_follow_read(f), 0);
	expect(&s, want, 4);
	sg_follow_close(f);
}

/* Rotated, then silent (for an hour: the follower has no clock and no
 * timer, so any idle time is the same to it), then the writer resumes in
 * the rotated file before it reopens: nothing is lost or read twice. */
static void test_idle_after_rotation(void **state)
{
	static const char *const want[] = { "before", "half one", "late", "after" };
	struct seen s = { .n = 0 };
	struct sg_follow *f;
	int wfd;

	(void)state;
	f = fresh_log(&s, "");
	wfd = open(path, O_WRONLY | O_APPEND);
	assert_true(wfd >= 0);
	assert_int_equal(write(wfd, "before\nhalf", 11), 11);
	pump(f);
	assert_int_equal(rename(path, rotated), 0);
	append(path, "");                            /* logrotate's `create` */
	for (int i = 0; i < 5; i++)                  /* idle wake-ups change nothing */
		assert_int_equal(sg_follow_read(f), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(write(wfd, " one\nlate\n", 10), 10);
	pump(f);
	close(wfd);
	append(path, "after\n");
	pump(f);
	expect(&s, want, 4);
	sg_follow_close(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_partial_lines),
		cmocka_unit_test(test_rotation_by_rename),
		cmocka_unit_test(test_copy_truncate),
		cmocka_unit_test(test_file_appears_later),
		cmocka_unit_test(test_stdin_pipe),
		cmocka_unit_test(test_idle_after_rotation),
		cmocka_unit_test(test_copytruncate_regrown),
		cmocka_unit_test(test_rotation_rename_under_load),
		cmocka_unit_test(test_rotation_copytruncate_under_load),
		cmocka_unit_test(test_delete_recreate_under_load),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
