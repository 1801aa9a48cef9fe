// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Loader and pinning: the BPF object's lifecycle (open, load, fill the
 * maps, attach, pin), adoption of a pinned instance, map synchronisation
 * with the config, drift repair and unload. See kernel.h.
 */
#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "controller.h"
#include "kernel_int.h"
#include "log.h"
#include "smtpgov.skel.h"

static const char *const link_pins[] = { "link_connect4", "link_connect6", "link_release",
					 "link_sockops" };
#define NLINKS (sizeof(link_pins) / sizeof(link_pins[0]))

static const char *const map_names[SG_KERNEL_NMAPS] = {
#define SG_KERNEL_MAP_NAME(name) #name,
	SG_KERNEL_MAPS(SG_KERNEL_MAP_NAME)
#undef SG_KERNEL_MAP_NAME
};

#define FD SG_MAP_FD

static void pin_path(char *buf, size_t len, const char *dir, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

static void kernel_init(struct sg_kernel *k, const char *pin_dir)
{
	memset(k, 0, sizeof(*k));
	snprintf(k->pin_dir, sizeof(k->pin_dir), "%s", pin_dir);
	k->lock_fd = -1;
	for (int i = 0; i < SG_KERNEL_NMAPS; i++)
		k->map_fd[i] = -1;
	for (size_t i = 0; i < NLINKS; i++)
		k->link_fd[i] = -1;
}

static void close_links(struct sg_kernel *k)
{
	for (size_t i = 0; i < NLINKS; i++) {
		if (k->link_fd[i] >= 0)
			close(k->link_fd[i]);
		k->link_fd[i] = -1;
	}
}

static void *map_array(int fd, size_t size, size_t *len)
{
	long page = sysconf(_SC_PAGESIZE);
	void *p;

	*len = (size + (size_t)page - 1) / (size_t)page * (size_t)page;
	p = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* The counters userspace reads and writes in place: groups and srccounts. */
static int map_groups(struct sg_kernel *k)
{
	k->groups = map_array(FD(k, groups), sizeof(struct sg_group) * SG_MAX_GROUPS,
			      &k->groups_len);
	if (!k->groups)
		return -errno;
	k->srccounts = map_array(FD(k, srccounts),
				 sizeof(struct sg_srccount) * SG_MAX_GROUPS * SG_MAX_SOURCES,
				 &k->srccounts_len);
	return k->srccounts ? 0 : -errno;
}

static uint64_t link_cgroup(int link_fd)
{
	struct bpf_link_info info;
	__u32 len = sizeof(info);

	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(link_fd, &info, &len))
		return 0;
	return info.type == BPF_LINK_TYPE_CGROUP ? info.cgroup.cgroup_id : 0;
}

/*
 * Refuse a pin dir made by a smtpgov of another ABI (include/smtpgov.h)
 * before anything reads or writes its maps. 0 when nothing is pinned.
 */
static int check_abi(const char *pin_dir, char *err, size_t errlen)
{
	struct bpf_map_info info;
	__u32 len = sizeof(info), zero = 0;
	struct sg_settings s;
	char path[PATH_MAX];
	int fd, r = 0;

	pin_path(path, sizeof(path), pin_dir, "settings");
	fd = bpf_obj_get(path);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &len)) {
		r = -errno;
		snprintf(err, errlen, "pin dir %s: settings: %s", pin_dir, strerror(errno));
	} else if (info.value_size != sizeof(s)) {
		r = -EPROTO;
		snprintf(err, errlen, "pin dir %s: pinned by a smtpgov of another ABI (settings of %u "
			 "bytes, this one's are %zu, ABI %u); nothing was changed: stop its daemon and run "
			 "`smtpgov unload`, then load again", pin_dir, info.value_size, sizeof(s),
			 SG_ABI_VERSION);
	} else if (bpf_map_lookup_elem(fd, &zero, &s)) {
		r = -errno;
		snprintf(err, errlen, "pin dir %s: settings: %s", pin_dir, strerror(errno));
	} else if (s.abi != SG_ABI_VERSION) {
		r = -EPROTO;
		snprintf(err, errlen, "pin dir %s: pinned by a smtpgov of ABI %u, this one speaks ABI %u; "
			 "nothing was changed: stop its daemon and run `smtpgov unload`, then load again",
			 pin_dir, s.abi, SG_ABI_VERSION);
	}
	close(fd);
	return r;
}

