/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Finding the MTA's cgroup: from the MTA's pid file (`--mta`), from any
 * process (`--pid`), or as given (`--cgroup`); how many processes a cgroup
 * tree holds, and where an MTA runs when a cgroup holds none (Debian's
 * postfix.service is an empty wrapper of postfix@-.service).
 */
#ifndef SG_DISCOVER_H
#define SG_DISCOVER_H

#include <stddef.h>
#include <sys/types.h>
#include "mta.h"

/*
 * PID of the running MTA daemon named by its pid file: Postfix's
 * $(postconf [-c DIR] -h queue_directory)/pid/master.pid, Exim's pid file
 * (given, or the usual places). err: one line on failure (no pid file,
 * stale pid, postconf failing).
 */
int sg_mta_pid(const struct sg_mta *m, pid_t *pid, char *err, size_t errlen);

/* Absolute cgroup v2 directory of a process (its /proc/PID/cgroup "0::"
 * line under the cgroup2 mount). */
int sg_pid_cgroup(pid_t pid, char *path, size_t len, char *err, size_t errlen);

/*
 * The cgroup to govern from exactly one of --cgroup PATH, --mta SPEC or
 * --pid PID (the others NULL); with none, mta_conf ([global] mta) if set.
 * how: a few words for the log ("the Postfix master, pid 123").
 */
int sg_find_cgroup(const char *cgroup, const char *mta, const char *pid, const char *mta_conf,
		   char *out, size_t len, char *how, size_t howlen, char *err, size_t errlen);

/* Processes in a cgroup and its descendants (negative errno on error). */
int sg_cgroup_nprocs(const char *cgroup);

/*
 * Where the work is when `cgroup` holds no process: a cgroup with an MTA
 * daemon (Postfix master, Exim) in it, preferring one whose path shares the
 * empty unit's name ("postfix"), else a populated unit of that name.
 * Writes a few words ("the Postfix master (pid 42) runs in PATH") or "".
 */
void sg_cgroup_hint(const char *cgroup, char *buf, size_t len);

#endif
