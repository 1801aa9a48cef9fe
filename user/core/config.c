// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Configuration: the embedded groups merged with an INI file (libinih).
 * Each key is one row of `keys` below: its section, type, field and bounds;
 * parsing and validation come from that table.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <libgen.h>
#include <pcre2.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "builtin.h"
#include "config.h"
#include "mta.h"
#include "logsource.h"

enum section { S_GLOBAL, S_GROUP, S_RULE };

enum ktype {
	K_UINT,      /* uint32_t within [min, max] */
	K_DUR,       /* uint32_t seconds, Postfix-style units */
	K_MSEC,      /* uint32_t milliseconds: "250ms" or K_DUR's forms */
	K_FRACTION,  /* double within (0, 1) */
	K_PORTS,     /* global ports list */
	K_BOOL,
	K_PATH,      /* char[PATH_MAX] */
	K_MODE,      /* enforce | dry-run */
	K_VERDICT,   /* refuse | queue */
	K_RANGES,    /* group prefixes, appended */
	K_RANGES_FILE,
	K_GROUPREF,  /* rule: group name, resolved at the end */
	K_DSN,
	K_REGEX,
	K_CLASS,
	K_ACTION,
};

struct key {
	enum section section;
	const char *name;
	enum ktype type;
	size_t off;          /* into sg_config, sg_group_conf or sg_rule */
	double min, max;
};

#define G(f) offsetof(struct sg_config, f)
#define GR(f) offsetof(struct sg_group_conf, f)
#define R(f) offsetof(struct sg_rule, f)
#define DAY (24 * 3600)

