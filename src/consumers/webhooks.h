/*
 * webhooks.h — the webhooks consumer: every event, signed, POSTed as a
 * CloudEvent to each registered endpoint subscribed to its type.
 *
 * Two halves, so that slow HTTP never runs inside a JetStream handler's
 * transaction:
 *
 *   the consumer      ("webhooks", subject aml.>): one statement per batch
 *                     of arrived events, vigil_consume_webhooks_many
 *                     (0016_consumer_batches.sql, set-based since
 *                     0022_webhooks_batch_set_based.sql), records each event in
 *                     processed_events and inserts one webhook_deliveries
 *                     row per active matching webhook — an outbox, exactly
 *                     once per (webhook, event). 0015's one-event
 *                     vigil_consume_webhooks is no longer called by this
 *                     binary; it stays for an older instance still running
 *                     during a rolling upgrade (docs/operations.md).
 *   webhooks_deliver  the delivery worker, a companion thread of the
 *                     consumer. It claims due deliveries (FOR UPDATE SKIP
 *                     LOCKED, so any number of instances share them), POSTs
 *                     up to 32 at once with libcurl (connect timeout 5 s,
 *                     total VIGIL_WEBHOOK_TIMEOUT_MS, no redirects, http and
 *                     https only), and records every attempt. A 2xx is
 *                     delivered; anything else is retried after
 *                     VIGIL_WEBHOOK_BACKOFF_MS * 2^(k-1) for the k-th failed
 *                     attempt, never later than VIGIL_WEBHOOK_HORIZON_S after
 *                     the delivery was enqueued; the first failure at or past
 *                     the horizon marks it dead and writes a dead letter
 *                     (consumer "webhooks", one per event). Redriving that
 *                     letter re-queues the event's dead deliveries with a
 *                     fresh horizon. It wakes on NOTIFY vigil_webhooks, on
 *                     its own retry timers, and polls once a second.
 *
 * The request a receiver gets:
 *
 *   POST <url>
 *   Content-Type: application/cloudevents+json
 *   Vigil-Webhook-Id: <webhook id>
 *   Vigil-Event-Id: <CloudEvent id>            the same on every retry
 *   Vigil-Delivery-Attempt: <1, 2, ...>
 *   Vigil-Timestamp: <unix seconds at sending>
 *   Vigil-Signature: t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
 *
 *   body: the CloudEvent exactly as in event_log and the stream (with "seq").
 *
 * Receiver contract: verify the signature over the raw body (constant-time
 * compare), reject when |now - t| > 300 s (replays), answer 2xx quickly,
 * and deduplicate on Vigil-Event-Id: delivery is at least once (a lost
 * response, a worker crash or a redrive sends again), and events may arrive
 * out of order (order by the CloudEvent's "seq" when it matters).
 */
#ifndef VIGIL_CONSUMERS_WEBHOOKS_H
#define VIGIL_CONSUMERS_WEBHOOKS_H

#include <stdatomic.h>

#include "consumers/consumer.h"

/* Redrive of a "webhooks" dead letter: the event's dead deliveries to active
 * webhooks become pending now, with a fresh horizon. VG_E_CONFLICT when
 * there is none to re-queue. */
vg_status webhooks_redrive(PGconn *c, const vg_config *cfg, const consumer_event *ev,
                           vg_error *err);

/* The delivery worker: runs until *stop, reconnecting to PostgreSQL as
 * needed. Attempts still in flight when it stops are given back (due again
 * at once). Thread body (consumer_def.worker). */
void webhooks_deliver(const vg_config *cfg, atomic_int *stop);

/* This process's delivery counters (for /metrics). */
typedef struct webhook_stats {
    atomic_llong delivered; /* attempts answered 2xx */
    atomic_llong retried;   /* failed attempts with a retry scheduled */
    atomic_llong dead;      /* failed attempts past the horizon */
    atomic_llong stale;     /* outcomes dropped: another worker had taken over */
    atomic_llong errors;    /* database errors of the worker */
    atomic_llong in_flight; /* requests open now */
} webhook_stats;

webhook_stats *webhooks_stats(void);

#endif
