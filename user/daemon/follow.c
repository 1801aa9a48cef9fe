// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Log follower (see follow.h). A file is followed through inotify watches
 * on the file (writes, truncation, rename, delete) and on its directory
 * (the file appearing again). Every wake-up runs the same check:
 *   1. size below what we read: copy-truncate; start again at 0;
 *   2. read to the end, splitting lines, keeping a partial last line;
 *   3. the path names another inode: renamed away; the old file was read
 *      to its end in 2, so switch to the new one and read it from 0.
 * Reading is by the inotify fd's readiness only; nothing sleeps or polls.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <systemd/sd-journal.h>
#include "follow.h"

#define BUF_SIZE (64 * 1024)

enum kind { K_FILE, K_STDIN, K_JOURNAL };

struct sg_follow {
	enum kind kind;
	sg_line_fn fn;
	void *arg;
	/* K_FILE */
	char path[PATH_MAX];
	int ino_fd, dir_wd, file_wd;
	int fd;                  /* the file being read, -1 if none yet */
	dev_t dev;
	ino_t ino;
	off_t off;               /* bytes read from fd */
	/* K_STDIN */
	int ev_fd;               /* eventfd standing in for a regular-file stdin */
	bool stdin_pollable;
	/* K_JOURNAL */
	sd_journal *j;
	/* pending partial line */
	bool overlong;           /* dropping the rest of a line too long for buf */
	size_t len;
	char buf[BUF_SIZE];
};

static int emit(struct sg_follow *f, char *line, size_t len)
{
	line[len] = '\0';
	return f->fn(f->arg, line, len);
}

/* Split buf[0, len) into lines; keep the partial tail at the front. */
static int split(struct sg_follow *f)
{
	char *s = f->buf, *end = f->buf + f->len, *nl;
	int r = 0;

	while (!r && (nl = memchr(s, '\n', (size_t)(end - s)))) {
		if (f->overlong)
			f->overlong = false;   /* end of the line we were dropping */
		else
			r = emit(f, s, (size_t)(nl - s));
		s = nl + 1;
	}
	f->len = (size_t)(end - s);
	memmove(f->buf, s, f->len);
	if (f->len == sizeof(f->buf) - 1) {
		/* A line longer than the buffer: pass its start, drop the rest. */
		if (!f->overlong && !r)
			r = emit(f, f->buf, f->len);
		f->overlong = true;
		f->len = 0;
	}
	return r;
}

/* A file ended (rotated away, or stdin closed): its last line has no newline. */
static int flush_partial(struct sg_follow *f)
{
	int r = 0;

	if (f->len && !f->overlong)
		r = emit(f, f->buf, f->len);
	f->len = 0;
	f->overlong = false;
	return r;
}

/* Read fd to its end. */
static int drain(struct sg_follow *f, int fd, off_t *off)
{
	for (;;) {
		ssize_t n = read(fd, f->buf + f->len, sizeof(f->buf) - 1 - f->len);
		int r;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -errno;
		}
		if (n == 0)
			return 0;
		if (off)
			*off += n;
		f->len += (size_t)n;
		if ((r = split(f)))
			return r;
	}
}

/* ---- files ------------------------------------------------------------ */

static void close_file(struct sg_follow *f)
{
	if (f->file_wd >= 0)
		inotify_rm_watch(f->ino_fd, f->file_wd);
	f->file_wd = -1;
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
}

/* Open the path (if it exists) at offset 0 or its end. */
static int open_file(struct sg_follow *f, bool at_end)
{
	struct stat st;
	int fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st)) {
		int r = -errno;

		close(fd);
		return r;
	}
	f->fd = fd;
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	f->off = 0;
	if (at_end && S_ISREG(st.st_mode))
		f->off = lseek(fd, 0, SEEK_END);
	if (f->off < 0)
		f->off = 0;
	f->file_wd = inotify_add_watch(f->ino_fd, f->path,
				       IN_MODIFY | IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF);
	return 0;
}

