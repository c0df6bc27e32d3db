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
#include "domain/timeparse.h"
#include "domain/validate.h"
#include "store/store_work.h"

static json_t *canonical_item(const tx_input *t)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s?, s:s?, s:s?, s:s}", "external_id",
                     t->external_id, "customer_id", t->customer_id, "amount", t->amount, "currency",
                     t->currency, "direction", t->direction, "channel", t->channel, "cp_name",
                     t->cp_name[0] ? t->cp_name : NULL, "cp_account",
                     t->cp_account[0] ? t->cp_account : NULL, "cp_country",
                     t->cp_country[0] ? t->cp_country : NULL, "occurred_at", t->occurred_at);
}

/* Validates every item; returns the canonical array or NULL with err (for
 * a batch, err->items lists each bad item). */
static json_t *validate_items(api_ctx *ctx, const json_t *list, int batch, vg_error *err)
{
    json_t *items = json_array();
    int64_t now = now_epoch_us();
    tx_input t;
    size_t i;
    const json_t *item;
    json_array_foreach(list, i, item)
    {
        vg_error one = {0};
        if (tx_decode(item, now, &t, &one) == VG_OK) {
            json_array_append_new(items, canonical_item(&t));
        } else if (batch) {
            char field[300];
            snprintf(field, sizeof field, "transactions[%zu]%s%s", i, one.field[0] ? "." : "",
                     one.field);
            vg_fail_item(err, (long)i, field, one.detail);
        } else {
            *err = one;
            one.items = NULL;
            if (!err->field[0]) /* the top level has no name of its own */
                snprintf(err->field, sizeof err->field, "body");
        }
        vg_error_clear(&one);
    }
    if (err->code != VG_OK) {
        if (batch)
            vg_fail(err, VG_E_INVALID, "transactions", "%zu of %zu transactions are invalid",
                    json_array_size(err->items), json_array_size(list));
        json_decref(items);
        return NULL;
    }
    return items;
}

void api_transactions_post(api_ctx *ctx)
{
    vg_error err = {0};
    char *out = NULL;
    json_t *body = api_body_json(ctx, &err), *items = NULL, *list = NULL;
    int batch = 0;
    if (body) {
        if (json_is_object(body) && json_object_get(body, "transactions")) {
            batch = 1;
            list = json_incref(json_object_get(body, "transactions"));
            if (json_object_size(body) != 1)
                vg_fail(&err, VG_E_INVALID, "body",
                        "a batch body holds only \"transactions\": [...]");
            else if (!json_is_array(list) || json_array_size(list) == 0)
                vg_fail(&err, VG_E_INVALID, "transactions", "must be a non-empty array");
            else if (json_array_size(list) > (size_t)ctx->state->cfg->max_batch)
                vg_fail(&err, VG_E_TOO_LARGE, "transactions",
                        "at most %ld transactions per request (got %zu)",
                        ctx->state->cfg->max_batch, json_array_size(list));
        } else {
            list = json_array();
            json_array_append(list, body);
        }
    }
    if (body && err.code == VG_OK)
        items = validate_items(ctx, list, batch, &err);
    vg_status st = items ? VG_OK : (err.code ? err.code : VG_E_INTERNAL);
    if (items) {
        char *text = json_dumps(items, JSON_COMPACT);
        PGconn *db = api_db(ctx, &err);
        st = db ? tx_ingest(db, text, &out, &err) : err.code;
        free(text);
        if (st == VG_E_INVALID && batch && err.items) {
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
            snprintf(err.field, sizeof err.field, "transactions"); /* as validate_items() */
        } else if (st == VG_E_INVALID && !batch && err.items) {
            json_t *e = json_array_get(err.items, 0);
            vg_fail(&err, VG_E_INVALID, json_string_value(json_object_get(e, "field")), "%s",
                    json_string_value(json_object_get(e, "detail")));
            json_decref(err.items);
            err.items = NULL;
        }
    }
    if (st == VG_OK) {
        json_t *res = json_loads(out, 0, NULL);
        free(out);
        out = NULL;
        int created = (int)json_integer_value(json_object_get(res, "created"));
        if (batch) {
            api_reply_json(ctx, created ? 201 : 200, res);
        } else {
            json_t *one = json_incref(json_array_get(json_object_get(res, "items"), 0));
            snprintf(ctx->location, sizeof ctx->location, "/transactions/%s",
                     json_string_value(json_object_get(one, "id")));
            json_decref(res);
            api_reply_json(ctx, created ? 201 : 200, one);
        }
    } else {
        api_reply_result(ctx, st, 201, out, &err);
    }
    json_decref(items);
    json_decref(list);
    json_decref(body);
    vg_error_clear(&err);
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
