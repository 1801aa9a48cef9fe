/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* JSON output helpers shared by status, events, parse and replay. */
#ifndef SG_JSON_H
#define SG_JSON_H

#include <stdio.h>

/* Write s as a JSON string literal (quotes included); NULL writes null. */
void sg_json_str(FILE *fp, const char *s);

#endif
