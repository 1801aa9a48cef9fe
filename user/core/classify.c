// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Reply classifier (see classify.h): the built-in signature table and the
 * matching of config rules.
 *
 * Why the built-ins say what they say (docs/design.md, "Provider ranges and
 * throttle replies"):
 *  - Gmail 421-4.4.5 "Server busy": too many sessions from this IP. Decrease.
 *  - Gmail 421-4.7.28 / 421-4.7.0 "unusual rate of unsolicited mail ...
 *    rate limited": an IP-wide limit driven by reputation; fewer sessions
 *    lower the rate. Decrease. "This message is suspicious" is about one
 *    message (its content or sender domain): ignore.
 *  - Gmail 450-4.2.1 "The user you are trying to contact is receiving mail
 *    at a rate...": one recipient's limit. Lowering the provider cap would
 *    slow every other recipient for nothing: ignore.
 *  - Microsoft 4.7.652 "exceeded the maximum number of connections": asks for
 *    a pause. 4.7.500 "Server busy": rate. 4.7.650/4.7.651 "rate limited due
 *    to IP reputation": decrease (an IP-wide rate limit, like Gmail 4.7.28).
 *  - Yahoo 421 4.7.0 [TSS04] (and [TSS05], [TS01]-[TS03], [IPTS05], which
 *    Yahoo says to treat alike) "temporarily deferred due to unexpected
 *    volume or user complaints": class reputation, because the trigger is
 *    the IP's complaint rate and volume history, not the number of open
 *    sessions; Yahoo defers every message from the IP while it lasts, so
 *    more sessions only add failed attempts. Action pause.
 *  - Apple 421 4.7.1 "Messages to <rcpt> deferred due to excessive volume":
 *    names one recipient, like Gmail 4.2.1: ignore.
 *  - Generic: "too many (concurrent) connections", "maximum number of
 *    connections", 4.4.5 (RFC 3463: mail system congestion): concurrency;
 *    "connection rate limit", "throttled": rate. Greylisting is expected and
 *    harmless: ignore.
 * Built-ins look only at 4xx replies: a 5xx has ended the message's
 * delivery, and a provider that rate-limits with 5xx means the mail, not the
 * session count. Config rules see every non-delivered event.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <pcre2.h>
#include <stdio.h>
#include <string.h>
#include "classify.h"

struct sig {
	const char *name;
	const char *group;       /* group name, NULL = any */
	int code;                /* reply code, 0 = any 4xx */
	const char *dsn;         /* enhanced code, NULL = any */
	const char *text;        /* case-insensitive substring, NULL = any */
	int class;
	int action;
};

#define C_CONC SG_CLASS_CONCURRENCY
#define C_RATE SG_CLASS_RATE
#define C_REP  SG_CLASS_REPUTATION
#define C_OTH  SG_CLASS_OTHER
#define A_DEC  SG_ACTION_DECREASE
#define A_PAU  SG_ACTION_PAUSE
#define A_IGN  SG_ACTION_IGNORE

static const struct sig sigs[] = {
	{ "gmail-421-4.4.5",          "google", 421, "4.4.5",  NULL, C_CONC, A_DEC },
	{ "gmail-421-4.7.28",         "google", 421, "4.7.28", NULL, C_REP,  A_DEC },
	{ "gmail-421-4.7.0-suspicious", "google", 421, "4.7.0", "message is suspicious", C_REP, A_IGN },
	{ "gmail-421-4.7.0-unsolicited-rate", "google", 421, "4.7.0", "unusual rate of", C_REP, A_DEC },
	{ "gmail-450-4.2.1-recipient-rate", "google", 450, "4.2.1", NULL, C_OTH, A_IGN },
	{ "gmail-421-4.7.29-tls",     "google", 421, "4.7.29", NULL, C_OTH,  A_IGN },

	{ "ms-4.7.652-connections",   "microsoft", 0, "4.7.652", NULL, C_CONC, A_PAU },
	{ "ms-4.7.500-server-busy",   "microsoft", 0, "4.7.500", NULL, C_RATE, A_DEC },
	{ "ms-4.7.650-reputation",    "microsoft", 0, "4.7.650", NULL, C_REP,  A_DEC },
	{ "ms-4.7.651-reputation",    "microsoft", 0, "4.7.651", NULL, C_REP,  A_DEC },
	{ "ms-4.3.2-concurrent",      "microsoft", 421, "4.3.2", "concurrent connections", C_CONC, A_DEC },
	{ "ms-rp-001-hourly-limit",   "microsoft", 421, NULL,    "RP-001", C_RATE, A_DEC },

	{ "yahoo-421-ts-deferral",    "yahoo", 421, NULL, "[TS", C_REP, A_PAU },
	{ "yahoo-421-ipts-deferral",  "yahoo", 421, NULL, "[IPTS", C_REP, A_PAU },
	{ "yahoo-450-recipient-rate", "yahoo", 450, NULL, "receiving mail too quickly", C_OTH, A_IGN },
	{ "yahoo-421-per-connection", "yahoo", 421, NULL, "per connection", C_OTH, A_IGN },

	{ "apple-421-4.7.1-recipient-volume", "apple", 421, "4.7.1", "excessive volume", C_OTH, A_IGN },

	{ "generic-greylisting",      NULL, 0, NULL, "greylist",              C_OTH, A_IGN },
	{ "generic-greylisting",      NULL, 0, NULL, "not yet authorized to deliver", C_OTH, A_IGN },
	{ "generic-recipient-rate",   NULL, 0, NULL, "receiving mail at a rate", C_OTH, A_IGN },
	{ "generic-recipient-rate",   NULL, 0, NULL, "receiving mail too quickly", C_OTH, A_IGN },
	{ "generic-too-many-connections", NULL, 0, NULL, "too many connections", C_CONC, A_DEC },
	{ "generic-too-many-connections", NULL, 0, NULL, "too many concurrent", C_CONC, A_DEC },
	{ "generic-too-many-connections", NULL, 0, NULL, "maximum number of connections", C_CONC, A_DEC },
	{ "generic-too-many-connections", NULL, 0, NULL, "concurrent connections", C_CONC, A_DEC },
	{ "generic-4.4.5-congestion", NULL, 0, "4.4.5", NULL, C_CONC, A_DEC },
	{ "generic-connection-rate",  NULL, 0, NULL, "connection rate limit", C_RATE, A_DEC },
	{ "generic-throttled",        NULL, 421, NULL, "throttled", C_RATE, A_DEC },
};
#define NSIGS (sizeof(sigs) / sizeof(sigs[0]))
_Static_assert(NSIGS <= SG_MAX_BUILTIN_SIGS, "raise SG_MAX_BUILTIN_SIGS");

const char *sg_builtin_sig_name(size_t i)
{
	return i < NSIGS ? sigs[i].name : NULL;
}

size_t sg_builtin_sig_count(void)
{
	return NSIGS;
}

static inline char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

/* Case-insensitive substring: low is the text in lower case. */
static bool contains(const char *low, size_t n, const char *needle)
{
	char nl[64];
	size_t m = 0;

	for (; needle[m] && m < sizeof(nl); m++)
		nl[m] = lower(needle[m]);
	return memmem(low, n, nl, m) != NULL;
}

int sg_classifier_init(struct sg_classifier *c, const struct sg_config *cfg, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	c->cfg = cfg;
	for (size_t i = 0; i < NSIGS; i++) {
		c->sig_group[i] = sigs[i].group ? sg_config_group(cfg, sigs[i].group) : -1;
		if (sigs[i].group && c->sig_group[i] < 0)
			c->sig_group[i] = -2;   /* no such group: never matches */
		for (unsigned r = 0; r < cfg->nrules; r++)
			if (!strcmp(cfg->rules[r].name, sigs[i].name))
				c->sig_off[i] = true;
	}
	for (unsigned r = 0; r < cfg->nrules; r++) {
		int code;
		PCRE2_SIZE off;

		if (!cfg->rules[r].match)
			continue;
		c->re[r] = pcre2_compile((PCRE2_SPTR)cfg->rules[r].match, PCRE2_ZERO_TERMINATED,
					 PCRE2_CASELESS, &code, &off, NULL);
		if (!c->re[r]) {
			if (err)
				snprintf(err, errlen, "[rule %s]: bad regex at offset %zu",
					 cfg->rules[r].name, (size_t)off);
			sg_classifier_free(c);
			return -EINVAL;
		}
		pcre2_jit_compile(c->re[r], PCRE2_JIT_COMPLETE);   /* optional speed-up */
	}
	c->md = pcre2_match_data_create(4, NULL);
	c->mctx = pcre2_match_context_create(NULL);
	if (!c->md || !c->mctx) {
		sg_classifier_free(c);
		return -ENOMEM;
	}
	pcre2_set_match_limit(c->mctx, SG_MATCH_LIMIT);
	pcre2_set_depth_limit(c->mctx, SG_DEPTH_LIMIT);
	pcre2_set_heap_limit(c->mctx, SG_HEAP_LIMIT);
	return 0;
}

void sg_classifier_free(struct sg_classifier *c)
{
	for (unsigned r = 0; r < SG_MAX_RULES; r++) {
		pcre2_code_free(c->re[r]);
		c->re[r] = NULL;
	}
	pcre2_match_data_free(c->md);
	c->md = NULL;
	pcre2_match_context_free(c->mctx);
	c->mctx = NULL;
}

static void set(struct sg_classification *out, int class, int action, const char *rule)
{
	out->class = class;
	out->action = action;
	out->rule = rule;
	out->signal = class != SG_CLASS_NONE && (action == SG_ACTION_DECREASE || action == SG_ACTION_PAUSE);
}

void sg_classify(const struct sg_classifier *c, int group, const struct sg_logev *ev,
		 struct sg_classification *out)
{
	const struct sg_config *cfg = c->cfg;

	set(out, SG_CLASS_NONE, SG_ACTION_IGNORE, NULL);
	/* Delivered, or nothing the remote side said just now: our own
	 * refusals, Postfix's cached "delivery temporarily suspended", the
	 * waiting room's replies, postfix/error. Never a signal. */
	if (ev->status == SG_ST_SENT || ev->status == SG_ST_REFUSED || ev->status == SG_ST_NONE ||
	    (ev->flags & (SG_LEV_SUSPENDED | SG_LEV_OWN | SG_LEV_LOCAL_AGENT)))
		return;

	for (unsigned r = 0; r < cfg->nrules; r++) {
		const struct sg_rule *ru = &cfg->rules[r];

		if (ru->group >= 0 && ru->group != group)
			continue;
		if (ru->dsn[0] && strcmp(ru->dsn, ev->dsn))
			continue;
		if (c->re[r] && pcre2_match(c->re[r], (PCRE2_SPTR)ev->text, ev->text_len, 0, 0,
					    c->md, c->mctx) < 0)
			continue;
		set(out, ru->class, ru->action, ru->name);
		return;
	}

	bool temp = ev->code ? ev->code / 100 == 4 : ev->dsn[0] == '4';

	if (temp && ev->status != SG_ST_CONNECT_ERROR) {
		char low[4096];
		size_t n = ev->text_len < sizeof(low) ? ev->text_len : sizeof(low);
		bool lowered = false;

		for (size_t i = 0; i < NSIGS; i++) {
			const struct sig *s = &sigs[i];

			if (c->sig_off[i] || c->sig_group[i] == -2 ||
			    (c->sig_group[i] >= 0 && c->sig_group[i] != group))
				continue;
			if (s->code && s->code != ev->code)
				continue;
			if (s->dsn && strcmp(s->dsn, ev->dsn))
				continue;
			if (s->text && !lowered) {
				for (size_t j = 0; j < n; j++)
					low[j] = lower(ev->text[j]);
				lowered = true;
			}
			if (s->text && !contains(low, n, s->text))
				continue;
			set(out, s->class, s->action, s->name);
			return;
		}
	}
	set(out, SG_CLASS_OTHER, SG_ACTION_IGNORE, NULL);
}
