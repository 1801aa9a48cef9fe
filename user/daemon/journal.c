// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* The journal as a log source (see journal.h). */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <systemd/sd-journal.h>
#include "journal.h"

/* The system journal (path ""), a journal directory or one journal file. */
static int journal_open(sd_journal **j, const char *path)
{
	const char *files[2] = { path, NULL };
	struct stat st;

	if (!path[0])
		return sd_journal_open(j, SD_JOURNAL_LOCAL_ONLY);
	if (stat(path, &st))
		return -errno;
	if (S_ISDIR(st.st_mode))
		return sd_journal_open_directory(j, path, 0);
	return sd_journal_open_files(j, files, 0);
}

/* Postfix and Exim entries only. */
static int journal_match(sd_journal *j)
{
	static const char *const idents[] = {
		"SYSLOG_IDENTIFIER=postfix/smtp", "SYSLOG_IDENTIFIER=postfix/lmtp",
		"SYSLOG_IDENTIFIER=postfix/relay", "SYSLOG_IDENTIFIER=postfix/error",
		"SYSLOG_IDENTIFIER=postfix/retry", "SYSLOG_IDENTIFIER=exim",
		"SYSLOG_IDENTIFIER=exim4",
	};
	int r;

	for (size_t i = 0; i < sizeof(idents) / sizeof(idents[0]); i++)
		if ((r = sd_journal_add_match(j, idents[i], 0)) < 0)
			return r;
	/* ...or any program logging to the mail facility (syslog_name variants
	 * such as postfix-out/smtp); the parser keeps only delivery lines. */
	if ((r = sd_journal_add_disjunction(j)) < 0 ||
	    (r = sd_journal_add_match(j, "SYSLOG_FACILITY=2", 0)) < 0)
		return r;
	return 0;
}

int sg_journal_probe(const char *path, bool *has_entries, int64_t *newest)
{
	sd_journal *j;
	uint64_t usec;
	int r;

	*has_entries = false;
	*newest = 0;
	if ((r = journal_open(&j, path)) < 0)
		return r;
	if ((r = sd_journal_seek_head(j)) >= 0 && (r = sd_journal_next(j)) > 0)
		*has_entries = true;
	if (r >= 0 && *has_entries && (r = journal_match(j)) >= 0 &&
	    (r = sd_journal_seek_tail(j)) >= 0 && (r = sd_journal_previous(j)) > 0 &&
	    sd_journal_get_realtime_usec(j, &usec) >= 0)
		*newest = (int64_t)(usec / 1000000);
	sd_journal_close(j);
	return r < 0 ? r : 0;
}

static int open_journal(void **state, const char *path, int start)
{
	sd_journal *j;
	int r;

	*state = NULL;
	if ((r = journal_open(&j, path)) < 0)
		return r;
	*state = j;
	if ((r = journal_match(j)) < 0)
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
		const char *msg = "", *ident = "", *pid = "", *host = "", *ts;
		size_t lmsg, lident, lpid, lhost, lts;
		char num[24];
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
		/* When the program logged, else when journald received it. */
		if ((lts = field(j, "_SOURCE_REALTIME_TIMESTAMP", &ts)) && lts < sizeof(num)) {
			memcpy(num, ts, lts);   /* journal data is not NUL-terminated */
			num[lts] = '\0';
			usec = strtoull(num, NULL, 10);
		}
		if (!usec)
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
