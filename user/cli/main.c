// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * smtpgov CLI: the command table, option parsing generated from it, and the
 * thin command bodies that call into the modules. Help text comes from the
 * same table, so it cannot drift from what is parsed.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "cidr.h"
#include "config.h"
#include "daemon.h"
#include "discover.h"
#include "kernel.h"
#include "log.h"
#include "loop.h"
#include "parse.h"
#include "replay.h"
#include "status.h"

#define SG_VERSION "0.1.0"
#define EXIT_USAGE 2
#define MAX_OPTS 12

struct opt {
	const char *name;
	const char *arg;         /* NULL: a flag */
	const char *help;
};

struct cmd;
typedef int (*cmd_fn)(const struct cmd *c, const char *const *val, char **pos, int npos);

struct cmd {
	const char *name;
	const char *args;        /* positional arguments, for help */
	const char *summary;
	struct opt opts[MAX_OPTS];
	int min_pos, max_pos;
	bool root;               /* needs root (BPF) */
	cmd_fn run;
};

/* Global options, given before the command. */
static const char *pin_dir = SG_DEFAULT_PIN_DIR;

static int usage_error(const struct cmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int usage_error(const struct cmd *c, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "smtpgov: %s%s", c ? c->name : "", c ? ": " : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see 'smtpgov %s%s--help')\n", c ? c->name : "", c ? " " : "");
	return EXIT_USAGE;
}

static int fail(int r, const char *what)
{
	pr_err("%s: %s", what, strerror(-r));
	return EXIT_FAILURE;
}

static int load_config(const char *path, struct sg_config *cfg)
{
	char err[1024];
	int r = sg_config_load(cfg, path, err, sizeof(err));

	if (r)
		pr_err("%s", err);
	return r;
}

static int open_kernel(struct sg_kernel *k)
{
	char err[PATH_MAX + 256];
	int r = sg_kernel_open(k, pin_dir, err, sizeof(err));

	if (r == -ENOENT)
		pr_err("not loaded: no pins in %s (run `smtpgov load --cgroup PATH`)", pin_dir);
	else if (r)
		pr_err("%s", err);
	return r;
}

/* Say so when the governed cgroup holds no process: nothing would be governed. */
static void warn_empty(const char *cgroup)
{
	char hint[PATH_MAX + 128];

	if (sg_cgroup_nprocs(cgroup) != 0)
		return;
	sg_cgroup_hint(cgroup, hint, sizeof(hint));
	if (hint[0])
		pr_warn("cgroup %s and its descendants hold no process, so nothing is governed; %s "
			"(--cgroup that, or --mta/--pid to find it)", cgroup, hint);
	else
		pr_warn("cgroup %s and its descendants hold no process, so nothing is governed until "
			"one starts there (--mta or --pid finds the MTA's cgroup)", cgroup);
}

static int cmd_load(const struct cmd *c, const char *const *v, char **pos, int npos)
{
	enum { O_CGROUP, O_MTA, O_PID, O_CONFIG, O_LOG, O_DRY_RUN, O_NO_FOLLOW };
	struct sg_daemon_opts dopts = { .recount_ms = 30000 };
	struct sg_config *cfg = calloc(1, sizeof(*cfg));
	char cgroup[PATH_MAX], how[128];
	struct sg_kernel k;
	char err[1024];
	bool adopted;
	int r;

	(void)pos; (void)npos;
	if (!cfg)
		return fail(-ENOMEM, "load");
	if (load_config(v[O_CONFIG], cfg)) {
		free(cfg);
		return EXIT_FAILURE;
	}
	r = sg_find_cgroup(v[O_CGROUP], v[O_MTA], v[O_PID], cfg->mta, cgroup, sizeof(cgroup),
			   how, sizeof(how), err, sizeof(err));
	if (r) {
		sg_config_free(cfg);
		free(cfg);
		/* none or several of --cgroup/--mta/--pid: a usage error */
		if (!strncmp(err, "--", 2) || !strncmp(err, "give one of", 11) ||
		    !strncmp(err, "bad ", 4))
			return usage_error(c, "%s", err);
		pr_err("load: %s", err);
		return EXIT_FAILURE;
	}
	if (how[0])
		pr_info("%s is in cgroup %s", how, cgroup);
	if (!v[O_CGROUP] && !v[O_PID])
		dopts.follow_mta = v[O_MTA] ? v[O_MTA] : cfg->mta;
	if (v[O_DRY_RUN])
		cfg->mode = SG_MODE_DRY_RUN;
	if (!v[O_NO_FOLLOW]) {
		/* From here on SIGINT/SIGTERM stop the daemon cleanly (signalfd),
		 * also when they arrive while it is still attaching. */
		sg_block_stop_signals();
	}
	r = sg_kernel_load(&k, pin_dir, cgroup, cfg, &adopted, err, sizeof(err));
	if (r) {
		pr_err("%s", err);
		goto out;
	}
	if (adopted)
		pr_info("adopted the instance pinned in %s on cgroup %s (live counts kept); %s mode",
			pin_dir, cgroup, sg_mode_name(cfg->mode));
	else
		pr_info("attached to cgroup %s, pinned in %s; %s mode, %u groups",
			cgroup, pin_dir, sg_mode_name(cfg->mode), cfg->ngroups);
	warn_empty(cgroup);
	if (!v[O_NO_FOLLOW]) {
		dopts.log = v[O_LOG];
		dopts.mta = v[O_MTA];
		r = sg_daemon_run(&k, cfg, &dopts);
	}
	sg_kernel_close(&k);
out:
	sg_config_free(cfg);
	free(cfg);
	return r ? EXIT_FAILURE : 0;
}

