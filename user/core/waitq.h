/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * A waiting room queue: a FIFO of held connections, and the percentiles of
 * how long recent ones waited. Pure: the caller embeds a
 * struct sg_waiter in what it queues and passes the time in.
 */
#ifndef SG_WAITQ_H
#define SG_WAITQ_H

#include <stdint.h>

#define SG_WAITQ_SAMPLES 256    /* recent queue times the percentiles cover */

struct sg_waiter {
	struct sg_waiter *next;
	uint64_t since_ms;      /* when it joined the queue */
};

struct sg_waitq {
	struct sg_waiter *head, *tail;
	uint32_t n;
};

/* Recent queue times of a group (all its queues), a ring. */
struct sg_waittimes {
	uint32_t ms[SG_WAITQ_SAMPLES];
	uint32_t n, next;
};

struct sg_wait_pct {
	uint32_t p50, p90, p99;  /* ms */
};

/* Append w (its since_ms set by the caller). */
void sg_waitq_push(struct sg_waitq *q, struct sg_waiter *w);

/* Take w out of the queue wherever it is (a no-op if it is not queued). */
void sg_waitq_remove(struct sg_waitq *q, struct sg_waiter *w);

/* How long the head has waited, 0 for an empty queue. */
uint32_t sg_waitq_oldest_ms(const struct sg_waitq *q, uint64_t now_ms);

/* Record one waiter's queue time and give the percentiles of the recent ones. */
void sg_waittimes_add(struct sg_waittimes *t, uint32_t ms, struct sg_wait_pct *pct);

#endif
