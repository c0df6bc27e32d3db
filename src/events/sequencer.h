/*
 * sequencer.h — moves committed outbox rows into the hash-chained event_log.
 */
#ifndef VIGIL_EVENTS_SEQUENCER_H
#define VIGIL_EVENTS_SEQUENCER_H

#include <libpq-fe.h>
#include <stdatomic.h>

typedef struct sequencer {
    int batch;   /* rows per vigil_sequence() call */
    int poll_ms; /* fallback when no NOTIFY arrives */
    atomic_int *stop;
    atomic_llong last_seq; /* highest seq written, for metrics */
    atomic_llong errors;
    atomic_llong strays;     /* rows the sweep found below the watermark: should stay 0 */
    atomic_llong outbox_low; /* the watermark: outbox ids below it are all taken */
    atomic_llong calls;      /* vigil_sequence() calls */
    atomic_llong empty;      /* of which moved nothing (a wake-up already served) */
} sequencer;

/* leader_role.run for the sequencer: LISTEN vigil_outbox, then call
 * vigil_sequence() until the outbox is empty, wait for the next NOTIFY (or
 * poll_ms), repeat; returns on a database error (the leader loop retries). */
void sequencer_run(void *seq, PGconn *conn);

#endif