static int cmd_unload(const struct cmd *c, const char *const *v, char **pos, int npos)
{
	char err[1024];

	(void)c; (void)v; (void)pos; (void)npos;
	if (sg_kernel_unload(pin_dir, err, sizeof(err))) {
		pr_err("%s", err);
		return EXIT_FAILURE;
	}
	pr_info("detached and removed every pin in %s", pin_dir);
	return 0;
}

/* status and events: the pinned instance, printed (--json: v[0]) to stdout. */
static int print_kernel(int (*print)(FILE *, struct sg_kernel *, bool), const char *const *v,
			const char *what)
{
	struct sg_kernel k;
	int r;

	if (open_kernel(&k))
		return EXIT_FAILURE;
	r = print(stdout, &k, v[0] != NULL);
	sg_kernel_close(&k);
	return r ? fail(r, what) : 0;
}

static int cmd_status(const struct cmd *c, const char *const *v, char **pos, int npos)
{
	(void)c; (void)pos; (void)npos;
	return print_kernel(sg_status_print, v, "status");
}

static int parse_u32(const char *s, uint32_t *out)
{
	char *end;
	unsigned long n;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	n = strtoul(s, &end, 10);
	if (*end || errno || n > 100000)
		return -EINVAL;
	*out = (uint32_t)n;
	return 0;
}

static int cmd_set(const struct cmd *c, const char *const *v, char **pos, int npos)
{
	enum { O_CAP, O_FORCE };
	struct sg_kernel k;
	uint32_t cap, old;
	int slot;

	(void)npos;
	if (!v[O_CAP])
		return usage_error(c, "--cap N is required");
	if (parse_u32(v[O_CAP], &cap))
		return usage_error(c, "bad --cap '%s': want a number from 0 to 100000", v[O_CAP]);
	if (open_kernel(&k))
		return EXIT_FAILURE;
	slot = sg_kernel_group(&k, pos[0]);
	if (slot < 0 || !(k.groups[slot].flags & SG_GROUP_ACTIVE)) {
		pr_err("set: no group '%s' (see `smtpgov status`)", pos[0]);
		sg_kernel_close(&k);
		return EXIT_FAILURE;
	}
	if (!v[O_FORCE] && (cap < k.groups[slot].min_cap || cap > k.groups[slot].max_cap)) {
		pr_err("set: cap %u for %s is outside [min_cap %u, max_cap %u] (--force to override)",
		       cap, pos[0], k.groups[slot].min_cap, k.groups[slot].max_cap);
		sg_kernel_close(&k);
		return EXIT_FAILURE;
	}
	old = k.groups[slot].cap;
	sg_kernel_set_cap(&k, slot, cap);
	printf("%s: cap %u -> %u\n", pos[0], old, cap);
	sg_kernel_close(&k);
	return 0;
}

static int cmd_lookup(const struct cmd *c, const char *const *v, char **pos, int npos)
{
	char err[PATH_MAX + 256];
	struct sg_cidr addr;
	struct sg_kernel k;
	int g;

	(void)npos;
	if (sg_addr_parse(pos[0], &addr))
		return usage_error(c, "'%s' is not an IP address", pos[0]);
	/* The running instance decides when there is one, else the config. */
	if (!v[0] && !sg_kernel_open(&k, pin_dir, err, sizeof(err))) {
		g = sg_kernel_lookup(&k, &addr);
		printf("%.*s\n", SG_NAME_LEN, g >= 0 ? k.groups[g].name : "none");
		sg_kernel_close(&k);
		return 0;
	}
	struct sg_config *cfg = calloc(1, sizeof(*cfg));

	if (!cfg)
		return fail(-ENOMEM, "lookup");
	if (load_config(v[0], cfg)) {
		free(cfg);
		return EXIT_FAILURE;
	}
	g = sg_ranges_lookup(&cfg->ranges, &addr);
	printf("%s\n", g >= 0 ? cfg->groups[g].name : "none");
	sg_config_free(cfg);
	free(cfg);
	return 0;
}

