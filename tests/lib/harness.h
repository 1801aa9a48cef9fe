/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Root test harness: each test gets its own cgroup v2 directory, bpffs pin
 * directory and temp dir (unique names with "smtpgov-test"), loads smtpgov
 * through the real CLI, and removes everything in teardown, also after a
 * failed assertion. Also: a counting TCP listener and client helpers.
 */
#ifndef SG_HARNESS_H
#define SG_HARNESS_H

#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>
#include "kernel.h"

#define TEST_PORT 2525

struct env {
	char name[64];              /* smtpgov-test-PID-N */
	char cgroup[PATH_MAX];
	char pin_dir[PATH_MAX];
	char tmp[PATH_MAX];
	char conf[PATH_MAX];
	char netns[64];             /* "" unless env_netns was called */
	struct sg_kernel k;         /* pinned maps, after env_load */
	bool loaded;
	pid_t kids[64];
	int nkids;
	pid_t daemon;               /* smtpgov load, if env_daemon started one */
	const char *wrap;           /* command env_daemon runs smtpgov under
	                             * ("prlimit --nofile=512:512"), NULL: none */
};

/* Path of the smtpgov binary under test ($SMTPGOV_BIN or build/smtpgov). */
const char *smtpgov_bin(void);

int env_setup(struct env *e);
void env_teardown(struct env *e);
/* Write the config file. */
void env_config(struct env *e, const char *text);
/* Run `smtpgov --pin-dir DIR ARGS...` (ARGS a shell fragment); returns the exit
 * status, output (stdout+stderr) in out if not NULL. */
int env_cli(struct env *e, char *out, size_t outlen, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* load --cgroup --config --no-follow [extra], then open the pinned maps. */
int env_load(struct env *e, const char *extra);
const struct sg_group *env_group(struct env *e, const char *name);
/* Start `smtpgov load` (the daemon) with the env's config and `extra`
 * arguments; wait until it is attached (and its waiting room open, if
 * room is true); then open the pinned maps. */
int env_daemon(struct env *e, const char *extra, bool room);
/* Stop the daemon: SIGTERM (or SIGKILL), wait; returns its exit status. */
int env_daemon_stop(struct env *e, int sig);

/* Fork a child that joins the env's cgroup (and netns, if set) and runs fn;
 * its exit status is fn's return value. */
pid_t env_spawn(struct env *e, int (*fn)(void *), void *arg);
int env_wait(struct env *e, pid_t pid);   /* exit status, -1 if killed */
/* Create a netns named after the env with lo up and the given address
 * (more: `ip -n e->netns addr add`); env_daemon then runs in it too. */
int env_netns(struct env *e, const char *addr6);
int env_enter_netns(const struct env *e);
/* Move the calling process into the env's cgroup. */
int env_join(const struct env *e);

/* A TCP listener that counts concurrent sessions. A client that wants to be
 * counted exactly sends "b" before closing and waits for the "k" reply: the
 * listener forgets the session before the kernel frees the slot. */
#define LISTENER_SOURCES 8
struct listener {
	int fd;
	pthread_t thread;
	int stop_pipe[2];
	int cur, peak, accepted;     /* atomic */
	int ready;                   /* the thread is in its loop (atomic) */
	/* the same per client address, first LISTENER_SOURCES addresses seen */
	struct sockaddr_in6 src[LISTENER_SOURCES];   /* IPv4 as v4-mapped */
	int nsrc, src_cur[LISTENER_SOURCES], src_peak[LISTENER_SOURCES];
	int src_accepted[LISTENER_SOURCES];
};
/* Index of a client address ("127.0.0.71", "2001:db8::71") in l->src, or -1. */
int listener_source(const struct listener *l, const char *addr);
/* Start a listener (the harness owns it: it outlives a failed test, whose
 * teardown stops it). */
int listener_start(struct listener **l, int family, const char *addr, int port);
void listener_stop(struct listener *l);

/* connect() to addr:port; returns the socket, or -errno. */
int tcp_connect(int family, const char *addr, int port);
/* The same from a socket bound to src first (port 0), as an MTA with a
 * chosen sending address does; src NULL: unbound. */
int tcp_connect_from(int family, const char *src, const char *addr, int port);
/* Read one line (up to \n) with a deadline; returns its length or -1. */
int read_line(int fd, char *buf, size_t len, int timeout_ms);
/* Say goodbye to a listener (see above) and close. */
void tcp_bye(int fd);

#endif
