// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* The state file of learned caps (see state.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "state.h"

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int fsync_dir(const char *path)
{
	char dir[PATH_MAX];
	int fd, r = 0;

	snprintf(dir, sizeof(dir), "%s", path);
	fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd))
		r = -errno;
	close(fd);
	return r;
}

int sg_state_save(const char *path, const struct sg_state *st)
{
	char tmp[PATH_MAX + 8], dir[PATH_MAX];
	size_t cap = 256 + (size_t)st->n * (SG_NAME_LEN + SG_REASON_LEN + 160), len = 0;
	char *buf = malloc(cap);
	int fd = -1, r;

	if (!buf)
		return -ENOMEM;
	len += (size_t)snprintf(buf + len, cap - len, "%s %d\n", SG_STATE_MAGIC, SG_STATE_VERSION);
	for (unsigned i = 0; i < st->n; i++) {
		const struct sg_state_group *g = &st->g[i];
		char reason[SG_REASON_LEN];

		snprintf(reason, sizeof(reason), "%s", g->reason);
		for (char *p = reason; *p; p++)
			if (*p == '\n' || *p == '\r')
				*p = ' ';
		len += (size_t)snprintf(buf + len, cap - len,
					"group %s cap %u resume %u paused_until %" PRId64 " signals %" PRIu64
					" changed %" PRId64 " reason %s\n",
					g->name, g->cap, g->resume_cap, g->paused_until, g->signals,
					g->changed, reason);
	}
	len += (size_t)snprintf(buf + len, cap - len, "end %u\n", st->n);

	snprintf(dir, sizeof(dir), "%s", path);
	if (mkdir(dirname(dir), 0755) && errno != EEXIST) {
		r = -errno;
		goto out;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	if ((r = write_all(fd, buf, len)))
		goto out;
	if (fsync(fd)) {
		r = -errno;
		goto out;
	}
	close(fd);
	fd = -1;
	if (rename(tmp, path)) {
		r = -errno;
		goto out;
	}
	r = fsync_dir(path);
out:
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	}
	free(buf);
	return r;
}

static int bad(char *err, size_t errlen, const char *path, unsigned line, const char *why)
{
	if (err)
		snprintf(err, errlen, "%s:%u: %s", path, line, why);
	return -EBADMSG;
}

/*
 * Strict scanning: each field is "word value" after one space; a number
 * is decimal digits only (no sign, no blanks), within its bounds. sscanf
 * would clamp an overflow, take "-1" for a huge unsigned and ignore what
 * follows; a state file is refused whole instead.
 */
#define MAX_TIME 253402300799LL   /* 9999-12-31T23:59:59Z */
#define MAX_CAP 100000            /* the config's bound on caps */
#define MAX_PAUSE (7 * 86400LL)   /* the config's bound on pause */

static const char *word(const char *s, const char *w)
{
	size_t n = strlen(w);

	return !strncmp(s, w, n) && s[n] == ' ' ? s + n + 1 : NULL;
}

/* Digits at s up to a space or the end, <= max. Returns the byte after them. */
static const char *number(const char *s, unsigned long long max, unsigned long long *out)
{
	unsigned long long v = 0;
	const char *q = s;

	for (; *q >= '0' && *q <= '9'; q++) {
		if (v > (max - (unsigned long long)(*q - '0')) / 10)
			return NULL;
		v = v * 10 + (unsigned long long)(*q - '0');
	}
	if (q == s || (q - s > 1 && *s == '0') || (*q && *q != ' '))
		return NULL;
	*out = v;
	return q;
}

static const char *field(const char *s, const char *w, unsigned long long max,
			 unsigned long long *out)
{
	if (!s || !(s = word(s, w)) || !(s = number(s, max, out)) || *s != ' ')
		return NULL;
	return s + 1;
}