int sg_kernel_open(struct sg_kernel *k, const char *pin_dir, char *err, size_t errlen)
{
	char path[PATH_MAX];
	int r, fd;

	kernel_init(k, pin_dir);
	err[0] = '\0';
	if ((r = check_abi(pin_dir, err, errlen)))
		return r;
	for (int i = 0; i < SG_KERNEL_NMAPS; i++) {
		pin_path(path, sizeof(path), pin_dir, map_names[i]);
		k->map_fd[i] = bpf_obj_get(path);
		if (k->map_fd[i] < 0) {
			r = -errno;
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			sg_kernel_close(k);
			return r;
		}
	}
	pin_path(path, sizeof(path), pin_dir, link_pins[0]);
	fd = bpf_obj_get(path);
	if (fd >= 0) {
		k->cgroup_id = link_cgroup(fd);
		close(fd);
	}
	r = map_groups(k);
	if (r) {
		snprintf(err, errlen, "pin dir %s: mmap groups: %s", pin_dir, strerror(-r));
		sg_kernel_close(k);
	}
	return r;
}

void sg_kernel_close(struct sg_kernel *k)
{
	if (k->groups)
		munmap((void *)k->groups, k->groups_len);
	k->groups = NULL;
	if (k->srccounts)
		munmap((void *)k->srccounts, k->srccounts_len);
	k->srccounts = NULL;
	if (k->skel) {
		smtpgov_bpf__destroy(k->skel);
		k->skel = NULL;
		/* the skeleton owned the map fds */
		for (int i = 0; i < SG_KERNEL_NMAPS; i++)
			k->map_fd[i] = -1;
	}
	for (int i = 0; i < SG_KERNEL_NMAPS; i++) {
		if (k->map_fd[i] >= 0)
			close(k->map_fd[i]);
		k->map_fd[i] = -1;
	}
	close_links(k);
	if (k->lock_fd >= 0)
		close(k->lock_fd);
	k->lock_fd = -1;
}

/* The pin dir must live on a bpf filesystem; mount the usual one if needed. */
static int ensure_bpffs(const char *pin_dir, char *err, size_t errlen)
{
	char parent[PATH_MAX];
	struct statfs sfs;
	char *slash;

	snprintf(parent, sizeof(parent), "%s", pin_dir);
	slash = strrchr(parent, '/');
	if (!slash || slash == parent) {
		snprintf(err, errlen, "pin dir %s: must be a directory below a bpf filesystem", pin_dir);
		return -EINVAL;
	}
	*slash = '\0';
	if (statfs(parent, &sfs)) {
		int r = -errno;

		snprintf(err, errlen, "pin dir %s: %s", parent, strerror(errno));
		return r;
	}
	if (sfs.f_type == BPF_FS_MAGIC)
		return 0;
	if (!strcmp(parent, "/sys/fs/bpf") && !mount("bpffs", parent, "bpf", 0, "mode=0700")) {
		pr_info("mounted a bpf filesystem on /sys/fs/bpf");
		return 0;
	}
	snprintf(err, errlen, "pin dir %s: %s is not a bpf filesystem (mount -t bpf bpffs %s)",
		 pin_dir, parent, parent);
	return -ENOTSUP;
}

