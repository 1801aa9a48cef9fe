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

#include "daemon.h"

/* Start following (d->opts->log, else d->cfg->log) on d->loop; sets d->fb. */
int sg_feedback_start(struct sg_daemon *d);

/* Save the state and let go of everything; d->fb becomes NULL. */
void sg_feedback_stop(struct sg_daemon *d);

/* Open (or create and pin) <pin_dir>/feedback. */
int sg_feedback_map(const char *pin_dir, bool create);

#endif