static const struct key keys[] = {
	{ S_GLOBAL, "ports",   K_PORTS,   G(ports),   1, 65535 },
	{ S_GLOBAL, "mode",    K_MODE,    G(mode),    0, 0 },
	{ S_GLOBAL, "builtin", K_BOOL,    G(builtin), 0, 0 },
	{ S_GLOBAL, "state",   K_PATH,    G(state),   0, 0 },
	{ S_GLOBAL, "log",     K_PATH,    G(log),     0, 0 },
	{ S_GLOBAL, "mta",     K_PATH,    G(mta),     0, 0 },
	{ S_GLOBAL, "journal", K_PATH,    G(journal), 0, 0 },
	{ S_GLOBAL, "blind_warning", K_DUR, G(blind_warning), 0, 7 * DAY },
	{ S_GLOBAL, "verdict", K_VERDICT, G(verdict), 0, 0 },
	{ S_GLOBAL, "retry_command", K_PATH, G(retry_command), 0, 0 },
	{ S_GLOBAL, "retry_delay", K_DUR, G(retry_delay), 0, 3600 },
	{ S_GLOBAL, "retry_timeout", K_DUR, G(retry_timeout), 1, 3600 },
	{ S_GLOBAL, "max_sources", K_UINT, G(max_sources), 1, SG_MAX_SOURCES - 1 },
	{ S_GLOBAL, "room_max", K_UINT,   G(room_max), 1, 1000000 },
	{ S_GLOBAL, "idle_close", K_MSEC, G(idle_close), 0, 3600 * 1000 },

	{ S_GROUP, "ranges",            K_RANGES,      0,                      0, 0 },
	{ S_GROUP, "ranges_file",       K_RANGES_FILE, 0,                      0, 0 },
	{ S_GROUP, "cap",               K_UINT,     GR(cap),               0, 100000 },
	{ S_GROUP, "min_cap",           K_UINT,     GR(min_cap),           1, 100000 },
	{ S_GROUP, "max_cap",           K_UINT,     GR(max_cap),           1, 100000 },
	{ S_GROUP, "decrease",          K_FRACTION, GR(decrease),          0, 1 },
	{ S_GROUP, "cooldown",          K_DUR,      GR(cooldown),          0, DAY },
	{ S_GROUP, "increase_after",    K_UINT,     GR(increase_after),    1, 1000000 },
	{ S_GROUP, "increase_interval", K_DUR,      GR(increase_interval), 1, 7 * DAY },
	{ S_GROUP, "pause",             K_DUR,      GR(pause),             0, 7 * DAY },
	{ S_GROUP, "verdict",           K_VERDICT,  GR(verdict),           0, 0 },
	{ S_GROUP, "queue_max",         K_UINT,     GR(queue_max),         0, 100000 },
	{ S_GROUP, "queue_wait",        K_DUR,      GR(queue_wait),        1, 3600 },
	{ S_GROUP, "per_source",        K_BOOL,     GR(per_source),        0, 0 },
	{ S_GROUP, "idle_close",        K_MSEC,     GR(idle_close),        0, 3600 * 1000 },

	{ S_RULE, "group",  K_GROUPREF, R(group),  0, 0 },
	{ S_RULE, "dsn",    K_DSN,      R(dsn),    0, 0 },
	{ S_RULE, "match",  K_REGEX,    R(match),  0, 0 },
	{ S_RULE, "class",  K_CLASS,    R(class),  0, 0 },
	{ S_RULE, "action", K_ACTION,   R(action), 0, 0 },
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

/* A [group] section of the file, before it is merged with the built-ins. */
struct fgroup {
	struct sg_group_conf g;
	bool set[NKEYS];
	struct sg_cidr *r;
	size_t nr, ar;
	bool ranges_set;
};

struct parse {
	struct sg_config *cfg;
	const char *path;
	struct fgroup fg[SG_MAX_GROUPS];
	unsigned nfg;
	char rule_group[SG_MAX_RULES][SG_NAME_LEN];
	bool set_global[NKEYS];
	bool rule_set[NKEYS];
	char cursec[128];      /* last section seen, to spot a new one */
	enum section sec;
	void *obj;             /* field base of the current section */
	bool *set;             /* which keys it has set */
	char *err;
	size_t errlen;
};

static const char *const class_names[] = { "none", "concurrency", "rate", "reputation", "other" };
static const char *const action_names[] = { "decrease", "pause", "ignore" };
static const char *const mode_names[] = { "enforce", "dry-run" };
static const char *const verdict_names[] = { "refuse", "queue" };

#define NAMEOF(tab, i) ((unsigned)(i) < sizeof(tab) / sizeof(tab[0]) ? tab[i] : "?")
const char *sg_class_name(int c) { return NAMEOF(class_names, c); }
const char *sg_action_name(int a) { return NAMEOF(action_names, a); }
const char *sg_mode_name(uint32_t m) { return NAMEOF(mode_names, m); }
const char *sg_verdict_name(uint32_t v) { return NAMEOF(verdict_names, v); }

static int lookup_name(const char *const *tab, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(tab[i], s))
			return (int)i;
	return -1;
}
#define LOOKUP(tab, s) lookup_name(tab, sizeof(tab) / sizeof(tab[0]), s)

/* The index of a name in the list of an enumerated key's values, or -1. */
static int enum_value(int type, const char *v)
{
	switch (type) {
	case K_MODE: return LOOKUP(mode_names, v);
	case K_VERDICT: return LOOKUP(verdict_names, v);
	case K_CLASS: return LOOKUP(class_names, v);
	default: return LOOKUP(action_names, v);
	}
}

int sg_parse_duration(const char *s, uint32_t *out)
{
	char *end;
	unsigned long long n, mult = 1;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (*end) {
	case '\0': case 's': break;
	case 'm': mult = 60; break;
	case 'h': mult = 3600; break;
	case 'd': mult = DAY; break;
	case 'w': mult = 7 * DAY; break;
	default: return -EINVAL;
	}
	if (*end && end[1])
		return -EINVAL;
	if (n > UINT32_MAX / mult)
		return -ERANGE;
	*out = (uint32_t)(n * mult);
	return 0;
}

static int parse_uint(const char *s, unsigned long *out)
{
	char *end;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	*out = strtoul(s, &end, 10);
	return *end || errno ? -EINVAL : 0;
}

