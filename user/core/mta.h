/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Which MTA smtpgov serves: `--mta postfix[:CONFIG_DIR]` or
 * `--mta exim[:PID_FILE]` (and `[global] mta`). Parsing only; finding the
 * running MTA from it is user/kernel/discover.c, finding its log is the
 * log follower's business.
 */
#ifndef SG_MTA_H
#define SG_MTA_H

#include <limits.h>
#include <stddef.h>

enum sg_mta_kind {
	SG_MTA_NONE = 0,
	SG_MTA_POSTFIX,          /* arg: Postfix config directory (postconf -c) */
	SG_MTA_EXIM,             /* arg: Exim's pid file */
};

struct sg_mta {
	int kind;                /* enum sg_mta_kind */
	char arg[PATH_MAX];      /* "" = the MTA's default */
};

/*
 * "postfix", "postfix:/etc/postfix-out", "exim", "exim:/run/exim4/exim.pid".
 * The argument must be an absolute path. On error returns -EINVAL and
 * writes one line to err naming the problem.
 */
int sg_mta_parse(const char *spec, struct sg_mta *out, char *err, size_t errlen);

/* "postfix" or "exim". */
const char *sg_mta_name(int kind);

#endif
