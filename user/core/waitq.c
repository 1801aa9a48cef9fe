// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* A waiting room queue and its percentiles (see waitq.h). */
#include <stdlib.h>
#include <string.h>
#include "waitq.h"

void sg_waitq_push(struct sg_waitq *q, struct sg_waiter *w)
{
	w->next = NULL;
	if (q->tail)
		q->tail->next = w;
	else
		q->head = w;
	q->tail = w;
	q->n++;
}

void sg_waitq_remove(struct sg_waitq *q, struct sg_waiter *w)
{
	struct sg_waiter **pp = &q->head, *prev = NULL;

	for (; *pp; prev = *pp, pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			if (q->tail == w)
				q->tail = prev;
			q->n--;
			break;
		}
	w->next = NULL;
}

uint32_t sg_waitq_oldest_ms(const struct sg_waitq *q, uint64_t now_ms)
{
	return q->head ? (uint32_t)(now_ms - q->head->since_ms) : 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

void sg_waittimes_add(struct sg_waittimes *t, uint32_t ms, struct sg_wait_pct *pct)
{
	uint32_t s[SG_WAITQ_SAMPLES];

	t->ms[t->next] = ms;
	t->next = (t->next + 1) % SG_WAITQ_SAMPLES;
	if (t->n < SG_WAITQ_SAMPLES)
		t->n++;
	memcpy(s, t->ms, t->n * sizeof(s[0]));
	qsort(s, t->n, sizeof(s[0]), cmp_u32);
	pct->p50 = s[t->n * 50 / 100];
	pct->p90 = s[t->n * 90 / 100];
	pct->p99 = s[t->n * 99 / 100];
}