static int parse_group(const char *s, struct sg_state_group *g)
{
	unsigned long long cap, resume, paused, signals, changed;
	const char *q = word(s, "group"), *name = q;
	size_t nlen;

	if (!q || !(q = strchr(q, ' ')) || (nlen = (size_t)(q - name)) == 0 || nlen >= SG_NAME_LEN)
		return -1;
	q++;
	q = field(q, "cap", MAX_CAP, &cap);
	q = field(q, "resume", MAX_CAP, &resume);
	q = field(q, "paused_until", MAX_TIME, &paused);
	q = field(q, "signals", UINT64_MAX, &signals);
	q = field(q, "changed", MAX_TIME, &changed);
	if (!q || !(q = word(q, "reason")) || strlen(q) >= SG_REASON_LEN || strchr(q, '\r'))
		return -1;
	/* A pause starts with a change (cap -> 0) and lasts at most the
	 * longest pause: an end beyond that is no pause smtpgov set. */
	if (paused && (cap || !changed || paused <= changed || paused > changed + MAX_PAUSE))
		return -1;
	memset(g, 0, sizeof(*g));
	memcpy(g->name, name, nlen);
	g->cap = (uint32_t)cap;
	g->resume_cap = (uint32_t)resume;
	g->paused_until = (int64_t)paused;
	g->signals = signals;
	g->changed = (int64_t)changed;
	snprintf(g->reason, sizeof(g->reason), "%s", q);
	return 0;
}

int sg_state_load(const char *path, struct sg_state *st, char *err, size_t errlen)
{
	char line[512], magic[32];
	unsigned lineno = 0;
	bool ended = false;
	int version, tail = 0, r = 0;
	FILE *fp;

	memset(st, 0, sizeof(*st));
	if (err && errlen)
		err[0] = '\0';
	fp = fopen(path, "re");
	if (!fp)
		return -errno;
	while (fgets(line, sizeof(line), fp)) {
		size_t len = strlen(line);

		lineno++;
		if (!len || line[len - 1] != '\n') {
			r = bad(err, errlen, path, lineno, "truncated or overlong line");
			goto out;
		}
		line[len - 1] = '\0';
		if (ended) {
			r = bad(err, errlen, path, lineno, "data after the end line");
			goto out;
		}
		if (lineno == 1) {
			if (sscanf(line, "%31s %d%n", magic, &version, &tail) != 2 ||
			    strcmp(magic, SG_STATE_MAGIC)) {
				bad(err, errlen, path, lineno, "not a smtpgov state file");
				r = -EPROTO;
				goto out;
			}
			if (version != SG_STATE_VERSION || line[tail]) {
				bad(err, errlen, path, lineno, "state file of another smtpgov version");
				r = -EPROTO;
				goto out;
			}
			continue;
		}
		if (!strncmp(line, "end ", 4)) {
			unsigned long long end_n;
			const char *e = number(line + 4, SG_MAX_GROUPS, &end_n);

			if (!e || *e || end_n != st->n) {
				r = bad(err, errlen, path, lineno, "group count does not match the end line");
				goto out;
			}
			ended = true;
			continue;
		}
		if (st->n == SG_MAX_GROUPS || parse_group(line, &st->g[st->n])) {
			r = bad(err, errlen, path, lineno, "malformed group line");
			goto out;
		}
		if (sg_state_find(st, st->g[st->n].name)) {
			r = bad(err, errlen, path, lineno, "group given twice");
			goto out;
		}
		st->n++;
	}
	if (ferror(fp))
		r = -EIO;
	else if (lineno == 0)
		r = bad(err, errlen, path, 1, "empty file");
	else if (!ended)
		r = bad(err, errlen, path, lineno, "no end line (truncated)");
out:
	fclose(fp);
	if (r)
		memset(st, 0, sizeof(*st));
	return r;
}

const struct sg_state_group *sg_state_find(const struct sg_state *st, const char *name)
{
	for (unsigned i = 0; i < st->n; i++)
		if (!strncmp(st->g[i].name, name, SG_NAME_LEN))
			return &st->g[i];
	return NULL;
}
