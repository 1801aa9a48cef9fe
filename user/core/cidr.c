// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* CIDR and address parsing and comparison (see cidr.h). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cidr.h"
#include "smtpgov.h"

static int addr_bytes(int family)
{
	return family == 4 ? 4 : 16;
}

bool sg_addr16_is_v4(const uint8_t a[16])
{
	__u32 w[4];

	memcpy(w, a, sizeof(w));
	return sg_is_v4mapped(w);
}

void sg_addr16_from_v4(uint8_t a[16], const void *ip4)
{
	__u32 w[4], ip;

	memcpy(&ip, ip4, sizeof(ip));
	sg_map_v4(w, ip);
	memcpy(a, w, sizeof(w));
}

void sg_cidr_unmap(struct sg_cidr *c)
{
	if (c->family != 6 || c->prefix < 96 || !sg_addr16_is_v4(c->addr))
		return;
	memmove(c->addr, c->addr + 12, 4);
	memset(c->addr + 4, 0, 12);
	c->family = 4;
	c->prefix -= 96;
}

static int parse_addr(const char *s, struct sg_cidr *out)
{
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, s, out->addr) == 1) {
		out->family = 4;
		out->prefix = 32;
		return 0;
	}
	if (inet_pton(AF_INET6, s, out->addr) == 1) {
		out->family = 6;
		out->prefix = 128;
		return 0;
	}
	return -EINVAL;
}

int sg_addr_parse(const char *s, struct sg_cidr *out)
{
	if (parse_addr(s, out))
		return -EINVAL;
	sg_cidr_unmap(out);
	return 0;
}

int sg_sockaddr(const char *addr, uint16_t port, struct sockaddr_storage *ss, unsigned *len)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		*len = sizeof(*a4);
		return 0;
	}
	if (inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		*len = sizeof(*a6);
		return 0;
	}
	return -EINVAL;
}

static int fail(char *err, size_t errlen, const char *what)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", what);
	return -EINVAL;
}

int sg_cidr_parse(const char *s, bool bare_ok, struct sg_cidr *out,
		  char *err, size_t errlen)
{
	char buf[SG_CIDR_STRLEN];
	const char *slash = strchr(s, '/');
	size_t len = slash ? (size_t)(slash - s) : strlen(s);
	int maxlen;

	if (len == 0 || len >= sizeof(buf))
		return fail(err, errlen, "not an IP address");
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (parse_addr(buf, out))
		return fail(err, errlen, "not an IP address");
	maxlen = out->family == 4 ? 32 : 128;
	if (!slash) {
		if (!bare_ok)
			return fail(err, errlen, "missing /prefix length");
	} else {
		char *end;
		long n;

		if (slash[1] < '0' || slash[1] > '9')
			return fail(err, errlen, "bad prefix length");
		errno = 0;
		n = strtol(slash + 1, &end, 10);
		if (*end || errno)
			return fail(err, errlen, "bad prefix length");
		if (n < 0 || n > maxlen)
			return fail(err, errlen, "prefix length out of range");
		out->prefix = (uint8_t)n;
	}
	for (int bit = out->prefix; bit < maxlen; bit++)
		if (out->addr[bit / 8] & (0x80 >> (bit % 8)))
			return fail(err, errlen, "host bits set");
	sg_cidr_unmap(out);
	return 0;
}

void sg_cidr_format(const struct sg_cidr *c, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];

	inet_ntop(c->family == 4 ? AF_INET : AF_INET6, c->addr, a, sizeof(a));
	snprintf(buf, len, "%s/%u", a, c->prefix);
}

/* Are the first `bits` bits of x and y equal? */
static bool prefix_eq(const uint8_t *x, const uint8_t *y, int bits)
{
	int full = bits / 8, rest = bits % 8;

	if (memcmp(x, y, full))
		return false;
	if (!rest)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (x[full] & mask) == (y[full] & mask);
}

bool sg_cidr_contains(const struct sg_cidr *net, const struct sg_cidr *c)
{
	return net->family == c->family && net->prefix <= c->prefix &&
	       prefix_eq(net->addr, c->addr, net->prefix);
}

bool sg_cidr_overlap(const struct sg_cidr *a, const struct sg_cidr *b)
{
	return sg_cidr_contains(a, b) || sg_cidr_contains(b, a);
}

int sg_cidr_cmp(const struct sg_cidr *a, const struct sg_cidr *b)
{
	int r;

	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	r = memcmp(a->addr, b->addr, addr_bytes(a->family));
	if (r)
		return r;
	return (a->prefix > b->prefix) - (a->prefix < b->prefix);
}
