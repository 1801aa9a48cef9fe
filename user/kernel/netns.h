/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The network namespaces of a cgroup's processes: a container's MTA
 * connects from its own. The drift recount dumps the sockets of each; the
 * waiting room opens a listener in each and its upstream connects in the
 * client's. Entering one is per thread (setns), so every call here enters,
 * does its work and returns to the daemon's own namespace.
 */
#ifndef SG_NETNS_H
#define SG_NETNS_H

#include <stdint.h>
#include <sys/types.h>

#define SG_MAX_NETNS 256

struct sg_netns_set {
	ino_t ino[SG_MAX_NETNS];     /* namespace identity (nsfs inode) */
	pid_t pid[SG_MAX_NETNS];     /* a process in it (0 for our own) */
	int n;
};

/*
 * Our own namespace first, then each distinct one of the processes in the
 * cgroup tree (NULL or "": ours only). Sets with more than SG_MAX_NETNS
 * namespaces are cut there.
 */
void sg_netns_scan(const char *cgroup, struct sg_netns_set *set);

/* Open a process's network namespace (pid 0: ours) if it still is ino. */
int sg_netns_open(pid_t pid, ino_t ino);

/* Run fn(arg) inside the namespace nsfd (-1: ours), then return. */
int sg_netns_run(int nsfd, int (*fn)(void *arg), void *arg);

/* A socket made in namespace nsfd (-1: ours); it stays there. */
int sg_netns_socket(int nsfd, int family, int type);

/* The namespace cookie of a socket's namespace (SO_NETNS_COOKIE, 5.14+). */
int sg_netns_cookie(int sockfd, uint64_t *cookie);

#endif
