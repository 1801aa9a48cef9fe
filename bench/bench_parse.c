// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Benchmark: MTA log parser throughput on one core (target >= 1M Postfix
 * lines/s). Input: the golden Postfix log (tests/data/postfix.log, every
 * line a delivery event or a near miss) repeated, and a mix closer to a
 * real mail.log where 3 lines in 4 belong to smtpd/qmgr/cleanup. Measures
 * sg_parse_line alone and the whole pipeline (parse, attribute, classify).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "config.h"
#include "learn.h"
#include "parse.h"

#define REPEAT_LINES 2000000

struct corpus {
	char **line;
	size_t *len, n;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void add(struct corpus *c, const char *s)
{
	c->line = realloc(c->line, (c->n + 1) * sizeof(*c->line));
	c->len = realloc(c->len, (c->n + 1) * sizeof(*c->len));
	if (!c->line || !c->len)
		exit(1);
	c->line[c->n] = strdup(s);
	c->len[c->n] = strlen(s);
	c->n++;
}

static int load(struct corpus *c, const char *path)
{
	FILE *fp = fopen(path, "r");
	char buf[8192];

	if (!fp) {
		perror(path);
		return -1;
	}
	while (fgets(buf, sizeof(buf), fp)) {
		buf[strcspn(buf, "\n")] = '\0';
		if (buf[0] && buf[0] != '#')
			add(c, buf);
	}
	fclose(fp);
	return 0;
}

static void run(const char *name, const struct corpus *c, struct sg_learn *l, bool full)
{
	struct sg_learn_result res;
	size_t events = 0;
	double t0 = now_s(), dt;

	for (size_t i = 0; i < REPEAT_LINES; i++) {
		size_t k = i % c->n;

		if (full ? sg_learn_line(l, c->line[k], c->len[k], &res)
			 : sg_parse_line(&l->parser, c->line[k], c->len[k], &res.ev))
			events++;
	}
	dt = now_s() - t0;
	printf("%-34s %8.2f M lines/s  (%zu lines, %zu events, %.0f ns/line)\n", name,
	       REPEAT_LINES / dt / 1e6, (size_t)REPEAT_LINES, events, dt * 1e9 / REPEAT_LINES);
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "tests/data/postfix.log";
	static const char *const noise[] = {
		"Nov 24 11:00:13 mx1 postfix/smtpd[2013]: connect from unknown[192.0.2.77]",
		"Nov 24 11:00:13 mx1 postfix/qmgr[2014]: 1A2B3C4D69: from=<a@example.org>, size=1234, nrcpt=1 (queue active)",
		"Nov 24 11:00:13 mx1 postfix/cleanup[2017]: 1A2B3C4D69: message-id=<20261124110013.1A2B3C4D69@mx1.example.org>",
	};
	struct corpus all = { 0 }, mix = { 0 };
	static struct sg_config cfg;
	static struct sg_learn l;
	char err[256];

	if (load(&all, path) || !all.n)
		return 1;
	for (size_t i = 0; i < all.n; i++) {
		add(&mix, all.line[i]);
		for (size_t j = 0; j < 3; j++)
			add(&mix, noise[(i + j) % 3]);
	}
	if (sg_config_load(&cfg, NULL, err, sizeof(err)) ||
	    sg_learn_init(&l, &cfg, SG_FMT_AUTO, (int64_t)time(NULL), NULL, NULL, err, sizeof(err))) {
		fprintf(stderr, "bench_parse: %s\n", err);
		return 1;
	}
	printf("bench_parse: %s, %zu distinct lines\n", path, all.n);
	run("parse, delivery lines", &all, &l, false);
	run("parse+attribute+classify, same", &all, &l, true);
	run("parse, mail.log mix (1 in 4)", &mix, &l, false);
	run("parse+attribute+classify, mix", &mix, &l, true);
	sg_learn_free(&l);
	sg_config_free(&cfg);
	return 0;
}
