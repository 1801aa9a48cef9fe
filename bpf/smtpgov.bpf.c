// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * smtpgov kernel half: cap live SMTP connections per destination range.
 *
 * cgroup/connect4 and cgroup/connect6 reserve a slot in the destination's
 * group (or refuse the connect, or send it to the waiting room), and
 * cgroup/sock_release gives it back; sock_ops files where a queued connect
 * was going. The daemon checks the tags against the live sockets
 * (user/kernel/recount.c) to repair drift. The semantics and the map layout are in
 * include/smtpgov.h.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "smtpgov.h"

#define ALLOW  1
#define REFUSE 0

#define AF_INET     2
#define AF_INET6    10
#define SOCK_STREAM 1

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SG_MAX_GROUPS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct sg_group);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} groups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sg_settings);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SG_MAX_RANGES4);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sg_lpm4);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ranges4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SG_MAX_RANGES6);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sg_lpm6);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ranges6 SEC(".maps");

/*
 * The per-socket tag, keyed by socket cookie (never reused while the
 * system runs). A preallocated hash: no allocation on the connect path.
 * Whoever deletes a counted entry gives its slot back, so the release hook
 * and the daemon's recount (user/kernel/recount.c) can never both do it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SG_MAX_SOCKS);
	__type(key, __u64);
	__type(value, struct sg_sock);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SG_EVENTS_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} events SEC(".maps");

/*
 * The waiting room's listeners in each network namespace it serves: the
 * 127.0.0.1 one keyed by the namespace's cookie, the ::1 one by its
 * complement (SG_ROOM_KEY6). A socket leaves a sockhash when it is closed,
 * so a dead daemon leaves no door open.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, SG_MAX_ROOMS);
	__type(key, __u64);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} room SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SG_MAX_PENDING);
	__type(key, struct sg_pending_key);
	__type(value, struct sg_pending);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SG_WAKEUPS_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wakeups SEC(".maps");

/* Sending addresses and their counts per group (include/smtpgov.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SG_MAX_SOURCES);
	__type(key, __u8[16]);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sources SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sg_source_alloc);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} source_alloc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SG_MAX_GROUPS * SG_MAX_SOURCES);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct sg_srccount);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} srccounts SEC(".maps");

/* What the daemon's log feedback saw and did, per group (include/smtpgov.h):
 * no program uses it; declared here so that it is pinned, and typed in BTF,
 * like the others. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SG_MAX_GROUPS);
	__type(key, __u32);
	__type(value, struct sg_feedback);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} feedback SEC(".maps");

/* What a connect is counted under: its bound address and that address's slot. */
struct source {
	__u32 addr[4];         /* IPv4 mapped; all zero: unbound */
	__u32 slot;
};

static __always_inline int port_governed(const struct sg_settings *s, __u16 port)
{
#pragma unroll
	for (int i = 0; i < SG_MAX_PORTS; i++)
		if (s->ports[i] == port)
			return port != 0;
	return 0;
}

static __always_inline void emit(struct sg_group *grp, __u32 gid, __u32 kind,
				 const struct sg_settings *s, __u16 family,
				 const __u32 addr[4], __u16 port, __s32 live,
				 const struct source *src)
{
	__u64 now = bpf_ktime_get_ns();
	struct sg_event *e;

	if (!sg_event_due(grp->last_event_ns, now, s->event_interval_ns))
		goto dropped;
	grp->last_event_ns = now;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		goto dropped;
	e->ts_ns = now;
	e->kind = kind;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->group = gid;
	e->live = live;
	e->cap = grp->cap;
	e->port = port;
	e->family = family;
	__builtin_memcpy(e->addr, addr, 16);
	__builtin_memcpy(e->src, src->addr, 16);
	e->slot = src->slot;
	e->pad = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
	return;
dropped:
	__sync_fetch_and_add(&grp->events_dropped, 1);
}

