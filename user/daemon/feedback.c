// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* The daemon's log feedback (see feedback.h). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include "feedback.h"
#include "follow.h"
#include "journal.h"
#include "learn.h"
#include "log.h"
#include "logprobe.h"
#include "retry.h"
#include "room.h"
#include "state.h"

struct sg_fb {
	struct sg_kernel *k;
	const struct sg_config *cfg;
	struct sg_loop *loop;
	const struct sg_room *room;   /* NULL: no waiting room */
	struct sg_learn learn;
	struct sg_follow *follow;
	struct sg_logsource src;   /* what is followed, and why */
	const char *log;           /* src.spec */
	struct sg_logstat *ls;     /* pinned `logstat` (mapped), else &own */
	struct sg_logstat own;
	int follow_fd;             /* in the loop, -1 once the input ended */
	int timer_fd;              /* CLOCK_REALTIME, absolute, at the next due time */
	int blind_fd;              /* every blind_warning s: learning blind? -1 if off */
	uint64_t governed;         /* governed connects at the last blind check */
	bool save_state;           /* false: the state path holds a foreign file */
	bool dirty;                /* a cap changed since the last save */
	int save_err;              /* the last save's error (negative), 0 if it worked */
	int64_t save_warned;       /* when that error was last logged */
	int slot[SG_MAX_GROUPS];   /* config index -> kernel slot */
	struct sg_retry retry;     /* retry_command runs */
	uint32_t written[SG_MAX_GROUPS]; /* last cap written, to notice `smtpgov set` */
};

static void publish(struct sg_fb *fb, int g)
{
	const struct sg_ctl *c = &fb->learn.ctl[g];
	struct sg_feedback v = { 0 };

	if (fb->slot[g] < 0)
		return;
	v.signals = c->signals;
	if (c->last.time > 0) {
		v.last_change = (__u64)c->last.time;
		v.cap_from = c->last.from;
		v.cap_to = c->last.to;
		snprintf(v.reason, sizeof(v.reason), "%s", c->last.reason);
	}
	int r = sg_kernel_feedback_put(fb->k, fb->slot[g], &v);

	if (r)
		pr_debug("feedback map: %s", strerror(-r));
}

#define SAVE_WARN_EVERY 60    /* s between two lines about the same save error */

static void save(struct sg_fb *fb)
{
	const struct sg_config *cfg = fb->cfg;
	struct sg_state *st;
	int r;

	if (!fb->save_state || !cfg->state[0])
		return;
	if (!(st = calloc(1, sizeof(*st))))
		return;
	for (unsigned i = 0; i < cfg->ngroups; i++) {
		const struct sg_ctl *c = &fb->learn.ctl[i];
		struct sg_state_group *g = &st->g[st->n++];

		snprintf(g->name, sizeof(g->name), "%s", cfg->groups[i].name);
		sg_ctl_saved(c, &g->cap, &g->resume_cap, &g->paused_until);
		g->signals = c->signals;
		g->changed = c->last.time;
		snprintf(g->reason, sizeof(g->reason), "%s", c->last.reason);
	}
	/* A full or read-only disk fails every save: the old file stays (the
	 * save is a rename of a complete temp file), learning goes on, and
	 * the error is said when it changes and then once a minute. */
	if ((r = sg_state_save(cfg->state, st))) {
		int64_t now = (int64_t)time(NULL);

		if (r != fb->save_err || now - fb->save_warned >= SAVE_WARN_EVERY) {
			pr_warn("state %s: %s (learned caps are not saved; the last saved state stays)",
				cfg->state, strerror(-r));
			fb->save_warned = now;
		}
	} else {
		if (fb->save_err)
			pr_info("state %s: saved again", cfg->state);
		fb->dirty = false;
	}
	fb->save_err = r;
	free(st);
}

