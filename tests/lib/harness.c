// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* Root test harness (see harness.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "cidr.h"
#include "harness.h"

/*
 * The listeners live here, not in a test's stack frame: a failed assertion
 * leaves the test function (cmocka longjmps out of it) while the listener's
 * thread still runs, and env_teardown stops what is left.
 */
#define NLISTENERS 16
static struct listener pool[NLISTENERS];
static bool in_use[NLISTENERS];


const char *smtpgov_bin(void)
{
	const char *b = getenv("SMTPGOV_BIN");

	return b && *b ? b : "build/smtpgov";
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -EIO;
}

int env_setup(struct env *e)
{
	static int seq;

	memset(e, 0, sizeof(*e));
	if (!sg_cgroup2_root()[0])
		return -ENOENT;
	snprintf(e->name, sizeof(e->name), "smtpgov-test-%d-%d", getpid(), ++seq);
	snprintf(e->cgroup, sizeof(e->cgroup), "%s/%s", sg_cgroup2_root(), e->name);
	snprintf(e->pin_dir, sizeof(e->pin_dir), "/sys/fs/bpf/%s", e->name);
	snprintf(e->tmp, sizeof(e->tmp), "/tmp/%s", e->name);
	snprintf(e->conf, sizeof(e->conf), "%s/smtpgov.conf", e->tmp);
	if (mkdir(e->cgroup, 0755) || mkdir(e->tmp, 0700))
		return -errno;
	return 0;
}

void env_config(struct env *e, const char *text)
{
	char buf[8192], state[PATH_MAX + 32];
	const char *g = strstr(text, "[global]\n");

	/* Learned caps go to the test's own state file, never the system's. */
	snprintf(state, sizeof(state), "state = %s/state\n", e->tmp);
	if (g && !strstr(text, "state ="))
		snprintf(buf, sizeof(buf), "%.*s[global]\n%s%s", (int)(g - text), text, state,
			 g + strlen("[global]\n"));
	else if (!g)
		snprintf(buf, sizeof(buf), "[global]\n%s%s", state, text);
	else
		snprintf(buf, sizeof(buf), "%s", text);
	write_file(e->conf, buf);
}

int env_cli(struct env *e, char *out, size_t outlen, const char *fmt, ...)
{
	char args[2048], cmd[4096];
	va_list ap;
	FILE *p;
	size_t n = 0;
	int st;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "%s --pin-dir %s %s 2>&1", smtpgov_bin(), e->pin_dir, args);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	if (out && outlen) {
		n = fread(out, 1, outlen - 1, p);
		out[n] = '\0';
	} else {
		char sink[4096];

		while (fread(sink, 1, sizeof(sink), p) > 0)
			;
	}
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int env_load(struct env *e, const char *extra)
{
	char out[4096];
	int r = env_cli(e, out, sizeof(out), "load --cgroup %s --config %s --no-follow %s",
			e->cgroup, e->conf, extra ? extra : "");

	if (r) {
		fprintf(stderr, "load failed (%d): %s\n", r, out);
		return -1;
	}
	if (e->loaded)
		sg_kernel_close(&e->k);
	if (sg_kernel_open(&e->k, e->pin_dir, out, sizeof(out))) {
		fprintf(stderr, "open the pins: %s\n", out);
		return -1;
	}
	e->loaded = true;
	return 0;
}

