/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* CIDR and address parsing: pure functions, no I/O. */
#ifndef SG_CIDR_H
#define SG_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An IPv4 (family 4) or IPv6 (family 6) prefix. IPv4 uses addr[0..3]. */
struct sg_cidr {
	uint8_t family;   /* 4 or 6 */
	uint8_t prefix;   /* 0..32 or 0..128 */
	uint8_t addr[16]; /* network byte order */
};

#define SG_CIDR_STRLEN 64

/*
 * "a.b.c.d/n" or "x:y::/n". Host bits must be zero. A bare address is a
 * /32 or /128 only when bare_ok. On error returns -EINVAL and writes the
 * reason ("host bits set", "prefix length out of range"...) to err.
 */
int sg_cidr_parse(const char *s, bool bare_ok, struct sg_cidr *out,
		  char *err, size_t errlen);

/* An address ("1.2.3.4", "2001:db8::1", "::ffff:1.2.3.4" -> IPv4). */
int sg_addr_parse(const char *s, struct sg_cidr *out);

struct sockaddr_storage;
/* "127.0.0.1" or "::1" (v4-mapped stays IPv6) and a port as a sockaddr;
 * *len gets its size. -EINVAL if addr is not an address. */
int sg_sockaddr(const char *addr, uint16_t port, struct sockaddr_storage *ss, unsigned *len);

/* The maps' 16-byte addresses, IPv4 as ::ffff:a.b.c.d (sg_is_v4mapped and
 * sg_map_v4 of include/smtpgov.h, on bytes). */
bool sg_addr16_is_v4(const uint8_t a[16]);
void sg_addr16_from_v4(uint8_t a[16], const void *ip4);

/* IPv4-mapped IPv6 (::ffff:a.b.c.d/96+n) becomes the IPv4 prefix. */
void sg_cidr_unmap(struct sg_cidr *c);

void sg_cidr_format(const struct sg_cidr *c, char *buf, size_t len);

/* Does net contain every address of c (same family)? */
bool sg_cidr_contains(const struct sg_cidr *net, const struct sg_cidr *c);

/* Do two prefixes share any address? */
bool sg_cidr_overlap(const struct sg_cidr *a, const struct sg_cidr *b);

/* Order by family, then first address, then prefix (shorter first). */
int sg_cidr_cmp(const struct sg_cidr *a, const struct sg_cidr *b);

#endif
