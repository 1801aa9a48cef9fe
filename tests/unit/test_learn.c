// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Unit tests: the feedback pipeline (user/core/learn.c) and `smtpgov replay`
 * (user/core/replay.c): lines in, cap changes out, by the lines' timestamps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "config.h"
#include "learn.h"
#include "replay.h"

#define NOW 1795521600   /* 2026-11-24T12:00:00Z */

static struct sg_config cfg;
static struct sg_change changes[64];
static int groups[64], nchanges;

static void on_change(void *arg, int group, const struct sg_change *chg)
{
	(void)arg;
	assert_true(nchanges < 64);
	groups[nchanges] = group;
	changes[nchanges++] = *chg;
}

static int setup(void **state)
{
	char err[256];

	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	return sg_config_load(&cfg, NULL, err, sizeof(err));
}

static int teardown(void **state)
{
	(void)state;
	sg_config_free(&cfg);
	return 0;
}

static void feed(struct sg_learn *l, const char *line)
{
	struct sg_learn_result res;

	if (sg_learn_line(l, line, strlen(line), &res))
		sg_learn_apply(l, &res, res.ev.time, NULL);
}

static void test_pipeline(void **state)
{
	int google = sg_config_group(&cfg, "google");
	struct sg_learn l;
	char line[1024], err[256];

	(void)state;
	nchanges = 0;
	assert_int_equal(sg_learn_init(&l, &cfg, SG_FMT_AUTO, NOW, on_change, NULL, err, sizeof(err)), 0);
	sg_learn_start(&l, NOW - 3600, NULL);
	assert_int_equal(l.ctl[google].cap, 2);
	/* 50 deferrals in one second, 50 messages: one decrease, 50 signals */
	for (int i = 0; i < 50; i++) {
		snprintf(line, sizeof(line), "Nov 24 11:00:00 mx1 postfix/smtp[1]: Q%05d: to=<a@gmail.com>, "
			 "relay=gmail-smtp-in.l.google.com[142.250.1.%d]:25, delay=1, delays=0/0/0/1, dsn=4.4.5, "
			 "status=deferred (host gmail-smtp-in.l.google.com[142.250.1.%d] said: 421-4.4.5 Server "
			 "busy, try again later. 421 4.4.5 Server busy - gsmtp (in reply to MAIL FROM command))",
			 i, i % 4, i % 4);
		feed(&l, line);
	}
	assert_int_equal(nchanges, 1);
	assert_int_equal(groups[0], google);
	assert_int_equal(changes[0].from, 2);
	assert_int_equal(changes[0].to, 1);
	assert_string_equal(changes[0].reason, "rule gmail-421-4.4.5, queue id Q00000");
	assert_int_equal(l.ctl[google].signals, 50);
	/* one message to 10 recipients answered by one reply: one signal */
	for (int i = 0; i < 10; i++)
		feed(&l, "Nov 24 11:00:30 mx1 postfix/smtp[1]: MULTI1: to=<b@gmail.com>, relay=g[142.250.1.9]:25, "
		     "delay=1, delays=0/0/0/1, dsn=4.4.5, status=deferred (host g[142.250.1.9] said: 421-4.4.5 "
		     "Server busy (in reply to MAIL FROM command))");
	assert_int_equal(l.ctl[google].signals, 51);
	/* our own refusals, Postfix's suspension, the waiting room: nothing */
	feed(&l, "Nov 24 11:05:00 mx1 postfix/smtp[1]: connect to g[142.250.1.9]:25: Operation not permitted");
	feed(&l, "Nov 24 11:05:00 mx1 postfix/smtp[1]: SUSP1: to=<c@gmail.com>, relay=none, delay=1, "
	     "delays=0/0/0/1, dsn=4.4.1, status=deferred (delivery temporarily suspended: host "
	     "g[142.250.1.9] said: 421-4.4.5 Server busy)");
	feed(&l, "Nov 24 11:05:00 mx1 postfix/smtp[1]: ROOM1: host g[142.250.1.9] refused to talk to me: "
	     "421 4.4.5 smtpgov: held this connection 120s waiting for a free google slot; try again later");
	/* a reply that imitates Google from an address outside the group */
	feed(&l, "Nov 24 11:05:00 mx1 postfix/smtp[1]: FAKE1: host mx.example.net[198.51.100.25] said: "
	     "421-4.4.5 Server busy gmail-smtp-in.l.google.com[142.250.1.1] (in reply to MAIL FROM command)");
	assert_int_equal(l.ctl[google].signals, 51);
	assert_int_equal(nchanges, 1);
	/* 50 clean deliveries (increase_after default): +1, at the 50th line */
	for (int i = 0; i < 50; i++) {
		snprintf(line, sizeof(line), "Nov 24 11:06:%02d mx1 postfix/smtp[1]: S%05d: to=<d@gmail.com>, "
			 "relay=g[142.250.1.1]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 OK)",
			 i, i);
		feed(&l, line);
		assert_int_equal(nchanges, i < 49 ? 1 : 2);
	}
	assert_int_equal(changes[1].from, 1);
	assert_int_equal(changes[1].to, 2);
	assert_int_equal(changes[1].time, NOW - 3600 + 6 * 60 + 49);
	sg_learn_free(&l);
}

