/*
 * api_approvals.c — four eyes: GET /approvals, GET /approvals/{id},
 * POST /approvals/{id}/approve and POST /approvals/{id}/reject.
 *
 * Proposals are made by PATCH /alerts/{id} (closing as escalated or
 * sar_filed) and PATCH /rules/{id}, which answer 202 with the proposal and
 * Location: /approvals/{id}. Who may decide is the store's policy
 * (store_approvals.h); the routing table only admits admins and analysts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "domain/bodies.h"
#include "store/store_approvals.h"

void api_reply_proposal(api_ctx *ctx, vg_status st, char *out, vg_error *err)
{
    json_t *doc = st == VG_OK ? json_loads(out, 0, NULL) : NULL;
    const char *id = json_string_value(json_object_get(doc, "id"));
    if (id)
        snprintf(ctx->location, sizeof ctx->location, "/approvals/%s", id);
    json_decref(doc);
    api_reply_result(ctx, st, 202, out, err);
}

void api_approvals_list(api_ctx *ctx)
{
    vg_error err = {0};
    const char *after, *status = api_query(ctx, "status"), *kind = api_query(ctx, "kind"),
                       *target = api_query(ctx, "target_id");
    char *out = NULL;
    int limit;
    vg_status st = api_page_args(ctx, &after, &limit, &err);
    if (st == VG_OK && status && strcmp(status, "pending") && strcmp(status, "approved") &&
        strcmp(status, "rejected"))
        st = vg_fail(&err, VG_E_INVALID, "status", "must be pending, approved or rejected");
    else if (st == VG_OK && kind && strcmp(kind, "alert_close") && strcmp(kind, "rule_change"))
        st = vg_fail(&err, VG_E_INVALID, "kind", "must be alert_close or rule_change");
    PGconn *db = st == VG_OK ? api_db(ctx, &err) : NULL;
    if (db)
        st = approval_list(db, status, kind, target, after, limit, &out, &err);
    else if (st == VG_OK)
        st = err.code;
    api_reply_result(ctx, st, 200, out, &err);
}

void api_approval_get(api_ctx *ctx)
{
    api_reply_fetch(ctx, "approval", approval_get);
}

/* The optional body {"note"}: no body at all is fine. */
static vg_status decision_body(api_ctx *ctx, int approve, json_t **body, const char **note,
                               vg_error *err)
{
    *body = NULL;
    if ((ctx->body_len > 0 || ctx->body_too_large) && !(*body = api_body_json(ctx, err)))
        return err->code;
    return decision_decode(*body, !approve, note, err);
}

static void decide(api_ctx *ctx, int approve)
{
    const char *id = api_param_uuid(ctx, 0, "approval");
    if (!id)
        return;
    vg_error err = {0};
    json_t *body;
    const char *note;
    char *out = NULL;
    vg_status st = decision_body(ctx, approve, &body, &note, &err);
    PGconn *db = st == VG_OK ? api_db(ctx, &err) : NULL;
    if (db)
        st = approval_decide(db, id, approve, note, &ctx->key, &out, &err);
    else if (st == VG_OK)
        st = err.code;
    json_decref(body);
    api_reply_result(ctx, st, 200, out, &err);
}

void api_approval_approve(api_ctx *ctx)
{
    decide(ctx, 1);
}

void api_approval_reject(api_ctx *ctx)
{
    decide(ctx, 0);
}
