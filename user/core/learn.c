// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* The feedback pipeline: parse, attribute, classify, control (see learn.h). */
#include <string.h>
#include "learn.h"

int sg_learn_init(struct sg_learn *l, const struct sg_config *cfg, int format, int64_t now,
		  sg_change_fn on_change, void *arg, char *err, size_t errlen)
{
	memset(l, 0, sizeof(*l));
	l->cfg = cfg;
	l->on_change = on_change;
	l->arg = arg;
	sg_parser_init(&l->parser, format, now);
	return sg_classifier_init(&l->cls, cfg, err, errlen);
}

void sg_learn_free(struct sg_learn *l)
{
	sg_classifier_free(&l->cls);
}

void sg_learn_start(struct sg_learn *l, int64_t t, const uint32_t *caps)
{
	for (unsigned i = 0; i < l->cfg->ngroups; i++)
		sg_ctl_init(&l->ctl[i], &l->cfg->groups[i], caps ? caps[i] : l->cfg->groups[i].cap, t);
	l->started = true;
}

bool sg_learn_line(struct sg_learn *l, const char *line, size_t len, struct sg_learn_result *res)
{
	if (!sg_parse_line(&l->parser, line, len, &res->ev))
		return false;
	res->group = res->ev.flags & SG_LEV_HAS_IP ? sg_ranges_lookup(&l->cfg->ranges, &res->ev.addr) : -1;
	sg_classify(&l->cls, res->group, &res->ev, &res->cls);
	return true;
}

static void emit(struct sg_learn *l, int group, const struct sg_change *chg)
{
	if (l->on_change)
		l->on_change(l->arg, group, chg);
}

void sg_learn_advance(struct sg_learn *l, int64_t t)
{
	struct sg_change chg;

	if (!l->started)
		return;
	/* Earliest first across groups, so changes come out in time order. */
	for (;;) {
		int64_t best_due = INT64_MAX;
		int best = -1;

		for (unsigned i = 0; i < l->cfg->ngroups; i++) {
			int64_t d = sg_ctl_next_due(&l->ctl[i]);

			if (d <= t && d < best_due) {
				best_due = d;
				best = (int)i;
			}
		}
		if (best < 0 || !sg_ctl_advance(&l->ctl[best], t, &chg))
			break;
		emit(l, best, &chg);
	}
}

int64_t sg_learn_next_due(const struct sg_learn *l)
{
	int64_t due = INT64_MAX;

	if (!l->started)
		return due;
	for (unsigned i = 0; i < l->cfg->ngroups; i++) {
		int64_t d = sg_ctl_next_due(&l->ctl[i]);

		if (d < due)
			due = d;
	}
	return due;
}

/* Was this (queue id, relay, second, code) the last one seen? Remember it. */
static bool seen(struct sg_dedup *d, const struct sg_logev *ev, int64_t t)
{
	bool same = ev->queue_id[0] && d->time == t && d->code == ev->code &&
		    !strcmp(d->qid, ev->queue_id) && !memcmp(&d->addr, &ev->addr, sizeof(d->addr));

	memcpy(d->qid, ev->queue_id, sizeof(d->qid));
	d->time = t;
	d->code = ev->code;
	d->addr = ev->addr;
	return same;
}

void sg_learn_evidence(const struct sg_logev *ev, int64_t t, struct sg_evidence *out)
{
	out->at_ms = t * 1000 + (ev->time == t ? ev->msec : 0);
	out->began_ms = ev->time == t && ev->session_ms >= 0 ? out->at_ms - ev->session_ms : 0;
	out->live = -1;
}

void sg_learn_apply(struct sg_learn *l, const struct sg_learn_result *res, int64_t t,
		    const struct sg_evidence *known)
{
	const struct sg_logev *ev = &res->ev;
	struct sg_evidence e;
	struct sg_change chg;
	int g = res->group;

	sg_learn_evidence(ev, t, &e);
	if (known && known->began_ms)
		e.began_ms = known->began_ms;
	if (known && known->live >= 0)
		e.live = known->live;
	if (!l->started)
		sg_learn_start(l, t, NULL);
	sg_learn_advance(l, t);
	if (g < 0 || (unsigned)g >= l->cfg->ngroups)
		return;
	if (ev->status == SG_ST_SENT) {
		if (seen(&l->last_sent[g], ev, t))
			return;
		l->delivered[g]++;
		if (ev->session_ms >= 0)
			sg_ctl_session(&l->ctl[g], (uint32_t)ev->session_ms);
		if (sg_ctl_delivered(&l->ctl[g], t, ev->queue_id, &chg))
			emit(l, g, &chg);
		return;
	}
	if (!res->cls.signal || seen(&l->last_signal[g], ev, t))
		return;
	if (sg_ctl_signal(&l->ctl[g], t, res->cls.action, res->cls.rule, ev->queue_id, &e, &chg))
		emit(l, g, &chg);
}
