// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Log follower (see follow.h). A file is followed through inotify watches
 * on the file (writes, truncation, rename, delete) and on its directory
 * (the file appearing again). Every wake-up runs the same check:
 *   1. a rotated-away file (`old`) is read on: the writer appends to it
 *      until it reopens the path (logrotate's postrotate HUP), and the
 *      path is usually recreated (logrotate's `create`) before that;
 *   2. the current file was truncated (copy-truncate): its size is below
 *      what we read, or the bytes just before our offset are no longer the
 *      ones we read (it was truncated and has grown again since). What was
 *      written after our last read and before the copy is read from the
 *      copy (a file named PATH.* or PATH-* holding those same bytes at our
 *      offset), then the file is read again from 0;
 *   3. once the current file has data, the writer has reopened: the old
 *      file is read to its end (its partial last line then ends) and closed;
 *   4. the current file is read to its end, lines split, a partial last
 *      line kept until its newline comes;
 *   5. the path names another inode: renamed away or deleted; the current
 *      file becomes `old` (a second rotation before the writer reopened
 *      ends the first `old`) and the new one is read from 0.
 * Lines come out in the order the (one) writer wrote them. Reading is by
 * the inotify fd's readiness only; nothing sleeps, polls or times out, so
 * a log that stops for an hour resumes like one that stopped for a second.
 */
#include <dirent.h>
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
#include "follow.h"

#define BUF_SIZE (64 * 1024)
#define TAIL_LEN 64              /* bytes kept to recognise a rewritten file */

enum kind { K_FILE, K_STDIN, K_JOURNAL };

/* One file being read (or stdin, or the journal's line buffer). */
struct src {
	int fd, wd;              /* -1 if none */
	dev_t dev;
	ino_t ino;
	off_t off;               /* bytes read from fd */
	unsigned char tail[TAIL_LEN]; /* the last bytes read, ending at off */
	size_t tail_len;
	bool overlong;           /* dropping the rest of a line too long for buf */
	size_t len;              /* pending partial line */
	char buf[BUF_SIZE];
};

struct sg_follow {
	enum kind kind;
	sg_line_fn fn;
	void *arg;
	/* K_FILE */
	char path[PATH_MAX];
	int ino_fd, dir_wd;
	struct src cur, old;     /* old: rotated away, the writer may still append */
	/* K_STDIN */
	int ev_fd;               /* eventfd standing in for a regular-file stdin */
	bool stdin_pollable;
	/* K_JOURNAL: another source (journal.h) */
	const struct sg_follow_source *src;
	void *state;
};

static void src_init(struct src *s)
{
	s->fd = s->wd = -1;
	s->off = 0;
	s->tail_len = 0;
	s->overlong = false;
	s->len = 0;
}

static int emit(struct sg_follow *f, char *line, size_t len)
{
	line[len] = '\0';
	return f->fn(f->arg, line, len);
}

/* Split the source's buf[0, len) into lines; keep the partial tail at the front. */
static int split(struct sg_follow *f, struct src *src)
{
	char *s = src->buf, *end = src->buf + src->len, *nl;
	int r = 0;

	while (!r && (nl = memchr(s, '\n', (size_t)(end - s)))) {
		if (src->overlong)
			src->overlong = false;   /* end of the line we were dropping */
		else
			r = emit(f, s, (size_t)(nl - s));
		s = nl + 1;
	}
	src->len = (size_t)(end - s);
	memmove(src->buf, s, src->len);
	if (src->len == sizeof(src->buf) - 1) {
		/* A line longer than the buffer: pass its start, drop the rest. */
		if (!src->overlong && !r)
			r = emit(f, src->buf, src->len);
		src->overlong = true;
		src->len = 0;
	}
	return r;
}

/* A source ended (rotated away for good, or stdin closed): its last line has no newline. */
static int flush_partial(struct sg_follow *f, struct src *s)
{
	int r = 0;

	if (s->len && !s->overlong)
		r = emit(f, s->buf, s->len);
	s->len = 0;
	s->overlong = false;
	return r;
}

/* Remember the last bytes read (n of them, at p). */
static void keep_tail(struct src *s, const char *p, size_t n)
{
	if (n >= TAIL_LEN) {
		memcpy(s->tail, p + n - TAIL_LEN, TAIL_LEN);
		s->tail_len = TAIL_LEN;
		return;
	}
	size_t keep = s->tail_len + n > TAIL_LEN ? TAIL_LEN - n : s->tail_len;

	memmove(s->tail, s->tail + s->tail_len - keep, keep);
	memcpy(s->tail + keep, p, n);
	s->tail_len = keep + n;
}

/* Read fd to its end into the source's buffer (fd may be another file
 * holding the source's continuation: the copy of a truncated file). */
static int drain(struct sg_follow *f, struct src *s, int fd, bool track)
{
	for (;;) {
		ssize_t n = read(fd, s->buf + s->len, sizeof(s->buf) - 1 - s->len);
		int r;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -errno;
		}
		if (n == 0)
			return 0;
		if (track) {
			s->off += n;
			keep_tail(s, s->buf + s->len, (size_t)n);
		}
		s->len += (size_t)n;
		if ((r = split(f, s)))
			return r;
	}
}

/* ---- files ------------------------------------------------------------ */

static void close_src(struct sg_follow *f, struct src *s)
{
	if (s->wd >= 0)
		inotify_rm_watch(f->ino_fd, s->wd);
	if (s->fd >= 0)
		close(s->fd);
	src_init(s);
}

/* Open the path (if it exists) at offset 0 or its end. */
static int open_file(struct sg_follow *f, bool at_end)
{
	struct src *s = &f->cur;
	struct stat st;
	int fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st)) {
		int r = -errno;

		close(fd);
		return r;
	}
	src_init(s);
	s->fd = fd;
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	if (at_end && S_ISREG(st.st_mode) && st.st_size > 0) {
		/* Start after the last complete line, knowing its bytes. */
		s->tail_len = st.st_size < TAIL_LEN ? (size_t)st.st_size : TAIL_LEN;
		if (pread(fd, s->tail, s->tail_len, st.st_size - (off_t)s->tail_len) !=
		    (ssize_t)s->tail_len)
			s->tail_len = 0;
		s->off = lseek(fd, 0, SEEK_END);
		if (s->off < 0)
			s->off = 0;
	}
	s->wd = inotify_add_watch(f->ino_fd, f->path,
				  IN_MODIFY | IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF);
	return 0;
}

