// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Unit tests: the MTA log parser (user/core/parse.c) and `smtpgov parse` output
 * (user/core/replay.c). Golden files: tests/data/NAME.log in, tests/data/NAME.ref
 * the expected JSON lines out. SG_UPDATE_GOLDEN=1 rewrites the .ref files
 * (review the diff before committing them).
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
#include "parse.h"
#include "replay.h"

#define NOW 1795521600   /* 2026-11-24T12:00:00Z */

static struct sg_config cfg;

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

static char *slurp(const char *path)
{
	FILE *fp = fopen(path, "r");
	char *buf = NULL;
	size_t cap = 0, len = 0;

	if (!fp)
		return NULL;
	for (;;) {
		if (len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 65536;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
		size_t n = fread(buf + len, 1, 4096, fp);

		len += n;
		if (n == 0)
			break;
	}
	fclose(fp);
	buf[len] = '\0';
	return buf;
}

/* tests/data/ next to this file's tests/unit/ */
static void data_path(char *buf, size_t len, const char *name)
{
	const char *f = __FILE__, *slash = strstr(f, "unit/test_parse.c");

	snprintf(buf, len, "%.*sdata/%s", slash ? (int)(slash - f) : 0, f, name);
	if (!slash)
		snprintf(buf, len, "tests/data/%s", name);
}

static void golden(const char *name)
{
	char in_path[512], ref_path[512], *got = NULL, *want;
	size_t got_len = 0;
	FILE *in, *out;

	data_path(in_path, sizeof(in_path), name);
	snprintf(ref_path, sizeof(ref_path), "%.*s.ref", (int)(strlen(in_path) - 4), in_path);
	in = fopen(in_path, "r");
	assert_non_null(in);
	out = open_memstream(&got, &got_len);
	assert_non_null(out);
	assert_int_equal(sg_parse_run(in, out, &cfg, SG_FMT_AUTO, NOW), 0);
	fclose(in);
	fclose(out);
	if (getenv("SG_UPDATE_GOLDEN")) {
		FILE *fp = fopen(ref_path, "w");

		assert_non_null(fp);
		fputs(got, fp);
		fclose(fp);
	}
	want = slurp(ref_path);
	assert_non_null(want);
	if (strcmp(got, want)) {
		/* Show the first line that differs. */
		const char *g = got, *w = want;
		int line = 1;

		while (*g && *g == *w) {
			if (*g == '\n')
				line++;
			g++;
			w++;
		}
		while (g > got && g[-1] != '\n')
			g--, w--;
		print_error("%s line %d differs:\n got: %.*s\nwant: %.*s\n", ref_path, line,
			    (int)strcspn(g, "\n"), g, (int)strcspn(w, "\n"), w);
		fail();
	}
	free(got);
	free(want);
}

static void test_golden_postfix(void **state)
{
	(void)state;
	golden("postfix.log");
}

static void test_golden_exim(void **state)
{
	(void)state;
	golden("exim.log");
}

static bool parse(const char *line, struct sg_logev *ev)
{
	struct sg_parser p;

	sg_parser_init(&p, SG_FMT_AUTO, NOW);
	return sg_parse_line(&p, line, strlen(line), ev);
}

#define MSG "ABC123: to=<a@gmail.com>, relay=gmail-smtp-in.l.google.com[142.250.1.27]:25, " \
	    "delay=1, delays=0/0/0.5/0.5, dsn=4.4.5, status=deferred (host " \
	    "gmail-smtp-in.l.google.com[142.250.1.27] said: 421-4.4.5 Server busy, try again " \
	    "later. 421 4.4.5 Server busy, try again later. x1si2 - gsmtp (in reply to MAIL FROM command))"

/* One message in every framing: same event, time from the frame. */
static void test_framings(void **state)
{
	static const struct { const char *line; int64_t time; } cases[] = {
		{ "Nov  3 09:05:01 mx1 postfix/smtp[12]: " MSG, 1793696701 },        /* RFC 3164 */
		{ "Nov 03 09:05:01 mx1 postfix/smtp[12]: " MSG, 1793696701 },        /* journalctl, maillog_file */
		{ "2026-11-03T09:05:01.123456+00:00 mx1 postfix/smtp[12]: " MSG, 1793696701 },
		{ "2026-11-03T10:05:01+01:00 mx1 postfix/smtp[12]: " MSG, 1793696701 },
		{ "2026-11-03T09:05:01Z mx1 postfix-10.20.30.40/smtp[12]: " MSG, 1793696701 },
		{ "Nov  3 09:05:01 mx1 mail.info postfix/smtp[12]: " MSG, 1793696701 }, /* BusyBox */
		{ "mailsrv    | Nov  3 09:05:01 mx1 postfix/smtp[12]: " MSG, 1793696701 }, /* compose */
		{ "mx1 postfix/smtp[12]: " MSG, -1 },
		{ MSG, -1 },                                                         /* bare */
	};
	struct sg_logev ev;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_true(parse(cases[i].line, &ev));
		assert_int_equal(ev.time, cases[i].time);
		assert_string_equal(ev.queue_id, "ABC123");
		assert_string_equal(ev.ip, "142.250.1.27");
		assert_string_equal(ev.host, "gmail-smtp-in.l.google.com");
		assert_int_equal(ev.status, SG_ST_DEFERRED);
		assert_int_equal(ev.code, 421);
		assert_string_equal(ev.dsn, "4.4.5");
		assert_true(ev.flags & SG_LEV_HAS_IP);
		assert_int_equal(strncmp(ev.text, "421-4.4.5 Server busy", 21), 0);
		/* "(in reply to ...)" is Postfix's, not the reply's */
		assert_int_equal(ev.text[ev.text_len - 1], 'p');
	}
}