static int lock_pin_dir(struct sg_kernel *k, bool create, char *err, size_t errlen)
{
	if (create && mkdir(k->pin_dir, 0700) && errno != EEXIST) {
		int r = -errno;

		snprintf(err, errlen, "pin dir %s: %s", k->pin_dir, strerror(errno));
		return r;
	}
	k->lock_fd = open(k->pin_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (k->lock_fd < 0) {
		int r = -errno;

		snprintf(err, errlen, "pin dir %s: %s", k->pin_dir, strerror(errno));
		return r;
	}
	if (flock(k->lock_fd, LOCK_EX | LOCK_NB)) {
		int r = -errno;

		if (errno == EWOULDBLOCK)
			snprintf(err, errlen, "pin dir %s: another smtpgov load is running on it", k->pin_dir);
		else
			snprintf(err, errlen, "pin dir %s: lock: %s", k->pin_dir, strerror(errno));
		return r;
	}
	return 0;
}

static int attach(struct sg_kernel *k, int cgroup_fd, char *err, size_t errlen)
{
	struct bpf_program *progs[NLINKS] = {
		k->skel->progs.sg_connect4, k->skel->progs.sg_connect6, k->skel->progs.sg_release,
		k->skel->progs.sg_sockops,
	};
	char path[PATH_MAX];

	for (size_t i = 0; i < NLINKS; i++) {
		struct bpf_link *link = bpf_program__attach_cgroup(progs[i], cgroup_fd);
		int r;

		if (!link) {
			r = -errno;
			snprintf(err, errlen, "attach %s to the cgroup: %s", bpf_program__name(progs[i]),
				 strerror(-r));
			return r;
		}
		pin_path(path, sizeof(path), k->pin_dir, link_pins[i]);
		r = bpf_link__pin(link, path);
		/* The pin keeps it attached, and so does our fd if the pin goes. */
		k->link_fd[i] = fcntl(bpf_link__fd(link), F_DUPFD_CLOEXEC, 0);
		bpf_link__destroy(link);
		if (r) {
			snprintf(err, errlen, "pin %s: %s", path, strerror(-r));
			return r;
		}
	}
	return 0;
}

int sg_kernel_load(struct sg_kernel *k, const char *pin_dir, const char *cgroup,
		   const struct sg_config *cfg, bool *adopted, char *err, size_t errlen)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pin_dir);
	char path[PATH_MAX];
	uint64_t cgid = 0;
	int cgroup_fd = -1, r, fd;

	kernel_init(k, pin_dir);
	*adopted = false;
	err[0] = '\0';
	if ((r = ensure_bpffs(pin_dir, err, errlen)) || (r = lock_pin_dir(k, true, err, errlen)) ||
	    (r = check_abi(pin_dir, err, errlen)))
		goto fail;
	cgroup_fd = sg_cgroup_open(cgroup, &cgid, err, errlen);
	if (cgroup_fd < 0) {
		r = cgroup_fd;
		goto fail;
	}
	pin_path(path, sizeof(path), pin_dir, link_pins[0]);
	fd = bpf_obj_get(path);
	if (fd >= 0) {
		uint64_t have = link_cgroup(fd);

		close(fd);
		if (have == 0) {
			/* Its cgroup was removed (a systemd unit stopped; the MTA
			 * may be back in a new one): keep the maps, attach anew. */
			pr_info("the cgroup pinned in %s is gone; attaching to %s", pin_dir, cgroup);
			for (size_t i = 0; i < NLINKS; i++) {
				pin_path(path, sizeof(path), pin_dir, link_pins[i]);
				unlink(path);
			}
		} else if (have != cgid) {
			char other[PATH_MAX];

			sg_cgroup_path(have, other, sizeof(other));
			snprintf(err, errlen, "pin dir %s: already governs cgroup %s; run `smtpgov unload` first",
				 pin_dir, other[0] ? other : "(another one)");
			r = -EBUSY;
			goto fail;
		} else {
			*adopted = true;
			for (size_t i = 0; i < NLINKS; i++) {
				pin_path(path, sizeof(path), pin_dir, link_pins[i]);
				k->link_fd[i] = bpf_obj_get(path);
			}
		}
	}

	/* libbpf pins every map by name under pin_dir, or reuses the pinned one. */
	k->skel = smtpgov_bpf__open_opts(&opts);
	if (!k->skel) {
		r = -errno;
		snprintf(err, errlen, "open the BPF object: %s", strerror(-r));
		goto fail;
	}
	r = smtpgov_bpf__load(k->skel);
	if (r) {
		snprintf(err, errlen, "load the BPF programs: %s (-v shows libbpf's log)", strerror(-r));
		goto fail;
	}
	for (int i = 0; i < SG_KERNEL_NMAPS; i++) {
		struct bpf_map *m = bpf_object__find_map_by_name(k->skel->obj, map_names[i]);

		k->map_fd[i] = m ? bpf_map__fd(m) : -1;
		if (k->map_fd[i] < 0) {
			r = -ENOENT;
			snprintf(err, errlen, "the BPF object has no map %s", map_names[i]);
			goto fail;
		}
	}
	if ((r = map_groups(k))) {
		snprintf(err, errlen, "mmap the groups map: %s", strerror(-r));
		goto fail;
	}
	if ((r = sg_kernel_sync(k, cfg))) {
		snprintf(err, errlen, "fill the maps: %s", strerror(-r));
		goto fail;
	}
	if (!*adopted && (r = attach(k, cgroup_fd, err, errlen)))
		goto fail;
	k->cgroup_id = cgid;
	if (!realpath(cgroup, k->cgroup_path))
		k->cgroup_path[0] = '\0';
	close(cgroup_fd);
	return 0;
fail:
	if (cgroup_fd >= 0)
		close(cgroup_fd);
	if (k->skel && !*adopted) {
		/* Leave nothing half-made behind. */
		int lock = k->lock_fd;

		k->lock_fd = -1;
		sg_kernel_close(k);
		k->lock_fd = lock;
		for (size_t i = 0; i < NLINKS; i++) {
			pin_path(path, sizeof(path), pin_dir, link_pins[i]);
			unlink(path);
		}
		for (int i = 0; i < SG_KERNEL_NMAPS; i++) {
			pin_path(path, sizeof(path), pin_dir, map_names[i]);
			unlink(path);
		}
		rmdir(pin_dir);
	}
	sg_kernel_close(k);
	return r;
}

int sg_kernel_reattach(struct sg_kernel *k, const char *cgroup, char *err, size_t errlen)
{
	char path[PATH_MAX];
	uint64_t id;
	int fd = sg_cgroup_open(cgroup, &id, err, errlen), r;

	if (fd < 0)
		return fd;
	close_links(k);
	for (size_t i = 0; i < NLINKS; i++) {
		pin_path(path, sizeof(path), k->pin_dir, link_pins[i]);
		unlink(path);
	}
	r = attach(k, fd, err, errlen);
	close(fd);
	if (r)
		return r;
	k->cgroup_id = id;
	if (!realpath(cgroup, k->cgroup_path))
		k->cgroup_path[0] = '\0';
	return 0;
}

