// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* Network namespaces of a cgroup's processes (see netns.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cgroup.h"
#include "netns.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

/* The namespace of a process (pid 0: ours), if the set has not got it. */
static void add(struct sg_netns_set *s, pid_t pid)
{
	char path[64];
	struct stat st;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/ns/net");
	if (s->n == SG_MAX_NETNS || stat(path, &st))
		return;
	for (int i = 0; i < s->n; i++)
		if (s->ino[i] == st.st_ino)
			return;
	s->ino[s->n] = st.st_ino;
	s->pid[s->n++] = pid;
}

static void visit(void *arg, pid_t pid, const char *cgroup, int level, int base)
{
	(void)cgroup; (void)level; (void)base;
	if (pid > 0)
		add(arg, pid);
}

void sg_netns_scan(const char *cgroup, struct sg_netns_set *set)
{
	set->n = 0;
	add(set, 0);
	if (cgroup && cgroup[0])
		sg_cgroup_each_pid(cgroup, visit, set);
}

int sg_netns_open(pid_t pid, ino_t ino)
{
	char path[64];
	struct stat st;
	int fd;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/ns/net");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) || st.st_ino != ino) {
		close(fd);
		return -ESRCH;     /* the process went; its pid is another's now */
	}
	return fd;
}

/* Our own namespace, to come back to. */
static int self_fd(void)
{
	static int fd = -1;

	if (fd < 0)
		fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	return fd;
}

int sg_netns_run(int nsfd, int (*fn)(void *arg), void *arg)
{
	int self = self_fd(), r;

	if (nsfd < 0)
		return fn(arg);
	if (self < 0)
		return -errno;
	if (setns(nsfd, CLONE_NEWNET))
		return -errno;
	r = fn(arg);
	if (setns(self, CLONE_NEWNET)) {
		/* Never carry on in a stranger's namespace. */
		perror("smtpgov: cannot return to our own network namespace");
		abort();
	}
	return r;
}

struct mk {
	int family, type;
};

static int make_socket(void *arg)
{
	struct mk *m = arg;
	int fd = socket(m->family, m->type, 0);

	return fd < 0 ? -errno : fd;
}

int sg_netns_socket(int nsfd, int family, int type)
{
	struct mk m = { family, type };

	return sg_netns_run(nsfd, make_socket, &m);
}

int sg_netns_cookie(int sockfd, uint64_t *cookie)
{
	socklen_t len = sizeof(*cookie);

	return getsockopt(sockfd, SOL_SOCKET, SO_NETNS_COOKIE, cookie, &len) ? -errno : 0;
}
