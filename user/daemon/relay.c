// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* A two-socket relay with half-close (see relay.h). */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include "relay.h"

void sg_relay_init(struct sg_relay *r, struct sg_loop *loop, int cfd)
{
	r->loop = loop;
	r->cfd = cfd;
	r->ufd = -1;
	r->b = NULL;
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

/* Move bytes from `from` through b to `to`. -1: the session is over. */
static int pump(int from, int to, struct sg_relay_buf *b, bool can_read)
{
	if (can_read && !b->eof && b->len == 0) {
		ssize_t n = read(from, b->data, sizeof(b->data));

		if (n > 0) {
			b->off = 0;
			b->len = (size_t)n;
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
	if (pump(r->cfd, r->ufd, &b->up, client && in) ||
	    pump(r->ufd, r->cfd, &b->down, !client && in) ||
	    (b->up.shut && b->down.shut))
		return true;
	/* A write side may have freed room: try the other direction too. */
	if (pump(r->cfd, r->ufd, &b->up, false) || pump(r->ufd, r->cfd, &b->down, false))
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
