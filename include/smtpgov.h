/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * smtpgov ABI: the maps shared by the BPF programs (bpf/smtpgov.bpf.c) and
 * the smtpgov daemon and CLI (user/). Only fixed-size __u8/__u16/__u32/__u64
 * fields, no kernel headers, so both sides compile it.
 *
 * Semantics
 * ---------
 * A connect() from a process in the governed cgroup is *governed* when the
 * socket is SOCK_STREAM/TCP and the destination port is one of
 * settings.ports. The destination address is looked up in `ranges4`
 * (IPv4, and IPv4-mapped IPv6 such as ::ffff:142.250.1.27) or `ranges6`
 * (IPv6), longest prefix wins; the value is a group index into `groups`.
 * Anything else (UDP, other ports, no matching range) passes untouched.
 *
 * For a governed connect the program reserves a slot atomically:
 *
 *     old = fetch_add(&group.live, 1);
 *     if (old >= group.cap) { fetch_add(&group.live, -1); over cap }
 *
 * where, in a group with SG_GROUP_PER_SOURCE (the default), the counter is
 * the one of the socket's sending address instead (`srccounts`, below): the
 * cap applies to each bound source address separately.
 *
 * and tags the socket (`socks`: group + SG_SOCK_COUNTED). The tag makes a
 * second connect() on the same socket (after ECONNREFUSED, say) free; when
 * the socket goes away (close, exit, SIGKILL) cgroup/sock_release gives the
 * slot back. Over cap, settings.mode decides: SG_MODE_ENFORCE refuses the
 * connect (connect() fails with EPERM), SG_MODE_DRY_RUN admits it and only
 * counts it in `refused`.
 *
 * A group whose verdict is SG_VERDICT_QUEUE sends an over-cap connect to
 * the waiting room instead: to the daemon's loopback listener *in the
 * caller's network namespace*, while one is in the `room` sockhash under
 * that namespace's cookie (bpf_get_netns_cookie) and fewer than queue_max
 * connections wait. No listener there (a container the daemon has not
 * reached, or no daemon): the refuse verdict, never a dead address. The
 * hook rewrites the destination to 127.0.0.1 / ::1 port of that listener
 * and tags the socket SG_SOCK_QUEUED with the original destination and the
 * namespace; a sock_ops program files that destination in `pending` under
 * the namespace and the client's local address and port, where the waiting
 * room finds it from getpeername() on the listener it accepted from.
 * The waiting room connects upstream when a slot frees (sockets marked
 * SG_ROOM_MARK are never redirected: over cap they get EPERM) and relays.
 * Release of a counted socket in a queue group posts to `wakeups`.
 *
 * Worked example: group "google" has cap 2 and live 2. A third connect to
 * 142.250.1.27:25 makes live 3 for an instant, sees old (2) >= cap (2),
 * puts live back to 2, adds 1 to refused and fails with EPERM. The MTA
 * closes one of the first two sockets: live 1; the next connect succeeds.
 *
 * Userspace writes `cap`, `min_cap`, `max_cap`, `verdict` and `name`
 * through a memory mapping of `groups` (BPF_F_MMAPABLE), one field at a
 * time, never a whole-value update, so it cannot overwrite a counter the
 * kernel is changing. `live` is repaired only with atomic adds.
 */
#ifndef SMTPGOV_H
#define SMTPGOV_H

#ifdef __BPF__
/* vmlinux.h provides the __u* types */
#else
#include <linux/types.h>
#endif

#define SG_MAX_GROUPS     64      /* entries of `groups` */
#define SG_MAX_RANGES4    16384   /* entries of `ranges4` */
#define SG_MAX_RANGES6    16384   /* entries of `ranges6` */
#define SG_MAX_PORTS      8       /* governed destination ports */
#define SG_NAME_LEN       32      /* group name, NUL included */
#define SG_EVENTS_BYTES   (256 * 1024)
#define SG_WAKEUPS_BYTES  (64 * 1024)
#define SG_MAX_PENDING    65536   /* entries of `pending` */
#define SG_MAX_SOCKS      65536   /* entries of `socks`: tagged sockets at once */
#define SG_MAX_SOURCES    1024    /* sending-address slots per group (`sources`,
                                   * `srccounts`); slot 0 is the default source */
