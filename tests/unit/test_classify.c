// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* Unit tests: the reply classifier (user/core/classify.c), built-ins and [rule] sections. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "classify.h"
#include "config.h"
#include "parse.h"

static struct sg_config cfg;
static struct sg_classifier cls;

static int setup_builtin(void **state)
{
	char err[256];

	(void)state;
	if (sg_config_load(&cfg, NULL, err, sizeof(err)))
		return -1;
	return sg_classifier_init(&cls, &cfg, err, sizeof(err));
}

static int teardown(void **state)
{
	(void)state;
	sg_classifier_free(&cls);
	sg_config_free(&cfg);
	return 0;
}

/* Classify "host X[ip] said: REPLY" as if from group. */
static struct sg_classification classify(const char *group, const char *reply)
{
	struct sg_classification out;
	struct sg_parser p;
	struct sg_logev ev;
	char line[2048];

	snprintf(line, sizeof(line), "QID123: host mx.example[192.0.2.1] said: %s (in reply to RCPT TO command)",
		 reply);
	sg_parser_init(&p, SG_FMT_POSTFIX, 1795521600);
	assert_true(sg_parse_line(&p, line, strlen(line), &ev));
	sg_classify(&cls, group ? sg_config_group(&cfg, group) : -1, &ev, &out);
	return out;
}

#define EXPECT(group, reply, cls_, act, rule_)                                        \
	do {                                                                          \
		struct sg_classification c = classify(group, reply);                  \
		assert_string_equal(sg_class_name(c.class), cls_);                    \
		if (act)                                                              \
			assert_string_equal(sg_action_name(c.action), (const char *)act); \
		if (rule_)                                                            \
			assert_string_equal(c.rule ? c.rule : "(none)", (const char *)rule_); \
		else                                                                  \
			assert_null(c.rule);                                          \
	} while (0)

static void test_builtin_signatures(void **state)
{
	(void)state;
	/* Gmail */
	EXPECT("google", "421-4.4.5 Server busy, try again later. 421 4.4.5 Server busy. - gsmtp",
	       "concurrency", "decrease", "gmail-421-4.4.5");
	EXPECT("google", "421-4.7.28 [1.2.3.4 15] Our system has detected an unusual rate of 421-4.7.28 "
	       "unsolicited mail", "reputation", "decrease", "gmail-421-4.7.28");
	EXPECT("google", "450-4.2.1 The user you are trying to contact is receiving mail at a rate that",
	       "other", "ignore", "gmail-450-4.2.1-recipient-rate");
	/* Microsoft */
	EXPECT("microsoft", "451 4.7.652 The mail server [192.0.2.251] has exceeded the maximum number "
	       "of connections. (S3115)", "concurrency", "pause", "ms-4.7.652-connections");
	EXPECT("microsoft", "451 4.7.500 Server busy. Please try again later from [1.2.3.4]. (S77719)",
	       "rate", "decrease", "ms-4.7.500-server-busy");
	EXPECT("microsoft", "451 4.7.650 The mail server [1.2.3.4] has been temporarily rate limited due "
	       "to IP reputation.", "reputation", "decrease", "ms-4.7.650-reputation");
	EXPECT("microsoft", "451 4.7.651 The mail server [1.2.3.4] has been temporarily rate limited due "
	       "to IP reputation.", "reputation", "decrease", "ms-4.7.651-reputation");
	/* Yahoo */
	EXPECT("yahoo", "421 4.7.0 [TSS04] Messages from 1.2.3.4 temporarily deferred due to unexpected "
	       "volume or user complaints - 4.16.55.1", "reputation", "pause", "yahoo-421-ts-deferral");
	/* Generic receivers, any group or none */
	EXPECT(NULL, "421 4.7.0 Too many concurrent connections from this IP", "concurrency", "decrease",
	       "generic-too-many-connections");
	EXPECT(NULL, "421 too many connections from your host", "concurrency", "decrease",
	       "generic-too-many-connections");
	EXPECT(NULL, "450 4.2.0 <a@b>: Recipient address rejected: Greylisted, see http://x", "other",
	       "ignore", "generic-greylisting");
	EXPECT(NULL, "451 4.7.1 Sorry, the service is currently unavailable.", "other", "ignore", NULL);
	/* 5xx: the message's fate, never a cap signal */
	EXPECT("google", "550-5.7.1 [1.2.3.4] Our system has detected that this message is likely "
	       "unsolicited mail.", "other", "ignore", NULL);
}

/* Group first: Google's code from a host outside Google is not Google's. */
static void test_group_decides(void **state)
{
	(void)state;
	EXPECT("microsoft", "421-4.4.5 Server busy, try again later.", "concurrency", "decrease",
	       "generic-4.4.5-congestion");
	EXPECT(NULL, "451 4.7.652 The mail server has exceeded the maximum number of connections.",
	       "concurrency", "decrease", "generic-too-many-connections");
	EXPECT("google", "421 4.7.0 [TSS04] Messages from 1.2.3.4 temporarily deferred", "other",
	       "ignore", NULL);
}

