/*
 * mxsim - an SMTP receiver that simulates throttling mail providers.
 *
 * The end-to-end tests point a real MTA (a private Postfix instance) at
 * mxsim instead of the Internet. Each "persona" stands for one provider: it
 * listens on a range of loopback addresses (many MX hosts, one provider, the
 * way Workspace- or Microsoft-hosted domains all land on the same servers),
 * counts the sessions of each client IP across all of its addresses, and past
 * its limit answers with that provider's throttle reply at a chosen SMTP
 * stage. Under the limit it accepts mail for real (EHLO, pipelining, DATA,
 * and STARTTLS with --tls-cert/--tls-key, through OpenSSL) and records
 * every Message-ID, so a test can prove each message arrived exactly once.
 *
 * The statistics a test asserts on (throttle replies sent, accepted
 * messages, peak concurrent sessions per client IP) come from the control
 * socket (`stats`) or the --stats file written on SIGUSR1 and on exit.
 * Limits change at run time through the control socket (`limit NAME N`).
 *
 * One thread, one epoll loop, non-blocking sockets, edge-triggered. It binds
 * only loopback addresses, or the test ranges 198.18.0.0/15 and
 * 2001:db8::/32 that exist only inside network namespaces a test made:
 * this machine's rule is no traffic off the host.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define IN_MAX 8192            /* input buffer: RFC 5321 lines are <= 1000 */
#define OUT_HIGH (256 * 1024)  /* stop reading while this much is unsent */
#define MSG_SIZE_MAX 52428800  /* advertised SIZE */
#define MAX_ADDRS 4096         /* addresses of one persona */
#define DRAIN_MS 2000          /* lingering close after a 421 */
#define NO_LIMIT (-1L)

enum style { ST_GMAIL, ST_OUTLOOK, ST_RATE, ST_YAHOO, ST_GENERIC };
enum stage { SG_GREETING, SG_MAIL, SG_RCPT, SG_DATA };
static const char *const style_names[] = { "gmail", "outlook", "rate", "yahoo", "generic" };
static const char *const stage_names[] = { "greeting", "mail", "rcpt", "data" };

/* One client IP as seen by one persona. */
struct client {
	struct client *next;
	char ip[INET6_ADDRSTRLEN];
	unsigned cur, cur_admitted;   /* open sessions, all / under the limit */
	unsigned peak, peak_admitted; /* peaks of the above since start/reset */
	uint64_t sessions;
	double tokens;                /* style=rate: token bucket, limit per second */
	uint64_t tokens_ms;
};

struct persona {
	char name[32];
	char host[128];               /* greeting/EHLO name, e.g. mx.gmail.sim */
	enum style style;
	enum stage stage;
	long limit;                   /* sessions (or sessions/s for rate), NO_LIMIT */
	unsigned greet_delay, data_delay; /* ms before the banner / the DATA reply */
	uint16_t port;
	unsigned naddrs;
	struct client *clients;
	uint64_t sessions, admitted, throttled_sessions, throttled, accepted, recipients;
	unsigned cur_total, peak_total; /* open sessions of every client IP together */
};

enum kind { K_LISTEN, K_SMTP, K_CTL_LISTEN, K_CTL, K_SIGNAL };

/* Every fd in the epoll set starts with this header. */
struct item {
	enum kind kind;
	int fd;
	struct persona *p;            /* K_LISTEN, K_SMTP */
};

struct conn {
	struct item it;
	struct conn *prev, *next;
	struct client *cl;
	unsigned long id;
	bool admitted, throttled, helo, mail, data, in_hdr, bol, skip_line;
	bool closing, draining, eof, dead;
	bool starttls;                /* 220 to STARTTLS queued: TLS once it is sent */
	SSL *ssl;                     /* after STARTTLS */
	bool handshaking;
	unsigned nrcpt;
	uint64_t size;
	uint64_t hold_until, drain_until, last_ms;
	char msgid[256];
	bool msgid_cont;              /* Message-ID: with the value on the next line */
	size_t inlen;
	char in[IN_MAX];
	char *out;
	size_t outlen, outoff, outcap;
};

/* Message-ID bookkeeping: an open-addressing set plus acceptance order. */
struct idset {
	char **slot;
	size_t cap, n;
	char **order, **dups;
	size_t norder, ndups, order_cap, dups_cap;
	uint64_t messages, no_id;
};

#define MAX_PERSONAS 32
static struct persona personas[MAX_PERSONAS]; /* listeners point into it */
static unsigned npersonas;
static struct conn *conns;
static struct conn *graveyard;  /* closed, freed after the event batch */
static unsigned nconns, nheld;
static unsigned long next_id = 1;
static struct idset ids;
static int epfd = -1;
static FILE *logf;
static const char *stats_path, *control_path;
static unsigned idle_timeout_ms = 300000;
static SSL_CTX *tls_ctx;        /* --tls-cert/--tls-key: STARTTLS offered */
static uint64_t start_ms;

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("mxsim: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	if (!p)
		die("out of memory");
	return p;
}

/* --log: one line per session event, wall-clock time in UTC. */
static void logev(const struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logev(const struct conn *c, const char *fmt, ...)
{
	struct timespec ts;
	struct tm tm;
	char when[32];
	va_list ap;

	if (!logf)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(logf, "%s.%03ldZ %s %s s=%lu ", when, ts.tv_nsec / 1000000,
		c->it.p->name, c->cl->ip, c->id);
	va_start(ap, fmt);
	vfprintf(logf, fmt, ap);
	va_end(ap);
	fputc('\n', logf);
}

/* ---- growing string buffer, used for replies and JSON ---- */

struct sbuf {
	char *s;
	size_t len, cap;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->s = xrealloc(b->s, b->cap);
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = 0;
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		sb_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static void sb_json_str(struct sbuf *b, const char *s)
{
	sb_add(b, "\"", 1);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			sb_printf(b, "\\%c", ch);
		else if (ch < 0x20 || ch >= 0x7f)
			sb_printf(b, "\\u%04x", ch);
		else
			sb_add(b, s, 1);
	}
	sb_add(b, "\"", 1);
}

/* ---- Message-ID set ---- */

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

static void push(char ***v, size_t *n, size_t *cap, char *s)
{
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 256;
		*v = xrealloc(*v, *cap * sizeof(**v));
	}
	(*v)[(*n)++] = s;
}