#define SG_DEFAULT_SOURCES 256    /* settings.max_sources unless configured */
#define SG_MAX_ROOMS      512     /* entries of `room`: two per network namespace served */
/* `room` key of a namespace's ::1 listener (its 127.0.0.1 one: the cookie). */
#define SG_ROOM_KEY6(cookie) (~(__u64)(cookie))

/* SO_MARK of the waiting room's upstream sockets ("smtp"). */
#define SG_ROOM_MARK      0x736d7470

/* Default: at most one ring-buffer event per group per 10 ms. */
#define SG_EVENT_INTERVAL_NS (10ULL * 1000 * 1000)

enum sg_mode {
	SG_MODE_ENFORCE = 0,   /* over cap: apply the group's verdict */
	SG_MODE_DRY_RUN = 1,   /* over cap: admit, count in `refused` */
};

enum sg_verdict {
	SG_VERDICT_REFUSE = 0, /* over cap: connect() fails with EPERM */
	SG_VERDICT_QUEUE  = 1, /* over cap: hold in the waiting room */
};

enum sg_group_flags {
	SG_GROUP_ACTIVE = 1,   /* slot in use by a configured group */
	SG_GROUP_PER_SOURCE = 2, /* the cap applies to each sending address */
};

/* `groups`: BPF_MAP_TYPE_ARRAY, BPF_F_MMAPABLE, key = group index. */
struct sg_group {
	char  name[SG_NAME_LEN];
	__u32 cap;        /* live connections allowed (0 = paused) */
	__s32 live;       /* governed sockets open now (atomic; signed so
	                   * a lost decrement never wraps to "full") */
	__u32 min_cap;    /* bounds userspace keeps cap within */
	__u32 max_cap;
	__u32 verdict;    /* enum sg_verdict */
	__u32 flags;      /* enum sg_group_flags */
	__u64 admitted;   /* connects reserved a slot (atomic) */
	__u64 refused;    /* connects over cap: refused, or would-be in dry-run */
	__u64 last_event_ns;    /* rate limit of ring-buffer events */
	__u64 events_dropped;   /* events suppressed by that limit */
	/* queue verdict; written by the daemon's waiting room unless noted */
	__u32 waiting;          /* held now or on their way: the kernel adds one
	                         * per connect it sends to the room (atomically,
	                         * never past queue_max), the room takes it off
	                         * when the connection leaves its queue */
	__u32 queue_max;        /* over this many waiting: refuse (userspace sets) */
	__u64 queued;           /* connects sent to the waiting room (kernel, atomic) */
	__u64 queue_timeouts;   /* held past queue_wait, answered 421 */
	__u32 wait_oldest_ms;   /* how long the oldest waiter has waited */
	__u32 wait_p50_ms;      /* queue time percentiles of recent admissions */
	__u32 wait_p90_ms;
	__u32 wait_p99_ms;
	__u64 idle_closed;      /* relayed sessions ended idle for a waiter (idle_close) */
};

/*
 * The ABI of the pinned maps: bump it whenever a shared struct, a map's
 * type, key, value or size, or a value's meaning changes. `load` adopts a
 * pinned instance only if its settings say this ABI (and are this size);
 * anything else is another smtpgov's, which `smtpgov unload` removes.
 */
#define SG_ABI_VERSION    3   /* 3: `room` holds each namespace's ::1 door too (SG_ROOM_KEY6) */

/* `settings`: BPF_MAP_TYPE_ARRAY, one entry at key 0. */
struct sg_settings {
	__u32 abi;                 /* SG_ABI_VERSION of the smtpgov that made the
	                            * maps; the first field in every ABI */
	__u32 mode;                /* enum sg_mode */
	__u16 ports[SG_MAX_PORTS]; /* host byte order; 0 = unused */
	__u32 nports;
	__u32 room_mark;           /* SO_MARK of the waiting room's upstreams */
	__u64 event_interval_ns;   /* min gap between events of a group */
	__u16 room_port;           /* the daemon's own namespace's room port (0: no daemon);
	                            * each namespace's port is its listener's */
	__u16 pad;
	__u32 max_sources;         /* sending-address slots in use at most, slot 0
	                            * included (<= SG_MAX_SOURCES) */
	__u32 reserved[2];         /* zero; settings before ABI 1 were 48 bytes */
};

