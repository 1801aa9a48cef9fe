// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Benchmark: what smtpgov costs a connect. Loopback connect+close round
 * trips (SO_LINGER {1,0}, so TIME_WAIT does not hide the cost) from a
 * process in a fresh cgroup, without smtpgov (the baseline of this run),
 * with smtpgov governing the destination, and with smtpgov attached but the
 * destination ungoverned (other port), governed from a socket bound to a
 * sending address (counted per source), and, for comparison, nftables
 * capping the same connections with `ct count` (conntrack) when nft is
 * installed. Also the time spent inside each BPF program
 * (kernel.bpf_stats_enabled). Prints ratios against the baseline.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "harness.h"

#define CYCLES 20000
#define REPEATS 5

static double *result;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int port;
static const char *bind_src;    /* bind each socket here first; NULL: unbound */

static int child_cycles(void *arg)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct sockaddr_in src = { .sin_family = AF_INET };
	struct linger lg = { 1, 0 };
	int one = 1;
	double t0;

	(void)arg;
	inet_pton(AF_INET, "127.0.0.2", &a.sin_addr);
	if (bind_src)
		inet_pton(AF_INET, bind_src, &src.sin_addr);
	t0 = now();
	for (int i = 0; i < CYCLES; i++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		if (bind_src && (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) ||
				 bind(fd, (struct sockaddr *)&src, sizeof(src))))
			return 1;
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)))
			return 1;
		close(fd);
	}
	*result = (now() - t0) / CYCLES * 1e9;
	return 0;
}

static double run(struct env *e, int p, const char *src)
{
	port = p;
	bind_src = src;
	if (env_wait(e, env_spawn(e, child_cycles, NULL)))
		return -1;
	return *result;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp);
	return v[n / 2];
}

/* run_time_ns / run_cnt of the program behind a pinned link */
static void prog_stats(struct env *e, const char *link, uint64_t *ns, uint64_t *cnt)
{
	char path[PATH_MAX + 32];
	struct bpf_link_info li = { 0 };
	struct bpf_prog_info pi = { 0 };
	__u32 len = sizeof(li);
	int fd, pfd;

	*ns = *cnt = 0;
	snprintf(path, sizeof(path), "%s/%s", e->pin_dir, link);
	fd = bpf_obj_get(path);
	if (fd < 0 || bpf_obj_get_info_by_fd(fd, &li, &len))
		return;
	close(fd);
	pfd = bpf_prog_get_fd_by_id(li.prog_id);
	len = sizeof(pi);
	if (pfd >= 0 && !bpf_obj_get_info_by_fd(pfd, &pi, &len)) {
		*ns = pi.run_time_ns;
		*cnt = pi.run_cnt;
	}
	if (pfd >= 0)
		close(pfd);
}

static int sysctl_stats(int on)
{
	int fd = open("/proc/sys/kernel/bpf_stats_enabled", O_WRONLY);
	int r = fd >= 0 && write(fd, on ? "1" : "0", 1) == 1 ? 0 : -1;

	if (fd >= 0)
		close(fd);
	return r;
}

/* nftables: the same cap with conntrack's connection count (on every process:
 * nft finds cgroups only under /sys/fs/cgroup, and only this bench sends
 * to 127.0.0.2:2525). */
static int nft(struct env *e, bool on)
{
	char cmd[1024];

	if (!on)
		return system("nft delete table inet smtpgov_bench 2>/dev/null");
	snprintf(cmd, sizeof(cmd),
		 "nft add table inet smtpgov_bench && "
		 "nft add chain inet smtpgov_bench out '{ type filter hook output priority 0; }' && "
		 "nft add rule inet smtpgov_bench out "
		 "ip daddr 127.0.0.2 tcp dport 2525 ct state new ct count over 1000 reject");
	(void)e;
	if (system(cmd)) {
		nft(e, false);
		return -1;
	}
	return 0;
}

