/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The systemd journal as a log source for the follower (follow.h, log =
 * journal): Postfix and Exim entries, by SYSLOG_IDENTIFIER (postfix/smtp,
 * ...) or the mail facility (custom syslog_name), each rendered as one line
 * "ISO-time host IDENT[PID]: MESSAGE". The only user of libsystemd.
 */
#ifndef SG_JOURNAL_H
#define SG_JOURNAL_H

#include <stdbool.h>
#include <stdint.h>
#include "follow.h"

/* "journal" (the system's) or "journal:PATH" (a journal file or directory). */
extern const struct sg_follow_source sg_journal_source;

/*
 * For `log = auto`: does the journal at path ("" = the system's, or a file
 * or directory) hold any entry, and when was its newest Postfix or Exim
 * entry (unix seconds, 0 = none)? Returns 0 or a negative errno.
 */
int sg_journal_probe(const char *path, bool *has_entries, int64_t *newest);

#endif