static __always_inline struct sg_srccount *source_count(__u32 gid, __u32 slot)
{
	__u32 key = gid * SG_MAX_SOURCES + slot;

	return slot < SG_MAX_SOURCES ? bpf_map_lookup_elem(&srccounts, &key) : 0;
}

static __always_inline void wake(__u32 gid, __u32 slot)
{
	struct sg_wakeup *w = bpf_ringbuf_reserve(&wakeups, sizeof(*w), 0);

	if (w) {
		w->group = gid;
		w->slot = slot;
		bpf_ringbuf_submit(w, 0);
	}
}

/* A counted socket is gone: give its slot back, to its group and source. */
static __always_inline void give_back(__u32 gid, __u32 slot)
{
	struct sg_group *grp = bpf_map_lookup_elem(&groups, &gid);
	struct sg_srccount *cnt = source_count(gid, slot);
	__u32 waiting;

	if (!grp)
		return;
	__sync_fetch_and_add(&grp->live, -1);
	if (cnt)
		__sync_fetch_and_add(&cnt->live, -1);
	/* A slot freed where connections wait: wake the waiting room, for
	 * the source's own queue when the cap is per source. */
	if (grp->verdict != SG_VERDICT_QUEUE)
		return;
	if (grp->flags & SG_GROUP_PER_SOURCE) {
		waiting = cnt ? cnt->waiting : 0;
	} else {
		slot = 0;
		waiting = grp->waiting;
	}
	if (waiting)
		wake(gid, slot);
}

/* Drop a socket's tag; the slot goes back if we were the one to drop it. */
static __always_inline void untag(__u64 *cookie, const struct sg_sock *tag)
{
	__u32 gid = tag->group, flags = tag->flags, slot = tag->slot;

	if (bpf_map_delete_elem(&socks, cookie) == 0 && (flags & SG_SOCK_COUNTED))
		give_back(gid, slot);
}

/*
 * The waiting room's port in the caller's network namespace, if it listens
 * there and has room for one more; else 0. Room is reserved here: `waiting`
 * counts the connections held and those on their way, one added atomically
 * per connect sent (never past queue_max, however many arrive at once,
 * whatever the daemon has accepted yet), taken off by the waiting room when
 * the connection leaves its queue.
 */
static __always_inline __u16 room_port(struct bpf_sock_addr *ctx, const struct sg_settings *s,
				       struct sg_group *grp, bool to_v6, __u64 *netns)
{
	struct bpf_sock *listener;
	__u64 key;
	__u32 old;
	__u16 port;

	if (!s->room_port || grp->waiting >= grp->queue_max)
		return 0;
	*netns = bpf_get_netns_cookie(ctx);
	/* A client that goes to ::1 needs the ::1 listener (a namespace
	 * without IPv6 loopback has none). */
	key = to_v6 ? SG_ROOM_KEY6(*netns) : *netns;
	listener = bpf_map_lookup_elem(&room, &key);
	if (!listener) {
		/* The daemon runs but has no door here yet: ask for one. */
		wake(SG_WAKE_NO_DOOR, 0);
		return 0;
	}
	port = (__u16)listener->src_port;
	bpf_sk_release(listener);
	old = __sync_fetch_and_add(&grp->waiting, 1);
	if (old >= grp->queue_max) {
		__sync_fetch_and_add(&grp->waiting, -1);
		return 0;
	}
	return port;
}

/*
 * The address the socket was bound to before this connect (16 bytes, IPv4
 * mapped), all zero when it is unbound and the kernel will choose. Read
 * here, not from the waiting room's accepted connection: an unbound socket
 * sent to 127.0.0.1 also arrives from 127.0.0.1 (docs/design.md).
 */
static __always_inline void bound_source(struct bpf_sock *sk, __u16 family, __u32 src[4])
{
	if (family == AF_INET) {
		__u32 ip = sk->src_ip4;

		if (ip)
			sg_map_v4(src, ip);
		else
			src[0] = src[1] = src[2] = src[3] = 0;
		return;
	}
	src[0] = sk->src_ip6[0];
	src[1] = sk->src_ip6[1];
	src[2] = sk->src_ip6[2];
	src[3] = sk->src_ip6[3];
}

