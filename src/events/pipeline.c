/*
 * pipeline.c — starts and stops the sequencer and publisher threads.
 */
#include "events/pipeline.h"

#include <stdlib.h>

#include "util/log.h"

static void role_init(leader_role *r, const char *name, long long key, const vg_config *cfg,
                      void (*run)(void *, PGconn *), void *arg, atomic_int *stop)
{
    r->name = name;
    r->lock_key = key;
    r->db_url = cfg->database_url;
    r->connect_timeout = (int)cfg->db_connect_timeout;
    r->retry_ms = (int)cfg->leader_retry_ms;
    r->run = run;
    r->arg = arg;
    r->stop = stop;
    atomic_store(&r->is_leader, 0);
}

static pipeline *current;

pipeline *pipeline_current(void)
{
    return current;
}

pipeline *pipeline_start(const vg_config *cfg, int run_sequencer, int run_publisher)
{
    pipeline *p = calloc(1, sizeof *p);
    if (!p)
        abort();
    p->seq.batch = (int)cfg->sequencer_batch;
    p->seq.poll_ms = (int)cfg->sequencer_poll_ms;
    p->seq.stop = &p->stop;
    publisher_init(&p->pub, cfg, &p->stop);
    role_init(&p->seq_role, "sequencer", LOCK_SEQUENCER, cfg, sequencer_run, &p->seq, &p->stop);
    role_init(&p->pub_role, "publisher", LOCK_PUBLISHER, cfg, publisher_run, &p->pub, &p->stop);
    if (run_sequencer)
        p->seq_running = pthread_create(&p->seq_thread, NULL, leader_main, &p->seq_role) == 0;
    if (run_publisher)
        p->pub_running = pthread_create(&p->pub_thread, NULL, leader_main, &p->pub_role) == 0;
    if ((run_sequencer && !p->seq_running) || (run_publisher && !p->pub_running))
        log_error("pipeline: could not start a thread");
    current = p;
    return p;
}

void pipeline_stop(pipeline *p)
{
    if (!p)
        return;
    current = NULL;
    atomic_store(&p->stop, 1);
    if (p->seq_running)
        pthread_join(p->seq_thread, NULL);
    if (p->pub_running)
        pthread_join(p->pub_thread, NULL);
    /* libnats delivers connection callbacks on its own threads, possibly
     * after a connection is destroyed: wait for them before freeing what
     * they point at. */
    nats_CloseAndWait(2000);
    publisher_destroy(&p->pub);
    free(p);
}