int sg_parse_duration_ms(const char *s, uint32_t *out)
{
	size_t n = strlen(s);
	uint32_t v;
	int r;

	if (n > 2 && !strcmp(s + n - 2, "ms")) {
		char digits[16];
		unsigned long ms;

		if (n - 2 >= sizeof(digits))
			return -EINVAL;
		memcpy(digits, s, n - 2);
		digits[n - 2] = '\0';
		if (parse_uint(digits, &ms) || ms > UINT32_MAX)
			return -EINVAL;
		*out = (uint32_t)ms;
		return 0;
	}
	if ((r = sg_parse_duration(s, &v)))
		return r;
	if (v > UINT32_MAX / 1000)
		return -ERANGE;
	*out = v * 1000;
	return 0;
}

static bool valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= SG_NAME_LEN)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("._-", *s))
			return false;
	return true;
}

static int fgroup_add_range(struct fgroup *f, const struct sg_cidr *c)
{
	if (sg_grow(&f->r, &f->ar, f->nr, sizeof(*f->r), 16))
		return -ENOMEM;
	f->r[f->nr++] = *c;
	f->ranges_set = true;
	return 0;
}

/* Whitespace- or comma-separated prefixes; '#' starts a comment. */
static int add_ranges(struct parse *p, struct fgroup *f, const char *list, const char *where)
{
	char *dup = strdup(list), *save = NULL, *tok;
	char why[64];
	int r = 0;

	if (!dup)
		return -ENOMEM;
	char *hash = strchr(dup, '#');
	if (hash)
		*hash = '\0';
	for (tok = strtok_r(dup, " \t\r\n,", &save); tok; tok = strtok_r(NULL, " \t\r\n,", &save)) {
		struct sg_cidr c;

		if (sg_cidr_parse(tok, false, &c, why, sizeof(why))) {
			snprintf(p->err, p->errlen, "%sbad CIDR '%s' in [group %s]: %s",
				 where, tok, f->g.name, why);
			r = -EINVAL;
			break;
		}
		r = fgroup_add_range(f, &c);
		if (r)
			break;
	}
	free(dup);
	return r;
}

static int add_ranges_file(struct parse *p, struct fgroup *f, const char *file)
{
	char path[PATH_MAX], line[512], where[PATH_MAX + 32];
	unsigned lineno = 0;
	FILE *fp;
	int r = 0;

	if (file[0] != '/' && p->path) {
		char *dir = strdup(p->path);

		if (!dir)
			return -ENOMEM;
		snprintf(path, sizeof(path), "%s/%s", dirname(dir), file);
		free(dir);
	} else {
		snprintf(path, sizeof(path), "%s", file);
	}
	fp = fopen(path, "re");
	if (!fp) {
		r = -errno;
		snprintf(p->err, p->errlen, "ranges_file %s of [group %s]: %s",
			 path, f->g.name, strerror(errno));
		return r;
	}
	f->ranges_set = true;
	while (fgets(line, sizeof(line), fp)) {
		lineno++;
		snprintf(where, sizeof(where), "%s:%u: ", path, lineno);
		r = add_ranges(p, f, line, where);
		if (r)
			break;
	}
	fclose(fp);
	return r;
}

/* A group's defaults; verdict and idle_close come from [global]. */
static void group_defaults(struct sg_group_conf *g, const char *name, const struct sg_config *cfg)
{
	memset(g, 0, sizeof(*g));
	snprintf(g->name, sizeof(g->name), "%s", name);
	g->cap = 2;
	g->min_cap = 1;
	g->max_cap = 10;
	g->decrease = 0.5;
	g->cooldown = 60;
	g->increase_after = 50;
	g->increase_interval = 10 * 60;
	g->pause = 15 * 60;
	g->verdict = cfg->verdict;
	g->queue_max = 1000;
	g->per_source = true;
	g->queue_wait = 120;
	g->idle_close = cfg->idle_close;
}

