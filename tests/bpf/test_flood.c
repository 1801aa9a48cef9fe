// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Root test: a flood on the waiting room. 10,000 connects arrive for one
 * group in a burst, more than its queue_max (the default, 1000) and many
 * times the daemon's file-descriptor limit (512 here, so that the room
 * cannot take them all in). Observable truth:
 *  - the kernel holds exactly queue_max in the room and refuses the rest
 *    with EPERM (the two within the cap go straight through);
 *  - while they wait, another group's connections are served;
 *  - the daemon does not spin on its listener, says it cannot raise its
 *    open-file limit, and its memory stays within what it reports;
 *  - then every held connection is served, in the order it arrived, and
 *    the counts return to 0. (The provider here serves one session at a
 *    time; concurrency against the cap is test_queue's.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "cidr.h"
#include "harness.h"

#define BURST      10000
#define QUEUE_MAX  1000          /* the default queue_max */
#define CAP        2             /* the default cap of a group */
#define HELD       (CAP + QUEUE_MAX)
#define OTHERS     5
#define DAEMON_FDS 512
/* What the room holds at once under that limit: (512 - 128 reserved) / 2. */
#define ROOM_HOLDS 192

/* Defaults everywhere but the test's own addresses and port. */
#define CONF "[global]\nports = 2525\nbuiltin = no\nverdict = queue\n" \
	     "[group lo]\nranges = 127.0.12.1/32\n[group other]\nranges = 127.0.12.2/32\n"

struct shared {
	int admitted, refused, other_err;   /* the burst's connect() results */
	int burst_done, others_ok, others_done, go;
	int served, failed;
	int order[HELD + 16], norder;       /* server: HELO ids in session order */
};

static struct shared *sh;
static struct env E;

/* --- the providers: one session at a time, 220 / HELO id / QUIT --- */

struct server {
	int fd;
	pthread_t thread;
	bool gated, record;      /* gated: serve only once sh->go is set; record the order */
	const char *addr;
};

static void serve(struct server *s, int fd)
{
	char line[128];

	if (write(fd, "220 sim\r\n", 9) == 9 && read_line(fd, line, sizeof(line), 10000) > 0 &&
	    !strncmp(line, "HELO ", 5)) {
		if (s->record && sh->norder < HELD + 16)
			sh->order[sh->norder++] = atoi(line + 5);
		if (write(fd, "250 hi\r\n", 8) == 8 && read_line(fd, line, sizeof(line), 10000) > 0 &&
		    !strncmp(line, "QUIT", 4) && write(fd, "221 bye\r\n", 9) == 9)
			read_line(fd, line, sizeof(line), 10000);   /* until the relay's EOF */
	}
	close(fd);
}

static void *server_main(void *arg)
{
	struct server *s = arg;
	int fd;

	while (s->gated && !__atomic_load_n(&sh->go, __ATOMIC_SEQ_CST))
		usleep(1000);
	while ((fd = accept(s->fd, NULL, NULL)) >= 0)
		serve(s, fd);
	return NULL;
}

static int server_start(struct server *s)
{
	struct sockaddr_storage ss;
	unsigned len;
	int one = 1;

	if (sg_sockaddr(s->addr, TEST_PORT, &ss, &len))
		return -EINVAL;
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s->fd, (struct sockaddr *)&ss, len) || listen(s->fd, 128))
		return -errno;
	return pthread_create(&s->thread, NULL, server_main, s) ? -1 : 0;
}

static void server_stop(struct server *s)
{
	__atomic_store_n(&sh->go, 1, __ATOMIC_SEQ_CST);
	shutdown(s->fd, SHUT_RDWR);
	pthread_join(s->thread, NULL);
	close(s->fd);
}

/* --- the MTA: the burst, other-group sessions, then every session --- */

static int nb_connect(const char *addr)
{
	struct sockaddr_storage ss;
	unsigned len;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0 || sg_sockaddr(addr, TEST_PORT, &ss, &len))
		return -EMFILE;
	if (connect(fd, (struct sockaddr *)&ss, len) && errno != EINPROGRESS) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

/* A whole session on a blocking socket. */
static bool session(int fd, int id)
{
	char line[128], helo[32];

	snprintf(helo, sizeof(helo), "HELO %d\r\n", id);
	return read_line(fd, line, sizeof(line), 10000) > 0 && !strncmp(line, "220", 3) &&
	       write(fd, helo, strlen(helo)) > 0 && read_line(fd, line, sizeof(line), 10000) > 0 &&
	       write(fd, "QUIT\r\n", 6) == 6 && read_line(fd, line, sizeof(line), 10000) > 0 &&
	       !strncmp(line, "221", 3);
}

