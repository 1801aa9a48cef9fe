/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The log the daemon follows: `[global] log` or `load --log` as given, or
 * for "auto" what this host has (Postfix's maillog_file from postconf, the
 * syslog files, the journal, Exim's main log), gathered here and handed to
 * the pure rule in user/core/logsource.h.
 */
#ifndef SG_LOGPROBE_H
#define SG_LOGPROBE_H

#include <stdbool.h>
#include "config.h"
#include "logsource.h"

/*
 * spec: the `log` value ("auto", a file, "-", "journal", "journal:PATH");
 * mta: `--mta` or `[global] mta` (mta.h), "" for Postfix's default
 * instance: postfix:DIR is asked with `postconf -c DIR`, exim looks for
 * Exim's main log. Returns 0, or -EINVAL with one line in err.
 */
int sg_logprobe_resolve(const struct sg_config *cfg, const char *spec, const char *mta,
			struct sg_logsource *out, char *err, size_t errlen);

#endif
