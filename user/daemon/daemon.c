// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* The `smtpgov load` daemon loop (see daemon.h). */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>
#include "daemon.h"
#include "discover.h"
#include "feedback.h"
#include "log.h"
#include "room.h"

static int on_signal(void *arg, uint32_t events)
{
	struct sg_daemon *d = arg;
	struct signalfd_siginfo si;

	(void)events;
	if (read(d->sig_fd, &si, sizeof(si)) == sizeof(si)) {
		pr_info("%s: stopping; enforcement stays attached", strsignal((int)si.ssi_signo));
		sg_loop_stop(&d->loop);
	}
	return 0;
}

static int on_recount(void *arg, uint32_t events)
{
	struct sg_daemon *d = arg;
	uint64_t ticks;
	int r;

	(void)events;
	if (read(d->recount_fd, &ticks, sizeof(ticks)) < 0)
		return 0;
	r = sg_kernel_recount(d->k);
	if (r < 0)
		pr_warn("recount of live sockets: %s", strerror(-r));
	return 0;
}

/*
 * The pin dir was removed or its bpf filesystem unmounted: the programs
 * stay attached by our fds; pin them and the maps again so that status and
 * unload find them. Said once until it works again.
 */
static void check_pins(struct sg_daemon *d)
{
	char err[PATH_MAX + 128];
	int r = sg_kernel_repin(d->k, err, sizeof(err));

	if (r == 1)
		pr_warn("pin dir %s was gone; pinned again (enforcement went on)", d->k->pin_dir);
	else if (r < 0 && !d->pins_said)
		pr_warn("pin dir %s is gone and cannot be made again: %s; enforcement goes on, "
			"status and unload cannot see it (retried every 2 s)", d->k->pin_dir, err);
	d->pins_said = r < 0;
}

/*
 * The governed cgroup was removed (systemd gives a restarted unit a new
 * one, and the kernel detaches programs from a removed cgroup): attach to
 * the MTA's new cgroup (found again from its pid file with --mta), or to
 * the same path once it is back, keeping every map.
 */
static int on_watch(void *arg, uint32_t events)
{
	struct sg_daemon *d = arg;
	char path[PATH_MAX], how[128], err[1024];
	struct stat st;
	uint64_t ticks;

	(void)events;
	if (read(d->watch_fd, &ticks, sizeof(ticks)) < 0)
		return 0;
	check_pins(d);
	if (!d->k->cgroup_path[0] ||
	    (!stat(d->k->cgroup_path, &st) && (uint64_t)st.st_ino == d->k->cgroup_id))
		return 0;
	snprintf(path, sizeof(path), "%s", d->k->cgroup_path);
	if (d->opts->follow_mta &&
	    sg_find_cgroup(NULL, d->opts->follow_mta, NULL, NULL, path, sizeof(path), how,
			   sizeof(how), err, sizeof(err)))
		snprintf(path, sizeof(path), "%s", d->k->cgroup_path);
	if (!stat(path, &st) && !sg_kernel_reattach(d->k, path, err, sizeof(err))) {
		pr_info("the governed cgroup was removed; now attached to %s (caps and counts kept)", path);
		d->gone_said = false;
		return 0;
	}
	if (!d->gone_said)
		pr_warn("cgroup %s was removed: nothing is governed until %s", d->k->cgroup_path,
			d->opts->follow_mta ? "the MTA runs again (checked every 2 s)" :
			"it is back (checked every 2 s; --mta follows the MTA to a new cgroup)");
	d->gone_said = true;
	return 0;
}

static bool needs_room(const struct sg_config *cfg)
{
	if (cfg->mode != SG_MODE_ENFORCE)
		return false;
	for (unsigned i = 0; i < cfg->ngroups; i++)
		if (cfg->groups[i].verdict == SG_VERDICT_QUEUE)
			return true;
	return false;
}

/* *fd = what fd_or_err says, in the loop with fn. */
static int add_fd(struct sg_daemon *d, int *fd, int fd_or_err, sg_handler fn)
{
	if (fd_or_err < 0)
		return fd_or_err;
	*fd = fd_or_err;
	return sg_loop_add(&d->loop, *fd, EPOLLIN, fn, d);
}

int sg_daemon_run(struct sg_kernel *k, const struct sg_config *cfg,
		  const struct sg_daemon_opts *opts)
{
	struct sg_daemon d = { .k = k, .cfg = cfg, .opts = opts, .sig_fd = -1, .recount_fd = -1,
			       .watch_fd = -1 };
	int r;

	if ((r = sg_loop_init(&d.loop)) || (r = add_fd(&d, &d.sig_fd, sg_stop_signalfd(), on_signal)) ||
	    (r = add_fd(&d, &d.recount_fd, sg_timerfd(opts->recount_ms), on_recount)) ||
	    (r = add_fd(&d, &d.watch_fd, sg_timerfd(SG_WATCH_MS), on_watch))) {
		pr_err("daemon: %s", strerror(-r));
		goto out;
	}
	/* Each of these says what failed, once. */
	if (needs_room(cfg) && (r = sg_room_start(&d.room, k, cfg, &d.loop)))
		goto out;
	if ((r = sg_feedback_start(&d.fb, k, cfg, &d.loop, d.room, opts->log, opts->mta)))   /* follow the MTA log, learn caps */
		goto out;
	if ((r = sg_loop_run(&d.loop)))
		pr_err("daemon: %s", strerror(-r));
out:
	sg_feedback_stop(d.fb);
	sg_room_stop(d.room);
	if (d.recount_fd >= 0)
		close(d.recount_fd);
	if (d.watch_fd >= 0)
		close(d.watch_fd);
	if (d.sig_fd >= 0)
		close(d.sig_fd);
	sg_loop_close(&d.loop);
	return r;
}
