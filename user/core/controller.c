// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* Per-group cap controller (see controller.h). */
#include <stdio.h>
#include <string.h>
#include "controller.h"

static void duration(uint32_t s, char *buf, size_t len)
{
	if (s && s % 86400 == 0)
		snprintf(buf, len, "%ud", s / 86400);
	else if (s && s % 3600 == 0)
		snprintf(buf, len, "%uh", s / 3600);
	else if (s && s % 60 == 0)
		snprintf(buf, len, "%um", s / 60);
	else
		snprintf(buf, len, "%us", s);
}

static uint32_t clamp(const struct sg_group_conf *g, uint32_t cap)
{
	return cap < g->min_cap ? g->min_cap : cap > g->max_cap ? g->max_cap : cap;
}

/* One decrease step from cap. */
static uint32_t decreased(const struct sg_group_conf *g, uint32_t cap)
{
	return clamp(g, (uint32_t)((double)cap * g->decrease));
}

void sg_ctl_init(struct sg_ctl *c, const struct sg_group_conf *conf, uint32_t cap, int64_t now)
{
	memset(c, 0, sizeof(*c));
	c->conf = conf;
	c->cap = clamp(conf, cap);
	c->now = now;
	c->decreased_ms = INT64_MIN;
	c->backoff = 1;
}

/* Clean deliveries (or the interval, scaled alike) the next +1 needs. */
static uint64_t needed(const struct sg_ctl *c, uint64_t base)
{
	return c->ceiling && c->cap + 1 >= c->ceiling ? base * c->backoff : base;
}

void sg_ctl_restore_pause(struct sg_ctl *c, int64_t until, uint32_t resume_cap)
{
	c->cap = 0;
	c->paused_until = until;
	c->resume_cap = clamp(c->conf, resume_cap);
	snprintf(c->pause_rule, sizeof(c->pause_rule), "restored");
	c->pause_qid[0] = '\0';
}

uint32_t sg_ctl_bound(const struct sg_group_conf *g, uint32_t cap)
{
	return cap ? clamp(g, cap) : 0;
}

void sg_ctl_restore(struct sg_ctl *c, int64_t now, int64_t paused_until, uint32_t resume_cap)
{
	if (paused_until > now)
		sg_ctl_restore_pause(c, paused_until, resume_cap);
	else if (paused_until)
		c->cap = clamp(c->conf, resume_cap);
}

void sg_ctl_saved(const struct sg_ctl *c, uint32_t *cap, uint32_t *resume_cap,
		  int64_t *paused_until)
{
	bool forever = c->paused_until == INT64_MAX;

	/* A pause without an end is saved as cap 0, resuming at min_cap if
	 * the operator ever lifts it by a restart with another cap. */
	*cap = forever ? 0 : c->cap;
	*resume_cap = forever ? c->conf->min_cap : c->resume_cap;
	*paused_until = forever ? 0 : c->paused_until;
}

int64_t sg_ctl_next_due(const struct sg_ctl *c)
{
	if (c->paused_until)
		return c->paused_until;
	if (c->clean && c->cap < c->conf->max_cap)
		return c->clean_since + (int64_t)needed(c, c->conf->increase_interval);
	return INT64_MAX;
}

static bool change(struct sg_ctl *c, int64_t t, uint32_t to, struct sg_change *chg)
{
	if (to == c->cap + 1) {
		/* The last probe held: above a ceiling it was wrong. */
		if (c->ceiling && c->cap >= c->ceiling) {
			c->ceiling = 0;
			c->backoff = 1;
		}
		c->probe_from = c->cap;
	} else {
		c->probe_from = 0;
	}
	chg->time = t;
	chg->from = c->cap;
	chg->to = to;
	c->cap = to;
	c->clean = 0;
	c->last = *chg;
	return true;
}

static int64_t clock_at(struct sg_ctl *c, int64_t t)
{
	if (t > c->now)
		c->now = t;
	return c->now;
}

bool sg_ctl_advance(struct sg_ctl *c, int64_t t, struct sg_change *chg)
{
	int64_t due = sg_ctl_next_due(c);

	t = clock_at(c, t);
	if (due > t)
		return false;
	if (c->paused_until) {
		c->paused_until = 0;
		if (c->pause_qid[0])
			snprintf(chg->reason, sizeof(chg->reason), "end of pause (rule %s, queue id %s)",
				 c->pause_rule, c->pause_qid);
		else
			snprintf(chg->reason, sizeof(chg->reason), "end of pause (rule %s)", c->pause_rule);
		return change(c, due, c->resume_cap, chg);
	}
	char d[16];

	duration((uint32_t)needed(c, c->conf->increase_interval), d, sizeof(d));
	snprintf(chg->reason, sizeof(chg->reason), "clean for %s", d);
	return change(c, due, c->cap + 1, chg);
}

static void signal_reason(char *buf, size_t len, const char *rule, const char *qid)
{
	if (qid && qid[0])
		snprintf(buf, len, "rule %s, queue id %s", rule ? rule : "?", qid);
	else
		snprintf(buf, len, "rule %s", rule ? rule : "?");
}