/* Records one accepted message; returns true when its id was seen before. */
static bool ids_record(const char *id)
{
	size_t i;

	ids.messages++;
	if (!*id) {
		ids.no_id++;
		return false;
	}
	if ((ids.n + 1) * 2 > ids.cap) {
		struct idset old = ids;

		ids.cap = old.cap ? old.cap * 2 : 1024;
		ids.slot = calloc(ids.cap, sizeof(char *));
		if (!ids.slot)
			die("out of memory");
		for (i = 0; i < old.cap; i++) {
			size_t j;

			if (!old.slot[i])
				continue;
			for (j = hash_str(old.slot[i]) & (ids.cap - 1); ids.slot[j]; j = (j + 1) & (ids.cap - 1))
				;
			ids.slot[j] = old.slot[i];
		}
		free(old.slot);
	}
	for (i = hash_str(id) & (ids.cap - 1); ids.slot[i]; i = (i + 1) & (ids.cap - 1)) {
		if (!strcmp(ids.slot[i], id)) {
			push(&ids.dups, &ids.ndups, &ids.dups_cap, ids.slot[i]);
			return true;
		}
	}
	ids.slot[i] = strdup(id);
	if (!ids.slot[i])
		die("out of memory");
	ids.n++;
	push(&ids.order, &ids.norder, &ids.order_cap, ids.slot[i]);
	return false;
}

static void ids_clear(void)
{
	for (size_t i = 0; i < ids.cap; i++)
		free(ids.slot[i]);
	free(ids.slot);
	free(ids.order);
	free(ids.dups);
	memset(&ids, 0, sizeof(ids));
}

/* ---- statistics ---- */

static void stats_json(struct sbuf *b)
{
	sb_printf(b, "{\"uptime_ms\":%llu,\"personas\":{", (unsigned long long)(now_ms() - start_ms));
	for (unsigned i = 0; i < npersonas; i++) {
		const struct persona *p = &personas[i];
		unsigned current = 0, peak = 0, peak_adm = 0, cur_max = 0;
		const struct client *cl;

		for (cl = p->clients; cl; cl = cl->next) {
			current += cl->cur;
			peak = cl->peak > peak ? cl->peak : peak;
			peak_adm = cl->peak_admitted > peak_adm ? cl->peak_admitted : peak_adm;
			cur_max = cl->cur > cur_max ? cl->cur : cur_max;
		}
		sb_printf(b, "%s", i ? "," : "");
		sb_json_str(b, p->name);
		sb_printf(b, ":{\"style\":\"%s\",\"stage\":\"%s\",\"port\":%u,\"addresses\":%u,",
			  style_names[p->style], stage_names[p->stage], p->port, p->naddrs);
		if (p->limit == NO_LIMIT)
			sb_printf(b, "\"limit\":null,");
		else
			sb_printf(b, "\"limit\":%ld,", p->limit);
		sb_printf(b, "\"sessions\":%llu,\"admitted\":%llu,\"throttled\":%llu,"
			  "\"throttled_sessions\":%llu,\"accepted\":%llu,\"recipients\":%llu,"
			  "\"current\":%u,\"current_max\":%u,\"peak\":%u,\"peak_admitted\":%u,"
			  "\"peak_total\":%u,\"clients\":{",
			  (unsigned long long)p->sessions, (unsigned long long)p->admitted,
			  (unsigned long long)p->throttled, (unsigned long long)p->throttled_sessions,
			  (unsigned long long)p->accepted, (unsigned long long)p->recipients,
			  current, cur_max, peak, peak_adm, p->peak_total);
		for (cl = p->clients; cl; cl = cl->next) {
			sb_printf(b, "%s\"%s\":{\"sessions\":%llu,\"current\":%u,\"current_admitted\":%u,"
				  "\"peak\":%u,\"peak_admitted\":%u}", cl == p->clients ? "" : ",", cl->ip,
				  (unsigned long long)cl->sessions, cl->cur, cl->cur_admitted, cl->peak,
				  cl->peak_admitted);
		}
		sb_printf(b, "}}");
	}
	sb_printf(b, "},\"messages\":%llu,\"unique_ids\":%zu,\"duplicates\":%zu,\"no_message_id\":%llu,"
		  "\"message_ids\":[", (unsigned long long)ids.messages, ids.norder, ids.ndups,
		  (unsigned long long)ids.no_id);
	for (size_t i = 0; i < ids.norder; i++) {
		if (i)
			sb_add(b, ",", 1);
		sb_json_str(b, ids.order[i]);
	}
	sb_printf(b, "],\"duplicate_ids\":[");
	for (size_t i = 0; i < ids.ndups; i++) {
		if (i)
			sb_add(b, ",", 1);
		sb_json_str(b, ids.dups[i]);
	}
	sb_printf(b, "]}\n");
}

/* Writes the stats JSON to --stats atomically (write, then rename). */
static void stats_write_file(void)
{
	struct sbuf b = { 0 };
	char tmp[4096];
	FILE *f;

	if (!stats_path)
		return;
	snprintf(tmp, sizeof(tmp), "%s.tmp", stats_path);
	stats_json(&b);
	f = fopen(tmp, "w");
	if (!f || fwrite(b.s, 1, b.len, f) != b.len || fclose(f) != 0 || rename(tmp, stats_path) != 0)
		fprintf(stderr, "mxsim: %s: %s\n", stats_path, strerror(errno));
	free(b.s);
}

static void stats_reset(void)
{
	for (unsigned i = 0; i < npersonas; i++) {
		struct persona *p = &personas[i];

		p->sessions = p->admitted = p->throttled_sessions = p->throttled = 0;
		p->accepted = p->recipients = 0;
		p->peak_total = p->cur_total;
		for (struct client *cl = p->clients; cl; cl = cl->next) {
			cl->peak = cl->cur;
			cl->peak_admitted = cl->cur_admitted;
			cl->sessions = 0;
		}
	}
	ids_clear();
}

