// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * MTA log parser (see parse.h). Hand-written scanning, no regex and no
 * allocation: it runs on every line of a busy mail log.
 *
 * Postfix: [framing] [QID: ] message, where framing is an optional
 * timestamp ("Mmm dd HH:MM:SS", day space- or zero-padded; or ISO-8601),
 * an optional host and the program tag ("postfix/smtp[pid]",
 * "postfix-10.20.30.40/smtp[pid]"). Lines without framing are taken as bare
 * message parts. Messages recognised:
 *   to=<..>, relay=host[ip]:port, ..., dsn=D, status=S (TEXT)
 *   host host[ip] said: REPLY (in reply to CMD command)
 *   host host[ip] refused to talk to me: REPLY
 *   connect to host[ip]:port: REASON
 *   lost connection with host[ip] while ...
 *   conversation with host[ip] timed out while ...
 * Exim: "YYYY-MM-DD HH:MM:SS [pid] MSGID FLAG ..." with FLAG == (defer),
 * => and -> (delivered), ** (failed), or no flag for a per-host SMTP error.
 */
#include <string.h>
#include <strings.h>
#include <time.h>
#include "parse.h"

#define DAY 86400

/* ---- small scanners --------------------------------------------------- */

static inline bool isdig(char c)
{
	return c >= '0' && c <= '9';
}

