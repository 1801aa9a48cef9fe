// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* The waiting room's doors, one per network namespace (see doors.h). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include "doors.h"
#include "listener.h"
#include "fdstore.h"
#include "log.h"
#include "netns.h"

struct sg_doors {
	struct sg_kernel *k;
	struct sg_loop *loop;
	sg_door_fn on_accept;
	void *ctx;
	int scan_fd;
	bool kicked;           /* a scan is due in SG_DOORS_KICK_MS */
	bool paused;           /* listeners not polled (sg_doors_accepting) */
	struct sg_door *d[SG_MAX_NETNS];   /* open (or failed) doors; [0] is ours */
	int n;
	struct sg_fd_given *given; /* fds the previous daemon left (taken: fd -1) */
	int ngiven;
	bool store;            /* listeners go to the fd store */
	bool stored;           /* ours are there: a restart keeps the room */
	bool leaving;          /* stopping for a restart: leave room and store as they are */
};

/* In the door's namespace: one free port on 127.0.0.1 and ::1 (IPv4 only
 * where there is no IPv6 loopback). */
static int listen_here(void *arg)
{
	struct sg_door *d = arg;
	int port = sg_listen_loopback(&d->lfd4, &d->lfd6);

	if (port < 0)
		return port;
	d->port = (uint16_t)port;
	return 0;
}

static int on_listener(void *arg, uint32_t events)
{
	struct sg_door *d = arg;

	(void)events;
	d->set->on_accept(d->set->ctx, d);
	return 0;
}

/* A door's listener in the fd store: "door4.INO", "door6.INO". */
static void door_name(const struct sg_door *d, int v6, char *buf)
{
	snprintf(buf, SG_FDNAME_LEN, "door%d.%lu", v6 ? 6 : 4, (unsigned long)d->ino);
}

/* The previous daemon's listeners for this door's namespace, if it left them. */
static bool take_given(struct sg_doors *ds, struct sg_door *d)
{
	int *lfd[2] = { &d->lfd4, &d->lfd6 };
	char name[SG_FDNAME_LEN];

	for (int v6 = 0; v6 < 2; v6++) {
		door_name(d, v6, name);
		for (int i = 0; i < ds->ngiven; i++) {
			int on = 0;
			socklen_t len = sizeof(on);

			if (ds->given[i].fd < 0 || strcmp(ds->given[i].name, name) ||
			    getsockopt(ds->given[i].fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) || !on)
				continue;
			*lfd[v6] = ds->given[i].fd;
			ds->given[i].fd = -1;
		}
	}
	if (d->lfd4 < 0)
		return false;
	d->port = (uint16_t)sg_listen_port(d->lfd4);
	return true;
}

/* Listen in the door's namespace (or take the previous daemon's listeners)
 * and put the listener in `room`. */
static int open_door(struct sg_doors *ds, struct sg_door *d)
{
	bool taken;
	int r;

	d->lfd4 = d->lfd6 = -1;
	taken = take_given(ds, d);
	if ((!taken && (r = sg_netns_run(d->nsfd, listen_here, d))) ||
	    (r = sg_netns_cookie(d->lfd4, &d->cookie)) ||
	    (r = sg_loop_add(ds->loop, d->lfd4, ds->paused ? 0 : EPOLLIN, on_listener, d)) ||
	    (d->lfd6 >= 0 &&
	     (r = sg_loop_add(ds->loop, d->lfd6, ds->paused ? 0 : EPOLLIN, on_listener, d))))
		return r;
	if ((r = sg_kernel_room_register(ds->k, d->cookie, d->lfd4, d->lfd6)))
		return r;
	d->stored = taken;     /* they came from the store and stay there */
	if (!taken && ds->store) {
		char name[SG_FDNAME_LEN];

		door_name(d, 0, name);
		d->stored = !sg_fdstore_put(d->lfd4, name);
		door_name(d, 1, name);
		if (d->stored && d->lfd6 >= 0 && sg_fdstore_put(d->lfd6, name))
			d->stored = false;
	}
	return 0;
}