/*
 * The source slot of a bound address: the one it was given, or a new one
 * while fewer than max_sources are given; else the default slot 0.
 */
static __always_inline __u32 source_slot(const struct sg_settings *s, const __u32 addr[4])
{
	struct sg_source_alloc *a;
	__u32 zero = 0, *slot, n;

	if (!(addr[0] | addr[1] | addr[2] | addr[3]))
		return 0;
	slot = bpf_map_lookup_elem(&sources, addr);
	if (slot)
		return *slot;
	a = bpf_map_lookup_elem(&source_alloc, &zero);
	if (!a)
		return 0;
	if (a->next + 1 >= s->max_sources || a->next + 1 >= SG_MAX_SOURCES)
		goto full;
	n = __sync_fetch_and_add(&a->next, 1) + 1;
	if (n >= s->max_sources || n >= SG_MAX_SOURCES)
		goto full;
	if (bpf_map_update_elem(&sources, addr, &n, BPF_NOEXIST)) {
		/* Another connect from the same address was first (its slot
		 * wins; ours is lost, which max_sources bounds anyway). */
		slot = bpf_map_lookup_elem(&sources, addr);
		return slot ? *slot : 0;
	}
	return n;
full:
	__sync_fetch_and_add(&a->overflow, 1);
	return 0;
}

/* Send the connect to the waiting room: tag it with where it was going and
 * point it at the room's loopback listener, in the socket's own family. */
static __always_inline int enqueue(struct bpf_sock_addr *ctx, __u64 *cookie,
				   struct sg_group *grp, __u32 gid,
				   const struct sg_settings *s, __u16 family,
				   const __u32 addr[4], __u16 port, const struct source *src,
				   __u16 to_port, __u64 netns)
{
	struct sg_sock t = { .group = gid, .flags = SG_SOCK_QUEUED, .slot = src->slot,
			     .orig_port = port, .orig_family = family, .netns = netns };

	__builtin_memcpy(t.orig_addr, addr, 16);
	__builtin_memcpy(t.src, src->addr, 16);
	if (bpf_map_update_elem(&socks, cookie, &t, BPF_ANY)) {
		__sync_fetch_and_add(&grp->waiting, -1);   /* room_port's reservation */
		return REFUSE;
	}
	if (family == AF_INET) {
		ctx->user_ip4 = bpf_htonl(0x7f000001);
	} else if (sg_is_v4mapped(addr)) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = SG_V4MAPPED_WORD2;
		ctx->user_ip6[3] = bpf_htonl(0x7f000001);
	} else {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = 0;
		ctx->user_ip6[3] = bpf_htonl(1);
	}
	ctx->user_port = bpf_htons(to_port);
	__sync_fetch_and_add(&grp->queued, 1);
	emit(grp, gid, SG_EV_QUEUED, s, family, addr, port, grp->live, src);
	return ALLOW;
}

/*
 * The one decision path for IPv4, IPv4-mapped IPv6 and IPv6. addr is the
 * destination as 16 bytes (IPv4 mapped), for events only.
 */
