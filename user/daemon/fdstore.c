// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* The file descriptor store over sd_notify (see fdstore.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>
#include "fdstore.h"
#include "log.h"

bool sg_fdstore_on(void)
{
	const char *s = getenv("NOTIFY_SOCKET");

	return s && *s;
}

int sg_fdstore_put(int fd, const char *name)
{
	char msg[SG_FDNAME_LEN + 32];
	int r;

	if (!sg_fdstore_on())
		return -ENOTCONN;
	snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", name);
	r = sd_pid_notify_with_fds(0, 0, msg, &fd, 1);
	if (r < 0) {
		pr_warn("fd store: keeping %s: %s", name, strerror(-r));
		return r;
	}
	return r > 0 ? 0 : -ENOTCONN;
}

void sg_fdstore_drop(const char *name)
{
	char msg[SG_FDNAME_LEN + 32];
	int r;

	if (!sg_fdstore_on())
		return;
	snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", name);
	if ((r = sd_pid_notify(0, 0, msg)) < 0)
		pr_warn("fd store: dropping %s: %s", name, strerror(-r));
}

int sg_fdstore_take(struct sg_fd_given **out)
{
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names);

	*out = NULL;
	if (n <= 0) {
		if (n < 0)
			pr_warn("fd store: the fds handed over: %s", strerror(-n));
		return 0;
	}
	struct sg_fd_given *v = calloc((size_t)n, sizeof(*v));

	for (int i = 0; i < n; i++) {
		if (v) {
			v[i].fd = SD_LISTEN_FDS_START + i;
			snprintf(v[i].name, sizeof(v[i].name), "%s", names && names[i] ? names[i] : "");
		} else {
			close(SD_LISTEN_FDS_START + i);
		}
		if (names)
			free(names[i]);
	}
	free(names);
	*out = v;
	return v ? n : 0;
}
