/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* What `smtpgov status` and `smtpgov events` print. */
#ifndef SG_STATUS_H
#define SG_STATUS_H

#include <stdbool.h>
#include <stdio.h>
#include "kernel.h"

int sg_status_print(FILE *fp, struct sg_kernel *k, bool json);

/* Stream refusal events until SIGINT/SIGTERM. */
int sg_events_stream(FILE *fp, struct sg_kernel *k, bool json);

#endif
