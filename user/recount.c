// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Drift repair: count the TCP sockets whose tag (the `socks` sk storage)
 * says they hold a slot, and set groups[].live to that count where they
 * differ while nothing else changed.
 *
 * The count comes from sock_diag (inet_diag with INET_DIAG_REQ_SK_BPF_STORAGES),
 * which works on kernels without BPF tracing programs (this one has no
 * bpf_iter). A sock_diag dump sees one network namespace, so the recount
 * visits the namespace of every process in the governed cgroup tree.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
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
#include "kernel.h"
#include "log.h"

#define MAX_NETNS 64

struct netns_set {
	ino_t ino[MAX_NETNS];
	int fd[MAX_NETNS];
	int n;
};

static struct netns_set *walk_set;

static void add_netns(struct netns_set *s, const char *pid)
{
	char path[64];
	struct stat st;
	int fd;

	snprintf(path, sizeof(path), "/proc/%s/ns/net", pid);
	if (stat(path, &st))
		return;
	for (int i = 0; i < s->n; i++)
		if (s->ino[i] == st.st_ino)
			return;
	if (s->n == MAX_NETNS || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	s->ino[s->n] = st.st_ino;
	s->fd[s->n++] = fd;
}

static int visit_cgroup(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	char procs[PATH_MAX], pid[32];
	FILE *fp;

	(void)st; (void)ftw;
	if (type != FTW_D)
		return 0;
	snprintf(procs, sizeof(procs), "%s/cgroup.procs", path);
	fp = fopen(procs, "re");
	if (!fp)
		return 0;
	while (fgets(pid, sizeof(pid), fp)) {
		pid[strcspn(pid, "\n")] = '\0';
		add_netns(walk_set, pid);
	}
	fclose(fp);
	return 0;
}

/* One dump of one family in the current network namespace. */
static int dump(int nl, int family, int socks_fd, int32_t counts[SG_MAX_GROUPS])
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
		struct rtattr nest;
		struct rtattr fd_attr;
		__u32 fd;
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
	msg.nest.rta_len = sizeof(msg.nest) + sizeof(msg.fd_attr) + sizeof(msg.fd);
	msg.nest.rta_type = INET_DIAG_REQ_SK_BPF_STORAGES | NLA_F_NESTED;
	msg.fd_attr.rta_len = sizeof(msg.fd_attr) + sizeof(msg.fd);
	msg.fd_attr.rta_type = SK_DIAG_BPF_STORAGE_REQ_MAP_FD;
	msg.fd = (__u32)socks_fd;
	if (sendto(nl, &msg, sizeof(msg), 0, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;

	for (;;) {
		ssize_t len = recv(nl, buf, sizeof(buf), 0);
		struct nlmsghdr *h = (struct nlmsghdr *)buf;

		if (len < 0)
			return errno == EINTR ? 0 : -errno;
		for (; NLMSG_OK(h, (size_t)len); h = NLMSG_NEXT(h, len)) {
			if (h->nlmsg_type == NLMSG_DONE)
				return 0;
			if (h->nlmsg_type == NLMSG_ERROR) {
				struct nlmsgerr *e = NLMSG_DATA(h);

				return e->error ? e->error : -EIO;
			}
			struct inet_diag_msg *m = NLMSG_DATA(h);
			struct rtattr *a = (struct rtattr *)((char *)m + NLMSG_ALIGN(sizeof(*m)));
			int alen = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*m)));

			for (; RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
				if ((a->rta_type & NLA_TYPE_MASK) != INET_DIAG_SK_BPF_STORAGES)
					continue;
				struct rtattr *st = RTA_DATA(a);
				int stlen = (int)RTA_PAYLOAD(a);

				for (; RTA_OK(st, stlen); st = RTA_NEXT(st, stlen)) {
					struct rtattr *f = RTA_DATA(st);
					int flen = (int)RTA_PAYLOAD(st);

					for (; RTA_OK(f, flen); f = RTA_NEXT(f, flen)) {
						struct sg_sock *tag = RTA_DATA(f);

						if ((f->rta_type & NLA_TYPE_MASK) != SK_DIAG_BPF_STORAGE_MAP_VALUE ||
						    RTA_PAYLOAD(f) < sizeof(*tag))
							continue;
						if ((tag->flags & SG_SOCK_COUNTED) && tag->group < SG_MAX_GROUPS)
							counts[tag->group]++;
					}
				}
			}
		}
	}
}

static int count_netns(int socks_fd, int32_t counts[SG_MAX_GROUPS])
{
	int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	int r;

	if (nl < 0)
		return -errno;
	r = dump(nl, AF_INET, socks_fd, counts);
	if (!r)
		r = dump(nl, AF_INET6, socks_fd, counts);
	close(nl);
	return r;
}

static int count_all(struct sg_kernel *k, int32_t counts[SG_MAX_GROUPS])
{
	struct netns_set set = { .n = 0 };
	int self, r = 0;

	memset(counts, 0, sizeof(int32_t) * SG_MAX_GROUPS);
	self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0)
		return -errno;
	add_netns(&set, "self");
	if (k->cgroup_path[0]) {
		walk_set = &set;
		nftw(k->cgroup_path, visit_cgroup, 16, FTW_PHYS | FTW_MOUNT);
		walk_set = NULL;
	}
	for (int i = 0; i < set.n && !r; i++) {
		if (i > 0 && setns(set.fd[i], CLONE_NEWNET)) {
			r = -errno;
			break;
		}
		r = count_netns(k->socks_fd, counts);
	}
	if (setns(self, CLONE_NEWNET) && !r)
		r = -errno;
	for (int i = 0; i < set.n; i++)
		close(set.fd[i]);
	close(self);
	return r;
}

int sg_kernel_recount(struct sg_kernel *k)
{
	int32_t live[SG_MAX_GROUPS], counts[SG_MAX_GROUPS];
	uint64_t admitted[SG_MAX_GROUPS];
	int repaired = 0, r;

	for (int i = 0; i < SG_MAX_GROUPS; i++) {
		live[i] = __atomic_load_n(&k->groups[i].live, __ATOMIC_ACQUIRE);
		admitted[i] = __atomic_load_n(&k->groups[i].admitted, __ATOMIC_ACQUIRE);
	}
	if ((r = count_all(k, counts)))
		return r;
	for (int i = 0; i < SG_MAX_GROUPS; i++) {
		struct sg_group *g = &k->groups[i];

		/* Only where nothing connected or closed while we counted. */
		if (counts[i] == live[i] ||
		    __atomic_load_n(&g->live, __ATOMIC_ACQUIRE) != live[i] ||
		    __atomic_load_n(&g->admitted, __ATOMIC_ACQUIRE) != admitted[i])
			continue;
		__atomic_fetch_add(&g->live, counts[i] - live[i], __ATOMIC_ACQ_REL);
		pr_warn("group %.*s: live count drifted to %d, %d sockets hold a slot: repaired",
			SG_NAME_LEN, g->name, live[i], counts[i]);
		repaired++;
	}
	return repaired;
}
