/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The waiting room's doors: a listener pair (127.0.0.1 and ::1, one port)
 * in our own network namespace and in each namespace of the governed
 * cgroup's processes (containers), each in the kernel's `room` sockhash
 * under its namespace's cookie, so that an over-cap connect is sent to
 * the room only where a door listens. A periodic scan (SG_DOORS_SCAN_MS),
 * and one SG_DOORS_KICK_MS after the kernel meets a namespace without a
 * door, opens doors in namespaces that appeared and closes those of
 * namespaces whose processes left. A door outlives its namespace's scan while a
 * connection that came through it is still relayed (reference count).
 */
#ifndef SG_DOORS_H
#define SG_DOORS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include "fdstore.h"
#include "kernel.h"
#include "loop.h"

#define SG_DOORS_SCAN_MS 2000
#define SG_DOORS_KICK_MS 20

struct sg_doors;

struct sg_door {
	ino_t ino;             /* the namespace (nsfs inode) */
	int nsfd;              /* open namespace, -1 for our own */
	int lfd4, lfd6;        /* listeners, -1 when closed */
	uint16_t port;
	uint64_t cookie;       /* the namespace's cookie: key of `room` and `pending` */
	unsigned refs;         /* the set's while open, plus one per connection */
	bool failed;           /* could not listen there (said once) */
	bool stored;           /* its listeners are in the fd store */
	struct sg_doors *set;
};

/* A listener of door d is readable: accept from d->lfd4 and d->lfd6. */
typedef void (*sg_door_fn)(void *ctx, struct sg_door *d);

/*
 * Open the door in our own namespace (its port is returned in *port) and
 * the doors of the governed cgroup's namespaces, then keep scanning. With
 * an fd store (fdstore.h) each door's listeners go there ("door4.INO",
 * "door6.INO"), and a door whose listeners the previous daemon left in
 * given (taken: their fd set to -1) opens on them, still in `room`, its
 * backlog intact.
 */
int sg_doors_start(struct sg_doors **out, struct sg_kernel *k, struct sg_loop *loop,
		   sg_door_fn on_accept, void *ctx, uint16_t *port,
		   struct sg_fd_given *given, int ngiven);
/* Are our own door's listeners in the fd store (a restart keeps the room)? */
bool sg_doors_stored(const struct sg_doors *ds);
/* The open door of network namespace ino, or NULL. */
struct sg_door *sg_doors_find(struct sg_doors *ds, unsigned long ino);
/* Stop for a restart: stored doors stay in `room` and in the store. */
void sg_doors_leave(struct sg_doors *ds);
/* The kernel met a namespace without a door: scan soon (bursts coalesce). */
void sg_doors_kick(struct sg_doors *ds);
/* Close every door (leaving `room`); connections keep theirs until put. */
void sg_doors_stop(struct sg_doors *ds);

/* Poll the listeners or not: off while the room is full or out of
 * descriptors (what arrives waits in the accept queues). */
void sg_doors_accepting(struct sg_doors *ds, bool on);
/* Connections in all the doors' accept queues. */
uint32_t sg_doors_backlog(const struct sg_doors *ds);

void sg_door_get(struct sg_door *d);
void sg_door_put(struct sg_door *d);

#endif