/* A new [section]: set p->sec, p->obj and p->set for the keys that follow. */
static int enter_section(struct parse *p, const char *section)
{
	char kind[16] = "", name[128] = "";

	snprintf(p->cursec, sizeof(p->cursec), "%s", section);
	if (!strcmp(section, "global")) {
		p->sec = S_GLOBAL;
		p->obj = p->cfg;
		p->set = p->set_global;
		return 0;
	}
	if (sscanf(section, "%15s %127s", kind, name) != 2 || !valid_name(name)) {
		snprintf(p->err, p->errlen,
			 "bad section [%s]: want [global], [group NAME] or [rule NAME] "
			 "(NAME: letters, digits, . _ -, at most %d characters)",
			 section, SG_NAME_LEN - 1);
		return -EINVAL;
	}
	if (!strcmp(kind, "group")) {
		for (unsigned i = 0; i < p->nfg; i++)
			if (!strcmp(p->fg[i].g.name, name)) {
				snprintf(p->err, p->errlen, "[group %s] defined twice", name);
				return -EINVAL;
			}
		if (p->nfg == SG_MAX_GROUPS) {
			snprintf(p->err, p->errlen, "more than %d groups", SG_MAX_GROUPS);
			return -E2BIG;
		}
		struct fgroup *f = &p->fg[p->nfg++];
		group_defaults(&f->g, name, p->cfg);
		p->sec = S_GROUP;
		p->obj = &f->g;
		p->set = f->set;
		return 0;
	}
	if (!strcmp(kind, "rule")) {
		struct sg_config *cfg = p->cfg;

		if (cfg->nrules == SG_MAX_RULES) {
			snprintf(p->err, p->errlen, "more than %d rules", SG_MAX_RULES);
			return -E2BIG;
		}
		struct sg_rule *ru = &cfg->rules[cfg->nrules++];
		memset(ru, 0, sizeof(*ru));
		snprintf(ru->name, sizeof(ru->name), "%s", name);
		ru->group = -1;
		ru->class = SG_CLASS_CONCURRENCY;
		ru->action = SG_ACTION_DECREASE;
		p->rule_group[cfg->nrules - 1][0] = '\0';
		memset(p->rule_set, 0, sizeof(p->rule_set));
		p->sec = S_RULE;
		p->obj = ru;
		p->set = p->rule_set;
		return 0;
	}
	snprintf(p->err, p->errlen, "unknown section [%s]", section);
	return -EINVAL;
}

static int set_value(struct parse *p, const struct key *k, const char *v)
{
	char *field = (char *)p->obj + k->off;
	unsigned long n;
	int i;

	switch (k->type) {
	case K_UINT:
		if (parse_uint(v, &n) || n < k->min || n > k->max)
			goto range;
		*(uint32_t *)field = (uint32_t)n;
		return 0;
	case K_DUR: {
		uint32_t d;

		if (sg_parse_duration(v, &d) || d < k->min || d > k->max)
			goto range;
		*(uint32_t *)field = d;
		return 0;
	}
	case K_MSEC: {
		uint32_t d;

		if (sg_parse_duration_ms(v, &d) || d < k->min || d > k->max)
			goto range;
		*(uint32_t *)field = d;
		return 0;
	}
	case K_FRACTION: {
		char *end;
		double d = strtod(v, &end);

		if (*end || end == v || !(d > k->min && d < k->max))
			goto range;
		*(double *)field = d;
		return 0;
	}
	case K_PORTS: {
		struct sg_config *cfg = p->cfg;
		char *dup = strdup(v), *save = NULL, *tok;

		if (!dup)
			return -ENOMEM;
		cfg->nports = 0;
		memset(cfg->ports, 0, sizeof(cfg->ports));
		for (tok = strtok_r(dup, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
			if (parse_uint(tok, &n) || n < 1 || n > 65535 || cfg->nports == SG_MAX_PORTS) {
				free(dup);
				goto range;
			}
			cfg->ports[cfg->nports++] = (uint16_t)n;
		}
		free(dup);
		if (!cfg->nports)
			goto range;
		return 0;
	}
	case K_BOOL:
		if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1"))
			*(bool *)field = true;
		else if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "0"))
			*(bool *)field = false;
		else
			goto range;
		return 0;
	case K_PATH:
		if (!*v || strlen(v) >= PATH_MAX)
			goto range;
		strcpy(field, v);
		return 0;
	case K_MODE:
	case K_VERDICT:
	case K_CLASS:
	case K_ACTION:
		/* a name out of a list: the field is its index (uint32_t or int) */
		if ((i = enum_value(k->type, v)) < 0)
			goto range;
		memcpy(field, &i, sizeof(i));
		return 0;
	case K_RANGES:
		return add_ranges(p, (struct fgroup *)p->obj, v, "");
	case K_RANGES_FILE:
		return add_ranges_file(p, (struct fgroup *)p->obj, v);
	case K_GROUPREF:
		if (!valid_name(v))
			goto range;
		snprintf(p->rule_group[p->cfg->nrules - 1], SG_NAME_LEN, "%s", v);
		return 0;
	case K_DSN: {
		unsigned a, b, c;
		char tail;

		if (sscanf(v, "%u.%u.%u%c", &a, &b, &c, &tail) != 3 || (a != 4 && a != 5) ||
		    strlen(v) >= sizeof(((struct sg_rule *)0)->dsn))
			goto range;
		strcpy(field, v);
		return 0;
	}
	case K_REGEX: {
		int code;
		PCRE2_SIZE off;
		pcre2_code *re = pcre2_compile((PCRE2_SPTR)v, PCRE2_ZERO_TERMINATED,
					       PCRE2_CASELESS, &code, &off, NULL);
		if (!re) {
			PCRE2_UCHAR msg[128];

			pcre2_get_error_message(code, msg, sizeof(msg));
			snprintf(p->err, p->errlen, "bad regex for 'match' in [%s] at offset %zu: %s",
				 p->cursec, (size_t)off, (char *)msg);
			return -EINVAL;
		}
		pcre2_code_free(re);
		free(*(char **)field);
		if (!(*(char **)field = strdup(v)))
			return -ENOMEM;
		return 0;
	}
	}
