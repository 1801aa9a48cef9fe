// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* Unit tests: the waiting room's queue and its percentiles (user/core/waitq.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>
#include "waitq.h"

static void test_fifo_and_removal(void **state)
{
	struct sg_waitq q;
	struct sg_waiter w[4];

	(void)state;
	memset(&q, 0, sizeof(q));
	assert_int_equal(sg_waitq_oldest_ms(&q, 1000), 0);
	for (int i = 0; i < 4; i++) {
		w[i].since_ms = 1000 + (uint64_t)i * 10;
		sg_waitq_push(&q, &w[i]);
	}
	assert_int_equal(q.n, 4);
	assert_ptr_equal(q.head, &w[0]);
	assert_int_equal(sg_waitq_oldest_ms(&q, 1100), 100);
	/* from the middle, the tail, then the head */
	sg_waitq_remove(&q, &w[2]);
	assert_ptr_equal(w[1].next, &w[3]);
	sg_waitq_remove(&q, &w[3]);
	assert_ptr_equal(q.tail, &w[1]);
	sg_waitq_remove(&q, &w[0]);
	assert_ptr_equal(q.head, &w[1]);
	assert_int_equal(q.n, 1);
	/* not queued: nothing changes */
	sg_waitq_remove(&q, &w[0]);
	assert_int_equal(q.n, 1);
	/* a push after the tail was removed links from the new tail */
	sg_waitq_push(&q, &w[2]);
	assert_ptr_equal(w[1].next, &w[2]);
	sg_waitq_remove(&q, &w[1]);
	sg_waitq_remove(&q, &w[2]);
	assert_null(q.head);
	assert_null(q.tail);
	assert_int_equal(q.n, 0);
}

static void test_percentiles_of_recent_waits(void **state)
{
	struct sg_waittimes q;
	struct sg_wait_pct p;

	(void)state;
	memset(&q, 0, sizeof(q));
	sg_waittimes_add(&q, 7, &p);
	assert_int_equal(p.p50, 7);
	assert_int_equal(p.p99, 7);
	/* 1..100 ms in reverse order */
	memset(&q, 0, sizeof(q));
	for (uint32_t ms = 100; ms >= 1; ms--)
		sg_waittimes_add(&q, ms, &p);
	assert_int_equal(p.p50, 51);
	assert_int_equal(p.p90, 91);
	assert_int_equal(p.p99, 100);
	/* only the last SG_WAITQ_SAMPLES count: old long waits age out */
	for (int i = 0; i < SG_WAITQ_SAMPLES; i++)
		sg_waittimes_add(&q, 5, &p);
	assert_int_equal(p.p50, 5);
	assert_int_equal(p.p99, 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fifo_and_removal),
		cmocka_unit_test(test_percentiles_of_recent_waits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
