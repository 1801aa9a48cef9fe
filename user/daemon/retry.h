/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The retry runner: runs `retry_command` (e.g. `postqueue -i %q`) for a
 * queue id, `retry_delay` seconds later, without a shell: the command is
 * split on blanks and %q replaced by the queue id. One reply logged for
 * several recipients is one run (a queue id seen in the last 5 s is not run
 * again). Children reap themselves (SIGCHLD is ignored once a command is set).
 * The daemon never waits for one: each run is a child that sleeps the delay,
 * runs the command in a process group of its own and kills that group when
 * it is still running after `timeout` seconds (a hanging postqueue, a
 * script stuck on a lock), saying so.
 */
#ifndef SG_RETRY_H
#define SG_RETRY_H

#include <stdbool.h>
#include <stdint.h>
#include "parse.h"

#define SG_RETRY_RING 32

struct sg_retry {
	const char *command;       /* "" or NULL: off */
	unsigned delay;            /* seconds */
	unsigned timeout;          /* seconds a run may take */
	struct {                   /* recent runs, a ring */
		char qid[SG_QID_LEN];
		int64_t when;
	} recent[SG_RETRY_RING];
	unsigned n;
};

void sg_retry_init(struct sg_retry *r, const char *command, unsigned delay, unsigned timeout);

/* Run the command for qid (letters and digits only) unless it ran for it
 * lately. Returns 1 when a run was started, 0 when not needed, or a
 * negative errno (logged). */
int sg_retry_run(struct sg_retry *r, const char *qid, int64_t now);

#endif
