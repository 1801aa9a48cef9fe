// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * JSON string escaping (see json.h). The output is always valid UTF-8
 * JSON, whatever the input bytes: well-formed UTF-8 passes as it is; a
 * byte that is not part of a well-formed sequence (a stray 0x80-0xff, an
 * overlong form, a surrogate, a sequence cut short) is written as
 * \u00XX, its Latin-1 reading, so nothing is dropped and the byte can be
 * told from the text around it; control characters and NUL are escaped.
 */
#include "json.h"
#include <string.h>

/* Length of the well-formed UTF-8 sequence at s (RFC 3629), 0 if none. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t len;

	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;        /* overlong */
	else if (c == 0xed)
		hi = 0x9f;        /* surrogates */
	else if (c == 0xf0)
		lo = 0x90;        /* overlong */
	else if (c == 0xf4)
		hi = 0x8f;        /* above U+10FFFF */
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

void sg_json_strn(FILE *fp, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;

	putc('"', fp);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		size_t len;

		switch (c) {
		case '"': fputs("\\\"", fp); break;
		case '\\': fputs("\\\\", fp); break;
		case '\n': fputs("\\n", fp); break;
		case '\r': fputs("\\r", fp); break;
		case '\t': fputs("\\t", fp); break;
		default:
			if (c < 0x20 || c == 0x7f) {
				fprintf(fp, "\\u%04x", c);
			} else if (c < 0x80) {
				putc(c, fp);
			} else if ((len = utf8_seq(s + i, n - i))) {
				fwrite(s + i, 1, len, fp);
				i += len - 1;
			} else {
				fprintf(fp, "\\u%04x", c);
			}
		}
	}
	putc('"', fp);
}

void sg_json_str(FILE *fp, const char *s)
{
	if (!s)
		fputs("null", fp);
	else
		sg_json_strn(fp, s, strlen(s));
}
