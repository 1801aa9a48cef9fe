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

static int parse_group(char *s, struct sg_state_group *g)
{
	int n = 0;
	unsigned cap, resume;
	long long paused, changed;
	unsigned long long signals;
	char name[SG_NAME_LEN + 1];

	if (sscanf(s, "group %32s cap %u resume %u paused_until %lld signals %llu changed %lld reason %n",
		   name, &cap, &resume, &paused, &signals, &changed, &n) != 6 || !n)
		return -1;
	if (strlen(name) >= SG_NAME_LEN || cap > 100000 || resume > 100000 || paused < 0 ||
	    changed < 0)
		return -1;
	memset(g, 0, sizeof(*g));
	memcpy(g->name, name, strlen(name));
	g->cap = cap;
	g->resume_cap = resume;
	g->paused_until = paused;
	g->signals = signals;
	g->changed = changed;
	snprintf(g->reason, sizeof(g->reason), "%s", s + n);
	return 0;
}

int sg_state_load(const char *path, struct sg_state *st, char *err, size_t errlen)
{
	char line[512], magic[32];
	unsigned lineno = 0, end_n = 0;
	bool ended = false;
	int version, r = 0;
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
			if (sscanf(line, "%31s %d", magic, &version) != 2 || strcmp(magic, SG_STATE_MAGIC)) {
				bad(err, errlen, path, lineno, "not a smtpgov state file");
				r = -EPROTO;
				goto out;
			}
			if (version != SG_STATE_VERSION) {
				bad(err, errlen, path, lineno, "state file of another smtpgov version");
				r = -EPROTO;
				goto out;
			}
			continue;
		}
		if (!strncmp(line, "end ", 4)) {
			if (sscanf(line, "end %u", &end_n) != 1 || end_n != st->n) {
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
