/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* The embedded provider groups used when no config file says otherwise. */
#ifndef SG_BUILTIN_H
#define SG_BUILTIN_H

#include <stddef.h>
#include <stdint.h>

struct sg_builtin {
	const char *name;
	uint32_t cap, min_cap, max_cap;
	uint32_t pause;          /* s, length of the provider's pause signal */
	const char *ranges;      /* space-separated prefixes */
};

extern const struct sg_builtin sg_builtins[];
extern const size_t sg_nbuiltins;

#endif
