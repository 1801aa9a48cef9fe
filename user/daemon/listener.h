/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* The waiting room's listeners: one port on 127.0.0.1 and ::1. */
#ifndef SG_LISTENER_H
#define SG_LISTENER_H

/*
 * Listen (non-blocking, close-on-exec) on a free port of 127.0.0.1 and the
 * same port of ::1 (*fd6 is -1 on a host without IPv6 loopback). Returns
 * the port, or a negative errno.
 */
int sg_listen_loopback(int *fd4, int *fd6);

/* The local port of a listener, or a negative errno. */
int sg_listen_port(int fd);

#endif