int env_daemon(struct env *e, const char *extra, bool room)
{
	char cmd[4096], ns[128] = "";

	/* In the test's netns, so that its clients reach the waiting room
	 * (nsenter, not `ip netns exec`, which would hide bpffs). */
	if (e->netns[0])
		snprintf(ns, sizeof(ns), "nsenter --net=/var/run/netns/%s ", e->netns);
	snprintf(cmd, sizeof(cmd), "exec %s%s %s --pin-dir %s load --cgroup %s --config %s %s",
		 ns, e->wrap ? e->wrap : "", smtpgov_bin(), e->pin_dir, e->cgroup, e->conf,
		 extra ? extra : "");
	e->daemon = fork();
	if (e->daemon == 0) {
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	if (e->daemon < 0)
		return -1;
	for (int i = 0; i < 500; i++) {
		struct sg_settings s;
		char err[PATH_MAX + 256];

		usleep(10000);
		if (!e->loaded) {
			if (sg_kernel_open(&e->k, e->pin_dir, err, sizeof(err)))
				continue;
			e->loaded = true;
		}
		if (!room || (!sg_kernel_settings(&e->k, &s) && s.room_port))
			return 0;
	}
	return -1;
}

int env_daemon_stop(struct env *e, int sig)
{
	char path[PATH_MAX];
	int st;

	if (e->daemon <= 0)
		return -1;
	kill(e->daemon, sig);
	if (waitpid(e->daemon, &st, 0) < 0)
		return -1;
	/* A killed daemon leaves its (empty) waiting-room cgroup behind. */
	snprintf(path, sizeof(path), "%s/smtpgov-room.%d", sg_cgroup2_root(), e->daemon);
	rmdir(path);
	e->daemon = 0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

const struct sg_group *env_group(struct env *e, const char *name)
{
	int slot = sg_kernel_group(&e->k, name);

	return slot < 0 ? NULL : &e->k.groups[slot];
}

int env_join(const struct env *e)
{
	char path[PATH_MAX + 16], pid[32];

	snprintf(path, sizeof(path), "%s/cgroup.procs", e->cgroup);
	snprintf(pid, sizeof(pid), "%d", getpid());
	return write_file(path, pid);
}

int env_enter_netns(const struct env *e)
{
	char path[128];
	int fd, r;

	snprintf(path, sizeof(path), "/var/run/netns/%s", e->netns);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = setns(fd, CLONE_NEWNET) ? -errno : 0;
	close(fd);
	return r;
}

int env_netns(struct env *e, const char *addr6)
{
	char cmd[512];

	snprintf(e->netns, sizeof(e->netns), "%s", e->name);
	snprintf(cmd, sizeof(cmd),
		 "ip netns add %s && ip -n %s link set lo up && ip -n %s addr add %s/128 dev lo nodad",
		 e->netns, e->netns, e->netns, addr6);
	return system(cmd) == 0 ? 0 : -1;
}

pid_t env_spawn(struct env *e, int (*fn)(void *), void *arg)
{
	pid_t pid = fork();

	if (pid == 0) {
		if (env_join(e) || (e->netns[0] && env_enter_netns(e)))
			_exit(111);
		_exit(fn(arg));
	}
	if (pid > 0 && e->nkids < 64)
		e->kids[e->nkids++] = pid;
	return pid;
}

int env_wait(struct env *e, pid_t pid)
{
	int st;

	if (waitpid(pid, &st, 0) < 0)
		return -1;
	for (int i = 0; i < e->nkids; i++)
		if (e->kids[i] == pid)
			e->kids[i] = 0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void env_teardown(struct env *e)
{
	char err[256], cmd[PATH_MAX + 32];

	for (int i = 0; i < e->nkids; i++)
		if (e->kids[i] > 0) {
			kill(e->kids[i], SIGKILL);
			waitpid(e->kids[i], NULL, 0);
		}
	for (int i = 0; i < NLISTENERS; i++)
		listener_stop(&pool[i]);
	if (e->daemon > 0)
		env_daemon_stop(e, SIGKILL);
	if (e->loaded)
		sg_kernel_close(&e->k);
	e->loaded = false;
	sg_kernel_unload(e->pin_dir, err, sizeof(err));
	if (e->netns[0]) {
		snprintf(cmd, sizeof(cmd), "ip netns del %s 2>/dev/null", e->netns);
		if (system(cmd))
			fprintf(stderr, "teardown: could not delete netns %s\n", e->netns);
	}
	/* Children are gone; the cgroup may take a moment to empty. */
	for (int i = 0; i < 100 && rmdir(e->cgroup) && errno == EBUSY; i++)
		usleep(10000);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->tmp);
	if (system(cmd))
		fprintf(stderr, "teardown: could not remove %s\n", e->tmp);
}

/* --- listener --- */

static void bump_peak(int *cur, int *peak)
{
	int c = __atomic_add_fetch(cur, 1, __ATOMIC_SEQ_CST);
	int p = __atomic_load_n(peak, __ATOMIC_SEQ_CST);

	while (c > p && !__atomic_compare_exchange_n(peak, &p, c, false, __ATOMIC_SEQ_CST,
						     __ATOMIC_SEQ_CST))
		;
}

/* The client address as v4-mapped IPv6, so both families compare alike. */
static void mapped(const struct sockaddr_storage *ss, struct sockaddr_in6 *out)
{
	memset(out, 0, sizeof(*out));
	out->sin6_family = AF_INET6;
	if (ss->ss_family == AF_INET) {
		out->sin6_addr.s6_addr[10] = out->sin6_addr.s6_addr[11] = 0xff;
		memcpy(&out->sin6_addr.s6_addr[12], &((const struct sockaddr_in *)ss)->sin_addr, 4);
	} else {
		out->sin6_addr = ((const struct sockaddr_in6 *)ss)->sin6_addr;
	}
}

/* Slot of a client address in l->src, added if new; -1 when full. */
static int source_of(struct listener *l, const struct sockaddr_storage *ss)
{
	struct sockaddr_in6 a;

	mapped(ss, &a);
	for (int i = 0; i < l->nsrc; i++)
		if (!memcmp(&l->src[i].sin6_addr, &a.sin6_addr, 16))
			return i;
	if (l->nsrc == LISTENER_SOURCES)
		return -1;
	l->src[l->nsrc] = a;
	return l->nsrc++;
}

int listener_source(const struct listener *l, const char *addr)
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 a;
	unsigned len;

	if (sg_sockaddr(addr, 0, &ss, &len))
		return -1;
	mapped(&ss, &a);
	for (int i = 0; i < l->nsrc; i++)
		if (!memcmp(&l->src[i].sin6_addr, &a.sin6_addr, 16))
			return i;
	return -1;
}

static void *listener_main(void *arg)
{
	struct listener *l = arg;
	struct epoll_event ev, evs[64];
	int ep = epoll_create1(EPOLL_CLOEXEC);
	static __thread signed char srcof[65536];   /* fd -> source slot + 1 */

	ev.events = EPOLLIN;
	ev.data.fd = l->fd;
	epoll_ctl(ep, EPOLL_CTL_ADD, l->fd, &ev);
	ev.data.fd = l->stop_pipe[0];
	epoll_ctl(ep, EPOLL_CTL_ADD, l->stop_pipe[0], &ev);
	__atomic_store_n(&l->ready, 1, __ATOMIC_SEQ_CST);
	for (;;) {
		int n = epoll_wait(ep, evs, 64, -1);

		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;

			if (fd == l->stop_pipe[0]) {
				close(ep);
				return NULL;
			}
			if (fd == l->fd) {
				int c;

				struct sockaddr_storage peer;
				socklen_t plen = sizeof(peer);

				while ((c = accept4(l->fd, (struct sockaddr *)&peer, &plen,
						    SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
					int src = source_of(l, &peer);

					plen = sizeof(peer);
					bump_peak(&l->cur, &l->peak);
					__atomic_add_fetch(&l->accepted, 1, __ATOMIC_SEQ_CST);
					if (c < 65536)
						srcof[c] = (signed char)(src + 1);
					if (src >= 0) {
						bump_peak(&l->src_cur[src], &l->src_peak[src]);
						__atomic_add_fetch(&l->src_accepted[src], 1, __ATOMIC_SEQ_CST);
					}
					ev.events = EPOLLIN;
					ev.data.fd = c;
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
				}
				continue;
			}
			char b;
			ssize_t r = read(fd, &b, 1);

			if (r < 0 && errno == EAGAIN)
				continue;
			/* "b" (goodbye) or EOF: the session is over for us. */
			__atomic_sub_fetch(&l->cur, 1, __ATOMIC_SEQ_CST);
			if (fd < 65536 && srcof[fd] > 0)
				__atomic_sub_fetch(&l->src_cur[srcof[fd] - 1], 1, __ATOMIC_SEQ_CST);
			if (fd < 65536)
				srcof[fd] = 0;
			if (r == 1 && write(fd, "k", 1) != 1) {
				/* the client went away first: nothing to tell */
			}
			epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
			close(fd);
		}
	}
}

int listener_start(struct listener **out, int family, const char *addr, int port)
{
	struct sockaddr_storage ss;
	struct listener *l = NULL;
	unsigned len;
	int one = 1;

	*out = NULL;
	for (int i = 0; i < NLISTENERS && !l; i++)
		if (!in_use[i])
			l = &pool[i];
	if (!l)
		return -ENOSPC;
	memset(l, 0, sizeof(*l));
	if (sg_sockaddr(addr, (uint16_t)port, &ss, &len) || ss.ss_family != family)
		return -EINVAL;
	l->fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (l->fd < 0)
		return -errno;
	setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l->fd, (struct sockaddr *)&ss, len) || listen(l->fd, 1024) || pipe2(l->stop_pipe, O_CLOEXEC)) {
		int r = -errno;

		close(l->fd);
		return r;
	}
	if (pthread_create(&l->thread, NULL, listener_main, l)) {
		close(l->fd);
		return -EAGAIN;
	}
	/* Tests fork right after this: a fork while the new thread is still
	 * starting up can copy a lock of the sanitizers' allocator held by it,
	 * and the child then hangs in its first malloc (seen with ASan). */
	while (!__atomic_load_n(&l->ready, __ATOMIC_SEQ_CST))
		usleep(1000);
	in_use[l - pool] = true;
	*out = l;
	return 0;
}

