/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The `smtpgov load` daemon: after the kernel half is attached, one epoll
 * loop (loop.h) serves signals, the periodic recount that repairs drift in
 * the live counts and the waiting room (room.h), until SIGINT or SIGTERM. Enforcement stays pinned
 * when it exits.
 */
#ifndef SG_DAEMON_H
#define SG_DAEMON_H

#include "config.h"
#include "kernel.h"
#include "loop.h"
#include "room.h"

struct sg_fb;

struct sg_daemon_opts {
	const char *log;          /* MTA log (logsource.h); NULL = [global] log */
	const char *mta;          /* --mta SPEC (mta.h), for log = auto; NULL = [global] mta */
	uint32_t recount_ms;      /* drift recount period */
	const char *follow_mta;   /* --mta or [global] mta: found again when its cgroup goes */
};

/* How often the daemon checks that the governed cgroup is still there. */
#define SG_WATCH_MS 2000

struct sg_daemon {
	struct sg_kernel *k;
	const struct sg_config *cfg;
	const struct sg_daemon_opts *opts;
	struct sg_loop loop;
	int sig_fd, recount_fd, watch_fd;
	bool gone_said;           /* the governed cgroup is gone, and we said so */
	bool pins_said;           /* the pin dir is gone and cannot be made again, said so */
	struct sg_room *room;     /* waiting room, when a group queues */
	struct sg_fb *fb;         /* log feedback (feedback.c), NULL when off */
};

/* Run until SIGINT/SIGTERM (0) or an error (negative errno, logged). */
int sg_daemon_run(struct sg_kernel *k, const struct sg_config *cfg,
		  const struct sg_daemon_opts *opts);

#endif