static __always_inline int govern(struct bpf_sock_addr *ctx, __u32 gid,
				  const struct sg_settings *s, __u16 family,
				  const __u32 addr[4], __u16 port)
{
	struct sg_group *grp = bpf_map_lookup_elem(&groups, &gid);
	struct bpf_sock *sk = ctx->sk;
	struct sg_sock *tag, t = { .group = gid, .flags = SG_SOCK_COUNTED };
	struct sg_srccount *cnt;
	struct source src;
	__s32 *pool, *total;
	bool from_room, to_v6;
	__u64 cookie, netns = 0;
	enum sg_outcome out;
	__u16 to_port = 0;
	__s32 old;

	if (!grp || !(grp->flags & SG_GROUP_ACTIVE) || !sk)
		return ALLOW;

	/* connect() again on a socket that already holds a slot: free. */
	cookie = bpf_get_socket_cookie(ctx);
	tag = bpf_map_lookup_elem(&socks, &cookie);
	if (tag && (tag->flags & SG_SOCK_COUNTED)) {
		if (tag->group == gid)
			return ALLOW;
		untag(&cookie, tag);
	}

	bound_source(sk, family, src.addr);
	src.slot = source_slot(s, src.addr);
	cnt = source_count(gid, src.slot);
	if (!cnt)
		return ALLOW;
	/* Reserve on the pool the cap applies to; the other count follows. */
	if (grp->flags & SG_GROUP_PER_SOURCE) {
		pool = &cnt->live;
		total = &grp->live;
	} else {
		pool = &grp->live;
		total = &cnt->live;
	}
	from_room = s->room_mark && sk->mark == s->room_mark;
	/* Sent to the room, this client goes to ::1: it needs that door. */
	to_v6 = family == AF_INET6 && !sg_is_v4mapped(addr);
	/* Others wait for this pool already: join them (include/smtpgov.h). */
	if (sg_joins((grp->flags & SG_GROUP_PER_SOURCE ? cnt->waiting : grp->waiting) != 0,
		     s->mode, grp->verdict, from_room) &&
	    (to_port = room_port(ctx, s, grp, to_v6, &netns)))
		return enqueue(ctx, &cookie, grp, gid, s, family, addr, port, &src, to_port, netns);
	/* Reserve, decide (include/smtpgov.h), apply. */
	old = __sync_fetch_and_add(pool, 1);
	out = sg_decide(old, grp->cap, s->mode, grp->verdict, from_room, -1);
	if (out == SG_OUT_ASK_ROOM) {
		to_port = room_port(ctx, s, grp, to_v6, &netns);
		out = sg_decide(old, grp->cap, s->mode, grp->verdict, from_room, to_port != 0);
	}
	switch (out) {
	case SG_OUT_ADMIT:
		break;
	case SG_OUT_ADMIT_OVER:
		__sync_fetch_and_add(&grp->refused, 1);
		emit(grp, gid, SG_EV_WOULD_REFUSE, s, family, addr, port, old, &src);
		break;
	case SG_OUT_QUEUE:
		__sync_fetch_and_add(pool, -1);
		return enqueue(ctx, &cookie, grp, gid, s, family, addr, port, &src, to_port, netns);
	case SG_OUT_REFUSE:
		__sync_fetch_and_add(pool, -1);
		__sync_fetch_and_add(&grp->refused, 1);
		emit(grp, gid, SG_EV_REFUSED, s, family, addr, port, old, &src);
		return REFUSE;
	default:               /* SG_OUT_RETRY: the room tries again later */
		__sync_fetch_and_add(pool, -1);
		return REFUSE;
	}
	__sync_fetch_and_add(total, 1);

	t.slot = src.slot;
	if (bpf_map_update_elem(&socks, &cookie, &t, BPF_ANY)) {
		/* No tag, no release later: do not count what we cannot give back. */
		__sync_fetch_and_add(pool, -1);
		__sync_fetch_and_add(total, -1);
		return ALLOW;
	}
	__sync_fetch_and_add(&grp->admitted, 1);
	__sync_fetch_and_add(&cnt->admitted, 1);
	if (from_room)
		emit(grp, gid, SG_EV_DEQUEUED, s, family, addr, port, old + 1, &src);
	return ALLOW;
}

static __always_inline const struct sg_settings *governed(struct bpf_sock_addr *ctx, __u16 *port)
{
	const struct sg_settings *s;
	__u32 zero = 0;

	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP)
		return 0;
	s = bpf_map_lookup_elem(&settings, &zero);
	if (!s)
		return 0;
	*port = bpf_ntohs((__u16)ctx->user_port);
	return port_governed(s, *port) ? s : 0;
}

/* The destination's group by a trie's longest prefix, then govern; an
 * address in no range passes. */
