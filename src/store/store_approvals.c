/*
 * store_approvals.c — four eyes: proposals, and decisions that apply them.
 *
 * A proposal is validated when it is made (so a proposal that could never
 * apply is refused at once) and again when it is approved, inside the
 * approving transaction with the target row locked: an alert closed or a
 * rule changed meanwhile makes the approval 409, never a half-applied
 * decision.
 */
#include "store/store_approvals.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/db.h"
#include "store/store_list.h"
#include "store/store_work.h"

int approval_needed_for_disposition(const char *disposition)
{
    return disposition &&
           (strcmp(disposition, "escalated") == 0 || strcmp(disposition, "sar_filed") == 0);
}

static void actor_of(const api_key_info *who, char out[160])
{
    snprintf(out, 160, "key:%s", who->name);
}

/* Inserts the proposal (inside the caller's transaction); `payload` is
 * stolen. VG_E_CONFLICT naming the pending proposal when one exists. */
static vg_status insert_proposal(PGconn *c, const char *kind, const char *target, const char *what,
                                 json_t *payload, const api_key_info *who, char **out,
                                 vg_error *err)
{
    char actor[160];
    actor_of(who, actor);
    char *text = json_dumps(payload, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(payload);
    if (!text)
        return vg_fail(err, VG_E_INTERNAL, NULL, "could not encode the proposal");
    const char *p[] = {kind, target, text, who->id, actor};
    PGresult *r = db_exec(c,
                          "INSERT INTO approvals (kind, target_id, payload, proposed_by_key,"
                          " proposed_by) VALUES ($1, $2, $3::jsonb, $4, $5)"
                          " ON CONFLICT (kind, target_id) WHERE status = 'pending' DO NOTHING"
                          " RETURNING vigil_approval_json(approvals)::text",
                          5, p, err);
    free(text);
    if (!r)
        return err ? err->code : VG_E_INTERNAL;
    vg_status st = VG_OK;
    if (PQntuples(r) == 1) {
        *out = strdup(PQgetvalue(r, 0, 0));
        if (!*out)
            abort();
    } else {
        PQclear(r);
        r = db_exec(c,
                    "SELECT id FROM approvals WHERE kind = $1 AND target_id = $2"
                    " AND status = 'pending'",
                    2, p, err);
        if (!r)
            return err ? err->code : VG_E_INTERNAL;
        st = vg_fail(err, VG_E_CONFLICT, NULL,
                     "a proposal for %s %s is already pending: /approvals/%s; approve or reject "
                     "it first",
                     what, target, PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "?");
    }
    PQclear(r);
    return st;
}

/* Ends the transaction: COMMIT when st is VG_OK, else ROLLBACK and free *out. */
static vg_status finish(PGconn *c, vg_status st, char **out, vg_error *err)
{
    if (st == VG_OK)
        st = db_commit(c, err);
    if (st != VG_OK) {
        db_rollback(c);
        free(*out);
        *out = NULL;
    }
    return st;
}

vg_status approval_propose_alert_close(PGconn *c, const char *alert_id, const char *disposition,
                                       const char *note, const api_key_info *who, char **out,
                                       vg_error *err)
{
    *out = NULL;
    vg_status st = db_begin(c, err);
    if (st != VG_OK)
        return st;
    /* Checks (and locks) the alert: it must be able to close now. */
    st = alert_transition_in_tx(c, alert_id, "closed", disposition, note, NULL, NULL, err);
    if (st == VG_OK) {
        json_t *payload = json_pack("{s:s, s:s, s:s?}", "status", "closed", "disposition",
                                    disposition, "note", note);
        st = insert_proposal(c, "alert_close", alert_id, "alert", payload, who, out, err);
    }
    return finish(c, st, out, err);
}

vg_status approval_propose_rule_change(PGconn *c, const char *rule_id, const json_t *params_patch,
                                       const char *mode, const char *severity,
                                       const api_key_info *who, char **out, vg_error *err)
{
    *out = NULL;
    long version = 0;
    vg_status st = db_begin(c, err);
    if (st != VG_OK)
        return st;
    st = rule_check(c, rule_id, params_patch, &version, err);
    if (st == VG_OK) {
        json_t *payload = json_pack("{s:O?, s:s?, s:s?, s:I}", "params", params_patch, "mode", mode,
                                    "severity", severity, "base_version", (json_int_t)version);
        st = insert_proposal(c, "rule_change", rule_id, "rule", payload, who, out, err);
    }
    return finish(c, st, out, err);
}

/* Applies an approved proposal; *result = the changed alert or rule. */
static vg_status apply(PGconn *c, const char *kind, const char *target, const json_t *payload,
                       const char *proposer, char **result, vg_error *err)
{
    const char *mode = json_string_value(json_object_get(payload, "mode"));
    const char *severity = json_string_value(json_object_get(payload, "severity"));
    if (strcmp(kind, "alert_close") == 0)
        return alert_transition_in_tx(
            c, target, "closed", json_string_value(json_object_get(payload, "disposition")),
            json_string_value(json_object_get(payload, "note")), proposer, result, err);
    json_t *base = json_object_get(payload, "base_version");
    json_t *params = json_object_get(payload, "params");
    return rule_update_in_tx(c, target, json_is_object(params) ? params : NULL, mode, severity,
                             proposer, json_is_integer(base) ? (long)json_integer_value(base) : -1,
                             result, err);
}

/* Who may decide: see store_approvals.h. */
static vg_status may_decide(int approve, const char *kind, const char *proposer_key,
                            const char *proposer, const api_key_info *who, vg_error *err)
{
    char actor[160];
    actor_of(who, actor);
    int self = strcmp(proposer_key, who->id) == 0 || strcmp(proposer, actor) == 0;
    if (self && approve)
        return vg_fail(err, VG_E_FORBIDDEN, NULL,
                       "four eyes: %s proposed this; another person must approve it%s", proposer,
                       strcmp(proposer_key, who->id) ? " (keys with the same name are one person)"
                                                     : "");
    if (self) /* the proposer withdraws */
        return VG_OK;
    if (strcmp(kind, "rule_change") == 0 && who->role != ROLE_ADMIN)
        return vg_fail(err, VG_E_FORBIDDEN, NULL, "only an admin may decide a rule change");
    if (!(who->role & (ROLE_ADMIN | ROLE_ANALYST)))
        return vg_fail(err, VG_E_FORBIDDEN, NULL, "only an admin or analyst may decide this");
    return VG_OK;
}

vg_status approval_decide(PGconn *c, const char *id, int approve, const char *note,
                          const api_key_info *who, char **out, vg_error *err)
{
    *out = NULL;
    char *decided = NULL, *result = NULL;
    json_t *payload = NULL, *doc = NULL;
    vg_status st = db_begin(c, err);
    if (st != VG_OK)
        return st;
    const char *p[] = {id};
    PGresult *r = db_exec(c,
                          "SELECT kind, target_id, payload::text, status, proposed_by_key,"
                          " proposed_by FROM approvals WHERE id = $1 FOR UPDATE",
                          1, p, err);
    if (!r) {
        st = err ? err->code : VG_E_INTERNAL;
        goto end;
    }
    if (PQntuples(r) != 1)
        st = vg_fail(err, VG_E_NOT_FOUND, NULL, "approval %s not found", id);
    else if (strcmp(PQgetvalue(r, 0, 3), "pending") != 0)
        st = vg_fail(err, VG_E_CONFLICT, "status", "approval %s is already %s", id,
                     PQgetvalue(r, 0, 3));
    else
        st = may_decide(approve, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 4), PQgetvalue(r, 0, 5), who,
                        err);
    if (st != VG_OK) {
        PQclear(r);
        goto end;
    }
    char actor[160];
    actor_of(who, actor);
    /* The decision is written first, so its event precedes the change's. */
    const char *u[] = {id, approve ? "approved" : "rejected", who->id, actor, note};
    st = db_json(c,
                 "UPDATE approvals SET status = $2, decided_by_key = $3, decided_by = $4,"
                 " decided_at = now(), decision_note = $5 WHERE id = $1"
                 " RETURNING vigil_approval_json(approvals)::text",
                 5, u, "approval", &decided, err);
    if (st == VG_OK && approve) {
        payload = json_loads(PQgetvalue(r, 0, 2), 0, NULL);
        st = apply(c, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), payload, PQgetvalue(r, 0, 5),
                   &result, err);
    }
    PQclear(r);
    if (st == VG_OK) {
        doc = json_loads(decided, 0, NULL);
        if (result)
            json_object_set_new(doc, "result", json_loads(result, 0, NULL));
        *out = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        if (!*out)
            st = vg_fail(err, VG_E_INTERNAL, NULL, "could not encode the decision");
    }
end:
    st = finish(c, st, out, err);
    free(decided);
    free(result);
    json_decref(payload);
    json_decref(doc);
    return st;
}

vg_status approval_get(PGconn *c, const char *id, char **out, vg_error *err)
{
    const char *p[] = {id};
    return db_json(c, "SELECT vigil_approval_json(a)::text FROM approvals a WHERE id = $1", 1, p,
                   "approval", out, err);
}

vg_status approval_list(PGconn *c, const char *status, const char *kind, const char *target_id,
                        const char *after, int limit, char **out, vg_error *err)
{
    static const list_spec spec = {
        "approvals", "vigil_approval_json", "proposed_at", {"status", "kind", "target_id", NULL}};
    const char *v[] = {status, kind, target_id};
    return store_list(c, &spec, v, after, limit, out, err);
}