/* No year in syslog: the latest one that does not put the line ahead of now. */
static void test_year(void **state)
{
	struct sg_parser p;
	struct sg_logev ev;
	const char *l = "Dec 31 23:59:59 mx1 postfix/smtp[1]: connect to a[192.0.2.1]:25: Connection refused";

	(void)state;
	sg_parser_init(&p, SG_FMT_AUTO, 1798761610);        /* 2027-01-01T00:00:10Z */
	assert_true(sg_parse_line(&p, l, strlen(l), &ev));
	assert_int_equal(ev.time, 1798761599);             /* 2026-12-31T23:59:59Z */
	sg_parser_set_now(&p, 1798761599 + 30 * 86400);
	assert_true(sg_parse_line(&p, l, strlen(l), &ev));
	assert_int_equal(ev.time, 1798761599);
	sg_parser_set_now(&p, NOW);                          /* November 2026 */
	assert_true(sg_parse_line(&p, l, strlen(l), &ev));
	assert_int_equal(ev.time, 1798761599 - 365 * 86400);
}

/* Inputs an outside fuzz run found; each used to crash or mislead. */
static void test_fuzz_regressions(void **state)
{
	static const char susp[] = "delivery temporarily suspended: ";
	const size_t reps = 1000000;    /* ~32 MB: deeper than any stack when recursive */
	const char *tail = "host a[192.0.2.1] said: 421 4.4.5 busy";
	size_t n = reps * (sizeof(susp) - 1) + strlen(tail);
	char *line = malloc(n + 1), *q = line;
	struct sg_parser p;
	struct sg_logev ev;

	(void)state;
	assert_non_null(line);
	for (size_t i = 0; i < reps; i++, q += sizeof(susp) - 1)
		memcpy(q, susp, sizeof(susp) - 1);
	strcpy(q, tail);
	sg_parser_init(&p, SG_FMT_POSTFIX, NOW);
	assert_true(sg_parse_line(&p, line, n, &ev));
	assert_int_equal(ev.status, SG_ST_DEFERRED);
	assert_true(ev.flags & SG_LEV_SUSPENDED);
	assert_string_equal(ev.ip, "192.0.2.1");
	assert_ptr_equal(ev.text, line);
	free(line);

	/* "to=<>, =": the key's value starts at the end of the line (read one
	 * byte past it; the sanitizer build catches that) */
	{
		char *b = malloc(8);

		memcpy(b, "to=<>, =", 8);
		assert_false(sg_parse_line(&p, b, 8, &ev));
		free(b);
	}

	/* no Feb 30 (it became Mar 2); Feb 29 only in a leap year. The line
	 * may still be read as an unframed message, but without a time. */
	assert_false(parse("Feb 30 10:00:00 mx postfix/smtp[1]: connect to a[192.0.2.1]:25: Connection refused", &ev) &&
		     ev.time >= 0);
	assert_false(parse("2026-02-30T10:00:00Z mx postfix/smtp[1]: connect to a[192.0.2.1]:25: Connection refused", &ev) &&
		     ev.time >= 0);
	assert_false(parse("2026-04-31 10:00:00 1abcde-000001-AB == a@b R=r T=t defer (-53): retry time not reached", &ev) &&
		     ev.time >= 0);
	assert_true(parse("2024-02-29T10:00:00Z mx postfix/smtp[1]: connect to a[192.0.2.1]:25: Connection refused", &ev));
	assert_int_equal(ev.time, 1709200800);
	/* NOW is in 2026: "Feb 29" can only be of 2024, two years back: refused */
	assert_false(parse("Feb 29 10:00:00 mx postfix/smtp[1]: connect to a[192.0.2.1]:25: Connection refused", &ev) &&
		     ev.time >= 0);
}