static __always_inline int govern_in(struct bpf_sock_addr *ctx, void *trie, const void *key,
				     const struct sg_settings *s, __u16 family,
				     const __u32 addr[4], __u16 port)
{
	__u32 *gid = bpf_map_lookup_elem(trie, key);

	return gid ? govern(ctx, *gid, s, family, addr, port) : ALLOW;
}

static __always_inline int govern4(struct bpf_sock_addr *ctx, const struct sg_settings *s,
				   __u16 family, __u32 ip, __u16 port)
{
	struct sg_lpm4 key = { .prefixlen = 32 };
	__u32 addr[4];

	sg_map_v4(addr, ip);
	*(__u32 *)key.addr = ip;
	return govern_in(ctx, &ranges4, &key, s, family, addr, port);
}

SEC("cgroup/connect4")
int sg_connect4(struct bpf_sock_addr *ctx)
{
	const struct sg_settings *s;
	__u16 port;

	s = governed(ctx, &port);
	if (!s)
		return ALLOW;
	return govern4(ctx, s, AF_INET, ctx->user_ip4, port);
}

SEC("cgroup/connect6")
int sg_connect6(struct bpf_sock_addr *ctx)
{
	const struct sg_settings *s;
	struct sg_lpm6 key = { .prefixlen = 128 };
	__u32 addr[4];
	__u16 port;

	s = governed(ctx, &port);
	if (!s)
		return ALLOW;
	/* Word by word: the verifier allows only 4-byte loads of user_ip6. */
	addr[0] = ctx->user_ip6[0];
	addr[1] = ctx->user_ip6[1];
	addr[2] = ctx->user_ip6[2];
	addr[3] = ctx->user_ip6[3];
	if (sg_is_v4mapped(addr))
		return govern4(ctx, s, AF_INET6, addr[3], port);

	__builtin_memcpy(key.addr, addr, 16);
	return govern_in(ctx, &ranges6, &key, s, AF_INET6, addr, port);
}

SEC("cgroup/sock_release")
int sg_release(struct bpf_sock *sk)
{
	struct sg_sock *tag;
	__u64 cookie;

	if (sk->type != SOCK_STREAM)
		return ALLOW;
	cookie = bpf_get_socket_cookie(sk);
	tag = bpf_map_lookup_elem(&socks, &cookie);
	if (tag)
		untag(&cookie, tag);
	return ALLOW;
}

/*
 * A queued connect has its local port now: file its original destination
 * under the client's address and port for the waiting room.
 */
SEC("sockops")
int sg_sockops(struct bpf_sock_ops *skops)
{
	/* Read the context into locals first (docs/design.md). */
	__u32 op = skops->op, family = skops->family, lport = skops->local_port;
	__u32 l0 = skops->local_ip6[0], l1 = skops->local_ip6[1];
	__u32 l2 = skops->local_ip6[2], l3 = skops->local_ip6[3], l4 = skops->local_ip4;
	struct sg_pending_key key = {};
	struct sg_pending val = {};
	struct sg_sock *tag;
	__u64 cookie;

	if (op != BPF_SOCK_OPS_TCP_CONNECT_CB)
		return 1;
	cookie = bpf_get_socket_cookie(skops);
	tag = bpf_map_lookup_elem(&socks, &cookie);
	if (!tag || !(tag->flags & SG_SOCK_QUEUED))
		return 1;
	__u32 a[4] = { l0, l1, l2, l3 };

	if (family == AF_INET)
		sg_map_v4(a, l4);
	__builtin_memcpy(key.addr, a, 16);
	key.port = (__u16)lport;
	key.netns = tag->netns;
	__builtin_memcpy(val.addr, tag->orig_addr, 16);
	val.port = tag->orig_port;
	val.family = tag->orig_family;
	val.group = tag->group;
	__builtin_memcpy(val.src, tag->src, 16);
	val.slot = tag->slot;
	val.ts_ns = bpf_ktime_get_ns();
	bpf_map_update_elem(&pending, &key, &val, BPF_ANY);
	/* Filed: the tag has done its work (a queued socket holds no slot). */
	bpf_map_delete_elem(&socks, &cookie);
	return 1;
}
