// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* Logging facade for the CLI and the daemon (see log.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include "log.h"

int sg_log_level = SG_LOG_INFO;

/*
 * Is stderr the journal's stream (systemd sets JOURNAL_STREAM to its
 * device:inode)? Then each line opens with its syslog priority, which
 * journald strips and keeps (`journalctl -p warning`).
 */
static bool to_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	return js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && !fstat(STDERR_FILENO, &st) &&
	       (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void sg_vlog(int level, const char *fmt, va_list ap)
{
	static const char *const tag[] = { "", "warning: ", "", "debug: " };
	static const int prio[] = { 3, 4, 6, 7 };   /* LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG */

	if (level > sg_log_level)
		return;
	if (to_journal())
		fprintf(stderr, "<%d>", prio[level]);
	fprintf(stderr, "smtpgov: %s", tag[level]);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void sg_log(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sg_vlog(level, fmt, ap);
	va_end(ap);
}