/*
 * Sending addresses. A socket bound to an address before connect() (an
 * MTA's smtp_bind_address) counts under that address's *source slot*; an
 * unbound one under slot 0, the default source. `sources` (BPF_MAP_TYPE_HASH,
 * key = the address as 16 bytes, IPv4 mapped; value = __u32 slot) gives
 * slots out the first time an address connects, from `source_alloc`, and
 * never takes them back while loaded. Once settings.max_sources slots are
 * given, a new address counts under slot 0 (and `source_alloc.overflow`
 * counts those connects): it shares the default source's cap, never gets
 * more than its own.
 *
 * `srccounts` (BPF_MAP_TYPE_ARRAY, BPF_F_MMAPABLE) holds the counts of each
 * (group, source): key = group * SG_MAX_SOURCES + slot. In a group with
 * SG_GROUP_PER_SOURCE the reservation is made on the source's `live`
 * (fetch_add, roll back over cap) and groups[].live follows as the total;
 * without it the group's `live` is the one pool and the source's follows.
 * Either way both are kept, and release gives both back.
 */
struct sg_srccount {
	__s32 live;            /* sockets of the group from this source (atomic) */
	__u32 waiting;         /* held in the waiting room (daemon writes) */
	__u64 admitted;        /* connects that reserved a slot (atomic) */
};

struct sg_source_alloc {
	__u32 next;            /* slots given so far, slot 0 excluded (atomic) */
	__u32 pad;
	__u64 overflow;        /* connects from an address beyond max_sources */
};

/* `ranges4` / `ranges6`: BPF_MAP_TYPE_LPM_TRIE, value = __u32 group index. */
struct sg_lpm4 {
	__u32 prefixlen;
	__u8  addr[4];
};

struct sg_lpm6 {
	__u32 prefixlen;
	__u8  addr[16];
};

enum sg_sock_flags {
	SG_SOCK_COUNTED = 1,   /* holds one unit of groups[group].live */
	SG_SOCK_QUEUED  = 2,   /* sent to the waiting room; orig_* is where to */
};

/* `socks`: BPF_MAP_TYPE_HASH, key = socket cookie (__u64), the per-socket
 * tag. Whoever deletes a counted entry gives the slot back. */
struct sg_sock {
	__u32 group;
	__u32 flags;           /* enum sg_sock_flags */
	__u32 slot;            /* source slot whose count it holds */
	__u32 pad;
	__u8  orig_addr[16];   /* queued: original destination (IPv4 mapped) */
	__u16 orig_port;       /* host byte order */
	__u16 orig_family;     /* AF_INET or AF_INET6 of the client socket */
	__u8  src[16];         /* queued: the address the socket was bound to
	                        * before connect (IPv4 mapped), all zero if
	                        * unbound (the kernel's choice) */
	__u32 pad2;
	__u64 netns;           /* queued: network namespace cookie of the client */
};

/* `pending`: BPF_MAP_TYPE_LRU_HASH, queued connects by client address. */
struct sg_pending_key {
	__u64 netns;           /* client's network namespace cookie */
	__u8  addr[16];        /* client's local address (IPv4 mapped) */
	__u16 port;            /* client's local port, host byte order */
	__u16 pad;
	__u32 pad2;
};

struct sg_pending {
	__u8  addr[16];        /* original destination (IPv4 mapped) */
	__u16 port;            /* host byte order */
	__u16 family;          /* client socket's family */
	__u32 group;
	__u64 ts_ns;           /* bpf_ktime_get_ns() at connect */
	__u8  src[16];         /* bound source address (IPv4 mapped), all zero
	                        * if the client left the choice to the kernel:
	                        * the waiting room binds its upstream to it */
	__u32 slot;            /* its source slot */
	__u32 pad;
};

/* `wakeups`: BPF_MAP_TYPE_RINGBUF records, a slot of a queue group freed;
 * or group SG_WAKE_NO_DOOR: a connect that would have queued found no
 * waiting room in its network namespace (a new container): look for it. */
