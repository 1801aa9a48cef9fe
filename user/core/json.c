// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* JSON string escaping (see json.h). */
#include "json.h"

void sg_json_str(FILE *fp, const char *s)
{
	if (!s) {
		fputs("null", fp);
		return;
	}
	putc('"', fp);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		switch (c) {
		case '"': fputs("\\\"", fp); break;
		case '\\': fputs("\\\\", fp); break;
		case '\n': fputs("\\n", fp); break;
		case '\r': fputs("\\r", fp); break;
		case '\t': fputs("\\t", fp); break;
		default:
			if (c < 0x20)
				fprintf(fp, "\\u%04x", c);
			else
				putc(c, fp);
		}
	}
	putc('"', fp);
}
