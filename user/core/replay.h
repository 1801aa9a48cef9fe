/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * `smtpgov parse` and `smtpgov replay`: the feedback pipeline (learn.h)
 * run over a log offline, with no kernel and no root.
 */
#ifndef SG_REPLAY_H
#define SG_REPLAY_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "config.h"

/*
 * One JSON object per delivery event of in:
 * {"time","queue_id","host","ip","group","status","code","dsn","class",
 *  "action","rule","reply"}. now decides the year of syslog timestamps.
 */
int sg_parse_run(FILE *in, FILE *out, const struct sg_config *cfg, int format, int64_t now);

/*
 * Run the controllers over in, by its timestamps, and print each group's
 * cap timeline (csv: "time,group,from,to,reason" rows in time order).
 */
int sg_replay_run(FILE *in, FILE *out, const struct sg_config *cfg, int format, int64_t now,
		  bool csv);

#endif
