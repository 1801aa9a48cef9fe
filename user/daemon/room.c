// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * The waiting room (see room.h): one epoll loop, no thread per connection.
 * A held connection is a `struct conn`; it moves WAITING -> CONNECTING ->
 * RELAYING and is freed when both directions are finished, or, ended idle
 * for a waiting one (end_idle), goes through CLOSING while the provider
 * ends its side.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <signal.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include "cidr.h"
#include "discover.h"
#include "doors.h"
#include "fdstore.h"
#include "netns.h"
#include "log.h"
#include "relay.h"
#include "room.h"
#include "waitq.h"

#define TICK_MS 50
#define ADMISSIONS 256
#define CLOSE_WAIT_MS 2000     /* longest wait for the provider's EOF after end_idle */

enum state { WAITING, CONNECTING, RELAYING, CLOSING };

struct conn {
	struct sg_waiter w;    /* first: in its (group, source) queue while WAITING */
	enum state state;
	int group;
	uint32_t slot;         /* source slot the kernel counts it under */
	uint32_t qslot;        /* its queue: slot, or 0 where the group has one pool */
	struct sg_relay io;    /* client (MTA) and upstream */
	struct sockaddr_storage dst, src;
	socklen_t dstlen, srclen;   /* srclen 0: the MTA left the source to the kernel */
	struct sg_room *owner;
	struct sg_door *door;  /* came through it: its namespace is the client's */
	char stored[SG_FDNAME_LEN]; /* its name in the fd store, or "" */
	bool taken;            /* a relay the previous daemon left */
	struct conn *rprev, *rnext; /* in the room's relays while RELAYING or CLOSING */
	uint64_t close_by;     /* CLOSING: when to stop waiting for the provider */
};

/* A group's queues, one FIFO per source (a slot freed for a source admits
 * its own), and what they add up to. */
struct gqueues {
	struct sg_waitq q[SG_MAX_SOURCES];
	uint32_t n;                 /* waiting in all its queues */
	uint32_t nslots;            /* queues used: q[0..nslots) */
	struct sg_waittimes times;  /* recent queue times */
	uint32_t closing[SG_MAX_SOURCES]; /* sessions of each queue's source ending */
	uint32_t nclosing;          /* all of them */
};

/* An upstream connect the room made: where to and when (wall clock). */
struct admission {
	struct sg_cidr dst;
	int64_t at_ms;
};

struct sg_room {
	struct admission adm[ADMISSIONS];   /* the latest upstream connects, a ring */
	unsigned nadm;
	struct sg_kernel *k;
	const struct sg_config *cfg;
	struct sg_loop *loop;
	struct sg_doors *doors;
	int tick_fd;
	bool ticking;
	bool stored;                /* our door is in the fd store: a restart keeps the room */
	unsigned nrelays;           /* relays started, for their names in the store */
	unsigned taken_relays;      /* relays the previous daemon left, still relayed on */
	struct sg_fd_given *oldlinks; /* the hooks of earlier daemons' room cgroups */
	int noldlinks;
	uint32_t nconns, room_max;  /* connections we hold (any state), the bound */
	bool paused;                /* not accepting: at room_max, or out of fds */
	uint64_t fd_warned_ms;      /* last "cannot accept" line */
	uint32_t stale[SG_MAX_GROUPS], stale_ticks[SG_MAX_GROUPS]; /* see repair() */
	uint16_t port;              /* of the door in our own namespace */
	struct sg_kernel_ring *wake;  /* the kernel's wakeups */
	struct sg_kernel_links *links; /* our own cgroup's programs */
	char cgroup[PATH_MAX];      /* our own governed cgroup, "" if none made */
	char parent[PATH_MAX];
	struct gqueues *gq;         /* SG_MAX_GROUPS of them */
	struct conn *relays;        /* RELAYING and CLOSING connections (not taken ones) */
	uint32_t wait_s[SG_MAX_GROUPS];
	uint32_t idle_ms[SG_MAX_GROUPS]; /* idle_close: 0 = never */
	char name[SG_MAX_GROUPS][SG_NAME_LEN + 1];
};

static uint64_t now_ms(void)
{
	return sg_relay_now_ms();
}

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Remember that a session to dst began upstream now. */
static void admitted(struct sg_room *r, const struct sockaddr_storage *dst)
{
	struct admission *a = &r->adm[r->nadm++ % ADMISSIONS];

	memset(&a->dst, 0, sizeof(a->dst));
	if (dst->ss_family == AF_INET) {
		a->dst.family = 4;
		memcpy(a->dst.addr, &((const struct sockaddr_in *)dst)->sin_addr, 4);
	} else {
		a->dst.family = 6;
		memcpy(a->dst.addr, &((const struct sockaddr_in6 *)dst)->sin6_addr, 16);
		sg_cidr_unmap(&a->dst);
	}
	a->at_ms = wall_ms();
}

int64_t sg_room_began(const struct sg_room *r, const struct sg_cidr *dst, int64_t from_ms,
		      int64_t to_ms)
{
	int64_t best = 0;
	unsigned n = r->nadm < ADMISSIONS ? r->nadm : ADMISSIONS;

	for (unsigned i = 0; i < n; i++) {
		const struct admission *a = &r->adm[i];

		if (a->at_ms >= from_ms && a->at_ms <= to_ms && a->at_ms > best &&
		    a->dst.family == dst->family &&
		    !memcmp(a->dst.addr, dst->addr, dst->family == 4 ? 4 : 16))
			best = a->at_ms;
	}
	return best;
}

