/*
 * api_work.c — analysts' work: /alerts, /kyc/tasks and /rules.
 */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "domain/risk.h"
#include "domain/validate.h"
#include "domain/workflow.h"
#include "store/store_work.h"

/* Reads ?after=, ?limit= and ?customer_id= (canonicalised into `cust`). */
static vg_status page_args(api_ctx *ctx, const char **after, int *limit, const char **customer,
                           char cust[37], vg_error *err)
{
    vg_status st = api_page_args(ctx, after, limit, err);
    return st == VG_OK ? api_query_uuid(ctx, "customer_id", cust, customer, err) : st;
}

/* Reads an optional string member; 0 with err when present but not a string. */
static int opt_string(const json_t *body, const char *key, size_t max, const char **out,
                      vg_error *err)
{
    json_t *v = json_object_get(body, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 1;
    if (!json_is_string(v) || !text_ok(json_string_value(v), max)) {
        vg_fail(err, VG_E_INVALID, key, "must be a string of at most %zu bytes of UTF-8 text", max);
        return 0;
    }
    *out = json_string_value(v);
    return 1;
}

/* Refuses members other than those in `allowed` (NULL-terminated). */
static int only_keys(const json_t *body, const char *const *allowed, vg_error *err)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(*a, key) == 0;
        if (!ok) {
            vg_fail(err, VG_E_INVALID, key, "unknown field");
            return 0;
        }
    }
    return 1;
}

/* Parses a JSON object body; replies and returns NULL on failure. */
static json_t *object_body(api_ctx *ctx, const char *const *allowed)
{
    vg_error err = {0};
    json_t *body = api_body_json(ctx, &err);
    if (body && !json_is_object(body))
        vg_fail(&err, VG_E_INVALID, "body", "must be a JSON object");
    else if (body)
        only_keys(body, allowed, &err);
    if (err.code == VG_OK)
        return body;
    json_decref(body);
    api_reply_error(ctx, &err);
    vg_error_clear(&err);
    return NULL;
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
    static const char *const allowed[] = {"status", "disposition", "note", NULL};
    const char *id = api_param_uuid(ctx, 0, "alert");
    json_t *body = id ? object_body(ctx, allowed) : NULL;
    if (!body)
        return;
    vg_error err = {0};
    const char *status, *disposition, *note;
    char actor[160], *out = NULL;
    vg_status st = VG_E_INVALID;
    if (!opt_string(body, "status", 32, &status, &err) ||
        !opt_string(body, "disposition", 32, &disposition, &err) ||
        !opt_string(body, "note", VG_NOTE_MAX, &note, &err))
        ;
    else if (!status)
        vg_fail(&err, VG_E_INVALID, "status", "required: investigating or closed");
    else if (!alert_status_valid(status))
        vg_fail(&err, VG_E_INVALID, "status", "must be open, investigating or closed");
    else if (strcmp(status, "closed") == 0 && !disposition)
        vg_fail(&err, VG_E_INVALID, "disposition",
                "required when closing: false_positive, no_action, escalated or sar_filed");
    else if (disposition && !alert_disposition_valid(disposition))
        vg_fail(&err, VG_E_INVALID, "disposition",
                "must be false_positive, no_action, escalated or sar_filed");
    else if (disposition && strcmp(status, "closed") != 0)
        vg_fail(&err, VG_E_INVALID, "disposition", "only allowed when closing the alert");
    else
        st = VG_OK;
    if (st == VG_OK) {
        api_actor(ctx, actor);
        PGconn *db = api_db(ctx, &err);
        st = db ? alert_transition(db, id, status, disposition, note, actor, &out, &err) : err.code;
    }
    json_decref(body);
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
    static const char *const allowed[] = {"status", "note", NULL};
    const char *id = api_param_uuid(ctx, 0, "KYC task");
    json_t *body = id ? object_body(ctx, allowed) : NULL;
    if (!body)
        return;
    vg_error err = {0};
    const char *status, *note;
    char actor[160], *out = NULL;
    vg_status st = VG_E_INVALID;
    if (!opt_string(body, "status", 32, &status, &err) ||
        !opt_string(body, "note", VG_NOTE_MAX, &note, &err))
        ;
    else if (!status || !kyc_status_valid(status))
        vg_fail(&err, VG_E_INVALID, "status", "required: in_progress, completed or rejected");
    else
        st = VG_OK;
    if (st == VG_OK) {
        api_actor(ctx, actor);
        PGconn *db = api_db(ctx, &err);
        st = db ? kyc_transition(db, id, status, note, actor, &out, &err) : err.code;
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
    static const char *const allowed[] = {"params", "mode", "severity", NULL};
    json_t *body = object_body(ctx, allowed);
    if (!body)
        return;
    vg_error err = {0};
    const char *mode, *severity;
    json_t *params = json_object_get(body, "params");
    char actor[160], *out = NULL;
    vg_status st = VG_E_INVALID;
    if (!opt_string(body, "mode", 16, &mode, &err) ||
        !opt_string(body, "severity", 16, &severity, &err))
        ;
    else if (mode && strcmp(mode, "active") && strcmp(mode, "shadow") && strcmp(mode, "disabled"))
        vg_fail(&err, VG_E_INVALID, "mode", "must be active, shadow or disabled");
    else if (severity && risk_level_parse(severity) < 0)
        vg_fail(&err, VG_E_INVALID, "severity", "must be low, medium or high");
    else if (params && !json_is_object(params))
        vg_fail(&err, VG_E_INVALID, "params", "must be an object");
    else if (!params && !mode && !severity)
        vg_fail(&err, VG_E_INVALID, "body", "nothing to change: give params, mode or severity");
    else
        st = VG_OK;
    if (st == VG_OK) {
        api_actor(ctx, actor);
        PGconn *db = api_db(ctx, &err);
        st = db ? rule_update(db, ctx->params[0], params, mode, severity, actor, &out, &err)
                : err.code;
    }
    json_decref(body);
    api_reply_result(ctx, st, 200, out, &err);
}
