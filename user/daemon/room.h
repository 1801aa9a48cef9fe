/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The waiting room (queue verdict): holds over-cap connects that the kernel
 * sent to its loopback listener, FIFO per group, connects each upstream the
 * moment the kernel admits it (a slot freed: a wakeup from the release hook,
 * or a cap raised), then relays bytes both ways until either side is done.
 * Its upstream sockets pass through the same hooks, so the kernel's counts
 * stay the one source of truth.
 */
#ifndef SG_ROOM_H
#define SG_ROOM_H

#include "config.h"
#include "kernel.h"
#include "loop.h"

struct sg_room;

/* Listen, register in the kernel's `room` map, join the loop. */
int sg_room_start(struct sg_room **out, struct sg_kernel *k, const struct sg_config *cfg,
		  struct sg_loop *loop);
/* Answer every waiter 421, stop listening, detach. NULL is fine. */
void sg_room_stop(struct sg_room *r);

/*
 * When did the room connect a session to dst upstream, within [from_ms,
 * to_ms] (wall clock, ms)? The latest such connect, 0 if none. A session
 * held in the room began, for the provider, then, not when the MTA
 * connected (which is what the MTA's log tells).
 */
struct sg_cidr;
int64_t sg_room_began(const struct sg_room *r, const struct sg_cidr *dst, int64_t from_ms,
		      int64_t to_ms);

/* Reply to a connection held past queue_wait (the parser knows it is ours). */
#define SG_ROOM_TIMEOUT_REPLY \
	"421 4.4.5 smtpgov: held this connection %us waiting for a free %s slot; try again later\r\n"

#endif