static void publish(struct sg_room *r, int g)
{
	struct gqueues *gq = &r->gq[g];
	uint64_t now = now_ms(), oldest = now;

	for (uint32_t i = 0; i < gq->nslots; i++)
		if (gq->q[i].head && gq->q[i].head->since_ms < oldest)
			oldest = gq->q[i].head->since_ms;
	sg_kernel_queue_oldest(r->k, g, (uint32_t)(now - oldest));
}

/* Held connections of a source, for the kernel's wakeups and for status. */
static void count_waiting(struct conn *c, int delta)
{
	sg_kernel_source_waiting(c->owner->k, c->group, c->slot, delta);
}

static void sample(struct sg_room *r, int g, uint32_t ms)
{
	struct sg_wait_pct pct;

	sg_waittimes_add(&r->gq[g].times, ms, &pct);
	sg_kernel_queue_percentiles(r->k, g, pct.p50, pct.p90, pct.p99);
}

/* The head of a (group, source) queue, NULL if none waits. */
static struct conn *head(struct sg_room *r, int g, uint32_t qslot)
{
	return (struct conn *)r->gq[g].q[qslot].head;
}

/* A relay's two fds in the store: NAME.c (the MTA's side), NAME.u (upstream). */
static void relay_names(const struct conn *c, char *cn, char *un)
{
	snprintf(cn, SG_FDNAME_LEN, "%.*s.c", SG_FDNAME_LEN - 3, c->stored);
	snprintf(un, SG_FDNAME_LEN, "%.*s.u", SG_FDNAME_LEN - 3, c->stored);
}

/*
 * The hooks of an earlier daemon's room cgroup, kept in the store while a
 * relay it started lives (its upstream socket is counted there, and only
 * those hooks give the slot back when it closes): let go of them.
 */
static void drop_old_links(struct sg_room *r)
{
	for (int i = 0; i < r->noldlinks; i++) {
		sg_fdstore_drop(r->oldlinks[i].name);
		close(r->oldlinks[i].fd);
	}
	free(r->oldlinks);
	r->oldlinks = NULL;
	r->noldlinks = 0;
}

/* A connection the kernel sent us left its group's queue (or never made it
 * in): its place in the kernel's `waiting` is free for the next connect. */
static void give_back(struct sg_room *r, int g)
{
	sg_kernel_queue_give_back(r->k, g);
}

static void set_accepting(struct sg_room *r, bool on)
{
	if (r->paused == !on || !r->doors)
		return;
	r->paused = !on;
	sg_doors_accepting(r->doors, on);
}

/* A relay ends (or is ending): out of the store, or its copies there
 * would keep its sockets open. */
static void unstore_relay(struct conn *c)
{
	char cn[SG_FDNAME_LEN], un[SG_FDNAME_LEN];

	if (!c->stored[0] || c->state == WAITING)
		return;
	relay_names(c, cn, un);
	sg_fdstore_drop(cn);
	sg_fdstore_drop(un);
	c->stored[0] = '\0';
}

static void relays_add(struct conn *c)
{
	struct sg_room *r = c->owner;

	c->rprev = NULL;
	c->rnext = r->relays;
	if (r->relays)
		r->relays->rprev = c;
	r->relays = c;
}

static void conn_free(struct conn *c)
{
	struct sg_room *r = c->owner;

	if ((c->state == RELAYING || c->state == CLOSING) && !c->taken) {
		if (c->rprev)
			c->rprev->rnext = c->rnext;
		else
			r->relays = c->rnext;
		if (c->rnext)
			c->rnext->rprev = c->rprev;
	}
	if (c->state == CLOSING) {
		r->gq[c->group].closing[c->qslot]--;
		r->gq[c->group].nclosing--;
	}
	unstore_relay(c);
	/* The upstream socket first: its release runs the hooks of the cgroup
	 * it was made in, which must still be attached when it goes. */
	sg_relay_close(&c->io);
	if (c->taken && !--c->owner->taken_relays)
		drop_old_links(c->owner);
	if (c->door)
		sg_door_put(c->door);
	free(c);
	r->nconns--;
	/* A place is free again: accept (and retry after running out of fds). */
	if (r->paused && r->nconns < r->room_max)
		set_accepting(r, true);
}

static void enqueue(struct conn *c)
{
	struct gqueues *gq = &c->owner->gq[c->group];

	sg_waitq_push(&gq->q[c->qslot], &c->w);
	gq->n++;
	if (c->qslot >= gq->nslots)
		gq->nslots = c->qslot + 1;
	count_waiting(c, 1);
	publish(c->owner, c->group);
}

static void unqueue(struct conn *c)
{
	struct gqueues *gq = &c->owner->gq[c->group];
	struct sg_waitq *q = &gq->q[c->qslot];
	uint32_t n = q->n;

	sg_waitq_remove(q, &c->w);
	if (q->n != n) {
		gq->n--;
		count_waiting(c, -1);
		give_back(c->owner, c->group);
	}
	if (c->stored[0]) {        /* out of the line: no longer the store's */
		sg_fdstore_drop(c->stored);
		c->stored[0] = '\0';
	}
	publish(c->owner, c->group);
}

