/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* A small epoll loop: the daemon's only thread waits here, and nowhere else. */
#ifndef SG_LOOP_H
#define SG_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#define SG_LOOP_MAX 4096

/* Return 0 to go on, a negative errno to stop the loop with that error. */
typedef int (*sg_handler)(void *arg, uint32_t events);

/*
 * An event names its slot and the slot's generation: a slot freed and
 * reused while one epoll_wait batch is dispatched is a new generation, so a
 * stale event of the old fd in that batch is dropped, never handed to the
 * new fd's handler.
 */
struct sg_loop {
	int epfd;
	bool stop;
	struct { int fd; uint32_t gen; sg_handler fn; void *arg; } slots[SG_LOOP_MAX];
};

int sg_loop_init(struct sg_loop *l);
int sg_loop_add(struct sg_loop *l, int fd, uint32_t events, sg_handler fn, void *arg);
int sg_loop_mod(struct sg_loop *l, int fd, uint32_t events);
void sg_loop_del(struct sg_loop *l, int fd);
/* Take *fd out of the loop and close it; *fd becomes -1 (a no-op if < 0). */
void sg_loop_drop(struct sg_loop *l, int *fd);
/* Run until sg_loop_stop or a handler error. */
int sg_loop_run(struct sg_loop *l);
void sg_loop_stop(struct sg_loop *l);
void sg_loop_close(struct sg_loop *l);

/* Block SIGINT and SIGTERM (they then wait for a signalfd). */
void sg_block_stop_signals(void);
/* Block them and return a signalfd (non-blocking, close-on-exec) for them. */
int sg_stop_signalfd(void);

/* A periodic timerfd (non-blocking, close-on-exec); read it to re-arm. */
int sg_timerfd(uint64_t period_ms);

#endif
