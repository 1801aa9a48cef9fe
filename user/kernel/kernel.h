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

/*
 * The BPF object's maps, each pinned under its own name in the pin dir
 * (bpftool reads them there). This list is the only one: the loader, the
 * pin reader and unload all go by it.
 */
#define SG_KERNEL_MAPS(X) \
	X(groups) X(settings) X(ranges4) X(ranges6) X(socks) X(events) X(room) \
	X(pending) X(wakeups) X(sources) X(source_alloc) X(srccounts) X(feedback)

enum sg_kernel_map {
#define SG_KERNEL_MAP_ID(name) SG_MAP_##name,
	SG_KERNEL_MAPS(SG_KERNEL_MAP_ID)
#undef SG_KERNEL_MAP_ID
	SG_KERNEL_NMAPS
};

struct smtpgov_bpf;

/*
 * A loaded or opened instance. Everything in it is the kernel module's
 * (user/kernel); the rest of smtpgov reads `groups` and the source counts
 * (sg_kernel_srccount) in place and changes anything only through the
 * sg_kernel_* calls below.
 */
struct sg_kernel {
	char pin_dir[PATH_MAX];
	int lock_fd;                 /* flock'ed pin dir, -1 if not held */
	int map_fd[SG_KERNEL_NMAPS]; /* user/kernel only */
	const struct sg_group *groups;   /* mmap of `groups`, SG_MAX_GROUPS entries */
	size_t groups_len;
	const struct sg_srccount *srccounts; /* mmap of `srccounts`: SG_MAX_SOURCES per group */
	size_t srccounts_len;
	struct smtpgov_bpf *skel;    /* set by sg_kernel_load only */
	int link_fd[4];              /* the cgroup links, held by sg_kernel_load (pins can go) */
	uint64_t cgroup_id;          /* cgroup the links are attached to, 0 if unknown */
	char cgroup_path[PATH_MAX];  /* set by sg_kernel_load */
};

/*
 * Open the pinned maps (status, set, lookup...). -ENOENT: nothing loaded;
 * -EPROTO: pinned by a smtpgov of another ABI (err says which).
 */
int sg_kernel_open(struct sg_kernel *k, const char *pin_dir, char *err, size_t errlen);

/*
 * Attach to the cgroup and pin, or adopt the pinned instance on the same
 * cgroup without touching live counts; then bring groups, ranges and
 * settings in line with cfg. An instance of another ABI is refused before
 * anything is touched. Holds the pin dir lock until sg_kernel_close. On
 * error, err holds one line naming the object that failed.
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

/*
 * Pin again what sg_kernel_load holds (maps and links) if the pin dir was
 * removed or its bpf filesystem unmounted, and lock the new dir; the
 * programs stay attached meanwhile, held by the daemon's fds. 0: all pins
 * were there; 1: pinned again; negative errno with err naming the object.
 */
int sg_kernel_repin(struct sg_kernel *k, char *err, size_t errlen);

/* Detach every program and remove every pin. -ENOENT if nothing pinned. */
int sg_kernel_unload(const char *pin_dir, char *err, size_t errlen);

void sg_kernel_close(struct sg_kernel *k);

/*
 * Attach connect4/connect6/sock_release (not pinned: they go with the
 * process, or sg_kernel_detach_room) to another cgroup, so that the waiting
 * room's upstream connects are governed by the same counts. Needs
 * sg_kernel_load. Logs its own error.
 */
struct sg_kernel_links;
int sg_kernel_attach_room(struct sg_kernel *k, const char *cgroup, struct sg_kernel_links **out);
void sg_kernel_detach_room(struct sg_kernel_links *l);
/* The links' fds (to keep them in the fd store across a restart); how many. */
int sg_kernel_room_link_fds(const struct sg_kernel_links *l, int fds[3]);

