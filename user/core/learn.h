/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The feedback pipeline, shared by the daemon and by `smtpgov parse` and
 * `smtpgov replay` so that all three decide alike:
 *   line -> parse -> attribute (relay IP through the one range table)
 *        -> classify -> per-group controller -> changes (callback).
 * No I/O and no clock of its own: times are the lines' timestamps, or what
 * the caller passes.
 */
#ifndef SG_LEARN_H
#define SG_LEARN_H

#include "classify.h"
#include "config.h"
#include "controller.h"
#include "parse.h"

struct sg_learn_result {
	struct sg_logev ev;
	int group;                    /* config index, -1 when no group has the IP */
	struct sg_classification cls;
};

/* A cap change of group (config index). */
typedef void (*sg_change_fn)(void *arg, int group, const struct sg_change *chg);

struct sg_dedup {                 /* the last event that fed a controller */
	char qid[SG_QID_LEN];
	int64_t time;
	struct sg_cidr addr;
	int code;
};

struct sg_learn {
	const struct sg_config *cfg;
	struct sg_parser parser;
	struct sg_classifier cls;
	struct sg_ctl ctl[SG_MAX_GROUPS];  /* by config index */
	bool started;                 /* controllers initialised */
	uint64_t delivered[SG_MAX_GROUPS];
	struct sg_dedup last_signal[SG_MAX_GROUPS], last_sent[SG_MAX_GROUPS];
	sg_change_fn on_change;
	void *arg;
};

int sg_learn_init(struct sg_learn *l, const struct sg_config *cfg, int format, int64_t now,
		  sg_change_fn on_change, void *arg, char *err, size_t errlen);
void sg_learn_free(struct sg_learn *l);

/* Start the controllers at time t, at caps[i] (NULL: the configured caps). */
void sg_learn_start(struct sg_learn *l, int64_t t, const uint32_t *caps);

/* Parse, attribute and classify one line. False if it is no delivery event. */
bool sg_learn_line(struct sg_learn *l, const char *line, size_t len, struct sg_learn_result *res);

/*
 * Feed an event to its group's controller at time t (changes go to the
 * callback). Several recipients of one message answered by one reply
 * (same queue id, relay and second) count once. The line gives the
 * answer's time (with its milliseconds) and, with Postfix's delays=, the
 * session's start; `known` (NULL: nothing) adds what the caller knows
 * beyond the log: a better start (began_ms, e.g. when the waiting room
 * connected it upstream) and the live sessions (live >= 0).
 */
void sg_learn_apply(struct sg_learn *l, const struct sg_learn_result *res, int64_t t,
		    const struct sg_evidence *known);

/* What the line tells of its session: answer time and start, live unknown. */
void sg_learn_evidence(const struct sg_logev *ev, int64_t t, struct sg_evidence *out);

/* Apply what is due by t (end of pauses, clean intervals). */
void sg_learn_advance(struct sg_learn *l, int64_t t);

/* Earliest time sg_learn_advance has something to do, INT64_MAX if none. */
int64_t sg_learn_next_due(const struct sg_learn *l);

#endif
