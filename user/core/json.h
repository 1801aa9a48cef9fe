/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* JSON output helpers shared by status, events, parse and replay. */
#ifndef SG_JSON_H
#define SG_JSON_H

#include <stdio.h>

/*
 * Write s as a JSON string literal (quotes included); NULL writes null.
 * Valid UTF-8 JSON for any bytes: well-formed UTF-8 as it is, every other
 * byte >= 0x80 as \u00XX (its Latin-1 reading), controls escaped.
 */
void sg_json_str(FILE *fp, const char *s);

/* The same for the n bytes at s, which may hold NUL (written \u0000). */
void sg_json_strn(FILE *fp, const char *s, size_t n);

#endif