static int check_file(struct sg_follow *f)
{
	struct stat st;
	int r;

	if (f->fd >= 0) {
		if (!fstat(f->fd, &st) && S_ISREG(st.st_mode) && st.st_size < f->off) {
			/* copy-truncate: the old content went elsewhere, and so did
			 * the rest of a partial line. */
			lseek(f->fd, 0, SEEK_SET);
			f->off = 0;
			f->len = 0;
			f->overlong = false;
		}
		if ((r = drain(f, f->fd, &f->off)))
			return r;
	}
	if (stat(f->path, &st))
		return 0;          /* renamed or deleted, nothing new yet: keep the old fd */
	if (f->fd >= 0 && st.st_ino == f->ino && st.st_dev == f->dev)
		return 0;
	if (f->fd >= 0) {
		/* Rotated: the old file was read to its end above. */
		if ((r = flush_partial(f)))
			return r;
		close_file(f);
	}
	if ((r = open_file(f, false)))
		return r;
	return f->fd >= 0 ? drain(f, f->fd, &f->off) : 0;
}

static int open_path(struct sg_follow *f, const char *path, int start)
{
	char dir[PATH_MAX];
	int r;

	if (strlen(path) >= sizeof(f->path))
		return -ENAMETOOLONG;
	snprintf(f->path, sizeof(f->path), "%s", path);
	snprintf(dir, sizeof(dir), "%s", path);
	f->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (f->ino_fd < 0)
		return -errno;
	f->dir_wd = inotify_add_watch(f->ino_fd, dirname(dir),
				      IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ONLYDIR);
	if (f->dir_wd < 0)
		return -errno;
	if ((r = open_file(f, start == SG_FOLLOW_END)))
		return r;
	return 0;
}

/* ---- standard input --------------------------------------------------- */

static int open_stdin(struct sg_follow *f)
{
	struct stat st;

	if (fstat(STDIN_FILENO, &st))
		return -errno;
	/* epoll refuses regular files: an eventfd says "read me" once. */
	f->stdin_pollable = !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode);
	if (!f->stdin_pollable) {
		f->ev_fd = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);
		if (f->ev_fd < 0)
			return -errno;
	}
	return 0;
}

static int read_stdin(struct sg_follow *f)
{
	ssize_t n;
	int r;

	if (!f->stdin_pollable) {
		uint64_t v;

		if (read(f->ev_fd, &v, sizeof(v)) < 0)
			return 0;
		if ((r = drain(f, STDIN_FILENO, NULL)))
			return r;
		r = flush_partial(f);
		return r ? r : 1;
	}
	/* One read per wake-up: the fd was ready, so it does not block. */
	n = read(STDIN_FILENO, f->buf + f->len, sizeof(f->buf) - 1 - f->len);
	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 0 : -errno;
	if (n == 0) {
		r = flush_partial(f);
		return r ? r : 1;
	}
	f->len += (size_t)n;
	return split(f);
}

/* ---- journal ---------------------------------------------------------- */

static int open_journal(struct sg_follow *f, int start)
{
	static const char *const idents[] = {
		"SYSLOG_IDENTIFIER=postfix/smtp", "SYSLOG_IDENTIFIER=postfix/lmtp",
		"SYSLOG_IDENTIFIER=postfix/relay", "SYSLOG_IDENTIFIER=postfix/error",
		"SYSLOG_IDENTIFIER=postfix/retry", "SYSLOG_IDENTIFIER=exim",
		"SYSLOG_IDENTIFIER=exim4",
	};
	int r;

	if ((r = sd_journal_open(&f->j, SD_JOURNAL_LOCAL_ONLY)) < 0)
		return r;
	for (size_t i = 0; i < sizeof(idents) / sizeof(idents[0]); i++)
		if ((r = sd_journal_add_match(f->j, idents[i], 0)) < 0)
			return r;
	/* ...or any program logging to the mail facility (syslog_name variants
	 * such as postfix-out/smtp); the parser keeps only delivery lines. */
	if ((r = sd_journal_add_disjunction(f->j)) < 0 ||
	    (r = sd_journal_add_match(f->j, "SYSLOG_FACILITY=2", 0)) < 0)
		return r;
	if (start == SG_FOLLOW_END) {
		if ((r = sd_journal_seek_tail(f->j)) < 0)
			return r;
		sd_journal_previous(f->j);
	} else if ((r = sd_journal_seek_head(f->j)) < 0) {
		return r;
	}
	r = sd_journal_get_fd(f->j);
	return r < 0 ? r : 0;
}

