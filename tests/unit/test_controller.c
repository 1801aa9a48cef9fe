// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* Unit tests: the per-group cap controller (user/core/controller.c), injected clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>
#include "controller.h"

#define T0 1795521600

static struct sg_group_conf conf(void)
{
	struct sg_group_conf g = {
		.name = "google", .cap = 4, .min_cap = 1, .max_cap = 8, .decrease = 0.5,
		.cooldown = 60, .increase_after = 5, .increase_interval = 600, .pause = 900,
	};
	return g;
}

/* Everything due by t; checks each change is in bounds and ramps by +1. */
static int advance(struct sg_ctl *c, int64_t t, struct sg_change *last)
{
	struct sg_change chg;
	int n = 0;

	while (sg_ctl_advance(c, t, &chg)) {
		assert_true(chg.time <= t);
		if (chg.from != 0)
			assert_true(chg.to == chg.from + 1);
		assert_true(chg.to >= c->conf->min_cap && chg.to <= c->conf->max_cap);
		if (last)
			*last = chg;
		n++;
	}
	return n;
}

static void test_burst_is_one_decrease(void **state)
{
	struct sg_group_conf g = conf();
	struct sg_change chg;
	struct sg_ctl c;
	int changes = 0;

	(void)state;
	sg_ctl_init(&c, &g, 4, T0);
	for (int i = 0; i < 50; i++) {
		advance(&c, T0 + 100, NULL);
		if (sg_ctl_signal(&c, T0 + 100, SG_ACTION_DECREASE, "gmail-421-4.4.5", "ABC123", NULL, &chg)) {
			changes++;
			assert_int_equal(chg.from, 4);
			assert_int_equal(chg.to, 2);
			assert_string_equal(chg.reason, "rule gmail-421-4.4.5, queue id ABC123");
			assert_int_equal(chg.time, T0 + 100);
		}
	}
	assert_int_equal(changes, 1);
	assert_int_equal(c.cap, 2);
	assert_int_equal(c.signals, 50);
	/* start unknown: within the echo window (5 s before any session was
	 * observed) an echo; after it, the next decrease */
	assert_int_equal(sg_ctl_echo_window_ms(&c), 5000);
	assert_false(sg_ctl_signal(&c, T0 + 104, SG_ACTION_DECREASE, "r", "Q", NULL, &chg));
	assert_true(sg_ctl_signal(&c, T0 + 105, SG_ACTION_DECREASE, "r", "Q", NULL, &chg));
	assert_int_equal(chg.to, 1);
	/* at min_cap: a decision, no change, never below */
	assert_false(sg_ctl_signal(&c, T0 + 300, SG_ACTION_DECREASE, "r", "Q", NULL, &chg));
	assert_int_equal(c.cap, 1);
	/* ignore is no signal for the cap */
	assert_false(sg_ctl_signal(&c, T0 + 400, SG_ACTION_IGNORE, "r", "Q", NULL, &chg));
}

static void test_pause_then_recovery(void **state)
{
	struct sg_group_conf g = conf();
	struct sg_change chg;
	struct sg_ctl c;

	(void)state;
	sg_ctl_init(&c, &g, 4, T0);
	assert_true(sg_ctl_signal(&c, T0 + 10, SG_ACTION_PAUSE, "ms-4.7.652-connections", "Q1", NULL, &chg));
	assert_int_equal(chg.from, 4);
	assert_int_equal(chg.to, 0);
	assert_int_equal(sg_ctl_next_due(&c), T0 + 10 + 900);
	/* more signals and deliveries during the pause change nothing, and do
	 * not extend it */
	assert_false(sg_ctl_signal(&c, T0 + 500, SG_ACTION_PAUSE, "r", "Q2", NULL, &chg));
	assert_false(sg_ctl_signal(&c, T0 + 501, SG_ACTION_DECREASE, "r", "Q3", NULL, &chg));
	for (int i = 0; i < 20; i++)
		assert_false(sg_ctl_delivered(&c, T0 + 600, "S", &chg));
	assert_int_equal(advance(&c, T0 + 909, NULL), 0);
	assert_int_equal(c.cap, 0);
	/* the pause ends at its time, one decrease below the cap it paused */
	assert_true(sg_ctl_advance(&c, T0 + 2000, &chg));
	assert_int_equal(chg.time, T0 + 910);
	assert_int_equal(chg.from, 0);
	assert_int_equal(chg.to, 2);
	assert_non_null(strstr(chg.reason, "end of pause (rule ms-4.7.652-connections, queue id Q1)"));
	/* nothing sent since: no clean interval, however long */
	assert_false(sg_ctl_advance(&c, T0 + 20000, &chg));
	/* a delivery starts one: +1 a clean interval later, at its time */
	assert_false(sg_ctl_delivered(&c, T0 + 20000, "S", &chg));
	assert_false(sg_ctl_advance(&c, T0 + 20599, &chg));
	assert_true(sg_ctl_advance(&c, T0 + 30000, &chg));
	assert_int_equal(chg.time, T0 + 20600);
	assert_int_equal(chg.to, 3);
	assert_false(sg_ctl_advance(&c, T0 + 30000, &chg));
}