/* parse output: valid UTF-8 JSON whatever the bytes; NUL does not cut a field */
static void test_json_bytes(void **state)
{
	static const char in_text[] =
		"Nov  3 09:05:01 mx1 postfix/smtp[12]: ABC123: to=<a@gmail.com>, "
		"relay=x\xffy[142.250.1.27]:25, dsn=4.4.5, status=deferred (host x[142.250.1.27] said: "
		"421 4.4.5 caf\xc3\xa9 \xe9t\xc3 \xed\xa0\x80 a\0b \x7f end)\n";
	char *got = NULL;
	size_t got_len = 0;
	FILE *in = fmemopen((void *)in_text, sizeof(in_text) - 1, "r");
	FILE *out = open_memstream(&got, &got_len);

	(void)state;
	assert_non_null(in);
	assert_non_null(out);
	assert_int_equal(sg_parse_run(in, out, &cfg, SG_FMT_AUTO, NOW), 0);
	fclose(in);
	fclose(out);
	/* é (valid) stays; a lone 0xe9, a cut 0xc3 and an encoded surrogate are
	 * \u00XX per byte; NUL and DEL are escaped, the text goes on after them */
	assert_non_null(strstr(got, "\"reply\":\"421 4.4.5 caf\xc3\xa9 \\u00e9t\\u00c3 "
				    "\\u00ed\\u00a0\\u0080 a\\u0000b \\u007f end\"}"));
	assert_non_null(strstr(got, "\"host\":\"x\\u00ffy\""));
	free(got);
}

/* The IP comes from the MTA's fields; the reply may say anything. */
static void test_attribution_fields_only(void **state)
{
	struct sg_logev ev;

	(void)state;
	assert_true(parse("Q1W2E3R4: host mx.example.net[198.51.100.25] said: 421 4.4.5 busy, "
			  "see relay=gmail-smtp-in.l.google.com[142.250.1.27]:25 (in reply to RCPT TO command)",
			  &ev));
	assert_string_equal(ev.ip, "198.51.100.25");
	assert_true(parse("Q1W2E3R4: to=<a@b>, relay=none, delay=1, dsn=4.4.1, status=deferred "
			  "(connect to mx.example.net[198.51.100.25]:25: Connection timed out "
			  "host gmail[142.250.1.27] said: 421)", &ev));
	assert_string_equal(ev.ip, "198.51.100.25");
	assert_int_equal(ev.status, SG_ST_CONNECT_ERROR);
	/* A masked or invalid address is no address. */
	assert_true(parse("connect to mail.mydomain.com[123.456.789.123]:25: Connection timed out", &ev));
	assert_false(ev.flags & SG_LEV_HAS_IP);
	assert_string_equal(ev.ip, "");
}

static void test_statuses(void **state)
{
	struct sg_logev ev;

	(void)state;
	assert_true(parse("Nov 24 11:00:10 mx1 postfix/smtp[1]: connect to g[142.250.27.26]:25: "
			  "Operation not permitted", &ev));
	assert_int_equal(ev.status, SG_ST_REFUSED);
	assert_true(parse("Nov 24 11:00:10 mx1 postfix/smtp[1]: AB12C: to=<r@gmail.com>, relay=none, "
			  "delay=0.1, delays=0/0/0.1/0, dsn=4.4.1, status=deferred (delivery temporarily "
			  "suspended: connect to g[142.250.27.26]:25: Operation not permitted)", &ev));
	assert_int_equal(ev.status, SG_ST_DEFERRED);
	assert_true(ev.flags & SG_LEV_SUSPENDED);
	assert_string_equal(ev.ip, "142.250.27.26");
	assert_true(parse("AB12C: host g[142.250.27.26] refused to talk to me: 421 4.4.5 smtpgov: held "
			  "this connection 120s waiting for a free google slot; try again later", &ev));
	assert_true(ev.flags & SG_LEV_OWN);
	assert_true(parse("Nov 24 11:00:10 mx1 postfix/error[1]: AB12C: to=<r@x>, relay=none, delay=1, "
			  "delays=1/0/0/0, dsn=4.4.1, status=deferred (delivery temporarily suspended: "
			  "connect to x[192.0.2.1]:25: Connection timed out)", &ev));
	assert_true(ev.flags & SG_LEV_LOCAL_AGENT);
	assert_true(parse("AB12C: to=<a@b>, relay=x[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=5.1.1, "
			  "status=bounced (host x[192.0.2.1] said: 550 5.1.1 no such user (in reply to RCPT TO command))",
			  &ev));
	assert_int_equal(ev.status, SG_ST_BOUNCED);
	assert_int_equal(ev.code, 550);
	assert_true(parse("AB12C: lost connection with x[2001:db8::1] while sending RCPT TO", &ev));
	assert_int_equal(ev.status, SG_ST_DEFERRED);
	assert_string_equal(ev.ip, "2001:db8::1");
	/* Microsoft's odd "451- 4.7.652" still gives the enhanced code. */
	assert_true(parse("AB12C: host o[104.47.1.1] said: 451- 4.7.652 The mail server [x] has "
			  "exceeded the maximum number of connections. (in reply to MAIL FROM command)", &ev));
	assert_string_equal(ev.dsn, "4.7.652");
}

