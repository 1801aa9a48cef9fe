// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* The daemon's epoll loop (see loop.h). */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include "loop.h"

static uint64_t tag(int slot, uint32_t gen)
{
	return (uint64_t)gen << 32 | (uint32_t)slot;
}

int sg_loop_init(struct sg_loop *l)
{
	memset(l, 0, sizeof(*l));
	for (int i = 0; i < SG_LOOP_MAX; i++)
		l->slots[i].fd = -1;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	return l->epfd < 0 ? -errno : 0;
}

int sg_loop_add(struct sg_loop *l, int fd, uint32_t events, sg_handler fn, void *arg)
{
	for (int i = 0; i < SG_LOOP_MAX; i++) {
		if (l->slots[i].fd >= 0)
			continue;
		uint32_t gen = l->slots[i].gen + 1;
		struct epoll_event ev = { .events = events, .data.u64 = tag(i, gen) };

		if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev))
			return -errno;
		l->slots[i].gen = gen;
		l->slots[i].fd = fd;
		l->slots[i].fn = fn;
		l->slots[i].arg = arg;
		return 0;
	}
	return -ENOSPC;
}

int sg_loop_mod(struct sg_loop *l, int fd, uint32_t events)
{
	for (int i = 0; i < SG_LOOP_MAX; i++)
		if (l->slots[i].fd == fd) {
			struct epoll_event ev = { .events = events, .data.u64 = tag(i, l->slots[i].gen) };

			return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) ? -errno : 0;
		}
	return -ENOENT;
}

void sg_loop_del(struct sg_loop *l, int fd)
{
	for (int i = 0; i < SG_LOOP_MAX; i++)
		if (l->slots[i].fd == fd) {
			epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
			l->slots[i].fd = -1;
		}
}

void sg_loop_drop(struct sg_loop *l, int *fd)
{
	if (*fd < 0)
		return;
	sg_loop_del(l, *fd);
	close(*fd);
	*fd = -1;
}

int sg_loop_run(struct sg_loop *l)
{
	struct epoll_event evs[16];

	while (!l->stop) {
		int n = epoll_wait(l->epfd, evs, 16, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (int i = 0; i < n && !l->stop; i++) {
			uint32_t s = (uint32_t)evs[i].data.u64;
			int r;

			/* freed in this batch (and maybe reused): not this event's */
			if (l->slots[s].fd < 0 || l->slots[s].gen != (uint32_t)(evs[i].data.u64 >> 32))
				continue;
			r = l->slots[s].fn(l->slots[s].arg, evs[i].events);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

void sg_loop_stop(struct sg_loop *l)
{
	l->stop = true;
}

void sg_loop_close(struct sg_loop *l)
{
	if (l->epfd >= 0)
		close(l->epfd);
	l->epfd = -1;
}

static void stop_signals(sigset_t *mask)
{
	sigemptyset(mask);
	sigaddset(mask, SIGINT);
	sigaddset(mask, SIGTERM);
}

void sg_block_stop_signals(void)
{
	sigset_t mask;

	stop_signals(&mask);
	sigprocmask(SIG_BLOCK, &mask, NULL);
}

int sg_stop_signalfd(void)
{
	sigset_t mask;
	int fd;

	stop_signals(&mask);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int sg_timerfd(uint64_t period_ms)
{
	struct itimerspec its = {
		.it_interval = { (time_t)(period_ms / 1000), (long)(period_ms % 1000) * 1000000 },
		.it_value = { (time_t)(period_ms / 1000), (long)(period_ms % 1000) * 1000000 },
	};
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (timerfd_settime(fd, 0, &its, NULL)) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}
