/*
 * api_transactions.c — POST /transactions (one object, or a batch of up to
 * VIGIL_MAX_BATCH under "transactions"), GET /transactions[/{id}].
 *
 * Every item is validated in C before the database sees the batch; one bad
 * item refuses the whole batch with every bad item's index and field, so
 * nothing partial is written (invariant 9).
 */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/api_ingest.h"
#include "domain/bodies.h"
#include "domain/timeparse.h"
#include "store/store_work.h"

/* Batches up to this size are sequenced in their own commit (0030). */
#define SEQUENCED_BATCH_MAX 100

/* The reply of a single-transaction POST once its flush has answered it. */
static void tx_single_resumed(api_ctx *ctx)
{
    vg_error err = {0};
    char *out = NULL, id[37];
    int created = 0;
    api_ingest_ticket *t = ctx->parked;
    ctx->parked = NULL;
    vg_status st = api_ingest_collect(t, &out, id, &created, &err);
    if (st == VG_OK)
        snprintf(ctx->location, sizeof ctx->location, "/transactions/%s", id);
    ctx->kicked = 1; /* by the flush that committed it, once for its whole group */
    api_reply_result(ctx, st, created ? 201 : 200, out, &err);
}

void api_transactions_post(api_ctx *ctx)
{
    vg_error err = {0};
    char *out = NULL;
    json_t *body = api_body_json(ctx, &err), *items = NULL;
    int batch = 0;
    vg_status st = body ? tx_body_decode(body, ctx->state->cfg->max_batch, now_epoch_us(), &items,
                                         &batch, &err)
                        : err.code;
    /* The key came from the cache (server.c): only a single transaction
     * has it checked again where it writes; a batch, and a refusal (whose
     * 401 must come first, as on every route), look it up now. */
    if ((st != VG_OK || batch) && ctx->key_cached) {
        vg_error kerr = {0};
        if (api_key_recheck(ctx, &kerr) != VG_OK) {
            json_decref(items);
            json_decref(body);
            vg_error_clear(&err);
            api_reply_error(ctx, &kerr);
            vg_error_clear(&kerr);
            return;
        }
    }
    if (items && !batch) {
        /* One transaction: joined with concurrent ones (api_ingest.h),
         * parked meanwhile so that this worker thread serves its other
         * connections; tx_single_resumed replies. */
        ctx->parked = api_ingest_park(ctx->conn, json_array_get(items, 0), ctx->key.id);
        if (ctx->parked) {
            ctx->parked_free = (void (*)(void *))api_ingest_ticket_free;
            ctx->resume = tx_single_resumed;
            json_decref(items);
            json_decref(body);
            return;
        }
        PGconn *db = api_db(ctx, &err);
        char id[37];
        int created = 0;
        st =
            db ? api_ingest_one(db, json_array_get(items, 0), ctx->key.id, &out, id, &created, &err)
               : err.code;
        if (st == VG_OK)
            snprintf(ctx->location, sizeof ctx->location, "/transactions/%s", id);
        ctx->kicked = 1; /* as above */
        api_reply_result(ctx, st, created ? 201 : 200, out, &err);
        json_decref(items);
        json_decref(body);
        return;
    }
    long created = 0, duplicates = 0;
    if (items) {
        int n_items = (int)json_array_size(items);
        char *text = json_dumps(items, JSON_COMPACT);
        json_decref(items); /* peak memory: the trees go before the reply comes */
        json_decref(body);
        items = body = NULL;
        if (!text)
            abort();
        PGconn *db = api_db(ctx, &err);
        /* A small batch's commit also sequences its events, as the single
         * POSTs' does; a large one leaves that to the sequencer, which
         * works beside the next batch instead of inside this one. */
        tx_sequencing seq;
        int sequenced = n_items <= SEQUENCED_BATCH_MAX && api_ingest_sequencing(n_items, &seq);
        if (!db)
            st = err.code;
        else if (sequenced)
            st = tx_ingest_sequenced(db, text, &seq, &out, &created, &duplicates, &err);
        else
            st = tx_ingest(db, text, &out, &created, &duplicates, &err);
        if (st == VG_OK && sequenced)
            ctx->kicked = !api_ingest_sequenced(&seq);
        free(text);
        if (st == VG_E_INVALID && err.items) {
            /* Name the offending field inside the batch. */
            size_t i;
            json_t *e;
            json_array_foreach(err.items, i, e)
            {
                char field[300];
                snprintf(field, sizeof field, "transactions[%lld].%s",
                         (long long)json_integer_value(json_object_get(e, "index")),
                         json_string_value(json_object_get(e, "field")));
                json_object_set_new(e, "field", json_string(field));
            }
            snprintf(err.field, sizeof err.field, "transactions"); /* as tx_body_decode() */
        }
    }
    /* The reply is PostgreSQL's text as it is: a 10,000-item batch is not
     * parsed back into a tree to be printed again. */
    api_reply_result(ctx, st, created ? 201 : 200, out, &err);
    json_decref(items);
    json_decref(body);
}

void api_transactions_list(api_ctx *ctx)
{
    vg_error err = {0};
    int limit;
    char cust[37], *out = NULL;
    const char *after, *customer;
    vg_status st = api_page_args(ctx, &after, &limit, &err);
    if (st == VG_OK)
        st = api_query_uuid(ctx, "customer_id", cust, &customer, &err);
    PGconn *db = st == VG_OK ? api_db(ctx, &err) : NULL;
    if (st == VG_OK)
        st = db ? tx_list(db, customer, after, limit, &out, &err) : err.code;
    api_reply_result(ctx, st, 200, out, &err);
}

void api_transaction_get(api_ctx *ctx)
{
    api_reply_fetch(ctx, "transaction", tx_get);
}
