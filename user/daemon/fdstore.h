/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The file descriptor store: what lets a restart keep the waiting room.
 * Under systemd (FileDescriptorStoreMax= in the unit) each fd sent with
 * `FDSTORE=1` over sd_notify stays open in the service manager while the
 * daemon dies, and comes back to the next one through LISTEN_FDS /
 * LISTEN_FDNAMES (sd_listen_fds_with_names). Anything that speaks the same
 * protocol works as well (tests/tools/fdhold in the tests). Without a
 * notify socket every call is a no-op.
 */
#ifndef SG_FDSTORE_H
#define SG_FDSTORE_H

#include <stdbool.h>

#define SG_FDNAME_LEN 128

struct sg_fd_given {
	int fd;
	char name[SG_FDNAME_LEN];
};

/* Is there a store to put fds in ($NOTIFY_SOCKET)? */
bool sg_fdstore_on(void);

/* Keep fd under name (letters, digits, '.', '-', '_'). 0, or negative errno. */
int sg_fdstore_put(int fd, const char *name);

/* Forget every fd kept under name. */
void sg_fdstore_drop(const char *name);

/*
 * The fds the previous daemon left in the store, handed to this process
 * (NULL and 0 when none). The array is the caller's to free; each fd is
 * close-on-exec.
 */
int sg_fdstore_take(struct sg_fd_given **out);

#endif