struct mta_conn {
	int fd, step;            /* 0: want 220, 1: want 250, 2: want 221 */
	char buf[64];
	size_t len;
};

/* Drive every held connection's session from one epoll loop. */
static void run_sessions(struct mta_conn *c, int n)
{
	int ep = epoll_create1(EPOLL_CLOEXEC), open = 0;
	struct epoll_event evs[256];

	for (int i = 0; i < n; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };

		if (c[i].fd >= 0 && !epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev))
			open++;
	}
	while (open > 0) {
		int k = epoll_wait(ep, evs, 256, 30000);

		if (k <= 0)
			break;                    /* stalled: the rest count as failed */
		for (int e = 0; e < k; e++) {
			struct mta_conn *m = &c[evs[e].data.u32];
			ssize_t r = read(m->fd, m->buf + m->len, sizeof(m->buf) - 1 - m->len);
			char *nl, msg[32];

			if (r <= 0) {
				sh->failed++;
				goto done;
			}
			m->len += (size_t)r;
			m->buf[m->len] = '\0';
			if (!(nl = strchr(m->buf, '\n')))
				continue;
			if (strncmp(m->buf, m->step == 0 ? "220" : m->step == 1 ? "250" : "221", 3)) {
				sh->failed++;
				goto done;
			}
			m->len = 0;
			if (m->step == 2) {
				sh->served++;
				goto done;
			}
			if (m->step++ == 0)
				snprintf(msg, sizeof(msg), "HELO %u\r\n", evs[e].data.u32);
			else
				snprintf(msg, sizeof(msg), "QUIT\r\n");
			if (write(m->fd, msg, strlen(msg)) < 0) {
				sh->failed++;
				goto done;
			}
			continue;
done:
			epoll_ctl(ep, EPOLL_CTL_DEL, m->fd, NULL);
			close(m->fd);
			m->fd = -1;
			open--;
		}
	}
	close(ep);
}

static int child_flood(void *arg)
{
	struct rlimit rl = { BURST + 256, BURST + 256 };
	struct mta_conn *c = calloc(BURST, sizeof(*c));
	int n = 0;

	(void)arg;
	if (!c || setrlimit(RLIMIT_NOFILE, &rl))
		return 2;
	for (int i = 0; i < BURST; i++) {
		int fd = nb_connect("127.0.12.1");

		if (fd >= 0) {
			c[n++].fd = fd;       /* ids are the order of admission */
			sh->admitted++;
		} else if (fd == -EPERM) {
			sh->refused++;
		} else {
			sh->other_err++;
		}
	}
	__atomic_store_n(&sh->burst_done, 1, __ATOMIC_SEQ_CST);
	/* The flood waits; another group's mail flows. */
	for (int i = 0; i < OTHERS; i++) {
		int fd = tcp_connect(AF_INET, "127.0.12.2", TEST_PORT);

		if (fd >= 0 && session(fd, 100000 + i))
			sh->others_ok++;
		if (fd >= 0)
			close(fd);
	}
	__atomic_store_n(&sh->others_done, 1, __ATOMIC_SEQ_CST);
	while (!__atomic_load_n(&sh->go, __ATOMIC_SEQ_CST))
		usleep(1000);
	run_sessions(c, n);
	free(c);
	return 0;
}

/* --- the daemon, seen from /proc --- */

static long proc_status_kb(pid_t pid, const char *key)
{
	char path[64], line[256];
	long v = -1;
	FILE *fp;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (!(fp = fopen(path, "r")))
		return -1;
	while (fgets(line, sizeof(line), fp))
		if (!strncmp(line, key, strlen(key)))
			v = atol(line + strlen(key));
	fclose(fp);
	return v;
}

static long cpu_ticks(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *fp;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (!(fp = fopen(path, "r")))
		return -1;
	p = fgets(buf, sizeof(buf), fp) ? strrchr(buf, ')') : NULL;
	fclose(fp);
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (long)(ut + st);
}

static bool wait_for(int *flag, int seconds)
{
	for (int i = 0; i < seconds * 100 && !__atomic_load_n(flag, __ATOMIC_SEQ_CST); i++)
		usleep(10000);
	return __atomic_load_n(flag, __ATOMIC_SEQ_CST);
}

