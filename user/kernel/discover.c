// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Finding the MTA's cgroup (see discover.h). Everything here reads /proc,
 * pid files and the cgroup2 tree; the one program run is postconf, without
 * a shell, to learn Postfix's queue directory.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "discover.h"
#include "kernel.h"

static const char *const exim_pid_files[] = {
	"/run/exim4/exim.pid",            /* Debian, Ubuntu */
	"/var/run/exim4/exim.pid",
	"/run/exim.pid",                  /* Fedora, RHEL */
	"/var/run/exim.pid",
	"/var/spool/exim/exim-daemon.pid",/* Exim's compiled-in default */
};
#define NEXIM (sizeof(exim_pid_files) / sizeof(exim_pid_files[0]))

/* Read a pipe to its end; keep its first line. */
static void first_line(int fd, char *out, size_t len)
{
	size_t got = 0;
	char junk[512];
	ssize_t n;

	while ((n = read(fd, got < len - 1 ? out + got : junk,
			 got < len - 1 ? len - 1 - got : sizeof(junk))) > 0 || (n < 0 && errno == EINTR))
		if (n > 0 && got < len - 1)
			got += (size_t)n;
	out[got] = '\0';
	out[strcspn(out, "\n")] = '\0';
}

/*
 * Run argv (no shell): the first line of its output into out, or of its
 * errors when it fails.
 */
