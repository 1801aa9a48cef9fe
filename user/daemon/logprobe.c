// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* What this host has for `log = auto` (see logprobe.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "journal.h"
#include "log.h"
#include "logprobe.h"
#include "mta.h"

extern char **environ;

#define POSTCONF_TIMEOUT_MS 5000

/*
 * `postconf [-c DIR] -h maillog_file`: its first line into buf. False when
 * postconf is missing, fails (no main.cf) or hangs.
 */
static bool postconf_maillog(const char *dir, char *buf, size_t len)
{
	char *argv[] = { "postconf", "-c", (char *)dir, "-h", "maillog_file", NULL };
	posix_spawn_file_actions_t fa;
	struct pollfd pfd;
	size_t n = 0;
	int p[2], status;
	pid_t pid;

	if (!dir || !dir[0])
		memmove(&argv[1], &argv[3], 3 * sizeof(argv[0]));   /* no -c */
	if (pipe2(p, O_CLOEXEC))
		return false;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
	posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
	if (posix_spawnp(&pid, "postconf", &fa, NULL, argv, environ)) {
		posix_spawn_file_actions_destroy(&fa);
		close(p[0]);
		close(p[1]);
		return false;
	}
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	pfd = (struct pollfd){ .fd = p[0], .events = POLLIN };
	for (;;) {
		ssize_t r;

		if (poll(&pfd, 1, POSTCONF_TIMEOUT_MS) <= 0) {
			kill(pid, SIGKILL);   /* a hung postconf: our own child */
			break;
		}
		r = read(p[0], buf + n, len - 1 - n);
		if (r <= 0 || (n += (size_t)r) == len - 1)
			break;
	}
	close(p[0]);
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	if (waitpid(pid, &status, 0) != pid)
		return false;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void file_fact(const char *path, struct sg_logsource_file *f)
{
	struct stat st;

	f->exists = !stat(path, &st) && S_ISREG(st.st_mode);
	f->mtime = f->exists ? (int64_t)st.st_mtime : 0;
}

int sg_logprobe_resolve(const struct sg_config *cfg, const char *spec, const char *mta,
			struct sg_logsource *out, char *err, size_t errlen)
{
	struct sg_logsource_facts f = { .now = (int64_t)time(NULL), .journal = cfg->journal };
	char postconf[PATH_MAX + 16], maillog[PATH_MAX];
	const char *postfix_dir = NULL;
	struct sg_mta m = { 0 };
	bool exim;
	int r;

	if ((r = sg_logsource_parse(spec, cfg->journal, out, err, errlen)) <= 0)
		return r;
	if (mta && mta[0] && (r = sg_mta_parse(mta, &m, err, errlen)))
		return r;
	exim = m.kind == SG_MTA_EXIM;
	f.exim = exim;
	if (m.kind == SG_MTA_POSTFIX)
		postfix_dir = m.arg;
	snprintf(postconf, sizeof(postconf), "postconf%s%s", postfix_dir && postfix_dir[0] ? " -c " : "",
		 postfix_dir ? postfix_dir : "");
	f.postconf = postconf;
	if (!exim && postconf_maillog(postfix_dir, maillog, sizeof(maillog)))
		f.maillog_file = maillog;
	for (int i = 0; i < SG_LOGSRC_NSYSLOG; i++)
		file_fact(sg_logsource_syslog_paths[i], &f.syslog[i]);
	for (int i = 0; i < SG_LOGSRC_NEXIM; i++)
		file_fact(sg_logsource_exim_paths[i], &f.exim_log[i]);
	r = sg_journal_probe(cfg->journal, &f.journal_open, &f.journal_newest);
	if (r < 0)
		pr_debug("journal %s: %s", cfg->journal[0] ? cfg->journal : "(system)", strerror(-r));
	sg_logsource_choose(&f, out);
	return 0;
}
