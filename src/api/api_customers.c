/*
 * api_customers.c — /customers: onboarding, reads, updates, risk history.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "domain/timeparse.h"
#include "domain/validate.h"
#include "store/store_customers.h"

static void risk_cfg(const api_ctx *ctx, risk_config *rc)
{
    rc->medium_threshold = (int)ctx->state->cfg->risk_medium;
    rc->high_threshold = (int)ctx->state->cfg->risk_high;
}

static int32_t today_days(void)
{
    return (int32_t)(now_epoch_us() / 86400000000LL);
}

/* Decodes the body into `in`; replies and returns 0 on failure. */
static int decode(api_ctx *ctx, int is_patch, customer_input *in)
{
    vg_error err = {0};
    json_t *body = api_body_json(ctx, &err);
    if (body && customer_decode(body, is_patch, today_days(), in, &err) == VG_OK) {
        json_decref(body);
        return 1;
    }
    json_decref(body);
    if (!err.field[0]) /* the top level has no name of its own */
        snprintf(err.field, sizeof err.field, "body");
    api_reply_error(ctx, &err);
    vg_error_clear(&err);
    return 0;
}

void api_customers_post(api_ctx *ctx)
{
    customer_input in;
    if (!decode(ctx, 0, &in))
        return;
    vg_error err = {0};
    char actor[160], *out = NULL;
    int duplicate = 0;
    risk_config rc;
    risk_cfg(ctx, &rc);
    api_actor(ctx, actor);
    PGconn *db = api_db(ctx, &err);
    vg_status st = db ? customers_create(db, &in, &rc, actor, &out, &duplicate, &err) : err.code;
    if (st == VG_OK) {
        /* Tell an idempotent retry apart from a first create. */
        json_t *j = json_loads(out, 0, NULL);
        json_object_set_new(j, "duplicate", json_boolean(duplicate));
        snprintf(ctx->location, sizeof ctx->location, "/customers/%s",
                 json_string_value(json_object_get(j, "id")));
        api_reply_json(ctx, duplicate ? 200 : 201, j);
        free(out);
        return;
    }
    api_reply_result(ctx, st, 201, out, &err);
}

void api_customers_list(api_ctx *ctx)
{
    vg_error err = {0};
    int limit;
    char *out = NULL;
    const char *after;
    vg_status st = api_page_args(ctx, &after, &limit, &err);
    PGconn *db = st == VG_OK ? api_db(ctx, &err) : NULL;
    if (st == VG_OK)
        st = db ? customers_list(db, after, limit, &out, &err) : err.code;
    api_reply_result(ctx, st, 200, out, &err);
}

void api_customer_get(api_ctx *ctx)
{
    api_reply_fetch(ctx, "customer", customers_get);
}

void api_customer_patch(api_ctx *ctx)
{
    const char *id = api_param_uuid(ctx, 0, "customer");
    customer_input in;
    if (!id || !decode(ctx, 1, &in))
        return;
    vg_error err = {0};
    char actor[160], *out = NULL;
    risk_config rc;
    risk_cfg(ctx, &rc);
    api_actor(ctx, actor);
    PGconn *db = api_db(ctx, &err);
    vg_status st = db ? customers_update(db, id, &in, &rc, actor, &out, &err) : err.code;
    api_reply_result(ctx, st, 200, out, &err);
}

void api_customer_risk_get(api_ctx *ctx)
{
    api_reply_fetch(ctx, "customer", customers_risk_history);
}
