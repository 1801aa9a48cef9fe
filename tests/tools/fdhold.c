// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * fdhold - plays systemd's part for a restart in the tests: runs a command
 * as a service with a file descriptor store and Restart=always.
 *
 *   fdhold --pid-file FILE [--socket PATH] -- COMMAND ARGS...
 *
 * The command gets NOTIFY_SOCKET; every fd it sends with "FDSTORE=1" (and
 * "FDNAME=NAME") is kept open here until "FDSTOREREMOVE=1" names it. When
 * the command exits, however it exits (SIGTERM, SIGKILL, a crash), fdhold
 * first reads every message it sent, then starts it again with the kept
 * fds as fd 3 onwards and LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID set,
 * as systemd does (sd_listen_fds_with_names), and writes the new PID to
 * FILE. SIGTERM or SIGINT to fdhold: passed on to the command, then fdhold
 * exits with it, closing the store.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_FDS 4096

static struct { int fd; char name[256]; } store[MAX_FDS];
static int nstore;

static void die(const char *what)
{
	fprintf(stderr, "fdhold: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void drop(const char *name)
{
	for (int i = 0; i < nstore; i++)
		if (!strcmp(store[i].name, name)) {
			close(store[i].fd);
			store[i--] = store[--nstore];
		}
}

/* One notify message; false when none is waiting. */
static bool receive(int sock)
{
	char buf[4096], ctl[CMSG_SPACE(sizeof(int) * 256) + CMSG_SPACE(sizeof(struct ucred))];
	char name[256] = "stored";
	struct iovec iov = { buf, sizeof(buf) - 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
			     .msg_controllen = sizeof(ctl) };
	int fds[256], nfds = 0;
	bool put = false, rm = false;
	ssize_t n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

	if (n < 0)
		return false;
	buf[n] = '\0';
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));

			memcpy(fds + nfds, CMSG_DATA(c), (size_t)k * sizeof(int));
			nfds += k;
		}
	for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		if (!strcmp(l, "FDSTORE=1"))
			put = true;
		else if (!strcmp(l, "FDSTOREREMOVE=1"))
			rm = true;
		else if (!strncmp(l, "FDNAME=", 7))
			snprintf(name, sizeof(name), "%s", l + 7);
	}
	if (rm)
		drop(name);
	for (int i = 0; i < nfds; i++) {
		if (put && nstore < MAX_FDS) {
			store[nstore].fd = fds[i];
			snprintf(store[nstore++].name, sizeof(store[0].name), "%s", name);
		} else {
			close(fds[i]);
		}
	}
	return true;
}

static pid_t start(char **argv, const char *sock_path, const char *pid_file)
{
	pid_t pid = fork();

	if (pid < 0)
		die("fork");
	if (pid == 0) {
		char n[16], p[16], *names = calloc((size_t)nstore + 1, 257);
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		/* fds 3.. are the store's, in order; dup above first, then down */
		int high[MAX_FDS];

		for (int i = 0; i < nstore; i++)
			if ((high[i] = fcntl(store[i].fd, F_DUPFD_CLOEXEC, 3 + nstore)) < 0)
				_exit(127);
		for (int i = 0; i < nstore; i++) {
			if (dup2(high[i], 3 + i) < 0)
				_exit(127);
			close(high[i]);
			if (names[0])
				strcat(names, ":");
			strcat(names, store[i].name);
		}
		snprintf(n, sizeof(n), "%d", nstore);
		snprintf(p, sizeof(p), "%d", (int)getpid());
		setenv("NOTIFY_SOCKET", sock_path, 1);
		if (nstore) {
			setenv("LISTEN_FDS", n, 1);
			setenv("LISTEN_FDNAMES", names, 1);
			setenv("LISTEN_PID", p, 1);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	FILE *f = fopen(pid_file, "w");

	if (!f)
		die(pid_file);
	fprintf(f, "%d\n", (int)pid);
	fclose(f);
	return pid;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pid-file", required_argument, NULL, 'p' },
		{ "socket", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	const char *pid_file = NULL;
	char sock_path[108] = "";
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int o, one = 1, sock, sfd, status = 0;
	sigset_t mask;
	pid_t child;
	bool stopping = false;

	while ((o = getopt_long(argc, argv, "+p:s:", opts, NULL)) != -1) {
		if (o == 'p')
			pid_file = optarg;
		else if (o == 's')
			snprintf(sock_path, sizeof(sock_path), "%s", optarg);
		else
			return 2;
	}
	if (!pid_file || optind >= argc) {
		fprintf(stderr, "usage: fdhold --pid-file FILE [--socket PATH] -- COMMAND ARGS...\n");
		return 2;
	}
	if (!sock_path[0])
		snprintf(sock_path, sizeof(sock_path), "/run/fdhold.%d.sock", (int)getpid());
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	unlink(sock_path);
	sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0 || bind(sock, (struct sockaddr *)&sa, sizeof(sa)))
		die(sock_path);
	setsockopt(sock, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one));
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	if ((sfd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0)
		die("signalfd");
	child = start(argv + optind, sock_path, pid_file);
	for (;;) {
		struct pollfd pfd[2] = { { sock, POLLIN, 0 }, { sfd, POLLIN, 0 } };
		struct signalfd_siginfo si;

		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			die("poll");
		while (receive(sock))
			;
		if (!(pfd[1].revents & POLLIN) || read(sfd, &si, sizeof(si)) != sizeof(si))
			continue;
		if (si.ssi_signo != SIGCHLD) {
			stopping = true;
			kill(child, (int)si.ssi_signo);
			continue;
		}
		if (waitpid(child, &status, WNOHANG) != child)
			continue;
		while (receive(sock))    /* what it said before it went */
			;
		if (stopping)
			break;
		fprintf(stderr, "fdhold: %d ended (%s %d); starting it again with %d fds\n", (int)child,
			WIFSIGNALED(status) ? "signal" : "status",
			WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), nstore);
		child = start(argv + optind, sock_path, pid_file);
	}
	unlink(sock_path);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