static int on_client(void *arg, uint32_t events)
{
	struct conn *c = arg;

	if (c->state == WAITING) {
		char b;
		ssize_t n = events & (EPOLLHUP | EPOLLERR) ? 0 :
			    recv(c->io.cfd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

		/* An SMTP client sends nothing before the greeting: readable
		 * means it gave up. A client that speaks first (TLS on
		 * connect) keeps its bytes in the socket until we relay. */
		if (n > 0) {
			sg_loop_mod(c->owner->loop, c->io.cfd, 0);
		} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			unqueue(c);
			conn_free(c);
		}
		return 0;
	}
	if (c->state == CONNECTING)
		return 0;
	if (sg_relay_event(&c->io, events, true))
		conn_free(c);
	return 0;
}

static int on_upstream(void *arg, uint32_t events)
{
	struct conn *c = arg;

	if (c->state == CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		getsockopt(c->io.ufd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err || (events & (EPOLLERR | EPOLLHUP))) {
			pr_debug("waiting room: upstream connect for %s: %s", c->owner->name[c->group],
				 strerror(err ? err : ECONNRESET));
			conn_free(c);
			return 0;
		}
		c->state = RELAYING;
		relays_add(c);
		sg_relay_arm(&c->io);
		return 0;
	}
	if (c->state == CLOSING) {
		if (sg_relay_drain(&c->io))
			conn_free(c);
		return 0;
	}
	if (sg_relay_event(&c->io, events, false))
		conn_free(c);
	return 0;
}

/*
 * End an idle relayed session for a waiting connection (sg_relay_end_idle
 * says how); its slot comes back when the provider has closed its side, or
 * after CLOSE_WAIT_MS. docs/design.md: idle sessions.
 */
static void end_idle(struct conn *c)
{
	struct sg_room *r = c->owner;
	struct gqueues *gq = &r->gq[c->group];

	unstore_relay(c);
	pr_debug("waiting room: ended an idle %s session of %s for a waiting one",
		 c->io.tls ? "TLS" : "plaintext", r->name[c->group]);
	sg_relay_end_idle(&c->io);
	c->state = CLOSING;
	c->close_by = now_ms() + CLOSE_WAIT_MS;
	gq->closing[c->qslot]++;
	gq->nclosing++;
	sg_kernel_queue_idle_closed(r->k, c->group);
}

/*
 * While connections wait in a queue: end as many idle relayed sessions of
 * its group and source as it has waiters without a slot on its way (each
 * session ending frees one), longest idle first. Also lets go of endings
 * that outlived CLOSE_WAIT_MS.
 */
static void reap(struct sg_room *r, uint64_t now)
{
	struct conn *c, *next;

	for (c = r->relays; c; c = next) {
		next = c->rnext;
		if (c->state == CLOSING && now >= c->close_by)
			conn_free(c);
	}
	for (int g = 0; g < SG_MAX_GROUPS; g++) {
		struct gqueues *gq = &r->gq[g];

		for (uint32_t i = 0; r->idle_ms[g] && gq->n && i < gq->nslots; i++) {
			while (gq->q[i].n > gq->closing[i]) {
				struct conn *oldest = NULL;

				for (c = r->relays; c; c = c->rnext)
					if (c->group == g && c->qslot == i && c->state == RELAYING &&
					    sg_relay_idle(&c->io, now, r->idle_ms[g]) &&
					    (!oldest || c->io.last_ms < oldest->io.last_ms))
						oldest = c;
				if (!oldest)
					break;
				end_idle(oldest);
			}
		}
	}
}

/*
 * Leave from the address the MTA bound its socket to, if it chose one;
 * the port is still picked at connect() (IP_BIND_ADDRESS_NO_PORT), so
 * binding reserves nothing.
 */
static int bind_source(int fd, const struct conn *c)
{
	int one = 1;

	if (!c->srclen)
		return 0;
	if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) ||
	    bind(fd, (const struct sockaddr *)&c->src, c->srclen))
		return -errno;
	return 0;
}

/*
 * A relay goes into the fd store, both sides, as it starts, so that a crash
 * does not cut the session: the next daemon relays on (SMTP is lockstep, so
 * the relay's buffers are empty nearly always; bytes in them are lost).
 */
static void keep_relay(struct conn *c)
{
	struct sg_room *r = c->owner;
	char cn[SG_FDNAME_LEN], un[SG_FDNAME_LEN];

	if (!r->stored)
		return;
	snprintf(c->stored, sizeof(c->stored), "r.%d.%lu.%d.%u", c->group,
		 (unsigned long)c->door->ino, (int)getpid(), ++r->nrelays);
	relay_names(c, cn, un);
	if (sg_fdstore_put(c->io.cfd, cn) || sg_fdstore_put(c->io.ufd, un)) {
		sg_fdstore_drop(cn);
		c->stored[0] = '\0';
	}
}

