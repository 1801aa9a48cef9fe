// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* The retry runner (see retry.h). */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include "log.h"
#include "retry.h"

#define MAX_ARGS 32

void sg_retry_init(struct sg_retry *r, const char *command, unsigned delay, unsigned timeout)
{
	memset(r, 0, sizeof(*r));
	r->command = command;
	r->delay = delay;
	r->timeout = timeout;
	if (command && command[0])
		signal(SIGCHLD, SIG_IGN);   /* the children reap themselves */
}

/* Split cmd on blanks into argv (pointing into buf), %q replaced by qid. */
static int split(const char *cmd, const char *qid, char *buf, size_t len, char *argv[MAX_ARGS])
{
	size_t used = 0;
	int argc = 0;

	while (*cmd && argc < MAX_ARGS - 1) {
		size_t n;

		cmd += strspn(cmd, " \t");
		if (!*cmd)
			break;
		n = strcspn(cmd, " \t");
		argv[argc++] = buf + used;
		for (size_t i = 0; i < n; i++) {
			const char *piece = cmd + i;
			size_t plen = 1;

			if (cmd[i] == '%' && i + 1 < n && cmd[i + 1] == 'q') {
				piece = qid;
				plen = strlen(qid);
				i++;
			}
			if (used + plen + 1 > len)
				return -E2BIG;
			memcpy(buf + used, piece, plen);
			used += plen;
		}
		buf[used++] = '\0';
		cmd += n;
	}
	argv[argc] = NULL;
	return argc ? 0 : -EINVAL;
}

/* In the run's child: the command in a process group of its own, killed
 * whole when it outlives timeout. Returns the child's exit status. */
static int supervise(char *argv[MAX_ARGS], const char *qid, unsigned timeout)
{
	int st = 0;
	pid_t cmd;

	signal(SIGCHLD, SIG_DFL);     /* we wait for this one */
	cmd = fork();
	if (cmd < 0)
		return 1;
	if (cmd == 0) {
		sigset_t none;

		/* The daemon blocks SIGTERM and SIGINT (signalfd): not its command. */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		setpgid(0, 0);
		execvp(argv[0], argv);
		_exit(127);
	}
	setpgid(cmd, cmd);
	for (unsigned ms = 0; ms < timeout * 1000; ms += 50) {
		if (waitpid(cmd, &st, WNOHANG) == cmd)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
		usleep(50000);
	}
	kill(-cmd, SIGKILL);
	waitpid(cmd, &st, 0);
	pr_warn("retry_command for %s: still running after %us: killed", qid, timeout);
	return 1;
}

int sg_retry_run(struct sg_retry *r, const char *qid, int64_t now)
{
	char buf[PATH_MAX + MAX_ARGS * SG_QID_LEN], *argv[MAX_ARGS];
	pid_t pid;
	int ret;

	if (!r->command || !r->command[0] || !qid[0] ||
	    qid[strspn(qid, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")])
		return 0;
	for (unsigned i = 0; i < SG_RETRY_RING; i++)
		if (!strcmp(r->recent[i].qid, qid) && now - r->recent[i].when < 5)
			return 0;
	snprintf(r->recent[r->n % SG_RETRY_RING].qid, SG_QID_LEN, "%s", qid);
	r->recent[r->n++ % SG_RETRY_RING].when = now;
	if ((ret = split(r->command, qid, buf, sizeof(buf), argv))) {
		pr_warn("retry_command for %s: %s", qid, strerror(-ret));
		return ret;
	}
	pid = fork();
	if (pid < 0) {
		ret = -errno;
		pr_warn("retry_command for %s: %s", qid, strerror(errno));
		return ret;
	}
	if (pid > 0)
		return 1;
	/* child: wait for the MTA to file the deferral, then run the command */
	sleep(r->delay);
	_exit(supervise(argv, qid, r->timeout));
}
