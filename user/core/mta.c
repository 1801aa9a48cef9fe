// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* Parse an MTA spec (see mta.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "mta.h"

static const char *const names[] = { "", "postfix", "exim" };

const char *sg_mta_name(int kind)
{
	return kind > SG_MTA_NONE && kind <= SG_MTA_EXIM ? names[kind] : "?";
}

int sg_mta_parse(const char *spec, struct sg_mta *out, char *err, size_t errlen)
{
	const char *colon = strchr(spec, ':');
	size_t n = colon ? (size_t)(colon - spec) : strlen(spec);

	memset(out, 0, sizeof(*out));
	for (int k = SG_MTA_POSTFIX; k <= SG_MTA_EXIM; k++)
		if (strlen(names[k]) == n && !strncmp(spec, names[k], n))
			out->kind = k;
	if (!out->kind) {
		snprintf(err, errlen, "bad MTA '%s': want postfix[:CONFIG_DIR] or exim[:PID_FILE]", spec);
		return -EINVAL;
	}
	if (!colon)
		return 0;
	if (colon[1] != '/' || strlen(colon + 1) >= sizeof(out->arg)) {
		snprintf(err, errlen, "bad MTA '%s': %s must be an absolute path", spec,
			 out->kind == SG_MTA_POSTFIX ? "the config directory" : "the pid file");
		out->kind = SG_MTA_NONE;
		return -EINVAL;
	}
	snprintf(out->arg, sizeof(out->arg), "%s", colon + 1);
	return 0;
}
