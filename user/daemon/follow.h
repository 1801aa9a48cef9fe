/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Log follower: hands complete lines of the MTA log to a callback, from
 *  - a file, like `tail -F`: survives rotation by rename (the old file is
 *    read to its end first) and by copy-truncate, holds a partial last line
 *    until its newline comes, and waits for a file that appears later;
 *  - standard input ("-"), a pipe or a file;
 *  - another source given by the caller: the systemd journal (journal.h,
 *    "journal" or "journal:PATH" for a journal file or directory), so that
 *    the follower itself needs no libsystemd.
 * It never sleeps or polls: it exposes one fd (inotify, the pipe, or the
 * journal's) for the caller's epoll loop, and reads when that fd is ready.
 */
#ifndef SG_FOLLOW_H
#define SG_FOLLOW_H

#include <stdbool.h>
#include <stddef.h>

struct sg_follow;

/* Called once per complete line (no newline; line[len] is '\0'). Return
 * a negative errno to stop reading. */
typedef int (*sg_line_fn)(void *arg, const char *line, size_t len);

enum sg_follow_start {
	SG_FOLLOW_END = 0,       /* only lines written from now on (a daemon) */
	SG_FOLLOW_BEGIN,         /* the whole file first (tests, catching up) */
};

/* A source of lines that is not a file (the journal). */
struct sg_follow_source {
	const char *name;                    /* the `what` that selects it */
	int (*open)(void **state, const char *arg, int start); /* arg: of "name:arg", or "" */
	int (*fd)(const void *state);
	/* Read what is new: each entry as one line in buf, handed to fn. */
	int (*read)(void *state, char *buf, size_t len, sg_line_fn fn, void *arg);
	void (*close)(void *state);
};

/*
 * what: a path, "-", src->name or src->name:ARG (src may be NULL). A missing file is
 * fine (it is read from its start when it appears); a missing directory is
 * -ENOENT.
 */
int sg_follow_open(struct sg_follow **out, const char *what, const struct sg_follow_source *src,
		   int start, sg_line_fn fn, void *arg);

/* The fd to wait on for reading. Call sg_follow_read once after open too:
 * what is already there (SG_FOLLOW_BEGIN) raises no event. */
int sg_follow_fd(const struct sg_follow *f);

/*
 * Read what is there and call fn per complete line. Returns 0, 1 when the
 * input has ended for good (standard input closed), or a negative errno.
 */
int sg_follow_read(struct sg_follow *f);

void sg_follow_close(struct sg_follow *f);

/* A file not there yet (waited for)? False for stdin and other sources. */
bool sg_follow_waiting(const struct sg_follow *f);

#endif