/* Every pin in place, in the dir we hold locked? */
static bool pins_whole(const struct sg_kernel *k)
{
	struct stat dir, held;
	char path[PATH_MAX];

	if (stat(k->pin_dir, &dir) || fstat(k->lock_fd, &held) || dir.st_ino != held.st_ino ||
	    dir.st_dev != held.st_dev)
		return false;
	for (int i = 0; i < SG_KERNEL_NMAPS + (int)NLINKS; i++) {
		pin_path(path, sizeof(path), k->pin_dir,
			 i < SG_KERNEL_NMAPS ? map_names[i] : link_pins[i - SG_KERNEL_NMAPS]);
		if (access(path, F_OK))
			return false;
	}
	return true;
}

int sg_kernel_repin(struct sg_kernel *k, char *err, size_t errlen)
{
	char path[PATH_MAX];
	int old = k->lock_fd, r;

	if (!k->skel || pins_whole(k))
		return 0;
	k->lock_fd = -1;
	if ((r = ensure_bpffs(k->pin_dir, err, errlen)) || (r = lock_pin_dir(k, true, err, errlen))) {
		if (k->lock_fd >= 0)
			close(k->lock_fd);
		k->lock_fd = old;
		return r;
	}
	if (old >= 0)
		close(old);
	for (int i = 0; i < SG_KERNEL_NMAPS + (int)NLINKS; i++) {
		bool map = i < SG_KERNEL_NMAPS;
		int fd = map ? k->map_fd[i] : k->link_fd[i - SG_KERNEL_NMAPS];

		pin_path(path, sizeof(path), k->pin_dir,
			 map ? map_names[i] : link_pins[i - SG_KERNEL_NMAPS]);
		if (fd >= 0 && bpf_obj_pin(fd, path) && errno != EEXIST) {
			r = -errno;
			snprintf(err, errlen, "pin %s: %s", path, strerror(errno));
			return r;
		}
	}
	return 1;
}

/* The waiting room's own cgroup: the programs a connect goes through. */
struct sg_kernel_links {
	struct bpf_link *link[3];
};

int sg_kernel_attach_room(struct sg_kernel *k, const char *cgroup, struct sg_kernel_links **out)
{
	struct bpf_program *progs[3] = {
		k->skel->progs.sg_connect4, k->skel->progs.sg_connect6, k->skel->progs.sg_release,
	};
	struct sg_kernel_links *l = calloc(1, sizeof(*l));
	char err[PATH_MAX + 64];
	uint64_t id;
	int fd, r = 0;

	*out = NULL;
	if (!l)
		return -ENOMEM;
	fd = sg_cgroup_open(cgroup, &id, err, sizeof(err));
	if (fd < 0) {
		pr_err("waiting room: %s", err);
		free(l);
		return fd;
	}
	for (int i = 0; i < 3 && !r; i++) {
		l->link[i] = bpf_program__attach_cgroup(progs[i], fd);
		if (!l->link[i]) {
			r = -errno;
			pr_err("waiting room: attach %s to cgroup %s: %s", bpf_program__name(progs[i]),
			       cgroup, strerror(-r));
		}
	}
	close(fd);
	if (r) {
		sg_kernel_detach_room(l);
		return r;
	}
	*out = l;
	return 0;
}

int sg_kernel_room_link_fds(const struct sg_kernel_links *l, int fds[3])
{
	int n = 0;

	for (int i = 0; l && i < 3; i++)
		if (l->link[i])
			fds[n++] = bpf_link__fd(l->link[i]);
	return n;
}

void sg_kernel_detach_room(struct sg_kernel_links *l)
{
	if (!l)
		return;
	for (int i = 0; i < 3; i++)
		bpf_link__destroy(l->link[i]);
	free(l);
}

int sg_kernel_group(const struct sg_kernel *k, const char *name)
{
	for (int i = 0; i < SG_MAX_GROUPS; i++)
		if (k->groups[i].name[0] && !strncmp(k->groups[i].name, name, SG_NAME_LEN))
			return i;
	return -1;
}

uint32_t sg_kernel_cap(const struct sg_kernel *k, int slot)
{
	return __atomic_load_n(&k->groups[slot].cap, __ATOMIC_ACQUIRE);
}

void sg_kernel_set_cap(struct sg_kernel *k, int slot, uint32_t cap)
{
	__atomic_store_n(&sg_group_w(k, slot)->cap, cap, __ATOMIC_RELEASE);
}

static int free_slot(const struct sg_kernel *k, const bool taken[SG_MAX_GROUPS])
{
	for (int i = 0; i < SG_MAX_GROUPS; i++)
		if (!taken[i] && !k->groups[i].name[0])
			return i;
	for (int i = 0; i < SG_MAX_GROUPS; i++)
		if (!taken[i] && !(k->groups[i].flags & SG_GROUP_ACTIVE) &&
		    __atomic_load_n(&k->groups[i].live, __ATOMIC_RELAXED) <= 0)
			return i;
	return -1;
}

