/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Inside the kernel module only (user/kernel; `make check` refuses an
 * include of this file elsewhere): writable views of the mmapped counters,
 * which the rest of smtpgov reads through const pointers and changes only
 * through the calls in kernel.h.
 */
#ifndef SG_KERNEL_INT_H
#define SG_KERNEL_INT_H

#include "kernel.h"

static inline struct sg_group *sg_group_w(struct sg_kernel *k, int slot)
{
	return (struct sg_group *)&k->groups[slot];
}

static inline struct sg_srccount *sg_srccount_w(struct sg_kernel *k, int group, uint32_t slot)
{
	return (struct sg_srccount *)sg_kernel_srccount(k, group, slot);
}

#define SG_MAP_FD(k, name) ((k)->map_fd[SG_MAP_##name])

#endif
