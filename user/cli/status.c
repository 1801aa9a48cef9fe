// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* `smtpgov status` and `smtpgov events` output (see status.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>
#include "cidr.h"
#include "config.h"
#include "discover.h"
#include "json.h"
#include "log.h"
#include "loop.h"
#include "status.h"

/* What the log feedback saw and did (feedback map), if the daemon ran. */
static void feedback_print(FILE *fp, const struct sg_kernel *k, int slot, bool json)
{
	struct sg_feedback fb;
	bool have = !sg_kernel_feedback_get(k, slot, &fb);
	char when[32] = "";

	if (have && fb.last_change) {
		time_t t = (time_t)fb.last_change;
		struct tm tm;

		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
	if (json) {
		fprintf(fp, ",\"signals\":%llu,\"last_change\":", (unsigned long long)fb.signals);
		if (!fb.last_change) {
			fputs("null", fp);
			return;
		}
		fputs("{\"time\":", fp);
		sg_json_str(fp, when);
		fprintf(fp, ",\"from\":%u,\"to\":%u,\"reason\":", fb.cap_from, fb.cap_to);
		sg_json_str(fp, fb.reason);
		fputc('}', fp);
		return;
	}
	if (!have || (!fb.signals && !fb.last_change))
		return;
	fprintf(fp, "  %llu throttle signals", (unsigned long long)fb.signals);
	if (fb.last_change)
		fprintf(fp, "; last change %s: cap %u -> %u (%s)", when, fb.cap_from, fb.cap_to,
			fb.reason);
	fputc('\n', fp);
}

/* A 16-byte address (IPv4 mapped) as text; "default" for the unbound source. */
static const char *addr_str(const uint8_t a[16], char buf[INET6_ADDRSTRLEN])
{
	static const uint8_t any[16];

	if (!memcmp(a, any, 16))
		return "default";
	if (sg_addr16_is_v4(a))
		return inet_ntop(AF_INET, a + 12, buf, INET6_ADDRSTRLEN);
	return inet_ntop(AF_INET6, a, buf, INET6_ADDRSTRLEN);
}

/* The sending addresses of a group that hold, wait for or used a slot. */
static void sources_print(FILE *fp, const struct sg_kernel *k, int g, const struct sg_source *src,
			  int nsrc, bool json)
{
	bool first = true;

	if (json)
		fputs(",\"sources\":[", fp);
	for (int i = -1; i < nsrc; i++) {
		/* i == -1: the default source (slot 0, not in the map) */
		static const uint8_t none[16];
		uint32_t slot = i < 0 ? 0 : src[i].slot;
		const struct sg_srccount *c = sg_kernel_srccount(k, g, slot);
		int32_t live = __atomic_load_n(&c->live, __ATOMIC_RELAXED);
		char buf[INET6_ADDRSTRLEN];
		const char *name = addr_str(i < 0 ? none : src[i].addr, buf);

		if (!live && !c->waiting && !c->admitted)
			continue;
		if (json)
			fprintf(fp, "%s{\"source\":\"%s\",\"live\":%d,\"waiting\":%u,\"admitted\":%llu}",
				first ? "" : ",", name, live, c->waiting, (unsigned long long)c->admitted);
		else
			fprintf(fp, "  source %-39s live %d, waiting %u, admitted %llu\n", name, live,
				c->waiting, (unsigned long long)c->admitted);
		first = false;
	}
	if (json)
		fputc(']', fp);
}

static void utc(uint64_t secs, char *buf, size_t len)
{
	time_t t = (time_t)secs;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Which log the daemon learns from and what it read (pinned `logstat`). */
static void logstat_print(FILE *fp, const char *pin_dir, bool json)
{
	static const char *const states[] = {
		[SG_LOGSTAT_FOLLOWING] = "following", [SG_LOGSTAT_WAITING] = "waiting",
		[SG_LOGSTAT_ENDED] = "ended", [SG_LOGSTAT_STOPPED] = "stopped",
	};
	struct sg_logstat *m, ls;
	char since[32], last[32] = "";

	if (sg_kernel_logstat_map(pin_dir, false, &m) || !m->state) {
		if (m)
			sg_kernel_logstat_unmap(m);
		if (json)
			fputs(",\"log\":null", fp);
		else
			fputs("log: none followed (no daemon has run)\n", fp);
		return;
	}
	ls = *m;
	sg_kernel_logstat_unmap(m);
	ls.source[sizeof(ls.source) - 1] = ls.reason[sizeof(ls.reason) - 1] = '\0';
	/* A killed daemon could not say it stopped. */
	if (ls.state != SG_LOGSTAT_STOPPED && kill((pid_t)ls.pid, 0) && errno == ESRCH)
		ls.state = SG_LOGSTAT_STOPPED;
	if (ls.state >= sizeof(states) / sizeof(states[0]) || !states[ls.state])
		ls.state = SG_LOGSTAT_STOPPED;
	utc(ls.since, since, sizeof(since));
	if (ls.last_delivery)
		utc(ls.last_delivery, last, sizeof(last));
	if (json) {
		fputs(",\"log\":{\"source\":", fp);
		sg_json_str(fp, ls.source);
		fputs(",\"reason\":", fp);
		sg_json_str(fp, ls.reason);
		fprintf(fp, ",\"state\":\"%s\",\"since\":\"%s\",\"lines\":%llu,\"deliveries\":%llu,"
			"\"last_delivery\":", states[ls.state], since, (unsigned long long)ls.lines,
			(unsigned long long)ls.deliveries);
		sg_json_str(fp, last[0] ? last : NULL);
		fputc('}', fp);
		return;
	}
	fprintf(fp, "log %s (%s%s): %s since %s; %llu lines read, %llu delivery lines, last %s\n",
		ls.source, strcmp(ls.reason, "given") ? "auto: " : "", ls.reason,
		ls.state == SG_LOGSTAT_WAITING ? "waiting for it to appear" :
		ls.state == SG_LOGSTAT_ENDED ? "input ended" :
		ls.state == SG_LOGSTAT_STOPPED ? "daemon stopped; was following" : "following",
		since, (unsigned long long)ls.lines, (unsigned long long)ls.deliveries,
		last[0] ? last : "never");
}

static bool shown(const struct sg_group *g)
{
	return (g->flags & SG_GROUP_ACTIVE) || g->live != 0;
}

static void group_name(const struct sg_group *g, char buf[SG_NAME_LEN + 1])
{
	memcpy(buf, g->name, SG_NAME_LEN);
	buf[SG_NAME_LEN] = '\0';
}

int sg_status_print(FILE *fp, struct sg_kernel *k, bool json)
{
	uint32_t n4[SG_MAX_GROUPS], n6[SG_MAX_GROUPS];
	char cgroup[PATH_MAX], name[SG_NAME_LEN + 1];
	static struct sg_source src[SG_MAX_SOURCES];
	struct sg_source_alloc alloc = { 0 };
	struct sg_settings s;
	bool first = true;
	int r, nprocs, nsrc;

	if ((r = sg_kernel_settings(k, &s)))
		return r;
	nsrc = sg_kernel_sources(k, src, SG_MAX_SOURCES);
	if (nsrc < 0)
		nsrc = 0;
	sg_kernel_source_alloc(k, &alloc);
	/* A killed daemon leaves its port behind, not its listeners: count
	 * the doors (one per network namespace served). */
	int ndoors = sg_kernel_room_doors(k);

	if (!ndoors)
		s.room_port = 0;
	sg_kernel_count_ranges(k, n4, n6);
	sg_cgroup_path(k->cgroup_id, cgroup, sizeof(cgroup));
	nprocs = cgroup[0] ? sg_cgroup_nprocs(cgroup) : -1;

	if (json) {
		fprintf(fp, "{\"mode\":\"%s\",\"ports\":[", sg_mode_name(s.mode));
		for (unsigned i = 0; i < s.nports && i < SG_MAX_PORTS; i++)
			fprintf(fp, "%s%u", i ? "," : "", s.ports[i]);
		fprintf(fp, "],\"room_port\":%u,\"cgroup\":", s.room_port);
		sg_json_str(fp, cgroup[0] ? cgroup : NULL);
		fprintf(fp, ",\"processes\":%d,\"room_netns\":%d,\"pin_dir\":", nprocs, ndoors);
		sg_json_str(fp, k->pin_dir);
		fprintf(fp, ",\"max_sources\":%u,\"sources\":%d,\"sources_overflow\":%llu",
			s.max_sources ? s.max_sources - 1 : 0, nsrc, (unsigned long long)alloc.overflow);
		logstat_print(fp, k->pin_dir, true);
		fputs(",\"groups\":[", fp);
	} else {
		fprintf(fp, "mode %s, ports", sg_mode_name(s.mode));
		for (unsigned i = 0; i < s.nports && i < SG_MAX_PORTS; i++)
			fprintf(fp, "%s%u", i ? "," : " ", s.ports[i]);
		fprintf(fp, ", cgroup %s, pins %s\n", cgroup[0] ? cgroup : "(unknown)", k->pin_dir);
		if (nprocs >= 0)
			fprintf(fp, "%d processes governed (in that cgroup and below)%s\n", nprocs,
				nprocs ? "" : ": nothing is governed (see `smtpgov load --mta`)");
		if (ndoors)
			fprintf(fp, "waiting room open in %d network namespace%s (port %u in ours)\n",
				ndoors, ndoors == 1 ? "" : "s", s.room_port);
		fprintf(fp, "%d sending addresses of at most %u counted apart", nsrc,
			s.max_sources ? s.max_sources - 1 : 0);
		if (alloc.overflow)
			fprintf(fp, "; %llu connects from addresses beyond that counted as default",
				(unsigned long long)alloc.overflow);
		fputc('\n', fp);
		logstat_print(fp, k->pin_dir, false);
		fprintf(fp, "%-16s %5s %5s %5s %5s %5s %5s %10s %10s  %s\n", "GROUP", "V4", "V6",
			"LIVE", "CAP", "MIN", "MAX", "ADMITTED", "REFUSED", "VERDICT");
	}
	for (int i = 0; i < SG_MAX_GROUPS; i++) {
		const struct sg_group *g = &k->groups[i];
		int32_t live = __atomic_load_n(&g->live, __ATOMIC_RELAXED);
		bool active = g->flags & SG_GROUP_ACTIVE;

		if (!shown(g))
			continue;
		group_name(g, name);
		if (json) {
			fprintf(fp, "%s{\"name\":", first ? "" : ",");
			sg_json_str(fp, name);
			fprintf(fp, ",\"active\":%s,\"cap\":%u,\"min_cap\":%u,\"max_cap\":%u,\"live\":%d,"
				"\"admitted\":%llu,\"refused\":%llu,\"ranges4\":%u,\"ranges6\":%u,"
				"\"verdict\":\"%s\",\"events_dropped\":%llu,\"waiting\":%u,"
				"\"queue_max\":%u,\"queued\":%llu,\"queue_timeouts\":%llu,"
				"\"wait_oldest_ms\":%u,\"wait_p50_ms\":%u,\"wait_p90_ms\":%u,"
				"\"wait_p99_ms\":%u,\"idle_closed\":%llu",
				active ? "true" : "false", g->cap, g->min_cap, g->max_cap, live,
				(unsigned long long)g->admitted, (unsigned long long)g->refused,
				n4[i], n6[i], sg_verdict_name(g->verdict),
				(unsigned long long)g->events_dropped, g->waiting, g->queue_max,
				(unsigned long long)g->queued, (unsigned long long)g->queue_timeouts,
				g->wait_oldest_ms, g->wait_p50_ms, g->wait_p90_ms, g->wait_p99_ms,
				(unsigned long long)g->idle_closed);
			fprintf(fp, ",\"per_source\":%s", g->flags & SG_GROUP_PER_SOURCE ? "true" : "false");
			sources_print(fp, k, i, src, nsrc, true);
			feedback_print(fp, k, i, true);
			fputc('}', fp);
		} else {
			fprintf(fp, "%-16s %5u %5u %5d %5u %5u %5u %10llu %10llu  %s", name, n4[i],
				n6[i], live, g->cap, g->min_cap, g->max_cap,
				(unsigned long long)g->admitted, (unsigned long long)g->refused,
				sg_verdict_name(g->verdict));
			if (g->verdict == SG_VERDICT_QUEUE && !s.room_port)
				fprintf(fp, " (no waiting room open: over cap is refused)");
			else if (g->verdict == SG_VERDICT_QUEUE)
				fprintf(fp, " (waiting %u, oldest %u ms; queued %llu, timeouts %llu; "
					"wait p50/p90/p99 %u/%u/%u ms; idle sessions closed %llu)",
					g->waiting, g->wait_oldest_ms, (unsigned long long)g->queued,
					(unsigned long long)g->queue_timeouts, g->wait_p50_ms,
					g->wait_p90_ms, g->wait_p99_ms,
					(unsigned long long)g->idle_closed);
			fprintf(fp, "%s%s\n", active ? "" : " (removed from config)",
				g->flags & SG_GROUP_PER_SOURCE ? "" : " (one cap for all sources)");
			sources_print(fp, k, i, src, nsrc, false);
			feedback_print(fp, k, i, false);
		}
		first = false;
	}
	if (json)
		fputs("]}\n", fp);
	return 0;
}

struct stream {
	FILE *fp;
	struct sg_kernel *k;
	bool json;
	struct sg_loop loop;
	int sig_fd;
	struct sg_kernel_ring *rb;
};

static void on_event(void *ctx, const struct sg_event *e)
{
	struct stream *st = ctx;
	char addr[INET6_ADDRSTRLEN], when[64], name[SG_NAME_LEN + 1] = "?", comm[17];
	char srcbuf[INET6_ADDRSTRLEN];
	const char *src;
	struct timespec mono, real;
	static const char *const kinds[] = {
		[SG_EV_REFUSED] = "refused", [SG_EV_WOULD_REFUSE] = "would-refuse",
		[SG_EV_QUEUED] = "queued", [SG_EV_DEQUEUED] = "dequeued",
	};
	const char *kind = e->kind < sizeof(kinds) / sizeof(kinds[0]) && kinds[e->kind] ?
			   kinds[e->kind] : "?";
	int64_t ns;
	time_t secs;
	struct tm tm;

	clock_gettime(CLOCK_MONOTONIC, &mono);
	clock_gettime(CLOCK_REALTIME, &real);
	ns = (int64_t)real.tv_sec * 1000000000 + real.tv_nsec -
	     ((int64_t)mono.tv_sec * 1000000000 + mono.tv_nsec - (int64_t)e->ts_ns);
	secs = (time_t)(ns / 1000000000);
	gmtime_r(&secs, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	addr_str(e->addr, addr);
	src = addr_str(e->src, srcbuf);
	if (e->group < SG_MAX_GROUPS)
		group_name(&st->k->groups[e->group], name);
	memcpy(comm, e->comm, 16);
	comm[16] = '\0';
	if (st->json) {
		fprintf(st->fp, "{\"time\":\"%s.%03dZ\",\"event\":\"%s\",\"pid\":%u,\"comm\":", when,
			(int)(ns % 1000000000 / 1000000), kind, e->pid);
		sg_json_str(st->fp, comm);
		fprintf(st->fp, ",\"ip\":\"%s\",\"port\":%u,\"group\":", addr, e->port);
		sg_json_str(st->fp, name);
		fprintf(st->fp, ",\"source\":\"%s\",\"live\":%u,\"cap\":%u}\n", src, e->live, e->cap);
	} else {
		fprintf(st->fp, "%s.%03dZ %s pid=%u comm=%s dst=%s%s%s:%u src=%s group=%s live=%u cap=%u\n",
			when, (int)(ns % 1000000000 / 1000000), kind, e->pid, comm,
			strchr(addr, ':') ? "[" : "", addr, strchr(addr, ':') ? "]" : "", e->port, src,
			name, e->live, e->cap);
	}
	fflush(st->fp);
}

static int on_ring(void *arg, uint32_t events)
{
	struct stream *st = arg;

	(void)events;
	return sg_kernel_ring_consume(st->rb) < 0 ? -EIO : 0;
}

static int on_stop(void *arg, uint32_t events)
{
	struct stream *st = arg;
	struct signalfd_siginfo si;

	(void)events;
	if (read(st->sig_fd, &si, sizeof(si)) > 0)
		sg_loop_stop(&st->loop);
	return 0;
}

int sg_events_stream(FILE *fp, struct sg_kernel *k, bool json)
{
	struct stream st = { .fp = fp, .k = k, .json = json, .sig_fd = -1 };
	int r;

	if ((r = sg_loop_init(&st.loop)))
		return r;
	if ((r = sg_kernel_events(k, on_event, &st, &st.rb)))
		goto out;
	st.sig_fd = sg_stop_signalfd();
	if (st.sig_fd < 0) {
		r = st.sig_fd;
		goto out;
	}
	if ((r = sg_loop_add(&st.loop, sg_kernel_ring_fd(st.rb), EPOLLIN, on_ring, &st)) ||
	    (r = sg_loop_add(&st.loop, st.sig_fd, EPOLLIN, on_stop, &st)))
		goto out;
	r = sg_loop_run(&st.loop);
out:
	if (st.sig_fd >= 0)
		close(st.sig_fd);
	sg_kernel_ring_free(st.rb);
	sg_loop_close(&st.loop);
	return r;
}
