// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Root tests: the daemon under bad conditions. The state file's directory
 * full (a small tmpfs of the test's own, ENOSPC) and then read-only
 * (EROFS): the state saved before stays whole, each error is logged when
 * it starts and not again within the minute however many caps change,
 * learning goes on (the caps in the kernel follow the log), and once the
 * disk takes writes again the state is saved. A retry_command that hangs
 * is killed after retry_timeout, and the daemon goes on meanwhile.
 * The pin dir removed, its bpf filesystem (a private mount) unmounted and
 * the governed cgroup removed under a running daemon: connects stay
 * governed (or are again once the cgroup is back), the daemon says so in
 * one line, pins again what it holds (status and unload work), and neither
 * dies nor spins.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "harness.h"

/* cooldown 0 and decrease 0.9 from cap 30, so that every deferral moves
 * the cap one step down (each move a save); the rest are defaults. */
#define CONF "[global]\nports = 2525\nbuiltin = no\nverdict = refuse\nstate = %s/st/state\n" \
	     "[group lo]\nranges = 127.0.13.1/32\ncap = 30\nmax_cap = 30\ncooldown = 0s\n" \
	     "decrease = 0.9\n"

#define OLD_STATE "smtpgov-state 1\n" \
	"group lo cap 30 resume 0 paused_until 0 signals 0 changed 1795521600 reason set by the test\n" \
	"end 1\n"

static struct env E;
static char st_dir[PATH_MAX + 8];
static int qid;

static void append(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static char *slurp(const char *path)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = fopen(path, "r");

	if (!fp)
		return strdup("");
	if (getdelim(&buf, &len, '\0', fp) < 0) {
		free(buf);
		buf = strdup("");
	}
	fclose(fp);
	return buf;
}

static int count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

/* A deferral of lo: 421 4.4.5, a concurrency signal: one step down. Its
 * session began as it was answered (delays all 0), after the last step, so
 * it is no echo of it. */
static void log_line(void)
{
	char line[512], path[PATH_MAX + 16];

	snprintf(line, sizeof(line), "Q%06dABC: to=<a@example.com>, relay=mx[127.0.13.1]:25, delay=0, "
		 "delays=0/0/0/0, dsn=4.4.5, status=deferred (host mx[127.0.13.1] said: 421 4.4.5 "
		 "Server busy, try again later (in reply to RCPT TO command))\n", ++qid);
	snprintf(path, sizeof(path), "%s/mail.log", E.tmp);
	append(path, line);
}

static uint32_t cap_now(void)
{
	return __atomic_load_n(&env_group(&E, "lo")->cap, __ATOMIC_SEQ_CST);
}

/* Wait (up to 2 s) for the kernel's cap to leave `from`; returns it. */
static uint32_t cap_moves(uint32_t from)
{
	for (int i = 0; i < 200 && cap_now() == from; i++)
		usleep(10000);
	return cap_now();
}

/* n deferrals, each a step down of the kernel's cap from `cap`: learning
 * goes on. Returns the cap after them. */
static uint32_t steps_down(uint32_t cap, int n)
{
	for (int i = 0; i < n; i++) {
		uint32_t now;

		log_line();
		now = cap_moves(cap);
		assert_true(now < cap);
		cap = now;
	}
	return cap;
}

static void test_state_disk_full_then_read_only(void **state)
{
	char conf[1024], extra[PATH_MAX * 2], statef[PATH_MAX + 16], tmpf[PATH_MAX + 32];
	char logpath[PATH_MAX + 16], fill[PATH_MAX + 16], *saved, *log;
	uint32_t cap;
	int fd;

	(void)state;
	/* Our own small tmpfs, the old state in it, then full to the last byte. */
	snprintf(st_dir, sizeof(st_dir), "%s/st", E.tmp);
	assert_int_equal(mkdir(st_dir, 0755), 0);
	assert_int_equal(mount("tmpfs", st_dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k"), 0);
	snprintf(statef, sizeof(statef), "%s/state", st_dir);
	snprintf(tmpf, sizeof(tmpf), "%s.tmp", statef);
	append(statef, OLD_STATE);
	snprintf(fill, sizeof(fill), "%s/fill", st_dir);
	fd = open(fill, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	{
		char block[4096] = { 0 };

		while (write(fd, block, sizeof(block)) > 0)
			;
		assert_int_equal(errno, ENOSPC);
		while (write(fd, block, 1) > 0)   /* the last partial page too */
			;
	}
	close(fd);

	snprintf(conf, sizeof(conf), CONF, E.tmp);
	env_config(&E, conf);
	snprintf(logpath, sizeof(logpath), "%s/daemon.log", E.tmp);
	snprintf(extra, sizeof(extra), "--log %s/mail.log 2>%s", E.tmp, logpath);
	append(logpath, "");
	{
		char ml[PATH_MAX + 16];

		snprintf(ml, sizeof(ml), "%s/mail.log", E.tmp);
		append(ml, "");
	}
	assert_int_equal(env_daemon(&E, extra, false), 0);
	for (int i = 0; i < 100 && !strstr((log = slurp(logpath)), "following"); i++) {
		free(log);
		usleep(20000);
	}
	free(log);
	assert_int_equal(cap_now(), 30);           /* restored from the old state */

	/* Full: six changes, six failed saves, learning goes on. */
	cap = steps_down(30, 6);
	saved = slurp(statef);
	assert_string_equal(saved, OLD_STATE);     /* the old state stays whole */
	free(saved);
	assert_int_equal(access(tmpf, F_OK), -1);  /* no half-written temp file */
	log = slurp(logpath);
	print_message("full disk: 6 cap changes, %d lines about it\n",
		      count(log, "No space left on device"));
	assert_int_equal(count(log, "No space left on device"), 1);
	free(log);

	/* Read-only now: another error, said once; learning still goes on. */
	assert_int_equal(mount(NULL, st_dir, NULL, MS_REMOUNT | MS_RDONLY, NULL), 0);
	cap = steps_down(cap, 4);
	log = slurp(logpath);
	assert_int_equal(count(log, "Read-only file system"), 1);
	free(log);
	saved = slurp(statef);
	assert_string_equal(saved, OLD_STATE);
	free(saved);

	/* Writable and with room again: the next change is saved. */
	assert_int_equal(mount(NULL, st_dir, NULL, MS_REMOUNT, NULL), 0);
	assert_int_equal(unlink(fill), 0);
	log_line();
	cap = cap_moves(cap);
	for (int i = 0; i < 100; i++) {
		saved = slurp(statef);
		if (strcmp(saved, OLD_STATE))
			break;
		free(saved);
		saved = NULL;
		usleep(20000);
	}
	assert_non_null(saved);
	{
		char want[64];

		snprintf(want, sizeof(want), "group lo cap %u ", cap);
		if (!strstr(saved, want))
			fail_msg("state after recovery lacks '%s':\n%s", want, saved);
	}
	free(saved);
	log = slurp(logpath);
	assert_non_null(strstr(log, "saved again"));
	free(log);
	assert_int_equal(env_daemon_stop(&E, SIGTERM), 0);
}

/* retry_timeout 1 s (the default is 30) so that the test is short; the
 * group queues, as retry_command needs. */
#define RETRY_CONF "[global]\nports = 2525\nbuiltin = no\nverdict = queue\n" \
	"retry_command = %s/hang.sh %%q\nretry_delay = 0s\nretry_timeout = 1s\n" \
	"[group lo]\nranges = 127.0.13.1/32\ncap = 30\nmax_cap = 30\ncooldown = 0s\n" \
	"decrease = 0.9\n"

static void test_retry_command_hangs(void **state)
{
	char conf[1024], script[PATH_MAX + 16], pidf[PATH_MAX + 16], logpath[PATH_MAX + 16];
	char extra[PATH_MAX * 2], text[PATH_MAX * 2], *p, *log;
	uint32_t cap;
	pid_t hung = 0;

	(void)state;
	/* A command that never returns: it records its pid and sleeps. */
	snprintf(script, sizeof(script), "%s/hang.sh", E.tmp);
	snprintf(pidf, sizeof(pidf), "%s/hang.pid", E.tmp);
	snprintf(text, sizeof(text), "#!/bin/sh\necho $$ > %s\nexec sleep 1000\n", pidf);
	append(script, text);
	assert_int_equal(chmod(script, 0755), 0);
	snprintf(conf, sizeof(conf), RETRY_CONF, E.tmp);
	env_config(&E, conf);
	snprintf(logpath, sizeof(logpath), "%s/daemon.log", E.tmp);
	snprintf(extra, sizeof(extra), "--log %s/mail.log 2>%s", E.tmp, logpath);
	snprintf(text, sizeof(text), "%s/mail.log", E.tmp);
	append(text, "");
	assert_int_equal(env_daemon(&E, extra, true), 0);
	usleep(300000);                               /* following the log */

	cap = steps_down(30, 1);                      /* runs the command */
	for (int i = 0; i < 100 && !hung; i++) {
		p = slurp(pidf);
		hung = atoi(p);
		free(p);
		usleep(20000);
	}
	assert_true(hung > 0);
	assert_int_equal(kill(hung, 0), 0);           /* it hangs */
	cap = steps_down(cap, 3);                     /* the daemon does not wait */
	for (int i = 0; i < 150 && kill(hung, 0) == 0; i++)
		usleep(20000);
	assert_int_equal(kill(hung, 0), -1);          /* killed after retry_timeout */
	log = slurp(logpath);
	print_message("retry_command: %s", strstr(log, "retry_command") ? strstr(log, "retry_command") : "?\n");
	assert_non_null(strstr(log, "still running after 1s: killed"));
	free(log);
	assert_int_equal(env_daemon_stop(&E, SIGTERM), 0);
}

/* One connect admitted to 127.0.31.2, the next refused: cap 1 (the
 * smallest that shows both). No mail log lines: the cap stays. */
#define GOV_CONF "[global]\nports = 2525\nbuiltin = no\nverdict = refuse\n" \
	"[group lo]\nranges = 127.0.31.2/32\ncap = 1\nmax_cap = 1\n"

static char bpf_dir[PATH_MAX];

static int child_governed(void *arg)
{
	int a, b;

	(void)arg;
	a = tcp_connect(AF_INET, "127.0.31.2", TEST_PORT);
	b = tcp_connect(AF_INET, "127.0.31.2", TEST_PORT);
	return a >= 0 && b == -EPERM ? 0 : 1;
}

/* Are connects from the cgroup governed right now (the second refused)? */
static bool governed(void)
{
	return env_wait(&E, env_spawn(&E, child_governed, NULL)) == 0;
}

/* The governing daemon, with a listener on 127.0.31.2 and its stderr in
 * daemon.log; *logpath gets that path. */
static void gov_daemon(char *logpath, size_t len)
{
	char extra[PATH_MAX * 2 + 64], ml[PATH_MAX + 16];
	struct listener *l;

	env_config(&E, GOV_CONF);
	snprintf(logpath, len, "%s/daemon.log", E.tmp);
	snprintf(ml, sizeof(ml), "%s/mail.log", E.tmp);
	append(ml, "");
	snprintf(extra, sizeof(extra), "--log %s 2>%s", ml, logpath);
	assert_int_equal(listener_start(&l, AF_INET, "127.0.31.2", TEST_PORT), 0);
	assert_int_equal(env_daemon(&E, extra, false), 0);
	assert_true(governed());
}

/* Wait up to ms for `what` to appear n times in the daemon's log. */
static int log_has(const char *logpath, const char *what, int n, int ms)
{
	char *log;
	int c = 0;

	for (int i = 0; i <= ms / 50; i++) {
		log = slurp(logpath);
		c = count(log, what);
		free(log);
		if (c >= n)
			break;
		usleep(50000);
	}
	return c;
}

/* Wait (up to 5 s) for the daemon to have pinned everything again. */
static void pins_back(void)
{
	char path[PATH_MAX + 32];

	snprintf(path, sizeof(path), "%s/link_connect4", E.pin_dir);
	for (int i = 0; i < 100 && access(path, F_OK); i++)
		usleep(50000);
	assert_int_equal(access(path, F_OK), 0);
}

/* CPU time (clock ticks) the daemon has used. */
static long cpu_ticks(pid_t pid)
{
	char path[64], *stat, *p;
	long ut = 0, st = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	stat = slurp(path);
	p = strrchr(stat, ')');
	if (p)
		sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &ut, &st);
	free(stat);
	return ut + st;
}

/* Alive, and not spinning: under 0.3 s of CPU in 2 s. */
static void calm(void)
{
	long before = cpu_ticks(E.daemon);

	sleep(2);
	assert_int_equal(kill(E.daemon, 0), 0);
	assert_int_equal(waitpid(E.daemon, NULL, WNOHANG), 0);
	assert_true(cpu_ticks(E.daemon) - before < sysconf(_SC_CLK_TCK) * 3 / 10);
}

/* After the daemon stops, `smtpgov unload` finds the pins and removes them. */
static void unload_works(void)
{
	char out[4096];

	assert_int_equal(env_daemon_stop(&E, SIGTERM), 0);
	if (E.loaded)
		sg_kernel_close(&E.k);
	E.loaded = false;
	if (env_cli(&E, out, sizeof(out), "unload"))
		fail_msg("unload: %s", out);
	assert_int_equal(access(E.pin_dir, F_OK), -1);
}

static void test_pin_dir_removed(void **state)
{
	char logpath[PATH_MAX + 16], cmd[PATH_MAX + 32], out[8192];

	(void)state;
	gov_daemon(logpath, sizeof(logpath));
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", E.pin_dir);
	assert_int_equal(system(cmd), 0);
	usleep(200000);
	assert_true(governed());                  /* the daemon's fds hold the links */
	pins_back();
	if (env_cli(&E, out, sizeof(out), "status"))
		fail_msg("status after the pins came back: %s", out);
	assert_int_equal(log_has(logpath, "pinned again", 1, 0), 1);
	calm();
	assert_int_equal(log_has(logpath, "pinned again", 2, 0), 1);   /* said once */
	assert_true(governed());
	unload_works();
	assert_false(governed());                 /* unload detached them */
}

static void test_bpffs_unmounted(void **state)
{
	char logpath[PATH_MAX + 16], out[8192];

	(void)state;
	/* A bpf filesystem of the test's own, never the system's. */
	snprintf(bpf_dir, sizeof(bpf_dir), "/tmp/%s-bpf", E.name);
	assert_int_equal(mkdir(bpf_dir, 0700), 0);
	assert_int_equal(mount("bpf", bpf_dir, "bpf", 0, "mode=0700"), 0);
	snprintf(E.pin_dir, sizeof(E.pin_dir), "%s/%s", bpf_dir, E.name);
	gov_daemon(logpath, sizeof(logpath));

	/* Busy (the daemon holds the dir open): a lazy unmount, as admins do. */
	assert_int_equal(umount2(bpf_dir, MNT_DETACH), 0);
	assert_true(governed());
	assert_int_equal(log_has(logpath, "cannot be made again", 1, 5000), 1);
	calm();
	assert_int_equal(log_has(logpath, "cannot be made again", 2, 0), 1);   /* said once */
	assert_true(governed());

	/* Mounted again: the daemon pins what it holds there. */
	assert_int_equal(mount("bpf", bpf_dir, "bpf", 0, "mode=0700"), 0);
	pins_back();
	if (env_cli(&E, out, sizeof(out), "status"))
		fail_msg("status after bpffs came back: %s", out);
	assert_int_equal(log_has(logpath, "pinned again", 1, 0), 1);
	assert_true(governed());
	unload_works();
	assert_false(governed());
}

static void test_cgroup_removed(void **state)
{
	char logpath[PATH_MAX + 16];

	(void)state;
	gov_daemon(logpath, sizeof(logpath));
	for (int i = 0; i < 100 && rmdir(E.cgroup) && errno == EBUSY; i++)
		usleep(10000);
	assert_int_equal(access(E.cgroup, F_OK), -1);
	assert_int_equal(log_has(logpath, "was removed: nothing is governed", 1, 5000), 1);
	calm();
	calm();
	assert_int_equal(log_has(logpath, "was removed", 2, 0), 1);   /* said once */

	/* Back: governed again, caps kept. */
	assert_int_equal(mkdir(E.cgroup, 0755), 0);
	assert_int_equal(log_has(logpath, "now attached to", 1, 5000), 1);
	assert_true(governed());
	calm();
	assert_int_equal(env_daemon_stop(&E, SIGTERM), 0);
}

static int setup(void **state)
{
	(void)state;
	qid = 0;
	st_dir[0] = '\0';
	bpf_dir[0] = '\0';
	return env_setup(&E) ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	if (E.daemon > 0)
		env_daemon_stop(&E, SIGKILL);
	if (st_dir[0])
		umount2(st_dir, MNT_DETACH);
	env_teardown(&E);
	if (bpf_dir[0]) {
		umount2(bpf_dir, MNT_DETACH);
		rmdir(bpf_dir);
	}
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_state_disk_full_then_read_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retry_command_hangs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pin_dir_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bpffs_unmounted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cgroup_removed, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
