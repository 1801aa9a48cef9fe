/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The state file: each group's learned cap (and a pause in force), so a
 * restarted daemon goes on where it stopped. One line per group after a
 * magic header with a version, and a closing "end N" line:
 *
 *   smtpgov-state 1
 *   group google cap 1 resume 0 paused_until 0 signals 3 changed 1700000000 reason rule gmail-421-4.4.5, queue id ABC
 *   end 1
 *
 * Saved atomically (temp file, fsync, rename, fsync of the directory). A
 * file that is not exactly this shape is corrupt or foreign: refused whole.
 */
#ifndef SG_STATE_H
#define SG_STATE_H

#include <stddef.h>
#include <stdint.h>
#include "smtpgov.h"
#include "controller.h"

#define SG_STATE_MAGIC "smtpgov-state"
#define SG_STATE_VERSION 1

struct sg_state_group {
	char name[SG_NAME_LEN];
	uint32_t cap, resume_cap;
	int64_t paused_until;    /* 0: not paused */
	uint64_t signals;
	int64_t changed;         /* last change, unix s; 0 none */
	char reason[SG_REASON_LEN];
};

struct sg_state {
	struct sg_state_group g[SG_MAX_GROUPS];
	unsigned n;
};

int sg_state_save(const char *path, const struct sg_state *st);

/*
 * 0 and st filled; -ENOENT when there is no file; -EBADMSG when it is a
 * corrupt state file, -EPROTO when it is not one of ours (another program's
 * file, or another version: better not overwritten); err says
 * "PATH:LINE: why". Another -errno on I/O error.
 */
int sg_state_load(const char *path, struct sg_state *st, char *err, size_t errlen);

/* Entry of a group by name, or NULL. */
const struct sg_state_group *sg_state_find(const struct sg_state *st, const char *name);

#endif