/* The bytes before our offset are still the ones we read. */
static bool same_tail(const struct src *s, int fd)
{
	unsigned char now[TAIL_LEN];

	if (!s->tail_len)
		return true;
	return pread(fd, now, s->tail_len, s->off - (off_t)s->tail_len) == (ssize_t)s->tail_len &&
	       !memcmp(now, s->tail, s->tail_len);
}

/*
 * The copy logrotate made before truncating: a regular file PATH.* or
 * PATH-* in the same directory, not the one we read, at least off bytes
 * long, with our last bytes just before off. Returns an fd at off, or -1.
 */
static int find_copy(struct sg_follow *f, const struct src *s)
{
	char dirbuf[PATH_MAX], basebuf[PATH_MAX], p[PATH_MAX * 2];
	const char *dir, *base;
	struct dirent *de;
	int best = -1;
	DIR *d;

	snprintf(dirbuf, sizeof(dirbuf), "%s", f->path);
	snprintf(basebuf, sizeof(basebuf), "%s", f->path);
	dir = dirname(dirbuf);
	base = basename(basebuf);
	if (!s->tail_len || !(d = opendir(dir)))
		return -1;
	while (best < 0 && (de = readdir(d))) {
		size_t n = strlen(base);
		struct stat st;
		int fd;

		if (strncmp(de->d_name, base, n) || (de->d_name[n] != '.' && de->d_name[n] != '-'))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		fd = open(p, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		if (fd < 0)
			continue;
		if (!fstat(fd, &st) && S_ISREG(st.st_mode) && st.st_ino != s->ino &&
		    st.st_size >= s->off && same_tail(s, fd) && lseek(fd, s->off, SEEK_SET) == s->off)
			best = fd;
		else
			close(fd);
	}
	closedir(d);
	return best;
}

/* Copy-truncate seen: finish from the copy, then start the file again at 0. */
static int truncated(struct sg_follow *f, struct src *s)
{
	int copy = find_copy(f, s), r = 0;

	if (copy >= 0) {
		r = drain(f, s, copy, false);
		close(copy);
	}
	if (!r)
		r = flush_partial(f, s);
	lseek(s->fd, 0, SEEK_SET);
	s->off = 0;
	s->tail_len = 0;
	return r;
}

/* The writer has reopened: the old file is complete. */
static int end_old(struct sg_follow *f)
{
	int r = 0;

	if (f->old.fd < 0)
		return 0;
	r = drain(f, &f->old, f->old.fd, true);
	if (!r)
		r = flush_partial(f, &f->old);
	close_src(f, &f->old);
	return r;
}

static int check_file(struct sg_follow *f)
{
	struct src *cur = &f->cur;
	struct stat st;
	int r;

	for (int round = 0; round < 2; round++) {
		if (f->old.fd >= 0 && (r = drain(f, &f->old, f->old.fd, true)))
			return r;
		if (cur->fd >= 0) {
			if (fstat(cur->fd, &st))
				return -errno;
			if (S_ISREG(st.st_mode) && (st.st_size < cur->off || !same_tail(cur, cur->fd)) &&
			    (r = truncated(f, cur)))
				return r;
			if (f->old.fd >= 0 && st.st_size > 0 && (r = end_old(f)))
				return r;
			if ((r = drain(f, cur, cur->fd, true)))
				return r;
		}
		if (round || stat(f->path, &st))
			return 0;      /* renamed or deleted, nothing new yet: keep the fd */
		if (cur->fd >= 0 && st.st_ino == cur->ino && st.st_dev == cur->dev)
			return 0;
		if (cur->fd >= 0) {
			/* Rotated: the writer may still append to it until it reopens. */
			if ((r = end_old(f)))
				return r;
			f->old = *cur;
			src_init(cur);
		}
		if ((r = open_file(f, false)))
			return r;
	}
	return 0;
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
		if ((r = drain(f, &f->cur, STDIN_FILENO, false)))
			return r;
		r = flush_partial(f, &f->cur);
		return r ? r : 1;
	}
	/* One read per wake-up: the fd was ready, so it does not block. */
	n = read(STDIN_FILENO, f->cur.buf + f->cur.len, sizeof(f->cur.buf) - 1 - f->cur.len);
	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 0 : -errno;
	if (n == 0) {
		r = flush_partial(f, &f->cur);
		return r ? r : 1;
	}
	f->cur.len += (size_t)n;
	return split(f, &f->cur);
}