range:
	snprintf(p->err, p->errlen, "bad value '%s' for '%s' in [%s]", v, k->name, p->cursec);
	return -EINVAL;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse *p = user;
	const struct key *k = NULL;
	size_t i;

	if (p->err[0])
		return 0;      /* report the first error only */
	if (!section[0]) {
		snprintf(p->err, p->errlen, "key '%s' before the first section header "
			 "(put it under [global], [group NAME] or [rule NAME])", name);
		return 0;
	}
	if (strcmp(section, p->cursec) && enter_section(p, section))
		return 0;
	for (i = 0; i < NKEYS; i++)
		if (keys[i].section == p->sec && !strcmp(keys[i].name, name)) {
			k = &keys[i];
			break;
		}
	if (!k) {
		snprintf(p->err, p->errlen, "unknown key '%s' in [%s]", name, section);
		return 0;
	}
	/* Repeats append to lists (and continue them on indented lines). */
	if (p->set[i] && k->type != K_RANGES && k->type != K_RANGES_FILE) {
		snprintf(p->err, p->errlen, "'%s' given twice in [%s]", name, section);
		return 0;
	}
	p->set[i] = true;
	return set_value(p, k, value) ? 0 : 1;
}

static bool valid_section(const char *sec)
{
	char kind[16], name[128], extra[2];

	if (!strcmp(sec, "global"))
		return true;
	return sscanf(sec, "%15s %127s %1s", kind, name, extra) == 2 &&
	       (!strcmp(kind, "group") || !strcmp(kind, "rule")) && valid_name(name);
}

/*
 * Before inih: refuse what it would silently mangle, and check every
 * section header, also of sections without keys (inih never reports
 * those). inih reads a line into INI_MAX_LINE bytes with its newline, so
 * a longer one is split into two lines (and every line number after it
 * is off by one); it cuts a section name at MAX_SECTION - 1 and a key at
 * MAX_NAME - 1 characters ("[group" + 40 spaces + "partner]" would make
 * a group "part").
 */
#define INI_MAX_SECTION 50   /* inih's MAX_SECTION and MAX_NAME, not exported */
#define LINE_MAX_CHARS (INI_MAX_LINE - 2)

