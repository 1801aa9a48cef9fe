/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The one range table of userspace: every configured prefix with its group.
 * The loader seeds the kernel's LPM tries from it and the log follower
 * attributes relay IPs with it, so both halves agree by construction.
 */
#ifndef SG_RANGES_H
#define SG_RANGES_H

#include "cidr.h"

struct sg_range {
	struct sg_cidr cidr;
	int group;              /* index into the config's groups */
};

struct sg_ranges {
	struct sg_range *v;
	size_t n, alloc;
};

int sg_ranges_add(struct sg_ranges *r, const struct sg_cidr *c, int group);

/*
 * Sort, drop prefixes already covered by a prefix of the same group, and
 * reject a prefix that overlaps one of another group (-EEXIST, err names
 * both prefixes; *ga and *gb get the two groups). After this the prefixes
 * are disjoint and lookup is a binary search.
 */
int sg_ranges_finish(struct sg_ranges *r, int *ga, int *gb, char *err, size_t errlen);

/* Group of an address, or -1. Needs sg_ranges_finish first. */
int sg_ranges_lookup(const struct sg_ranges *r, const struct sg_cidr *addr);

/* Prefixes of one family (4 or 6) in a group. */
size_t sg_ranges_count(const struct sg_ranges *r, int group, int family);

void sg_ranges_free(struct sg_ranges *r);

/*
 * Room for one more element in a growing array: *(T **)arrayp holds *alloc
 * elements of elem bytes, n in use; when full it doubles (first: the
 * first size). 0 or -ENOMEM (the array is unchanged).
 */
int sg_grow(void *arrayp, size_t *alloc, size_t n, size_t elem, size_t first);

#endif
