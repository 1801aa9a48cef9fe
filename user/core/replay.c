// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* `smtpgov parse` and `smtpgov replay` (see replay.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "json.h"
#include "learn.h"
#include "log.h"
#include "replay.h"

/* A JSON string of s[0, n), or null when n is 0. */
static void json_strn(FILE *fp, const char *s, size_t n)
{
	if (n)
		sg_json_strn(fp, s, n);
	else
		fputs("null", fp);
}

static void json_opt(FILE *fp, const char *s)
{
	sg_json_str(fp, s && *s ? s : NULL);
}

int sg_parse_run(FILE *in, FILE *out, const struct sg_config *cfg, int format, int64_t now)
{
	struct sg_learn *l = malloc(sizeof(*l));
	struct sg_learn_result res;
	char *line = NULL, err[256];
	size_t lcap = 0;
	ssize_t n;
	int r;

	if (!l)
		return -ENOMEM;
	if ((r = sg_learn_init(l, cfg, format, now, NULL, NULL, err, sizeof(err)))) {
		pr_err("%s", err);
		free(l);
		return r;
	}
	while ((n = getline(&line, &lcap, in)) > 0) {
		char when[32];

		if (!sg_learn_line(l, line, (size_t)n, &res))
			continue;
		fputs("{\"time\":", out);
		if (res.ev.time >= 0) {
			sg_time_format(res.ev.time, when, sizeof(when));
			sg_json_str(out, when);
		} else {
			fputs("null", out);
		}
		fputs(",\"queue_id\":", out);
		json_opt(out, res.ev.queue_id);
		fputs(",\"host\":", out);
		json_opt(out, res.ev.host);
		fputs(",\"ip\":", out);
		json_opt(out, res.ev.ip);
		fputs(",\"source\":", out);
		json_opt(out, res.ev.source);
		fputs(",\"group\":", out);
		sg_json_str(out, res.group >= 0 ? cfg->groups[res.group].name : NULL);
		fprintf(out, ",\"status\":\"%s\",\"code\":", sg_status_name(res.ev.status));
		if (res.ev.code)
			fprintf(out, "%d", res.ev.code);
		else
			fputs("null", out);
		fputs(",\"dsn\":", out);
		json_opt(out, res.ev.dsn);
		fprintf(out, ",\"class\":\"%s\",\"action\":", sg_class_name(res.cls.class));
		sg_json_str(out, res.cls.class == SG_CLASS_NONE ? NULL : sg_action_name(res.cls.action));
		fputs(",\"rule\":", out);
		sg_json_str(out, res.cls.rule);
		fputs(",\"reply\":", out);
		json_strn(out, res.ev.text, res.ev.text_len);
		fputs("}\n", out);
	}
	free(line);
	sg_learn_free(l);
	free(l);
	return ferror(in) ? -EIO : 0;
}

struct timeline {
	struct { int group; struct sg_change chg; } *v;
	size_t n, cap;
	bool oom;
};

static void record(void *arg, int group, const struct sg_change *chg)
{
	struct timeline *tl = arg;

	if (tl->n == tl->cap) {
		size_t cap = tl->cap ? tl->cap * 2 : 64;
		void *v = realloc(tl->v, cap * sizeof(*tl->v));

		if (!v) {
			tl->oom = true;
			return;
		}
		tl->v = v;
		tl->cap = cap;
	}
	tl->v[tl->n].group = group;
	tl->v[tl->n].chg = *chg;
	tl->n++;
}

static void csv_field(FILE *fp, const char *s)
{
	putc('"', fp);
	for (; *s; s++) {
		if (*s == '"')
			putc('"', fp);
		putc(*s, fp);
	}
	putc('"', fp);
}

int sg_replay_run(FILE *in, FILE *out, const struct sg_config *cfg, int format, int64_t now,
		  bool csv)
{
	struct sg_learn *l = malloc(sizeof(*l));
	struct timeline tl = { 0 };
	struct sg_learn_result res;
	uint64_t lines = 0, events = 0, attributed = 0;
	int64_t first = -1, last = -1;
	char *line = NULL, err[256], when[32];
	size_t lcap = 0;
	ssize_t n;
	int r;

	if (!l)
		return -ENOMEM;
	if ((r = sg_learn_init(l, cfg, format, now, record, &tl, err, sizeof(err)))) {
		pr_err("%s", err);
		free(l);
		return r;
	}
	while ((n = getline(&line, &lcap, in)) > 0) {
		lines++;
		if (!sg_learn_line(l, line, (size_t)n, &res))
			continue;
		events++;
		if (res.group >= 0)
			attributed++;
		if (res.ev.time >= 0) {
			if (first < 0)
				first = res.ev.time;
			last = res.ev.time;
		} else if (last < 0) {
			continue;           /* no time yet: nothing to place it at */
		}
		sg_learn_apply(l, &res, res.ev.time >= 0 ? res.ev.time : last, NULL);
	}
	free(line);
	if (tl.oom) {
		r = -ENOMEM;
		goto out;
	}
	if (csv) {
		fputs("time,group,from,to,reason\n", out);
		for (size_t i = 0; i < tl.n; i++) {
			sg_time_format(tl.v[i].chg.time, when, sizeof(when));
			fprintf(out, "%s,%s,%u,%u,", when, cfg->groups[tl.v[i].group].name,
				tl.v[i].chg.from, tl.v[i].chg.to);
			csv_field(out, tl.v[i].chg.reason);
			putc('\n', out);
		}
		goto out;
	}
	fprintf(out, "%llu lines, %llu delivery events, %llu in a group",
		(unsigned long long)lines, (unsigned long long)events, (unsigned long long)attributed);
	if (first >= 0) {
		sg_time_format(first, when, sizeof(when));
		fprintf(out, ", first at %s", when);
	}
	fputc('\n', out);
	for (unsigned g = 0; g < cfg->ngroups; g++) {
		const struct sg_group_conf *gc = &cfg->groups[g];
		const struct sg_ctl *c = &l->ctl[g];

		if (!l->started)
			break;
		fprintf(out, "%s: cap %u in [%u, %u]; %llu signals, %llu deliveries\n", gc->name,
			gc->cap, gc->min_cap, gc->max_cap, (unsigned long long)c->signals,
			(unsigned long long)l->delivered[g]);
		for (size_t i = 0; i < tl.n; i++) {
			if (tl.v[i].group != (int)g)
				continue;
			sg_time_format(tl.v[i].chg.time, when, sizeof(when));
			fprintf(out, "  %s  cap %u -> %u  (%s)\n", when, tl.v[i].chg.from,
				tl.v[i].chg.to, tl.v[i].chg.reason);
		}
		fprintf(out, "  final cap %u%s\n", c->cap, c->paused_until ? " (paused)" : "");
	}
out:
	free(tl.v);
	sg_learn_free(l);
	free(l);
	return r ? r : ferror(in) ? -EIO : 0;
}