/* Connect the head of a (group, source) queue upstream while the kernel admits. */
static void admit(struct sg_room *r, int g, uint32_t qslot)
{
	uint32_t mark = SG_ROOM_MARK;
	struct conn *c;

	while ((c = head(r, g, qslot))) {
		/* Made in the client's namespace: its routes, NAT and source. */
		int fd = sg_netns_socket(c->door->nsfd, c->dst.ss_family,
					 SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC);
		int err;

		if (fd < 0)
			return;
		setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark));
		if ((err = bind_source(fd, c))) {
			/* Never send from an address the MTA did not choose. */
			close(fd);
			pr_warn("waiting room: %s: cannot bind the MTA's source address: %s",
				r->name[g], strerror(-err));
			unqueue(c);
			conn_free(c);
			continue;
		}
		if (connect(fd, (struct sockaddr *)&c->dst, c->dstlen) && errno != EINPROGRESS) {
			err = errno;
			close(fd);
			if (err == EPERM)
				return;            /* no free slot: keep waiting */
			pr_debug("waiting room: upstream connect for %s: %s", r->name[g], strerror(err));
			unqueue(c);
			conn_free(c);
			continue;
		}
		unqueue(c);
		sample(r, g, (uint32_t)(now_ms() - c->w.since_ms));
		admitted(r, &c->dst);
		c->io.ufd = fd;
		c->state = CONNECTING;
		if (sg_loop_add(r->loop, fd, EPOLLOUT, on_upstream, c)) {
			conn_free(c);
			continue;
		}
		sg_loop_mod(r->loop, c->io.cfd, EPOLLRDHUP);
		keep_relay(c);
	}
}

/* Answer a waiting connection smtpgov's own 421 and let it go. */
static void turn_away(struct conn *c, unsigned waited_s)
{
	struct sg_room *r = c->owner;
	char reply[256];
	int n = snprintf(reply, sizeof(reply), SG_ROOM_TIMEOUT_REPLY, waited_s, r->name[c->group]);

	if (write(c->io.cfd, reply, (size_t)n) != n) {
		/* the client is gone; nothing to tell */
	}
	unqueue(c);
	conn_free(c);
}

static void expire(struct sg_room *r, int g, uint32_t qslot, uint64_t now)
{
	struct conn *c;

	while ((c = head(r, g, qslot)) && now - c->w.since_ms >= (uint64_t)r->wait_s[g] * 1000) {
		sg_kernel_queue_timeout(r->k, g);
		turn_away(c, r->wait_s[g]);
	}
}

static void set_ticking(struct sg_room *r)
{
	bool want = r->paused;
	struct itimerspec its = { 0 };

	/* Tick while anybody waits, here or on the way (the kernel's count). */
	for (int g = 0; g < SG_MAX_GROUPS && !want; g++)
		want = r->gq[g].n > 0 || r->gq[g].nclosing > 0 ||
		       sg_kernel_queue_waiting(r->k, g);
	if (want == r->ticking)
		return;
	if (want)
		its.it_interval.tv_nsec = its.it_value.tv_nsec = TICK_MS * 1000000L;
	timerfd_settime(r->tick_fd, 0, &its, NULL);
	r->ticking = want;
}

/*
 * A place the kernel reserved for a connect that never reached us (its
 * handshake with a door failed and the client gave up) would stay counted
 * in `waiting` for good. When nothing of the group is held, none is in the
 * accept queues, and `waiting` stood still for REPAIR_TICKS, what it counts
 * never arrives: give it back, and say so.
 */
#define REPAIR_TICKS 5

static void repair(struct sg_room *r, int g, bool idle)
{
	uint32_t v = sg_kernel_queue_waiting(r->k, g), held = r->gq[g].n;

	if (!idle || held || !v || v != r->stale[g]) {
		r->stale[g] = held ? 0 : v;
		r->stale_ticks[g] = 0;
		return;
	}
	if (++r->stale_ticks[g] < REPAIR_TICKS)
		return;
	if (sg_kernel_queue_unclaimed(r->k, g, v))
		pr_warn("waiting room: %s: %u places reserved for connects that never arrived: "
			"given back", r->name[g], v);
	r->stale[g] = r->stale_ticks[g] = 0;
}

/* While anybody waits: expire, admit (a cap may have been raised), accept
 * again if we had to stop, repair `waiting`, and end idle sessions that
 * waiters need. */
static int on_tick(void *arg, uint32_t events)
{
	struct sg_room *r = arg;
	uint64_t ticks, now = now_ms();
	bool idle;

	(void)events;
	if (read(r->tick_fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		return 0;
	if (r->paused && r->nconns < r->room_max)
		set_accepting(r, true);
	idle = !r->paused && !sg_doors_backlog(r->doors);
	reap(r, now);
	for (int g = 0; g < SG_MAX_GROUPS; g++) {
		struct gqueues *gq = &r->gq[g];

		repair(r, g, idle);

		for (uint32_t i = 0; i < gq->nslots && gq->n; i++) {
			if (!gq->q[i].n)
				continue;
			expire(r, g, i, now);
			admit(r, g, i);
		}
		if (gq->nslots)
			publish(r, g);
	}
	set_ticking(r);
	return 0;
}

static void on_wakeup(void *ctx, const struct sg_wakeup *w)
{
	struct sg_room *r = ctx;

	if (w->group < SG_MAX_GROUPS && w->slot < SG_MAX_SOURCES)
		admit(r, (int)w->group, w->slot);
	else if (w->group == SG_WAKE_NO_DOOR)
		sg_doors_kick(r->doors);
}

static int on_wake_fd(void *arg, uint32_t events)
{
	struct sg_room *r = arg;

	(void)events;
	sg_kernel_ring_consume(r->wake);
	set_ticking(r);
	return 0;
}

static void pending_key(const struct sockaddr_storage *peer, uint64_t netns,
			struct sg_pending_key *key)
{
	memset(key, 0, sizeof(*key));
	key->netns = netns;
	if (peer->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)peer;

		sg_addr16_from_v4(key->addr, &a->sin_addr);
		key->port = ntohs(a->sin_port);
	} else {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)peer;

		memcpy(key->addr, &a->sin6_addr, 16);
		key->port = ntohs(a->sin6_port);
	}
}

