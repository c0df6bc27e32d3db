/*
 * sequencer.c — the one writer of event_log.
 *
 * The work itself is the PL/pgSQL function vigil_sequence() (0006), one
 * round trip per batch; this loop only decides when to call it. It is woken
 * by wake_kick() in this process (an eventfd), by NOTIFY vigil_outbox from
 * other processes (events/wake.c), and polls every poll_ms as a fallback, so
 * a lost wake-up delays, never loses.
 */
#include "events/sequencer.h"

#include <stdio.h>
#include <stdlib.h>

#include "events/leader.h"
#include "events/wake.h"
#include "store/db.h"
#include "util/log.h"

static db_stmt sequence = DB_STMT("SELECT moved, last_seq FROM vigil_sequence($1::int)", 1);

void sequencer_run(void *arg, PGconn *c)
{
    sequencer *s = arg;
    vg_error err = {0};
    char batch[16];
    snprintf(batch, sizeof batch, "%d", s->batch);
    const char *p[] = {batch};
    if (db_run(c, "LISTEN vigil_outbox", 0, NULL, &err) != VG_OK)
        goto fail;
    wake_set_local_leader(1);
    while (!atomic_load(s->stop)) {
        wake_local_drain(); /* this round covers every kick so far */
        PGresult *r = db_exec_stmt(c, &sequence, p, &err);
        if (!r)
            goto fail;
        int moved = atoi(PQgetvalue(r, 0, 0));
        atomic_store(&s->last_seq, atoll(PQgetvalue(r, 0, 1)));
        PQclear(r);
        if (moved == s->batch)
            continue; /* more waiting: go again at once */
        /* Wait for a kick, a NOTIFY or the poll interval, in slices short
         * enough to notice a stop request promptly. */
        for (int waited = 0, woke = 0; !woke && waited < s->poll_ms && !atomic_load(s->stop);) {
            int slice = s->poll_ms - waited < 250 ? s->poll_ms - waited : 250;
            woke = leader_wait_notify(c, wake_local_fd(), slice);
            if (woke < 0) {
                vg_fail(&err, VG_E_UNAVAILABLE, NULL, "connection lost while waiting");
                goto fail;
            }
            waited += slice;
        }
    }
    wake_set_local_leader(0);
    return;
fail:
    wake_set_local_leader(0);
    atomic_fetch_add(&s->errors, 1);
    log_warn("sequencer: %s", err.detail);
    vg_error_clear(&err);
}
