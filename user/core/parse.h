/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * MTA log parser: one log line in, one delivery event out. Postfix smtp/lmtp
 * lines in every common framing (RFC 3164 syslog, journalctl, ISO-8601
 * rsyslog, Postfix's maillog_file, bare message parts) and the Exim main
 * log. Pure: no I/O, no allocation, no clock (the caller injects "now",
 * which only decides the year of a syslog timestamp).
 *
 * Addresses come only from the MTA's own fields (Postfix `relay=host[ip]:port`,
 * `connect to host[ip]:port`, `host host[ip] said`, `host host[ip] refused
 * to talk to me`; Exim `H=host [ip]`, `host host [ip]:`), never from the
 * remote reply text, which the remote server writes and may forge.
 */
#ifndef SG_PARSE_H
#define SG_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cidr.h"

enum sg_format {
	SG_FMT_AUTO = 0,        /* per line: Exim timestamps, else Postfix */
	SG_FMT_POSTFIX,
	SG_FMT_EXIM,
};

enum sg_status {
	SG_ST_NONE = 0,         /* not a delivery event */
	SG_ST_SENT,
	SG_ST_DEFERRED,
	SG_ST_BOUNCED,
	SG_ST_CONNECT_ERROR,    /* no SMTP session: timeout, refused, unreachable */
	SG_ST_REFUSED,          /* connect() failed with EPERM: smtpgov said no */
};

enum sg_logev_flags {
	SG_LEV_HAS_IP      = 1,  /* addr holds the relay address */
	SG_LEV_SUSPENDED   = 2,  /* Postfix "delivery temporarily suspended": a
	                         * cached verdict, not a new reply */
	SG_LEV_OWN         = 4,  /* reply of smtpgov's own waiting room */
	SG_LEV_LOCAL_AGENT = 8,  /* postfix/error or postfix/retry: no session */
};

#define SG_QID_LEN  32
#define SG_HOST_LEN 256
#define SG_IP_LEN   48

/* One delivery event. text points into the parsed line. */
struct sg_logev {
	int64_t time;           /* unix seconds, -1 if the line has none */
	int32_t msec;           /* and milliseconds, 0 if the line has none */
	int32_t session_ms;     /* Postfix delays= c + d: how long the session took
	                         * (it began that long before the line); -1 if none */
	int status;             /* enum sg_status */
	unsigned flags;         /* enum sg_logev_flags */
	int code;               /* SMTP reply code, 0 if none */
	char dsn[16];           /* enhanced status code, "" if none */
	char queue_id[SG_QID_LEN];
	char host[SG_HOST_LEN];
	char ip[SG_IP_LEN];     /* as logged, "" if none or not an address */
	struct sg_cidr addr;    /* valid when flags & SG_LEV_HAS_IP */
	char source[SG_IP_LEN]; /* our sending address where the reply names it
	                         * (Microsoft 4.7.652 "[IP]", Yahoo TSS04 "from
	                         * IP"); shown only, never used to attribute */
	const char *text;       /* reply (or Postfix's reason), not NUL-terminated */
	size_t text_len;
};

/* Parser state: the injected clock and a cache of local-time conversions. */
struct sg_parser {
	int format;             /* enum sg_format */
	int64_t now;            /* decides the year of "Mmm dd" timestamps */
	int now_year;
	int64_t year_lo, year_hi;  /* now_year is valid for now in [lo, hi) */
	/* local time -> unix seconds, per hour: a small direct-mapped cache */
	struct { int32_t key; int64_t epoch; } hours[64];
};

void sg_parser_init(struct sg_parser *p, int format, int64_t now);

/* Move the injected clock (a long-running follower calls this now and then). */
void sg_parser_set_now(struct sg_parser *p, int64_t now);

/*
 * Parse one line (no trailing newline needed; len excludes it). Returns
 * true and fills ev for a delivery event, false for any other line.
 */
bool sg_parse_line(struct sg_parser *p, const char *line, size_t len, struct sg_logev *ev);

/* "postfix" | "exim" | "auto" -> enum sg_format, or -1. */
int sg_format_parse(const char *s);

const char *sg_status_name(int status);

/* Seconds since the epoch -> "2024-03-04T16:52:06Z". */
void sg_time_format(int64_t t, char *buf, size_t len);

#endif
