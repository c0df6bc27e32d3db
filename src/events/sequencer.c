/*
 * sequencer.c — the one writer of event_log.
 *
 * The work itself is the PL/pgSQL function vigil_sequence() (0006), one
 * round trip per batch; this loop only decides when to call it. It is woken
 * by NOTIFY vigil_outbox (sent at commit by the outbox trigger) and polls
 * every poll_ms as a fallback, so a lost notification delays, never loses.
 */
#include "events/sequencer.h"

#include <stdio.h>
#include <stdlib.h>

#include "events/leader.h"
#include "store/db.h"
#include "util/log.h"

void sequencer_run(void *arg, PGconn *c)
{
    sequencer *s = arg;
    vg_error err = {0};
    char batch[16];
    snprintf(batch, sizeof batch, "%d", s->batch);
    const char *p[] = {batch};
    if (db_run(c, "LISTEN vigil_outbox", 0, NULL, &err) != VG_OK)
        goto fail;
    while (!atomic_load(s->stop)) {
        PGresult *r = db_exec(c, "SELECT moved, last_seq FROM vigil_sequence($1::int)", 1, p, &err);
        if (!r)
            goto fail;
        int moved = atoi(PQgetvalue(r, 0, 0));
        atomic_store(&s->last_seq, atoll(PQgetvalue(r, 0, 1)));
        PQclear(r);
        if (moved == s->batch)
            continue; /* more waiting: go again at once */
        if (leader_wait_notify(c, s->poll_ms) < 0) {
            vg_fail(&err, VG_E_UNAVAILABLE, NULL, "connection lost while waiting");
            goto fail;
        }
    }
    return;
fail:
    atomic_fetch_add(&s->errors, 1);
    log_warn("sequencer: %s", err.detail);
    vg_error_clear(&err);
}
