/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The kernel half seen from userspace: load the BPF object, pin its maps
 * and cgroup links under a pin directory, adopt an instance that is already
 * pinned, keep the maps in step with the config, unload.
 */
#ifndef SG_KERNEL_H
#define SG_KERNEL_H

#include <stdbool.h>
#include <stdint.h>
#include <limits.h>
#include "smtpgov.h"
#include "cgroup.h"
#include "config.h"

#define SG_DEFAULT_PIN_DIR "/sys/fs/bpf/smtpgov"

struct smtpgov_bpf;

struct sg_kernel {
	char pin_dir[PATH_MAX];
	int lock_fd;                 /* flock'ed pin dir, -1 if not held */
	int groups_fd, settings_fd, ranges4_fd, ranges6_fd, socks_fd, events_fd;
	int room_fd, pending_fd, wakeups_fd;   /* the queue verdict's maps */
	int sources_fd, source_alloc_fd, srccounts_fd;  /* sending addresses */
	struct sg_group *groups;     /* mmap of `groups`, SG_MAX_GROUPS entries */
	size_t groups_len;
	struct sg_srccount *srccounts; /* mmap of `srccounts`: SG_MAX_SOURCES per group */
	size_t srccounts_len;
	struct smtpgov_bpf *skel;    /* set by sg_kernel_load only */
	uint64_t cgroup_id;          /* cgroup the links are attached to, 0 if unknown */
	char cgroup_path[PATH_MAX];  /* set by sg_kernel_load */
};

/* Open the pinned maps (status, set, lookup...). -ENOENT: nothing loaded. */
int sg_kernel_open(struct sg_kernel *k, const char *pin_dir);

/*
 * Attach to the cgroup and pin, or adopt the pinned instance on the same
 * cgroup without touching live counts; then bring groups, ranges and
 * settings in line with cfg. Holds the pin dir lock until sg_kernel_close.
 * On error, err holds one line naming the object that failed.
 */
int sg_kernel_load(struct sg_kernel *k, const char *pin_dir, const char *cgroup,
		   const struct sg_config *cfg, bool *adopted, char *err, size_t errlen);

/* Groups, caps bounds, ranges and settings from cfg (live counts kept). */
int sg_kernel_sync(struct sg_kernel *k, const struct sg_config *cfg);

/*
 * Attach the loaded programs to another cgroup instead, keeping every map
 * (the governed one was removed: a systemd unit restarted). Needs
 * sg_kernel_load.
 */
int sg_kernel_reattach(struct sg_kernel *k, const char *cgroup, char *err, size_t errlen);

/* Detach every program and remove every pin. -ENOENT if nothing pinned. */
int sg_kernel_unload(const char *pin_dir, char *err, size_t errlen);

void sg_kernel_close(struct sg_kernel *k);

/*
 * Attach connect4/connect6/sock_release (not pinned: they go with the
 * process) to another cgroup, so that the waiting room's upstream connects
 * are governed by the same counts. Needs sg_kernel_load.
 */
struct bpf_link;
int sg_kernel_attach_room(struct sg_kernel *k, const char *cgroup, struct bpf_link *links[3],
			  char *err, size_t errlen);

/* Counts of a group's source slot (sg_kernel_srccount(k, g, 0): the default). */
static inline struct sg_srccount *sg_kernel_srccount(const struct sg_kernel *k, int group,
						     uint32_t slot)
{
	return &k->srccounts[(size_t)group * SG_MAX_SOURCES + slot];
}

/* A sending address the kernel has given a slot (16 bytes, IPv4 mapped). */
struct sg_source {
	uint8_t addr[16];
	uint32_t slot;
};

/* The sending addresses with their slots, sorted by slot; returns how many
 * (at most max), or a negative errno. */
int sg_kernel_sources(const struct sg_kernel *k, struct sg_source *out, int max);

/* Slots given and connects beyond max_sources (source_alloc). */
int sg_kernel_source_alloc(const struct sg_kernel *k, struct sg_source_alloc *a);

/* Slot of a group by name in the kernel map, or -1. */
int sg_kernel_group(const struct sg_kernel *k, const char *name);

/* Write a group's cap (one field, the counters are not touched). */
void sg_kernel_set_cap(struct sg_kernel *k, int slot, uint32_t cap);

/* Prefixes per slot in the kernel's tries. */
int sg_kernel_count_ranges(const struct sg_kernel *k, uint32_t n4[SG_MAX_GROUPS],
			   uint32_t n6[SG_MAX_GROUPS]);

/* Group slot of an address by the kernel's tries, or -1. */
int sg_kernel_lookup(const struct sg_kernel *k, const struct sg_cidr *addr);

int sg_kernel_settings(const struct sg_kernel *k, struct sg_settings *s);

/*
 * Count the sockets that hold a slot (sock_diag over the socket tags, in
 * every network namespace of the governed cgroup) and repair groups[].live
 * where it drifted while nothing else changed. Needs sg_kernel_load.
 * Returns the number of groups repaired (recount.c).
 */
int sg_kernel_recount(struct sg_kernel *k);

/* Route libbpf's own messages through sg_log, demoted one level. */
void sg_log_libbpf(void);

#endif