static void test_ramp_never_jumps(void **state)
{
	struct sg_group_conf g = conf();
	struct sg_change chg;
	struct sg_ctl c;
	uint32_t prev;
	int64_t t = T0;

	(void)state;
	sg_ctl_init(&c, &g, 1, T0);
	/* deliveries: +1 per increase_after, never more */
	prev = c.cap;
	for (int i = 0; i < 100; i++) {
		t++;
		advance(&c, t, NULL);
		if (sg_ctl_delivered(&c, t, "S", &chg)) {
			assert_int_equal(chg.from, prev);
			assert_int_equal(chg.to, prev + 1);
			prev = chg.to;
		}
		assert_int_equal(c.cap, i + 1 >= 35 ? 8 : 1 + (i + 1) / 5);
	}
	assert_int_equal(c.cap, 8);   /* max_cap holds */

	/* clean intervals: a group that sends nothing stays where it is */
	sg_ctl_init(&c, &g, 1, T0);
	assert_int_equal(advance(&c, T0 + 86400, &chg), 0);
	assert_int_equal(sg_ctl_next_due(&c), INT64_MAX);  /* nothing to wake for */
	/* one delivery, then a quiet log: one step, at its time, then none */
	sg_ctl_init(&c, &g, 1, T0);
	assert_false(sg_ctl_delivered(&c, T0 + 1, "S", &chg));
	assert_int_equal(sg_ctl_next_due(&c), T0 + 601);
	assert_int_equal(advance(&c, T0 + 86400, &chg), 1);
	assert_int_equal(chg.time, T0 + 601);
	assert_int_equal(c.cap, 2);
	assert_int_equal(sg_ctl_next_due(&c), INT64_MAX);
	/* a delivery in each interval: +1 each, up to max_cap, never past it */
	t = T0 + 86400;
	for (int i = 0; i < 20; i++) {
		assert_false(sg_ctl_delivered(&c, t, "S", &chg));
		t += 600;
		advance(&c, t, NULL);
		assert_int_equal(c.cap, i + 3 > 8 ? 8 : i + 3);
	}
}

