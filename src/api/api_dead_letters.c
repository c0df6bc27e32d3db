/*
 * api_dead_letters.c — GET /dead-letters and POST /dead-letters/{id}/redrive.
 *
 * Redrive applies the stored event through the same exactly-once path the
 * consumer uses (consumer_apply), here and now, so an operator sees at once
 * whether the cause is fixed: 200 with the dead letter marked "redriven", or
 * the handler's error (and the letter stays dead). A consumer with its own
 * redrive (consumer_def.redrive) uses that instead: for "webhooks" the
 * event's dead deliveries are re-queued and the worker sends them again.
 */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "consumers/consumer.h"
#include "domain/validate.h"
#include "store/store_list.h"

void api_dead_letters_list(api_ctx *ctx)
{
    static const list_spec spec = {
        "dead_letters", "vigil_dead_letter_json", "created_at", {"status", "consumer", NULL}};
    vg_error err = {0};
    const char *v[] = {api_query(ctx, "status"), api_query(ctx, "consumer")};
    if (v[0] && strcmp(v[0], "dead") && strcmp(v[0], "redriven"))
        vg_fail(&err, VG_E_INVALID, "status", "must be dead or redriven");
    api_reply_list(ctx, &spec, v, &err);
}

void api_dead_letter_redrive(api_ctx *ctx)
{
    const char *id = api_param_uuid(ctx, 0, "dead letter");
    if (!id)
        return;
    vg_error err = {0};
    char *out = NULL;
    json_t *event = NULL;
    PGconn *db = api_db(ctx, &err);
    vg_status st = db ? VG_OK : err.code;
    const char *p[] = {id};
    PGresult *r = db ? db_exec(db,
                               "SELECT consumer, event_id, seq, event_type, payload::text, status"
                               " FROM dead_letters WHERE id = $1",
                               1, p, &err)
                     : NULL;
    if (db && !r)
        st = err.code;
    else if (r && PQntuples(r) != 1)
        st = vg_fail(&err, VG_E_NOT_FOUND, NULL, "dead letter %s not found", id);
    else if (r && strcmp(PQgetvalue(r, 0, 5), "dead") != 0)
        st = vg_fail(&err, VG_E_CONFLICT, "status", "dead letter %s was already redriven", id);
    const consumer_def *def = st == VG_OK ? consumer_find(PQgetvalue(r, 0, 0)) : NULL;
    if (st == VG_OK && !def)
        st = vg_fail(&err, VG_E_CONFLICT, "consumer", "no consumer named %s in this build",
                     PQgetvalue(r, 0, 0));
    if (st == VG_OK) {
        event = json_loads(PQgetvalue(r, 0, 4), 0, NULL);
        consumer_event ev = {.id = PQgetvalue(r, 0, 1),
                             .seq = atoll(PQgetvalue(r, 0, 2)),
                             .type = PQgetvalue(r, 0, 3),
                             .event = event,
                             .data = json_object_get(event, "data")};
        int dup = 0;
        st = def->redrive ? def->redrive(db, ctx->state->cfg, &ev, &err)
                          : consumer_apply(db, ctx->state->cfg, def, &ev, &dup, &err);
    }
    PQclear(r);
    json_decref(event);
    if (st == VG_OK) {
        char actor[160];
        api_actor(ctx, actor);
        const char *u[] = {id, actor};
        st = db_json(
            db,
            "UPDATE dead_letters SET status = 'redriven', redriven_at = now(),"
            " redriven_by = $2 WHERE id = $1 RETURNING vigil_dead_letter_json(dead_letters)::text",
            2, u, "dead letter", &out, &err);
    }
    api_reply_result(ctx, st, 200, out, &err);
}