/* A 16-byte address (IPv4 mapped) and port as a socket address. */
static socklen_t to_sockaddr(const uint8_t addr[16], uint16_t port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (sg_addr16_is_v4(addr)) {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;

		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		memcpy(&a->sin_addr, addr + 12, 4);
		return sizeof(*a);
	}
	struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

	a->sin6_family = AF_INET6;
	a->sin6_port = htons(port);
	memcpy(&a->sin6_addr, addr, 16);
	return sizeof(*a);
}

/* Where the held connection goes, and from which address it must leave. */
static void pending_addrs(const struct sg_pending *p, struct conn *c)
{
	static const uint8_t any[16];

	c->dstlen = to_sockaddr(p->addr, p->port, &c->dst);
	c->srclen = 0;
	if (memcmp(p->src, any, 16)) {
		c->srclen = to_sockaddr(p->src, 0, &c->src);
		/* An upstream socket has the destination's family (v4 for a
		 * v4-mapped one); a source of the other family cannot be. */
		if (c->src.ss_family != c->dst.ss_family)
			c->srclen = 0;
	}
}

/* A held connection (owner, cfd, since_ms set) that came through door d
 * goes to the end of its line. */
static bool hold(struct sg_room *r, struct conn *c, struct sg_door *d, const struct sg_pending *p)
{
	c->group = (int)p->group;
	c->slot = p->slot;
	/* One queue per source where the cap is per source, else one. */
	c->qslot = r->k->groups[p->group].flags & SG_GROUP_PER_SOURCE ? p->slot : 0;
	c->door = d;
	sg_door_get(d);
	pending_addrs(p, c);
	if (sg_loop_add(r->loop, c->io.cfd, EPOLLIN | EPOLLRDHUP, on_client, c)) {
		close(c->io.cfd);
		c->io.cfd = -1;
		conn_free(c);
		return false;
	}
	enqueue(c);
	return true;
}

/*
 * A waiting connection goes into the fd store under a name that says its
 * door's namespace and the kernel's record of it in hex (where it was
 * going, from which source, its connect time), so that the next daemon
 * puts it back in line: "w.INO.HEX".
 */
static void keep_waiter(struct conn *c, const struct sg_pending *p)
{
	const uint8_t *b = (const uint8_t *)p;
	char *s = c->stored;

	if (!c->owner->stored)
		return;
	s += sprintf(s, "w.%lu.", (unsigned long)c->door->ino);
	for (size_t i = 0; i < sizeof(*p); i++)
		s += sprintf(s, "%02x", b[i]);
	if (sg_fdstore_put(c->io.cfd, c->stored))
		c->stored[0] = '\0';
}

/* keep_waiter's name back to the namespace and the kernel's record. */
static bool waiter_record(const char *name, unsigned long *ino, struct sg_pending *p)
{
	uint8_t *b = (uint8_t *)p;
	int n = 0;

	if (sscanf(name, "w.%lu.%n", ino, &n) != 1 || !n || strlen(name + n) != 2 * sizeof(*p))
		return false;
	for (size_t i = 0; i < sizeof(*p); i++) {
		unsigned v;

		if (sscanf(name + n + 2 * i, "%2x", &v) != 1)
			return false;
		b[i] = (uint8_t)v;
	}
	return p->group < SG_MAX_GROUPS && p->slot < SG_MAX_SOURCES;
}

static int cmp_since(const void *a, const void *b)
{
	const struct conn *x = *(struct conn *const *)a, *y = *(struct conn *const *)b;

	return (x->w.since_ms > y->w.since_ms) - (x->w.since_ms < y->w.since_ms);
}

/*
 * One side of a relay the previous daemon kept ("r.G.INO.PID.N.c" or ".u"):
 * with its other side (found in v), the relay goes on; alone, it ends.
 * True if v[i] was a relay's.
 */
