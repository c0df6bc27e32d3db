/*
 * store_event_log.h — reading the sequenced event log (event_log, 0006).
 *
 * Readers only: the sequencer is the one writer. Every reader walks seq
 * upwards; seq is gap-free and assigned in commit order, so once a reader
 * has seen seq N, no row below N can still appear.
 */
#ifndef VIGIL_STORE_EVENT_LOG_H
#define VIGIL_STORE_EVENT_LOG_H

#include <libpq-fe.h>
#include <stdint.h>

#include "util/status.h"

/* Writes {"items": [CloudEvent...], "next_after": N} into *out (malloc'd,
 * caller frees): at most `limit` events with seq > after in seq order, only
 * those whose event_type starts with `type_prefix` when it is not NULL (a
 * plain prefix: '%' and '_' are not wildcards). next_after is the last seq
 * returned, or `after` when the page is empty. */
vg_status event_log_page(PGconn *c, int64_t after, const char *type_prefix, int limit, char **out,
                         vg_error *err);

/* Rows (seq bigint, event_type text, payload text: the CloudEvent on one
 * line) with after < seq < before (before <= 0: no upper bound), filtered by
 * `type_prefix` as above when not NULL, in seq order, at most `limit`. The
 * caller PQclear()s the result; NULL with err on failure. */
PGresult *event_log_scan(PGconn *c, int64_t after, int64_t before, const char *type_prefix,
                         int limit, vg_error *err);

/* The highest seq in event_log (0 when it is empty) into *head. */
vg_status event_log_head(PGconn *c, int64_t *head, vg_error *err);

#endif
