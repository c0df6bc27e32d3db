/*
 * publisher.h — streams event_log to JetStream, exactly once and in order.
 */
#ifndef VIGIL_EVENTS_PUBLISHER_H
#define VIGIL_EVENTS_PUBLISHER_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>

#include "events/stream.h"
#include "util/config.h"

struct publisher_window;

typedef struct publisher {
    const vg_config *cfg;
    atomic_int *stop;
    /* observable state (metrics, /readyz) */
    atomic_int nats_connected;
    atomic_int stream_ok;
    atomic_llong published_seq; /* cursor: every seq <= this is in the stream */
    atomic_llong publish_errors;
    atomic_llong reconnects;
    atomic_llong republished;     /* events re-sent after a loss was detected */
    atomic_llong missing_head;    /* events missing below the stream's oldest message */
    atomic_llong windows_chained; /* windows published with one ack (any size) */
    atomic_llong windows_each;    /* windows published with an ack per event */
    int fault_skip_one; /* VIGIL_FAULT=publisher_skip_one (tests); publisher thread only */
    pthread_mutex_t mu;
    char last_error[256];
    /* Handed to libnats: must outlive every connection the publisher made,
     * because the library may call back after a connection is destroyed. */
    stream_callbacks cb;
    struct publisher_window *win;
} publisher;

/* Initialises the observable state. */
void publisher_init(publisher *p, const vg_config *cfg, atomic_int *stop);

/* Frees what publisher_init allocated. Call after nats_CloseAndWait(). */
void publisher_destroy(publisher *p);

/* leader_role.run for the publisher. Returns on a database error or stop;
 * NATS trouble never returns: it retries with backoff forever. */
void publisher_run(void *pub, PGconn *conn);

/* Copies the last error (empty when healthy) into out. */
void publisher_last_error(publisher *p, char *out, size_t n);

#endif