static bool take_relay(struct sg_room *r, struct sg_fd_given *v, int n, int i)
{
	const char *name = v[i].name;
	size_t len = strlen(name);
	unsigned long ino;
	struct conn *c;
	int g, other = -1;
	char want;

	if (strncmp(name, "r.", 2) || len < 5 || name[len - 2] != '.' ||
	    (name[len - 1] != 'c' && name[len - 1] != 'u') ||
	    sscanf(name, "r.%d.%lu.", &g, &ino) != 2 || g < 0 || g >= SG_MAX_GROUPS)
		return false;
	want = name[len - 1] == 'c' ? 'u' : 'c';
	for (int j = 0; j < n; j++)
		if (v[j].fd >= 0 && !strncmp(v[j].name, name, len - 1) && v[j].name[len - 1] == want &&
		    !v[j].name[len])
			other = j;
	if (want == 'c' && other >= 0)
		return true;                      /* taken with its .c */
	if (other < 0 || !(c = calloc(1, sizeof(*c)))) {
		close(v[i].fd);
		sg_fdstore_drop(name);
		v[i].fd = -1;
		return true;
	}
	c->owner = r;
	c->group = g;
	c->state = RELAYING;
	r->nconns++;
	sg_relay_init(&c->io, r->loop, v[i].fd);
	c->io.ufd = v[other].fd;
	v[i].fd = v[other].fd = -1;
	if ((c->door = sg_doors_find(r->doors, ino)))
		sg_door_get(c->door);
	snprintf(c->stored, sizeof(c->stored), "%.*s", (int)(len - 2), name);
	if (sg_loop_add(r->loop, c->io.cfd, 0, on_client, c) ||
	    sg_loop_add(r->loop, c->io.ufd, 0, on_upstream, c)) {
		conn_free(c);
		return true;
	}
	c->taken = true;
	r->taken_relays++;
	sg_relay_arm(&c->io);
	return true;
}

/*
 * What the previous daemon left in the fd store besides its doors (which
 * sg_doors_start took): the connections it held, back in line in the order
 * they connected; the sessions it relayed, relayed on; its room cgroup's
 * hooks, kept while those relays live. Anything else is closed. Returns
 * how many waiting connections came back.
 */
static int take_over(struct sg_room *r, struct sg_fd_given *v, int n)
{
	struct conn **w = n > 0 ? calloc((size_t)n, sizeof(*w)) : NULL;
	struct sg_pending p;
	unsigned long ino;
	int nw = 0;

	for (int i = 0; i < n; i++) {
		if (v[i].fd < 0 || take_relay(r, v, n, i))
			continue;
		if (!strncmp(v[i].name, "rlink.", 6) &&
		    (r->oldlinks = reallocarray(r->oldlinks, (size_t)r->noldlinks + 1,
						sizeof(*r->oldlinks)))) {
			r->oldlinks[r->noldlinks++] = v[i];
		} else if (w && waiter_record(v[i].name, &ino, &p) && sg_doors_find(r->doors, ino) &&
			   (w[nw] = calloc(1, sizeof(**w)))) {
			sg_relay_init(&w[nw]->io, r->loop, v[i].fd);
			w[nw]->w.since_ms = p.ts_ns / 1000000;   /* the kernel's clock is ours */
			snprintf(w[nw]->stored, sizeof(w[nw]->stored), "%s", v[i].name);
			nw++;
		} else {
			close(v[i].fd);
			sg_fdstore_drop(v[i].name);
		}
		v[i].fd = -1;
	}
	if (nw)
		qsort(w, (size_t)nw, sizeof(*w), cmp_since);   /* w may be NULL */
	for (int i = 0; i < nw; i++) {
		waiter_record(w[i]->stored, &ino, &p);
		w[i]->owner = r;
		r->nconns++;
		hold(r, w[i], sg_doors_find(r->doors, ino), &p);
	}
	free(w);
	if (!r->taken_relays)
		drop_old_links(r);
	return nw;
}

/* accept() failed for want of descriptors (or memory): stop accepting
 * until a connection ends or the next tick, instead of spinning on a
 * listener that stays readable; say so once a minute. */
static void out_of_fds(struct sg_room *r, int err)
{
	uint64_t now = now_ms();

	set_accepting(r, false);
	if (!r->fd_warned_ms || now - r->fd_warned_ms >= 60000) {
		pr_warn("waiting room: cannot accept: %s (holding %u connections); the rest wait "
			"in the accept queues", strerror(err), r->nconns);
		r->fd_warned_ms = now;
	}
}

static void on_accept(void *arg, struct sg_door *d)
{
	struct sg_room *r = arg;
	int lfd = -1;

	/* A door's two listeners share this handler: try each. */
	for (int i = 0; i < 2; i++) {
		lfd = i ? d->lfd6 : d->lfd4;
		if (lfd < 0)
			continue;
		for (;;) {
			struct sockaddr_storage peer;
			socklen_t plen = sizeof(peer);
			struct sg_pending_key key;
			struct sg_pending p;
			struct conn *c;
			int fd;

			if (r->nconns >= r->room_max) {
				/* The rest waits in the accept queues (each has its
				 * place in `waiting`, so they are bounded too). */
				set_accepting(r, false);
				break;
			}
			fd = accept4(lfd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd < 0) {
				if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
				    errno == ENOMEM)
					out_of_fds(r, errno);
				break;
			}
			pending_key(&peer, d->cookie, &key);
			if (sg_kernel_pending_take(r->k, &key, &p) ||
			    p.group >= SG_MAX_GROUPS || p.slot >= SG_MAX_SOURCES) {
				/* Not sent by the kernel: nobody else may use us as a relay. */
				close(fd);
				continue;
			}
			if (!(c = calloc(1, sizeof(*c)))) {
				give_back(r, (int)p.group);
				close(fd);
				continue;
			}
			r->nconns++;
			c->owner = r;
			sg_relay_init(&c->io, r->loop, fd);
			c->w.since_ms = now_ms();
			if (!hold(r, c, d, &p)) {
				give_back(r, (int)p.group);
				continue;
			}
			keep_waiter(c, &p);
			admit(r, c->group, c->qslot);
		}
	}
	reap(r, now_ms());
	set_ticking(r);
}