void sg_ctl_session(struct sg_ctl *c, uint32_t ms)
{
	c->session_ms = c->session_ms ? (uint32_t)(((uint64_t)c->session_ms * 7 + ms) / 8) : ms;
}

uint32_t sg_ctl_echo_window_ms(const struct sg_ctl *c)
{
	uint32_t w = 5000;

	if (c->session_ms)
		w = c->session_ms > 5000 ? 10000 : c->session_ms < 500 ? 1000 : 2 * c->session_ms;
	return (uint64_t)c->conf->cooldown * 1000 < w ? c->conf->cooldown * 1000 : w;
}

/* Is this signal an echo of a cap that was already decreased? */
static bool echo(const struct sg_ctl *c, int64_t at_ms, const struct sg_evidence *ev)
{
	if (c->decreased_ms == INT64_MIN)
		return false;
	if (ev && ev->began_ms)
		return ev->began_ms < c->decreased_ms;
	return at_ms - c->decreased_ms < (int64_t)sg_ctl_echo_window_ms(c);
}

bool sg_ctl_signal(struct sg_ctl *c, int64_t t, int action, const char *rule,
		   const char *queue_id, const struct sg_evidence *ev, struct sg_change *chg)
{
	const struct sg_group_conf *g = c->conf;
	int64_t at_ms;

	t = clock_at(c, t);
	/* the answer's time, never before the controller's clock */
	at_ms = ev && ev->at_ms > t * 1000 ? ev->at_ms : t * 1000;
	c->signals++;
	c->clean = 0;
	if (c->paused_until)
		return false;             /* the pause stands; it is not extended */
	if (action == SG_ACTION_PAUSE && g->pause) {
		c->resume_cap = decreased(g, c->cap);
		c->paused_until = t + g->pause;
		c->decreased_ms = at_ms;
		snprintf(c->pause_rule, sizeof(c->pause_rule), "%s", rule ? rule : "?");
		snprintf(c->pause_qid, sizeof(c->pause_qid), "%s", queue_id ? queue_id : "");
		signal_reason(chg->reason, sizeof(chg->reason), rule, queue_id);
		return change(c, t, 0, chg);
	}
	if (action != SG_ACTION_DECREASE && action != SG_ACTION_PAUSE)
		return false;
	if (echo(c, at_ms, ev))
		return false;
	c->decreased_ms = at_ms;
	if (c->probe_from && c->cap == c->probe_from + 1 && c->probe_from >= g->min_cap) {
		/* The probe failed: one step back, and probe this cap more rarely. */
		char why[SG_REASON_LEN];
		uint32_t probed = c->cap;

		c->backoff = c->ceiling == probed && c->backoff < 16 ? c->backoff * 2 : 2;
		c->ceiling = probed;
		signal_reason(why, sizeof(why), rule, queue_id);
		snprintf(chg->reason, sizeof(chg->reason), "%.70s; probe of %u failed", why, probed);
		return change(c, t, probed - 1, chg);
	}
	uint32_t to = decreased(g, c->cap);
	bool measured = false;

	/* The sessions open when the provider said "too many" bound its limit
	 * (none open: the count does not see this MTA's sessions; no bound). */
	if (ev && ev->live > 0 && (uint32_t)ev->live < to) {
		to = clamp(g, (uint32_t)ev->live);
		measured = true;
	}
	if (to == c->cap)
		return false;
	signal_reason(chg->reason, sizeof(chg->reason), rule, queue_id);
	if (measured) {
		size_t n = strlen(chg->reason);

		snprintf(chg->reason + n, sizeof(chg->reason) - n, "; %d live", ev->live);
	}
	return change(c, t, to, chg);
}

bool sg_ctl_delivered(struct sg_ctl *c, int64_t t, const char *queue_id, struct sg_change *chg)
{
	const struct sg_group_conf *g = c->conf;

	t = clock_at(c, t);
	if (c->paused_until)
		return false;
	if (!c->clean)
		c->clean_since = t;
	uint64_t need = needed(c, g->increase_after);

	if (c->clean < need)
		c->clean++;
	if (c->clean < need || c->cap >= g->max_cap)
		return false;
	if (queue_id && queue_id[0])
		snprintf(chg->reason, sizeof(chg->reason), "%llu clean deliveries, last queue id %s",
			 (unsigned long long)need, queue_id);
	else
		snprintf(chg->reason, sizeof(chg->reason), "%llu clean deliveries",
			 (unsigned long long)need);
	return change(c, t, c->cap + 1, chg);
}

void sg_ctl_follow(struct sg_ctl *c, uint32_t cap, int64_t t)
{
	t = clock_at(c, t);
	c->cap = cap;
	c->clean = 0;
	c->probe_from = 0;
	/* An operator's cap 0 is a pause without an end. */
	c->paused_until = cap == 0 ? INT64_MAX : 0;
	c->resume_cap = c->conf->min_cap;
}
