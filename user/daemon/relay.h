/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * A relay between two non-blocking sockets in the daemon's loop: one buffer
 * per direction, a finished direction passed on as a half-close, and the
 * session over when both directions are (or a write fails). It follows the
 * SMTP dialogue just enough to tell when a session is idle between
 * transactions, and can end it then (docs/design.md: idle sessions).
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
	/* What the idle rule sees of the session (sg_relay_idle). */
	uint64_t last_ms;      /* last byte relayed either way (sg_relay_now_ms) */
	bool down_last;        /* that byte came from the provider */
	bool boundary;         /* plaintext: the client's last line ended a
	                        * transaction (the body's "." or RSET) */
	bool body;             /* plaintext: the client is sending a message body */
	bool tls;              /* no longer plaintext (STARTTLS, or TLS from the start) */
	bool started;          /* the client has sent something */
	uint8_t linelen;
	char line[12];         /* start of the client's current line */
};

/* A TLS session's transaction boundaries are hidden: it is taken for idle
 * only after this long at least. */
#define SG_RELAY_TLS_IDLE_MS 500

/* Reply to the MTA when an idle session is ended for a waiting one. */
#define SG_RELAY_IDLE_REPLY "421 4.4.2 smtpgov: idle session closed, its slot is wanted\r\n"

uint64_t sg_relay_now_ms(void);   /* CLOCK_MONOTONIC */

void sg_relay_init(struct sg_relay *r, struct sg_loop *loop, int cfd);

/*
 * Idle since the provider's last reply for idle_ms or more, with nothing
 * in flight: a plaintext session only between transactions (where Postfix
 * leaves a session it caches, and which it leaves only with RSET), a TLS
 * one after at least SG_RELAY_TLS_IDLE_MS.
 */
bool sg_relay_idle(const struct sg_relay *r, uint64_t now_ms, uint32_t idle_ms);

/*
 * End an idle session the way a server that drops an idle client does:
 * the client gets 421 (plaintext) and our FIN, its side closed; the
 * provider gets QUIT (plaintext) and our FIN, its side left open for
 * sg_relay_drain until it closes.
 */
void sg_relay_end_idle(struct sg_relay *r);

/* After sg_relay_end_idle: read and drop what the provider still says.
 * True at its EOF (or an error): sg_relay_close it. */
bool sg_relay_drain(struct sg_relay *r);

/* Set each side's epoll interest from the buffers. */
void sg_relay_arm(struct sg_relay *r);

/* Move bytes after an event on the client (or upstream) side.
 * Returns true when the session is over: sg_relay_close it. */
bool sg_relay_event(struct sg_relay *r, uint32_t events, bool client);

/* Both sides out of the loop and closed, the buffers freed. */
void sg_relay_close(struct sg_relay *r);

#endif