static int cmd_events(const struct cmd *c, const char *const *v, char **pos, int npos)
{
	(void)c; (void)pos; (void)npos;
	setvbuf(stdout, NULL, _IOLBF, 0);
	return print_kernel(sg_events_stream, v, "events");
}

/* Shared by parse and replay: config and log format. */
static int offline_setup(const struct cmd *c, const char *config, const char *format,
			 struct sg_config **cfg, int *fmt)
{
	*fmt = format ? sg_format_parse(format) : SG_FMT_AUTO;
	if (*fmt < 0)
		return usage_error(c, "bad --format '%s': want postfix, exim or auto", format);
	if (!(*cfg = calloc(1, sizeof(**cfg))))
		return fail(-ENOMEM, c->name);
	if (load_config(config, *cfg)) {
		free(*cfg);
		return EXIT_FAILURE;
	}
	return 0;
}

static int cmd_parse(const struct cmd *c, const char *const *v, char **pos, int npos)
{
	enum { O_CONFIG, O_FORMAT };
	struct sg_config *cfg;
	int fmt, r;

	(void)pos; (void)npos;
	if ((r = offline_setup(c, v[O_CONFIG], v[O_FORMAT], &cfg, &fmt)))
		return r;
	r = sg_parse_run(stdin, stdout, cfg, fmt, (int64_t)time(NULL));
	sg_config_free(cfg);
	free(cfg);
	return r ? fail(r, "parse") : 0;
}

static int cmd_replay(const struct cmd *c, const char *const *v, char **pos, int npos)
{
	enum { O_CONFIG, O_FORMAT, O_CSV };
	struct sg_config *cfg;
	FILE *in = stdin;
	int fmt, r;

	(void)npos;
	if ((r = offline_setup(c, v[O_CONFIG], v[O_FORMAT], &cfg, &fmt)))
		return r;
	if (strcmp(pos[0], "-") && !(in = fopen(pos[0], "re"))) {
		pr_err("replay: %s: %s", pos[0], strerror(errno));
		sg_config_free(cfg);
		free(cfg);
		return EXIT_FAILURE;
	}
	r = sg_replay_run(in, stdout, cfg, fmt, (int64_t)time(NULL), v[O_CSV] != NULL);
	if (in != stdin)
		fclose(in);
	sg_config_free(cfg);
	free(cfg);
	return r ? fail(r, "replay") : 0;
}