static void test_bounds(void **state)
{
	struct sg_group_conf g = conf();
	struct sg_change chg;
	struct sg_ctl c;

	(void)state;
	sg_ctl_init(&c, &g, 100, T0);
	assert_int_equal(c.cap, 8);
	sg_ctl_init(&c, &g, 0, T0);
	assert_int_equal(c.cap, 1);
	/* decrease rounds down but stays at min_cap */
	sg_ctl_init(&c, &g, 3, T0);
	assert_true(sg_ctl_signal(&c, T0, SG_ACTION_DECREASE, "r", "Q", NULL, &chg));
	assert_int_equal(chg.to, 1);
	/* a pause from min_cap resumes at min_cap */
	assert_true(sg_ctl_signal(&c, T0 + 100, SG_ACTION_PAUSE, "r", "Q", NULL, &chg));
	assert_true(sg_ctl_advance(&c, T0 + 1000, &chg));
	assert_int_equal(chg.to, 1);
	/* pause = 0: a pause signal is a decrease */
	g.pause = 0;
	sg_ctl_init(&c, &g, 4, T0);
	assert_true(sg_ctl_signal(&c, T0, SG_ACTION_PAUSE, "r", "Q", NULL, &chg));
	assert_int_equal(chg.to, 2);
	/* time never goes back: a late line counts at the latest time seen */
	g = conf();
	sg_ctl_init(&c, &g, 4, T0);
	assert_true(sg_ctl_signal(&c, T0 + 100, SG_ACTION_DECREASE, "r", "Q", NULL, &chg));
	assert_false(sg_ctl_signal(&c, T0 - 1000, SG_ACTION_DECREASE, "r", "Q", NULL, &chg));
	/* an operator's cap 0 is kept: no automatic resume */
	sg_ctl_follow(&c, 0, T0 + 200);
	assert_int_equal(advance(&c, T0 + 30 * 86400, NULL), 0);
	assert_int_equal(c.cap, 0);
}

/* Deliver n clean messages at t; returns the cap changes they caused. */
static int deliver(struct sg_ctl *c, int64_t t, int n)
{
	struct sg_change chg;
	int changes = 0;

	for (int i = 0; i < n; i++) {
		advance(c, t, NULL);
		if (sg_ctl_delivered(c, t, "Q1", &chg)) {
			assert_int_equal(chg.to, chg.from + 1);
			changes++;
		}
	}
	return changes;
}

static void test_probe_settles_at_the_limit(void **state)
{
	struct sg_group_conf g = conf();
	struct sg_change chg;
	struct sg_ctl c;

	(void)state;
	sg_ctl_init(&c, &g, 3, T0);
	/* 3 holds; +1 probes 4, which the provider refuses: back to 3, not 1 */
	assert_int_equal(deliver(&c, T0 + 1, 5), 1);
	assert_int_equal(c.cap, 4);
	assert_true(sg_ctl_signal(&c, T0 + 2, SG_ACTION_DECREASE, "gmail-421-4.4.5", "Q2", NULL, &chg));
	assert_int_equal(chg.from, 4);
	assert_int_equal(chg.to, 3);
	assert_string_equal(chg.reason, "rule gmail-421-4.4.5, queue id Q2; probe of 4 failed");
	/* the next probe of 4 waits twice as long, then four times... */
	assert_int_equal(deliver(&c, T0 + 100, 9), 0);
	assert_int_equal(deliver(&c, T0 + 100, 1), 1);
	assert_int_equal(c.cap, 4);
	assert_true(sg_ctl_signal(&c, T0 + 200, SG_ACTION_DECREASE, "r", "Q3", NULL, &chg));
	assert_int_equal(chg.to, 3);
	assert_int_equal(deliver(&c, T0 + 300, 19), 0);
	assert_int_equal(deliver(&c, T0 + 300, 1), 1);
	/* ...and the clean interval too: 8 x 600 s now */
	assert_true(sg_ctl_signal(&c, T0 + 400, SG_ACTION_DECREASE, "r", "Q4", NULL, &chg));
	assert_int_equal(c.cap, 3);
	deliver(&c, T0 + 401, 1);
	assert_int_equal(advance(&c, T0 + 401 + 8 * 600 - 1, NULL), 0);
	assert_int_equal(advance(&c, T0 + 401 + 8 * 600, &chg), 1);
	assert_int_equal(chg.to, 4);
	/* a probe that holds clears the ceiling: 5 comes after the usual 5 */
	assert_int_equal(deliver(&c, T0 + 6000, 40), 1);
	assert_int_equal(c.cap, 5);
	assert_int_equal(deliver(&c, T0 + 6001, 5), 1);
	assert_int_equal(c.cap, 6);
	/* a signal that is no probe's (cap held a while) halves as before */
	deliver(&c, T0 + 6002, 2);
	assert_true(sg_ctl_signal(&c, T0 + 6003, SG_ACTION_DECREASE, "r", "Q5", NULL, &chg));
	assert_int_equal(chg.to, 5);       /* 6 was the probe: one back */
	assert_true(sg_ctl_signal(&c, T0 + 6100, SG_ACTION_DECREASE, "r", "Q6", NULL, &chg));
	assert_int_equal(chg.to, 2);       /* 5 held: halve */
}