static void on_change(void *arg, int g, const struct sg_change *chg)
{
	struct sg_fb *fb = arg;

	if (fb->slot[g] >= 0) {
		sg_kernel_set_cap(fb->k, fb->slot[g], chg->to);
		fb->written[g] = chg->to;
	}
	fb->dirty = true;
	if (chg->to == 0 && fb->learn.ctl[g].paused_until)
		pr_info("%s: cap %u -> 0 (%s); paused for %us, then cap %u", fb->cfg->groups[g].name,
			chg->from, chg->reason, fb->cfg->groups[g].pause, fb->learn.ctl[g].resume_cap);
	else
		pr_info("%s: cap %u -> %u (%s)", fb->cfg->groups[g].name, chg->from, chg->to,
			chg->reason);
	publish(fb, g);
}

static void arm(struct sg_fb *fb)
{
	int64_t due = sg_learn_next_due(&fb->learn);
	struct itimerspec its = { 0 };

	if (due != INT64_MAX)   /* it_value 0 disarms: nothing is due */
		its.it_value.tv_sec = due > 0 ? (time_t)due : 1;
	timerfd_settime(fb->timer_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* Someone ran `smtpgov set`: the controller goes on from that cap. */
static void follow_kernel(struct sg_fb *fb, int g, int64_t now)
{
	uint32_t cap;

	if (fb->slot[g] < 0)
		return;
	cap = sg_kernel_cap(fb->k, fb->slot[g]);
	if (cap == fb->written[g])
		return;
	pr_info("%s: cap set to %u outside the controller; following it", fb->cfg->groups[g].name, cap);
	sg_ctl_follow(&fb->learn.ctl[g], cap, now);
	fb->written[g] = cap;
}

/*
 * A message deferred by a concurrency reply in a group that queues: ask the
 * MTA to retry it now (retry_command, e.g. `postqueue -i %q`) instead of
 * after its backoff; the waiting room holds it until a slot frees.
 */
static void retry(struct sg_fb *fb, int g, const struct sg_learn_result *res)
{
	const struct sg_config *cfg = fb->cfg;

	if (cfg->groups[g].verdict != SG_VERDICT_QUEUE || res->ev.status != SG_ST_DEFERRED ||
	    !res->cls.signal || res->cls.class != SG_CLASS_CONCURRENCY ||
	    res->cls.action != SG_ACTION_DECREASE)
		return;
	if (sg_retry_run(&fb->retry, res->ev.queue_id, (int64_t)time(NULL)) == 1)
		pr_info("%s: %s deferred by a concurrency reply: asked the MTA to retry it in %us",
			cfg->groups[g].name, res->ev.queue_id, cfg->retry_delay);
}

/*
 * What the daemon knows of a signal's session beyond the log: the live
 * sessions of the group now (the line follows the provider's answer by
 * milliseconds), and, for a session the waiting room held, when the room
 * connected it upstream (the MTA's delays= count the wait in the room).
 */
static void evidence(struct sg_fb *fb, int g, const struct sg_learn_result *res, int64_t t,
		     struct sg_evidence *known)
{
	sg_learn_evidence(&res->ev, t, known);
	if (!res->cls.signal)
		return;
	if (fb->slot[g] >= 0)
		known->live = (int32_t)__atomic_load_n(&fb->k->groups[fb->slot[g]].live,
						      __ATOMIC_ACQUIRE);
	if (fb->room && known->began_ms && (res->ev.flags & SG_LEV_HAS_IP)) {
		int64_t up = sg_room_began(fb->room, &res->ev.addr, known->began_ms,
					   known->at_ms);

		if (up)
			known->began_ms = up;
	}
}

/* Counters `status` reads from another process: one writer, whole stores. */
static void count(__u64 *field, __u64 v)
{
	__atomic_store_n(field, v, __ATOMIC_RELAXED);
}

static int on_line(void *arg, const char *line, size_t len)
{
	struct sg_fb *fb = arg;
	struct sg_learn_result res;
	int64_t now = (int64_t)time(NULL), t;
	struct sg_evidence known;
	uint64_t signals;
	int g;

	count(&fb->ls->lines, fb->ls->lines + 1);
	sg_parser_set_now(&fb->learn.parser, now);
	if (!sg_learn_line(&fb->learn, line, len, &res))
		return 0;
	count(&fb->ls->deliveries, fb->ls->deliveries + 1);
	count(&fb->ls->last_delivery, (uint64_t)now);
	g = res.group;
	if (g < 0)
		return 0;
	pr_debug("%s %s %s %s %s", fb->cfg->groups[g].name, sg_status_name(res.ev.status),
		 res.ev.queue_id, sg_class_name(res.cls.class), res.cls.rule ? res.cls.rule : "-");
	/* The line's time, unless it claims to be in the future (clock skew,
	 * a time zone mix-up): a controller's time never goes back. */
	t = res.ev.time < 0 || res.ev.time > now ? now : res.ev.time;
	follow_kernel(fb, g, now);
	signals = fb->learn.ctl[g].signals;
	evidence(fb, g, &res, t, &known);
	sg_learn_apply(&fb->learn, &res, t, &known);
	if (fb->learn.ctl[g].signals != signals)
		publish(fb, g);
	retry(fb, g, &res);
	if (fb->dirty)
		save(fb);
	arm(fb);
	return 0;
}

static int on_log(void *arg, uint32_t events)
{
	struct sg_fb *fb = arg;
	int r;

	(void)events;
	r = sg_follow_read(fb->follow);
	if (fb->ls->state == SG_LOGSTAT_WAITING && !sg_follow_waiting(fb->follow)) {
		pr_info("log %s appeared: learning from it", fb->log);
		fb->ls->state = SG_LOGSTAT_FOLLOWING;
	}
	if (r == 1) {
		pr_info("log %s: end of input; caps stay as they are, clean intervals still count",
			fb->log);
		fb->ls->state = SG_LOGSTAT_ENDED;
		sg_loop_del(fb->loop, fb->follow_fd);
		fb->follow_fd = -1;
		return 0;
	}
	if (r < 0)
		pr_warn("log %s: %s", fb->log, strerror(-r));
	return 0;
}

/* "15m", "2s": an interval as the config writes it. */
static const char *dur(uint32_t s, char *buf, size_t len)
{
	if (s % 3600 == 0)
		snprintf(buf, len, "%uh", s / 3600);
	else if (s % 60 == 0)
		snprintf(buf, len, "%um", s / 60);
	else
		snprintf(buf, len, "%us", s);
	return buf;
}

/*
 * Every blind_warning: connects were governed since the last check, but no
 * delivery line has been read for that long. Caps are enforced and nothing
 * is learned: say so, naming the source, once per interval.
 */
static int on_blind(void *arg, uint32_t events)
{
	struct sg_fb *fb = arg;
	uint32_t every = fb->cfg->blind_warning;
	int64_t now = (int64_t)time(NULL), last;
	uint64_t ticks, governed = sg_kernel_governed(fb->k);
	char iv[16];

	(void)events;
	if (read(fb->blind_fd, &ticks, sizeof(ticks)) < 0)
		return 0;
	last = fb->ls->last_delivery ? (int64_t)fb->ls->last_delivery : (int64_t)fb->ls->since;
	if (governed > fb->governed && now - last >= (int64_t)every)
		pr_warn("learning blind: %llu connects governed in the last %s, no delivery line read "
			"from %s for %llds%s; caps are enforced but nothing is learned",
			(unsigned long long)(governed - fb->governed), dur(every, iv, sizeof(iv)),
			fb->log, (long long)(now - last),
			fb->ls->state == SG_LOGSTAT_WAITING ? " (it does not exist)" :
			fb->ls->state == SG_LOGSTAT_ENDED ? " (its input ended)" :
			" (is it the MTA's log? see log = auto)");
	fb->governed = governed;
	return 0;
}

static int on_timer(void *arg, uint32_t events)
{
	struct sg_fb *fb = arg;
	uint64_t ticks;
	int64_t now = (int64_t)time(NULL);

	(void)events;
	if (read(fb->timer_fd, &ticks, sizeof(ticks)) < 0 && errno == EAGAIN)
		return 0;
	for (unsigned g = 0; g < fb->cfg->ngroups; g++)
		follow_kernel(fb, (int)g, now);
	sg_learn_advance(&fb->learn, now);
	if (fb->dirty)
		save(fb);
	arm(fb);
	return 0;
}

/* Caps to start from: the state file, else what the kernel enforces now. */
static void restore(struct sg_fb *fb, int64_t now)
{
	const struct sg_config *cfg = fb->cfg;
	struct sg_state *st = calloc(1, sizeof(*st));
	uint32_t caps[SG_MAX_GROUPS];
	char err[PATH_MAX + 128];
	bool have = false;
	int r;

	fb->save_state = true;
	if (st && cfg->state[0]) {
		r = sg_state_load(cfg->state, st, err, sizeof(err));
		if (!r)
			have = true;
		else if (r == -EBADMSG)
			pr_warn("state %s: corrupt, ignored (%s)", cfg->state, err);
		else if (r == -EPROTO) {
			pr_warn("state %s: not ours, ignored and left alone (%s)", cfg->state, err);
			fb->save_state = false;
		} else if (r != -ENOENT)
			pr_warn("state %s: %s, ignored", cfg->state, strerror(-r));
	}
	for (unsigned i = 0; i < cfg->ngroups; i++) {
		const struct sg_state_group *s = have ? sg_state_find(st, cfg->groups[i].name) : NULL;

		fb->slot[i] = sg_kernel_group(fb->k, cfg->groups[i].name);
		caps[i] = s ? s->cap : fb->slot[i] >= 0 ? sg_kernel_cap(fb->k, fb->slot[i])
							 : cfg->groups[i].cap;
	}
	sg_learn_start(&fb->learn, now, caps);
	for (unsigned i = 0; i < cfg->ngroups; i++) {
		const struct sg_state_group *s = have ? sg_state_find(st, cfg->groups[i].name) : NULL;
		struct sg_ctl *c = &fb->learn.ctl[i];

		if (s) {
			sg_ctl_restore(c, now, s->paused_until, s->resume_cap);
			c->signals = s->signals;
			if (s->changed > 0) {
				c->last.time = s->changed;
				snprintf(c->last.reason, sizeof(c->last.reason), "%s", s->reason);
			}
		} else if (!caps[i]) {
			sg_ctl_follow(c, 0, now);   /* a pause set by hand stays */
		}
		if (fb->slot[i] >= 0) {
			sg_kernel_set_cap(fb->k, fb->slot[i], c->cap);
			fb->written[i] = c->cap;
		}
		publish(fb, (int)i);
	}
	if (have)
		pr_info("restored learned caps from %s", cfg->state);
	free(st);
}

/* Which log, why, since when, in the pinned `logstat` for `status`. */
static void publish_source(struct sg_fb *fb)
{
	int r = sg_kernel_logstat_map(fb->k->pin_dir, true, &fb->ls);

	if (r) {
		pr_warn("logstat map in %s: %s (status will not show the log source)",
			fb->k->pin_dir, strerror(-r));
		fb->ls = &fb->own;
	}
	memset(fb->ls, 0, sizeof(*fb->ls));
	snprintf(fb->ls->source, sizeof(fb->ls->source), "%s", fb->log);
	snprintf(fb->ls->reason, sizeof(fb->ls->reason), "%s", fb->src.reason);
	fb->ls->since = (uint64_t)time(NULL);
	fb->ls->pid = (uint32_t)getpid();
	fb->ls->state = SG_LOGSTAT_FOLLOWING;
}

int sg_feedback_start(struct sg_fb **out, struct sg_kernel *k, const struct sg_config *cfg,
		      struct sg_loop *loop, const struct sg_room *room, const char *log,
		      const char *mta)
{
	struct sg_fb *fb = calloc(1, sizeof(*fb));
	int64_t now = (int64_t)time(NULL);
	char err[256];
	int r;

	*out = NULL;
	if (!fb) {
		pr_err("feedback: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	fb->k = k;
	fb->cfg = cfg;
	fb->loop = loop;
	fb->room = room;
	fb->follow_fd = fb->timer_fd = fb->blind_fd = -1;
	/* auto runs postconf and waits for it */
	if ((r = sg_logprobe_resolve(cfg, log ? log : cfg->log, mta ? mta : cfg->mta, &fb->src,
				     err, sizeof(err)))) {
		pr_err("%s", err);
		free(fb);
		return r;
	}
	fb->log = fb->src.spec;
	if (strcmp(fb->src.reason, "given"))
		pr_info("log auto: chose %s: %s", fb->log, fb->src.reason);
	sg_retry_init(&fb->retry, cfg->retry_command, cfg->retry_delay, cfg->retry_timeout);
	if ((r = sg_learn_init(&fb->learn, cfg, SG_FMT_AUTO, now, on_change, fb, err, sizeof(err)))) {
		pr_err("feedback: %s", err);
		free(fb);
		return r;
	}
	restore(fb, now);
	save(fb);

	publish_source(fb);
	r = sg_follow_open(&fb->follow, fb->log, &sg_journal_source, SG_FOLLOW_END, on_line, fb);
	if (r) {
		pr_err("log %s: %s (give --log FILE, -, journal or journal:PATH; or --no-follow)",
		       fb->log, strerror(-r));
		goto fail;
	}
	if (sg_follow_waiting(fb->follow)) {
		pr_warn("log %s does not exist yet; nothing is learned until it appears", fb->log);
		fb->ls->state = SG_LOGSTAT_WAITING;
	}
	if (cfg->blind_warning) {
		fb->governed = sg_kernel_governed(k);
		fb->blind_fd = sg_timerfd((uint64_t)cfg->blind_warning * 1000);
		if (fb->blind_fd < 0 ||
		    (r = sg_loop_add(loop, fb->blind_fd, EPOLLIN, on_blind, fb))) {
			r = fb->blind_fd < 0 ? fb->blind_fd : r;
			goto fail;
		}
	}
	fb->timer_fd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
	fb->follow_fd = sg_follow_fd(fb->follow);
	if ((fb->timer_fd < 0 && (r = -errno)) ||
	    (r = sg_loop_add(loop, fb->follow_fd, EPOLLIN, on_log, fb)) ||
	    (r = sg_loop_add(loop, fb->timer_fd, EPOLLIN, on_timer, fb))) {
		pr_err("feedback: %s", strerror(-r));
		goto fail;
	}
	if ((r = sg_follow_read(fb->follow)) < 0) {
		pr_err("log %s: %s", fb->log, strerror(-r));
		goto fail;
	}
	arm(fb);
	*out = fb;
	pr_info("following %s: caps learn from the MTA's deferrals", fb->log);
	return 0;
fail:
	sg_feedback_stop(fb);
	return r;
}

void sg_feedback_stop(struct sg_fb *fb)
{
	if (!fb)
		return;
	if (fb->learn.started)
		save(fb);
	if (fb->follow_fd >= 0)
		sg_loop_del(fb->loop, fb->follow_fd);
	sg_loop_drop(fb->loop, &fb->timer_fd);
	sg_loop_drop(fb->loop, &fb->blind_fd);
	if (fb->ls) {
		fb->ls->state = SG_LOGSTAT_STOPPED;
		if (fb->ls != &fb->own)
			sg_kernel_logstat_unmap(fb->ls);
	}
	sg_follow_close(fb->follow);
	sg_learn_free(&fb->learn);
	free(fb);
}
