/*
 * store_webhooks.h — webhook registrations and the delivery outbox.
 *
 * The SQL functions behind these calls live in sql/migrations/0008_webhooks.sql
 * (enqueue, claim, record, abandon, requeue); this is their one C interface.
 * Every call runs on a connection the caller owns; none begins or ends a
 * transaction except where stated, so the consumer's enqueue joins its
 * processed_events transaction.
 */
#ifndef VIGIL_STORE_WEBHOOKS_H
#define VIGIL_STORE_WEBHOOKS_H

#include <libpq-fe.h>
#include <stddef.h>

#include "domain/webhook.h"
#include "util/status.h"

/* Registers a webhook signing with `secret`; *out (malloc'd) is its JSON
 * (vigil_webhook_json: the secret only as a hint). */
vg_status store_webhooks_create(PGconn *c, const webhook_input *in, const char *secret,
                                const char *actor, char **out, vg_error *err);

/* The webhook's JSON into *out; VG_E_NOT_FOUND when there is none. */
vg_status store_webhooks_get(PGconn *c, const char *id, char **out, vg_error *err);

/* Sets `active`; *out is the updated JSON. VG_E_NOT_FOUND when no such id. */
vg_status store_webhooks_set_active(PGconn *c, const char *id, int active, const char *actor,
                                    char **out, vg_error *err);

/* Starts a new round for the event's dead deliveries to active webhooks
 * (redrive); *n = how many. */
vg_status store_webhooks_requeue(PGconn *c, const char *event_id, int *n, vg_error *err);

/* One claimed attempt, everything needed to send it. */
typedef struct webhook_job {
    char delivery_id[37], webhook_id[37], event_id[37];
    int attempt;
    char *url, *secret, *body; /* owned (webhook_job_clear) */
    size_t body_len;
} webhook_job;

/* Frees what `j` owns and zeroes it. */
void webhook_job_clear(webhook_job *j);

/* Claims up to `limit` due deliveries (autocommit; SKIP LOCKED, so workers
 * on several instances share the work), leased for `lease_ms`, skipping the
 * webhooks in busy[0..nbusy) (UUIDs). Fills jobs[0..*n). */
vg_status store_webhooks_claim(PGconn *c, int limit, long lease_ms, const char *const *busy,
                               int nbusy, webhook_job *jobs, int *n, vg_error *err);

/* *any = 0 when no delivery of an active webhook outside busy[0..nbusy) is
 * waiting; otherwise *ms = milliseconds until the earliest one is due (<= 0:
 * due now; a leased one counts at its lease's end). Lets a worker sleep
 * exactly until the next retry. */
vg_status store_webhooks_next_due(PGconn *c, const char *const *busy, int nbusy, int *any,
                                  long long *ms, vg_error *err);

/* The outcome of a finished attempt. */
typedef struct webhook_result {
    long http_status;  /* 0 = no HTTP response */
    const char *error; /* NULL on a 2xx */
    long duration_ms;
} webhook_result;

/* Records `res` for (delivery, attempt) with the retry policy (backoff_ms,
 * horizon_s). outcome: "delivered", "retry" (*next_in_ms until the retry),
 * "dead" (a dead letter was written too), or "stale" (another worker has
 * claimed the delivery since: nothing written). */
vg_status store_webhooks_record(PGconn *c, const webhook_job *job, const webhook_result *res,
                                long backoff_ms, long horizon_s, char outcome[16],
                                long long *next_in_ms, vg_error *err);

/* Gives a claimed attempt back unanswered (worker stopping): due again now,
 * not counted toward the backoff. */
vg_status store_webhooks_abandon(PGconn *c, const webhook_job *job, vg_error *err);

#endif