static inline bool isalnum_(char c)
{
	return isdig(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool starts(const char *s, const char *end, const char *lit, size_t n)
{
	return (size_t)(end - s) >= n && !memcmp(s, lit, n);
}
#define STARTS(s, end, lit) starts(s, end, lit, sizeof(lit) - 1)

static inline const char *find(const char *s, const char *end, const char *lit, size_t n)
{
	if (s >= end)
		return NULL;
	if (n == 2) {        /* ", " and ": ": memchr beats memmem's setup */
		while ((s = memchr(s, lit[0], (size_t)(end - s - 1 > 0 ? end - s - 1 : 0)))) {
			if (s[1] == lit[1])
				return s;
			s++;
		}
		return NULL;
	}
	return memmem(s, (size_t)(end - s), lit, n);
}
#define FIND(s, end, lit) find(s, end, lit, sizeof(lit) - 1)

/* Last occurrence of lit in [s, end). */
static const char *rfind(const char *s, const char *end, const char *lit, size_t n)
{
	const char *best = NULL, *p = s;

	while ((p = find(p, end, lit, n))) {
		best = p;
		p++;
	}
	return best;
}

static int num(const char *s, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdig(s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* A field of the line into a C string; a NUL byte of the line (never in a
 * real host, queue id or code) becomes '?', so it cannot cut the field. */
static void copy(char *dst, size_t cap, const char *s, const char *end)
{
	size_t n = (size_t)(end - s);

	if (n >= cap)
		n = cap - 1;
	for (size_t i = 0; i < n; i++)
		dst[i] = s[i] ? s[i] : '?';
	dst[n] = '\0';
}

/* ---- time ------------------------------------------------------------- */

static int64_t days_from_civil(int y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int yoe = (int)(y - era * 400);
	int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + doe - 719468;
}

static bool leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Day d exists in month mon of year y ("Feb 30" does not: no Mar 2). */
static bool valid_day(int y, int mon, int d)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	return d >= 1 && d <= mdays[mon - 1] + (mon == 2 && leap(y));
}

static int64_t utc_epoch(int y, int mon, int d, int h, int mi, int s)
{
	return days_from_civil(y, mon, d) * DAY + h * 3600 + mi * 60 + s;
}

/* Local wall-clock time -> unix seconds; mktime once per hour of log
 * (a log is mostly in time order; a few slots absorb interleaved files). */
static int64_t local_epoch(struct sg_parser *p, int y, int mon, int d, int h, int mi, int s)
{
	int32_t key = ((y * 13 + mon) * 32 + d) * 24 + h;
	unsigned slot = ((unsigned)key * 2654435761u) >> 26;

	if (p->hours[slot].key != key) {
		struct tm tm = { .tm_year = y - 1900, .tm_mon = mon - 1, .tm_mday = d,
				 .tm_hour = h, .tm_isdst = -1 };

		p->hours[slot].epoch = (int64_t)mktime(&tm);
		p->hours[slot].key = key;
	}
	return p->hours[slot].epoch + mi * 60 + s;
}

void sg_parser_set_now(struct sg_parser *p, int64_t now)
{
	p->now = now;
	if (now >= p->year_lo && now < p->year_hi)
		return;
	time_t t = (time_t)now;
	struct tm tm;

	localtime_r(&t, &tm);
	p->now_year = tm.tm_year + 1900;
	struct tm lo = { .tm_year = tm.tm_year, .tm_mday = 1, .tm_isdst = -1 };
	struct tm hi = { .tm_year = tm.tm_year + 1, .tm_mday = 1, .tm_isdst = -1 };

	p->year_lo = (int64_t)mktime(&lo);
	p->year_hi = (int64_t)mktime(&hi);
}

void sg_parser_init(struct sg_parser *p, int format, int64_t now)
{
	memset(p, 0, sizeof(*p));
	p->format = format;
	for (size_t i = 0; i < sizeof(p->hours) / sizeof(p->hours[0]); i++)
		p->hours[i].key = -1;
	p->year_lo = 1;
	p->year_hi = 0;
	sg_parser_set_now(p, now);
}

static int month(const char *s)
{
	/* Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec */
	switch (s[0]) {
	case 'J':
		if (s[1] == 'a' && s[2] == 'n') return 1;
		if (s[1] == 'u' && s[2] == 'n') return 6;
		if (s[1] == 'u' && s[2] == 'l') return 7;
		return 0;
	case 'F': return s[1] == 'e' && s[2] == 'b' ? 2 : 0;
	case 'M':
		if (s[1] == 'a' && s[2] == 'r') return 3;
		if (s[1] == 'a' && s[2] == 'y') return 5;
		return 0;
	case 'A':
		if (s[1] == 'p' && s[2] == 'r') return 4;
		if (s[1] == 'u' && s[2] == 'g') return 8;
		return 0;
	case 'S': return s[1] == 'e' && s[2] == 'p' ? 9 : 0;
	case 'O': return s[1] == 'c' && s[2] == 't' ? 10 : 0;
	case 'N': return s[1] == 'o' && s[2] == 'v' ? 11 : 0;
	case 'D': return s[1] == 'e' && s[2] == 'c' ? 12 : 0;
	}
	return 0;
}

/* "HH:MM:SS" at s. */
static bool hms(const char *s, const char *end, int *h, int *mi, int *sec)
{
	if (end - s < 8 || s[2] != ':' || s[5] != ':')
		return false;
	*h = num(s, 2);
	*mi = num(s + 3, 2);
	*sec = num(s + 6, 2);
	return *h >= 0 && *h < 24 && *mi >= 0 && *mi < 60 && *sec >= 0 && *sec <= 60;
}

/* ".ddd..." at q (or nothing): the milliseconds in *ms; returns after it. */
static const char *frac_ms(const char *q, const char *end, int *ms)
{
	int scale = 100;

	*ms = 0;
	if (q >= end || (*q != '.' && *q != ','))
		return q;
	while (++q < end && isdig(*q)) {
		*ms += (*q - '0') * scale;
		scale /= 10;
	}
	return q;
}

/* "Mmm dd HH:MM:SS[.frac] " (RFC 3164, journalctl, maillog_file). */
static const char *ts_3164(struct sg_parser *p, const char *s, const char *end, int64_t *t,
			   int *ms)
{
	int mon, d, h, mi, sec;
	const char *q;

	if (end - s < 16 || s[3] != ' ' || !(mon = month(s)))
		return NULL;
	q = s + 4;
	if (*q == ' ')
		q++;
	if (isdig(q[0]) && isdig(q[1])) {
		d = num(q, 2);
		q += 2;
	} else if (isdig(q[0])) {
		d = q[0] - '0';
		q++;
	} else {
		return NULL;
	}
	if (*q != ' ' || d < 1 || d > 31 || !hms(q + 1, end, &h, &mi, &sec))
		return NULL;
	q = frac_ms(q + 9, end, ms);      /* high-precision traditional format */
	if (q >= end || *q != ' ')
		return NULL;
	/* No year: the latest one that does not put the line in the future
	 * (a day of slack for clock skew). */
	if (valid_day(p->now_year, mon, d) &&
	    (*t = local_epoch(p, p->now_year, mon, d, h, mi, sec)) <= p->now + DAY)
		return q + 1;
	if (!valid_day(p->now_year - 1, mon, d))
		return NULL;       /* "Feb 30", or Feb 29 of no recent year */
	*t = local_epoch(p, p->now_year - 1, mon, d, h, mi, sec);
	return q + 1;
}

/* "YYYY-MM-DD" + sep + "HH:MM:SS" [.frac] [zone] + " ". iso: sep 'T' and
 * zone "Z"/"+hh:mm"; else (Exim) sep ' ' and zone " +hhmm". */
static const char *ts_ymd(struct sg_parser *p, const char *s, const char *end, bool iso, int64_t *t,
			  int *ms)
{
	int y, mon, d, h, mi, sec, off = 0;
	bool zone = false;
	const char *q;

	if (end - s < 20 || s[4] != '-' || s[7] != '-' || s[10] != (iso ? 'T' : ' '))
		return NULL;
	y = num(s, 4);
	mon = num(s + 5, 2);
	d = num(s + 8, 2);
	if (y < 1970 || mon < 1 || mon > 12 || !valid_day(y, mon, d) || !hms(s + 11, end, &h, &mi, &sec))
		return NULL;
	q = frac_ms(s + 19, end, ms);
	if (iso && q < end && *q == 'Z') {
		zone = true;
		q++;
	} else if (iso && end - q >= 6 && (*q == '+' || *q == '-') && q[3] == ':') {
		int oh = num(q + 1, 2), om = num(q + 4, 2);

		if (oh < 0 || om < 0)
			return NULL;
		off = (oh * 3600 + om * 60) * (*q == '-' ? -1 : 1);
		zone = true;
		q += 6;
	} else if (!iso && end - q >= 6 && q[0] == ' ' && (q[1] == '+' || q[1] == '-') &&
		   isdig(q[2]) && num(q + 2, 4) >= 0 && (q + 6 == end || q[6] == ' ')) {
		int hhmm = num(q + 2, 4);

		off = (hhmm / 100 * 3600 + hhmm % 100 * 60) * (q[1] == '-' ? -1 : 1);
		zone = true;
		q += 6;
	}
	if (q >= end || *q != ' ')
		return NULL;
	*t = zone ? utc_epoch(y, mon, d, h, mi, sec) - off : local_epoch(p, y, mon, d, h, mi, sec);
	return q + 1;
}

void sg_time_format(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- shared pieces ---------------------------------------------------- */

/* The address between '[' at lb and ']' at rb, when it is one. */
static void set_ip(struct sg_logev *ev, const char *lb, const char *rb)
{
	char ip[SG_IP_LEN];

	ev->ip[0] = '\0';
	ev->flags &= ~(unsigned)SG_LEV_HAS_IP;
	if ((size_t)(rb - lb - 1) < sizeof(ip)) {
		copy(ip, sizeof(ip), lb + 1, rb);
		if (!sg_addr_parse(ip, &ev->addr)) {
			memcpy(ev->ip, ip, sizeof(ip));
			ev->flags |= SG_LEV_HAS_IP;
		}
	}
}

/* "name[ip]" at s (Postfix); fills host/ip. Returns the byte after ']'. */
static const char *host_ip(const char *s, const char *end, struct sg_logev *ev)
{
	const char *lb = s, *rb;

	while (lb < end && *lb != '[' && *lb != ' ')
		lb++;
	if (lb >= end || *lb != '[')
		return NULL;
	rb = memchr(lb, ']', (size_t)(end - lb));
	if (!rb)
		return NULL;
	copy(ev->host, sizeof(ev->host), s, lb);
	set_ip(ev, lb, rb);
	return rb + 1;
}

/* Reply code and enhanced code at the start of a reply:
 * "421-4.4.5 ...", "451- 4.7.652 ...", "421 #4.4.5 ...", "smtp;450 4.2.1". */
static void reply_codes(const char *s, const char *end, struct sg_logev *ev)
{
	const char *q;
	int code;

	if (STARTS(s, end, "smtp;"))
		s += 5;
	if (end - s < 3 || (code = num(s, 3)) < 200 || code > 599 ||
	    (end - s > 3 && s[3] != ' ' && s[3] != '-'))
		return;
	ev->code = code;
	q = s + 4;
	while (q < end && *q == ' ')
		q++;
	if (q < end && *q == '#')
		q++;
	/* class.subject.detail: the class agrees with the reply code */
	if (end - q < 5 || *q != s[0] || q[1] != '.')
		return;
	const char *d = q + 2;
	int a = 0, b = 0;

	while (d < end && isdig(*d) && a < 4) {
		d++;
		a++;
	}
	if (!a || d >= end || *d != '.')
		return;
	d++;
	while (d < end && isdig(*d) && b < 4) {
		d++;
		b++;
	}
	if (!b || (d < end && *d != ' ' && *d != ','))
		return;
	/* The reply's own code wins over Postfix's dsn= field, which Postfix
	 * derives from it or makes up ("451- 4.7.652" gives dsn=4.0.0). */
	copy(ev->dsn, sizeof(ev->dsn), q, d);
}

static void set_reply(const char *s, const char *end, struct sg_logev *ev)
{
	ev->text = s;
	ev->text_len = (size_t)(end - s);
	reply_codes(s, end, ev);
	/* The waiting room's "421 4.4.5 smtpgov: held this connection ...":
	 * only near the start, so a remote text cannot hide behind the word. */
	if (FIND(s, end - s > 32 ? s + 32 : end, "smtpgov"))
		ev->flags |= SG_LEV_OWN;
}

/* ---- Postfix ---------------------------------------------------------- */

/* Postfix programs that never log a remote delivery. */
static bool non_delivery(const char *b, size_t n)
{
#define D(s) { s, sizeof(s) - 1 }
	static const struct { const char *s; size_t n; } deny[] = {
		D("smtpd"), D("qmgr"), D("oqmgr"), D("cleanup"), D("pickup"), D("bounce"),
		D("defer"), D("trace"), D("postscreen"), D("anvil"), D("tlsmgr"), D("master"),
		D("scache"), D("trivial-rewrite"), D("proxymap"), D("proxywrite"), D("verify"),
		D("flush"), D("showq"), D("postdrop"), D("sendmail"), D("postfix-script"),
		D("postsuper"), D("postqueue"), D("dnsblog"), D("tlsproxy"), D("local"),
		D("virtual"), D("pipe"), D("spawn"), D("postlogd"), D("discard"), D("postmap"),
		D("postalias"), D("postconf"), D("postlog"), D("lmtpd"),
	};
#undef D

	if (n == 4 && !memcmp(b, "smtp", 4))      /* the common case */
		return false;
	for (size_t i = 0; i < sizeof(deny) / sizeof(deny[0]); i++)
		if (deny[i].n == n && deny[i].s[0] == b[0] && !memcmp(deny[i].s, b, n))
			return true;
	return false;
}

enum tag { TAG_NONE, TAG_SKIP, TAG_POSTFIX, TAG_LOCAL_AGENT, TAG_EXIM };

/* The program tag that ends the syslog header: "postfix/smtp[123]". */
static enum tag classify_tag(const char *s, const char *end)
{
	const char *t = end, *slash = NULL, *b;

	while (t > s && t[-1] != ' ')
		t--;
	if (end > t && end[-1] == ']') {   /* strip [pid] */
		const char *lb = end - 1;

		while (lb > t && *lb != '[')
			lb--;
		if (*lb != '[')
			return TAG_NONE;
		for (const char *q = lb + 1; q < end - 1; q++)
			if (!isdig(*q))
				return TAG_NONE;
		end = lb;
	}
	if (end <= t)
		return TAG_NONE;
	for (const char *q = t; q < end; q++) {
		if (*q == '/')
			slash = q;
		else if (!isalnum_(*q) && *q != '-' && *q != '_' && *q != '.')
			return TAG_NONE;
	}
	b = slash ? slash + 1 : t;
	if (!slash) {
		if ((end - t == 4 && !memcmp(t, "exim", 4)) || (end - t == 5 && !memcmp(t, "exim4", 5)))
			return TAG_EXIM;
		return TAG_NONE;
	}
	if ((end - b == 5 && !memcmp(b, "error", 5)) || (end - b == 5 && !memcmp(b, "retry", 5)))
		return TAG_LOCAL_AGENT;
	return non_delivery(b, (size_t)(end - b)) ? TAG_SKIP : TAG_POSTFIX;
}

/* A Postfix queue id ("C9D42EC0ADD", "4JfcC62DS0z1c1C") and ": ". */
static const char *queue_id(const char *s, const char *end, struct sg_logev *ev)
{
	const char *q = s;

	while (q < end && isalnum_(*q))
		q++;
	if (q - s < 5 || q - s >= SG_QID_LEN || end - q < 2 || q[0] != ':' || q[1] != ' ')
		return s;
	if ((q - s == 7 && !memcmp(s, "warning", 7)) || (q - s == 5 && !memcmp(s, "fatal", 5)) ||
	    (q - s == 5 && !memcmp(s, "error", 5)) || (q - s == 5 && !memcmp(s, "panic", 5)))
		return s;
	copy(ev->queue_id, sizeof(ev->queue_id), s, q);
	return q + 2;
}

/* Strip " (in reply to ... command)" that Postfix appends to a reply. */
static const char *strip_in_reply(const char *s, const char *end)
{
	const char *r = rfind(s, end, " (in reply to ", 14);

	return r ? r : end;
}

/*
 * A reason Postfix writes itself (status text, or a message of its own):
 * "host X[ip] said: ...", "connect to X[ip]:25: ...", and the rest.
 * Returns the status it implies, or SG_ST_NONE if it is none of those.
 */
static int postfix_reason_one(const char *s, const char *end, struct sg_logev *ev)
{
	const char *q;

	if (STARTS(s, end, "host ")) {
		if (!(q = host_ip(s + 5, end, ev)))
			return SG_ST_NONE;
		/* On its own (no status=), such a line is not the message's
		 * fate: Postfix goes on to the next MX or retries later. */
		if (STARTS(q, end, " said: ")) {
			q += 7;
			set_reply(q, strip_in_reply(q, end), ev);
			return SG_ST_DEFERRED;
		}
		if (STARTS(q, end, " refused to talk to me: ")) {
			q += 24;
			set_reply(q, end, ev);
			return SG_ST_DEFERRED;
		}
		return SG_ST_NONE;
	}
	if (STARTS(s, end, "connect to ")) {
		if (!(q = host_ip(s + 11, end, ev)))
			return SG_ST_NONE;
		if (q < end && *q == ':')
			while (++q < end && isdig(*q))
				;
		if (STARTS(q, end, ": "))
			q += 2;
		ev->text = q;
		ev->text_len = (size_t)(end - q);
		return STARTS(q, end, "Operation not permitted") ? SG_ST_REFUSED : SG_ST_CONNECT_ERROR;
	}
	if (STARTS(s, end, "lost connection with ")) {
		if (!host_ip(s + 21, end, ev))
			return SG_ST_NONE;
		ev->text = s;
		ev->text_len = (size_t)(end - s);
		return SG_ST_DEFERRED;
	}
	if (STARTS(s, end, "conversation with ")) {
		if (!(q = host_ip(s + 18, end, ev)) || !STARTS(q, end, " timed out"))
			return SG_ST_NONE;
		ev->text = s;
		ev->text_len = (size_t)(end - s);
		return SG_ST_DEFERRED;
	}
	return SG_ST_NONE;
}

/*
 * A reason, after any number of "delivery temporarily suspended: "
 * prefixes (Postfix's cached verdict, which quotes the reason it cached).
 * A loop, not recursion: a line of a million prefixes must not exhaust
 * the stack of the offline tools, which read lines of any length.
 */
static int postfix_reason(const char *s, const char *end, struct sg_logev *ev)
{
	static const char susp[] = "delivery temporarily suspended: ";
	const char *q = s;
	int st;

	while (STARTS(q, end, susp))
		q += sizeof(susp) - 1;
	st = postfix_reason_one(q, end, ev);
	if (q == s)
		return st;
	ev->flags |= SG_LEV_SUSPENDED;
	ev->text = s;
	ev->text_len = (size_t)(end - s);
	return st == SG_ST_NONE ? SG_ST_DEFERRED : st;
}

/* The ')' that closes the '(' at open, or the last ')' of the line. */
static const char *close_paren(const char *open, const char *end)
{
	int depth = 0;

	if (end > open && end[-1] == ')')     /* the status text ends the line */
		return end - 1;
	for (const char *q = open; q < end; q++) {
		if (*q == '(')
			depth++;
		else if (*q == ')' && --depth == 0)
			return q;
	}
	const char *r = rfind(open, end, ")", 1);

	return r ? r : end;
}

/* Seconds "12", "0.15", "1e-3" ... -> ms; -1 if it is no number. */
static int32_t seconds_ms(const char *s, const char *end)
{
	int64_t ms = 0;
	int scale = 0;

	if (s >= end || !isdig(*s))
		return -1;
	for (; s < end && isdig(*s) && ms < 86400000; s++)
		ms = ms * 10 + (*s - '0') * 1000;
	if (s < end && *s == '.')
		for (scale = 100; ++s < end && isdig(*s); scale /= 10)
			ms += (*s - '0') * scale;
	return s == end ? (int32_t)(ms < INT32_MAX ? ms : INT32_MAX) : -1;
}

/*
 * Postfix "delays=a/b/c/d": a before the queue manager, b in it, c connection
 * setup (DNS, connect, greeting, EHLO, TLS), d transmission. The session
 * took about c + d: it began that long before the line. -1 if malformed.
 */
static int32_t delays_session(const char *s, const char *end)
{
	const char *part[5];
	int n = 0;

	part[n++] = s;
	for (const char *q = s; q < end && n < 5; q++)
		if (*q == '/')
			part[n++] = q + 1;
	if (n != 4)
		return -1;
	int32_t c = seconds_ms(part[2], part[3] - 1), d = seconds_ms(part[3], end);

	return c < 0 || d < 0 ? -1 : c + d;
}

/* "to=<..>, relay=.., ..., dsn=.., status=S (TEXT)" */
static bool postfix_status(const char *s, const char *end, struct sg_logev *ev)
{
	const char *q = memchr(s, '>', (size_t)(end - s));
	const char *st = NULL, *st_end = NULL, *relay_host = NULL, *relay_host_end = NULL;
	bool relay = false;

	if (!q)
		return false;
	q++;
	while (STARTS(q, end, ", ")) {
		const char *k = q + 2, *eq = k, *v, *ve;

		while (eq < end && *eq != '=' && *eq != ',' && *eq != ' ')
			eq++;
		if (eq >= end || *eq != '=')
			return false;
		v = eq + 1;
		if (eq - k == 6 && !memcmp(k, "status", 6)) {
			ve = v;
			while (ve < end && *ve != ' ' && *ve != ',')
				ve++;
			st = v;
			st_end = ve;
			q = ve;
			break;
		}
		if (v < end && *v == '<') {  /* orig_to=<...> */
			ve = memchr(v, '>', (size_t)(end - v));
			ve = ve ? ve + 1 : end;
		} else {
			ve = FIND(v, end, ", ");
			if (!ve)
				ve = end;
		}
		if (eq - k == 5 && !memcmp(k, "relay", 5)) {
			relay = true;
			if (host_ip(v, ve, ev)) {
				relay_host = v;
				relay_host_end = memchr(v, '[', (size_t)(ve - v));
			} else if (!(ve - v == 4 && !memcmp(v, "none", 4))) {
				copy(ev->host, sizeof(ev->host), v, ve);
			}
		} else if (eq - k == 3 && !memcmp(k, "dsn", 3)) {
			copy(ev->dsn, sizeof(ev->dsn), v, ve);
		} else if (eq - k == 6 && !memcmp(k, "delays", 6)) {
			ev->session_ms = delays_session(v, ve);
		}
		q = ve;
	}
	if (!st || !relay)
		return false;
	if (st_end - st == 4 && !memcmp(st, "sent", 4))
		ev->status = SG_ST_SENT;
	else if (st_end - st == 8 && !memcmp(st, "deferred", 8))
		ev->status = SG_ST_DEFERRED;
	else if (st_end - st == 7 && !memcmp(st, "bounced", 7))
		ev->status = SG_ST_BOUNCED;
	else
		return false;

	const char *text = q, *text_end = end;

	if (STARTS(q, end, " (")) {
		text = q + 2;
		text_end = close_paren(q + 1, end);
	}
	if (ev->status == SG_ST_SENT) {
		set_reply(text, text_end, ev);
		ev->flags &= ~(unsigned)SG_LEV_OWN;
		return true;
	}
	/* The relay's address wins over the one in the reason (the same host,
	 * except in Postfix's cached "delivery temporarily suspended"). */
	bool relay_ip = ev->flags & SG_LEV_HAS_IP;
	struct sg_cidr addr = ev->addr;
	char ip[SG_IP_LEN];
	int rs;

	if (relay_ip)
		memcpy(ip, ev->ip, sizeof(ip));
	rs = postfix_reason(text, text_end, ev);
	if (rs == SG_ST_NONE) {
		ev->text = text;
		ev->text_len = (size_t)(text_end - text);
		if (relay_ip) {
			ev->flags |= SG_LEV_HAS_IP;
			ev->addr = addr;
			memcpy(ev->ip, ip, sizeof(ip));
		}
		return true;
	}
	if (relay_ip && !(ev->flags & SG_LEV_SUSPENDED)) {
		ev->flags |= SG_LEV_HAS_IP;
		ev->addr = addr;
		memcpy(ev->ip, ip, sizeof(ip));
		if (relay_host)
			copy(ev->host, sizeof(ev->host), relay_host, relay_host_end);
	}
	/* A cached "delivery temporarily suspended" stays a deferral. */
	if ((rs == SG_ST_CONNECT_ERROR || rs == SG_ST_REFUSED) && !(ev->flags & SG_LEV_SUSPENDED))
		ev->status = rs;
	return true;
}

static bool postfix_message(const char *s, const char *end, struct sg_logev *ev)
{
	int st;

	s = queue_id(s, end, ev);
	if (STARTS(s, end, "to=<"))
		return postfix_status(s, end, ev);
	st = postfix_reason(s, end, ev);
	if (st == SG_ST_NONE)
		return false;
	ev->status = st;
	return true;
}

static bool parse_exim(struct sg_parser *p, const char *s, const char *end, struct sg_logev *ev,
		       bool framed);

static bool parse_postfix(struct sg_parser *p, const char *s, const char *end, struct sg_logev *ev)
{
	const char *q = s, *colon;
	bool framed = false;
	int64_t t;

	/* docker compose prefixes every line with "service    | " */
	if (s < end && !isdig(*s)) {
		const char *bar = memchr(s, '|', (size_t)(end - s) < 64 ? (size_t)(end - s) : 64);

		if (bar && bar + 2 < end && bar[1] == ' ' && bar > s && bar[-1] == ' ' &&
		    (isdig(bar[2]) || (bar[2] >= 'A' && bar[2] <= 'Z')))
			s = bar + 2;
	}
	if (s < end && (*s >= 'A' && *s <= 'Z') && (q = ts_3164(p, s, end, &t, &ev->msec))) {
		ev->time = t;
		framed = true;
	} else if (s < end && isdig(*s) && (q = ts_ymd(p, s, end, true, &t, &ev->msec))) {
		ev->time = t;
		framed = true;
	} else {
		q = s;
	}
	/* The syslog header ends at the first ": " after the program tag. */
	colon = FIND(q, end, ": ");
	if (colon) {
		switch (classify_tag(q, colon)) {
		case TAG_POSTFIX:
			return postfix_message(colon + 2, end, ev);
		case TAG_LOCAL_AGENT:
			ev->flags |= SG_LEV_LOCAL_AGENT;
			return postfix_message(colon + 2, end, ev);
		case TAG_EXIM:
			return parse_exim(p, colon + 2, end, ev, true);
		case TAG_SKIP:
			return false;
		case TAG_NONE:
			break;
		}
	}
	if (framed)
		return false;      /* a timestamped line of some other program */
	return postfix_message(s, end, ev);
}

/* ---- Exim ------------------------------------------------------------- */

/* Exim message id: 6-6-2 (classic) or 6-11-4 (4.97+). */
static const char *exim_id(const char *s, const char *end, struct sg_logev *ev)
{
	const char *q = s;
	int parts = 0, n = 0;

	while (q < end && (isalnum_(*q) || *q == '-')) {
		if (*q == '-') {
			if (!n)
				return NULL;
			parts++;
			n = 0;
		} else {
			n++;
		}
		q++;
	}
	if (parts != 2 || !n || q - s < 14 || q - s >= SG_QID_LEN || q >= end || *q != ' ')
		return NULL;
	copy(ev->queue_id, sizeof(ev->queue_id), s, q);
	return q + 1;
}

/* "H=name [ip]", "H=[ip]", or old style "host name [ip]". Returns after ']' (and :port). */
static const char *exim_host(const char *s, const char *end, struct sg_logev *ev)
{
	const char *lb = s, *rb;

	while (lb < end && *lb != '[' && *lb != ' ')
		lb++;
	if (lb < end && *lb == ' ') {
		copy(ev->host, sizeof(ev->host), s, lb);
		lb++;
	}
	if (lb >= end || *lb != '[' || !(rb = memchr(lb, ']', (size_t)(end - lb))))
		return NULL;
	if (lb == s)
		ev->host[0] = '\0';
	set_ip(ev, lb, rb);
	rb++;
	if (end - rb > 1 && rb[0] == ':' && isdig(rb[1]))   /* :port */
		while (++rb < end && isdig(*rb))
			;
	return rb;
}

/* An "H=" field in the structured part [s, end). */
static bool exim_h_field(const char *s, const char *end, struct sg_logev *ev)
{
	const char *h;

	if (STARTS(s, end, "H="))
		return exim_host(s + 2, end, ev) != NULL;
	h = FIND(s, end, " H=");
	return h && exim_host(h + 3, end, ev);
}

/* "SMTP error from remote mail server after CMD: [host H [ip]: ]REPLY" */
static bool exim_smtp_error(const char *err, const char *end, struct sg_logev *ev)
{
	const char *q = err + 41, *r;  /* strlen("SMTP error from remote mail server after ") */

	if (!(r = FIND(q, end, ": ")))
		return false;
	r += 2;
	if (STARTS(r, end, "host ")) {
		const char *h = exim_host(r + 5, end, ev);

		if (h && STARTS(h, end, ": "))
			r = h + 2;
	}
	set_reply(r, end, ev);
	return true;
}

static bool parse_exim(struct sg_parser *p, const char *s, const char *end, struct sg_logev *ev,
		       bool framed)
{
	const char *q = s, *err, *after;
	int64_t t;

	if ((after = ts_ymd(p, s, end, false, &t, &ev->msec))) {
		ev->time = t;
		q = after;
		framed = true;
	}
	while (q < end && *q == ' ')
		q++;
	if (q < end && *q == '[') {              /* +pid */
		const char *rb = memchr(q, ']', (size_t)(end - q));

		if (rb && rb + 1 < end && rb[1] == ' ')
			q = rb + 2;
	}
	if ((after = exim_id(q, end, ev)))
		q = after;
	else if (framed && !STARTS(q, end, "H=") && !STARTS(q, end, "SMTP error"))
		return false;

	err = FIND(q, end, "SMTP error from remote mail server after ");
	const char *structured_end = err ? err : end;

	if (STARTS(q, end, "== ") || STARTS(q, end, "** ")) {
		ev->status = q[0] == '=' ? SG_ST_DEFERRED : SG_ST_BOUNCED;
		exim_h_field(q, structured_end, ev);
		if (err)
			return exim_smtp_error(err, end, ev);
		/* "defer (errno): text" without a remote reply */
		const char *d = FIND(q, end, " defer (");

		if (!d)
			d = FIND(q, end, ": ");
		if (d) {
			const char *c = FIND(d, end, "): ");

			if (c)
				d = c + 3;
			else if ((c = FIND(d, end, ") ")))
				d = c + 2;
			else if (d[0] == ':')
				d += 2;
			ev->text = d;
			ev->text_len = (size_t)(end - d);
		}
		if (!ev->text)
			return false;
		if (STARTS(ev->text, end, "Operation not permitted"))
			ev->status = SG_ST_REFUSED;
		else if (STARTS(ev->text, end, "Connection timed out") ||
			 STARTS(ev->text, end, "Connection refused") ||
			 STARTS(ev->text, end, "Network is unreachable") ||
			 STARTS(ev->text, end, "No route to host"))
			ev->status = SG_ST_CONNECT_ERROR;
		else if (STARTS(ev->text, end, "retry time not reached"))
			ev->flags |= SG_LEV_SUSPENDED;     /* Exim's cached verdict */
		else if (!(ev->flags & SG_LEV_HAS_IP) && !ev->host[0])
			return false;   /* a local decision (queue_smtp_domains...), no remote */
		return true;
	}
	if (STARTS(q, end, "=> ") || STARTS(q, end, "-> ")) {
		const char *c;

		if (!exim_h_field(q, end, ev))
			return false;             /* local delivery, no SMTP */
		ev->status = SG_ST_SENT;
		if ((c = FIND(q, end, " C=\""))) {
			const char *ce = memchr(c + 4, '"', (size_t)(end - c - 4));

			set_reply(c + 4, ce ? ce : end, ev);
			ev->flags &= ~(unsigned)SG_LEV_OWN;
		}
		return true;
	}
	if (STARTS(q, end, "<= ") || STARTS(q, end, "*> ") || STARTS(q, end, "Completed"))
		return false;
	/* No flag: a per-host error ("H=mx [ip]: SMTP error ..." or the old
	 * "SMTP error from ... after CMD: host mx [ip]: REPLY"). */
	if (err) {
		exim_h_field(q, structured_end, ev);
		if (!exim_smtp_error(err, end, ev))
			return false;
		ev->status = ev->code >= 500 ? SG_ST_BOUNCED : SG_ST_DEFERRED;
		/* without a message id, only a real address makes it an event */
		return ev->flags & SG_LEV_HAS_IP || (ev->queue_id[0] && ev->host[0]);
	}
	if (STARTS(q, end, "H=")) {                 /* "H=mx [ip] Connection timed out" */
		const char *h = exim_host(q + 2, end, ev);

		if (!h)
			return false;
		while (h < end && (*h == ' ' || *h == ':'))
			h++;
		ev->text = h;
		ev->text_len = (size_t)(end - h);
		if (STARTS(h, end, "Operation not permitted"))
			ev->status = SG_ST_REFUSED;
		else if (STARTS(h, end, "Connection ") || STARTS(h, end, "Network is unreachable") ||
			 STARTS(h, end, "No route to host"))
			ev->status = SG_ST_CONNECT_ERROR;
		else
			return false;
		return true;
	}
	return false;
}

/* ---- entry points ----------------------------------------------------- */

/*
 * The sending address a throttle reply names: Microsoft "The mail server
 * [a.b.c.d] has exceeded...", Yahoo "[TSS04] Messages from a.b.c.d
 * temporarily deferred". Kept only if it parses as an address.
 */
static void reply_source(struct sg_logev *ev)
{
	static const struct { const char *pre; char stop; } marks[] = {
		{ "The mail server [", ']' }, { "Messages from ", ' ' },
	};
	const char *end = ev->text + ev->text_len;
	struct sg_cidr a;

	if (ev->code < 400)
		return;
	for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++) {
		const char *at = memmem(ev->text, ev->text_len, marks[i].pre, strlen(marks[i].pre));
		const char *q;
		size_t n;

		if (!at)
			continue;
		at += strlen(marks[i].pre);
		for (q = at; q < end && *q != marks[i].stop; q++)
			;
		n = (size_t)(q - at);
		if (!n || n >= sizeof(ev->source))
			continue;
		memcpy(ev->source, at, n);
		ev->source[n] = '\0';
		if (!sg_addr_parse(ev->source, &a))
			return;
		ev->source[0] = '\0';
	}
}

bool sg_parse_line(struct sg_parser *p, const char *line, size_t len, struct sg_logev *ev)
{
	const char *s = line, *end = line + len;
	bool ok;

	while (end > s && (end[-1] == '\n' || end[-1] == '\r'))
		end--;
	ev->time = -1;
	ev->msec = 0;
	ev->session_ms = -1;
	ev->status = SG_ST_NONE;
	ev->flags = 0;
	ev->code = 0;
	ev->dsn[0] = ev->queue_id[0] = ev->host[0] = ev->ip[0] = ev->source[0] = '\0';
	ev->text = NULL;
	ev->text_len = 0;

	switch (p->format) {
	case SG_FMT_EXIM:
		ok = parse_exim(p, s, end, ev, false);
		break;
	case SG_FMT_POSTFIX:
		ok = parse_postfix(p, s, end, ev);
		break;
	default:
		/* Exim's "YYYY-MM-DD HH:MM:SS " vs rsyslog's "YYYY-MM-DDTHH..." */
		if (end - s > 19 && isdig(s[0]) && s[4] == '-' && s[10] == ' ')
			ok = parse_exim(p, s, end, ev, false);
		else if (!(ok = parse_postfix(p, s, end, ev)) && ev->time < 0 && !ev->queue_id[0] &&
			 (FIND(s, end, " H=") || FIND(s, end, "SMTP error from remote")))
			ok = parse_exim(p, s, end, ev, false);
	}
	if (!ok || ev->status == SG_ST_NONE)
		return false;
	if (!ev->text) {
		ev->text = end;
		ev->text_len = 0;
	}
	reply_source(ev);
	return true;
}

int sg_format_parse(const char *s)
{
	if (!strcmp(s, "auto"))
		return SG_FMT_AUTO;
	if (!strcmp(s, "postfix"))
		return SG_FMT_POSTFIX;
	if (!strcmp(s, "exim"))
		return SG_FMT_EXIM;
	return -1;
}

const char *sg_status_name(int status)
{
	static const char *const names[] = { "none", "sent", "deferred", "bounced",
					     "connect_error", "refused_by_smtpgov" };

	return (unsigned)status < sizeof(names) / sizeof(names[0]) ? names[status] : "?";
}