static void test_replay_timeline(void **state)
{
	const char *log =
		"Nov 24 10:00:00 mx1 postfix/smtp[1]: AAAAA1: host o[104.47.1.1] said: 451 4.7.652 The mail "
		"server [x] has exceeded the maximum number of connections. (in reply to MAIL FROM command)\n"
		"Nov 24 11:00:00 mx1 postfix/smtp[1]: AAAAA2: to=<a@outlook.com>, relay=o[104.47.1.1]:25, "
		"delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 OK)\n"
		"Nov 24 11:20:00 mx1 postfix/smtp[1]: AAAAA3: to=<b@outlook.com>, relay=o[104.47.1.1]:25, "
		"delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 OK)\n";
	/* The pause, its end, then +1 a clean interval after the first
	 * delivery (placed at its time though the log only says so at 11:20).
	 * Groups that sent nothing stay where they are. */
	const char *want =
		"time,group,from,to,reason\n"
		"2026-11-24T10:00:00Z,microsoft,2,0,\"rule ms-4.7.652-connections, queue id AAAAA1\"\n"
		"2026-11-24T10:15:00Z,microsoft,0,1,\"end of pause (rule ms-4.7.652-connections, queue id AAAAA1)\"\n"
		"2026-11-24T11:10:00Z,microsoft,1,2,\"clean for 10m\"\n";
	FILE *in = fmemopen((void *)log, strlen(log), "r"), *out;
	char *got = NULL;
	size_t len = 0;

	(void)state;
	out = open_memstream(&got, &len);
	assert_int_equal(sg_replay_run(in, out, &cfg, SG_FMT_AUTO, NOW, true), 0);
	fclose(out);
	fclose(in);
	assert_string_equal(got, want);
	free(got);
}

/* A Gmail deferral at TIME (maillog_file's high-precision format), with
 * DELAYS ("" for none). */
static void deferral(struct sg_learn *l, const char *time, const char *delays)
{
	char line[1024];

	snprintf(line, sizeof(line), "Nov 24 %s mx1 postfix/smtp[1]: Q%s: to=<a@gmail.com>, "
		 "relay=gmail-smtp-in.l.google.com[142.250.1.1]:25, delay=1, %s%sdsn=4.4.5, "
		 "status=deferred (host gmail-smtp-in.l.google.com[142.250.1.1] said: 421 4.4.5 "
		 "Server busy - gsmtp (in reply to RCPT TO command))", time, time + 9,
		 delays, delays[0] ? ", " : "");
	feed(l, line);
}

/* Echo or new evidence, from Postfix's delays= and the milliseconds. */
static void test_evidence_from_the_log(void **state)
{
	int google = sg_config_group(&cfg, "google");
	uint32_t caps[SG_MAX_GROUPS];
	struct sg_learn l;
	char err[256];

	(void)state;
	for (unsigned i = 0; i < cfg.ngroups; i++)
		caps[i] = cfg.groups[i].cap;
	caps[google] = 5;
	/* with delays: a session's start is the line's time minus c + d */
	nchanges = 0;
	assert_int_equal(sg_learn_init(&l, &cfg, SG_FMT_AUTO, NOW, on_change, NULL, err, sizeof(err)), 0);
	sg_learn_start(&l, NOW - 3600, caps);
	deferral(&l, "11:00:00.500000", "delays=0.1/0/0.2/0.1");     /* began .200: 5 -> 2 */
	deferral(&l, "11:00:01.200000", "delays=0/0/1.1/0");         /* began .100: echo */
	deferral(&l, "11:00:09.000000", "delays=0/0/0.5/8.1");       /* began .400: echo */
	assert_int_equal(nchanges, 1);
	assert_int_equal(changes[0].to, 2);
	deferral(&l, "11:00:09.100000", "delays=0/0/0.2/0.1");       /* began 08.800: new */
	assert_int_equal(nchanges, 2);
	assert_int_equal(changes[1].from, 2);
	assert_int_equal(changes[1].to, 1);
	sg_learn_free(&l);
	/* without delays: an echo window of 5 s (no session observed yet) */
	nchanges = 0;
	assert_int_equal(sg_learn_init(&l, &cfg, SG_FMT_AUTO, NOW, on_change, NULL, err, sizeof(err)), 0);
	sg_learn_start(&l, NOW - 3600, caps);
	deferral(&l, "11:00:00.500000", "");
	deferral(&l, "11:00:05.400000", "");
	assert_int_equal(nchanges, 1);
	deferral(&l, "11:00:05.500000", "");
	assert_int_equal(nchanges, 2);
	assert_int_equal(changes[1].to, 1);
	sg_learn_free(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pipeline),
		cmocka_unit_test(test_evidence_from_the_log),
		cmocka_unit_test(test_replay_timeline),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