/* ---- connections ---- */

static void out_add(struct conn *c, const char *s, size_t n)
{
	if (c->outlen + n > c->outcap) {
		if (c->outoff) {
			memmove(c->out, c->out + c->outoff, c->outlen - c->outoff);
			c->outlen -= c->outoff;
			c->outoff = 0;
		}
		if (c->outlen + n > c->outcap) {
			c->outcap = (c->outlen + n) * 2;
			c->out = xrealloc(c->out, c->outcap);
		}
	}
	memcpy(c->out + c->outlen, s, n);
	c->outlen += n;
}

static void reply(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(struct conn *c, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(buf) - 3)
		n = sizeof(buf) - 3;
	memcpy(buf + n, "\r\n", 2);
	out_add(c, buf, n + 2);
}

static bool held(const struct conn *c)
{
	return c->hold_until != 0;
}

static void hold(struct conn *c, unsigned ms)
{
	if (!ms || held(c))
		return;
	c->hold_until = now_ms() + ms;
	nheld++;
}

static void conn_close(struct conn *c, const char *why)
{
	struct client *cl = c->cl;

	if (c->dead)
		return;
	c->dead = true;
	if (c->it.kind == K_SMTP) {
		logev(c, "close %s", why);
		cl->cur--;
		c->it.p->cur_total--;
		if (c->admitted)
			cl->cur_admitted--;
	}
	if (held(c))
		nheld--;
	SSL_free(c->ssl);
	close(c->it.fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	nconns--;
	/* freed later: callers up the stack and this batch may still look */
	c->next = graveyard;
	graveyard = c;
}

/* One step of a TLS handshake or record I/O: > 0 bytes, 0 EOF, -1 with
 * errno (EAGAIN: wait for the socket). */
static ssize_t tls_result(struct conn *c, int ret)
{
	int err = SSL_get_error(c->ssl, ret);

	if (ret > 0)
		return ret;
	if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
		errno = EAGAIN;
		return -1;
	}
	if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && errno == 0) ||
	    (err == SSL_ERROR_SSL &&
	     ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
		ERR_clear_error();
		return 0;    /* the client closed, with or without close_notify */
	}
	if (err != SSL_ERROR_SYSCALL) {
		char why[256];

		ERR_error_string_n(ERR_get_error(), why, sizeof(why));
		logev(c, "tls error %s", why);
		ERR_clear_error();
		errno = EPROTO;
	}
	return -1;
}

/* Finish the handshake first; 1 when done, else as tls_result. */
static ssize_t tls_ready(struct conn *c)
{
	ssize_t r;

	if (!c->handshaking)
		return 1;
	if ((r = tls_result(c, SSL_do_handshake(c->ssl))) <= 0)
		return r;
	c->handshaking = false;
	logev(c, "tls %s %s", SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl));
	return 1;
}

static ssize_t io_read(struct conn *c, void *buf, size_t n)
{
	ssize_t r;

	if (!c->ssl)
		return read(c->it.fd, buf, n);
	if ((r = tls_ready(c)) <= 0)
		return r;
	return tls_result(c, SSL_read(c->ssl, buf, (int)n));
}

static ssize_t io_write(struct conn *c, const void *buf, size_t n)
{
	ssize_t r;

	if (!c->ssl)
		return send(c->it.fd, buf, n, MSG_NOSIGNAL);
	if ((r = tls_ready(c)) <= 0) {
		if (r == 0)
			errno = EPIPE;
		return -1;
	}
	return tls_result(c, SSL_write(c->ssl, buf, (int)n));
}

/* The 220 to STARTTLS is out: the session starts over inside TLS. */
static void start_tls(struct conn *c)
{
	c->starttls = false;
	c->inlen = 0;                 /* nothing may be pipelined past STARTTLS */
	c->helo = false;
	c->ssl = SSL_new(tls_ctx);
	if (!c->ssl || !SSL_set_fd(c->ssl, c->it.fd)) {
		conn_close(c, "SSL_new failed");
		return;
	}
	SSL_set_accept_state(c->ssl);
	c->handshaking = true;
}

/* Sends what is queued; after a closing reply, half-closes and drains. */
static void flush(struct conn *c)
{
	while (!held(c) && c->outoff < c->outlen) {
		ssize_t n = io_write(c, c->out + c->outoff, c->outlen - c->outoff);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0) {
			conn_close(c, strerror(errno));
			return;
		}
		c->outoff += n;
	}
	if (c->outoff == c->outlen)
		c->outoff = c->outlen = 0;
	if (c->starttls && !held(c) && c->outlen == 0)
		start_tls(c);
	if (c->closing && !c->draining && !held(c) && c->outlen == 0) {
		/* Closing with unread input would send an RST that can destroy
		 * the reply in the client's buffer: FIN first, then drain. */
		if (c->ssl && !c->handshaking)
			SSL_shutdown(c->ssl);
		shutdown(c->it.fd, SHUT_WR);
		c->draining = true;
		c->drain_until = now_ms() + DRAIN_MS;
	}
}

static const char *client_ip(const struct conn *c)
{
	return c->cl->ip;
}

/* The provider's throttle reply; 421 replies end the session. */
static void throttle(struct conn *c, const char *stage)
{
	struct persona *p = c->it.p;
	const char *ip = client_ip(c);

	p->throttled++;
	switch (p->style) {
	case ST_GMAIL:
		reply(c, "421-4.4.5 Server busy, try again later.\r\n"
			 "421 4.4.5 https://support.google.com/mail/answer/3221692 mxsim%lu - gsmtp", c->id);
		break;
	case ST_OUTLOOK:
		reply(c, "451 4.7.652 The mail server [%s] has exceeded the maximum number of connections.", ip);
		break;
	case ST_RATE:
		reply(c, "451 4.7.500 Server busy. Please try again later from [%s].", ip);
		break;
	case ST_YAHOO:
		reply(c, "421 4.7.0 [TSS04] Messages from %s temporarily deferred due to unexpected volume "
			 "or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes", ip);
		break;
	case ST_GENERIC:
		reply(c, "421 4.7.0 Too many concurrent connections from %s", ip);
		break;
	}
	if (p->style == ST_GMAIL || p->style == ST_YAHOO || p->style == ST_GENERIC)
		c->closing = true;
	logev(c, "throttle at=%s%s", stage, c->closing ? " close" : "");
}