/* ---- API -------------------------------------------------------------- */

int sg_follow_open(struct sg_follow **out, const char *what, const struct sg_follow_source *src,
		   int start, sg_line_fn fn, void *arg)
{
	struct sg_follow *f = calloc(1, sizeof(*f));
	int r;

	*out = NULL;
	if (!f)
		return -ENOMEM;
	f->fn = fn;
	f->arg = arg;
	f->ino_fd = f->dir_wd = f->ev_fd = -1;
	src_init(&f->cur);
	src_init(&f->old);
	if (!strcmp(what, "-")) {
		f->kind = K_STDIN;
		r = open_stdin(f);
	} else if (src && !strncmp(what, src->name, strlen(src->name)) &&
		   (!what[strlen(src->name)] || what[strlen(src->name)] == ':')) {
		/* "journal", or "journal:PATH" */
		const char *rest = what + strlen(src->name);

		f->kind = K_JOURNAL;
		f->src = src;
		r = src->open(&f->state, *rest ? rest + 1 : "", start);
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
	case K_JOURNAL: return f->src->fd(f->state);
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
		return f->src->read(f->state, f->cur.buf, sizeof(f->cur.buf), f->fn, f->arg);
	}
	return -EINVAL;
}

bool sg_follow_waiting(const struct sg_follow *f)
{
	return f->kind == K_FILE && f->cur.fd < 0;
}

void sg_follow_close(struct sg_follow *f)
{
	if (!f)
		return;
	if (f->kind == K_FILE) {
		close_src(f, &f->old);
		close_src(f, &f->cur);
	}
	if (f->ino_fd >= 0)
		close(f->ino_fd);
	if (f->ev_fd >= 0)
		close(f->ev_fd);
	if (f->src && f->state)
		f->src->close(f->state);
	free(f);
}
