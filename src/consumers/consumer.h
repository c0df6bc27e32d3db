/*
 * consumer.h — durable JetStream consumers with exactly-once effects.
 *
 * A consumer is a name, a subject filter and a handler. The runner receives
 * from a durable JetStream consumer (explicit ack), and for each event, in
 * ONE PostgreSQL transaction, records (consumer, event id) and runs the
 * handler; it acks only after COMMIT. A handler failure rolls back and
 * NAKs with a delay from the backoff schedule; after MaxDeliver attempts
 * the event becomes a dead letter (stored, then Term'd). A database outage
 * is not the event's fault: the runner holds the message (InProgress) and
 * retries until the database is back, without burning deliveries.
 */
#ifndef VIGIL_CONSUMERS_CONSUMER_H
#define VIGIL_CONSUMERS_CONSUMER_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdatomic.h>

#include "store/db.h"
#include "util/config.h"
#include "util/status.h"

/* One event as a handler sees it. */
typedef struct consumer_event {
    const char *id;      /* event id (UUID) */
    long long seq;       /* event_log seq */
    const char *type;    /* "aml.alert.created" */
    const json_t *event; /* the whole CloudEvent */
    const json_t *data;  /* its "data" member */
} consumer_event;

/* Decodes a message body (len bytes) as a Vigil CloudEvent: `seq_hdr` (the
 * Vigil-Seq header, decimal digits only; may be NULL: then the event's "seq" member) and
 * `subject` (the event type) come from the message. *event receives the
 * parsed JSON (the caller's to json_decref, also on failure; NULL when not
 * JSON) and `ev` borrows from it. VG_E_MALFORMED unless the body is JSON
 * with a UUID "id" and the seq is positive. Pure: no I/O. */
vg_status consumer_event_decode(const char *body, size_t len, const char *seq_hdr,
                                const char *subject, json_t **event, consumer_event *ev,
                                vg_error *err);

/* The same from a message's headers alone, for a consumer that needs only
 * the event's id, seq and type (consumer_def.headers_suffice): `msg_id` is
 * Nats-Msg-Id, which every message Vigil publishes sets to the event id
 * (stream.h); `seq_hdr` and `subject` as above. ev->id borrows `msg_id`;
 * ev->event and ev->data are NULL. VG_E_MALFORMED when Nats-Msg-Id is not
 * a UUID (missing, or a `vigil reconcile` re-send's "<id>:<run>") or the
 * seq header is missing or not a positive number: then decode the body.
 * Trusts the headers exactly as far as consumer_event_decode trusts the
 * body: whoever may publish on the stream's subjects writes both. Pure. */
vg_status consumer_event_from_headers(const char *msg_id, const char *seq_hdr, const char *subject,
                                      consumer_event *ev, vg_error *err);

/* Applies the event's effect on `c`, inside the runner's transaction. Must
 * not COMMIT or ROLLBACK. VG_E_UNAVAILABLE means "retry later, not the
 * event's fault"; any other failure counts as a failed delivery. */
typedef vg_status (*consumer_handler)(PGconn *c, const vg_config *cfg, const consumer_event *ev,
                                      vg_error *err);

/* A handler for many events at once (consumer_def.handle_many): applies
 * evs[0..n) inside the runner's transaction, as consumer_handler does one. */
typedef vg_status (*consumer_batch_handler)(PGconn *c, const vg_config *cfg,
                                            const consumer_event *evs, int n, vg_error *err);

/* Redrives a dead letter of this consumer (POST /dead-letters/{id}/redrive)
 * on `c`, outside any transaction: VG_OK when the event's effect is back on
 * its way. Consumers without one redrive through consumer_apply. */
typedef vg_status (*consumer_redrive)(PGconn *c, const vg_config *cfg, const consumer_event *ev,
                                      vg_error *err);

/* A companion thread body run beside the consumer, in the same group and
 * until the same *stop (e.g. the webhook delivery worker). */
typedef void (*consumer_worker)(const vg_config *cfg, atomic_int *stop);

typedef struct consumer_def {
    const char *name;           /* durable name suffix and processed_events.consumer */
    const char *filter_subject; /* e.g. "aml.alert.>" */
    consumer_handler handler;
    consumer_redrive redrive; /* NULL: consumer_apply */
    consumer_worker worker;   /* NULL: none */
    /* 1 when the handler may write domain events (the outbox): its commits
     * wake the sequencer. 0 for one that never does (webhooks), whose
     * commit per event would otherwise wake it for nothing, once per event. */
    int emits_events;
    /* When set, the runner applies a whole batch of events (those that have
     * arrived, up to CONSUMER_BATCH) with this one statement in one
     * implicit transaction: one round trip and one commit for the batch
     * instead of four round trips per event (BEGIN, processed_events,
     * handler, COMMIT); `handler` is then NULL (one of the two is set).
     * Parameters: consumer name, event ids (uuid[]), seqs (bigint[]), types
     * (text[]), in arrival order; it returns boolean[]: per event, true when
     * applied now, false when processed before. A batch that fails is
     * applied again one event per statement, so only the bad event fails.
     * For a consumer whose work is SQL alone (webhooks). */
    db_stmt *apply_stmt;
    /* When set, the runner applies a batch (as for apply_stmt: the events
     * that have arrived, up to CONSUMER_BATCH) in one transaction: the
     * processed_events rows of all of them in one statement, this with the
     * events not processed before, one commit. For a consumer whose work
     * needs C between statements (risk: the score is computed in C). Saves
     * a transaction, its commit and WAL flush, and three round trips per
     * event. `handler` stays set: a batch that fails is applied again one
     * event at a time through it (so only the bad event fails), and dead
     * letters are redriven through it. */
    consumer_batch_handler handle_many;
    /* 1 when apply_stmt needs nothing from the body (id, seq and type come
     * from the headers and the subject): the batch path then does not parse
     * it (consumer_event_from_headers; a message without usable headers is
     * parsed as before). Parsing every CloudEvent was about half of the
     * webhooks consumer's CPU time in `vigil serve` under benchmark 2. */
    int headers_suffice;
} consumer_def;

/* Most events the runner applies in one transaction (apply_stmt). */
#define CONSUMER_BATCH 256

/* Observable counters per consumer (for /metrics). */
typedef struct consumer_stats {
    atomic_llong processed, duplicates, failures, dead_letters, redeliveries;
    atomic_llong busy_us; /* total handler time */
    atomic_llong pending; /* last NumPending seen from JetStream */
    atomic_llong batches; /* transactions of apply_stmt consumers */
    atomic_int running;
} consumer_stats;

/* The built-in consumers, NULL-terminated (consumers.c). */
extern const consumer_def *const consumer_registry[];

/* Finds a built-in consumer by name, or NULL. */
const consumer_def *consumer_find(const char *name);

/* Index of `def` in consumer_registry, for its stats slot. */
consumer_stats *consumer_stats_of(const consumer_def *def);

/* Applies one event for `def` exactly once on `c` (its own transaction):
 * VG_OK when applied now or already applied before (*duplicate = 1). */
vg_status consumer_apply(PGconn *c, const vg_config *cfg, const consumer_def *def,
                         const consumer_event *ev, int *duplicate, vg_error *err);

/* Runs `def` until *stop: connect, bind the durable consumer, receive,
 * apply, ack. Reconnects forever. Thread body helper. */
void consumer_run(const vg_config *cfg, const consumer_def *def, atomic_int *stop);

#endif
