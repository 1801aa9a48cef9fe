// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* Logging facade for the CLI and the daemon (see log.h). */
#include <stdarg.h>
#include <stdio.h>
#include "log.h"

int sg_log_level = SG_LOG_INFO;

static void vlog(int level, const char *fmt, va_list ap)
{
	static const char *const tag[] = { "", "warning: ", "", "debug: " };

	if (level > sg_log_level)
		return;
	fprintf(stderr, "smtpgov: %s", tag[level]);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void sg_log(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(level, fmt, ap);
	va_end(ap);
}