/* A signal of session at ms `at`, begun at `began` (0: unknown), live (-1: unknown). */
static bool sig(struct sg_ctl *c, int64_t at, int64_t began, int live, struct sg_change *chg)
{
	struct sg_evidence ev = { .at_ms = at, .began_ms = began, .live = live };

	advance(c, at / 1000, NULL);
	return sg_ctl_signal(c, at / 1000, SG_ACTION_DECREASE, "r", "Q", &ev, chg);
}

/* A controller at cap 16 (max 16) at T0; returns T0 in ms. */
static int64_t start16(struct sg_group_conf *g, struct sg_ctl *c)
{
	*g = conf();
	g->max_cap = 16;
	sg_ctl_init(c, g, 16, T0);
	return (int64_t)T0 * 1000;
}

/* With delays (the session's start known): echo or new evidence. */
static void test_echo_or_new_with_start(void **state)
{
	struct sg_group_conf g;
	struct sg_change chg;
	struct sg_ctl c;
	int64_t t0 = start16(&g, &c);

	(void)state;
	/* a session begun 300 ms before: the first signal halves */
	assert_true(sig(&c, t0 + 500, t0 + 200, -1, &chg));
	assert_int_equal(chg.to, 8);
	/* sessions begun before that decrease: echoes of cap 16, however late
	 * they are answered (a long session, a slow greeting) */
	for (int i = 0; i < 20; i++)
		assert_false(sig(&c, t0 + 510 + i * 100, t0 + 100 + i * 10, -1, &chg));
	assert_false(sig(&c, t0 + 30000, t0 + 499, -1, &chg));
	assert_int_equal(c.cap, 8);
	/* a session begun after it, in the same second: cap 8 is still too
	 * many, at once (no cooldown) */
	assert_true(sig(&c, t0 + 30100, t0 + 501, -1, &chg));
	assert_int_equal(chg.from, 8);
	assert_int_equal(chg.to, 4);
	/* its own echoes again make no decision */
	assert_false(sig(&c, t0 + 30200, t0 + 30000, -1, &chg));
	assert_int_equal(c.cap, 4);
	assert_int_equal(c.signals, 24);
}

/* Without delays: a short window derived from observed session times. */
static void test_echo_window_without_start(void **state)
{
	struct sg_group_conf g;
	struct sg_change chg;
	struct sg_ctl c;
	int64_t t0 = start16(&g, &c);

	(void)state;
	/* sessions take about 600 ms: the window is twice that */
	for (int i = 0; i < 50; i++)
		sg_ctl_session(&c, 600);
	assert_int_equal(sg_ctl_echo_window_ms(&c), 1200);
	assert_true(sig(&c, t0 + 1000, 0, -1, &chg));
	assert_int_equal(chg.to, 8);
	assert_false(sig(&c, t0 + 2199, 0, -1, &chg));
	assert_true(sig(&c, t0 + 2200, 0, -1, &chg));
	assert_int_equal(chg.to, 4);
	/* short sessions: at least 1 s; long ones: at most 10 s */
	sg_ctl_init(&c, &g, 16, T0);
	sg_ctl_session(&c, 100);
	assert_int_equal(sg_ctl_echo_window_ms(&c), 1000);
	sg_ctl_init(&c, &g, 16, T0);
	sg_ctl_session(&c, 60000);
	assert_int_equal(sg_ctl_echo_window_ms(&c), 10000);
	/* never longer than cooldown; cooldown 0: every signal decides */
	g.cooldown = 3;
	assert_int_equal(sg_ctl_echo_window_ms(&c), 3000);
	g.cooldown = 0;
	assert_int_equal(sg_ctl_echo_window_ms(&c), 0);
	sg_ctl_init(&c, &g, 16, T0);
	assert_true(sig(&c, t0, 0, -1, &chg));
	assert_true(sig(&c, t0, 0, -1, &chg));
	assert_int_equal(c.cap, 4);
}