static void test_not_delivery(void **state)
{
	static const char *const lines[] = {
		"Nov 24 11:00:13 mx1 postfix/smtpd[1]: connect from unknown[192.0.2.77]",
		"Nov 24 11:00:13 mx1 postfix/qmgr[1]: AB12C: from=<a@b>, size=1, nrcpt=1 (queue active)",
		"Nov 24 11:00:13 mx1 postfix/smtp[1]: warning: host x[192.0.2.1]:25 greeted me with my own hostname",
		"Nov 24 11:00:13 mx1 postfix/local[1]: AB12C: to=<root@x>, relay=local, delay=0, dsn=2.0.0, status=sent (delivered)",
		"Nov 24 11:00:13 mx1 kernel: connect to foo[1.2.3.4]:25: nonsense",
		"2012-02-13 14:39:22 1RwtJa-000AFJ-3B <= <> R=1RookS-000Pg8-VO U=mailnull P=local S=3958",
		"2011-01-05 15:30:52 1PaUO4-0000vF-Qo Completed",
		"2012-02-13 14:39:22 1RwtJa-000AFB-07 => :blackhole: <tpxmuwr@somehost.ru> R=blackhole_router",
		"",
		"#",
		"garbage without any structure",
	};
	struct sg_logev ev;

	(void)state;
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		if (parse(lines[i], &ev))
			fail_msg("not a delivery event, parsed as %s: %s", sg_status_name(ev.status), lines[i]);
}

static void test_exim(void **state)
{
	struct sg_logev ev;

	(void)state;
	assert_true(parse("2026-11-24 11:00:01 1vAbCd-000Xyz-Q1 == a@gmail.com R=dnslookup T=remote_smtp "
			  "defer (-44) H=gmail-smtp-in.l.google.com [142.250.27.26]:25: SMTP error from remote "
			  "mail server after MAIL FROM:<s@e.org> SIZE=1: 421-4.4.5 busy\\n421 4.4.5 busy", &ev));
	assert_int_equal(ev.status, SG_ST_DEFERRED);
	assert_string_equal(ev.ip, "142.250.27.26");
	assert_string_equal(ev.queue_id, "1vAbCd-000Xyz-Q1");
	assert_int_equal(ev.code, 421);
	assert_string_equal(ev.dsn, "4.4.5");
	assert_int_equal(ev.time, 1795518001);
	assert_true(parse("2026-11-24 11:00:02 1vAbCd-000Xyz-Q2 == b@gmail.com R=dnslookup T=remote_smtp "
			  "defer (1): Operation not permitted", &ev));
	assert_int_equal(ev.status, SG_ST_REFUSED);
	/* old style "host H [ip]: reply" after the command */
	assert_true(parse("2012-02-13 14:39:22 1RookS-000Pg8-VO == u@london.com R=dnslookup T=remote_smtp "
			  "defer (-44): SMTP error from remote mail server after RCPT TO:<u@london.com>: host "
			  "mx0.gmx.com [74.208.5.90]: 450 4.3.2 Too many mails", &ev));
	assert_string_equal(ev.ip, "74.208.5.90");
	assert_int_equal(ev.code, 450);
	/* the reply cannot move the address */
	assert_true(parse("2026-11-24 11:00:01 1vAbCd-000Xyz-Q1 == a@x R=d T=remote_smtp defer (-44) "
			  "H=mx.example.net [198.51.100.25]:25: SMTP error from remote mail server after RCPT "
			  "TO:<a@x>: 421 H=gmail [142.250.1.1] busy", &ev));
	assert_string_equal(ev.ip, "198.51.100.25");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden_postfix),
		cmocka_unit_test(test_golden_exim),
		cmocka_unit_test(test_framings),
		cmocka_unit_test(test_year),
		cmocka_unit_test(test_attribution_fields_only),
		cmocka_unit_test(test_statuses),
		cmocka_unit_test(test_not_delivery),
		cmocka_unit_test(test_exim),
		cmocka_unit_test(test_fuzz_regressions),
		cmocka_unit_test(test_json_bytes),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