/* True when this command is where an over-limit session gets its reply. */
static bool throttle_here(struct conn *c, enum stage stage)
{
	if (c->admitted || c->it.p->stage != stage)
		return false;
	c->throttled = true;
	throttle(c, stage_names[stage]);
	return true;
}

static void reset_txn(struct conn *c)
{
	c->mail = c->data = false;
	c->nrcpt = 0;
	c->size = 0;
}

static void end_of_data(struct conn *c)
{
	char qid[32];
	bool dup;

	snprintf(qid, sizeof(qid), "MX%08lX%04X", c->id, (unsigned)(ids.messages & 0xffff));
	dup = ids_record(c->msgid);
	c->it.p->accepted++;
	logev(c, "accept queued_as=%s rcpts=%u size=%llu message_id=%s%s", qid, c->nrcpt,
	      (unsigned long long)c->size, c->msgid[0] ? c->msgid : "-", dup ? " DUPLICATE" : "");
	if (c->size > MSG_SIZE_MAX)
		reply(c, "552 5.3.4 Message size exceeds fixed limit");
	else
		reply(c, "250 2.0.0 OK queued as %s", qid);
	reset_txn(c);
	hold(c, c->it.p->data_delay);
}

static void take_msgid(struct conn *c, const char *v, size_t n)
{
	while (n && (*v == ' ' || *v == '\t'))
		v++, n--;
	while (n && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r' || v[n - 1] == '\n'))
		n--;
	if (n >= sizeof(c->msgid))
		n = sizeof(c->msgid) - 1;
	memcpy(c->msgid, v, n);
	c->msgid[n] = 0;
	c->msgid_cont = (n == 0);
}

/* One DATA line (or a piece of an over-long one when !complete). */
static void data_line(struct conn *c, const char *s, size_t n, bool complete)
{
	bool bol = c->bol;

	c->bol = complete;
	if (bol && complete && (n == 2 || n == 3) && s[0] == '.' &&
	    (!strncmp(s + 1, "\r\n", 2) || (n == 2 && s[1] == '\n'))) {
		c->data = false;
		end_of_data(c);
		return;
	}
	if (bol && n && s[0] == '.')   /* dot-unstuffing */
		s++, n--;
	c->size += n;
	if (!bol || !c->in_hdr)
		return;
	if (n == 0 || s[0] == '\r' || s[0] == '\n') {
		c->in_hdr = false;
	} else if (s[0] == ' ' || s[0] == '\t') {
		if (c->msgid_cont)
			take_msgid(c, s, n);
	} else {
		c->msgid_cont = false;
		if (n >= 11 && !strncasecmp(s, "Message-ID:", 11) && !c->msgid[0])
			take_msgid(c, s + 11, n - 11);
	}
}

static void smtp_command(struct conn *c, char *line)
{
	struct persona *p = c->it.p;
	char *arg = line;

	while (*arg && *arg != ' ')
		arg++;
	if (*arg)
		*arg++ = 0;
	if (!strcasecmp(line, "QUIT")) {
		reply(c, "221 2.0.0 %s closing connection", p->host);
		c->closing = true;
	} else if (!strcasecmp(line, "NOOP")) {
		reply(c, "250 2.0.0 OK");
	} else if (!strcasecmp(line, "RSET")) {
		reset_txn(c);
		reply(c, "250 2.0.0 OK");
	} else if (c->throttled) {
		throttle(c, "again");   /* a 451 session: everything else is refused */
	} else if (!strcasecmp(line, "EHLO")) {
		reset_txn(c);
		c->helo = true;
		reply(c, "250-%s at your service, [%s]\r\n250-SIZE %d\r\n250-8BITMIME\r\n%s"
			 "250-ENHANCEDSTATUSCODES\r\n250 PIPELINING", p->host, client_ip(c), MSG_SIZE_MAX,
			 tls_ctx && !c->ssl ? "250-STARTTLS\r\n" : "");
	} else if (!strcasecmp(line, "HELO")) {
		reset_txn(c);
		c->helo = true;
		reply(c, "250 %s", p->host);
	} else if (!strcasecmp(line, "MAIL")) {
		if (!c->helo)
			reply(c, "503 5.5.1 EHLO/HELO first.");
		else if (c->mail)
			reply(c, "503 5.5.1 Nested MAIL command.");
		else if (strncasecmp(arg, "FROM:", 5))
			reply(c, "501 5.5.4 Syntax: MAIL FROM:<address>");
		else if (!throttle_here(c, SG_MAIL)) {
			c->mail = true;
			reply(c, "250 2.1.0 OK");
		}
	} else if (!strcasecmp(line, "RCPT")) {
		if (!c->mail)
			reply(c, "503 5.5.1 MAIL first.");
		else if (strncasecmp(arg, "TO:", 3))
			reply(c, "501 5.5.4 Syntax: RCPT TO:<address>");
		else if (!throttle_here(c, SG_RCPT)) {
			c->nrcpt++;
			p->recipients++;
			reply(c, "250 2.1.5 OK");
		}
	} else if (!strcasecmp(line, "DATA")) {
		if (!c->mail || !c->nrcpt)
			reply(c, "554 5.5.1 Error: no valid recipients");
		else if (!throttle_here(c, SG_DATA)) {
			c->data = c->in_hdr = c->bol = true;
			c->msgid[0] = 0;
			c->msgid_cont = false;
			reply(c, "354 Go ahead");
		}
	} else if (!strcasecmp(line, "VRFY")) {
		reply(c, "252 2.1.5 Send some mail, I'll try my best");
	} else if (!strcasecmp(line, "STARTTLS")) {
		if (!tls_ctx || c->ssl) {
			reply(c, "502 5.5.1 STARTTLS not offered here");
		} else {
			reset_txn(c);
			reply(c, "220 2.0.0 Ready to start TLS");
			c->starttls = true;
			logev(c, "starttls");
		}
	} else {
		reply(c, "502 5.5.2 Unrecognized command.");
	}
}

static void ctl_command(struct conn *c, char *line)
{
	char name[64], val[32];
	struct sbuf b = { 0 };

	if (!strcmp(line, "stats")) {
		stats_json(&b);
		out_add(c, b.s, b.len);
		free(b.s);
	} else if (!strcmp(line, "reset")) {
		stats_reset();
		out_add(c, "ok\n", 3);
	} else if (!strcmp(line, "dump")) {
		stats_write_file();
		out_add(c, "ok\n", 3);
	} else if (sscanf(line, "limit %63s %31s", name, val) == 2) {
		char *end;
		long n = strtol(val, &end, 10);
		unsigned i;

		if (!strcmp(val, "none"))
			n = NO_LIMIT, end = val + 4;
		for (i = 0; i < npersonas && strcmp(personas[i].name, name); i++)
			;
		if (i == npersonas) {
			sb_printf(&b, "error: no persona %s\n", name);
		} else if (*end || n < NO_LIMIT) {
			sb_printf(&b, "error: bad limit %s\n", val);
		} else {
			personas[i].limit = n;   /* rate buckets refill at the new rate */
			sb_printf(&b, "ok\n");
		}
		out_add(c, b.s, b.len);
		free(b.s);
	} else if (*line) {
		static const char usage[] = "error: commands: stats | reset | dump | limit PERSONA N|none\n";

		out_add(c, usage, sizeof(usage) - 1);
	}
}

/* Consumes complete lines from the input buffer. */
static void process_input(struct conn *c)
{
	size_t off = 0;

	while (off < c->inlen && !held(c) && !c->closing && !c->dead && !c->starttls &&
	       c->outlen - c->outoff < OUT_HIGH) {
		char *s = c->in + off, *nl = memchr(s, '\n', c->inlen - off);
		size_t n = nl ? (size_t)(nl - s) + 1 : c->inlen - off;

		if (!nl && off == 0 && c->inlen == IN_MAX) {
			/* an over-long line: DATA streams it, commands reject it */
			if (c->it.kind == K_SMTP && c->data) {
				data_line(c, s, n, false);
			} else if (!c->skip_line) {
				c->skip_line = true;
				reply(c, "500 5.5.2 Line too long");
			}
			off += n;
			continue;
		}
		if (!nl)
			break;
		off += n;
		if (c->skip_line) {
			c->skip_line = false;
			continue;
		}
		if (c->it.kind == K_SMTP && c->data) {
			data_line(c, s, n, true);
			continue;
		}
		s[--n] = 0;
		if (n && s[n - 1] == '\r')
			s[--n] = 0;
		if (c->it.kind == K_SMTP)
			smtp_command(c, s);
		else
			ctl_command(c, s);
	}
	memmove(c->in, c->in + off, c->inlen - off);
	c->inlen -= off;
}

/* Reads, handles and writes until the socket would block or must wait. */
static void conn_pump(struct conn *c)
{
	while (!c->dead) {
		ssize_t n;

		if (!held(c) && !c->draining)
			process_input(c);
		if (c->dead)
			return;
		flush(c);
		if (c->dead)
			return;
		if (c->eof) {
			/* pending output (a large stats reply) waits for EPOLLOUT */
			if (!held(c) && c->outoff == c->outlen)
				conn_close(c, c->draining ? "done" : "client closed");
			return;
		}
		if (c->inlen == IN_MAX || c->outlen - c->outoff >= OUT_HIGH)
			return;   /* resumed by the hold timer or EPOLLOUT */
		n = io_read(c, c->in + c->inlen, IN_MAX - c->inlen);
		if (n > 0) {
			c->last_ms = now_ms();
			if (c->draining || (c->closing && !c->data))
				continue;   /* discard what follows a closing reply */
			c->inlen += n;
		} else if (n == 0) {
			c->eof = true;
		} else if (errno == EAGAIN) {
			return;
		} else if (errno != EINTR) {
			conn_close(c, strerror(errno));
			return;
		}
	}
}

static struct conn *conn_new(int fd, enum kind kind, struct persona *p)
{
	struct conn *c = calloc(1, sizeof(*c));
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET };

	if (!c)
		die("out of memory");
	c->it.kind = kind;
	c->it.fd = fd;
	c->it.p = p;
	c->id = next_id++;
	c->last_ms = now_ms();
	c->next = conns;
	if (conns)
		conns->prev = c;
	conns = c;
	nconns++;
	ev.data.ptr = c;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
	return c;
}