static int prescan(FILE *fp, char *err, size_t errlen, const char *path)
{
	char *line = NULL;
	size_t cap = 0;
	unsigned lineno = 0;
	ssize_t n;
	int r = 0;

	while (!r && (n = getline(&line, &cap, fp)) > 0) {
		size_t len = (size_t)n - (line[n - 1] == '\n');
		char *s = line, *end;

		lineno++;
		line[len] = '\0';     /* the error quotes the line: not its newline */
		if (len > LINE_MAX_CHARS) {
			snprintf(err, errlen, "%s:%u: line longer than %d characters; "
				 "continue a long value on indented lines", path, lineno, LINE_MAX_CHARS);
			r = -EINVAL;
		} else if (memchr(line, '\0', len)) {
			snprintf(err, errlen, "%s:%u: NUL byte in the line", path, lineno);
			r = -EINVAL;
		}
		while (!r && isspace((unsigned char)*s))
			s++;
		if (r || *s != '[') {
			size_t key = strcspn(s, "=:");

			while (key && isspace((unsigned char)s[key - 1]) && s[key])
				key--;
			if (!r && s == line && s[strcspn(s, "=:")] && key >= INI_MAX_SECTION &&
			    *s != ';' && *s != '#') {
				snprintf(err, errlen, "%s:%u: key name longer than %d characters",
					 path, lineno, INI_MAX_SECTION - 1);
				r = -EINVAL;
			}
			continue;
		}
		end = strchr(s, ']');
		if (end)
			*end = '\0';
		if (!end || !valid_section(s + 1)) {
			snprintf(err, errlen, "%s:%u: bad section [%s]: want [global], [group NAME] or "
				 "[rule NAME] (NAME: letters, digits, . _ -, at most %d characters)",
				 path, lineno, s + 1, SG_NAME_LEN - 1);
			r = -EINVAL;
		} else if (strlen(s + 1) >= INI_MAX_SECTION) {
			snprintf(err, errlen, "%s:%u: section header [%s] longer than %d characters "
				 "(spaces count)", path, lineno, s + 1, INI_MAX_SECTION - 1);
			r = -EINVAL;
		}
	}
	free(line);
	rewind(fp);
	return r;
}

/* Copy the keys a file section set over a built-in group. */
/* The [global] key a [group] key of the same name inherits from, or NULL. */
static const struct key *global_twin(const struct key *k)
{
	if (k->section != S_GROUP)
		return NULL;
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].section == S_GLOBAL && !strcmp(keys[i].name, k->name))
			return &keys[i];
	return NULL;
}

static void overlay(struct sg_group_conf *dst, const struct fgroup *f)
{
	for (size_t i = 0; i < NKEYS; i++) {
		if (keys[i].section != S_GROUP || !f->set[i])
			continue;
		size_t size = keys[i].type == K_FRACTION ? sizeof(double) :
			      keys[i].type == K_BOOL ? sizeof(bool) : sizeof(uint32_t);

		if (keys[i].type == K_RANGES || keys[i].type == K_RANGES_FILE)
			continue;
		memcpy((char *)dst + keys[i].off, (const char *)&f->g + keys[i].off, size);
	}
}

static int add_group(struct sg_config *cfg, const struct sg_group_conf *g)
{
	if (cfg->ngroups == SG_MAX_GROUPS)
		return -E2BIG;
	cfg->groups[cfg->ngroups++] = *g;
	return 0;
}

static int add_builtin_ranges(struct sg_config *cfg, const char *list, int gi)
{
	char *dup = strdup(list), *save = NULL, *tok;
	int r = 0;

	if (!dup)
		return -ENOMEM;
	for (tok = strtok_r(dup, " ", &save); tok && !r; tok = strtok_r(NULL, " ", &save)) {
		struct sg_cidr c;

		r = sg_cidr_parse(tok, false, &c, NULL, 0);
		if (!r)
			r = sg_ranges_add(&cfg->ranges, &c, gi);
	}
	free(dup);
	return r;
}

