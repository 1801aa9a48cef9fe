// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * The pinned `logstat` map (see smtpgov.h and kernel.h): one memory-mapped
 * entry the daemon writes and `smtpgov status` reads.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "kernel.h"

#define MAP_LEN (((sizeof(struct sg_logstat) + 4095) / 4096) * 4096)

static int logstat_fd(const char *path, bool create)
{
	struct bpf_map_info info = { 0 };
	__u32 len = sizeof(info);
	int fd = bpf_obj_get(path);

	if (fd >= 0 && (bpf_obj_get_info_by_fd(fd, &info, &len) ||
			info.value_size != sizeof(struct sg_logstat) || info.max_entries != 1 ||
			!(info.map_flags & BPF_F_MMAPABLE))) {
		close(fd);             /* an older layout: only the daemon rebuilds it */
		if (!create)
			return -EPROTO;
		unlink(path);
		fd = -1;
	}
	if (fd >= 0 || !create)
		return fd >= 0 ? fd : -errno;
	LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_MMAPABLE);
	fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "sg_logstat", sizeof(__u32),
			    sizeof(struct sg_logstat), 1, &opts);
	if (fd < 0)
		return -errno;
	if (bpf_obj_pin(fd, path)) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

int sg_kernel_logstat_map(const char *pin_dir, bool create, struct sg_logstat **out)
{
	char path[PATH_MAX];
	void *m;
	int fd;

	*out = NULL;
	snprintf(path, sizeof(path), "%s/logstat", pin_dir);
	fd = logstat_fd(path, create);
	if (fd < 0)
		return fd;
	m = mmap(NULL, MAP_LEN, PROT_READ | (create ? PROT_WRITE : 0), MAP_SHARED, fd, 0);
	close(fd);               /* the mapping holds the map */
	if (m == MAP_FAILED)
		return -errno;
	*out = m;
	return 0;
}

void sg_kernel_logstat_unmap(struct sg_logstat *ls)
{
	if (ls)
		munmap(ls, MAP_LEN);
}

uint64_t sg_kernel_governed(const struct sg_kernel *k)
{
	uint64_t n = 0;

	for (int i = 0; i < SG_MAX_GROUPS; i++) {
		const struct sg_group *g = &k->groups[i];

		n += __atomic_load_n(&g->admitted, __ATOMIC_RELAXED) +
		     __atomic_load_n(&g->refused, __ATOMIC_RELAXED) +
		     __atomic_load_n(&g->queued, __ATOMIC_RELAXED);
	}
	return n;
}
