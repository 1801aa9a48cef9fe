// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Unit tests: the kernel's governing decision (sg_decide) and the
 * IPv4-mapped form, compiled natively from include/smtpgov.h, the same
 * header the BPF program uses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <string.h>
#include "cidr.h"
#include "smtpgov.h"

enum { E = SG_MODE_ENFORCE, D = SG_MODE_DRY_RUN, R = SG_VERDICT_REFUSE, Q = SG_VERDICT_QUEUE };

static void test_decision_table(void **state)
{
	static const struct {
		__s32 old;
		__u32 cap, mode, verdict;
		int from_room, room;
		enum sg_outcome want;
	} cases[] = {
		/* under the cap: admitted whatever else holds */
		{ 0, 2, E, R, 0, -1, SG_OUT_ADMIT },
		{ 1, 2, E, Q, 1, 0, SG_OUT_ADMIT },     /* the room's own upstream too */
		{ 1, 2, D, Q, 0, -1, SG_OUT_ADMIT },
		/* at or over it, enforcing: the verdict */
		{ 2, 2, E, R, 0, -1, SG_OUT_REFUSE },
		{ 5, 2, E, R, 0, 1, SG_OUT_REFUSE },    /* refuse groups never queue */
		{ 2, 2, E, Q, 0, -1, SG_OUT_ASK_ROOM }, /* queue: is the room open? */
		{ 2, 2, E, Q, 0, 1, SG_OUT_QUEUE },
		{ 2, 2, E, Q, 0, 0, SG_OUT_REFUSE },    /* no room (no daemon, full) */
		/* the room's own upstream over cap: retried later, never requeued */
		{ 2, 2, E, Q, 1, -1, SG_OUT_RETRY },
		{ 2, 2, E, Q, 1, 1, SG_OUT_RETRY },
		/* dry-run: admitted, counted as a would-be refusal */
		{ 2, 2, D, R, 0, -1, SG_OUT_ADMIT_OVER },
		{ 9, 2, D, Q, 1, 1, SG_OUT_ADMIT_OVER },
		/* a pause (cap 0) holds everything off */
		{ 0, 0, E, R, 0, -1, SG_OUT_REFUSE },
		{ 0, 0, E, Q, 0, 1, SG_OUT_QUEUE },
		/* a count that drifted below zero is under any cap */
		{ -1, 0, E, R, 0, -1, SG_OUT_ADMIT },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum sg_outcome got = sg_decide(cases[i].old, cases[i].cap, cases[i].mode,
						cases[i].verdict, cases[i].from_room, cases[i].room);

		if (got != cases[i].want)
			fail_msg("case %zu: old %d cap %u mode %u verdict %u from_room %d room %d: "
				 "got %d, want %d", i, cases[i].old, cases[i].cap, cases[i].mode,
				 cases[i].verdict, cases[i].from_room, cases[i].room, got, cases[i].want);
	}
}

/* The answer never depends on the room unless it asked. */
static void test_room_asked_only_when_needed(void **state)
{
	(void)state;
	for (__s32 old = -2; old < 6; old++)
		for (__u32 cap = 0; cap < 4; cap++)
			for (__u32 mode = E; mode <= D; mode++)
				for (__u32 v = R; v <= Q; v++)
					for (int fr = 0; fr < 2; fr++) {
						enum sg_outcome o = sg_decide(old, cap, mode, v, fr, -1);

						if (o == SG_OUT_ASK_ROOM)
							continue;
						assert_int_equal(o, sg_decide(old, cap, mode, v, fr, 0));
						assert_int_equal(o, sg_decide(old, cap, mode, v, fr, 1));
					}
}

/* Joining the waiters: queue groups only, enforcing, never the room's own. */
static void test_joins(void **state)
{
	(void)state;
	assert_true(sg_joins(1, E, Q, 0));
	assert_false(sg_joins(0, E, Q, 0));     /* nobody waits: reserve as usual */
	assert_false(sg_joins(1, E, R, 0));     /* refuse groups never queue */
	assert_false(sg_joins(1, D, Q, 0));     /* dry-run never queues */
	assert_false(sg_joins(1, E, Q, 1));     /* the room's own upstream */
}

static void test_v4_mapped(void **state)
{
	__u32 w[4];
	uint8_t a[16], want[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 142, 250, 1, 27 };
	struct in_addr ip;

	(void)state;
	inet_pton(AF_INET, "142.250.1.27", &ip);
	sg_map_v4(w, ip.s_addr);
	assert_memory_equal(w, want, 16);
	assert_true(sg_is_v4mapped(w));
	sg_addr16_from_v4(a, &ip);
	assert_memory_equal(a, want, 16);
	assert_true(sg_addr16_is_v4(a));
	inet_pton(AF_INET6, "2a00:1450:4013:c06::1b", a);
	assert_false(sg_addr16_is_v4(a));
	inet_pton(AF_INET6, "::1", a);
	assert_false(sg_addr16_is_v4(a));
	inet_pton(AF_INET6, "::ffff:0:0", a);      /* ::ffff:0.0.0.0 is mapped */
	assert_true(sg_addr16_is_v4(a));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decision_table),
		cmocka_unit_test(test_room_asked_only_when_needed),
		cmocka_unit_test(test_joins),
		cmocka_unit_test(test_v4_mapped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
