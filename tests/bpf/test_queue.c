// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Root tests of the queue verdict: the real daemon with its waiting room,
 * real clients in a test cgroup, and a small line-based server standing in
 * for the provider that counts its concurrent sessions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "cidr.h"
#include "harness.h"

#define QCONF(cap, wait, ranges) \
	"[global]\nports = 2525\nbuiltin = no\nverdict = queue\n" \
	"[group lo]\nranges = " ranges "\ncap = " #cap "\nmax_cap = 100\nqueue_wait = " wait "\n"

/* The same, one cap for all sending addresses (per_source = no). */
#define QCONF_POOL(cap, wait, ranges) QCONF(cap, wait, ranges) "per_source = no\n"

#define CLIENTS 10

struct shared {
	int ok[64];              /* client i finished a whole session */
	int err[64];
	char reply[64][128];
	int order[64], norder;   /* server: HELO ids in session order */
	char from[64][64];       /* server: the client address of each HELO id */
	double connected[64];    /* client i's connect() returned (joined the room) */
	int accepted[64];        /* server: the accept order of client i's session */
	int naccepted;
	/* server-side concurrency: [0] in all, [1] from `bound`, [2] from elsewhere */
	int cur[3], peak[3];
	char bound[64];          /* the clients' bound address, as the server sees it */
};

static struct shared *sh;
static struct env E;
static struct server *running;      /* stopped by teardown if a test fails */

/* --- a provider stand-in: 220, then HELO <id> / QUIT, or echo mode --- */

struct server {
	int fd;
	pthread_t thread;
	bool echo;
	int hold_ms;
};

