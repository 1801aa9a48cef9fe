// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * libFuzzer harness: the log line pipeline (parse, attribute, classify,
 * control) under every --format, as the daemon runs it (one line) and as
 * `smtpgov parse` runs it (a stream, JSON out). Checks: no crash, no
 * undefined behaviour, fields inside the line, JSON output valid UTF-8.
 */
#include <string.h>
#include "fuzz.h"
#include "learn.h"
#include "replay.h"

#define NOW 1795521600   /* 2026-11-24T12:00:00Z */

static struct sg_config cfg;
static struct sg_learn learn[3];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const int formats[] = { SG_FMT_AUTO, SG_FMT_POSTFIX, SG_FMT_EXIM };
	char err[512];

	(void)argc;
	(void)argv;
	setenv("TZ", "UTC", 1);
	if (sg_config_load(&cfg, NULL, err, sizeof(err)))
		abort();
	for (int i = 0; i < 3; i++) {
		if (sg_learn_init(&learn[i], &cfg, formats[i], NOW, NULL, NULL, err, sizeof(err)))
			abort();
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *line = (const char *)data;
	struct sg_learn_result res;

	if (!size)
		return 0;
	for (int i = 0; i < 3; i++) {
		sg_learn_start(&learn[i], NOW, NULL);       /* each input from the same start */
		if (!sg_learn_line(&learn[i], line, size, &res))
			continue;
		if (res.ev.text_len && (res.ev.text < line || res.ev.text + res.ev.text_len > line + size))
			abort();     /* the reply must lie inside the line */
		if (res.group >= (int)cfg.ngroups || strlen(res.ev.host) >= SG_HOST_LEN)
			abort();
		int64_t t = res.ev.time >= 0 ? res.ev.time : NOW;
		struct sg_evidence known;

		sg_learn_evidence(&res.ev, t, &known);    /* as the daemon does */
		sg_learn_apply(&learn[i], &res, t, &known);
		sg_learn_advance(&learn[i], NOW + 86400);
	}

	/* `smtpgov parse` over the input as a stream of lines */
	char *out = NULL;
	size_t out_len = 0;
	FILE *in = fmemopen((void *)data, size, "r");
	FILE *o = open_memstream(&out, &out_len);

	if (!in || !o)
		abort();
	if (sg_parse_run(in, o, &cfg, (int)(data[0] % 3), NOW))
		abort();
	fclose(in);
	fclose(o);
	if (!fuzz_utf8_text((const unsigned char *)out, out_len))
		abort();     /* JSON output must be valid UTF-8, controls escaped */
	free(out);
	return 0;
}