int main(void)
{
	double base[REPEATS], gov[REPEATS], ungov[REPEATS], nftr[REPEATS], bound[REPEATS];
	bool have_nft = system("command -v nft >/dev/null 2>&1") == 0;
	uint64_t ns0[5], cnt0[5], ns1[5], cnt1[5];
	const char *links[3] = { "link_connect4", "link_release", "link_connect6" };
	struct listener *l1, *l2;
	struct env e;
	int rc = 1;

	if (geteuid() != 0) {
		fprintf(stderr, "bench_connect: needs root\n");
		return 1;
	}
	result = mmap(NULL, sizeof(double), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (env_setup(&e) || listener_start(&l1, AF_INET, "127.0.0.2", 2525) ||
	    listener_start(&l2, AF_INET, "127.0.0.2", 2526)) {
		fprintf(stderr, "bench_connect: cannot listen on 127.0.0.2:2525 and :2526 (a test running?)\n");
		goto out;
	}
	env_config(&e, "[global]\nports = 2525\nbuiltin = no\n[group lo]\nranges = 127.0.0.2/32\n"
		       "cap = 1000\nmax_cap = 1000\n");
	run(&e, 2525, NULL);                             /* warm up */
	for (int r = 0; r < REPEATS; r++) {
		base[r] = run(&e, 2525, NULL);
		if (env_load(&e, NULL))
			goto out;
		if (r == 0) {
			sysctl_stats(1);
			for (int i = 0; i < 2; i++)
				prog_stats(&e, links[i], &ns0[i], &cnt0[i]);
		}
		gov[r] = run(&e, 2525, NULL);
		if (r == 0) {
			for (int i = 0; i < 2; i++)
				prog_stats(&e, links[i], &ns1[i], &cnt1[i]);
			prog_stats(&e, links[0], &ns0[2], &cnt0[2]);
			prog_stats(&e, links[1], &ns0[3], &cnt0[3]);
		}
		ungov[r] = run(&e, 2526, NULL);
		nftr[r] = 0;
		if (r == 0) {
			prog_stats(&e, links[0], &ns1[2], &cnt1[2]);
			prog_stats(&e, links[1], &ns1[3], &cnt1[3]);
			prog_stats(&e, links[0], &ns0[4], &cnt0[4]);
		}
		/* an MTA's smtp_bind_address: counted under its own source */
		bound[r] = run(&e, 2525, "127.0.0.77");
		if (r == 0) {
			prog_stats(&e, links[0], &ns1[4], &cnt1[4]);
			sysctl_stats(0);
		}
		sg_kernel_close(&e.k);
		e.loaded = false;
		char err[256];
		sg_kernel_unload(e.pin_dir, err, sizeof(err));
		if (have_nft && nft(&e, true) == 0) {
			nftr[r] = run(&e, 2525, NULL);
			nft(&e, false);
		}
	}
	double b = median(base, REPEATS), g = median(gov, REPEATS), u = median(ungov, REPEATS);
	double gb = median(bound, REPEATS);

	printf("bench_connect: loopback connect+close, SO_LINGER {1,0}, %d cycles x %d runs (median)\n",
	       CYCLES, REPEATS);
	printf("  %-44s %9.0f ns  1.000x\n", "no smtpgov (baseline)", b);
	printf("  %-44s %9.0f ns  %.3fx\n", "smtpgov, governed destination", g, g / b);
	printf("  %-44s %9.0f ns  %.3fx\n", "smtpgov, governed, bound source (per source)", gb, gb / b);
	printf("  %-44s %9.0f ns  %.3fx\n", "smtpgov, ungoverned destination (other port)", u, u / b);
	if (have_nft && median(nftr, REPEATS) > 0)
		printf("  %-44s %9.0f ns  %.3fx\n", "nftables ct count (conntrack), no smtpgov",
		       median(nftr, REPEATS), median(nftr, REPEATS) / b);
	else
		printf("  %-44s %9s\n", "nftables ct count", "n/a (apt-get install nftables)");
	printf("  in-hook time (kernel.bpf_stats_enabled):\n");
	printf("  %-44s %9.0f ns\n", "cgroup/connect4, governed (admit + tag)",
	       cnt1[0] > cnt0[0] ? (double)(ns1[0] - ns0[0]) / (double)(cnt1[0] - cnt0[0]) : 0);
	printf("  %-44s %9.0f ns\n", "cgroup/connect4, governed, bound source",
	       cnt1[4] > cnt0[4] ? (double)(ns1[4] - ns0[4]) / (double)(cnt1[4] - cnt0[4]) : 0);
	printf("  %-44s %9.0f ns\n", "cgroup/connect4, ungoverned (port check)",
	       cnt1[2] > cnt0[2] ? (double)(ns1[2] - ns0[2]) / (double)(cnt1[2] - cnt0[2]) : 0);
	printf("  %-44s %9.0f ns\n", "cgroup/sock_release, governed socket",
	       cnt1[1] > cnt0[1] ? (double)(ns1[1] - ns0[1]) / (double)(cnt1[1] - cnt0[1]) : 0);
	printf("  %-44s %9.0f ns\n", "cgroup/sock_release, ungoverned socket",
	       cnt1[3] > cnt0[3] ? (double)(ns1[3] - ns0[3]) / (double)(cnt1[3] - cnt0[3]) : 0);
	rc = 0;
out:
	listener_stop(l1);
	listener_stop(l2);
	env_teardown(&e);
	return rc;
}
