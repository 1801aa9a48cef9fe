// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * The embedded provider table. Where each list comes from, and why the caps
 * start where they do, is in README.md ("Built-in groups") and docs/design.md ("Provider
 * ranges and throttle replies").
 */
#include "builtin.h"

const struct sg_builtin sg_builtins[] = {
	{
		/* Google front ends that receive mail (Gmail and Workspace MX):
		 * the Google-services blocks of goog.json (snapshot 2024-04-25)
		 * that hold every observed MX address, without the Google Cloud
		 * customer space (34/8, 35/8 and the like) where anyone runs a
		 * mail server. IPv6: the six /32s of _netblocks2 (2024-03-05),
		 * which hold the observed MX addresses. Gmail accepts 1-2
		 * sessions per sending IP safely; 3-5 are throttled at times. */
		.name = "google", .cap = 2, .min_cap = 1, .max_cap = 5, .pause = 15 * 60,
		.ranges = "64.233.160.0/19 66.102.0.0/20 66.249.64.0/19 72.14.192.0/18 "
			  "74.125.0.0/16 108.177.0.0/17 142.250.0.0/15 172.217.0.0/16 "
			  "172.253.0.0/16 173.194.0.0/16 192.178.0.0/15 209.85.128.0/17 "
			  "216.58.192.0/19 216.239.32.0/19 "
			  "2001:4860::/32 2404:6800::/32 2607:f8b0::/32 2800:3f0::/32 "
			  "2a00:1450::/32 2c0f:fb50::/32",
	},
	{
		/* Microsoft 365 / Exchange Online Protection / Outlook.com:
		 * endpoint set ID 10 (TCP 25), identical in list versions
		 * 2022072800, 2023073100 and 2026081400. Microsoft asks for
		 * few sessions (4.7.652) and a pause once it says so. */
		.name = "microsoft", .cap = 2, .min_cap = 1, .max_cap = 4, .pause = 15 * 60,
		.ranges = "40.92.0.0/15 40.107.0.0/16 52.100.0.0/14 104.47.0.0/17 "
			  "2a01:111:f400::/48 2a01:111:f403::/48",
	},
	{
		/* Yahoo / AOL: no published list. The networks holding every
		 * MX peer observed in real logs (67.195.204.x, 67.195.228.x,
		 * 98.136.96.x, 66.196.118.x), widened to the blocks Yahoo
		 * operates them in. */
		.name = "yahoo", .cap = 2, .min_cap = 1, .max_cap = 5, .pause = 15 * 60,
		.ranges = "66.196.64.0/18 67.195.0.0/16 98.136.0.0/16",
	},
	{
		/* Apple iCloud Mail: Apple's historic 17.0.0.0/8, which holds
		 * every observed mx01/mx02.mail.icloud.com peer. */
		.name = "apple", .cap = 2, .min_cap = 1, .max_cap = 5, .pause = 15 * 60,
		.ranges = "17.0.0.0/8",
	},
};

const size_t sg_nbuiltins = sizeof(sg_builtins) / sizeof(sg_builtins[0]);