static struct client *client_get(struct persona *p, const char *ip)
{
	struct client *cl;

	for (cl = p->clients; cl; cl = cl->next)
		if (!strcmp(cl->ip, ip))
			return cl;
	cl = calloc(1, sizeof(*cl));
	if (!cl)
		die("out of memory");
	snprintf(cl->ip, sizeof(cl->ip), "%s", ip);
	cl->next = p->clients;
	p->clients = cl;
	return cl;
}

/* Under the limit? Concurrency counts open admitted sessions of this client
 * IP across all addresses; style=rate is a token bucket of limit/second. */
static bool admit(struct persona *p, struct client *cl)
{
	uint64_t now = now_ms();

	if (p->limit == NO_LIMIT)
		return true;
	if (p->style != ST_RATE)
		return cl->cur_admitted < (unsigned long)p->limit;
	if (!cl->tokens_ms)
		cl->tokens = (double)p->limit;
	else
		cl->tokens += (double)(now - cl->tokens_ms) * (double)p->limit / 1000.0;
	if (cl->tokens > (double)p->limit)
		cl->tokens = (double)p->limit;
	cl->tokens_ms = now;
	if (cl->tokens < 1.0)
		return false;
	cl->tokens -= 1.0;
	return true;
}

static void smtp_accept(struct item *l)
{
	struct persona *p = l->p;

	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss), ll = sizeof(ss);
		char ip[INET6_ADDRSTRLEN], local[INET6_ADDRSTRLEN] = "?";
		struct sockaddr_storage ls;
		struct conn *c;
		struct client *cl;
		int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR)
				fprintf(stderr, "mxsim: accept: %s\n", strerror(errno));
			return;
		}
		if (ss.ss_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof(ip));
		else
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof(ip));
		if (!getsockname(fd, (struct sockaddr *)&ls, &ll)) {
			if (ls.ss_family == AF_INET)
				inet_ntop(AF_INET, &((struct sockaddr_in *)&ls)->sin_addr, local, sizeof(local));
			else
				inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ls)->sin6_addr, local, sizeof(local));
		}
		cl = client_get(p, ip);
		c = conn_new(fd, K_SMTP, p);
		c->cl = cl;
		c->admitted = admit(p, cl);
		p->sessions++;
		cl->sessions++;
		cl->cur++;
		if (cl->cur > cl->peak)
			cl->peak = cl->cur;
		if (++p->cur_total > p->peak_total)
			p->peak_total = p->cur_total;
		if (c->admitted) {
			p->admitted++;
			if (++cl->cur_admitted > cl->peak_admitted)
				cl->peak_admitted = cl->cur_admitted;
		} else {
			p->throttled_sessions++;
		}
		logev(c, "connect to=%s admitted=%d cur=%u cur_admitted=%u", local, c->admitted,
		      cl->cur, cl->cur_admitted);
		if (!throttle_here(c, SG_GREETING))
			reply(c, "220 %s ESMTP mxsim ready", p->host);
		hold(c, p->greet_delay);
		conn_pump(c);
	}
}