static int merge(struct parse *p)
{
	struct sg_config *cfg = p->cfg;
	bool used[SG_MAX_GROUPS] = { false };
	int r;

	if (cfg->builtin) {
		for (size_t b = 0; b < sg_nbuiltins; b++) {
			const struct sg_builtin *bi = &sg_builtins[b];
			struct sg_group_conf g;
			struct fgroup *f = NULL;
			int gi = (int)cfg->ngroups;

			group_defaults(&g, bi->name, cfg);
			g.builtin = true;
			g.cap = bi->cap;
			g.min_cap = bi->min_cap;
			g.max_cap = bi->max_cap;
			g.pause = bi->pause;
			for (unsigned i = 0; i < p->nfg; i++)
				if (!strcmp(p->fg[i].g.name, bi->name)) {
					f = &p->fg[i];
					used[i] = true;
				}
			if (f)
				overlay(&g, f);
			if ((r = add_group(cfg, &g)))
				return r;
			if (f && f->ranges_set) {
				for (size_t i = 0; i < f->nr; i++)
					if ((r = sg_ranges_add(&cfg->ranges, &f->r[i], gi)))
						return r;
			} else if ((r = add_builtin_ranges(cfg, bi->ranges, gi))) {
				return r;
			}
		}
	}
	for (unsigned i = 0; i < p->nfg; i++) {
		int gi = (int)cfg->ngroups;

		if (used[i])
			continue;
		/* [global] verdict and idle_close may come after the group:
		 * a group that sets none inherits the final one. */
		for (size_t k = 0; k < NKEYS; k++) {
			const struct key *gk = global_twin(&keys[k]);

			if (gk && !p->fg[i].set[k])
				memcpy((char *)&p->fg[i].g + keys[k].off, (char *)cfg + gk->off,
				       sizeof(uint32_t));
		}
		if ((r = add_group(cfg, &p->fg[i].g))) {
			snprintf(p->err, p->errlen, "more than %d groups", SG_MAX_GROUPS);
			return r;
		}
		for (size_t j = 0; j < p->fg[i].nr; j++)
			if ((r = sg_ranges_add(&cfg->ranges, &p->fg[i].r[j], gi)))
				return r;
	}
	return 0;
}

static int validate(struct parse *p)
{
	struct sg_config *cfg = p->cfg;
	size_t n4 = 0, n6 = 0;
	int ga, gb, r;
	char why[160];

	r = sg_ranges_finish(&cfg->ranges, &ga, &gb, why, sizeof(why));
	if (r) {
		snprintf(p->err, p->errlen, "overlapping ranges in two groups: %s ([group %s] and [group %s])",
			 why, cfg->groups[ga].name, cfg->groups[gb].name);
		return r;
	}
	for (unsigned i = 0; i < cfg->ngroups; i++) {
		struct sg_group_conf *g = &cfg->groups[i];

		g->nranges4 = sg_ranges_count(&cfg->ranges, (int)i, 4);
		g->nranges6 = sg_ranges_count(&cfg->ranges, (int)i, 6);
		n4 += g->nranges4;
		n6 += g->nranges6;
		if (!g->nranges4 && !g->nranges6) {
			snprintf(p->err, p->errlen, "[group %s] has no ranges", g->name);
			return -EINVAL;
		}
		if (g->min_cap > g->max_cap) {
			snprintf(p->err, p->errlen, "[group %s] min_cap %u is above max_cap %u",
				 g->name, g->min_cap, g->max_cap);
			return -EINVAL;
		}
		if (g->cap < g->min_cap || g->cap > g->max_cap) {
			snprintf(p->err, p->errlen, "[group %s] cap %u is outside [min_cap %u, max_cap %u]",
				 g->name, g->cap, g->min_cap, g->max_cap);
			return -EINVAL;
		}
	}
	if (n4 > SG_MAX_RANGES4 || n6 > SG_MAX_RANGES6) {
		snprintf(p->err, p->errlen, "%zu IPv4 and %zu IPv6 ranges: the maps hold %d and %d",
			 n4, n6, SG_MAX_RANGES4, SG_MAX_RANGES6);
		return -E2BIG;
	}
	if (cfg->retry_command[0] && !strstr(cfg->retry_command, "%q")) {
		snprintf(p->err, p->errlen, "retry_command '%s' has no %%q for the queue id",
			 cfg->retry_command);
		return -EINVAL;
	}
	if (!cfg->ngroups) {
		snprintf(p->err, p->errlen, "no groups: builtin = no and no [group NAME] section");
		return -EINVAL;
	}
	if (cfg->mta[0]) {
		struct sg_mta m;

		if ((r = sg_mta_parse(cfg->mta, &m, p->err, p->errlen)))
			return r;
	}
	if (cfg->journal[0] && cfg->journal[0] != '/') {
		snprintf(p->err, p->errlen, "journal '%s' must be an absolute path (a journal file or directory)",
			 cfg->journal);
		return -EINVAL;
	}
	struct sg_logsource src;

	if ((r = sg_logsource_parse(cfg->log, cfg->journal, &src, p->err, p->errlen)) < 0)
		return r;
	for (unsigned i = 0; i < cfg->nrules; i++) {
		const char *gname = p->rule_group[i];

		if (!gname[0])
			continue;
		cfg->rules[i].group = sg_config_group(cfg, gname);
		if (cfg->rules[i].group < 0) {
			snprintf(p->err, p->errlen, "[rule %s] names unknown group '%s'",
				 cfg->rules[i].name, gname);
			return -ENOENT;
		}
	}
	return 0;
}