/* Counts of a group's source slot (sg_kernel_srccount(k, g, 0): the default). */
static inline const struct sg_srccount *sg_kernel_srccount(const struct sg_kernel *k, int group,
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

/* A group's cap, and writing it (one field, the counters are not touched). */
uint32_t sg_kernel_cap(const struct sg_kernel *k, int slot);
void sg_kernel_set_cap(struct sg_kernel *k, int slot, uint32_t cap);

/* Prefixes per slot in the kernel's tries. */
int sg_kernel_count_ranges(const struct sg_kernel *k, uint32_t n4[SG_MAX_GROUPS],
			   uint32_t n6[SG_MAX_GROUPS]);

/* Group slot of an address by the kernel's tries, or -1. */
int sg_kernel_lookup(const struct sg_kernel *k, const struct sg_cidr *addr);

int sg_kernel_settings(const struct sg_kernel *k, struct sg_settings *s);

/* --- the waiting room's side of the contract (include/smtpgov.h) --- */

/* Put a door's listeners in `room` under its namespace's cookie (the ::1
 * one, if any, under SG_ROOM_KEY6 of it), or take them out. */
int sg_kernel_room_register(struct sg_kernel *k, uint64_t netns, int fd4, int fd6);
void sg_kernel_room_unregister(struct sg_kernel *k, uint64_t netns);
/* Doors listening (network namespaces a waiting room serves); 0: no daemon's room. */
int sg_kernel_room_doors(const struct sg_kernel *k);
/* settings.room_port: set by the daemon whose room opens; cleared only if
 * it is still that port (another daemon may have taken over). */
int sg_kernel_room_port(struct sg_kernel *k, uint16_t port);
void sg_kernel_room_port_clear(struct sg_kernel *k, uint16_t port);

/* Take the destination the kernel filed for an accepted client. */
int sg_kernel_pending_take(struct sg_kernel *k, const struct sg_pending_key *key,
			   struct sg_pending *p);

/*
 * The queue's figures in `groups` and `srccounts`, for status and the
 * kernel. A group's `waiting` is a count of places: the kernel takes one
 * per connect it sends to the room, the room gives it back when the
 * connection leaves its queue (include/smtpgov.h).
 */
void sg_kernel_queue_oldest(struct sg_kernel *k, int g, uint32_t oldest_ms);
void sg_kernel_queue_percentiles(struct sg_kernel *k, int g, uint32_t p50, uint32_t p90,
				 uint32_t p99);
void sg_kernel_queue_timeout(struct sg_kernel *k, int g);
/* A relayed session ended idle for a waiting one (idle_closed). */
void sg_kernel_queue_idle_closed(struct sg_kernel *k, int g);
uint32_t sg_kernel_queue_waiting(const struct sg_kernel *k, int g);
void sg_kernel_queue_give_back(struct sg_kernel *k, int g);
/* Give back every place if `waiting` still is `seen` (places never claimed). */
bool sg_kernel_queue_unclaimed(struct sg_kernel *k, int g, uint32_t seen);
/* No place taken (a room that starts afresh, or stops for good). */
void sg_kernel_queue_clear(struct sg_kernel *k, int g);
/* A source's held connections (its queue's length), and none at all. */
void sg_kernel_source_waiting(struct sg_kernel *k, int g, uint32_t slot, int delta);
void sg_kernel_sources_waiting_clear(struct sg_kernel *k);

/* Ring buffers: `wakeups` (the room) and `events` (smtpgov events). The
 * callback gets each whole record; consume after the fd is readable. */
struct sg_kernel_ring;
typedef void (*sg_wakeup_fn)(void *ctx, const struct sg_wakeup *w);
typedef void (*sg_event_fn)(void *ctx, const struct sg_event *e);
int sg_kernel_wakeups(struct sg_kernel *k, sg_wakeup_fn fn, void *ctx, struct sg_kernel_ring **out);
int sg_kernel_events(struct sg_kernel *k, sg_event_fn fn, void *ctx, struct sg_kernel_ring **out);
int sg_kernel_ring_fd(const struct sg_kernel_ring *r);
int sg_kernel_ring_consume(struct sg_kernel_ring *r);
void sg_kernel_ring_free(struct sg_kernel_ring *r);

/* What the log feedback saw and did per group (the `feedback` map). */
int sg_kernel_feedback_put(struct sg_kernel *k, int slot, const struct sg_feedback *f);
int sg_kernel_feedback_get(const struct sg_kernel *k, int slot, struct sg_feedback *f);

/*
 * Count the sockets that hold a slot (sock_diag over the socket tags, in
 * every network namespace of the governed cgroup) and repair groups[].live
 * where it drifted while nothing else changed. Needs sg_kernel_load.
 * Returns the number of groups repaired (recount.c).
 */
int sg_kernel_recount(struct sg_kernel *k);

/*
 * The daemon's log status (`logstat`, see smtpgov.h), mapped into memory.
 * create: the daemon, which makes and pins the map if it is missing (or of
 * an older layout); otherwise (`status`) -ENOENT when no daemon made one.
 */
int sg_kernel_logstat_map(const char *pin_dir, bool create, struct sg_logstat **out);
void sg_kernel_logstat_unmap(struct sg_logstat *ls);

/* Connects governed so far, all groups: admitted, refused, queued. */
uint64_t sg_kernel_governed(const struct sg_kernel *k);

/* Route libbpf's own messages through sg_log, demoted one level. */
void sg_log_libbpf(void);

#endif
