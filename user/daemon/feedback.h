/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The daemon's log feedback: follows the MTA log (follow.h), runs each line
 * through the pipeline (learn.h), writes cap changes to the kernel's
 * `groups` map, publishes signals and the last change in the pinned
 * `feedback` map for `smtpgov status`, and keeps the state file. Learned
 * caps are restored from the state file at start. A realtime timerfd wakes
 * the loop when a pause ends or a clean interval is due, and is disarmed
 * when nothing is due: no CPU while idle.
 */
#ifndef SG_FEEDBACK_H
#define SG_FEEDBACK_H

#include "config.h"
#include "kernel.h"
#include "loop.h"
#include "room.h"

struct sg_fb;

/* Start following `log` (NULL: cfg->log; "auto" finds it, for the MTA that
 * `mta` names, NULL: cfg->mta) on the loop, learning the caps of the
 * kernel's groups; the waiting room (NULL if none) tells when the sessions
 * it held began upstream. Errors are logged here. */
int sg_feedback_start(struct sg_fb **out, struct sg_kernel *k, const struct sg_config *cfg,
		      struct sg_loop *loop, const struct sg_room *room, const char *log,
		      const char *mta);

/* Save the state and let go of everything. NULL is fine. */
void sg_feedback_stop(struct sg_fb *fb);

#endif