static void defaults(struct sg_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->ports[0] = 25;
	cfg->nports = 1;
	cfg->mode = SG_MODE_ENFORCE;
	cfg->verdict = SG_VERDICT_QUEUE;
	cfg->builtin = true;
	snprintf(cfg->state, sizeof(cfg->state), "/var/lib/smtpgov/state");
	snprintf(cfg->log, sizeof(cfg->log), "auto");
	cfg->blind_warning = 15 * 60;
	cfg->retry_delay = 1;
	cfg->retry_timeout = 30;
	cfg->max_sources = SG_DEFAULT_SOURCES;
	cfg->idle_close = SG_IDLE_CLOSE_DEFAULT;
}

int sg_config_load(struct sg_config *cfg, const char *path, char *err, size_t errlen)
{
	struct parse *p = calloc(1, sizeof(*p));
	int r = 0;

	if (!p)
		return -ENOMEM;
	defaults(cfg);
	err[0] = '\0';
	p->cfg = cfg;
	p->path = path;
	p->err = err;
	p->errlen = errlen;
	p->cursec[0] = '\0';

	if (path) {
		FILE *fp = fopen(path, "re");
		int line;

		if (!fp) {
			r = -errno;
			snprintf(err, errlen, "config %s: %s", path, strerror(errno));
			goto out;
		}
		r = prescan(fp, err, errlen, path);
		if (!r) {
			line = ini_parse_file(fp, handler, p);
			if (line || err[0]) {
				char msg[512];

				snprintf(msg, sizeof(msg), "%s", err[0] ? err : "syntax error");
				if (line > 0)
					snprintf(err, errlen, "%s:%d: %s", path, line, msg);
				else
					snprintf(err, errlen, "%s: %s", path, msg);
				r = -EINVAL;
			}
		}
		fclose(fp);
		if (r)
			goto out;
	}
	r = merge(p);
	if (!r)
		r = validate(p);
	if (r && path && err[0] && strncmp(err, path, strlen(path))) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", err);
		snprintf(err, errlen, "%s: %s", path, msg);
	}
out:
	for (unsigned i = 0; i < p->nfg; i++)
		free(p->fg[i].r);
	free(p);
	if (r)
		sg_config_free(cfg);
	return r;
}

void sg_config_free(struct sg_config *cfg)
{
	for (unsigned i = 0; i < cfg->nrules; i++) {
		free(cfg->rules[i].match);
		cfg->rules[i].match = NULL;
	}
	cfg->nrules = 0;
	sg_ranges_free(&cfg->ranges);
}

int sg_config_group(const struct sg_config *cfg, const char *name)
{
	for (unsigned i = 0; i < cfg->ngroups; i++)
		if (!strcmp(cfg->groups[i].name, name))
			return (int)i;
	return -1;
}