static size_t field(sd_journal *j, const char *name, const char **val)
{
	const void *d;
	size_t len, nlen = strlen(name);

	if (sd_journal_get_data(j, name, &d, &len) < 0 || len <= nlen)
		return 0;
	*val = (const char *)d + nlen + 1;
	return len - nlen - 1;
}

static int read_journal(struct sg_follow *f)
{
	int r;

	sd_journal_process(f->j);
	while ((r = sd_journal_next(f->j)) > 0) {
		const char *msg = "", *ident = "", *pid = "", *host = "";
		size_t lmsg, lident, lpid, lhost;
		uint64_t usec = 0;
		char when[40];
		struct tm tm;
		time_t secs;
		int n;

		if (!(lmsg = field(f->j, "MESSAGE", &msg)))
			continue;
		lident = field(f->j, "SYSLOG_IDENTIFIER", &ident);
		if (!(lpid = field(f->j, "SYSLOG_PID", &pid)))
			lpid = field(f->j, "_PID", &pid);
		if (!(lhost = field(f->j, "_HOSTNAME", &host))) {
			host = "localhost";
			lhost = 9;
		}
		sd_journal_get_realtime_usec(f->j, &usec);
		secs = (time_t)(usec / 1000000);
		gmtime_r(&secs, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
		n = snprintf(f->buf, sizeof(f->buf), "%s.%06u+00:00 %.*s %.*s[%.*s]: %.*s", when,
			     (unsigned)(usec % 1000000), (int)lhost, host, (int)lident, ident,
			     (int)lpid, pid, (int)lmsg, msg);
		if (n < 0)
			continue;
		if ((size_t)n >= sizeof(f->buf))
			n = sizeof(f->buf) - 1;
		for (int i = 0; i < n; i++)       /* one entry, one line */
			if (f->buf[i] == '\n')
				f->buf[i] = ' ';
		if ((r = emit(f, f->buf, (size_t)n)))
			return r;
	}
	return r < 0 ? r : 0;
}

/* ---- API -------------------------------------------------------------- */

int sg_follow_open(struct sg_follow **out, const char *what, int start, sg_line_fn fn, void *arg)
{
	struct sg_follow *f = calloc(1, sizeof(*f));
	int r;

	*out = NULL;
	if (!f)
		return -ENOMEM;
	f->fn = fn;
	f->arg = arg;
	f->ino_fd = f->dir_wd = f->file_wd = f->fd = f->ev_fd = -1;
	if (!strcmp(what, "-")) {
		f->kind = K_STDIN;
		r = open_stdin(f);
	} else if (!strcmp(what, "journal")) {
		f->kind = K_JOURNAL;
		r = open_journal(f, start);
	} else {
		f->kind = K_FILE;
		r = open_path(f, what, start);
	}
	if (r) {
		sg_follow_close(f);
		return r;
	}
	*out = f;
	return 0;
}

int sg_follow_fd(const struct sg_follow *f)
{
	switch (f->kind) {
	case K_FILE: return f->ino_fd;
	case K_STDIN: return f->stdin_pollable ? STDIN_FILENO : f->ev_fd;
	case K_JOURNAL: return sd_journal_get_fd(f->j);
	}
	return -1;
}

int sg_follow_read(struct sg_follow *f)
{
	switch (f->kind) {
	case K_FILE: {
		char ev[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

		/* What happened matters less than what is there now. */
		while (read(f->ino_fd, ev, sizeof(ev)) > 0)
			;
		return check_file(f);
	}
	case K_STDIN:
		return read_stdin(f);
	case K_JOURNAL:
		return read_journal(f);
	}
	return -EINVAL;
}

void sg_follow_close(struct sg_follow *f)
{
	if (!f)
		return;
	if (f->kind == K_FILE)
		close_file(f);
	if (f->ino_fd >= 0)
		close(f->ino_fd);
	if (f->ev_fd >= 0)
		close(f->ev_fd);
	if (f->j)
		sd_journal_close(f->j);
	free(f);
}
