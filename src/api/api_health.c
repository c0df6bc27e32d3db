/*
 * api_health.c — GET /healthz (the process answers) and GET /readyz (it can
 * do its job: the database answers and the schema is current). Public: load
 * balancers and orchestrators call them without a key.
 */
#include "api/api.h"
#include "store/migrate.h"

void api_healthz_get(api_ctx *ctx)
{
    api_reply_json(ctx, 200, json_pack("{s:s, s:s}", "status", "ok", "version", VIGIL_VERSION));
}

void api_readyz_get(api_ctx *ctx)
{
    vg_error err = {0};
    json_t *checks = json_object();
    int ready = 1;
    PGconn *db = api_db(ctx, &err);
    int pending = db ? migrate_pending(db, &err) : -1;
    if (pending < 0) {
        ready = 0;
        json_object_set_new(checks, "database",
                            json_pack("{s:b, s:s}", "ok", 0, "detail", err.detail));
    } else {
        json_object_set_new(checks, "database", json_pack("{s:b}", "ok", 1));
        json_object_set_new(checks, "schema",
                            json_pack("{s:b, s:i}", "ok", pending == 0, "pending_migrations",
                                      pending));
        ready = pending == 0;
    }
    vg_error_clear(&err);
    if (!ready)
        ctx->retry_after = 1;
    api_reply_json(ctx, ready ? 200 : 503,
                   json_pack("{s:s, s:o}", "status", ready ? "ready" : "unavailable", "checks",
                             checks));
}