static void close_listeners(struct sg_doors *ds, struct sg_door *d)
{
	int *fds[] = { &d->lfd4, &d->lfd6 };

	/* Leaving for a restart, a stored door stays in `room` and in the
	 * store; else out of `room` first: its over-cap connects are refused. */
	bool keep = ds->leaving && d->stored;
	char name[SG_FDNAME_LEN];

	if (!keep && d->lfd4 >= 0)
		sg_kernel_room_unregister(ds->k, d->cookie);
	if (d->stored && !keep) {
		for (int v6 = 0; v6 < 2; v6++) {
			door_name(d, v6, name);
			sg_fdstore_drop(name);
		}
		d->stored = false;
	}
	for (int i = 0; i < 2; i++)
		sg_loop_drop(ds->loop, fds[i]);
}

void sg_doors_accepting(struct sg_doors *ds, bool on)
{
	ds->paused = !on;
	for (int i = 0; i < ds->n; i++) {
		struct sg_door *d = ds->d[i];

		if (d->lfd4 >= 0)
			sg_loop_mod(ds->loop, d->lfd4, on ? EPOLLIN : 0);
		if (d->lfd6 >= 0)
			sg_loop_mod(ds->loop, d->lfd6, on ? EPOLLIN : 0);
	}
}

uint32_t sg_doors_backlog(const struct sg_doors *ds)
{
	uint32_t n = 0;

	for (int i = 0; i < ds->n; i++) {
		int fds[2] = { ds->d[i]->lfd4, ds->d[i]->lfd6 };

		for (int j = 0; j < 2; j++) {
			struct tcp_info ti;
			socklen_t len = sizeof(ti);

			/* For a listener, tcpi_unacked is its accept queue's length. */
			if (fds[j] >= 0 && !getsockopt(fds[j], IPPROTO_TCP, TCP_INFO, &ti, &len))
				n += ti.tcpi_unacked;
		}
	}
	return n;
}

void sg_door_get(struct sg_door *d)
{
	d->refs++;
}

void sg_door_put(struct sg_door *d)
{
	if (--d->refs)
		return;
	if (d->nsfd >= 0)
		close(d->nsfd);
	free(d);
}

/* Close a door; connections that came through it keep it until they end. */
static void drop(struct sg_doors *ds, int i)
{
	struct sg_door *d = ds->d[i];

	close_listeners(ds, d);
	ds->d[i] = ds->d[--ds->n];
	sg_door_put(d);
}

static struct sg_door *add(struct sg_doors *ds, ino_t ino, pid_t pid)
{
	struct sg_door *d;
	int fd = pid ? sg_netns_open(pid, ino) : -1;

	if ((pid && fd < 0) || ds->n == SG_MAX_NETNS || !(d = calloc(1, sizeof(*d)))) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	d->ino = ino;
	d->nsfd = fd;
	d->lfd4 = d->lfd6 = -1;
	d->refs = 1;
	d->set = ds;
	ds->d[ds->n++] = d;
	return d;
}

/* Bring the doors in line with the namespaces the cgroup's processes use. */
static void scan(struct sg_doors *ds)
{
	struct sg_netns_set set;
	int r;

	sg_netns_scan(ds->k->cgroup_path, &set);
	/* Namespaces nobody in the cgroup uses any more (ours stays). */
	for (int i = ds->n - 1; i > 0; i--) {
		int j = 1;

		while (j < set.n && set.ino[j] != ds->d[i]->ino)
			j++;
		if (j < set.n)
			continue;
		if (!ds->d[i]->failed)
			pr_info("waiting room: network namespace %lu has no governed process left; "
				"its door (port %u) is closed", (unsigned long)ds->d[i]->ino, ds->d[i]->port);
		drop(ds, i);
	}
	/* New ones, and those where listening failed before (a loopback that
	 * was still down when the container started). */
	for (int j = 1; j < set.n; j++) {
		struct sg_door *d = NULL;

		for (int i = 0; i < ds->n; i++)
			if (ds->d[i]->ino == set.ino[j])
				d = ds->d[i];
		if (d && !d->failed)
			continue;
		if (!d && !(d = add(ds, set.ino[j], set.pid[j])))
			continue;
		if ((r = open_door(ds, d))) {
			close_listeners(ds, d);
			if (!d->failed)
				pr_warn("waiting room: network namespace %lu (pid %d): cannot listen on its "
					"127.0.0.1: %s; its over-cap connects are refused (retrying every %d s)",
					(unsigned long)d->ino, (int)set.pid[j], strerror(-r),
					SG_DOORS_SCAN_MS / 1000);
			d->failed = true;
			continue;
		}
		pr_info("waiting room: door in network namespace %lu (pid %d) on 127.0.0.1%s port %u",
				(unsigned long)d->ino, (int)set.pid[j], d->lfd6 >= 0 ? " and ::1" : "",
				d->port);
		d->failed = false;
	}
}