static void lpm_key(const struct sg_cidr *c, void *key)
{
	if (c->family == 4) {
		struct sg_lpm4 *k4 = key;

		k4->prefixlen = c->prefix;
		memcpy(k4->addr, c->addr, 4);
	} else {
		struct sg_lpm6 *k6 = key;

		k6->prefixlen = c->prefix;
		memcpy(k6->addr, c->addr, 16);
	}
}

static bool wanted(const struct sg_config *cfg, int family, const void *key)
{
	struct sg_cidr c = { .family = (uint8_t)family };
	size_t lo = 0, hi = cfg->ranges.n;

	if (family == 4) {
		c.prefix = (uint8_t)((const struct sg_lpm4 *)key)->prefixlen;
		memcpy(c.addr, ((const struct sg_lpm4 *)key)->addr, 4);
	} else {
		c.prefix = (uint8_t)((const struct sg_lpm6 *)key)->prefixlen;
		memcpy(c.addr, ((const struct sg_lpm6 *)key)->addr, 16);
	}
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int cmp = sg_cidr_cmp(&cfg->ranges.v[mid].cidr, &c);

		if (!cmp)
			return true;
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* Delete the prefixes of one trie that the config no longer has. */
static int prune(int fd, int family, const struct sg_config *cfg)
{
	size_t ksz = family == 4 ? sizeof(struct sg_lpm4) : sizeof(struct sg_lpm6);
	size_t max = family == 4 ? SG_MAX_RANGES4 : SG_MAX_RANGES6, n = 0;
	char *keys = malloc(ksz * max), *prev = NULL;
	int r = 0;

	if (!keys)
		return -ENOMEM;
	while (n < max && !bpf_map_get_next_key(fd, prev, keys + n * ksz)) {
		prev = keys + n * ksz;
		n++;
	}
	for (size_t i = 0; i < n; i++)
		if (!wanted(cfg, family, keys + i * ksz) && bpf_map_delete_elem(fd, keys + i * ksz) &&
		    errno != ENOENT)
			r = -errno;
	free(keys);
	return r;
}

int sg_kernel_sync(struct sg_kernel *k, const struct sg_config *cfg)
{
	bool taken[SG_MAX_GROUPS] = { false };
	int slot_of[SG_MAX_GROUPS];
	struct sg_settings s = { 0 };
	__u32 zero = 0;

	for (unsigned i = 0; i < cfg->ngroups; i++) {
		const struct sg_group_conf *c = &cfg->groups[i];
		int slot = sg_kernel_group(k, c->name);
		struct sg_group *g;
		uint32_t cap;

		if (slot < 0) {
			slot = free_slot(k, taken);
			if (slot < 0)
				return -E2BIG;
			g = sg_group_w(k, slot);
			/* A new or recycled slot: no socket is tagged with it
			 * for this group, and no range points to it yet. */
			__atomic_store_n(&g->flags, 0, __ATOMIC_RELEASE);
			memset(g->name, 0, sizeof(g->name));
			memcpy(g->name, c->name, strlen(c->name));
			__atomic_store_n(&g->admitted, 0, __ATOMIC_RELAXED);
			__atomic_store_n(&g->refused, 0, __ATOMIC_RELAXED);
			__atomic_store_n(&g->events_dropped, 0, __ATOMIC_RELAXED);
			__atomic_store_n(&g->live, 0, __ATOMIC_RELAXED);
			memset(sg_srccount_w(k, slot, 0), 0,
			       sizeof(struct sg_srccount) * SG_MAX_SOURCES);
			cap = c->cap;
		} else {
			/* Adopted: keep what was enforced or learned, within bounds
			 * (0 is a pause and stays). */
			g = sg_group_w(k, slot);
			cap = sg_ctl_bound(c, __atomic_load_n(&g->cap, __ATOMIC_RELAXED));
			if (!(g->flags & SG_GROUP_ACTIVE))
				cap = c->cap;
		}
		taken[slot] = true;
		slot_of[i] = slot;
		__atomic_store_n(&g->min_cap, c->min_cap, __ATOMIC_RELAXED);
		__atomic_store_n(&g->max_cap, c->max_cap, __ATOMIC_RELAXED);
		__atomic_store_n(&g->verdict, c->verdict, __ATOMIC_RELAXED);
		__atomic_store_n(&g->queue_max, c->queue_max, __ATOMIC_RELAXED);
		__atomic_store_n(&g->cap, cap, __ATOMIC_RELEASE);
		__atomic_store_n(&g->flags, SG_GROUP_ACTIVE | (c->per_source ? SG_GROUP_PER_SOURCE : 0),
				 __ATOMIC_RELEASE);
	}
	for (int i = 0; i < SG_MAX_GROUPS; i++)
		if (!taken[i])
			__atomic_and_fetch(&sg_group_w(k, i)->flags, ~(__u32)SG_GROUP_ACTIVE, __ATOMIC_RELEASE);

	/* The waiting room's port belongs to the running daemon: keep it. */
	bpf_map_lookup_elem(FD(k, settings), &zero, &s);
	s.abi = SG_ABI_VERSION;
	memcpy(s.ports, cfg->ports, sizeof(s.ports));
	s.nports = cfg->nports;
	s.mode = cfg->mode;
	s.event_interval_ns = SG_EVENT_INTERVAL_NS;
	s.room_mark = SG_ROOM_MARK;
	s.max_sources = cfg->max_sources + 1;   /* the default slot too */
	if (bpf_map_update_elem(FD(k, settings), &zero, &s, BPF_ANY))
		return -errno;

	for (size_t i = 0; i < cfg->ranges.n; i++) {
		const struct sg_range *rg = &cfg->ranges.v[i];
		union { struct sg_lpm4 k4; struct sg_lpm6 k6; } key;
		__u32 slot = (__u32)slot_of[rg->group];
		int fd = rg->cidr.family == 4 ? FD(k, ranges4) : FD(k, ranges6);

		memset(&key, 0, sizeof(key));
		lpm_key(&rg->cidr, &key);
		if (bpf_map_update_elem(fd, &key, &slot, BPF_ANY))
			return -errno;
	}
	int r = prune(FD(k, ranges4), 4, cfg);
	return r ? r : prune(FD(k, ranges6), 6, cfg);
}

static int cmp_source(const void *a, const void *b)
{
	const struct sg_source *x = a, *y = b;

	return (x->slot > y->slot) - (x->slot < y->slot);
}

int sg_kernel_sources(const struct sg_kernel *k, struct sg_source *out, int max)
{
	uint8_t key[16], *prev = NULL;
	int n = 0;

	while (n < max && !bpf_map_get_next_key(FD(k, sources), prev, key)) {
		memcpy(out[n].addr, key, 16);
		if (!bpf_map_lookup_elem(FD(k, sources), key, &out[n].slot) &&
		    out[n].slot < SG_MAX_SOURCES)
			n++;
		prev = key;
	}
	qsort(out, (size_t)n, sizeof(*out), cmp_source);
	return n;
}

int sg_kernel_source_alloc(const struct sg_kernel *k, struct sg_source_alloc *a)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(FD(k, source_alloc), &zero, a) ? -errno : 0;
}