static void ctl_accept(struct item *l)
{
	for (;;) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		conn_pump(conn_new(fd, K_CTL, NULL));
	}
}

/* Releases holds, ends drains and idle sessions; returns the epoll timeout. */
static int timers(void)
{
	uint64_t now = now_ms(), next = now + 1000;
	struct conn *c, *nx;

	for (c = conns; c; c = nx) {
		nx = c->next;   /* conn_pump/conn_close only unlink c itself */
		if (held(c) && c->hold_until <= now) {
			c->hold_until = 0;
			nheld--;
			conn_pump(c);
			continue;
		}
		if (c->draining && c->drain_until <= now)
			conn_close(c, "drain timeout");
		else if (c->it.kind == K_SMTP && !held(c) && now - c->last_ms > idle_timeout_ms) {
			logev(c, "idle timeout");
			reply(c, "421 4.4.2 %s Error: timeout exceeded", c->it.p->host);
			c->closing = true;
			c->eof = true;
			conn_pump(c);
		}
	}
	for (c = nheld ? conns : NULL; c; c = c->next)   /* holds set just now count too */
		if (held(c) && c->hold_until < next)
			next = c->hold_until;
	return next > now ? (int)(next - now) : 0;
}

/* ---- command line ---- */

/* Loopback, or the test ranges that exist only in namespaces a test made
 * (198.18.0.0/15, 2001:db8::/32). */
static bool loopback(const struct sockaddr_storage *ss)
{
	const uint8_t *a6 = ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
	uint32_t a4;

	if (ss->ss_family == AF_INET) {
		a4 = ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr);
		return (a4 >> 24) == 127 || (a4 >> 17) == (0xc612u >> 1);
	}
	return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr) ||
	       (a6[0] == 0x20 && a6[1] == 0x01 && a6[2] == 0x0d && a6[3] == 0xb8);
}

static void listen_on(struct persona *p, struct sockaddr_storage *ss)
{
	static struct epoll_event ev = { .events = EPOLLIN };
	struct item *it = calloc(1, sizeof(*it));
	socklen_t len = ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	char ip[INET6_ADDRSTRLEN];
	int one = 1, fd;

	if (!it)
		die("out of memory");
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)ss)->sin_addr, ip, sizeof(ip));
	else
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ss)->sin6_addr, ip, sizeof(ip));
	if (!loopback(ss))
		die("persona %s: %s is not a loopback or test address; mxsim binds only 127.0.0.0/8, "
		    "::1 and, in a test's network namespace, 198.18.0.0/15 and 2001:db8::/32",
		    p->name, ip);
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons(p->port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons(p->port);
	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss->ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)ss, len) < 0)
		die("persona %s: bind %s port %u: %s", p->name, ip, p->port, strerror(errno));
	if (listen(fd, 4096) < 0)
		die("listen: %s", strerror(errno));
	it->kind = K_LISTEN;
	it->fd = fd;
	it->p = p;
	ev.data.ptr = it;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
	p->naddrs++;
}

/* ADDRS: comma-separated items, each IPv4, IPv4-IPv4 (a range) or [IPv6]. */
static void parse_addrs(struct persona *p, char *list)
{
	char *item, *save = NULL;

	for (item = strtok_r(list, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		struct sockaddr_storage ss = { 0 };
		struct in_addr a, b;
		char *dash = strchr(item, '-');

		if (item[0] == '[') {
			size_t n = strlen(item);

			if (n < 3 || item[n - 1] != ']')
				die("persona %s: bad address %s", p->name, item);
			item[n - 1] = 0;
			ss.ss_family = AF_INET6;
			if (inet_pton(AF_INET6, item + 1, &((struct sockaddr_in6 *)&ss)->sin6_addr) != 1)
				die("persona %s: bad IPv6 address %s", p->name, item + 1);
			listen_on(p, &ss);
			continue;
		}
		if (dash)
			*dash = 0;
		if (inet_pton(AF_INET, item, &a) != 1 || (dash && inet_pton(AF_INET, dash + 1, &b) != 1))
			die("persona %s: bad address or range %s%s%s", p->name, item, dash ? "-" : "",
			    dash ? dash + 1 : "");
		if (!dash)
			b = a;
		if (ntohl(b.s_addr) < ntohl(a.s_addr) || ntohl(b.s_addr) - ntohl(a.s_addr) >= MAX_ADDRS)
			die("persona %s: range %s-%s is empty or over %d addresses", p->name, item,
			    dash + 1, MAX_ADDRS);
		for (uint32_t h = ntohl(a.s_addr); h <= ntohl(b.s_addr); h++) {
			memset(&ss, 0, sizeof(ss));
			ss.ss_family = AF_INET;
			((struct sockaddr_in *)&ss)->sin_addr.s_addr = htonl(h);
			listen_on(p, &ss);
		}
	}
}

static int lookup(const char *const *names, int n, const char *s)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(names[i], s))
			return i;
	return -1;
}