/* The live sessions at the "too many" bound the provider's limit. */
static void test_live_bounds_the_cap(void **state)
{
	struct sg_group_conf g;
	struct sg_change chg;
	struct sg_ctl c;
	int64_t t0 = start16(&g, &c);

	(void)state;
	/* 3 sessions open when the provider said too many: cap 3, not 8 */
	assert_true(sig(&c, t0 + 500, t0 + 200, 3, &chg));
	assert_int_equal(chg.to, 3);
	assert_string_equal(chg.reason, "rule r, queue id Q; 3 live");
	/* more live than halving gives: halving */
	sg_ctl_init(&c, &g, 16, T0);
	assert_true(sig(&c, t0 + 500, t0 + 200, 12, &chg));
	assert_int_equal(chg.to, 8);
	assert_string_equal(chg.reason, "rule r, queue id Q");
	/* none live: the count does not see the sessions, no bound */
	assert_true(sig(&c, t0 + 900, t0 + 600, 0, &chg));
	assert_int_equal(chg.to, 4);
	/* never below min_cap */
	g.min_cap = 3;
	assert_true(sig(&c, t0 + 1300, t0 + 1000, 1, &chg));
	assert_int_equal(chg.to, 3);
	/* an echo is an echo whatever the count */
	sg_ctl_init(&c, &g, 16, T0);
	assert_true(sig(&c, t0 + 500, t0 + 200, -1, &chg));
	assert_false(sig(&c, t0 + 600, t0 + 300, 1, &chg));
	assert_int_equal(c.cap, 8);
}

/* The state file's round trip: pauses that go on, ended, or have no end. */
static void test_saved_and_restored(void **state)
{
	struct sg_group_conf g = conf();
	struct sg_ctl c, r;
	uint32_t cap, resume;
	int64_t until;

	(void)state;
	assert_int_equal(sg_ctl_bound(&g, 0), 0);
	assert_int_equal(sg_ctl_bound(&g, 20), 8);
	assert_int_equal(sg_ctl_bound(&g, 3), 3);
	/* a pause in force is restored as a pause until its end */
	sg_ctl_init(&c, &g, 4, T0);
	sg_ctl_restore_pause(&c, T0 + 100, 3);
	sg_ctl_saved(&c, &cap, &resume, &until);
	assert_int_equal(cap, 0);
	assert_int_equal(resume, 3);
	assert_int_equal(until, T0 + 100);
	sg_ctl_init(&r, &g, 4, T0 + 50);
	sg_ctl_restore(&r, T0 + 50, until, resume);
	assert_int_equal(r.cap, 0);
	assert_int_equal(r.paused_until, T0 + 100);
	/* one that ended while we were down resumes at its cap, within bounds */
	sg_ctl_init(&r, &g, 4, T0 + 200);
	sg_ctl_restore(&r, T0 + 200, until, 30);
	assert_int_equal(r.cap, 8);
	assert_int_equal(r.paused_until, 0);
	/* an operator's cap 0 has no end: saved as cap 0 resuming at min_cap */
	sg_ctl_follow(&c, 0, T0 + 10);
	sg_ctl_saved(&c, &cap, &resume, &until);
	assert_int_equal(cap, 0);
	assert_int_equal(resume, g.min_cap);
	assert_int_equal(until, 0);
	/* no pause saved: the cap it started with stays */
	sg_ctl_init(&r, &g, 5, T0);
	sg_ctl_restore(&r, T0, 0, 2);
	assert_int_equal(r.cap, 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_burst_is_one_decrease),
		cmocka_unit_test(test_pause_then_recovery),
		cmocka_unit_test(test_ramp_never_jumps),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_probe_settles_at_the_limit),
		cmocka_unit_test(test_echo_or_new_with_start),
		cmocka_unit_test(test_echo_window_without_start),
		cmocka_unit_test(test_live_bounds_the_cap),
		cmocka_unit_test(test_saved_and_restored),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
