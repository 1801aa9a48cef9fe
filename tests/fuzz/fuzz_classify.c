// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * libFuzzer harness: rule matching against hostile reply text. The config
 * has rules that backtrack badly on crafted text ("(a+)+$" and kin); the
 * classifier's PCRE2 limits must keep every reply cheap, so a slow input
 * (libFuzzer -timeout) is a failure. The first bytes pick the group, code
 * and dsn; the rest is the reply.
 */
#include <string.h>
#include "classify.h"
#include "fuzz.h"

static struct sg_config cfg;
static struct sg_classifier cls;

static const char conf[] =
	"[rule nested-plus]\nmatch = (?:a+)+$\nclass = rate\n"
	"[rule words]\ngroup = google\nmatch = ^(\\w+\\s?)*$\nclass = concurrency\n"
	"[rule alternation]\nmatch = (a|aa|aaa)+b\nclass = reputation\n"
	"[rule dot-star]\ngroup = microsoft\ndsn = 4.7.652\nmatch = (.*\\d){8}x\nclass = concurrency\naction = pause\n"
	"[rule backref]\nmatch = ^(.+)+\\1$\nclass = other\n"
	"[rule plain]\ngroup = yahoo\nmatch = exceeded the maximum number of connections\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[512];

	(void)argc;
	(void)argv;
	if (sg_config_load(&cfg, fuzz_file((const uint8_t *)conf, sizeof(conf) - 1), err, sizeof(err)) ||
	    sg_classifier_init(&cls, &cfg, err, sizeof(err))) {
		fprintf(stderr, "fuzz_classify: %s\n", err);
		abort();
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const dsns[] = { "", "4.4.5", "4.7.652", "4.7.500", "4.7.0", "5.7.1" };
	static const int codes[] = { 0, 421, 450, 451, 550 };
	struct sg_classification out;
	struct sg_logev ev;

	if (size < 3)
		return -1;
	memset(&ev, 0, sizeof(ev));
	ev.status = data[0] & 1 ? SG_ST_DEFERRED : SG_ST_BOUNCED;
	ev.code = codes[data[1] % 5];
	snprintf(ev.dsn, sizeof(ev.dsn), "%s", dsns[data[1] / 5 % 6]);
	ev.text = (const char *)data + 3;
	ev.text_len = size - 3;
	sg_classify(&cls, (int)(data[2] % (cfg.ngroups + 1)) - 1, &ev, &out);
	if (out.signal && out.class == SG_CLASS_NONE)
		abort();
	return 0;
}