/* Never signals: delivered, our own refusals and waiting room, cached verdicts. */
static void test_never_signals(void **state)
{
	static const char *const lines[] = {
		"QID01: to=<a@gmail.com>, relay=g[142.250.1.1]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, "
		"status=sent (250 2.0.0 OK - gsmtp)",
		"connect to g[142.250.1.1]:25: Operation not permitted",
		"QID01: to=<a@gmail.com>, relay=none, delay=1, delays=0/0/0/1, dsn=4.4.1, status=deferred "
		"(delivery temporarily suspended: host g[142.250.1.1] said: 421-4.4.5 Server busy)",
		"QID01: host g[142.250.1.1] refused to talk to me: 421 4.4.5 smtpgov: held this connection "
		"120s waiting for a free google slot; try again later",
	};
	struct sg_classification out;
	struct sg_parser p;
	struct sg_logev ev;

	(void)state;
	sg_parser_init(&p, SG_FMT_POSTFIX, 1795521600);
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		assert_true(sg_parse_line(&p, lines[i], strlen(lines[i]), &ev));
		sg_classify(&cls, sg_config_group(&cfg, "google"), &ev, &out);
		assert_int_equal(out.class, SG_CLASS_NONE);
		assert_false(out.signal);
		assert_null(out.rule);
	}
}

static void test_config_rules(void **state)
{
	char dir[] = "/tmp/smtpgov-classify-XXXXXX", path[256], err[512];
	FILE *fp;

	(void)state;
	sg_classifier_free(&cls);
	sg_config_free(&cfg);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/smtpgov.conf", dir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("[rule gmail-421-4.4.5]\n"             /* replaces the built-in */
	      "group = google\ndsn = 4.4.5\nclass = other\naction = ignore\n"
	      "[rule ms-busy-is-concurrency]\n"       /* added, before the built-ins */
	      "group = microsoft\ndsn = 4.7.500\nmatch = server\\s+busy\nclass = concurrency\naction = pause\n"
	      "[rule never]\n"
	      "match = ^nothing like this$\nclass = rate\n"
	      "[rule partner-slow]\n"
	      "group = yahoo\nmatch = slow down\nclass = rate\naction = decrease\n"
	      "[rule hostile-backtracking]\n"     /* exponential on "aaa...a!" */
	      "group = apple\nmatch = (?:a+)+$|x\nclass = rate\naction = pause\n", fp);
	fclose(fp);
	assert_int_equal(sg_config_load(&cfg, path, err, sizeof(err)), 0);
	assert_int_equal(sg_classifier_init(&cls, &cfg, err, sizeof(err)), 0);
	unlink(path);
	rmdir(dir);

	EXPECT("google", "421-4.4.5 Server busy, try again later.", "other", "ignore", "gmail-421-4.4.5");
	EXPECT("microsoft", "451 4.7.500 Server   BUSY. Please try again later", "concurrency", "pause",
	       "ms-busy-is-concurrency");
	/* dsn differs: the config rule does not apply, the built-in does */
	EXPECT("microsoft", "451 4.7.652 The mail server has exceeded the maximum number of connections.",
	       "concurrency", "pause", "ms-4.7.652-connections");
	/* group restricts a rule; text is matched as a regex */
	EXPECT("yahoo", "421 please slow down", "rate", "decrease", "partner-slow");
	EXPECT("apple", "421 please slow down", "other", "ignore", NULL);
	/* A crafted reply against a backtracking rule: "aaa...a!x" makes
	 * "(?:a+)+$" try 2^18 ways at the first position alone before "x"
	 * matches at the end. PCRE2's default limit (10 million steps, about
	 * 100 ms a rule on a 64 KiB reply) lets it match; the classifier's
	 * (SG_MATCH_LIMIT) gives up first: no match, the rule does not apply. */
	EXPECT("apple", "421 aaaaaaaaaaaaaaaaaa!x", "other", "ignore", NULL);
	/* under the limits the rule matches as written */
	EXPECT("apple", "421 aaaa", "rate", "pause", "hostile-backtracking");
	EXPECT("apple", "421 aaaa!x", "rate", "pause", "hostile-backtracking");
	/* the other built-ins still apply */
	EXPECT("yahoo", "421 4.7.0 [TSS04] Messages from 1.2.3.4 temporarily deferred", "reputation",
	       "pause", "yahoo-421-ts-deferral");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_builtin_signatures),
		cmocka_unit_test(test_group_decides),
		cmocka_unit_test(test_never_signals),
		cmocka_unit_test(test_config_rules),
	};

	return cmocka_run_group_tests(tests, setup_builtin, teardown);
}
