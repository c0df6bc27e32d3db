/*
 * api_ingest.h — group commit for single-transaction POSTs.
 *
 * One transaction per request costs PostgreSQL ≈ six times the CPU per
 * transaction of a batch: the seven rule statements, the event trigger, the
 * function call and the commit run once per statement whatever its size
 * (bench/ANALYSIS.md, benchmark 2). So concurrent single POSTs are joined:
 * a request that finds a flush slot free runs `vigil_ingest` at once with
 * every item waiting (its own first); one that finds every slot busy waits
 * and is taken by the next flush. Alone, a request pays nothing extra; under
 * load, requests share one statement and one commit.
 *
 * What each caller gets is exactly what it would have got alone: its own
 * row (201 new / 200 duplicate), or its own refusal. An item the database
 * refuses by index (unknown customer, currency without a rate) is answered
 * with its field and the rest are sent again without it; any other failure
 * of a joined flush is retried one item at a time so no request fails for
 * another's sake. Two requests with the same external_id in one flush: the
 * first (arrival order) creates, the second is a duplicate — as two
 * concurrent commits would be.
 *
 * Process-wide state, started and stopped by api_server_run. Thread-safe.
 */
#ifndef VIGIL_API_INGEST_H
#define VIGIL_API_INGEST_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>

#include "store/db.h"
#include "store/store_work.h"
#include "util/config.h"
#include "util/status.h"

struct MHD_Connection;

/* Reads VIGIL_INGEST_FLUSHES (0: every request alone) and VIGIL_MAX_BATCH
 * (most items in one flush) and starts that many flusher threads, which
 * take their connections from `pool`. */
vg_status api_ingest_start(const vg_config *cfg, db_pool *pool, vg_error *err);
/* Answers and resumes every parked request, then stops the flushers. Call
 * before the HTTP daemon stops (no connection may be left suspended). */
void api_ingest_stop(void);

/* A parked request: its item, queued for a flusher, and later its answer. */
typedef struct waiter api_ingest_ticket;

/* Parks a request from its access handler: suspends `conn` and queues the
 * validated item for the next flush; the flusher resumes the connection
 * once the item is answered, libmicrohttpd calls the handler again, and the
 * handler reads the answer with api_ingest_collect. `key_id` is the
 * request's API key (an id from keys_authenticate_cached): the flush checks
 * it again in the transaction that writes, and answers 401 when it was
 * revoked or expired meanwhile. So no HTTP worker
 * thread waits for the database meanwhile (its other connections, event
 * streams among them, go on being served). NULL when there are no flushers
 * (VIGIL_INGEST_FLUSHES=0) or they are stopping: use api_ingest_one. */
api_ingest_ticket *api_ingest_park(struct MHD_Connection *conn, json_t *item, const char *key_id);

/* The answer of a resumed request, as api_ingest_one gives it; frees t. */
vg_status api_ingest_collect(api_ingest_ticket *t, char **out, char id[37], int *created,
                             vg_error *err);

/* Frees a ticket whose request ended without collecting it. */
void api_ingest_ticket_free(api_ingest_ticket *t);

/* Ingests one validated, canonical item (tx_body_decode's) on `db`, joined
 * with concurrent callers. On VG_OK *out (malloc'd) is the transaction's JSON
 * with "duplicate", *id its id and *created 1 when it was new. */
vg_status api_ingest_one(PGconn *db, json_t *item, const char *key_id, char **out, char id[37],
                         int *created, vg_error *err);

/* Whether a commit of n transactions also runs the sequencer's step
 * (VIGIL_INGEST_SEQUENCE and the sequencer leads in this process; migration
 * 0030), and with what watermark and row limit (filled into *seq). */
int api_ingest_sequencing(int n, tx_sequencing *seq);

/* After such a commit: logs and counts what the step did; 1 when the
 * sequencer must still be woken (the step failed or met its limit). */
int api_ingest_sequenced(const tx_sequencing *seq);

/* Prometheus lines: flushes, items, items per flush, retries. */
void api_ingest_render(FILE *f);

#endif
