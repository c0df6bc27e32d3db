/*
 * pipeline.h — the event pipeline inside `vigil serve`: the sequencer and
 * the publisher, each a leader-elected role on its own thread.
 */
#ifndef VIGIL_EVENTS_PIPELINE_H
#define VIGIL_EVENTS_PIPELINE_H

#include <pthread.h>
#include <stdatomic.h>

#include "events/leader.h"
#include "events/publisher.h"
#include "events/sequencer.h"
#include "util/config.h"

#define LOCK_SEQUENCER 7307100201LL
#define LOCK_PUBLISHER 7307100202LL

typedef struct pipeline {
    atomic_int stop;
    sequencer seq;
    publisher pub;
    leader_role seq_role, pub_role;
    pthread_t seq_thread, pub_thread;
    int seq_running, pub_running;
} pipeline;

/* Starts the roles asked for. Never NULL (aborts when out of memory). */
pipeline *pipeline_start(const vg_config *cfg, int run_sequencer, int run_publisher);

/* The pipeline started by this process, or NULL (for /metrics, /readyz). */
pipeline *pipeline_current(void);

/* Stops the threads and frees. NULL is a no-op. */
void pipeline_stop(pipeline *p);

#endif
