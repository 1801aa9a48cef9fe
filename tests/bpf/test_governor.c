// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Root integration tests of the kernel governor: real BPF programs attached
 * by the real CLI to a fresh cgroup, real sockets on loopback (and in a
 * network namespace for IPv6). Each test asserts what connect() returned,
 * what a listener saw and what the kernel's counters say.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "harness.h"
#include "kernel_int.h"   /* the drift test writes counters as a lost release would */

#define LO_CONF(cap) \
	"[global]\nports = 2525\nbuiltin = no\n" \
	"[group lo]\nranges = 127.0.0.2/32 127.0.0.3/32 2001:db8::/32\ncap = " #cap "\nmax_cap = 100\n"

/* Results children hand back to the test (shared memory). */
struct shared {
	int err[256];        /* 0 or errno of each connect, in order */
	int n;
	int live[16];        /* groups[lo].live seen by the child at checkpoints */
	int ready;
	int cur, peak;       /* client-side concurrency */
	int other_errors;
	int listener_peak, listener_accepted;
};

static struct shared *sh;
static struct env E;

static int setup(void **state)
{
	(void)state;
	memset(sh, 0, sizeof(*sh));
	if (env_setup(&E)) {
		fprintf(stderr, "env_setup: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	env_teardown(&E);
	return 0;
}

static void record(int r)
{
	sh->err[sh->n++] = r < 0 ? -r : 0;
}

static int lo_live(void)
{
	return __atomic_load_n(&env_group(&E, "lo")->live, __ATOMIC_SEQ_CST);
}

/* Load conf (with extra load options), listen on 127.0.0.2, and run child
 * in the cgroup to its end. */
static void load_and_run(const char *conf, const char *extra, int (*child)(void *),
			 struct listener **l)
{
	env_config(&E, conf);
	assert_int_equal(env_load(&E, extra), 0);
	assert_int_equal(listener_start(l, AF_INET, "127.0.0.2", TEST_PORT), 0);
	assert_int_equal(env_wait(&E, env_spawn(&E, child, NULL)), 0);
	listener_stop(*l);
}

/* --- cap N admits exactly N; the N+1st gets EPERM; a close admits the next --- */

static int child_cap(void *arg)
{
	int fds[4];

	(void)arg;
	for (int i = 0; i < 4; i++) {
		fds[i] = tcp_connect(AF_INET, "127.0.0.2", TEST_PORT);
		record(fds[i]);
	}
	sh->live[0] = lo_live();
	tcp_bye(fds[0]);
	sh->live[1] = lo_live();
	fds[0] = tcp_connect(AF_INET, "127.0.0.2", TEST_PORT);
	record(fds[0]);
	sh->live[2] = lo_live();
	return 0;
}

static void test_cap_admits_exactly_n(void **state)
{
	struct listener *l;
	const struct sg_group *g;

	(void)state;
	load_and_run(LO_CONF(3), NULL, child_cap, &l);

	assert_int_equal(sh->n, 5);
	assert_int_equal(sh->err[0], 0);
	assert_int_equal(sh->err[1], 0);
	assert_int_equal(sh->err[2], 0);
	assert_int_equal(sh->err[3], EPERM);
	assert_int_equal(sh->err[4], 0);      /* the freed slot is taken */
	assert_int_equal(sh->live[0], 3);
	assert_int_equal(sh->live[1], 2);
	assert_int_equal(sh->live[2], 3);
	g = env_group(&E, "lo");
	assert_non_null(g);
	assert_int_equal(g->live, 0);         /* child exited: all released */
	assert_int_equal(g->admitted, 4);
	assert_int_equal(g->refused, 1);
	assert_int_equal(l->accepted, 4);
	assert_true(l->peak <= 3);
}

/* --- 64 threads racing against cap 4 --- */

#define RACE_THREADS 64
#define RACE_ROUNDS 40

/* arg: the address to bind to first, NULL for unbound sockets */
static void *race_thread(void *arg)
{
	const char *src = arg;

	for (int i = 0; i < RACE_ROUNDS; i++) {
		int fd = tcp_connect_from(AF_INET, src, "127.0.0.2", TEST_PORT);

		if (fd >= 0) {
			int cur = __atomic_add_fetch(&sh->cur, 1, __ATOMIC_SEQ_CST);
			int peak = __atomic_load_n(&sh->peak, __ATOMIC_SEQ_CST);

			while (cur > peak && !__atomic_compare_exchange_n(&sh->peak, &peak, cur, false,
						__ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
				;
			usleep(200);
			__atomic_sub_fetch(&sh->cur, 1, __ATOMIC_SEQ_CST);
			tcp_bye(fd);
		} else if (fd == -EPERM) {
			usleep(50);
		} else {
			__atomic_add_fetch(&sh->other_errors, 1, __ATOMIC_SEQ_CST);
		}
	}
	return NULL;
}

static int child_race(void *arg)
{
	pthread_t t[RACE_THREADS];

	(void)arg;
	for (int i = 0; i < RACE_THREADS; i++)
		if (pthread_create(&t[i], NULL, race_thread, NULL))
			return 1;
	for (int i = 0; i < RACE_THREADS; i++)
		pthread_join(t[i], NULL);
	return 0;
}

static void test_race_never_exceeds_cap(void **state)
{
	struct listener *l;
	const struct sg_group *g;

	(void)state;
	load_and_run(LO_CONF(4), NULL, child_race, &l);
	g = env_group(&E, "lo");

	print_message("race: listener peak %d, accepted %d; admitted %llu, refused %llu\n",
		      l->peak, l->accepted, (unsigned long long)g->admitted,
		      (unsigned long long)g->refused);
	assert_int_equal(sh->other_errors, 0);
	assert_true(l->peak <= 4);
	assert_true(l->peak >= 2);             /* the race really ran concurrently */
	assert_true(sh->peak <= 4);
	assert_true(g->refused > 0);
	assert_int_equal(g->admitted, (uint64_t)l->accepted);
	assert_int_equal(g->admitted + g->refused, RACE_THREADS * RACE_ROUNDS);
	assert_int_equal(g->live, 0);
}

/* --- per sending address: 64 threads from 4 bound addresses, cap 2 each --- */

#define SRC_CONF(per_source) \
	"[global]\nports = 2525\nbuiltin = no\n" \
	"[group lo]\nranges = 127.0.0.2/32\ncap = 2\nmax_cap = 100\nper_source = " per_source "\n"

static const char *const srcs[4] = { "127.0.0.71", "127.0.0.72", "127.0.0.73", "127.0.0.74" };

static int child_race_src(void *arg)
{
	pthread_t t[RACE_THREADS];

	(void)arg;
	for (int i = 0; i < RACE_THREADS; i++)
		if (pthread_create(&t[i], NULL, race_thread, (void *)srcs[i % 4]))
			return 1;
	for (int i = 0; i < RACE_THREADS; i++)
		pthread_join(t[i], NULL);
	return 0;
}

/* The kernel's slot for a sending address, by its `sources` map. */
static int source_slot(const char *addr)
{
	static struct sg_source v[SG_MAX_SOURCES];
	struct in_addr a;
	int n = sg_kernel_sources(&E.k, v, SG_MAX_SOURCES);

	inet_pton(AF_INET, addr, &a);
	for (int i = 0; i < n; i++)
		if (!memcmp(v[i].addr + 12, &a, 4) && v[i].addr[10] == 0xff)
			return (int)v[i].slot;
	return -1;
}

static void test_race_per_source(void **state)
{
	struct listener *l;
	const struct sg_group *g;
	int slot;

	(void)state;
	load_and_run(SRC_CONF("yes"), NULL, child_race_src, &l);
	g = env_group(&E, "lo");
	slot = sg_kernel_group(&E.k, "lo");
	print_message("race per source: listener peak %d in all; admitted %llu, refused %llu\n",
		      l->peak, (unsigned long long)g->admitted, (unsigned long long)g->refused);
	assert_int_equal(sh->other_errors, 0);
	assert_int_equal(l->nsrc, 4);
	for (int i = 0; i < 4; i++) {
		int li = listener_source(l, srcs[i]), ks = source_slot(srcs[i]);
		const struct sg_srccount *c;

		assert_true(li >= 0);
		assert_true(ks > 0);
		c = sg_kernel_srccount(&E.k, slot, (uint32_t)ks);
		print_message("  %s: listener peak %d, accepted %d; kernel admitted %llu\n", srcs[i],
			      l->src_peak[li], l->src_accepted[li], (unsigned long long)c->admitted);
		assert_true(l->src_peak[li] <= 2);       /* never more than the cap per source */
		assert_int_equal(c->admitted, (uint64_t)l->src_accepted[li]);
		assert_int_equal(c->live, 0);
	}
	assert_true(l->peak > 2);                      /* the sources did not share one cap */
	assert_true(l->peak <= 8);
	assert_true(g->refused > 0);
	assert_int_equal(g->admitted + g->refused, RACE_THREADS * RACE_ROUNDS);
	assert_int_equal(g->live, 0);
}

static void test_race_one_pool(void **state)
{
	struct listener *l;
	const struct sg_group *g;

	(void)state;
	load_and_run(SRC_CONF("no"), NULL, child_race_src, &l);
	g = env_group(&E, "lo");
	print_message("race, per_source = no: listener peak %d in all, from %d addresses\n", l->peak,
		      l->nsrc);
	assert_int_equal(sh->other_errors, 0);
	assert_true(l->nsrc >= 2);   /* one pool: a source may lose every race, not all but one */
	assert_true(l->peak <= 2);                     /* one pool for every source */
	assert_int_equal(g->admitted, (uint64_t)l->accepted);
	assert_int_equal(g->live, 0);
}

static int child_hold_src(void *arg)
{
	(void)arg;
	for (int i = 0; i < 8; i++)
		record(tcp_connect_from(AF_INET, srcs[i % 4], "127.0.0.2", TEST_PORT));
	record(tcp_connect_from(AF_INET, srcs[0], "127.0.0.2", TEST_PORT));   /* a third: over */
	__atomic_store_n(&sh->ready, 1, __ATOMIC_SEQ_CST);
	for (;;)
		pause();
	return 0;
}

static void wait_ready(void);

static void test_sigkill_per_source(void **state)
{
	struct listener *l;
	int slot;
	pid_t pid;

	(void)state;
	env_config(&E, SRC_CONF("yes"));
	assert_int_equal(env_load(&E, NULL), 0);
	assert_int_equal(listener_start(&l, AF_INET, "127.0.0.2", TEST_PORT), 0);
	pid = env_spawn(&E, child_hold_src, NULL);
	wait_ready();
	slot = sg_kernel_group(&E.k, "lo");
	for (int i = 0; i < 8; i++)
		assert_int_equal(sh->err[i], 0);
	assert_int_equal(sh->err[8], EPERM);
	assert_int_equal(lo_live(), 8);
	for (int i = 0; i < 4; i++)
		assert_int_equal(sg_kernel_srccount(&E.k, slot, (uint32_t)source_slot(srcs[i]))->live, 2);
	kill(pid, SIGKILL);
	assert_int_equal(env_wait(&E, pid), -1);
	listener_stop(l);
	assert_int_equal(lo_live(), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(sg_kernel_srccount(&E.k, slot, (uint32_t)source_slot(srcs[i]))->live, 0);
}

/* --- beyond max_sources, a new address counts as the default source --- */

static int child_overflow(void *arg)
{
	(void)arg;
	record(tcp_connect_from(AF_INET, srcs[0], "127.0.0.2", TEST_PORT));   /* slot 1 */
	record(tcp_connect_from(AF_INET, srcs[1], "127.0.0.2", TEST_PORT));   /* slot 2 */
	record(tcp_connect_from(AF_INET, srcs[2], "127.0.0.2", TEST_PORT));   /* no slot: default */
	record(tcp_connect(AF_INET, "127.0.0.2", TEST_PORT));                 /* default is full */
	record(tcp_connect_from(AF_INET, srcs[3], "127.0.0.2", TEST_PORT));   /* default is full */
	return 0;
}

static void test_sources_bound(void **state)
{
	struct listener *l;
	struct sg_source_alloc a;
	char out[8192];

	(void)state;
	load_and_run("[global]\nports = 2525\nbuiltin = no\nmax_sources = 2\n"
		     "[group lo]\nranges = 127.0.0.2/32\ncap = 1\nmax_cap = 100\n", NULL, child_overflow, &l);
	assert_int_equal(sh->n, 5);
	assert_int_equal(sh->err[0], 0);
	assert_int_equal(sh->err[1], 0);
	assert_int_equal(sh->err[2], 0);
	assert_int_equal(sh->err[3], EPERM);
	assert_int_equal(sh->err[4], EPERM);
	assert_int_equal(source_slot(srcs[0]), 1);
	assert_int_equal(source_slot(srcs[1]), 2);
	assert_int_equal(source_slot(srcs[2]), -1);
	assert_int_equal(sg_kernel_source_alloc(&E.k, &a), 0);
	assert_int_equal(a.overflow, 2);   /* .73 and .74; the unbound one is default anyway */
	assert_int_equal(env_cli(&E, out, sizeof(out), "status"), 0);
	assert_non_null(strstr(out, "2 sending addresses of at most 2 counted apart; 2 connects from "
				    "addresses beyond that counted as default"));
}

/* --- SIGKILL of a process holding connections returns live to 0 --- */

static int child_hold(void *arg)
{
	int n = *(int *)arg;

	for (int i = 0; i < n; i++)
		record(tcp_connect(AF_INET, "127.0.0.2", TEST_PORT));
	__atomic_store_n(&sh->ready, 1, __ATOMIC_SEQ_CST);
	for (;;)
		pause();
	return 0;
}

static void wait_ready(void)
{
	for (int i = 0; i < 500 && !__atomic_load_n(&sh->ready, __ATOMIC_SEQ_CST); i++)
		usleep(10000);
	assert_int_equal(sh->ready, 1);
}

static void test_sigkill_releases(void **state)
{
	struct listener *l;
	int n = 3;
	pid_t pid;

	(void)state;
	env_config(&E, LO_CONF(5));
	assert_int_equal(env_load(&E, NULL), 0);
	assert_int_equal(listener_start(&l, AF_INET, "127.0.0.2", TEST_PORT), 0);
	pid = env_spawn(&E, child_hold, &n);
	wait_ready();
	assert_int_equal(lo_live(), 3);
	kill(pid, SIGKILL);
	assert_int_equal(env_wait(&E, pid), -1);
	listener_stop(l);
	assert_int_equal(sh->err[0] + sh->err[1] + sh->err[2], 0);
	assert_int_equal(lo_live(), 0);
}

/* --- ECONNREFUSED, then connect() again on the same socket: counted once --- */

static int child_refused_twice(void *arg)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(TEST_PORT) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	(void)arg;
	inet_pton(AF_INET, "127.0.0.3", &a.sin_addr);   /* in range, nobody listens */
	record(connect(fd, (struct sockaddr *)&a, sizeof(a)) ? -errno : 0);
	sh->live[0] = lo_live();
	record(connect(fd, (struct sockaddr *)&a, sizeof(a)) ? -errno : 0);
	sh->live[1] = lo_live();
	close(fd);
	sh->live[2] = lo_live();
	return 0;
}

static void test_reconnect_counts_once(void **state)
{
	const struct sg_group *g;

	(void)state;
	env_config(&E, LO_CONF(2));
	assert_int_equal(env_load(&E, NULL), 0);
	assert_int_equal(env_wait(&E, env_spawn(&E, child_refused_twice, NULL)), 0);
	g = env_group(&E, "lo");
	assert_int_equal(sh->err[0], ECONNREFUSED);
	assert_int_equal(sh->err[1], ECONNREFUSED);
	assert_int_equal(sh->live[0], 1);
	assert_int_equal(sh->live[1], 1);
	assert_int_equal(sh->live[2], 0);
	assert_int_equal(g->admitted, 1);
}

/* --- UDP, other ports, other ranges and other cgroups pass untouched --- */

static int child_untouched(void *arg)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(TEST_PORT) };
	int fd;

	(void)arg;
	inet_pton(AF_INET, "127.0.0.2", &a.sin_addr);
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	record(connect(fd, (struct sockaddr *)&a, sizeof(a)) ? -errno : 0);   /* UDP */
	close(fd);
	fd = tcp_connect(AF_INET, "127.0.0.2", TEST_PORT + 1);                 /* other port */
	record(fd);
	if (fd >= 0)
		tcp_bye(fd);
	fd = tcp_connect(AF_INET, "127.0.0.4", TEST_PORT);                     /* other range */
	record(fd);
	if (fd >= 0)
		tcp_bye(fd);
	record(tcp_connect(AF_INET, "127.0.0.2", TEST_PORT));                  /* governed */
	return 0;
}

static void test_untouched(void **state)
{
	struct listener *l1, *l2, *l3;
	int fd;

	(void)state;
	env_config(&E, LO_CONF(1));
	assert_int_equal(env_load(&E, NULL), 0);
	assert_int_equal(env_cli(&E, NULL, 0, "set lo --cap 0 --force"), 0);
	assert_int_equal(listener_start(&l1, AF_INET, "127.0.0.2", TEST_PORT), 0);
	assert_int_equal(listener_start(&l2, AF_INET, "127.0.0.2", TEST_PORT + 1), 0);
	assert_int_equal(listener_start(&l3, AF_INET, "127.0.0.4", TEST_PORT), 0);
	assert_int_equal(env_wait(&E, env_spawn(&E, child_untouched, NULL)), 0);
	fd = tcp_connect(AF_INET, "127.0.0.2", TEST_PORT);    /* this process: not in the cgroup */
	assert_true(fd >= 0);
	tcp_bye(fd);
	listener_stop(l1);
	listener_stop(l2);
	listener_stop(l3);
	assert_int_equal(sh->err[0], 0);
	assert_int_equal(sh->err[1], 0);
	assert_int_equal(sh->err[2], 0);
	assert_int_equal(sh->err[3], EPERM);
	assert_int_equal(l2->accepted, 1);
	assert_int_equal(l3->accepted, 1);
	assert_int_equal(l1->accepted, 1);        /* only the outsider's */
	assert_int_equal(env_group(&E, "lo")->admitted, 0);
	assert_int_equal(lo_live(), 0);
}

/* --- IPv6 in a network namespace, and IPv4-mapped IPv6 --- */

static int child_v6(void *arg)
{
	struct listener *l;

	(void)arg;
	if (listener_start(&l, AF_INET6, "2001:db8::25", TEST_PORT))
		return 2;
	for (int i = 0; i < 3; i++)
		record(tcp_connect(AF_INET6, "2001:db8::25", TEST_PORT));
	sh->live[0] = lo_live();
	usleep(20000);
	sh->listener_peak = l->peak;
	sh->listener_accepted = l->accepted;
	return 0;
}

static void test_ipv6_netns(void **state)
{
	(void)state;
	env_config(&E, LO_CONF(2));
	assert_int_equal(env_load(&E, NULL), 0);
	assert_int_equal(env_netns(&E, "2001:db8::25"), 0);
	assert_int_equal(env_wait(&E, env_spawn(&E, child_v6, NULL)), 0);
	assert_int_equal(sh->err[0], 0);
	assert_int_equal(sh->err[1], 0);
	assert_int_equal(sh->err[2], EPERM);
	assert_int_equal(sh->live[0], 2);
	assert_int_equal(sh->listener_accepted, 2);
	assert_int_equal(lo_live(), 0);
}

static int child_mapped(void *arg)
{
	(void)arg;
	record(tcp_connect(AF_INET6, "::ffff:127.0.0.2", TEST_PORT));
	record(tcp_connect(AF_INET6, "::ffff:127.0.0.2", TEST_PORT));
	sh->live[0] = lo_live();
	return 0;
}

static void test_v4_mapped(void **state)
{
	struct listener *l;

	(void)state;
	load_and_run(LO_CONF(1), NULL, child_mapped, &l);
	assert_int_equal(sh->err[0], 0);
	assert_int_equal(sh->err[1], EPERM);
	assert_int_equal(sh->live[0], 1);
	assert_int_equal(l->accepted, 1);
}

/* --- load twice: adopt without resetting live counts --- */

static void test_load_twice_adopts(void **state)
{
	struct listener *l;
	char out[4096];
	int n = 2;
	pid_t pid;

	(void)state;
	env_config(&E, LO_CONF(3));
	assert_int_equal(env_load(&E, NULL), 0);
	assert_int_equal(listener_start(&l, AF_INET, "127.0.0.2", TEST_PORT), 0);
	pid = env_spawn(&E, child_hold, &n);
	wait_ready();
	assert_int_equal(lo_live(), 2);
	assert_int_equal(env_cli(&E, NULL, 0, "set lo --cap 5"), 0);
	assert_int_equal(env_cli(&E, out, sizeof(out), "load --cgroup %s --config %s --no-follow",
				 E.cgroup, E.conf), 0);
	assert_non_null(strstr(out, "adopted"));
	assert_int_equal(lo_live(), 2);
	assert_int_equal(env_group(&E, "lo")->cap, 5);      /* what was set is kept */
	kill(pid, SIGKILL);
	env_wait(&E, pid);
	listener_stop(l);
	assert_int_equal(lo_live(), 0);
	/* a second cgroup cannot take over the same pins */
	assert_int_equal(env_cli(&E, out, sizeof(out), "load --cgroup %s --config %s --no-follow",
				 sg_cgroup2_root(), E.conf), 1);
	assert_non_null(strstr(out, "already governs cgroup"));
}

/* --- unload: no program attached, no pin left --- */

static int prog_count(const char *cgroup, enum bpf_attach_type type)
{
	__u32 cnt = 0, ids[8];
	int fd = open(cgroup, O_RDONLY | O_DIRECTORY);
	LIBBPF_OPTS(bpf_prog_query_opts, q, .prog_ids = ids, .prog_cnt = 8);

	if (fd < 0)
		return -1;
	if (bpf_prog_query_opts(fd, type, &q) == 0)
		cnt = q.prog_cnt;
	close(fd);
	return (int)cnt;
}

static int child_two(void *arg)
{
	(void)arg;
	record(tcp_connect(AF_INET, "127.0.0.2", TEST_PORT));
	record(tcp_connect(AF_INET, "127.0.0.2", TEST_PORT));
	return 0;
}

static void test_unload(void **state)
{
	struct listener *l;
	struct stat st;

	(void)state;
	env_config(&E, LO_CONF(1));
	assert_int_equal(env_load(&E, NULL), 0);
	assert_int_equal(prog_count(E.cgroup, BPF_CGROUP_INET4_CONNECT), 1);
	assert_int_equal(prog_count(E.cgroup, BPF_CGROUP_INET6_CONNECT), 1);
	assert_int_equal(prog_count(E.cgroup, BPF_CGROUP_INET_SOCK_RELEASE), 1);
	sg_kernel_close(&E.k);
	E.loaded = false;
	assert_int_equal(env_cli(&E, NULL, 0, "unload"), 0);
	assert_int_equal(prog_count(E.cgroup, BPF_CGROUP_INET4_CONNECT), 0);
	assert_int_equal(prog_count(E.cgroup, BPF_CGROUP_INET6_CONNECT), 0);
	assert_int_equal(prog_count(E.cgroup, BPF_CGROUP_INET_SOCK_RELEASE), 0);
	assert_int_not_equal(stat(E.pin_dir, &st), 0);
	assert_int_equal(listener_start(&l, AF_INET, "127.0.0.2", TEST_PORT), 0);
	assert_int_equal(env_wait(&E, env_spawn(&E, child_two, NULL)), 0);
	listener_stop(l);
	assert_int_equal(sh->err[0], 0);
	assert_int_equal(sh->err[1], 0);    /* over the old cap: nothing governs now */
	assert_int_equal(env_cli(&E, NULL, 0, "unload"), 1);   /* nothing left to unload */
}

/* --- a binary of another ABI refuses to adopt, touching nothing --- */

/* Lines in out (each ends in a newline). */
static int lines(const char *out)
{
	int n = 0;

	for (; *out; out++)
		n += *out == '\n';
	return n;
}

static void test_other_abi_refused(void **state)
{
	struct sg_settings s, after;
	char out[4096], path[PATH_MAX];
	__u32 zero = 0, prog = 0;
	int fd;

	(void)state;
	env_config(&E, LO_CONF(2));
	assert_int_equal(env_load(&E, NULL), 0);
	assert_int_equal(env_cli(&E, NULL, 0, "set lo --cap 3"), 0);
	/* what another smtpgov would have pinned: same layout, another ABI */
	snprintf(path, sizeof(path), "%s/settings", E.pin_dir);
	fd = bpf_obj_get(path);
	assert_true(fd >= 0);
	assert_int_equal(bpf_map_lookup_elem(fd, &zero, &s), 0);
	assert_int_equal(s.abi, SG_ABI_VERSION);
	s.abi = SG_ABI_VERSION + 1;
	s.nports = 3;                  /* a value this binary's config would overwrite */
	assert_int_equal(bpf_map_update_elem(fd, &zero, &s, BPF_ANY), 0);
	prog = (__u32)prog_count(E.cgroup, BPF_CGROUP_INET4_CONNECT);

	assert_int_equal(env_cli(&E, out, sizeof(out), "load --cgroup %s --config %s --no-follow",
				 E.cgroup, E.conf), 1);
	assert_int_equal(lines(out), 1);
	assert_non_null(strstr(out, "ABI"));
	assert_non_null(strstr(out, "smtpgov unload"));
	/* nothing was touched: settings as the other binary left them, its cap,
	 * its programs still attached */
	assert_int_equal(bpf_map_lookup_elem(fd, &zero, &after), 0);
	assert_memory_equal(&after, &s, sizeof(s));
	assert_int_equal(env_group(&E, "lo")->cap, 3);
	assert_int_equal(prog_count(E.cgroup, BPF_CGROUP_INET4_CONNECT), (int)prog);
	/* status says so too, in one line; unload still removes it */
	assert_int_equal(env_cli(&E, out, sizeof(out), "status"), 1);
	assert_int_equal(lines(out), 1);
	assert_non_null(strstr(out, "ABI"));
	close(fd);
	sg_kernel_close(&E.k);
	E.loaded = false;
	assert_int_equal(env_cli(&E, NULL, 0, "unload"), 0);

	/* settings of another size: an older layout (before ABI 1) */
	assert_int_equal(mkdir(E.pin_dir, 0700), 0);
	fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "settings", 4, 48, 1, NULL);
	assert_true(fd >= 0);
	assert_int_equal(bpf_obj_pin(fd, path), 0);
	assert_int_equal(env_cli(&E, out, sizeof(out), "load --cgroup %s --config %s --no-follow",
				 E.cgroup, E.conf), 1);
	assert_int_equal(lines(out), 1);
	assert_non_null(strstr(out, "48 bytes"));
	assert_int_equal(prog_count(E.cgroup, BPF_CGROUP_INET4_CONNECT), 0);
	close(fd);
	fd = bpf_obj_get(path);          /* still pinned, still its own */
	assert_true(fd >= 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/groups", E.pin_dir);
	assert_int_not_equal(access(path, F_OK), 0);   /* no map of ours was made */
	assert_int_equal(env_cli(&E, NULL, 0, "unload"), 0);
}

/* --- dry-run refuses nothing but counts --- */

static int child_three(void *arg)
{
	(void)arg;
	for (int i = 0; i < 3; i++)
		record(tcp_connect(AF_INET, "127.0.0.2", TEST_PORT));
	sh->live[0] = lo_live();
	return 0;
}

static void test_dry_run(void **state)
{
	struct listener *l;
	char out[4096];

	(void)state;
	load_and_run(LO_CONF(1), "--dry-run", child_three, &l);
	assert_int_equal(sh->err[0] + sh->err[1] + sh->err[2], 0);
	assert_int_equal(sh->live[0], 3);
	assert_int_equal(l->accepted, 3);
	assert_int_equal(env_group(&E, "lo")->refused, 2);
	assert_int_equal(env_cli(&E, out, sizeof(out), "status --json"), 0);
	assert_non_null(strstr(out, "\"mode\":\"dry-run\""));
	assert_non_null(strstr(out, "\"refused\":2"));
}

/* --- a second concurrent loader is locked out; the daemon stops on SIGTERM --- */

static void test_loader_lock(void **state)
{
	char out[4096], extra[PATH_MAX + 16];

	(void)state;
	env_config(&E, LO_CONF(2));
	snprintf(extra, sizeof(extra), "--log %s/mail.log", E.tmp);
	/* the daemon holds the lock from before its first pin until it exits */
	assert_int_equal(env_daemon(&E, extra, false), 0);
	assert_int_equal(env_cli(&E, out, sizeof(out), "load --cgroup %s --config %s --no-follow",
				 E.cgroup, E.conf), 1);
	assert_non_null(strstr(out, "another smtpgov load is running"));
	assert_int_equal(env_cli(&E, out, sizeof(out), "unload"), 1);
	assert_non_null(strstr(out, "a smtpgov load is running on it; stop it first"));
	assert_int_equal(env_daemon_stop(&E, SIGTERM), 0);
	/* enforcement stays pinned after the daemon exits */
	assert_int_equal(env_cli(&E, out, sizeof(out), "status"), 0);
	assert_non_null(strstr(out, "lo "));
	assert_int_equal(prog_count(E.cgroup, BPF_CGROUP_INET4_CONNECT), 1);
}

/* --- drift in the live count is repaired from the sockets that exist --- */

static void test_drift_repair(void **state)
{
	struct listener *l;
	struct sg_group *g;
	int n = 2;
	pid_t pid;

	(void)state;
	env_config(&E, LO_CONF(5));
	assert_int_equal(env_load(&E, NULL), 0);
	assert_int_equal(listener_start(&l, AF_INET, "127.0.0.2", TEST_PORT), 0);
	pid = env_spawn(&E, child_hold, &n);
	wait_ready();
	g = sg_group_w(&E.k, sg_kernel_group(&E.k, "lo"));
	assert_int_equal(g->live, 2);
	snprintf(E.k.cgroup_path, sizeof(E.k.cgroup_path), "%s", E.cgroup);

	__atomic_fetch_add(&g->live, 3, __ATOMIC_SEQ_CST);   /* three lost decrements */
	assert_int_equal(sg_kernel_recount(&E.k), 1);
	assert_int_equal(g->live, 2);
	__atomic_fetch_sub(&g->live, 2, __ATOMIC_SEQ_CST);   /* two lost increments */
	assert_int_equal(sg_kernel_recount(&E.k), 1);
	assert_int_equal(g->live, 2);
	assert_int_equal(sg_kernel_recount(&E.k), 0);        /* nothing to repair */
	/* the unbound sockets' source count drifts on its own: repaired too */
	struct sg_srccount *dflt = sg_srccount_w(&E.k, sg_kernel_group(&E.k, "lo"), 0);

	assert_int_equal(dflt->live, 2);
	__atomic_fetch_add(&dflt->live, 3, __ATOMIC_SEQ_CST);
	assert_int_equal(sg_kernel_recount(&E.k), 1);
	assert_int_equal(dflt->live, 2);

	/* a tag whose socket is gone without a release: its slot comes back,
	 * to the group and to its source */
	struct sg_sock stale = { .group = (__u32)sg_kernel_group(&E.k, "lo"), .flags = SG_SOCK_COUNTED };
	__u64 cookie = 0x5eed000000000001ULL;

	assert_int_equal(bpf_map_update_elem(SG_MAP_FD(&E.k, socks), &cookie, &stale, BPF_NOEXIST), 0);
	__atomic_fetch_add(&g->live, 1, __ATOMIC_SEQ_CST);
	__atomic_fetch_add(&dflt->live, 1, __ATOMIC_SEQ_CST);
	assert_int_equal(sg_kernel_recount(&E.k), 1);
	assert_int_equal(g->live, 2);
	assert_int_equal(dflt->live, 2);
	assert_int_not_equal(bpf_map_lookup_elem(SG_MAP_FD(&E.k, socks), &cookie, &stale), 0);
	kill(pid, SIGKILL);
	env_wait(&E, pid);
	listener_stop(l);
	assert_int_equal(g->live, 0);
}

/* --- bad input: one clear line and a non-zero exit --- */

static void test_cli_errors(void **state)
{
	char out[4096];

	(void)state;
	assert_int_equal(env_cli(&E, out, sizeof(out), "load --cgroup /nonexistent-cg --no-follow"), 1);
	assert_non_null(strstr(out, "cgroup /nonexistent-cg: No such file or directory"));
	assert_int_equal(env_cli(&E, out, sizeof(out), "load --cgroup /tmp --no-follow"), 1);
	assert_non_null(strstr(out, "not a cgroup v2 directory"));
	assert_int_equal(env_cli(&E, out, sizeof(out), "load --no-follow"), 2);
	assert_non_null(strstr(out, "--cgroup PATH, --mta MTA or --pid PID is required"));
	assert_int_equal(env_cli(&E, out, sizeof(out), "status"), 1);
	assert_non_null(strstr(out, "not loaded"));
	env_config(&E, "[group x]\nranges = 10.0.0.1/8\n");
	assert_int_equal(env_cli(&E, out, sizeof(out), "load --cgroup %s --config %s --no-follow",
				 E.cgroup, E.conf), 1);
	assert_non_null(strstr(out, "host bits set"));
	env_config(&E, LO_CONF(2));
	assert_int_equal(env_load(&E, NULL), 0);
	assert_int_equal(env_cli(&E, out, sizeof(out), "set lo --cap 101"), 1);
	assert_non_null(strstr(out, "outside [min_cap 1, max_cap 100]"));
	assert_int_equal(env_cli(&E, out, sizeof(out), "set nosuch --cap 1"), 1);
	assert_non_null(strstr(out, "no group 'nosuch'"));
	assert_int_equal(env_cli(&E, out, sizeof(out), "lookup 127.0.0.3"), 0);
	assert_string_equal(out, "lo\n");
	assert_int_equal(env_cli(&E, out, sizeof(out), "lookup 127.0.0.9"), 0);
	assert_string_equal(out, "none\n");
	assert_int_equal(env_cli(&E, out, sizeof(out), "lookup 999.1.1.1"), 2);
	assert_int_equal(env_cli(&E, out, sizeof(out), "status --bogus"), 2);
	assert_non_null(strstr(out, "unknown option '--bogus'"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cap_admits_exactly_n, setup, teardown),
		cmocka_unit_test_setup_teardown(test_race_never_exceeds_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sigkill_releases, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reconnect_counts_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_untouched, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ipv6_netns, setup, teardown),
		cmocka_unit_test_setup_teardown(test_race_per_source, setup, teardown),
		cmocka_unit_test_setup_teardown(test_race_one_pool, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sigkill_per_source, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sources_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v4_mapped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_twice_adopts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_abi_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dry_run, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loader_lock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drift_repair, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cli_errors, setup, teardown),
	};

	if (geteuid() != 0) {
		fprintf(stderr, "test_governor: needs root\n");
		return 77;
	}
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return 1;
	return cmocka_run_group_tests_name("kernel governor", tests, NULL, NULL);
}
