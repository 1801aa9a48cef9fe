// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * libFuzzer harness: the config loader over any bytes. Checks: no crash,
 * no undefined behaviour, no leak; an error is one line that names the
 * file; a loaded config keeps its invariants (caps within bounds, ranges
 * in one group each, every group with ranges).
 */
#include <string.h>
#include "config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sg_config cfg;
	char err[1024];
	const char *path;

	/* ranges_file opens whatever it names (/dev/zero, a FIFO): the
	 * admin's choice, not the fuzzer's. Its lines go through the same
	 * add_ranges as the inline `ranges`. */
	if (memmem(data, size, "ranges_file", 11))
		return -1;
	path = fuzz_file(data, size);
	if (sg_config_load(&cfg, path, err, sizeof(err))) {
		if (!err[0] || strchr(err, '\n') || strncmp(err, path, strlen(path)))
			abort();  /* one line, naming the file */
		return 0;
	}
	for (unsigned i = 0; i < cfg.ngroups; i++) {
		const struct sg_group_conf *g = &cfg.groups[i];

		if (g->min_cap > g->cap || g->cap > g->max_cap || !(g->nranges4 + g->nranges6))
			abort();
	}
	if (!cfg.ngroups || !cfg.nports)
		abort();
	sg_config_free(&cfg);
	return 0;
}
