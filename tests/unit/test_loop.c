// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Unit test: the daemon's epoll loop (user/daemon/loop.c) never hands an
 * event of a closed fd to the handler of the fd that took its slot within
 * the same epoll_wait batch (a hang-up of a closed waiting connection
 * reaching a newly accepted one).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "loop.h"

static struct sg_loop L;
static int fx, fy, fz, fw;
static int calls_xy, calls_z;

static int on_z(void *arg, uint32_t events)
{
	(void)arg; (void)events;
	calls_z++;
	return 0;
}

static int on_w(void *arg, uint32_t events)
{
	(void)arg; (void)events;
	sg_loop_stop(&L);
	return 0;
}

/* Whichever of x and y runs first closes the other and opens z, which
 * takes the freed slot; then wakes w, whose handler ends the loop. */
static int on_xy(void *arg, uint32_t events)
{
	int *other = arg;
	uint64_t one = 1;

	(void)events;
	if (calls_xy++)
		return 0;
	sg_loop_drop(&L, other);
	assert_int_equal(sg_loop_add(&L, fz, EPOLLIN, on_z, NULL), 0);
	assert_int_equal(write(fw, &one, sizeof(one)), sizeof(one));
	return 0;
}

static void test_stale_event_of_a_reused_slot(void **state)
{
	uint64_t one = 1;

	(void)state;
	assert_int_equal(sg_loop_init(&L), 0);
	fx = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	fy = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	fz = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);   /* never readable */
	fw = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_int_equal(sg_loop_add(&L, fw, EPOLLIN, on_w, NULL), 0);
	assert_int_equal(sg_loop_add(&L, fx, EPOLLIN, on_xy, &fy), 0);
	assert_int_equal(sg_loop_add(&L, fy, EPOLLIN, on_xy, &fx), 0);
	/* both ready before the loop waits: one batch holds both events */
	assert_int_equal(write(fx, &one, sizeof(one)), sizeof(one));
	assert_int_equal(write(fy, &one, sizeof(one)), sizeof(one));
	assert_int_equal(sg_loop_run(&L), 0);
	assert_true(calls_xy >= 1);
	assert_int_equal(calls_z, 0);       /* the closed fd's event never reached z */
	sg_loop_close(&L);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stale_event_of_a_reused_slot),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
