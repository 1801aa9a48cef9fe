// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* The journal as a log source (see journal.h). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <systemd/sd-journal.h>
#include "journal.h"

static int open_journal(void **state, int start)
{
	static const char *const idents[] = {
		"SYSLOG_IDENTIFIER=postfix/smtp", "SYSLOG_IDENTIFIER=postfix/lmtp",
		"SYSLOG_IDENTIFIER=postfix/relay", "SYSLOG_IDENTIFIER=postfix/error",
		"SYSLOG_IDENTIFIER=postfix/retry", "SYSLOG_IDENTIFIER=exim",
		"SYSLOG_IDENTIFIER=exim4",
	};
	sd_journal *j;
	int r;

	*state = NULL;
	if ((r = sd_journal_open(&j, SD_JOURNAL_LOCAL_ONLY)) < 0)
		return r;
	*state = j;
	for (size_t i = 0; i < sizeof(idents) / sizeof(idents[0]); i++)
		if ((r = sd_journal_add_match(j, idents[i], 0)) < 0)
			return r;
	/* ...or any program logging to the mail facility (syslog_name variants
	 * such as postfix-out/smtp); the parser keeps only delivery lines. */
	if ((r = sd_journal_add_disjunction(j)) < 0 ||
	    (r = sd_journal_add_match(j, "SYSLOG_FACILITY=2", 0)) < 0)
		return r;
	if (start == SG_FOLLOW_END) {
		if ((r = sd_journal_seek_tail(j)) < 0)
			return r;
		sd_journal_previous(j);
	} else if ((r = sd_journal_seek_head(j)) < 0) {
		return r;
	}
	r = sd_journal_get_fd(j);
	return r < 0 ? r : 0;
}

static size_t field(sd_journal *j, const char *name, const char **val)
{
	const void *d;
	size_t len, nlen = strlen(name);

	if (sd_journal_get_data(j, name, &d, &len) < 0 || len <= nlen)
		return 0;
	*val = (const char *)d + nlen + 1;
	return len - nlen - 1;
}

static int read_journal(void *state, char *buf, size_t size, sg_line_fn fn, void *arg)
{
	sd_journal *j = state;
	int r;

	sd_journal_process(j);
	while ((r = sd_journal_next(j)) > 0) {
		const char *msg = "", *ident = "", *pid = "", *host = "";
		size_t lmsg, lident, lpid, lhost;
		uint64_t usec = 0;
		char when[40];
		struct tm tm;
		time_t secs;
		int n;

		if (!(lmsg = field(j, "MESSAGE", &msg)))
			continue;
		lident = field(j, "SYSLOG_IDENTIFIER", &ident);
		if (!(lpid = field(j, "SYSLOG_PID", &pid)))
			lpid = field(j, "_PID", &pid);
		if (!(lhost = field(j, "_HOSTNAME", &host))) {
			host = "localhost";
			lhost = 9;
		}
		sd_journal_get_realtime_usec(j, &usec);
		secs = (time_t)(usec / 1000000);
		gmtime_r(&secs, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
		n = snprintf(buf, size, "%s.%06u+00:00 %.*s %.*s[%.*s]: %.*s", when,
			     (unsigned)(usec % 1000000), (int)lhost, host, (int)lident, ident,
			     (int)lpid, pid, (int)lmsg, msg);
		if (n < 0)
			continue;
		if ((size_t)n >= size)
			n = (int)size - 1;
		for (int i = 0; i < n; i++)       /* one entry, one line */
			if (buf[i] == '\n')
				buf[i] = ' ';
		buf[n] = '\0';
		if ((r = fn(arg, buf, (size_t)n)))
			return r;
	}
	return r < 0 ? r : 0;
}

static int journal_fd(const void *state)
{
	return sd_journal_get_fd((sd_journal *)state);
}

static void close_journal(void *state)
{
	sd_journal_close(state);
}

const struct sg_follow_source sg_journal_source = {
	.name = "journal",
	.open = open_journal,
	.fd = journal_fd,
	.read = read_journal,
	.close = close_journal,
};
