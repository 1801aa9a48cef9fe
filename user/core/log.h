/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Logging facade: every message goes to stderr prefixed "smtpgov: ", and
 * under systemd (stderr is the journal's stream) with its syslog priority
 * first: <3> error, <4> warning, <6> info, <7> debug.
 */
#ifndef SG_LOG_H
#define SG_LOG_H

#include <stdarg.h>
#include <stdbool.h>

enum sg_log_level { SG_LOG_ERR, SG_LOG_WARN, SG_LOG_INFO, SG_LOG_DEBUG };

/* Messages above this level are dropped (default SG_LOG_INFO). */
extern int sg_log_level;

void sg_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sg_vlog(int level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

#define pr_err(...)   sg_log(SG_LOG_ERR, __VA_ARGS__)
#define pr_warn(...)  sg_log(SG_LOG_WARN, __VA_ARGS__)
#define pr_info(...)  sg_log(SG_LOG_INFO, __VA_ARGS__)
#define pr_debug(...) sg_log(SG_LOG_DEBUG, __VA_ARGS__)

#endif
