// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* The userspace range table: build, check, look up (see ranges.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ranges.h"

int sg_grow(void *arrayp, size_t *alloc, size_t n, size_t elem, size_t first)
{
	size_t want = *alloc ? *alloc * 2 : first;
	void *v, *old;

	if (n < *alloc)
		return 0;
	memcpy(&old, arrayp, sizeof(old));
	if (!(v = realloc(old, want * elem)))
		return -ENOMEM;
	memcpy(arrayp, &v, sizeof(v));
	*alloc = want;
	return 0;
}

int sg_ranges_add(struct sg_ranges *r, const struct sg_cidr *c, int group)
{
	if (sg_grow(&r->v, &r->alloc, r->n, sizeof(*r->v), 64))
		return -ENOMEM;
	r->v[r->n].cidr = *c;
	r->v[r->n].group = group;
	r->n++;
	return 0;
}

static int range_cmp(const void *a, const void *b)
{
	return sg_cidr_cmp(&((const struct sg_range *)a)->cidr,
			   &((const struct sg_range *)b)->cidr);
}

int sg_ranges_finish(struct sg_ranges *r, int *ga, int *gb, char *err, size_t errlen)
{
	size_t kept = 0;

	if (r->n)        /* qsort(NULL, 0) is undefined */
		qsort(r->v, r->n, sizeof(*r->v), range_cmp);
	/* Kept prefixes are disjoint and sorted, so a new prefix can only
	 * overlap the last one kept (prefixes nest or are disjoint). */
	for (size_t i = 0; i < r->n; i++) {
		struct sg_range *last = kept ? &r->v[kept - 1] : NULL;

		if (last && sg_cidr_contains(&last->cidr, &r->v[i].cidr)) {
			if (last->group == r->v[i].group)
				continue;
			char a[SG_CIDR_STRLEN], b[SG_CIDR_STRLEN];

			sg_cidr_format(&last->cidr, a, sizeof(a));
			sg_cidr_format(&r->v[i].cidr, b, sizeof(b));
			snprintf(err, errlen, "%s overlaps %s", b, a);
			*ga = r->v[i].group;
			*gb = last->group;
			return -EEXIST;
		}
		r->v[kept++] = r->v[i];
	}
	r->n = kept;
	return 0;
}

int sg_ranges_lookup(const struct sg_ranges *r, const struct sg_cidr *addr)
{
	size_t lo = 0, hi = r->n;

	/* Last prefix that starts at or before addr. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct sg_cidr *c = &r->v[mid].cidr;
		int cmp = c->family != addr->family ? (c->family < addr->family ? -1 : 1)
			: memcmp(c->addr, addr->addr, c->family == 4 ? 4 : 16);

		if (cmp <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo && sg_cidr_contains(&r->v[lo - 1].cidr, addr))
		return r->v[lo - 1].group;
	return -1;
}

size_t sg_ranges_count(const struct sg_ranges *r, int group, int family)
{
	size_t n = 0;

	for (size_t i = 0; i < r->n; i++)
		n += r->v[i].group == group && r->v[i].cidr.family == family;
	return n;
}

void sg_ranges_free(struct sg_ranges *r)
{
	free(r->v);
	memset(r, 0, sizeof(*r));
}
