// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* cgroup v2 paths, ids and membership (see cgroup.h). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <linux/magic.h>
#include <mntent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include "cgroup.h"

static const char *find_fs(const char *type, char *buf, size_t len)
{
	FILE *fp = setmntent("/proc/self/mounts", "re");
	struct mntent *m;

	buf[0] = '\0';
	if (!fp)
		return buf;
	while ((m = getmntent(fp)))
		if (!strcmp(m->mnt_type, type)) {
			snprintf(buf, len, "%s", m->mnt_dir);
			break;
		}
	endmntent(fp);
	return buf;
}

const char *sg_cgroup2_root(void)
{
	static char root[PATH_MAX];

	if (!root[0])
		find_fs("cgroup2", root, sizeof(root));
	return root;
}

static uint64_t want_id;
static char *found_path;
static size_t found_len;

static int match_cgroup(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)ftw;
	if (type == FTW_D && (uint64_t)st->st_ino == want_id) {
		snprintf(found_path, found_len, "%s", path);
		return 1;
	}
	return 0;
}

void sg_cgroup_path(uint64_t id, char *buf, size_t len)
{
	buf[0] = '\0';
	if (!id || !sg_cgroup2_root()[0])
		return;
	want_id = id;
	found_path = buf;
	found_len = len;
	nftw(sg_cgroup2_root(), match_cgroup, 16, FTW_PHYS | FTW_MOUNT);
}

int sg_cgroup_open(const char *cgroup, uint64_t *id, char *err, size_t errlen)
{
	struct statfs sfs;
	struct stat st;
	int fd = open(cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0) {
		int r = -errno;

		snprintf(err, errlen, "cgroup %s: %s", cgroup, strerror(errno));
		return r;
	}
	if (fstatfs(fd, &sfs) || sfs.f_type != CGROUP2_SUPER_MAGIC || fstat(fd, &st)) {
		const char *root = sg_cgroup2_root();

		snprintf(err, errlen, "cgroup %s: not a cgroup v2 directory (%s%s)", cgroup,
			 root[0] ? "cgroup v2 is mounted at " : "no cgroup v2 is mounted",
			 root[0] ? root : "");
		close(fd);
		return -ENOTDIR;
	}
	*id = st.st_ino;
	return fd;
}

bool sg_cgroup_within(const char *path, const char *tree)
{
	size_t n = strlen(tree);

	return n && !strncmp(path, tree, n) && (path[n] == '\0' || path[n] == '/');
}

static struct {
	sg_cgroup_pid_fn fn;
	void *arg;
} each;

static int visit_procs(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	char procs[PATH_MAX + 16], line[32];
	FILE *fp;

	(void)st;
	if (type != FTW_D)
		return 0;
	snprintf(procs, sizeof(procs), "%s/cgroup.procs", path);
	if (!(fp = fopen(procs, "re")))
		return 0;
	while (fgets(line, sizeof(line), fp))
		each.fn(each.arg, (pid_t)strtol(line, NULL, 10), path, ftw->level, ftw->base);
	fclose(fp);
	return 0;
}

int sg_cgroup_each_pid(const char *tree, sg_cgroup_pid_fn fn, void *arg)
{
	int r;

	each.fn = fn;
	each.arg = arg;
	r = nftw(tree, visit_procs, 16, FTW_PHYS | FTW_MOUNT) ? -errno : 0;
	each.fn = NULL;
	return r;
}

int sg_cgroup_join(const char *cgroup)
{
	char path[PATH_MAX + 16], pid[32];
	int fd, n, r = 0;

	snprintf(path, sizeof(path), "%s/cgroup.procs", cgroup);
	n = snprintf(pid, sizeof(pid), "%d", getpid());
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, pid, (size_t)n) != n)
		r = -errno;
	if (fd >= 0)
		close(fd);
	return r;
}
