// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * The pinned `logstat` map (see smtpgov.h and kernel.h): one memory-mapped
 * entry the daemon writes and `smtpgov status` reads. The daemon makes and
 * pins it itself, so that an instance loaded by an older binary gets it too.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "kernel.h"

#define MAP_LEN (((sizeof(struct sg_logstat) + 4095) / 4096) * 4096)

/*
 * The map pinned at path if its layout is value_size x max_entries with
 * flags; else -EPROTO, or, with create, a new one from make(arg), pinned
 * there. An fd or a negative errno (-ENOENT: none pinned).
 */
static int pinned_map(const char *path, __u32 value_size, __u32 max_entries, __u32 flags,
		      bool create, int (*make)(void *arg), void *arg)
{
	struct bpf_map_info info = { 0 };
	__u32 len = sizeof(info);
	int fd = bpf_obj_get(path);

	if (fd >= 0 && (bpf_obj_get_info_by_fd(fd, &info, &len) || info.value_size != value_size ||
			info.max_entries != max_entries || (info.map_flags & flags) != flags)) {
		close(fd);             /* an older layout: only the daemon rebuilds it */
		if (!create)
			return -EPROTO;
		unlink(path);
		fd = -1;
	}
	if (fd >= 0 || !create)
		return fd >= 0 ? fd : -errno;
	fd = make(arg);
	if (fd < 0)
		return fd;
	if (bpf_obj_pin(fd, path)) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

static int make_logstat(void *arg)
{
	LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_MMAPABLE);
	int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "sg_logstat", sizeof(__u32),
				sizeof(struct sg_logstat), 1, &opts);

	(void)arg;
	return fd < 0 ? -errno : fd;
}

int sg_kernel_logstat_map(const char *pin_dir, bool create, struct sg_logstat **out)
{
	char path[PATH_MAX];
	void *m;
	int fd;

	*out = NULL;
	snprintf(path, sizeof(path), "%s/logstat", pin_dir);
	fd = pinned_map(path, sizeof(struct sg_logstat), 1, BPF_F_MMAPABLE, create,
				  make_logstat, NULL);
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