static int on_scan(void *arg, uint32_t events)
{
	struct sg_doors *ds = arg;
	uint64_t ticks;

	(void)events;
	if (read(ds->scan_fd, &ticks, sizeof(ticks)) >= 0)
		scan(ds);
	ds->kicked = false;
	return 0;
}

void sg_doors_kick(struct sg_doors *ds)
{
	struct itimerspec its = {
		.it_value.tv_nsec = SG_DOORS_KICK_MS * 1000000L,
		.it_interval.tv_sec = SG_DOORS_SCAN_MS / 1000,
	};

	if (!ds || ds->kicked)
		return;
	ds->kicked = true;
	timerfd_settime(ds->scan_fd, 0, &its, NULL);
}

struct sg_door *sg_doors_find(struct sg_doors *ds, unsigned long ino)
{
	for (int i = 0; ds && i < ds->n; i++)
		if (ds->d[i]->ino == ino && ds->d[i]->lfd4 >= 0)
			return ds->d[i];
	return NULL;
}

bool sg_doors_stored(const struct sg_doors *ds)
{
	return ds && ds->n && ds->d[0]->stored;
}

void sg_doors_leave(struct sg_doors *ds)
{
	if (!ds)
		return;
	ds->leaving = true;
	sg_doors_stop(ds);
}

int sg_doors_start(struct sg_doors **out, struct sg_kernel *k, struct sg_loop *loop,
		   sg_door_fn on_accept, void *ctx, uint16_t *port,
		   struct sg_fd_given *given, int ngiven)
{
	struct sg_doors *ds = calloc(1, sizeof(*ds));
	struct sg_netns_set self;
	struct sg_door *d;
	int r;

	if (!ds)
		return -ENOMEM;
	ds->k = k;
	ds->loop = loop;
	ds->on_accept = on_accept;
	ds->ctx = ctx;
	ds->scan_fd = -1;
	ds->given = given;
	ds->ngiven = ngiven;
	ds->store = sg_fdstore_on();
	sg_netns_scan(NULL, &self);
	if (!(d = add(ds, self.ino[0], 0))) {
		r = -ENOMEM;
		goto fail;
	}
	if ((r = open_door(ds, d))) {
		if (r == -ENOPROTOOPT)
			pr_err("waiting room: no SO_NETNS_COOKIE (kernel 5.14 or later needed)");
		else
			pr_err("waiting room: listen on 127.0.0.1 and ::1: %s", strerror(-r));
		goto fail;
	}
	*port = d->port;
	ds->scan_fd = sg_timerfd(SG_DOORS_SCAN_MS);
	if (ds->scan_fd < 0 || (r = sg_loop_add(loop, ds->scan_fd, EPOLLIN, on_scan, ds))) {
		if (ds->scan_fd < 0)
			r = ds->scan_fd;
		pr_err("waiting room: namespace scan timer: %s", strerror(-r));
		goto fail;
	}
	scan(ds);
	/* The previous daemon's doors of namespaces that are gone. */
	for (int i = 0; i < ngiven; i++)
		if (given[i].fd >= 0 && !strncmp(given[i].name, "door", 4)) {
			close(given[i].fd);
			given[i].fd = -1;
			sg_fdstore_drop(given[i].name);
		}
	ds->given = NULL;
	ds->ngiven = 0;
	*out = ds;
	return 0;
fail:
	sg_doors_stop(ds);
	return r;
}

void sg_doors_stop(struct sg_doors *ds)
{
	if (!ds)
		return;
	while (ds->n)
		drop(ds, ds->n - 1);
	if (ds->scan_fd >= 0) {
		sg_loop_del(ds->loop, ds->scan_fd);
		close(ds->scan_fd);
	}
	free(ds);
}
