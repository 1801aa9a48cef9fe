/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Reply classifier: what a parsed delivery event says about the sender,
 * and what the controller should do about it. Enhanced status code and the
 * relay's group (from its IP, never from the reply text) decide first, the
 * reply text second. The config's [rule NAME] sections are tried before the
 * built-in signatures; a config rule named like a built-in one replaces it.
 * Pure: no I/O, no clock; the regexes are compiled once at init.
 */
#ifndef SG_CLASSIFY_H
#define SG_CLASSIFY_H

#include "config.h"
#include "parse.h"

struct sg_classification {
	int class;               /* enum sg_class */
	int action;              /* enum sg_action; meaningful when signal */
	bool signal;             /* a throttle signal: action decrease or pause */
	const char *rule;        /* rule that matched, NULL if none */
};

#define SG_MAX_BUILTIN_SIGS 64

struct sg_classifier {
	const struct sg_config *cfg;
	void *re[SG_MAX_RULES];  /* pcre2_code * of each config rule, or NULL */
	void *md;                /* pcre2_match_data *, reused per match */
	void *mctx;              /* pcre2_match_context *: the limits below */
	int sig_group[SG_MAX_BUILTIN_SIGS]; /* config group of each built-in, -1 any, -2 absent */
	bool sig_off[SG_MAX_BUILTIN_SIGS];  /* replaced by a config rule */
};

/*
 * A rule's regex meets text the remote server wrote. PCRE2's own limits
 * (10 million backtracking steps) let one crafted reply against a rule like
 * "(a+)+$" cost seconds; these bound one match to about a millisecond. A
 * match that hits them counts as no match (the rule does not apply).
 */
#define SG_MATCH_LIMIT  100000   /* backtracking steps (JIT too) */
#define SG_DEPTH_LIMIT  1000     /* backtracking depth (interpreter) */
#define SG_HEAP_LIMIT   1024     /* KiB of backtracking memory (interpreter) */

/* Compile the config's rules. -EINVAL (err says which) on a bad regex. */
int sg_classifier_init(struct sg_classifier *c, const struct sg_config *cfg, char *err, size_t errlen);
void sg_classifier_free(struct sg_classifier *c);

/* Classify an event of group (config index, -1 = no group). */
void sg_classify(const struct sg_classifier *c, int group, const struct sg_logev *ev,
		 struct sg_classification *out);

/* The built-in signatures, for documentation and tests: name and count. */
const char *sg_builtin_sig_name(size_t i);
size_t sg_builtin_sig_count(void);

#endif
