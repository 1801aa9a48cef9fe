// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* The waiting room's loopback listeners (see listener.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include "cidr.h"
#include "listener.h"

static int listen_on(const char *addr, uint16_t port)
{
	struct sockaddr_storage ss;
	unsigned len;
	int one = 1, fd;

	if (sg_sockaddr(addr, port, &ss, &len))
		return -EINVAL;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) || listen(fd, 4096)) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

int sg_listen_port(int fd)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);

	return getsockname(fd, (struct sockaddr *)&a, &len) ? -errno : ntohs(a.sin_port);
}

int sg_listen_loopback(int *fd4, int *fd6)
{
	int port = 0;

	*fd4 = *fd6 = -1;
	/* A port free on 127.0.0.1 may be taken on ::1: try another. */
	for (int tries = 0; tries < 16; tries++) {
		*fd4 = listen_on("127.0.0.1", 0);
		if (*fd4 < 0)
			return *fd4;
		port = sg_listen_port(*fd4);
		if (port < 0)
			break;
		*fd6 = listen_on("::1", (uint16_t)port);
		if (*fd6 != -EADDRINUSE)
			break;
		close(*fd4);
		*fd4 = -1;
	}
	if (*fd4 < 0 || port < 0) {
		if (*fd4 >= 0)
			close(*fd4);
		*fd4 = -1;
		return port < 0 ? port : -EADDRINUSE;
	}
	if (*fd6 < 0)
		*fd6 = -1;
	return port;
}
