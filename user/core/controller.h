/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Per-group cap controller: AIMD with a pause. Pure: every call carries the
 * time (the log line's timestamp, or the clock when no line comes), so
 * `replay` over a historical log and the live daemon decide alike.
 *
 *  - decrease (concurrency/rate signal): cap = max(min_cap, cap * decrease),
 *    on evidence, not on a timer. A signal from a session that began after
 *    the last decrease proves the cap in force is still too high: it acts at
 *    once. A signal from a session that began before it is an echo of the
 *    old cap and is ignored, so one burst of deferrals is one decision.
 *    When the session's start is not known, a signal within a short echo
 *    window after the decrease counts as an echo: twice the sessions'
 *    observed duration, within [1 s, 10 s] (5 s before any is observed),
 *    never longer than `cooldown`. Where the caller knows how many sessions
 *    were live when the provider said "too many" (the daemon reads it from
 *    the kernel), that number is a direct bound on the provider's limit:
 *    the cap goes no higher than it;
 *  - pause (pause-action signal): cap 0 for `pause` seconds, then resume at
 *    max(min_cap, pre-pause cap * decrease): the pause says the cap in force
 *    was too high, so it comes back one decrease lower, but what was learned
 *    below it is kept (min_cap would throw it away and cost a long ramp);
 *  - probe: an increase is a probe of the cap above what held. A signal at
 *    the probed cap takes that one step back (cap - 1) instead of a
 *    multiplicative decrease, remembers the probed cap as a ceiling, and
 *    doubles (up to 16x) the clean deliveries and interval needed before
 *    the ceiling is probed again: the cap settles at the provider's limit
 *    and costs one throttle reply per ever rarer probe. A probe that holds
 *    clears the ceiling (the provider loosened).
 *  - increase: +1 after `increase_after` clean deliveries, or after a clean
 *    `increase_interval`: one that began with a delivery and saw no signal
 *    and no change since, up to max_cap. A group that sends nothing proves
 *    nothing and stays where it is (else every idle group would sit at
 *    max_cap after a while, and the next campaign would open with a burst
 *    of throttling). Never more than +1 at a time; each step happens at the
 *    time it is due, even when the caller learns of that time later (the
 *    daemon's timer, a gap in a replayed log).
 * The cap is always within [min_cap, max_cap], or 0 while paused.
 */
#ifndef SG_CONTROLLER_H
#define SG_CONTROLLER_H

#include <stdbool.h>
#include <stdint.h>
#include "config.h"

#define SG_REASON_LEN 96

struct sg_change {
	int64_t time;            /* when it takes effect (unix s) */
	uint32_t from, to;
	char reason[SG_REASON_LEN]; /* "rule gmail-421-4.4.5, queue id ABC123" */
};

/*
 * What the caller knows of the session a signal came from. Every field is
 * optional (0, or -1 for live); the controller is a function of exactly
 * these inputs, so `replay` (which knows only the log) and the daemon
 * (which also knows the kernel's counts and the waiting room's admissions)
 * decide alike on the same inputs.
 */
struct sg_evidence {
	int64_t at_ms;           /* when the provider answered (line time, ms); 0: t */
	int64_t began_ms;        /* when that session began (ms); 0: not known */
	int32_t live;            /* the group's sessions live at that moment; <= 0: not known */
};

struct sg_ctl {
	const struct sg_group_conf *conf;
	uint32_t cap;            /* in force now; 0 while paused */
	uint32_t resume_cap;     /* cap after the pause */
	int64_t now;             /* latest time seen (times never go back) */
	int64_t paused_until;    /* 0: not paused */
	int64_t decreased_ms;    /* time of the last decrease, ms; INT64_MIN: never */
	uint32_t session_ms;     /* sessions' observed duration (moving average), 0: none */
	int64_t clean_since;     /* first delivery after the last signal or change */
	uint32_t clean;          /* clean deliveries since the last signal or change */
	uint64_t signals;        /* throttle signals seen */
	uint32_t probe_from;     /* cap before the last increase, 0 once settled */
	uint32_t ceiling;        /* a probe of this cap failed; 0: none */
	uint32_t backoff;        /* probes of the ceiling wait this many times longer */
	char pause_rule[64];     /* what caused the pause, for the resume reason */
	char pause_qid[32];
	struct sg_change last;   /* last change; last.time 0 = none */
};

/* Start at cap (clamped into [min_cap, max_cap]; 0 is not a valid start). */
void sg_ctl_init(struct sg_ctl *c, const struct sg_group_conf *conf, uint32_t cap, int64_t now);

/* Resume a pause that was in force (restored state): cap 0 until `until`. */
void sg_ctl_restore_pause(struct sg_ctl *c, int64_t until, uint32_t resume_cap);

/* A cap within the group's bounds; 0 (a pause) stays 0. */
uint32_t sg_ctl_bound(const struct sg_group_conf *g, uint32_t cap);

/*
 * A pause saved in the state file: still running at now, it goes on until
 * paused_until; over by now, the cap becomes resume_cap within the bounds.
 * paused_until 0: no pause was saved, nothing to do.
 */
void sg_ctl_restore(struct sg_ctl *c, int64_t now, int64_t paused_until, uint32_t resume_cap);

/* What the state file keeps of a controller (the inverse of sg_ctl_restore). */
void sg_ctl_saved(const struct sg_ctl *c, uint32_t *cap, uint32_t *resume_cap,
		  int64_t *paused_until);

/*
 * Apply what is due at or before t (end of a pause, clean intervals), one
 * change per call: call until it returns false. t earlier than a time seen
 * before counts as that time.
 */
bool sg_ctl_advance(struct sg_ctl *c, int64_t t, struct sg_change *chg);

/*
 * A throttle signal (action decrease or pause) at t, with what is known of
 * its session (NULL: nothing). Call sg_ctl_advance(t) first.
 */
bool sg_ctl_signal(struct sg_ctl *c, int64_t t, int action, const char *rule,
		   const char *queue_id, const struct sg_evidence *ev, struct sg_change *chg);

/* A session of the group took ms (connection setup and transmission). */
void sg_ctl_session(struct sg_ctl *c, uint32_t ms);

/* How long after a decrease a signal of unknown start counts as an echo, ms. */
uint32_t sg_ctl_echo_window_ms(const struct sg_ctl *c);

/* A clean delivery (status=sent). Call sg_ctl_advance(t) first. */
bool sg_ctl_delivered(struct sg_ctl *c, int64_t t, const char *queue_id, struct sg_change *chg);

/* When sg_ctl_advance next has something to do, or INT64_MAX if never. */
int64_t sg_ctl_next_due(const struct sg_ctl *c);

/* The cap was changed by someone else (`smtpgov set`): follow it. */
void sg_ctl_follow(struct sg_ctl *c, uint32_t cap, int64_t t);

#endif