static unsigned parse_uint(const char *persona, const char *key, const char *s)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (!*s || *end || v > 3600000)
		die("persona %s: bad %s=%s", persona, key, s);
	return (unsigned)v;
}

/* NAME:ADDRS:PORT[:key=value]... (see usage()). */
static void parse_persona(char *spec)
{
	struct persona *p;
	char *name = spec, *addrs, *port, *opt, *save = NULL;
	int st;

	if (npersonas == MAX_PERSONAS)
		die("--persona: at most %d personas", MAX_PERSONAS);
	p = &personas[npersonas++];
	memset(p, 0, sizeof(*p));
	addrs = strchr(spec, ':');
	if (!addrs)
		die("--persona %s: expected NAME:ADDRS:PORT[:key=value...]", spec);
	*addrs++ = 0;
	if (!*name || strlen(name) >= sizeof(p->name))
		die("--persona: bad name '%s'", name);
	for (unsigned i = 0; i + 1 < npersonas; i++)
		if (!strcmp(personas[i].name, name))
			die("--persona: %s given twice", name);
	snprintf(p->name, sizeof(p->name), "%s", name);
	for (port = addrs; *port && *port != ':'; port++)   /* the first ':' outside [] */
		if (*port == '[' && !(port = strchr(port, ']')))
			die("--persona %s: unclosed [", name);
	if (!*port)
		die("--persona %s: missing :PORT", name);
	*port++ = 0;
	opt = strchr(port, ':');
	if (opt)
		*opt++ = 0;
	p->port = (uint16_t)parse_uint(name, "port", port);
	if (!p->port)
		die("--persona %s: port 0", name);
	st = lookup(style_names, 5, name);
	p->style = st < 0 ? ST_GMAIL : (enum style)st;
	p->stage = SG_GREETING;
	p->limit = NO_LIMIT;
	snprintf(p->host, sizeof(p->host), "mx.%s.sim", name);
	for (opt = opt ? strtok_r(opt, ":", &save) : NULL; opt; opt = strtok_r(NULL, ":", &save)) {
		char *val = strchr(opt, '=');

		if (!val)
			die("--persona %s: option '%s' is not key=value", name, opt);
		*val++ = 0;
		if (!strcmp(opt, "limit")) {
			p->limit = strcmp(val, "none") ? (long)parse_uint(name, opt, val) : NO_LIMIT;
		} else if (!strcmp(opt, "style")) {
			if ((st = lookup(style_names, 5, val)) < 0)
				die("--persona %s: unknown style %s", name, val);
			p->style = (enum style)st;
		} else if (!strcmp(opt, "stage")) {
			if ((st = lookup(stage_names, 4, val)) < 0)
				die("--persona %s: unknown stage %s", name, val);
			p->stage = (enum stage)st;
		} else if (!strcmp(opt, "host")) {
			snprintf(p->host, sizeof(p->host), "%s", val);
		} else if (!strcmp(opt, "greet_delay")) {
			p->greet_delay = parse_uint(name, opt, val);
		} else if (!strcmp(opt, "data_delay")) {
			p->data_delay = parse_uint(name, opt, val);
		} else {
			die("--persona %s: unknown option %s", name, opt);
		}
	}
	parse_addrs(p, addrs);
}

static void usage(FILE *f)
{
	fputs(
"usage: mxsim --persona SPEC [--persona SPEC...] [--control SOCK] [--stats FILE]\n"
"             [--log FILE] [--timeout SEC] [--tls-cert PEM --tls-key PEM]\n"
"An SMTP receiver simulating mail providers that throttle by concurrency or rate.\n"
"\n"
"  --persona NAME:ADDRS:PORT[:key=value...]\n"
"      ADDRS   comma-separated IPv4, IPv4-IPv4 ranges or [IPv6]; loopback\n"
"              (127.0.0.0/8, [::1]), e.g. 127.0.10.1-127.0.10.40, or inside a\n"
"              test's network namespace 198.18.0.0/15 and [2001:db8::/32]\n"
"      limit=N|none  sessions per client IP across all ADDRS (style=rate: new\n"
"                    sessions per second per client IP); default none\n"
"      style=gmail|outlook|rate|yahoo|generic  throttle reply (default: NAME\n"
"                    if it is a style, else gmail):\n"
"          gmail    421-4.4.5 Server busy, try again later. (multi-line), closes\n"
"          outlook  451 4.7.652 The mail server [IP] has exceeded the maximum\n"
"                   number of connections.\n"
"          rate     451 4.7.500 Server busy. Please try again later from [IP].\n"
"          yahoo    421 4.7.0 [TSS04] Messages from IP temporarily deferred ...\n"
"          generic  421 4.7.0 Too many concurrent connections from IP\n"
"                   421 replies close the session; after a 451 every command\n"
"                   but QUIT/RSET/NOOP gets the same reply again.\n"
"      stage=greeting|mail|rcpt|data  where an over-limit session is answered\n"
"                    (greeting: instead of the 220 banner); default greeting\n"
"      host=NAME     greeting name, default mx.NAME.sim\n"
"      greet_delay=MS, data_delay=MS  wait before the banner / the DATA reply\n"
"      Admission is decided at connect; throttled sessions still count in the\n"
"      \"peak\" (attempts) statistic, \"peak_admitted\" counts the others;\n"
"      both are per client IP, \"peak_total\" counts every client IP together.\n"
"  --control SOCK  unix stream socket, one command per line:\n"
"      stats                   -> one line of JSON\n"
"      limit PERSONA N|none    -> ok | error: ...\n"
"      reset                   -> ok (zero counters, peaks, message ids)\n"
"      dump                    -> ok (write --stats now)\n"
"      Created after every listener is bound: its existence means ready.\n"
"  --stats FILE    write the stats JSON on SIGUSR1, SIGTERM and SIGINT\n"
"  --log FILE      one line per session event (UTC time persona client s=ID event)\n"
"  --timeout SEC   idle session timeout, default 300\n"
"  --tls-cert PEM, --tls-key PEM  offer STARTTLS with this certificate (chain)\n"
"                  and key; the session then goes on inside TLS\n", f);
}

