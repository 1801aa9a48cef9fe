/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * cgroup v2 paths and ids: where the hierarchy is mounted, the path of a
 * cgroup by id, opening one to attach programs to, whether a path is in a
 * cgroup tree, and moving the calling process into one (discover.h finds
 * the cgroup of a process). Shared by the loader
 * (the governed cgroup) and the waiting room (its own cgroup).
 */
#ifndef SG_CGROUP_H
#define SG_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* cgroup2 mount point, "" if none. */
const char *sg_cgroup2_root(void);

/* Path of a cgroup by id under the cgroup2 mount, or "" if not found. */
void sg_cgroup_path(uint64_t id, char *buf, size_t len);

/* Open a cgroup v2 directory (O_RDONLY) and give its id; err names the
 * problem in one line. Returns the fd or a negative errno. */
int sg_cgroup_open(const char *cgroup, uint64_t *id, char *err, size_t errlen);

/* Is path the cgroup tree (or below it)? */
bool sg_cgroup_within(const char *path, const char *tree);

/*
 * Call fn for each process of a cgroup tree (the cgroup.procs of every
 * cgroup in it): its pid, the cgroup's path, its depth below tree (0: tree)
 * and where its last component starts in path. One walk at a time.
 */
typedef void (*sg_cgroup_pid_fn)(void *arg, pid_t pid, const char *cgroup, int level, int base);
int sg_cgroup_each_pid(const char *tree, sg_cgroup_pid_fn fn, void *arg);

/* Move the calling process into a cgroup. */
int sg_cgroup_join(const char *cgroup);

#endif
