/*
 * api_work.c — analysts' work: /alerts, /kyc/tasks and /rules.
 */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "domain/bodies.h"
#include "domain/workflow.h"
#include "store/store_approvals.h"
#include "store/store_work.h"

/* Reads ?after=, ?limit= and ?customer_id= (canonicalised into `cust`). */
static vg_status page_args(api_ctx *ctx, const char **after, int *limit, const char **customer,
                           char cust[37], vg_error *err)
{
    vg_status st = api_page_args(ctx, after, limit, err);
    return st == VG_OK ? api_query_uuid(ctx, "customer_id", cust, customer, err) : st;
}

/* Parses the body as JSON; replies and returns NULL on failure. The
 * resource's decoder (domain/bodies.h) checks its shape. */
static json_t *json_body(api_ctx *ctx)
{
    vg_error err = {0};
    json_t *body = api_body_json(ctx, &err);
    if (!body) {
        api_reply_error(ctx, &err);
        vg_error_clear(&err);
    }
    return body;
}

/* ---- alerts ------------------------------------------------------------- */

void api_alerts_list(api_ctx *ctx)
{
    vg_error err = {0};
    const char *after, *customer, *status = api_query(ctx, "status"),
                                  *rule = api_query(ctx, "rule_id");
    char cust[37], *out = NULL;
    int limit;
    vg_status st = page_args(ctx, &after, &limit, &customer, cust, &err);
    if (st == VG_OK && status && !alert_status_valid(status))
        st = vg_fail(&err, VG_E_INVALID, "status", "must be open, investigating or closed");
    PGconn *db = st == VG_OK ? api_db(ctx, &err) : NULL;
    if (db)
        st = alert_list(db, status, customer, rule, after, limit, &out, &err);
    else if (st == VG_OK)
        st = err.code;
    api_reply_result(ctx, st, 200, out, &err);
}

void api_alert_get(api_ctx *ctx)
{
    api_reply_fetch(ctx, "alert", alert_get);
}

void api_alert_patch(api_ctx *ctx)
{
    const char *id = api_param_uuid(ctx, 0, "alert");
    json_t *body = id ? json_body(ctx) : NULL;
    if (!body)
        return;
    vg_error err = {0};
    alert_patch p;
    char actor[160], *out = NULL;
    vg_status st = alert_patch_decode(body, &p, &err);
    PGconn *db = st == VG_OK ? api_db(ctx, &err) : NULL;
    if (st == VG_OK && !db)
        st = err.code;
    /* Four eyes: escalating or filing a SAR is a proposal another person
     * approves (POST /approvals/{id}/approve). */
    int proposal = st == VG_OK && approval_needed_for_disposition(p.disposition);
    if (proposal) {
        st = approval_propose_alert_close(db, id, p.disposition, p.note, &ctx->key, &out, &err);
    } else if (st == VG_OK) {
        api_actor(ctx, actor);
        st = alert_transition(db, id, p.status, p.disposition, p.note, actor, &out, &err);
    }
    json_decref(body);
    if (proposal)
        api_reply_proposal(ctx, st, out, &err);
    else
        api_reply_result(ctx, st, 200, out, &err);
}

/* ---- KYC tasks ---------------------------------------------------------- */

void api_kyc_tasks_list(api_ctx *ctx)
{
    vg_error err = {0};
    const char *after, *customer, *status = api_query(ctx, "status"),
                                  *kind = api_query(ctx, "kind");
    char cust[37], *out = NULL;
    int limit;
    vg_status st = page_args(ctx, &after, &limit, &customer, cust, &err);
    if (st == VG_OK && status && !kyc_status_valid(status))
        st = vg_fail(&err, VG_E_INVALID, "status",
                     "must be open, in_progress, completed or rejected");
    PGconn *db = st == VG_OK ? api_db(ctx, &err) : NULL;
    if (db)
        st = kyc_list(db, status, customer, kind, after, limit, &out, &err);
    else if (st == VG_OK)
        st = err.code;
    api_reply_result(ctx, st, 200, out, &err);
}

void api_kyc_task_patch(api_ctx *ctx)
{
    const char *id = api_param_uuid(ctx, 0, "KYC task");
    json_t *body = id ? json_body(ctx) : NULL;
    if (!body)
        return;
    vg_error err = {0};
    kyc_patch p;
    char actor[160], *out = NULL;
    vg_status st = kyc_patch_decode(body, &p, &err);
    if (st == VG_OK) {
        api_actor(ctx, actor);
        PGconn *db = api_db(ctx, &err);
        st = db ? kyc_transition(db, id, p.status, p.note, actor, &out, &err) : err.code;
    }
    json_decref(body);
    api_reply_result(ctx, st, 200, out, &err);
}

/* ---- rules -------------------------------------------------------------- */

void api_rules_list(api_ctx *ctx)
{
    vg_error err = {0};
    char *out = NULL;
    PGconn *db = api_db(ctx, &err);
    vg_status st = db ? rules_list(db, &out, &err) : err.code;
    api_reply_result(ctx, st, 200, out, &err);
}

void api_rule_patch(api_ctx *ctx)
{
    json_t *body = json_body(ctx);
    if (!body)
        return;
    vg_error err = {0};
    rule_patch p;
    char *out = NULL;
    vg_status st = rule_patch_decode(body, &p, &err);
    if (st == VG_OK) {
        /* Every rule change is a proposal an admin other than the proposer
         * approves (four eyes). */
        PGconn *db = api_db(ctx, &err);
        st = db ? approval_propose_rule_change(db, ctx->params[0], p.params, p.mode, p.severity,
                                               &ctx->key, &out, &err)
                : err.code;
    }
    json_decref(body);
    api_reply_proposal(ctx, st, out, &err);
}