int sg_kernel_settings(const struct sg_kernel *k, struct sg_settings *s)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(FD(k, settings), &zero, s) ? -errno : 0;
}

int sg_kernel_count_ranges(const struct sg_kernel *k, uint32_t n4[SG_MAX_GROUPS],
			   uint32_t n6[SG_MAX_GROUPS])
{
	union { struct sg_lpm4 k4; struct sg_lpm6 k6; } cur, next;
	struct { int fd; uint32_t *n; } tries[] = { { FD(k, ranges4), n4 }, { FD(k, ranges6), n6 } };

	memset(n4, 0, sizeof(uint32_t) * SG_MAX_GROUPS);
	memset(n6, 0, sizeof(uint32_t) * SG_MAX_GROUPS);
	for (size_t t = 0; t < 2; t++) {
		void *prev = NULL;
		__u32 slot;

		while (!bpf_map_get_next_key(tries[t].fd, prev, &next)) {
			if (!bpf_map_lookup_elem(tries[t].fd, &next, &slot) && slot < SG_MAX_GROUPS)
				tries[t].n[slot]++;
			cur = next;
			prev = &cur;
		}
	}
	return 0;
}

int sg_kernel_lookup(const struct sg_kernel *k, const struct sg_cidr *addr)
{
	union { struct sg_lpm4 k4; struct sg_lpm6 k6; } key;
	__u32 slot;

	memset(&key, 0, sizeof(key));
	lpm_key(addr, &key);
	if (bpf_map_lookup_elem(addr->family == 4 ? FD(k, ranges4) : FD(k, ranges6), &key, &slot))
		return -1;
	return (int)slot;
}