/* Remove the (empty) room cgroups of daemons that were killed. */
static void sweep_rooms(const char *parent)
{
	DIR *dir = opendir(parent);
	struct dirent *de;

	if (!dir)
		return;
	while ((de = readdir(dir))) {
		char path[PATH_MAX];
		int pid;

		if (sscanf(de->d_name, "smtpgov-room.%d", &pid) != 1 || pid == getpid() ||
		    kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		snprintf(path, sizeof(path), "%s/%s", parent, de->d_name);
		if (!rmdir(path))
			pr_info("removed %s, left by a daemon that was killed", path);
	}
	closedir(dir);
}

/*
 * Govern our own upstream connects: unless we already run inside the
 * governed cgroup, move into a cgroup of our own below the one we were
 * started in (the unit's cgroup under systemd) and attach the hooks there.
 */
static int govern_self(struct sg_room *r)
{
	char err[512];
	int ret;

	if ((ret = sg_pid_cgroup(getpid(), r->parent, sizeof(r->parent), err, sizeof(err)))) {
		pr_err("waiting room: %s", err);
		r->parent[0] = '\0';
		return ret;
	}
	if (sg_cgroup_within(r->parent, r->k->cgroup_path))
		return 0;   /* inside the governed tree already */
	sweep_rooms(r->parent);
	snprintf(r->cgroup, sizeof(r->cgroup), "%s/smtpgov-room.%d", r->parent, getpid());
	if ((mkdir(r->cgroup, 0755) && errno != EEXIST && (ret = -errno)) ||
	    (ret = sg_cgroup_join(r->cgroup))) {
		pr_err("waiting room: cgroup %s: %s", r->cgroup, strerror(-ret));
		return ret;
	}
	return sg_kernel_attach_room(r->k, r->cgroup, &r->links);   /* logs its error */
}

/* Descriptors the daemon needs besides the room's: maps, links, epoll,
 * inotify, timers, the log, the state file, a door per namespace. */
#define FD_RESERVE 128

/*
 * How many connections the room may hold at once: room_max, or by default
 * every queueing group's queue_max and max_cap (a group never has more in
 * the room). Each takes up to two descriptors: raise the soft limit as far
 * as needed (the unit sets LimitNOFILE=), hold fewer when the hard limit
 * is lower, and say so.
 */
static uint32_t room_bound(const struct sg_config *cfg)
{
	uint64_t want = cfg->room_max, lim;
	struct rlimit rl;

	if (!want)
		for (unsigned i = 0; i < cfg->ngroups; i++)
			if (cfg->groups[i].verdict == SG_VERDICT_QUEUE)
				want += cfg->groups[i].queue_max + cfg->groups[i].max_cap;
	if (!want)
		want = 1;
	if (getrlimit(RLIMIT_NOFILE, &rl))
		return (uint32_t)want;
	lim = 2 * want + FD_RESERVE;
	if (rl.rlim_cur < lim) {
		struct rlimit nl = { .rlim_cur = rl.rlim_max < lim ? rl.rlim_max : lim,
				     .rlim_max = rl.rlim_max };

		if (nl.rlim_cur > rl.rlim_cur && !setrlimit(RLIMIT_NOFILE, &nl)) {
			pr_info("open-file limit raised from %llu to %llu", (unsigned long long)rl.rlim_cur,
				(unsigned long long)nl.rlim_cur);
			rl.rlim_cur = nl.rlim_cur;
		}
	}
	if (rl.rlim_cur < lim) {
		uint64_t fit = rl.rlim_cur > FD_RESERVE + 2 ? (rl.rlim_cur - FD_RESERVE) / 2 : 1;

		pr_warn("open-file limit %llu (hard limit %llu) is below the %llu that %llu connections in "
			"the waiting room need: it holds at most %llu at once, the rest wait in its "
			"accept queues (raise LimitNOFILE= or ulimit -n)",
			(unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
			(unsigned long long)lim, (unsigned long long)want, (unsigned long long)fit);
		want = fit;
	}
	return (uint32_t)want;
}

int sg_room_start(struct sg_room **out, struct sg_kernel *k, const struct sg_config *cfg,
		  struct sg_loop *loop)
{
	struct sg_room *r = calloc(1, sizeof(*r));
	struct sg_fd_given *given = NULL;
	const char *what = NULL;      /* the step that failed, if it did not say so */
	int ret, ngiven = 0, held = 0;

	if (!r || !(r->gq = calloc(SG_MAX_GROUPS, sizeof(*r->gq)))) {
		free(r);
		return -ENOMEM;
	}
	r->k = k;
	r->cfg = cfg;
	r->loop = loop;
	r->tick_fd = -1;
	r->room_max = room_bound(cfg);
	for (int g = 0; g < SG_MAX_GROUPS; g++) {
		memcpy(r->name[g], k->groups[g].name, SG_NAME_LEN);
		int ci = sg_config_group(cfg, r->name[g]);

		r->wait_s[g] = ci >= 0 ? cfg->groups[ci].queue_wait : 120;
		r->idle_ms[g] = ci >= 0 ? cfg->groups[ci].idle_close : 0;
	}
	sg_kernel_sources_waiting_clear(k);
	if ((ret = govern_self(r)))
		goto fail;
	what = "timer";
	r->tick_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (r->tick_fd < 0) {
		ret = -errno;
		goto fail;
	}
	what = "the kernel's wakeups";
	if ((ret = sg_kernel_wakeups(k, on_wakeup, r, &r->wake)))
		goto fail;
	sg_kernel_ring_consume(r->wake);     /* stale wakeups of a previous daemon */
	if ((ret = sg_loop_add(loop, r->tick_fd, EPOLLIN, on_tick, r)) ||
	    (ret = sg_loop_add(loop, sg_kernel_ring_fd(r->wake), EPOLLIN, on_wake_fd, r)))
		goto fail;
	/* Open the doors last: a listener in each namespace, then the port;
	 * those the previous daemon left in the fd store, if it did. */
	ngiven = sg_fdstore_take(&given);
	/* The kernel's `waiting` counts the connections held and on their way.
	 * Taking over, they are still there (the ones that are not give their
	 * places back through repair()); else nothing is. */
	for (int g = 0; !ngiven && g < SG_MAX_GROUPS; g++)
		sg_kernel_queue_clear(k, g);
	what = NULL;
	if ((ret = sg_doors_start(&r->doors, k, loop, on_accept, r, &r->port, given, ngiven)))
		goto fail;            /* logs its error */
	r->stored = sg_doors_stored(r->doors);
	held = take_over(r, given, ngiven);
	if (ngiven)
		pr_info("waiting room: took over the previous daemon's doors, %d waiting connections and %u sessions being relayed",
			held, r->taken_relays);
	/* Our room cgroup's hooks outlive us in the store, for the relays. */
	int lfds[3], nl = r->stored ? sg_kernel_room_link_fds(r->links, lfds) : 0;

	for (int i = 0; i < nl; i++) {
		char name[SG_FDNAME_LEN];

		snprintf(name, sizeof(name), "rlink.%d.%d", (int)getpid(), i);
		sg_fdstore_put(lfds[i], name);
	}
	what = "settings";
	if ((ret = sg_kernel_room_port(k, r->port)))
		goto fail;
	pr_info("waiting room on 127.0.0.1 and ::1 port %u, and in each network namespace of the "
		"governed processes (checked every %d s)%s%s%s", r->port, SG_DOORS_SCAN_MS / 1000,
		r->cgroup[0] ? ", its connects governed in " : "", r->cgroup,
		r->stored ? "; kept in the fd store across restarts" : "");
	/* Memory: a held connection is its struct; one admitted upstream adds
	 * its relay buffers (and no more are admitted than the caps allow). */
	pr_info("waiting room: at most %u connections at once (room_max), %zu bytes each while "
		"held, %zu while relaying: at most %llu KiB", r->room_max, sizeof(struct conn),
		sizeof(struct conn) + sizeof(struct sg_relay_bufs),
		(unsigned long long)r->room_max * (sizeof(struct conn) + sizeof(struct sg_relay_bufs)) /
		1024);
	for (int g = 0; g < SG_MAX_GROUPS; g++)
		for (uint32_t i = 0; i < r->gq[g].nslots; i++)
			admit(r, g, i);
	set_ticking(r);
	free(given);
	*out = r;
	return 0;
fail:
	if (what)
		pr_err("waiting room: %s: %s", what, strerror(-ret));
	for (int i = 0; i < ngiven; i++)
		if (given[i].fd >= 0)
			close(given[i].fd);
	free(given);
	sg_room_stop(r);
	return ret;
}

void sg_room_stop(struct sg_room *r)
{
	if (!r)
		return;
	/* Close the doors first: from now on over-cap connects are refused.
	 * Unless the fd store keeps them (in `room`, queueing in their
	 * backlog) and the waiting connections for the next daemon: then the
	 * doors stay open and the line as it is. */
	if (r->stored) {
		sg_doors_leave(r->doors);
	} else {
		sg_doors_stop(r->doors);
		sg_kernel_room_port_clear(r->k, r->port);
	}
	for (int g = 0; r->gq && g < SG_MAX_GROUPS; g++) {
		for (uint32_t i = 0; i < r->gq[g].nslots; i++) {
			struct conn *c;

			while ((c = head(r, g, i))) {
				if (!r->stored) {
					turn_away(c, (unsigned)((now_ms() - c->w.since_ms) / 1000));
					continue;
				}
				r->gq[g].q[i].head = c->w.next;
				c->stored[0] = '\0';   /* it stays in the store */
				conn_free(c);
			}
		}
		if (!r->stored)
			sg_kernel_queue_clear(r->k, g);
	}
	free(r->gq);
	sg_loop_drop(r->loop, &r->tick_fd);
	if (r->wake) {
		sg_loop_del(r->loop, sg_kernel_ring_fd(r->wake));
		sg_kernel_ring_free(r->wake);
	}
	sg_kernel_detach_room(r->links);
	if (r->cgroup[0] && !sg_cgroup_join(r->parent))
		rmdir(r->cgroup);
	free(r);
}