struct sg_wakeup {
	__u32 group;
	__u32 slot;            /* the source slot that freed (0 in a group
	                        * without per_source: one queue) */
};

#define SG_WAKE_NO_DOOR 0xffffffffu

enum sg_event_kind {
	SG_EV_REFUSED     = 1, /* connect refused with EPERM */
	SG_EV_WOULD_REFUSE = 2,/* dry-run: would have been refused */
	SG_EV_QUEUED      = 3, /* sent to the waiting room */
	SG_EV_DEQUEUED    = 4, /* left it: the room's upstream connect was admitted */
};

/* `events`: BPF_MAP_TYPE_RINGBUF records. */
struct sg_event {
	__u64 ts_ns;           /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u32 kind;            /* enum sg_event_kind */
	__u32 pid;
	__u32 group;
	__u32 live;
	__u32 cap;
	__u16 port;            /* host byte order */
	__u16 family;          /* AF_INET or AF_INET6 (as the socket saw it) */
	__u8  addr[16];        /* IPv4 as ::ffff:a.b.c.d */
	char  comm[16];
	__u8  src[16];         /* bound source address, all zero if unbound */
	__u32 slot;            /* its source slot */
	__u32 pad;
};

/* Pure helper shared by both sides (and unit-tested natively):
 * may a group emit an event at `now` when its last one was at `last`? */
static inline int sg_event_due(__u64 last, __u64 now, __u64 interval)
{
	return last == 0 || now - last >= interval;
}

/*
 * `feedback`: BPF_MAP_TYPE_ARRAY of SG_MAX_GROUPS entries, key = group slot
 * (as in `groups`). Declared in the BPF object like every map, but no
 * program uses it: the daemon's log feedback (user/daemon/feedback.c)
 * writes it and `smtpgov status` reads it. It says what the feedback loop
 * saw and did.
 */
#define SG_FEEDBACK_REASON_LEN 96

struct sg_feedback {
	__u64 signals;         /* throttle signals attributed to the group */
	__u64 last_change;     /* unix seconds of the last cap change, 0 = none */
	__u32 cap_from;        /* that change */
	__u32 cap_to;
	char  reason[SG_FEEDBACK_REASON_LEN]; /* "rule gmail-421-4.4.5, queue id ABC123" */
};

/*
 * The shared structs' sizes: both compilers must agree, and a change here
 * is a change of SG_ABI_VERSION.
 */
_Static_assert(sizeof(struct sg_group) == 136, "struct sg_group: ABI change");
_Static_assert(sizeof(struct sg_settings) == 56, "struct sg_settings: ABI change");
_Static_assert(sizeof(struct sg_srccount) == 16, "struct sg_srccount: ABI change");
_Static_assert(sizeof(struct sg_source_alloc) == 16, "struct sg_source_alloc: ABI change");
_Static_assert(sizeof(struct sg_lpm4) == 8, "struct sg_lpm4: ABI change");
_Static_assert(sizeof(struct sg_lpm6) == 20, "struct sg_lpm6: ABI change");
_Static_assert(sizeof(struct sg_sock) == 64, "struct sg_sock: ABI change");
_Static_assert(sizeof(struct sg_pending_key) == 32, "struct sg_pending_key: ABI change");
_Static_assert(sizeof(struct sg_pending) == 56, "struct sg_pending: ABI change");
_Static_assert(sizeof(struct sg_wakeup) == 8, "struct sg_wakeup: ABI change");
_Static_assert(sizeof(struct sg_event) == 88, "struct sg_event: ABI change");
_Static_assert(sizeof(struct sg_feedback) == 120, "struct sg_feedback: ABI change");

/*
 * IPv4-mapped IPv6 (::ffff:a.b.c.d), the one form in which both families
 * share a 16-byte address in these maps: four 32-bit words, network order.
 */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SG_V4MAPPED_WORD2 0xffff0000u
#else
#define SG_V4MAPPED_WORD2 0x0000ffffu
#endif

static inline int sg_is_v4mapped(const __u32 a[4])
{
	return a[0] == 0 && a[1] == 0 && a[2] == SG_V4MAPPED_WORD2;
}

