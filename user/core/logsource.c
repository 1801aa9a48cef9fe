// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* Which log the daemon learns from (see logsource.h). No I/O here. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "logsource.h"

const char *const sg_logsource_syslog_paths[SG_LOGSRC_NSYSLOG] = {
	"/var/log/mail.log",      /* Debian, Ubuntu (rsyslog) */
	"/var/log/maillog",       /* Fedora, RHEL */
};

const char *const sg_logsource_exim_paths[SG_LOGSRC_NEXIM] = {
	"/var/log/exim4/mainlog", /* Debian's exim4 */
	"/var/log/exim/main.log", /* Fedora, RHEL */
};

static void set(struct sg_logsource *out, int kind, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void set(struct sg_logsource *out, int kind, const char *path, const char *fmt, ...)
{
	va_list ap;

	out->kind = kind;
	snprintf(out->path, sizeof(out->path), "%s", path);
	if (kind == SG_LOGSRC_JOURNAL)
		snprintf(out->spec, sizeof(out->spec), "journal%s%s", path[0] ? ":" : "", path);
	else
		snprintf(out->spec, sizeof(out->spec), "%s", kind == SG_LOGSRC_STDIN ? "-" : path);
	va_start(ap, fmt);
	vsnprintf(out->reason, sizeof(out->reason), fmt, ap);
	va_end(ap);
}

int sg_logsource_parse(const char *spec, const char *journal, struct sg_logsource *out,
		       char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (!strcmp(spec, "auto"))
		return 1;
	if (!strcmp(spec, "-")) {
		set(out, SG_LOGSRC_STDIN, "", "given");
		return 0;
	}
	if (!strcmp(spec, "journal")) {
		set(out, SG_LOGSRC_JOURNAL, journal ? journal : "", "given");
		return 0;
	}
	if (!strncmp(spec, "journal:", 8)) {
		if (spec[8] != '/') {
			snprintf(err, errlen, "bad log '%s': journal:PATH wants an absolute path "
				 "(a journal file or directory)", spec);
			return -EINVAL;
		}
		set(out, SG_LOGSRC_JOURNAL, spec + 8, "given");
		return 0;
	}
	if (!spec[0]) {
		snprintf(err, errlen, "empty log: want auto, a file, -, journal or journal:PATH");
		return -EINVAL;
	}
	set(out, SG_LOGSRC_FILE, spec, "given");
	return 0;
}

/* "3m ago", "2h ago"... for the reason. */
static const char *ago(int64_t now, int64_t t, char *buf, size_t len)
{
	int64_t d = now > t ? now - t : 0;

	if (d < 120)
		snprintf(buf, len, "%llds ago", (long long)d);
	else if (d < 7200)
		snprintf(buf, len, "%lldm ago", (long long)(d / 60));
	else if (d < 2 * 86400)
		snprintf(buf, len, "%lldh ago", (long long)(d / 3600));
	else
		snprintf(buf, len, "%lldd ago", (long long)(d / 86400));
	return buf;
}

static const char *journal_name(const struct sg_logsource_facts *f)
{
	return f->journal && f->journal[0] ? f->journal : "the system journal";
}

static void choose_exim(const struct sg_logsource_facts *f, struct sg_logsource *out)
{
	char a[32];

	for (int i = 0; i < SG_LOGSRC_NEXIM; i++)
		if (f->exim_log[i].exists) {
			set(out, SG_LOGSRC_FILE, sg_logsource_exim_paths[i],
			    "Exim's main log (last written %s)", ago(f->now, f->exim_log[i].mtime, a, sizeof(a)));
			return;
		}
	if (f->journal_open && f->journal_newest) {
		set(out, SG_LOGSRC_JOURNAL, f->journal ? f->journal : "",
		    "no Exim main log; %s has Exim entries (newest %s)", journal_name(f),
		    ago(f->now, f->journal_newest, a, sizeof(a)));
		return;
	}
	set(out, SG_LOGSRC_FILE, sg_logsource_exim_paths[0],
	    "no Exim main log and no Exim entries in %s; waiting for Exim's main log", journal_name(f));
}

void sg_logsource_choose(const struct sg_logsource_facts *f, struct sg_logsource *out)
{
	const char *pc = f->postconf ? f->postconf : "postconf";
	char a[32], b[32], nomaillog[PATH_MAX + 64];

	memset(out, 0, sizeof(*out));
	if (f->exim) {
		choose_exim(f, out);
		return;
	}
	/* 1. Postfix says where it logs. */
	if (f->maillog_file && f->maillog_file[0]) {
		set(out, SG_LOGSRC_FILE, f->maillog_file, "Postfix's maillog_file (%s -h maillog_file)", pc);
		return;
	}
	if (f->maillog_file)
		snprintf(nomaillog, sizeof(nomaillog), "no maillog_file (%s)", pc);
	else
		snprintf(nomaillog, sizeof(nomaillog), "no maillog_file (%s gave no answer)", pc);
	/* 2. A syslog file that is being written. */
	for (int i = 0; i < SG_LOGSRC_NSYSLOG; i++) {
		const struct sg_logsource_file *s = &f->syslog[i];
		bool newer = f->journal_newest > s->mtime + SG_LOGSRC_SLACK;

		if (!s->exists)
			continue;
		if (f->now - s->mtime > SG_LOGSRC_FRESH && f->journal_newest && newer)
			continue;        /* the journal has what this file no longer gets */
		set(out, SG_LOGSRC_FILE, sg_logsource_syslog_paths[i], "%s; %s %s (last written %s)",
		    nomaillog, sg_logsource_syslog_paths[i],
		    f->now - s->mtime <= SG_LOGSRC_FRESH ? "is being written" :
		    f->journal_newest ? "is as recent as the journal's Postfix entries" :
		    "exists and the journal has no Postfix entries", ago(f->now, s->mtime, a, sizeof(a)));
		return;
	}
	/* 3, 4. The journal. */
	if (f->journal_open && f->journal_newest) {
		bool stale = f->syslog[0].exists || f->syslog[1].exists;

		set(out, SG_LOGSRC_JOURNAL, f->journal ? f->journal : "",
		    "%s; %s; %s has Postfix entries (newest %s)", nomaillog,
		    stale ? "the syslog file is not being written" : "no /var/log/mail.log or /var/log/maillog",
		    journal_name(f), ago(f->now, f->journal_newest, b, sizeof(b)));
		return;
	}
	if (f->journal_open) {
		set(out, SG_LOGSRC_JOURNAL, f->journal ? f->journal : "",
		    "%s; no /var/log/mail.log or /var/log/maillog; %s (no Postfix entries yet)",
		    nomaillog, journal_name(f));
		return;
	}
	/* 5. Nothing: wait for the usual file. */
	set(out, SG_LOGSRC_FILE, sg_logsource_syslog_paths[0],
	    "%s; no /var/log/mail.log or /var/log/maillog; no journal", nomaillog);
}
