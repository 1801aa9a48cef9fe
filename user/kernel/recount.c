// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Drift repair. The tags in `socks` (keyed by socket cookie) are checked
 * against the TCP sockets that exist (sock_diag reports their cookies): a
 * counted tag whose socket is gone lost its release, and deleting it gives
 * its slot back. Then, where nothing connected or closed meanwhile,
 * groups[].live and each source count (srccounts) are set to the number
 * of live tagged sockets.
 *
 * sock_diag works on kernels without BPF tracing programs (this one has no
 * bpf_iter). A dump sees one network namespace, so the recount visits the
 * namespace of every process in the governed cgroup tree.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "kernel_int.h"
#include "log.h"
#include "netns.h"

/* Live socket cookies, sorted for bsearch. */
struct cookies {
	uint64_t *v;
	size_t n, alloc;
};

static int add_cookie(struct cookies *c, uint64_t cookie)
{
	if (c->n == c->alloc) {
		size_t alloc = c->alloc ? c->alloc * 2 : 1024;
		uint64_t *v = realloc(c->v, alloc * sizeof(*v));

		if (!v)
			return -ENOMEM;
		c->v = v;
		c->alloc = alloc;
	}
	c->v[c->n++] = cookie;
	return 0;
}

/* One sock_diag dump of one family's TCP sockets in the current netns. */
static int dump(int nl, int family, struct cookies *alive)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
	} msg;
	static char buf[65536];
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };

	memset(&msg, 0, sizeof(msg));
	msg.nlh.nlmsg_len = sizeof(msg);
	msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	msg.req.sdiag_family = (__u8)family;
	msg.req.sdiag_protocol = IPPROTO_TCP;
	msg.req.idiag_states = ~0u;
	if (sendto(nl, &msg, sizeof(msg), 0, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	for (;;) {
		ssize_t len = recv(nl, buf, sizeof(buf), 0);
		struct nlmsghdr *h = (struct nlmsghdr *)buf;

		if (len < 0)
			return -errno;
		for (; NLMSG_OK(h, (size_t)len); h = NLMSG_NEXT(h, len)) {
			if (h->nlmsg_type == NLMSG_DONE)
				return 0;
			if (h->nlmsg_type == NLMSG_ERROR) {
				struct nlmsgerr *e = NLMSG_DATA(h);

				return e->error ? e->error : -EIO;
			}
			struct inet_diag_msg *m = NLMSG_DATA(h);
			int r = add_cookie(alive, (uint64_t)m->id.idiag_cookie[0] |
						  (uint64_t)m->id.idiag_cookie[1] << 32);
			if (r)
				return r;
		}
	}
}

static int dump_netns(void *arg)
{
	struct cookies *alive = arg;
	int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	int r;

	if (nl < 0)
		return -errno;
	r = dump(nl, AF_INET, alive);
	if (!r)
		r = dump(nl, AF_INET6, alive);
	close(nl);
	return r;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Every TCP socket cookie in our netns and in those of the cgroup's processes. */
static int live_cookies(struct sg_kernel *k, struct cookies *alive)
{
	struct sg_netns_set set;
	int r = 0;

	sg_netns_scan(k->cgroup_path, &set);
	for (int i = 0; i < set.n && !r; i++) {
		int fd = i ? sg_netns_open(set.pid[i], set.ino[i]) : -1;

		if (i && fd < 0)
			continue;      /* gone meanwhile: so are its sockets */
		r = sg_netns_run(fd, dump_netns, alive);
		if (fd >= 0)
			close(fd);
	}
	qsort(alive->v, alive->n, sizeof(*alive->v), cmp_u64);
	return r;
}

/* One counter's snapshot, what the tags say, and what was given back. */
struct tally {
	int32_t live;
	uint64_t admitted;
	int32_t counted, dropped;
};

/*
 * Where nothing connected or closed while we counted (the counter and its
 * admitted total are as they were), the number of live tagged sockets is
 * the truth: move the counter there. Returns 1 if it was repaired.
 */
static int repair(__s32 *live, __u64 *admitted, const struct tally *t)
{
	int32_t expect = t->live - t->dropped;

	if (t->counted == expect || __atomic_load_n(live, __ATOMIC_ACQUIRE) != expect ||
	    __atomic_load_n(admitted, __ATOMIC_ACQUIRE) != t->admitted)
		return 0;
	__atomic_fetch_add(live, t->counted - expect, __ATOMIC_ACQ_REL);
	return 1;
}

static void snapshot(struct tally *t, const __s32 *live, const __u64 *admitted)
{
	t->live = __atomic_load_n(live, __ATOMIC_ACQUIRE);
	t->admitted = __atomic_load_n(admitted, __ATOMIC_ACQUIRE);
}

int sg_kernel_recount(struct sg_kernel *k)
{
	const size_t nsrc = (size_t)SG_MAX_GROUPS * SG_MAX_SOURCES;
	struct tally grp[SG_MAX_GROUPS] = { 0 }, *src = calloc(nsrc, sizeof(*src));
	uint64_t *keys = malloc(SG_MAX_SOCKS * sizeof(*keys)), cookie, *prev = NULL;
	struct cookies alive = { 0 };
	size_t n = 0;
	int repaired = 0, r = -ENOMEM;

	if (!keys || !src)
		goto out;
	for (int i = 0; i < SG_MAX_GROUPS; i++)
		snapshot(&grp[i], &k->groups[i].live, &k->groups[i].admitted);
	for (size_t i = 0; i < nsrc; i++)
		snapshot(&src[i], &k->srccounts[i].live, &k->srccounts[i].admitted);
	/* The tags first, the sockets second: a tag seen here whose socket is
	 * gone from the dump lost its release (or its socket died unconnected). */
	while (n < SG_MAX_SOCKS && !bpf_map_get_next_key(SG_MAP_FD(k, socks), prev, &cookie)) {
		keys[n] = cookie;
		prev = &keys[n++];
	}
	if ((r = live_cookies(k, &alive)))
		goto out;
	for (size_t i = 0; i < n; i++) {
		struct sg_sock tag;
		struct tally *s;

		if (bpf_map_lookup_elem(SG_MAP_FD(k, socks), &keys[i], &tag) ||
		    !(tag.flags & SG_SOCK_COUNTED) || tag.group >= SG_MAX_GROUPS ||
		    tag.slot >= SG_MAX_SOURCES)
			continue;
		s = &src[(size_t)tag.group * SG_MAX_SOURCES + tag.slot];
		if (bsearch(&keys[i], alive.v, alive.n, sizeof(*alive.v), cmp_u64)) {
			grp[tag.group].counted++;
			s->counted++;
			continue;
		}
		/* Deleting the tag is what entitles us to give the slot back. */
		if (!bpf_map_delete_elem(SG_MAP_FD(k, socks), &keys[i])) {
			__atomic_fetch_sub(&sg_group_w(k, (int)tag.group)->live, 1, __ATOMIC_ACQ_REL);
			__atomic_fetch_sub(&sg_srccount_w(k, (int)tag.group, tag.slot)->live, 1,
					   __ATOMIC_ACQ_REL);
			grp[tag.group].dropped++;
			s->dropped++;
		}
	}
	for (int i = 0; i < SG_MAX_GROUPS; i++) {
		struct sg_group *g = sg_group_w(k, i);
		int fixed = 0;

		if (grp[i].dropped) {
			pr_warn("group %.*s: %d tagged sockets are gone without a release: slots given back",
				SG_NAME_LEN, g->name, grp[i].dropped);
			repaired++;
		}
		if (repair(&g->live, &g->admitted, &grp[i])) {
			pr_warn("group %.*s: live count drifted to %d, %d sockets hold a slot: repaired",
				SG_NAME_LEN, g->name, grp[i].live - grp[i].dropped, grp[i].counted);
			repaired++;
		}
		for (uint32_t slot = 0; slot < SG_MAX_SOURCES; slot++) {
			struct sg_srccount *c = sg_srccount_w(k, i, slot);

			fixed += repair(&c->live, &c->admitted, &src[(size_t)i * SG_MAX_SOURCES + slot]);
		}
		if (fixed) {
			pr_warn("group %.*s: live counts of %d sending addresses drifted: repaired",
				SG_NAME_LEN, g->name, fixed);
			repaired++;
		}
	}
	r = repaired;
out:
	free(keys);
	free(src);
	free(alive.v);
	return r;
}