/* a = ::ffff:ip (ip in network order). */
static inline void sg_map_v4(__u32 a[4], __u32 ip)
{
	a[0] = 0;
	a[1] = 0;
	a[2] = SG_V4MAPPED_WORD2;
	a[3] = ip;
}

/*
 * The governing decision, pure (cmocka tests it natively; the BPF program
 * reserves a slot, asks this, and applies the answer):
 *
 *   old       the pool's live count before this connect reserved a slot
 *   cap       the group's cap
 *   mode      settings.mode, verdict the group's
 *   from_room the connect is the waiting room's own upstream (SO_MARK)
 *   room      1: the waiting room can take it, 0: it cannot, -1: not known
 *             yet (SG_OUT_ASK_ROOM asks; the answer costs a map lookup,
 *             needed only over cap)
 */
enum sg_outcome {
	SG_OUT_ADMIT,          /* keep the slot, tag the socket */
	SG_OUT_ADMIT_OVER,     /* dry-run over cap: keep it, count a would-be refusal */
	SG_OUT_QUEUE,          /* give the slot back, send the connect to the room */
	SG_OUT_REFUSE,         /* give it back, count the refusal: EPERM */
	SG_OUT_RETRY,          /* the room's own upstream over cap: give it back,
	                        * EPERM, no refusal (the room retries later) */
	SG_OUT_ASK_ROOM,       /* over cap in a queue group: is the room open? */
};

/*
 * Before reserving: does a newcomer join the connections already waiting
 * for its pool (waiting != 0), under the cap or not? Only in a queue group,
 * enforcing, and never the room's own upstream. First come, first served,
 * and the room sees every session opened while its pool is contended, so it
 * can end one left idle in the MTA's connection cache. Asked before the
 * reservation on purpose: a reservation made only to be given back would
 * make a concurrent connect (the room's own upstream among them) see the
 * pool fuller than it is.
 */
static inline int sg_joins(int waiting, __u32 mode, __u32 verdict, int from_room)
{
	return waiting && verdict == SG_VERDICT_QUEUE && mode != SG_MODE_DRY_RUN && !from_room;
}

static inline enum sg_outcome sg_decide(__s32 old, __u32 cap, __u32 mode, __u32 verdict,
					int from_room, int room)
{
	if (old < (__s32)cap)
		return SG_OUT_ADMIT;
	if (mode == SG_MODE_DRY_RUN)
		return SG_OUT_ADMIT_OVER;
	if (from_room)
		return SG_OUT_RETRY;
	if (verdict != SG_VERDICT_QUEUE || room == 0)
		return SG_OUT_REFUSE;
	return room > 0 ? SG_OUT_QUEUE : SG_OUT_ASK_ROOM;
}

/*
 * `logstat`: BPF_MAP_TYPE_ARRAY (BPF_F_MMAPABLE), one entry at key 0. No BPF
 * program uses it: the daemon's log feedback (user/daemon/feedback.c)
 * creates and pins it and counts in it through a memory mapping (plain
 * stores, no syscall per line); `smtpgov status` shows it. It says which
 * log the daemon learns from and what it has read there.
 */
#define SG_LOGSTAT_SOURCE_LEN 256
#define SG_LOGSTAT_REASON_LEN 384

enum sg_logstat_state {
	SG_LOGSTAT_FOLLOWING = 1, /* reading the source */
	SG_LOGSTAT_WAITING   = 2, /* the file does not exist yet */
	SG_LOGSTAT_ENDED     = 3, /* standard input closed */
	SG_LOGSTAT_STOPPED   = 4, /* the daemon stopped */
};

struct sg_logstat {
	__u64 lines;           /* lines read from the source */
	__u64 deliveries;      /* delivery lines parsed among them */
	__u64 last_delivery;   /* unix seconds the last one was read, 0 = none */
	__u64 since;           /* unix seconds the daemon began following */
	__u32 state;           /* enum sg_logstat_state, 0 = never published */
	__u32 pid;             /* the daemon's */
	char  source[SG_LOGSTAT_SOURCE_LEN];  /* "/var/log/mail.log", "journal", "-" */
	char  reason[SG_LOGSTAT_REASON_LEN];  /* why that source (log = auto) */
};

#endif /* SMTPGOV_H */