static double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void count_session(int k, int delta)
{
	int cur = __atomic_add_fetch(&sh->cur[k], delta, __ATOMIC_SEQ_CST);
	int peak = __atomic_load_n(&sh->peak[k], __ATOMIC_SEQ_CST);

	while (cur > peak && !__atomic_compare_exchange_n(&sh->peak[k], &peak, cur, false,
							  __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
		;
}

static void *session(void *arg)
{
	int fd = (int)((long)arg & 0xffffffff), seq = (int)((long)arg >> 32);
	char buf[65536], peer[64] = "";
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	bool quit = false;
	ssize_t n;
	int k;

	if (!getpeername(fd, (struct sockaddr *)&ss, &sslen))
		inet_ntop(ss.ss_family, ss.ss_family == AF_INET ?
			  (void *)&((struct sockaddr_in *)&ss)->sin_addr :
			  (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr, peer, sizeof(peer));
	k = strcmp(peer, sh->bound) ? 2 : 1;
	count_session(0, 1);
	count_session(k, 1);
	if (write(fd, "220 sim ready\r\n", 15) != 15)
		goto out;
	while ((n = read(fd, buf, sizeof(buf) - 1)) > 0) {
		buf[n] = '\0';
		if (!strncmp(buf, "HELO ", 5)) {
			int slot = __atomic_fetch_add(&sh->norder, 1, __ATOMIC_SEQ_CST);

			sh->order[slot] = atoi(buf + 5);
			if (sh->order[slot] >= 0 && sh->order[slot] < 64) {
				snprintf(sh->from[sh->order[slot]], sizeof(sh->from[0]), "%s", peer);
				sh->accepted[sh->order[slot]] = seq;
			}
			if (write(fd, "250 hi\r\n", 8) != 8)
				break;
		} else if (!strncmp(buf, "QUIT", 4)) {
			/* The session is over for the provider before the client
			 * hears 221, so before its close can free a slot. */
			count_session(0, -1);
			count_session(k, -1);
			quit = true;
			if (write(fd, "221 bye\r\n", 9) != 9)
				break;
		} else if (write(fd, buf, (size_t)n) != n) {   /* echo */
			break;
		}
	}
out:
	/* EOF from the relay: the session is over for the provider. */
	if (!quit) {
		count_session(0, -1);
		count_session(k, -1);
	}
	close(fd);
	return NULL;
}

static void *server_main(void *arg)
{
	struct server *s = arg;
	int fd;

	while ((fd = accept(s->fd, NULL, NULL)) >= 0) {
		pthread_t t;

		/* the accept order rides in the upper bits of the argument */
		long arg = fd | (long)__atomic_fetch_add(&sh->naccepted, 1, __ATOMIC_SEQ_CST) << 32;

		if (pthread_create(&t, NULL, session, (void *)arg) == 0)
			pthread_detach(t);
	}
	return NULL;
}

static int server_start(struct server *s, int family, const char *addr)
{
	struct sockaddr_storage ss;
	unsigned len;
	int one = 1;

	if (sg_sockaddr(addr, TEST_PORT, &ss, &len) || ss.ss_family != family)
		return -EINVAL;
	s->fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s->fd, (struct sockaddr *)&ss, len) || listen(s->fd, 128)) {
		close(s->fd);
		return -errno;
	}
	if (pthread_create(&s->thread, NULL, server_main, s))
		return -1;
	running = s;
	return 0;
}

static void server_stop(struct server *s)
{
	running = NULL;
	shutdown(s->fd, SHUT_RDWR);
	pthread_join(s->thread, NULL);
	close(s->fd);
}

/* --- clients --- */

struct client {
	int id, family, hold_ms;
	const char *addr;
	const char *src;         /* bind to this first; NULL: unbound */
};

static void *client_main(void *arg)
{
	struct client *c = arg;
	char line[128], helo[32];
	int fd = tcp_connect_from(c->family, c->src, c->addr, TEST_PORT);

	if (fd < 0) {
		sh->err[c->id] = -fd;
		return NULL;
	}
	sh->connected[c->id] = mono();
	if (read_line(fd, line, sizeof(line), 10000) < 0) {
		sh->err[c->id] = ETIMEDOUT;
		close(fd);
		return NULL;
	}
	snprintf(sh->reply[c->id], sizeof(sh->reply[0]), "%s", line);
	if (strncmp(line, "220", 3)) {
		close(fd);
		return NULL;
	}
	snprintf(helo, sizeof(helo), "HELO %d\r\n", c->id);
	if (write(fd, helo, strlen(helo)) < 0 || read_line(fd, line, sizeof(line), 5000) < 0)
		goto out;
	usleep((useconds_t)c->hold_ms * 1000);
	if (write(fd, "QUIT\r\n", 6) < 0 || read_line(fd, line, sizeof(line), 5000) < 0 ||
	    strncmp(line, "221", 3))
		goto out;
	sh->ok[c->id] = 1;
out:
	close(fd);
	return NULL;
}

struct crowd {
	int n, family, hold_ms;
	const char *addr;
	const char *src;         /* even clients bind to it, odd ones do not */
};

/* Clients connect one after the other (5 ms apart) and then hold. */
static int child_crowd(void *arg)
{
	struct crowd *cr = arg;
	struct client c[64];
	pthread_t t[64];

	for (int i = 0; i < cr->n; i++) {
		c[i] = (struct client){ i, cr->family, cr->hold_ms, cr->addr, i % 2 ? NULL : cr->src };
		pthread_create(&t[i], NULL, client_main, &c[i]);
		usleep(5000);
	}
	for (int i = 0; i < cr->n; i++)
		pthread_join(t[i], NULL);
	return 0;
}

static int setup(void **state)
{
	(void)state;
	memset(sh, 0, sizeof(*sh));
	return env_setup(&E) ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	if (running)
		server_stop(running);
	env_teardown(&E);
	return 0;
}

/* Run fn in the test's netns (if it has one), then come back. */
static int in_env_netns(int (*fn)(void *), void *arg)
{
	int self, r;

	if (!E.netns[0])
		return fn(arg);
	self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0 || env_enter_netns(&E)) {
		if (self >= 0)
			close(self);
		return -1;
	}
	r = fn(arg);
	if (setns(self, CLONE_NEWNET))
		r = -1;
	close(self);
	return r;
}

struct server_args {
	struct server *srv;
	int family;
	const char *addr;
	char *choice;            /* out: the kernel's source address for addr */
};

