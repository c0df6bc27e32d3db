/*
 * sequencer.c — the one writer of event_log.
 *
 * The work itself is the PL/pgSQL function vigil_sequence() (0006), one
 * round trip per batch; this loop only decides when to call it. It is woken
 * by wake_kick() in this process (an eventfd), by NOTIFY vigil_outbox from
 * other processes (events/wake.c), and polls every poll_ms as a fallback, so
 * a lost wake-up delays, never loses.
 *
 * Each call scans the outbox from a low watermark that the function proves
 * and returns, with the candidate for the next one (0017_outbox_watermark
 * .sql says why this never skips a row that commits late). Both live only
 * for one leadership term: a new term starts from 0. Once a minute a call
 * sweeps from 0 anyway; a row it finds below the watermark (a "stray",
 * impossible by that argument) is sequenced, logged and counted in
 * vigil_sequencer_strays_total instead of trusted away.
 */
#include "events/sequencer.h"

#include <stdio.h>
#include <stdlib.h>

#include "domain/timeparse.h"
#include "events/leader.h"
#include "events/wake.h"
#include "store/db.h"
#include "util/log.h"

static db_stmt sequence =
    DB_STMT("SELECT moved, last_seq, low, cand_id, cand_xid, strays FROM"
            " vigil_sequence($1::int, $2::bigint, $3::bigint, $4::xid8, $5::boolean)",
            5);

#define SWEEP_EVERY_US (60 * 1000000LL)

void sequencer_run(void *arg, PGconn *c)
{
    sequencer *s = arg;
    vg_error err = {0};
    char batch[16], low[24] = "0", cand_id[24] = "", cand_xid[24] = "";
    snprintf(batch, sizeof batch, "%d", s->batch);
    int64_t last_sweep = mono_us();
    if (db_run(c, "LISTEN vigil_outbox", 0, NULL, &err) != VG_OK)
        goto fail;
    wake_set_local_leader(1);
    while (!atomic_load(s->stop)) {
        wake_local_drain(); /* this round covers every kick so far */
        int sweep = mono_us() - last_sweep >= SWEEP_EVERY_US;
        const char *p[] = {batch, low, cand_id[0] ? cand_id : NULL, cand_xid[0] ? cand_xid : NULL,
                           sweep ? "true" : "false"};
        PGresult *r = db_exec_stmt(c, &sequence, p, &err);
        if (!r)
            goto fail;
        int moved = atoi(PQgetvalue(r, 0, 0));
        atomic_fetch_add(&s->calls, 1);
        if (moved == 0)
            atomic_fetch_add(&s->empty, 1);
        atomic_store(&s->last_seq, atoll(PQgetvalue(r, 0, 1)));
        int strays = atoi(PQgetvalue(r, 0, 5));
        if (strays > 0) {
            atomic_fetch_add(&s->strays, strays);
            log_error("sequencer: %d outbox row(s) below the watermark %s were found by the "
                      "sweep and sequenced late; please report this",
                      strays, low);
        }
        snprintf(low, sizeof low, "%s", PQgetvalue(r, 0, 2));
        snprintf(cand_id, sizeof cand_id, "%s", PQgetvalue(r, 0, 3));
        snprintf(cand_xid, sizeof cand_xid, "%s", PQgetvalue(r, 0, 4));
        atomic_store(&s->outbox_low, atoll(low));
        wake_set_local_low(atoll(low));
        PQclear(r);
        if (sweep)
            last_sweep = mono_us();
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