static int run_line(char *const argv[], char *out, size_t len)
{
	int o[2], e[2], status;
	char errline[256];
	pid_t pid;

	if (pipe2(o, O_CLOEXEC))
		return -errno;
	if (pipe2(e, O_CLOEXEC)) {
		close(o[0]);
		close(o[1]);
		return -errno;
	}
	pid = fork();
	if (pid == 0) {
		dup2(o[1], 1);
		dup2(e[1], 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(o[1]);
	close(e[1]);
	if (pid > 0) {
		first_line(o[0], out, len);
		first_line(e[0], errline, sizeof(errline));
	}
	close(o[0]);
	close(e[0]);
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		return -errno;
	if (!WIFEXITED(status) || WEXITSTATUS(status) == 127)
		return -ENOENT;
	if (WEXITSTATUS(status) || !out[0]) {
		snprintf(out, len, "%s", errline);
		return -EINVAL;
	}
	return 0;
}

static void read_comm(pid_t pid, char *comm, size_t len)
{
	char path[64];
	FILE *fp;

	comm[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	if ((fp = fopen(path, "re"))) {
		if (fgets(comm, (int)len, fp))
			comm[strcspn(comm, "\n")] = '\0';
		fclose(fp);
	}
}

static bool is_mta_comm(int kind, const char *comm)
{
	if (kind == SG_MTA_POSTFIX)
		return !strcmp(comm, "master");
	return !strcmp(comm, "exim4") || !strcmp(comm, "exim");
}

static const char *daemon_name(int kind)
{
	return kind == SG_MTA_POSTFIX ? "the Postfix master" : "the Exim daemon";
}

/* The pid in a pid file, checked against /proc. */
static int pid_from_file(int kind, const char *file, pid_t *pid, char *err, size_t errlen)
{
	char buf[64], comm[32];
	FILE *fp = fopen(file, "re");
	long n;

	if (!fp) {
		int r = -errno;

		snprintf(err, errlen, "%s: pid file %s: %s (is it running?)", sg_mta_name(kind), file,
			 strerror(errno));
		return r;
	}
	n = fgets(buf, sizeof(buf), fp) ? strtol(buf, NULL, 10) : 0;
	fclose(fp);
	if (n <= 0) {
		snprintf(err, errlen, "%s: pid file %s holds no pid", sg_mta_name(kind), file);
		return -EINVAL;
	}
	*pid = (pid_t)n;
	if (kill(*pid, 0) && errno == ESRCH) {
		snprintf(err, errlen, "%s: pid file %s names pid %ld, which is not running (stale pid file)",
			 sg_mta_name(kind), file, n);
		return -ESRCH;
	}
	read_comm(*pid, comm, sizeof(comm));
	if (!is_mta_comm(kind, comm)) {
		snprintf(err, errlen, "%s: pid file %s names pid %ld, which is '%s', not %s (stale pid file)",
			 sg_mta_name(kind), file, n, comm, daemon_name(kind));
		return -ESRCH;
	}
	return 0;
}

int sg_mta_pid(const struct sg_mta *m, pid_t *pid, char *err, size_t errlen)
{
	char qdir[PATH_MAX], file[PATH_MAX + 32];
	int r;

	if (m->kind == SG_MTA_POSTFIX) {
		char *with_dir[] = { "postconf", "-c", (char *)m->arg, "-h", "queue_directory", NULL };
		char *plain[] = { "postconf", "-h", "queue_directory", NULL };

		r = run_line(m->arg[0] ? with_dir : plain, qdir, sizeof(qdir));
		if (r) {
			snprintf(err, errlen, "postfix: `postconf%s%s -h queue_directory` %s%s",
				 m->arg[0] ? " -c " : "", m->arg,
				 r == -ENOENT ? "could not run (is Postfix installed?)" : "failed: ",
				 r == -ENOENT ? "" : qdir);
			return r;
		}
		snprintf(file, sizeof(file), "%s/pid/master.pid", qdir);
		return pid_from_file(m->kind, file, pid, err, errlen);
	}
	if (m->arg[0])
		return pid_from_file(m->kind, m->arg, pid, err, errlen);
	for (size_t i = 0; i < NEXIM; i++)
		if (!access(exim_pid_files[i], F_OK))
			return pid_from_file(m->kind, exim_pid_files[i], pid, err, errlen);
	snprintf(err, errlen, "exim: no pid file in %s, %s or %s (is the daemon running? "
		 "exim:PID_FILE names another)", exim_pid_files[0], exim_pid_files[2], exim_pid_files[4]);
	return -ENOENT;
}

int sg_pid_cgroup(pid_t pid, char *path, size_t len, char *err, size_t errlen)
{
	const char *root = sg_cgroup2_root();
	char file[64], line[PATH_MAX];
	FILE *fp;
	int r = -ENOENT;

	snprintf(file, sizeof(file), "/proc/%d/cgroup", (int)pid);
	if (!(fp = fopen(file, "re"))) {
		r = -errno;
		snprintf(err, errlen, "pid %d: %s", (int)pid,
			 errno == ENOENT ? "no such process" : strerror(errno));
		return r;
	}
	while (fgets(line, sizeof(line), fp))
		if (!strncmp(line, "0::", 3)) {
			line[strcspn(line, "\n")] = '\0';
			/* "/" is the root; a "(deleted)" or foreign path is not ours */
			snprintf(path, len, "%s%s", root, strcmp(line + 3, "/") ? line + 3 : "");
			r = 0;
		}
	fclose(fp);
	if (r || !root[0] || access(path, F_OK)) {
		snprintf(err, errlen, "pid %d: not in a cgroup v2 hierarchy we can see (%s)", (int)pid,
			 root[0] ? "no usable 0:: line in its /proc/PID/cgroup" : "no cgroup2 mount");
		return -ENOTDIR;
	}
	return 0;
}

static int parse_pid(const char *s, pid_t *pid)
{
	char *end;
	long n;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	n = strtol(s, &end, 10);
	if (*end || errno || n <= 0 || n > 0x3fffffff)
		return -EINVAL;
	*pid = (pid_t)n;
	return 0;
}

int sg_find_cgroup(const char *cgroup, const char *mta, const char *pid, const char *mta_conf,
		   char *out, size_t len, char *how, size_t howlen, char *err, size_t errlen)
{
	struct sg_mta m;
	pid_t p;
	int r;

	how[0] = '\0';
	if (!!cgroup + !!mta + !!pid > 1) {
		snprintf(err, errlen, "give one of --cgroup, --mta and --pid");
		return -EINVAL;
	}
	if (cgroup) {
		snprintf(out, len, "%s", cgroup);
		return 0;
	}
	if (pid) {
		if (parse_pid(pid, &p)) {
			snprintf(err, errlen, "bad --pid '%s': want a process id", pid);
			return -EINVAL;
		}
		snprintf(how, howlen, "pid %d", (int)p);
		return sg_pid_cgroup(p, out, len, err, errlen);
	}
	if (!mta && !(mta_conf && mta_conf[0])) {
		snprintf(err, errlen, "--cgroup PATH, --mta MTA or --pid PID is required");
		return -EINVAL;
	}
	if ((r = sg_mta_parse(mta ? mta : mta_conf, &m, err, errlen)) ||
	    (r = sg_mta_pid(&m, &p, err, errlen)))
		return r;
	snprintf(how, howlen, "%s (pid %d)", daemon_name(m.kind), (int)p);
	return sg_pid_cgroup(p, out, len, err, errlen);
}

/* What one walk of a cgroup tree found (sg_cgroup_each_pid walks one at a time). */
static struct walk {
	int nprocs;
	const char *stem;        /* name of the empty unit, without its suffix */
	char mta[PATH_MAX];      /* cgroup of an MTA daemon whose path has the stem */
	char mta_any[PATH_MAX];  /* ...of any MTA daemon */
	char named[PATH_MAX];    /* populated cgroup whose name has the stem */
	char what[64], what_any[64];
} w;

static void visit(void *arg, pid_t pid, const char *path, int level, int base)
{
	char comm[32];

	(void)arg;
	w.nprocs++;
	if (!w.stem)
		return;
	if (!w.named[0] && strstr(path + base, w.stem))
		snprintf(w.named, sizeof(w.named), "%s", path);
	if (level == 0 && !strcmp(path, sg_cgroup2_root()))
		return;   /* the root: governing it would govern everything */
	read_comm(pid, comm, sizeof(comm));
	for (int k = SG_MTA_POSTFIX; k <= SG_MTA_EXIM; k++) {
		if (!is_mta_comm(k, comm))
			continue;
		bool near = strstr(path, w.stem) != NULL;
		char *dst = near ? w.mta : w.mta_any, *what = near ? w.what : w.what_any;

		if (!dst[0]) {
			snprintf(dst, PATH_MAX, "%s", path);
			snprintf(what, sizeof(w.what), "%s (pid %d)", daemon_name(k), (int)pid);
		}
	}
}

int sg_cgroup_nprocs(const char *cgroup)
{
	int r;

	memset(&w, 0, sizeof(w));
	r = sg_cgroup_each_pid(cgroup, visit, NULL);
	return r ? r : w.nprocs;
}

void sg_cgroup_hint(const char *cgroup, char *buf, size_t len)
{
	const char *base = strrchr(cgroup, '/');
	char stem[128];

	snprintf(stem, sizeof(stem), "%s", base ? base + 1 : cgroup);
	stem[strcspn(stem, ".@")] = '\0';
	memset(&w, 0, sizeof(w));
	w.stem = stem;
	buf[0] = '\0';
	if (sg_cgroup2_root()[0])
		sg_cgroup_each_pid(sg_cgroup2_root(), visit, NULL);
	if (w.mta[0])
		snprintf(buf, len, "%s runs in %s", w.what, w.mta);
	else if (w.named[0])
		snprintf(buf, len, "processes run in %s", w.named);
	else if (w.mta_any[0])
		snprintf(buf, len, "%s runs in %s", w.what_any, w.mta_any);
	w.stem = NULL;
}
