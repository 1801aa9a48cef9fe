/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Configuration: the embedded provider groups (builtin.c) merged with an
 * optional INI file. Every key, its type and its bounds are rows of one
 * table in config.c; README.md documents them.
 */
#ifndef SG_CONFIG_H
#define SG_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <limits.h>
#include "smtpgov.h"
#include "ranges.h"

#define SG_MAX_RULES 256

enum sg_class {           /* what a reply says about the sender */
	SG_CLASS_NONE = 0,    /* not a throttling signal (delivered, or unrelated) */
	SG_CLASS_CONCURRENCY,
	SG_CLASS_RATE,
	SG_CLASS_REPUTATION,
	SG_CLASS_OTHER,
};

enum sg_action {          /* what the controller does with a signal */
	SG_ACTION_DECREASE = 0,
	SG_ACTION_PAUSE,
	SG_ACTION_IGNORE,
};

struct sg_group_conf {
	char name[SG_NAME_LEN];
	bool builtin;            /* from the embedded table */
	uint32_t cap, min_cap, max_cap;
	double decrease;         /* cap *= decrease on a concurrency/rate signal */
	uint32_t cooldown;       /* s: longest echo window for a signal of unknown start */
	uint32_t increase_after; /* +1 after this many clean deliveries */
	uint32_t increase_interval; /* s: ...or after this long without a signal */
	uint32_t pause;          /* s: length of a pause-class signal */
	uint32_t verdict;        /* enum sg_verdict */
	uint32_t queue_max;      /* waiters held at most (queue verdict) */
	uint32_t queue_wait;     /* s: longest wait in the waiting room */
	bool per_source;         /* the cap applies to each sending address */
	uint32_t idle_close;     /* ms: end a relayed session idle this long
	                          * while others wait (0 = never) */
	size_t nranges4, nranges6;
};

struct sg_rule {
	char name[64];
	int group;               /* -1: any group */
	char dsn[16];            /* enhanced status code, "" = any */
	char *match;             /* PCRE2 pattern on the reply text, NULL = any */
	int class;               /* enum sg_class */
	int action;              /* enum sg_action */
};

struct sg_config {
	uint16_t ports[SG_MAX_PORTS];
	unsigned nports;
	uint32_t mode;           /* enum sg_mode */
	uint32_t verdict;        /* default for groups that do not set one */
	bool builtin;
	char state[PATH_MAX];
	char mta[PATH_MAX];      /* "" or postfix[:CONFIG_DIR] / exim[:PID_FILE] (mta.h) */
	char log[PATH_MAX];       /* auto, a file, "-", journal, journal:PATH (logsource.h) */
	char journal[PATH_MAX];   /* the journal `log = journal` and auto read; "" = the system's */
	uint32_t blind_warning;   /* s without a delivery line while governing before a warning; 0 = never */
	char retry_command[PATH_MAX]; /* "" = off; %q = the queue id */
	uint32_t retry_delay;    /* s before retry_command runs */
	uint32_t retry_timeout;  /* s a retry_command may run, then it is killed */
	uint32_t max_sources;    /* bound sending addresses counted apart */
	uint32_t room_max;       /* connections the waiting room holds at once
	                          * (held and relaying); 0: sum of queue_max +
	                          * max_cap over the groups that queue */
	uint32_t idle_close;     /* ms: the default of groups that set none */
	struct sg_group_conf groups[SG_MAX_GROUPS];
	unsigned ngroups;
	struct sg_rule rules[SG_MAX_RULES];
	unsigned nrules;
	struct sg_ranges ranges; /* all groups' prefixes, finished */
};

/*
 * Load the embedded groups and, if path is not NULL, the INI file over
 * them. On error returns a negative errno and writes one line to err
 * ("FILE:LINE: unknown key 'foo' in [group google]").
 */
int sg_config_load(struct sg_config *cfg, const char *path, char *err, size_t errlen);
void sg_config_free(struct sg_config *cfg);

/* Index of a group by name, or -1. */
int sg_config_group(const struct sg_config *cfg, const char *name);

/* "30s", "15m", "4h", "1d" or a bare number of seconds. */
int sg_parse_duration(const char *s, uint32_t *out);
/* The same in milliseconds, and "250ms" too. */
int sg_parse_duration_ms(const char *s, uint32_t *out);

/* Default idle_close (ms): see README, "Idle sessions". */
#define SG_IDLE_CLOSE_DEFAULT 200

const char *sg_class_name(int class);
const char *sg_action_name(int action);
const char *sg_mode_name(uint32_t mode);
const char *sg_verdict_name(uint32_t verdict);

#endif