static void test_flood(void **state)
{
	struct server lo = { .addr = "127.0.12.1", .gated = true, .record = true };
	struct server other = { .addr = "127.0.12.2" };
	char extra[PATH_MAX + 64], logpath[PATH_MAX + 16], *log = NULL;
	long rss0, rss1, cpu0, cpu1;
	const struct sg_group *g;
	size_t loglen = 0;
	pid_t kid;
	FILE *fp;

	(void)state;
	env_config(&E, CONF);
	/* A daemon whose limit cannot be raised (the hard limit is 512 too). */
	E.wrap = "prlimit --nofile=512:512 --";
	snprintf(logpath, sizeof(logpath), "%s/daemon.log", E.tmp);
	snprintf(extra, sizeof(extra), "--log /dev/null 2>%s", logpath);
	assert_int_equal(env_daemon(&E, extra, true), 0);
	assert_int_equal(server_start(&lo), 0);
	assert_int_equal(server_start(&other), 0);
	g = env_group(&E, "lo");
	rss0 = proc_status_kb(E.daemon, "VmRSS:");

	kid = env_spawn(&E, child_flood, NULL);
	assert_true(wait_for(&sh->burst_done, 60));
	print_message("burst of %d: %d admitted (to the provider or the room), %d refused (EPERM), "
		      "%d other errors\n", BURST, sh->admitted, sh->refused, sh->other_err);
	assert_int_equal(sh->admitted, HELD);
	assert_int_equal(sh->refused, BURST - HELD);
	assert_int_equal(sh->other_err, 0);
	assert_int_equal(__atomic_load_n(&g->waiting, __ATOMIC_SEQ_CST), QUEUE_MAX);

	/* Held: the other group flows meanwhile, the daemon idles. */
	assert_true(wait_for(&sh->others_done, 60));
	assert_int_equal(sh->others_ok, OTHERS);
	usleep(300000);
	cpu0 = cpu_ticks(E.daemon);
	usleep(1000000);
	cpu1 = cpu_ticks(E.daemon);
	rss1 = proc_status_kb(E.daemon, "VmRSS:");
	print_message("daemon while %d wait: %ld ms CPU in 1 s, VmRSS %ld -> %ld KiB\n", QUEUE_MAX,
		      (cpu1 - cpu0) * 1000 / sysconf(_SC_CLK_TCK), rss0, rss1);
	assert_int_equal(__atomic_load_n(&g->waiting, __ATOMIC_SEQ_CST), QUEUE_MAX);
	assert_int_equal(sh->norder, 0);
	assert_true(kill(E.daemon, 0) == 0);
	assert_true((cpu1 - cpu0) * 1000 / sysconf(_SC_CLK_TCK) < 200);  /* no spinning */
	/* what it holds costs a few hundred bytes a connection, no buffers */
	assert_true(rss1 - rss0 < 4096);

	/* Served: all of them, first come first served, within the cap. */
	__atomic_store_n(&sh->go, 1, __ATOMIC_SEQ_CST);
	assert_int_equal(env_wait(&E, kid), 0);
	print_message("served %d of %d, %d failed\n", sh->served, HELD, sh->failed);
	assert_int_equal(sh->served, HELD);
	assert_int_equal(sh->failed, 0);
	assert_int_equal(sh->norder, HELD);
	for (int i = 0; i < HELD; i++)
		if (sh->order[i] != i)
			fail_msg("session %d was connection %d", i, sh->order[i]);
	for (int i = 0; i < 200 && (g->live || g->waiting); i++)
		usleep(10000);
	assert_int_equal(g->live, 0);
	assert_int_equal(g->waiting, 0);
	server_stop(&lo);
	server_stop(&other);
	assert_int_equal(env_daemon_stop(&E, SIGTERM), 0);

	/* It said what it could not do, and what it holds at most. */
	assert_non_null(fp = fopen(logpath, "r"));
	assert_true(getdelim(&log, &loglen, '\0', fp) > 0);
	fclose(fp);
	if (!strstr(log, "open-file limit 512 (hard limit 512) is below") ||
	    !strstr(log, "at most 192 connections at once"))
		fail_msg("daemon log lacks the limit lines:\n%s", log);
	free(log);
}

/* One test: sh starts zeroed (a fresh mapping). */
static int setup(void **state)
{
	(void)state;
	return env_setup(&E) ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	__atomic_store_n(&sh->go, 1, __ATOMIC_SEQ_CST);   /* let a gated server go */
	env_teardown(&E);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_flood, setup, teardown),
	};

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
