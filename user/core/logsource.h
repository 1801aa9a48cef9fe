/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Which log the daemon learns from. `[global] log` (or `load --log`) is
 * "auto" (the default), a file, "-" (standard input), "journal" (the
 * system's, or `[global] journal`) or "journal:PATH" (a journal file or
 * directory). For "auto" the daemon gathers what the host has
 * (user/daemon/logprobe.c) and sg_logsource_choose() decides, here, with no
 * I/O, so the rule is in one place and unit-tested:
 *
 *   Postfix (the default, or --mta postfix[:DIR]):
 *     1. the instance's maillog_file (`postconf [-c DIR] -h maillog_file`);
 *     2. /var/log/mail.log, else /var/log/maillog (Fedora/RHEL), when it
 *        exists and is being written: written in the last day, or no older
 *        than the journal's newest Postfix entry;
 *     3. the journal, when it holds Postfix entries;
 *     4. the journal with no Postfix entries yet, when there is one;
 *     5. /var/log/mail.log, waiting for it to appear.
 *   Exim (--mta exim):
 *     1. Exim's main log (/var/log/exim4/mainlog, /var/log/exim/main.log)
 *        when it exists;
 *     2. the journal, when it holds Exim entries;
 *     3. /var/log/exim4/mainlog, waiting for it to appear.
 * The choice comes with a one-line reason, which `load` prints.
 */
#ifndef SG_LOGSOURCE_H
#define SG_LOGSOURCE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sg_logsource_kind {
	SG_LOGSRC_FILE = 0,
	SG_LOGSRC_STDIN,
	SG_LOGSRC_JOURNAL,
};

#define SG_LOGSRC_NSYSLOG 2
#define SG_LOGSRC_NEXIM   2
/* A file counts as being written if written this recently (s)... */
#define SG_LOGSRC_FRESH   (24 * 3600)
/* ...or no more than this older than the journal's newest MTA entry (s). */
#define SG_LOGSRC_SLACK   60

extern const char *const sg_logsource_syslog_paths[SG_LOGSRC_NSYSLOG];
extern const char *const sg_logsource_exim_paths[SG_LOGSRC_NEXIM];

struct sg_logsource_file {
	bool exists;
	int64_t mtime;            /* unix seconds */
};

/* What the host has: the chooser's only input. */
struct sg_logsource_facts {
	int64_t now;
	bool exim;                /* --mta exim; otherwise Postfix */
	const char *postconf;     /* how postconf was run, for the reason ("postconf -c /etc/postfix-out") */
	const char *maillog_file; /* what it printed for maillog_file; NULL: it did not run */
	struct sg_logsource_file syslog[SG_LOGSRC_NSYSLOG]; /* sg_logsource_syslog_paths */
	struct sg_logsource_file exim_log[SG_LOGSRC_NEXIM]; /* sg_logsource_exim_paths */
	const char *journal;      /* the journal: "" the system's, else a file or directory */
	bool journal_open;        /* it opened and holds at least one journal file */
	int64_t journal_newest;   /* unix seconds of its newest MTA entry, 0 = none */
};

struct sg_logsource {
	int kind;                 /* enum sg_logsource_kind */
	char path[PATH_MAX];      /* FILE: the file; JOURNAL: "" (the system's) or file/dir */
	char spec[PATH_MAX + 16]; /* what the follower opens: path, "-", "journal[:PATH]" */
	char reason[384];         /* why: one line */
};

/*
 * An explicit value of `log`: "-", "journal" (the journal `journal` names,
 * "" for the system's), "journal:PATH" or a file. Returns 0, 1 for "auto"
 * (then call sg_logsource_choose), or -EINVAL with one line in err.
 */
int sg_logsource_parse(const char *spec, const char *journal, struct sg_logsource *out,
		       char *err, size_t errlen);

/* `log = auto`: the rule above. */
void sg_logsource_choose(const struct sg_logsource_facts *f, struct sg_logsource *out);

#endif
