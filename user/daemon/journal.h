/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The systemd journal as a log source for the follower (follow.h, log =
 * journal): Postfix and Exim entries, by SYSLOG_IDENTIFIER (postfix/smtp,
 * ...) or the mail facility (custom syslog_name), each rendered as one line
 * "ISO-time host IDENT[PID]: MESSAGE". The only user of libsystemd.
 */
#ifndef SG_JOURNAL_H
#define SG_JOURNAL_H

#include "follow.h"

extern const struct sg_follow_source sg_journal_source;

#endif