static int start_server_here(void *arg)
{
	struct server_args *a = arg;
	struct sockaddr_storage ss, me;
	socklen_t melen = sizeof(me);
	unsigned len;
	int fd;

	/* What an unbound socket leaves from: ask the kernel (a UDP connect
	 * chooses the source and sends nothing). */
	if (sg_sockaddr(a->addr, TEST_PORT, &ss, &len) ||
	    (fd = socket(a->family, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&ss, len) || getsockname(fd, (struct sockaddr *)&me, &melen)) {
		close(fd);
		return -1;
	}
	close(fd);
	inet_ntop(a->family, a->family == AF_INET ? (void *)&((struct sockaddr_in *)&me)->sin_addr :
		  (void *)&((struct sockaddr_in6 *)&me)->sin6_addr, a->choice, 64);
	return server_start(a->srv, a->family, a->addr);
}

/*
 * CLIENTS connect through a cap; those over it wait in the room. With src,
 * the even ones bind to it first: the server must see each session from
 * the address its client chose, and the unbound ones from the kernel's
 * choice, as without smtpgov. pools: 2 where the bound and the unbound
 * clients each have their own cap (per_source), else 1.
 */
static void crowd_test_from(int family, const char *client_addr, const char *server_addr,
			    const char *conf, int cap, const char *src, int pools)
{
	struct crowd cr = { CLIENTS, family, 60, client_addr, src };
	struct server srv = { 0 };
	char choice[64] = "";
	int sfamily = family == AF_INET6 && strncmp(client_addr, "::ffff:", 7) ? AF_INET6 : AF_INET;
	struct server_args sa = { &srv, sfamily, server_addr, choice };
	const struct sg_group *g;

	snprintf(sh->bound, sizeof(sh->bound), "%s",
		 !src ? "" : sfamily == AF_INET && !strncmp(src, "::ffff:", 7) ? src + 7 : src);
	env_config(&E, conf);
	assert_int_equal(env_daemon(&E, "--log /dev/null", true), 0);
	assert_int_equal(in_env_netns(start_server_here, &sa), 0);
	assert_int_equal(env_wait(&E, env_spawn(&E, child_crowd, &cr)), 0);
	/* the last relay closes a moment after its client */
	g = env_group(&E, "lo");
	for (int i = 0; i < 200 && __atomic_load_n(&g->live, __ATOMIC_SEQ_CST); i++)
		usleep(5000);
	server_stop(&srv);
	for (int i = 0; i < CLIENTS; i++) {
		if (!sh->ok[i])
			fail_msg("client %d: errno %d, reply '%s'", i, sh->err[i], sh->reply[i]);
	}
	print_message("queue: server peak %d (%d from %s, %d from elsewhere) of cap %d x %d; "
		      "%llu queued, p50 %u ms, p99 %u ms\n", sh->peak[0], sh->peak[1],
		      src ? sh->bound : "-", sh->peak[2], cap, pools, (unsigned long long)g->queued,
		      g->wait_p50_ms, g->wait_p99_ms);
	assert_true(sh->peak[0] <= cap * pools);
	assert_int_equal(sh->peak[0], cap * pools);    /* the slots were used */
	assert_true(sh->peak[1] <= cap);               /* per sending address */
	assert_true(sh->peak[2] <= cap);
	assert_true(g->queued >= (uint64_t)(CLIENTS - cap * pools));
	assert_int_equal(g->refused, 0);
	assert_int_equal(g->live, 0);
	assert_int_equal(g->waiting, 0);
	/* `events` shows connections entering and leaving the waiting room */
	char cmd[PATH_MAX + 256], ev[16384];
	FILE *p;
	size_t n;

	snprintf(cmd, sizeof(cmd), "timeout -s INT 0.5 %s --pin-dir %s events --json", smtpgov_bin(),
		 E.pin_dir);
	p = popen(cmd, "r");
	assert_non_null(p);
	n = fread(ev, 1, sizeof(ev) - 1, p);
	ev[n] = '\0';
	pclose(p);
	assert_non_null(strstr(ev, "\"event\":\"queued\""));
	assert_non_null(strstr(ev, "\"event\":\"dequeued\""));
	if (src) {
		char want[96];

		snprintf(want, sizeof(want), "\"source\":\"%s\"", sh->bound);
		assert_non_null(strstr(ev, want));
	}
	/* first come, first served, per queue: the server accepted the
	 * sessions in the order their clients' connects completed (the first
	 * `cap` clients of a queue go straight through, in either order) */
	assert_int_equal(sh->norder, CLIENTS);
	for (int q = 0; q < pools; q++) {
		int ids[CLIENTS], n = 0;

		for (int seq = 0; seq < sh->naccepted; seq++)
			for (int id = 0; id < CLIENTS; id++)
				if (sh->accepted[id] == seq && (pools == 1 || id % 2 == q))
					ids[n++] = id;
		for (int i = cap + 1; i < n; i++)
			if (sh->connected[ids[i]] < sh->connected[ids[i - 1]])
				fail_msg("client %d was connected upstream before client %d, which had "
					 "joined the room %.1f ms earlier", ids[i - 1], ids[i],
					 (sh->connected[ids[i - 1]] - sh->connected[ids[i]]) * 1000);
	}
	/* each session left from the address its client chose, or not */
	for (int i = 0; i < CLIENTS; i++) {
		const char *want = src && i % 2 == 0 ? src : choice;

		if (sfamily == AF_INET && !strncmp(want, "::ffff:", 7))
			want += 7;
		if (strcmp(sh->from[i], want))
			fail_msg("client %d (%s): the server saw it from %s, not %s", i,
				 src && i % 2 == 0 ? "bound" : "unbound", sh->from[i], want);
	}
	assert_int_equal(env_daemon_stop(&E, SIGTERM), 0);
}

static void crowd_test(int family, const char *client_addr, const char *server_addr,
		       const char *conf, int cap)
{
	crowd_test_from(family, client_addr, server_addr, conf, cap, NULL, 1);
}

static void test_queue_v4(void **state)
{
	(void)state;
	crowd_test(AF_INET, "127.0.0.2", "127.0.0.2", QCONF(2, "30s", "127.0.0.2/32"), 2);
}

static void test_queue_v4_mapped(void **state)
{
	(void)state;
	crowd_test(AF_INET6, "::ffff:127.0.0.2", "127.0.0.2", QCONF(3, "30s", "127.0.0.2/32"), 3);
}

static void test_queue_v6(void **state)
{
	(void)state;
	crowd_test(AF_INET6, "::1", "::1", QCONF(2, "30s", "::1/128"), 2);
}

/* --- the relayed connection leaves from the MTA's bound address --- */

static void test_source_v4(void **state)
{
	(void)state;
	crowd_test_from(AF_INET, "127.0.9.2", "127.0.9.2", QCONF(1, "30s", "127.0.9.2/32"), 1,
			"127.0.0.77", 2);
}

static void test_source_v4_one_pool(void **state)
{
	(void)state;
	crowd_test_from(AF_INET, "127.0.9.2", "127.0.9.2", QCONF_POOL(1, "30s", "127.0.9.2/32"), 1,
			"127.0.0.77", 1);
}

static void test_source_v4_mapped(void **state)
{
	(void)state;
	crowd_test_from(AF_INET6, "::ffff:127.0.9.2", "127.0.9.2", QCONF(1, "30s", "127.0.9.2/32"), 1,
			"::ffff:127.0.0.77", 2);
}

static void test_source_v6(void **state)
{
	char cmd[256];

	(void)state;
	assert_int_equal(env_netns(&E, "2001:db8::25"), 0);
	snprintf(cmd, sizeof(cmd), "ip -n %s addr add 2001:db8::77/128 dev lo nodad", E.netns);
	assert_int_equal(system(cmd), 0);
	crowd_test_from(AF_INET6, "2001:db8::25", "2001:db8::25", QCONF(1, "30s", "2001:db8::25/128"), 1,
			"2001:db8::77", 2);
}

/* --- held past queue_wait: smtpgov's own 421 --- */

static int child_expire(void *arg)
{
	int fd = tcp_connect(AF_INET, "127.0.0.2", TEST_PORT);
	double t0 = mono();

	(void)arg;
	if (fd < 0)
		return 2;                     /* held, not refused */
	if (read_line(fd, sh->reply[1], sizeof(sh->reply[1]), 5000) < 0)
		return 3;
	sh->err[1] = (int)((mono() - t0) * 1000);
	close(fd);
	return 0;
}

static void test_wait_expiry(void **state)
{
	struct crowd first = { 1, AF_INET, 3000, "127.0.0.2", NULL };
	struct server srv = { 0 };
	pid_t holder;

	(void)state;
	env_config(&E, QCONF(1, "1s", "127.0.0.2/32"));
	assert_int_equal(env_daemon(&E, "--log /dev/null", true), 0);
	assert_int_equal(server_start(&srv, AF_INET, "127.0.0.2"), 0);
	holder = env_spawn(&E, child_crowd, &first);
	for (int i = 0; i < 200 && !sh->norder; i++)
		usleep(10000);
	assert_int_equal(sh->norder, 1);
	assert_int_equal(env_wait(&E, env_spawn(&E, child_expire, NULL)), 0);
	print_message("expiry after %d ms: %s", sh->err[1], sh->reply[1]);
	assert_true(sh->err[1] >= 800);
	assert_non_null(strstr(sh->reply[1], "421 4.4.5 smtpgov: held this connection"));
	assert_int_equal(env_group(&E, "lo")->queue_timeouts, 1);
	assert_int_equal(env_wait(&E, holder), 0);
	assert_int_equal(sh->ok[0], 1);
	server_stop(&srv);
}

/* --- the daemon dies: over-cap connects are refused again, quickly --- */

static int child_probe(void *arg)
{
	int *ms = arg;
	double t0 = mono();

	/* the first connect takes the only slot and stays open */
	if (tcp_connect(AF_INET, "127.0.0.2", TEST_PORT) < 0)
		return 2;
	for (;;) {
		int fd = tcp_connect(AF_INET, "127.0.0.2", TEST_PORT);

		if (fd == -EPERM) {
			*ms = (int)((mono() - t0) * 1000);
			return 0;
		}
		if (fd >= 0)
			close(fd);
		if (mono() - t0 > 5)
			return 3;
		usleep(2000);
	}
}

static void test_daemon_gone_refuses(void **state)
{
	struct server srv = { 0 };
	int *ms = (int *)&sh->err[0];
	pid_t pid;

	(void)state;
	env_config(&E, QCONF(1, "30s", "127.0.0.2/32"));
	assert_int_equal(env_daemon(&E, "--log /dev/null", true), 0);
	assert_int_equal(server_start(&srv, AF_INET, "127.0.0.2"), 0);
	assert_int_equal(env_daemon_stop(&E, SIGKILL), -1);
	pid = env_spawn(&E, child_probe, ms);
	assert_int_equal(env_wait(&E, pid), 0);
	print_message("daemon killed: over-cap connect refused after %d ms\n", *ms);
	assert_true(*ms < 1000);
	server_stop(&srv);
}

/* --- bytes pass both ways untouched (what STARTTLS needs) --- */

static int child_bulk(void *arg)
{
	static unsigned char out[1 << 20], in[1 << 20];
	size_t got = 0, sent = 0;
	char line[128];
	int fd = tcp_connect(AF_INET, "127.0.0.2", TEST_PORT);

	(void)arg;
	if (fd < 0 || read_line(fd, line, sizeof(line), 5000) < 0)
		return 2;
	srand(42);
	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (unsigned char)(rand() & 0xff);
	for (size_t i = 0; i < sizeof(out); i++)   /* keep clear of the server's commands */
		if (out[i] == 'H' || out[i] == 'Q')
			out[i] = 'x';
	while (got < sizeof(in)) {
		struct pollfd p = { .fd = fd, .events = POLLIN | (sent < sizeof(out) ? POLLOUT : 0) };

		if (poll(&p, 1, 5000) <= 0)
			return 3;
		if (p.revents & POLLOUT) {
			ssize_t n = write(fd, out + sent, sizeof(out) - sent > 4096 ? 4096 : sizeof(out) - sent);

			if (n > 0)
				sent += (size_t)n;
		}
		if (p.revents & POLLIN) {
			ssize_t n = read(fd, in + got, sizeof(in) - got);

			if (n <= 0)
				return 4;
			got += (size_t)n;
		}
	}
	close(fd);
	return memcmp(in, out, sizeof(in)) ? 5 : 0;
}

static void test_bytes_intact(void **state)
{
	struct crowd hold = { 1, AF_INET, 2000, "127.0.0.2", NULL };
	struct server srv = { 0 };
	pid_t holder;

	(void)state;
	env_config(&E, QCONF(1, "30s", "127.0.0.2/32"));
	assert_int_equal(env_daemon(&E, "--log /dev/null", true), 0);
	assert_int_equal(server_start(&srv, AF_INET, "127.0.0.2"), 0);
	holder = env_spawn(&E, child_crowd, &hold);   /* takes the slot for 2 s */
	for (int i = 0; i < 200 && !sh->norder; i++)
		usleep(10000);
	/* this one is queued, then relayed: 1 MiB each way must arrive intact */
	assert_int_equal(env_wait(&E, env_spawn(&E, child_bulk, NULL)), 0);
	assert_true(env_group(&E, "lo")->queued >= 1);
	env_wait(&E, holder);
	server_stop(&srv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_queue_v4, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_v4_mapped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_v6, setup, teardown),
		cmocka_unit_test_setup_teardown(test_source_v4, setup, teardown),
		cmocka_unit_test_setup_teardown(test_source_v4_one_pool, setup, teardown),
		cmocka_unit_test_setup_teardown(test_source_v4_mapped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_source_v6, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wait_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_daemon_gone_refuses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bytes_intact, setup, teardown),
	};

	if (geteuid() != 0) {
		fprintf(stderr, "test_queue: needs root\n");
		return 77;
	}
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return 1;
	return cmocka_run_group_tests_name("queue verdict", tests, NULL, NULL);
}
