// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * libFuzzer harness: the state-file loader over any bytes. Checks: no
 * crash, no undefined behaviour; a file it accepts holds no duplicate
 * group and no pause beyond a week of its change, and survives a save and
 * load unchanged (what was accepted is exactly what smtpgov writes).
 */
#include <string.h>
#include <sys/stat.h>
#include "fuzz.h"
#include "state.h"

static char saved[128];

static void cleanup(void)
{
	char dir[128], tmp[160];

	snprintf(tmp, sizeof(tmp), "%s.tmp", saved);
	unlink(saved);
	unlink(tmp);
	snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(saved, '/') - saved), saved);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(saved, sizeof(saved), "/dev/shm/smtpgov-fuzz-state.%d/state", (int)getpid());
	atexit(cleanup);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sg_state st, again;
	char err[512];

	if (sg_state_load(fuzz_file(data, size), &st, err, sizeof(err)))
		return 0;
	for (unsigned i = 0; i < st.n; i++) {
		if (sg_state_find(&st, st.g[i].name) != &st.g[i])
			abort();          /* a duplicate group was accepted */
		if (st.g[i].paused_until && st.g[i].paused_until > st.g[i].changed + 7 * 86400)
			abort();
	}
	if (sg_state_save(saved, &st) || sg_state_load(saved, &again, err, sizeof(err)) ||
	    memcmp(&st, &again, sizeof(st)))
		abort();
	return 0;
}
