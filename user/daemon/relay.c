// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* A two-socket relay with half-close (see relay.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "relay.h"

uint64_t sg_relay_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void sg_relay_init(struct sg_relay *r, struct sg_loop *loop, int cfd)
{
	r->loop = loop;
	r->cfd = cfd;
	r->ufd = -1;
	r->b = NULL;
	r->last_ms = sg_relay_now_ms();
	r->down_last = r->boundary = r->body = r->tls = r->started = false;
	r->linelen = 0;
}

/*
 * Follow the client's side of a plaintext session line by line, enough to
 * know when it stands between transactions: its last line ended a message
 * body (".") or was RSET. A DATA that the provider refuses leaves `body`
 * set until the next "." line: the session is then never taken for idle,
 * which is the safe way to be wrong.
 */
static void watch_client(struct sg_relay *r, const char *p, size_t n)
{
	if (!r->started && n) {
		r->started = true;
		r->tls = (uint8_t)p[0] == 0x16;   /* a TLS record: TLS on connect */
	}
	for (size_t i = 0; i < n && !r->tls; i++) {
		if (p[i] != '\n') {
			r->boundary = false;
			if (r->linelen < sizeof(r->line) - 1)
				r->line[r->linelen++] = p[i];
			continue;
		}
		if (r->linelen && r->line[r->linelen - 1] == '\r')
			r->linelen--;
		r->line[r->linelen] = '\0';
		r->linelen = 0;
		if (r->body) {
			r->body = strcmp(r->line, ".") != 0;
			r->boundary = !r->body;
		} else if (!strcasecmp(r->line, "DATA")) {
			r->body = true;
		} else if (!strcasecmp(r->line, "RSET")) {
			r->boundary = true;
		} else if (!strcasecmp(r->line, "STARTTLS")) {
			r->tls = true;       /* what follows is TLS (or, refused, plain) */
		}
	}
}

bool sg_relay_idle(const struct sg_relay *r, uint64_t now_ms, uint32_t idle_ms)
{
	const struct sg_relay_bufs *b = r->b;

	if (!b || r->cfd < 0 || r->ufd < 0 || !r->down_last || b->up.len || b->down.len ||
	    b->up.eof || b->down.eof)
		return false;
	if (r->tls)
		return now_ms - r->last_ms >= (idle_ms > SG_RELAY_TLS_IDLE_MS ? idle_ms :
					       SG_RELAY_TLS_IDLE_MS);
	return r->boundary && now_ms - r->last_ms >= idle_ms;
}

void sg_relay_end_idle(struct sg_relay *r)
{
	static const char quit[] = "QUIT\r\n";

	/* Postfix reads the 421 in answer to the RSET it sends before it
	 * reuses a cached session, drops that session and connects anew. */
	if (!r->tls && write(r->cfd, SG_RELAY_IDLE_REPLY, sizeof(SG_RELAY_IDLE_REPLY) - 1) < 0) {
		/* the client is gone already: nothing to tell */
	}
	sg_loop_drop(r->loop, &r->cfd);
	if (!r->tls && write(r->ufd, quit, sizeof(quit) - 1) < 0) {
		/* the provider is gone already: sg_relay_drain sees it */
	}
	shutdown(r->ufd, SHUT_WR);
	sg_loop_mod(r->loop, r->ufd, EPOLLIN | EPOLLRDHUP);
}

bool sg_relay_drain(struct sg_relay *r)
{
	char buf[512];
	ssize_t n;

	while ((n = read(r->ufd, buf, sizeof(buf))) > 0)
		;
	return n == 0 || (errno != EAGAIN && errno != EINTR);
}

static struct sg_relay_bufs *bufs(struct sg_relay *r)
{
	if (!r->b)
		r->b = calloc(1, sizeof(*r->b));
	return r->b;
}

/* Read when there is room, write when there is something to write. */
void sg_relay_arm(struct sg_relay *r)
{
	struct sg_relay_bufs *b = bufs(r);
	uint32_t ce = 0, ue = 0;

	if (b && !b->up.eof && b->up.len == 0)
		ce |= EPOLLIN;
	if (b && b->down.len)
		ce |= EPOLLOUT;
	if (b && !b->down.eof && b->down.len == 0)
		ue |= EPOLLIN;
	if (b && b->up.len)
		ue |= EPOLLOUT;
	sg_loop_mod(r->loop, r->cfd, ce | EPOLLRDHUP);
	sg_loop_mod(r->loop, r->ufd, ue | EPOLLRDHUP);
}

/* Move bytes from `from` through b (one of r's) to `to`. -1: the session is over. */
static int pump(struct sg_relay *r, int from, int to, struct sg_relay_buf *b, bool can_read)
{
	if (can_read && !b->eof && b->len == 0) {
		ssize_t n = read(from, b->data, sizeof(b->data));

		if (n > 0) {
			b->off = 0;
			b->len = (size_t)n;
			r->last_ms = sg_relay_now_ms();
			r->down_last = b == &r->b->down;
			if (b == &r->b->up)
				watch_client(r, b->data, (size_t)n);
		} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			b->eof = true;
		}
	}
	while (b->len) {
		ssize_t n = write(to, b->data + b->off, b->len);

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			return -1;
		}
		b->off += (size_t)n;
		b->len -= (size_t)n;
	}
	/* Pass a finished direction on as a half-close, so that the other
	 * side can end its session (SMTP QUIT) before we let go. */
	if (b->eof && !b->len && !b->shut) {
		shutdown(to, SHUT_WR);
		b->shut = true;
	}
	return 0;
}

bool sg_relay_event(struct sg_relay *r, uint32_t events, bool client)
{
	bool in = events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR);
	struct sg_relay_bufs *b = bufs(r);

	if (!b)
		return true;           /* no memory for the buffers: end it */
	if (pump(r, r->cfd, r->ufd, &b->up, client && in) ||
	    pump(r, r->ufd, r->cfd, &b->down, !client && in) ||
	    (b->up.shut && b->down.shut))
		return true;
	/* A write side may have freed room: try the other direction too. */
	if (pump(r, r->cfd, r->ufd, &b->up, false) || pump(r, r->ufd, r->cfd, &b->down, false))
		return true;
	sg_relay_arm(r);
	return false;
}

void sg_relay_close(struct sg_relay *r)
{
	sg_loop_drop(r->loop, &r->cfd);
	sg_loop_drop(r->loop, &r->ufd);
	free(r->b);
	r->b = NULL;
}