int sg_kernel_unload(const char *pin_dir, char *err, size_t errlen)
{
	struct sg_kernel k;
	char path[PATH_MAX];
	struct dirent *de;
	DIR *dir;
	int r;

	kernel_init(&k, pin_dir);
	err[0] = '\0';
	if ((r = lock_pin_dir(&k, false, err, errlen))) {
		if (r == -ENOENT)
			snprintf(err, errlen, "nothing to unload: no pins in %s", pin_dir);
		else if (r == -EWOULDBLOCK)
			snprintf(err, errlen, "pin dir %s: a smtpgov load is running on it; stop it first",
				 pin_dir);
		return r;
	}
	/* Detach first, so no program runs while the maps go away. */
	for (size_t i = 0; i < NLINKS; i++) {
		int fd;

		pin_path(path, sizeof(path), pin_dir, link_pins[i]);
		fd = bpf_obj_get(path);
		if (fd < 0)
			continue;
		if (bpf_link_detach(fd))
			pr_warn("detach %s: %s", path, strerror(errno));
		close(fd);
	}
	dir = fdopendir(dup(k.lock_fd));
	if (!dir) {
		r = -errno;
		snprintf(err, errlen, "pin dir %s: %s", pin_dir, strerror(errno));
		goto out;
	}
	while ((de = readdir(dir)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			pin_path(path, sizeof(path), pin_dir, de->d_name);
			if (unlink(path) && !r) {
				r = -errno;
				snprintf(err, errlen, "unpin %s: %s", path, strerror(errno));
			}
		}
	closedir(dir);
	if (!r && rmdir(pin_dir)) {
		r = -errno;
		snprintf(err, errlen, "pin dir %s: %s", pin_dir, strerror(errno));
	}
out:
	sg_kernel_close(&k);
	return r;
}

int sg_kernel_room_register(struct sg_kernel *k, uint64_t netns, int fd4, int fd6)
{
	__u64 fd = (__u64)fd4, key6 = SG_ROOM_KEY6(netns);

	if (bpf_map_update_elem(FD(k, room), &netns, &fd, BPF_ANY))
		return -errno;
	fd = (__u64)fd6;
	return fd6 >= 0 && bpf_map_update_elem(FD(k, room), &key6, &fd, BPF_ANY) ? -errno : 0;
}

void sg_kernel_room_unregister(struct sg_kernel *k, uint64_t netns)
{
	__u64 key6 = SG_ROOM_KEY6(netns);

	bpf_map_delete_elem(FD(k, room), &netns);
	bpf_map_delete_elem(FD(k, room), &key6);
}

int sg_kernel_room_doors(const struct sg_kernel *k)
{
	__u64 keys[SG_MAX_ROOMS], *prev = NULL;
	int n = 0;

	int doors = 0;

	while (n < SG_MAX_ROOMS && !bpf_map_get_next_key(FD(k, room), prev, &keys[n])) {
		/* a namespace's 127.0.0.1 listener; its ::1 one is the complement */
		doors += keys[n] < SG_ROOM_KEY6(keys[n]);
		prev = &keys[n];
		n++;
	}
	return doors;
}

static int room_port_set(struct sg_kernel *k, uint16_t port, uint16_t only_if)
{
	struct sg_settings s;
	__u32 zero = 0;

	if (bpf_map_lookup_elem(FD(k, settings), &zero, &s))
		return -errno;
	if (only_if && s.room_port != only_if)
		return 0;
	s.room_port = port;
	s.room_mark = SG_ROOM_MARK;
	return bpf_map_update_elem(FD(k, settings), &zero, &s, BPF_ANY) ? -errno : 0;
}

int sg_kernel_room_port(struct sg_kernel *k, uint16_t port)
{
	return room_port_set(k, port, 0);
}

void sg_kernel_room_port_clear(struct sg_kernel *k, uint16_t port)
{
	if (port)
		room_port_set(k, 0, port);
}

int sg_kernel_pending_take(struct sg_kernel *k, const struct sg_pending_key *key,
			   struct sg_pending *p)
{
	return bpf_map_lookup_and_delete_elem(FD(k, pending), key, p) ? -errno : 0;
}

void sg_kernel_queue_oldest(struct sg_kernel *k, int g, uint32_t oldest_ms)
{
	__atomic_store_n(&sg_group_w(k, g)->wait_oldest_ms, oldest_ms, __ATOMIC_RELAXED);
}

void sg_kernel_queue_percentiles(struct sg_kernel *k, int g, uint32_t p50, uint32_t p90,
				 uint32_t p99)
{
	struct sg_group *grp = sg_group_w(k, g);

	__atomic_store_n(&grp->wait_p50_ms, p50, __ATOMIC_RELAXED);
	__atomic_store_n(&grp->wait_p90_ms, p90, __ATOMIC_RELAXED);
	__atomic_store_n(&grp->wait_p99_ms, p99, __ATOMIC_RELAXED);
}

void sg_kernel_queue_timeout(struct sg_kernel *k, int g)
{
	__atomic_fetch_add(&sg_group_w(k, g)->queue_timeouts, 1, __ATOMIC_RELAXED);
}

void sg_kernel_queue_idle_closed(struct sg_kernel *k, int g)
{
	__atomic_fetch_add(&sg_group_w(k, g)->idle_closed, 1, __ATOMIC_RELAXED);
}

uint32_t sg_kernel_queue_waiting(const struct sg_kernel *k, int g)
{
	return __atomic_load_n(&k->groups[g].waiting, __ATOMIC_ACQUIRE);
}

void sg_kernel_queue_give_back(struct sg_kernel *k, int g)
{
	uint32_t *w = &sg_group_w(k, g)->waiting, v = __atomic_load_n(w, __ATOMIC_RELAXED);

	while (v && !__atomic_compare_exchange_n(w, &v, v - 1, false, __ATOMIC_ACQ_REL,
						 __ATOMIC_RELAXED))
		;
}

bool sg_kernel_queue_unclaimed(struct sg_kernel *k, int g, uint32_t seen)
{
	return __atomic_compare_exchange_n(&sg_group_w(k, g)->waiting, &seen, 0, false,
					   __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}

void sg_kernel_queue_clear(struct sg_kernel *k, int g)
{
	__atomic_store_n(&sg_group_w(k, g)->waiting, 0, __ATOMIC_RELEASE);
}

void sg_kernel_source_waiting(struct sg_kernel *k, int g, uint32_t slot, int delta)
{
	__atomic_fetch_add(&sg_srccount_w(k, g, slot)->waiting, (uint32_t)delta, __ATOMIC_RELEASE);
}

void sg_kernel_sources_waiting_clear(struct sg_kernel *k)
{
	for (int g = 0; g < SG_MAX_GROUPS; g++)
		for (uint32_t i = 0; i < SG_MAX_SOURCES; i++)
			__atomic_store_n(&sg_srccount_w(k, g, i)->waiting, 0, __ATOMIC_RELEASE);
}

struct sg_kernel_ring {
	struct ring_buffer *rb;
	sg_wakeup_fn wakeup;     /* one of the two */
	sg_event_fn event;
	void *ctx;
};

static int ring_record(void *ctx, void *data, size_t len)
{
	struct sg_kernel_ring *r = ctx;

	if (r->wakeup && len >= sizeof(struct sg_wakeup))
		r->wakeup(r->ctx, data);
	else if (r->event && len >= sizeof(struct sg_event))
		r->event(r->ctx, data);
	return 0;
}

/* A reader of one ring buffer: exactly one of wakeup and event is set. */
static int ring_new(int fd, sg_wakeup_fn wakeup, sg_event_fn event, void *ctx,
		    struct sg_kernel_ring **out)
{
	struct sg_kernel_ring *r = calloc(1, sizeof(*r));
	int e;

	*out = NULL;
	if (!r)
		return -ENOMEM;
	*r = (struct sg_kernel_ring){ .wakeup = wakeup, .event = event, .ctx = ctx };
	r->rb = ring_buffer__new(fd, ring_record, r, NULL);
	if (!r->rb) {
		e = -errno;
		free(r);
		return e;
	}
	*out = r;
	return 0;
}

int sg_kernel_wakeups(struct sg_kernel *k, sg_wakeup_fn fn, void *ctx, struct sg_kernel_ring **out)
{
	return ring_new(FD(k, wakeups), fn, NULL, ctx, out);
}

int sg_kernel_events(struct sg_kernel *k, sg_event_fn fn, void *ctx, struct sg_kernel_ring **out)
{
	return ring_new(FD(k, events), NULL, fn, ctx, out);
}

int sg_kernel_ring_fd(const struct sg_kernel_ring *r)
{
	return ring_buffer__epoll_fd(r->rb);
}

int sg_kernel_ring_consume(struct sg_kernel_ring *r)
{
	int n = ring_buffer__consume(r->rb);

	return n < 0 ? n : 0;
}

void sg_kernel_ring_free(struct sg_kernel_ring *r)
{
	if (!r)
		return;
	ring_buffer__free(r->rb);
	free(r);
}

int sg_kernel_feedback_put(struct sg_kernel *k, int slot, const struct sg_feedback *f)
{
	__u32 key = (__u32)slot;

	return bpf_map_update_elem(FD(k, feedback), &key, f, BPF_ANY) ? -errno : 0;
}

int sg_kernel_feedback_get(const struct sg_kernel *k, int slot, struct sg_feedback *f)
{
	__u32 key = (__u32)slot;

	memset(f, 0, sizeof(*f));
	if (bpf_map_lookup_elem(FD(k, feedback), &key, f))
		return -errno;
	f->reason[sizeof(f->reason) - 1] = '\0';
	return 0;
}

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char line[1024];
	int n;

	/* libbpf's warnings are details of an error we report ourselves in
	 * one line; -v shows them, as debug lines. */
	if (level == LIBBPF_DEBUG || sg_log_level < SG_LOG_DEBUG)
		return 0;
	n = vsnprintf(line, sizeof(line), fmt, ap);
	if (n > 0 && (size_t)n < sizeof(line) && line[n - 1] == '\n')
		line[n - 1] = '\0';
	pr_debug("libbpf: %s", line);
	return n;
}

void sg_log_libbpf(void)
{
	libbpf_set_print(libbpf_print);
}