static const struct cmd cmds[] = {
	{ "load", "", "attach to the MTA's cgroup (--cgroup, --mta or --pid) or adopt the pinned instance, then follow the MTA log",
	  { { "cgroup", "PATH", "cgroup v2 directory of the MTA" },
	    { "mta", "postfix[:DIR]|exim[:PIDFILE]", "govern the cgroup of the running MTA (its pid file)" },
	    { "pid", "PID", "govern the cgroup of this process (a container's: docker inspect)" },
	    { "config", "FILE", "INI config (default: the built-in groups)" },
	    { "log", "auto|FILE|-|journal[:PATH]", "MTA log to follow (default: [global] log, auto)" },
	    { "dry-run", NULL, "count would-be refusals, refuse nothing" },
	    { "no-follow", NULL, "attach and return; enforcement stays pinned" } },
	  0, 0, true, cmd_load },
	{ "unload", "", "detach every program and remove every pin", { { 0 } }, 0, 0, true, cmd_unload },
	{ "status", "", "per group: ranges, live, cap, bounds, admitted, refused",
	  { { "json", NULL, "print one JSON object" } }, 0, 0, true, cmd_status },
	{ "set", "GROUP", "change a group's cap now",
	  { { "cap", "N", "new cap (required)" },
	    { "force", NULL, "allow a cap outside [min_cap, max_cap]" } },
	  1, 1, true, cmd_set },
	{ "lookup", "IP", "print the group of an address, or none",
	  { { "config", "FILE", "look up in this config instead of the running instance" } },
	  1, 1, false, cmd_lookup },
	{ "events", "", "stream refusal and waiting-room events (time, pid, comm, destination, group, live/cap)",
	  { { "json", NULL, "one JSON object per event" } }, 0, 0, true, cmd_events },
	{ "parse", "", "read an MTA log on standard input, print one JSON object per delivery event",
	  { { "config", "FILE", "INI config (default: the built-in groups)" },
	    { "format", "F", "postfix, exim or auto (default: auto, per line)" } },
	  0, 0, false, cmd_parse },
	{ "replay", "LOG", "run the controller over a historical log (- for stdin): cap timeline per group",
	  { { "config", "FILE", "INI config (default: the built-in groups)" },
	    { "format", "F", "postfix, exim or auto (default: auto, per line)" },
	    { "csv", NULL, "one CSV row per change: time,group,from,to,reason" } },
	  1, 1, false, cmd_replay },
};
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static void cmd_help(FILE *fp, const struct cmd *c)
{
	fprintf(fp, "usage: smtpgov [GLOBAL OPTIONS] %s [OPTIONS]%s%s\n\n%s\n\noptions:\n", c->name,
		c->args[0] ? " " : "", c->args, c->summary);
	for (const struct opt *o = c->opts; o->name; o++) {
		char left[64];

		snprintf(left, sizeof(left), "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
		fprintf(fp, "  %-24s %s\n", left, o->help);
	}
	fprintf(fp, "  %-24s %s\n", "-h, --help", "show this help");
}

static void main_help(FILE *fp)
{
	fprintf(fp, "usage: smtpgov [GLOBAL OPTIONS] COMMAND [OPTIONS]\n\n"
		"Caps concurrent SMTP connections per mail provider in the kernel.\n\ncommands:\n");
	for (size_t i = 0; i < NCMDS; i++)
		fprintf(fp, "  %-10s %s\n", cmds[i].name, cmds[i].summary);
	fprintf(fp, "\nglobal options:\n"
		"  --pin-dir DIR   bpffs directory of the pins (default %s, or $SMTPGOV_PIN_DIR)\n"
		"  -v, --verbose   more detail (libbpf's messages too)\n"
		"  -h, --help      show this help\n"
		"  --version       print the version\n"
		"\n'smtpgov COMMAND --help' describes each command.\n", SG_DEFAULT_PIN_DIR);
}

static int run_cmd(const struct cmd *c, int argc, char **argv)
{
	struct option lopts[MAX_OPTS + 2];
	const char *val[MAX_OPTS] = { 0 };
	int n = 0, ch, npos;

	for (; c->opts[n].name; n++)
		lopts[n] = (struct option){ c->opts[n].name, c->opts[n].arg ? required_argument : no_argument,
					    NULL, 256 + n };
	lopts[n] = (struct option){ "help", no_argument, NULL, 'h' };
	lopts[n + 1] = (struct option){ 0 };
	optind = 0;     /* 0, not 1: glibc forgets the "+" of the global parse */
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":h", lopts, NULL)) != -1) {
		if (ch == 'h') {
			cmd_help(stdout, c);
			return 0;
		}
		if (ch == '?')
			return usage_error(c, "unknown option '%s'", argv[optind - 1]);
		if (ch == ':')
			return usage_error(c, "option '%s' needs a value", argv[optind - 1]);
		if (val[ch - 256] && c->opts[ch - 256].arg)
			return usage_error(c, "--%s given twice", c->opts[ch - 256].name);
		val[ch - 256] = optarg ? optarg : "1";
	}
	npos = argc - optind;
	if (npos < c->min_pos)
		return usage_error(c, "missing %s", c->args);
	if (npos > c->max_pos)
		return usage_error(c, "unexpected argument '%s'", argv[optind + c->max_pos]);
	if (c->root && geteuid() != 0) {
		pr_err("%s needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN): run it with sudo", c->name);
		return EXIT_FAILURE;
	}
	return c->run(c, val, argv + optind, npos);
}

int main(int argc, char **argv)
{
	static const struct option gopts[] = {
		{ "pin-dir", required_argument, NULL, 'p' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	int ch;

	if (getenv("SMTPGOV_PIN_DIR") && *getenv("SMTPGOV_PIN_DIR"))
		pin_dir = getenv("SMTPGOV_PIN_DIR");
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+:vh", gopts, NULL)) != -1) {
		switch (ch) {
		case 'p': pin_dir = optarg; break;
		case 'v': sg_log_level = SG_LOG_DEBUG; break;
		case 'h': main_help(stdout); return 0;
		case 'V': printf("smtpgov %s\n", SG_VERSION); return 0;
		case ':': return usage_error(NULL, "option '%s' needs a value", argv[optind - 1]);
		default: return usage_error(NULL, "unknown option '%s'", argv[optind - 1]);
		}
	}
	sg_log_libbpf();
	if (optind >= argc) {
		main_help(stderr);
		return EXIT_USAGE;
	}
	if (pin_dir[0] != '/' || strlen(pin_dir) >= PATH_MAX - 32)
		return usage_error(NULL, "--pin-dir '%s' must be an absolute path", pin_dir);
	for (size_t i = 0; i < NCMDS; i++)
		if (!strcmp(argv[optind], cmds[i].name))
			return run_cmd(&cmds[i], argc - optind, argv + optind);
	return usage_error(NULL, "unknown command '%s'", argv[optind]);
}
