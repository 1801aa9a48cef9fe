// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* Logging facade for the CLI and the daemon (see log.h). */
#include <stdarg.h>
#include <stdio.h>
#include <bpf/libbpf.h>
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

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	/* libbpf's warnings are details of an error we report ourselves in
	 * one line; -v shows them. */
	if (level == LIBBPF_DEBUG || sg_log_level < SG_LOG_DEBUG)
		return 0;
	fprintf(stderr, "smtpgov: libbpf: ");
	return vfprintf(stderr, fmt, ap);
}

void sg_log_libbpf(void)
{
	libbpf_set_print(libbpf_print);
}