/* STARTTLS: a server context with the certificate and key (die if bad). */
static void tls_setup(const char *cert, const char *key)
{
	tls_ctx = SSL_CTX_new(TLS_server_method());
	if (!tls_ctx)
		die("SSL_CTX_new failed");
	if (SSL_CTX_use_certificate_chain_file(tls_ctx, cert) != 1)
		die("--tls-cert %s: cannot load the certificate", cert);
	if (SSL_CTX_use_PrivateKey_file(tls_ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(tls_ctx) != 1)
		die("--tls-key %s: cannot load the key, or it does not match %s", key, cert);
	SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

static int ctl_listen(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	static struct item it = { .kind = K_CTL_LISTEN };
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &it };
	char tmp[sizeof(sun.sun_path)];
	int fd;

	if (snprintf(tmp, sizeof(tmp), "%s.%d", path, getpid()) >= (int)sizeof(tmp))
		die("--control %s: path too long", path);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", tmp);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	unlink(tmp);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(fd, 64) < 0)
		die("--control %s: %s", path, strerror(errno));
	/* bind a temporary name, then rename: the socket appears ready */
	if (rename(tmp, path) < 0)
		die("--control %s: %s", path, strerror(errno));
	it.fd = fd;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
	return fd;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "persona", required_argument, NULL, 'p' },
		{ "control", required_argument, NULL, 'c' },
		{ "stats", required_argument, NULL, 's' },
		{ "log", required_argument, NULL, 'l' },
		{ "timeout", required_argument, NULL, 't' },
		{ "tls-cert", required_argument, NULL, 'C' },
		{ "tls-key", required_argument, NULL, 'K' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static struct item sigit = { .kind = K_SIGNAL };
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &sigit };
	const char *tls_cert = NULL, *tls_key = NULL;
	struct rlimit rl;
	sigset_t mask;
	bool running = true;
	int o;

	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		die("epoll_create1: %s", strerror(errno));
	if (!getrlimit(RLIMIT_NOFILE, &rl)) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	start_ms = now_ms();
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'p':
			parse_persona(optarg);
			break;
		case 'c':
			control_path = optarg;
			break;
		case 's':
			stats_path = optarg;
			break;
		case 'l':
			logf = fopen(optarg, "a");
			if (!logf)
				die("--log %s: %s", optarg, strerror(errno));
			setvbuf(logf, NULL, _IOLBF, 0);
			break;
		case 't':
			idle_timeout_ms = parse_uint("-", "--timeout", optarg) * 1000;
			break;
		case 'C':
			tls_cert = optarg;
			break;
		case 'K':
			tls_key = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc || !npersonas) {
		fprintf(stderr, "mxsim: %s\n", optind < argc ? "unexpected argument" : "no --persona given");
		usage(stderr);
		return 2;
	}
	if (!tls_cert != !tls_key) {
		fprintf(stderr, "mxsim: --tls-cert and --tls-key go together\n");
		return 2;
	}
	if (tls_cert)
		tls_setup(tls_cert, tls_key);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGUSR1);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigit.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sigit.fd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, sigit.fd, &ev) < 0)
		die("signalfd: %s", strerror(errno));
	if (control_path)
		ctl_listen(control_path);
	for (unsigned i = 0; i < npersonas; i++)
		fprintf(stderr, "mxsim: persona %s: %u addresses port %u style %s stage %s limit %ld\n",
			personas[i].name, personas[i].naddrs, personas[i].port,
			style_names[personas[i].style], stage_names[personas[i].stage], personas[i].limit);

	while (running) {
		struct epoll_event evs[256];
		int n = epoll_wait(epfd, evs, 256, timers());

		if (n < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		/* New sessions last: a client's FIN sent before its next SYN (a
		 * close that let the client connect again) is in this batch
		 * too, and the session it ends must be over before the next
		 * one is counted, or the limit would see one session too many
		 * that the client never had open at once. */
		for (int i = 0; i < n; i++) {
			struct item *it = evs[i].data.ptr;
			struct signalfd_siginfo si;

			switch (it->kind) {
			case K_LISTEN:
				break;      /* below */
			case K_CTL_LISTEN:
				ctl_accept(it);
				break;
			case K_SMTP:
			case K_CTL:
				conn_pump((struct conn *)it);
				break;
			case K_SIGNAL:
				while (read(it->fd, &si, sizeof(si)) == sizeof(si)) {
					if (si.ssi_signo == SIGUSR1) {
						stats_write_file();
					} else {
						running = false;
					}
				}
				break;
			}
		}
		for (int i = 0; i < n; i++)
			if (((struct item *)evs[i].data.ptr)->kind == K_LISTEN)
				smtp_accept(evs[i].data.ptr);
		while (graveyard) {
			struct conn *c = graveyard;

			graveyard = c->next;
			free(c->out);
			free(c);
		}
	}
	stats_write_file();
	if (control_path)
		unlink(control_path);
	fprintf(stderr, "mxsim: exiting, %llu messages accepted\n", (unsigned long long)ids.messages);
	return 0;
}