void listener_stop(struct listener *l)
{
	if (!l || !in_use[l - pool])
		return;
	in_use[l - pool] = false;
	if (write(l->stop_pipe[1], "x", 1) == 1)
		pthread_join(l->thread, NULL);
	close(l->stop_pipe[0]);
	close(l->stop_pipe[1]);
	close(l->fd);
}

int tcp_connect(int family, const char *addr, int port)
{
	return tcp_connect_from(family, NULL, addr, port);
}

int tcp_connect_from(int family, const char *src, const char *addr, int port)
{
	struct sockaddr_storage ss, from;
	unsigned len, fromlen;
	int fd;

	if (sg_sockaddr(addr, (uint16_t)port, &ss, &len) || ss.ss_family != family ||
	    (src && (sg_sockaddr(src, 0, &from, &fromlen) || from.ss_family != family)))
		return -EINVAL;
	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if ((src && bind(fd, (struct sockaddr *)&from, fromlen)) ||
	    connect(fd, (struct sockaddr *)&ss, len)) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

int read_line(int fd, char *buf, size_t len, int timeout_ms)
{
	size_t n = 0;

	while (n + 1 < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, timeout_ms) <= 0 || read(fd, buf + n, 1) != 1)
			return -1;
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = '\0';
	return (int)n;
}

void tcp_bye(int fd)
{
	char k;

	if (write(fd, "b", 1) == 1 && read(fd, &k, 1) != 1) {
		/* the listener went away first: close anyway */
	}
	close(fd);
}
