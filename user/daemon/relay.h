/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * A relay between two non-blocking sockets in the daemon's loop: one buffer
 * per direction, a finished direction passed on as a half-close, and the
 * session over when both directions are (or a write fails).
 */
#ifndef SG_RELAY_H
#define SG_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "loop.h"

#define SG_RELAY_BUF 16384

struct sg_relay_buf {
	char data[SG_RELAY_BUF];
	size_t off, len;
	bool eof;              /* the reading side ended */
	bool shut;             /* the writing side was shut down */
};

struct sg_relay_bufs {
	struct sg_relay_buf up, down;   /* client->upstream, upstream->client */
};

/* The buffers come with the first arm or event, so that a connection that
 * only waits costs a few bytes, not 32 KiB (a flood holds thousands). */
struct sg_relay {
	struct sg_loop *loop;
	int cfd, ufd;          /* client (MTA) and upstream; -1 when closed */
	struct sg_relay_bufs *b;   /* NULL until relaying */
};

void sg_relay_init(struct sg_relay *r, struct sg_loop *loop, int cfd);

/* Set each side's epoll interest from the buffers. */
void sg_relay_arm(struct sg_relay *r);

/* Move bytes after an event on the client (or upstream) side.
 * Returns true when the session is over: sg_relay_close it. */
bool sg_relay_event(struct sg_relay *r, uint32_t events, bool client);

/* Both sides out of the loop and closed, the buffers freed. */
void sg_relay_close(struct sg_relay *r);

#endif
