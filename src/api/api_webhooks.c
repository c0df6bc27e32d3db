/*
 * api_webhooks.c — /webhooks: register an endpoint, list them, switch one
 * on or off, and read its deliveries with every attempt.
 *
 * The secret signs deliveries (the scheme is in consumers/webhooks.h and the
 * README) and is shown exactly once: in the 201 reply when Vigil generated
 * it. Afterwards only a hint (its last four characters) is returned, so a
 * leaked admin listing does not leak the means to forge deliveries.
 *
 * Webhooks are switched off (PATCH {"active": false}) rather than deleted:
 * their delivery history stays auditable, and deliveries already queued wait
 * (unsent) until the webhook is switched on again.
 */
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "domain/bodies.h"
#include "domain/webhook.h"
#include "store/store_list.h"
#include "store/store_webhooks.h"
#include "util/hex.h"

#define GENERATED_SECRET_BYTES 32

/* Fills `out` with a new secret: 32 random bytes as 64 hex characters. */
static vg_status new_secret(char out[2 * GENERATED_SECRET_BYTES + 1], vg_error *err)
{
    unsigned char raw[GENERATED_SECRET_BYTES];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return vg_fail(err, VG_E_INTERNAL, NULL, "cannot generate a secret (RAND_bytes failed)");
    hex_encode(raw, sizeof raw, out);
    OPENSSL_cleanse(raw, sizeof raw);
    return VG_OK;
}

void api_webhooks_post(api_ctx *ctx)
{
    vg_error err = {0};
    webhook_input in;
    char secret[WEBHOOK_SECRET_MAX + 1], actor[160], *out = NULL;
    json_t *body = api_body_json(ctx, &err);
    vg_status st = body ? webhook_decode(body, &in, &err) : err.code;
    json_decref(body);
    if (st == VG_OK && in.has_secret)
        memcpy(secret, in.secret, sizeof secret);
    else if (st == VG_OK)
        st = new_secret(secret, &err);
    PGconn *db = st == VG_OK ? api_db(ctx, &err) : NULL;
    if (db) {
        api_actor(ctx, actor);
        st = store_webhooks_create(db, &in, secret, actor, &out, &err);
    } else if (st == VG_OK) {
        st = err.code;
    }
    if (st == VG_OK) {
        json_t *j = json_loads(out, 0, NULL);
        if (!in.has_secret) /* the only time it is ever shown */
            json_object_set_new(j, "secret", json_string(secret));
        snprintf(ctx->location, sizeof ctx->location, "/webhooks/%s",
                 json_string_value(json_object_get(j, "id")));
        api_reply_json(ctx, 201, j);
        free(out);
        out = NULL;
    } else {
        api_reply_result(ctx, st, 201, out, &err);
    }
    OPENSSL_cleanse(secret, sizeof secret);
    OPENSSL_cleanse(in.secret, sizeof in.secret);
}

void api_webhooks_list(api_ctx *ctx)
{
    static const list_spec spec = {
        "webhooks", "vigil_webhook_json", "created_at", {"active", NULL}};
    vg_error err = {0};
    const char *v[] = {api_query(ctx, "active")};
    if (v[0] && strcmp(v[0], "true") && strcmp(v[0], "false"))
        vg_fail(&err, VG_E_INVALID, "active", "must be true or false");
    api_reply_list(ctx, &spec, v, &err);
}

void api_webhook_patch(api_ctx *ctx)
{
    const char *id = api_param_uuid(ctx, 0, "webhook");
    if (!id)
        return;
    vg_error err = {0};
    char actor[160], *out = NULL;
    json_t *body = api_body_json(ctx, &err);
    int active = 0;
    vg_status st = body ? webhook_patch_decode(body, &active, &err) : err.code;
    PGconn *db = st == VG_OK ? api_db(ctx, &err) : NULL;
    if (db) {
        api_actor(ctx, actor);
        st = store_webhooks_set_active(db, id, active, actor, &out, &err);
    } else if (st == VG_OK) {
        st = err.code;
    }
    json_decref(body);
    api_reply_result(ctx, st, 200, out, &err);
}

void api_webhook_deliveries_list(api_ctx *ctx)
{
    static const list_spec spec = {"webhook_deliveries",
                                   "vigil_webhook_delivery_json",
                                   "created_at",
                                   {"webhook_id", "status", NULL}};
    static const char *const statuses[] = {"pending", "failed", "delivered", "dead", NULL};
    const char *id = api_param_uuid(ctx, 0, "webhook");
    if (!id)
        return;
    vg_error err = {0};
    int limit;
    char *out = NULL;
    const char *after, *v[] = {id, api_query(ctx, "status")};
    vg_status st = api_page_args(ctx, &after, &limit, &err);
    if (st == VG_OK && v[1]) {
        int known = 0;
        for (const char *const *s = statuses; *s && !known; s++)
            known = strcmp(*s, v[1]) == 0;
        if (!known)
            st =
                vg_fail(&err, VG_E_INVALID, "status", "must be pending, failed, delivered or dead");
    }
    PGconn *db = st == VG_OK ? api_db(ctx, &err) : NULL;
    if (db) /* 404 for an unknown webhook, not an empty page */
        st = store_webhooks_get(db, id, &out, &err);
    else if (st == VG_OK)
        st = err.code;
    free(out);
    out = NULL;
    if (db && st == VG_OK)
        st = store_list(db, &spec, v, after, limit, &out, &err);
    api_reply_result(ctx, st, 200, out, &err);
}
