/*
 * api_health.c — GET /healthz (the process answers) and GET /readyz (it can
 * do its job: the database answers and the schema is current). Public: load
 * balancers and orchestrators call them without a key.
 *
 * NATS being down does not make an instance unready: the API keeps
 * accepting writes and events wait in PostgreSQL (that is the point of the
 * outbox). /readyz reports it, with the publish lag, so an operator sees it.
 */
#include <stdlib.h>

#include "api/api.h"
#include "events/pipeline.h"
#include "store/migrate.h"

void api_healthz_get(api_ctx *ctx)
{
    api_reply_json(ctx, 200, json_pack("{s:s, s:s}", "status", "ok", "version", VIGIL_VERSION));
}

/* The event pipeline as this instance sees it (informational). */
static json_t *events_check(PGconn *db)
{
    json_t *j = json_object();
    PGresult *r = db_exec(db,
                          "SELECT (SELECT coalesce(max(seq), 0) FROM event_log),"
                          " (SELECT seq FROM cursors WHERE name = 'publisher'),"
                          " (SELECT count(*) FROM outbox)",
                          0, NULL, NULL);
    if (r) {
        long long last = atoll(PQgetvalue(r, 0, 0)), pub = atoll(PQgetvalue(r, 0, 1));
        json_object_set_new(j, "last_seq", json_integer(last));
        json_object_set_new(j, "published_seq", json_integer(pub));
        json_object_set_new(j, "publish_lag", json_integer(last - pub));
        json_object_set_new(j, "outbox_pending", json_integer(atoll(PQgetvalue(r, 0, 2))));
        PQclear(r);
    }
    pipeline *p = pipeline_current();
    if (p && atomic_load(&p->pub_role.is_leader)) {
        char last_error[256];
        publisher_last_error(&p->pub, last_error, sizeof last_error);
        json_object_set_new(j, "publisher", json_string("this instance"));
        json_object_set_new(j, "nats_connected", json_boolean(atomic_load(&p->pub.nats_connected)));
        json_object_set_new(j, "stream_ok", json_boolean(atomic_load(&p->pub.stream_ok)));
        if (last_error[0])
            json_object_set_new(j, "last_error", json_string(last_error));
    }
    return j;
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
        json_object_set_new(
            checks, "schema",
            json_pack("{s:b, s:i}", "ok", pending == 0, "pending_migrations", pending));
        ready = pending == 0;
    }
    if (pending >= 0)
        json_object_set_new(checks, "events", events_check(db));
    vg_error_clear(&err);
    if (!ready)
        ctx->retry_after = 1;
    api_reply_json(
        ctx, ready ? 200 : 503,
        json_pack("{s:s, s:o}", "status", ready ? "ready" : "unavailable", "checks", checks));
}
