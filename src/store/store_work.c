/*
 * store_work.c — transactions, alerts, KYC tasks and rules.
 */
#include "store/store_work.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain/money.h"
#include "domain/workflow.h"
#include "store/db.h"
#include "store/store_list.h"

/* The batch answer over the rows of `rows_sql` (vigil_ingest_rows or
 * vigil_ingest_rows_sequenced), then `extra` columns. One statement: the
 * function runs in its own implicit transaction. The counts come as
 * columns too, so nobody parses the reply to read them. The answer is
 * joined as text, each item rendered once: jsonb_agg copied every item
 * into one big jsonb only to print it again (26 ms against 13 for 1,000
 * items, and inside the transaction, so while the batch's customers are
 * locked). The envelope's bytes are what jsonb_build_object('created', ..,
 * 'duplicates', .., 'items', ..)::text printed: jsonb's key order (items,
 * created, duplicates), its ", " and ": " separators, and null for an item
 * without a row (which vigil_ingest_rows never returns); each item is
 * TX_ANSWER_ITEM_SQL. */
#define TX_BATCH_ANSWER_SQL(extra, rows_sql)                                                       \
    "SELECT '{\"items\": [' || coalesce(string_agg(coalesce(" TX_ANSWER_ITEM_SQL                   \
    ", 'null'), ', ' ORDER BY idx), '')"                                                           \
    " || '], \"created\": ' || count(*) FILTER (WHERE NOT duplicate)"                              \
    " || ', \"duplicates\": ' || count(*) FILTER (WHERE duplicate) || '}',"                        \
    " count(*) FILTER (WHERE NOT duplicate), count(*) FILTER (WHERE duplicate)" extra              \
    " FROM " rows_sql

static vg_status tx_ingest_answer(PGresult *r, char **out, long *created, long *duplicates,
                                  vg_error *err)
{
    *out = NULL;
    if (!r)
        return err ? err->code : VG_E_UNAVAILABLE;
    if (!(*out = strdup(PQgetvalue(r, 0, 0))))
        abort();
    *created = atol(PQgetvalue(r, 0, 1));
    *duplicates = atol(PQgetvalue(r, 0, 2));
    return VG_OK;
}

vg_status tx_ingest(PGconn *c, const char *items_json, char **out, long *created, long *duplicates,
                    vg_error *err)
{
    const char *p[] = {items_json};
    PGresult *r = db_exec(c, TX_BATCH_ANSWER_SQL("", "vigil_ingest_rows($1::jsonb)"), 1, p, err);
    vg_status st = tx_ingest_answer(r, out, created, duplicates, err);
    PQclear(r);
    return st;
}

void tx_sequencing_params(const tx_sequencing *seq, char low[24], char limit[16])
{
    snprintf(low, 24, "%lld", seq->low);
    snprintf(limit, 16, "%d", seq->limit);
}

void tx_sequencing_read(const PGresult *r, int col, tx_sequencing *seq)
{
    seq->moved = atoi(PQgetvalue(r, 0, col));
    seq->strays = atoi(PQgetvalue(r, 0, col + 1));
    snprintf(seq->error, sizeof seq->error, "%s", PQgetvalue(r, 0, col + 2));
}

vg_status tx_ingest_sequenced(PGconn *c, const char *items_json, tx_sequencing *seq, char **out,
                              long *created, long *duplicates, vg_error *err)
{
    char low[24], limit[16];
    tx_sequencing_params(seq, low, limit);
    const char *p[] = {items_json, low, limit};
    /* The step's outcome is the same on every row. */
    PGresult *r = db_exec(c,
                          TX_BATCH_ANSWER_SQL(", max(seq_moved), max(seq_strays), max(seq_error)",
                                              "vigil_ingest_rows_sequenced($1::jsonb, '{}'::uuid[],"
                                              " $2::bigint, $3::int)"),
                          3, p, err);
    vg_status st = tx_ingest_answer(r, out, created, duplicates, err);
    if (st == VG_OK)
        tx_sequencing_read(r, 3, seq);
    PQclear(r);
    return st;
}

vg_status tx_get(PGconn *c, const char *id, char **out, vg_error *err)
{
    const char *p[] = {id};
    return db_json(c, "SELECT vigil_tx_json(t)::text FROM transactions t WHERE id = $1", 1, p,
                   "transaction", out, err);
}

vg_status tx_list(PGconn *c, const char *customer_id, const char *after, int limit, char **out,
                  vg_error *err)
{
    static const list_spec spec = {
        "transactions", "vigil_tx_json", "ingested_at", {"customer_id", NULL}};
    const char *v[] = {customer_id};
    return store_list(c, &spec, v, after, limit, out, err);
}

vg_status alert_get(PGconn *c, const char *id, char **out, vg_error *err)
{
    const char *p[] = {id};
    return db_json(c, "SELECT vigil_alert_json(a)::text FROM alerts a WHERE id = $1", 1, p, "alert",
                   out, err);
}

vg_status alert_list(PGconn *c, const char *status, const char *customer_id, const char *rule_id,
                     const char *after, int limit, char **out, vg_error *err)
{
    static const list_spec spec = {
        "alerts", "vigil_alert_json", "created_at", {"status", "customer_id", "rule_id", NULL}};
    const char *v[] = {status, customer_id, rule_id};
    return store_list(c, &spec, v, after, limit, out, err);
}

vg_status kyc_list(PGconn *c, const char *status, const char *customer_id, const char *kind,
                   const char *after, int limit, char **out, vg_error *err)
{
    static const list_spec spec = {
        "kyc_tasks", "vigil_kyc_json", "created_at", {"status", "customer_id", "kind", NULL}};
    const char *v[] = {status, customer_id, kind};
    return store_list(c, &spec, v, after, limit, out, err);
}

/* A workflow step on one row: lock it, check the transition, update it. */
typedef struct transition_spec {
    const char *what;       /* "alert" */
    const char *lock_sql;   /* $1 = id → status */
    const char *update_sql; /* $1 id, $2 status, $3 note, $4 actor, $5 extra → json text */
    int nparams;            /* 5 when update_sql uses $5 */
    int (*allowed)(const char *from, const char *to);
} transition_spec;

/* The step itself, inside the caller's transaction. */
static vg_status transition_in_tx(PGconn *c, const transition_spec *spec, const char *id,
                                  const char *to, const char *note, const char *actor,
                                  const char *extra, char **out, vg_error *err)
{
    const char *p[] = {id};
    PGresult *r = db_exec(c, spec->lock_sql, 1, p, err);
    if (!r)
        return err ? err->code : VG_E_INTERNAL;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return vg_fail(err, VG_E_NOT_FOUND, NULL, "%s %s not found", spec->what, id);
    }
    char from[32];
    snprintf(from, sizeof from, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    if (!spec->allowed(from, to))
        return vg_fail(err, VG_E_CONFLICT, "status", "%s is '%s'; it cannot move to '%s'",
                       spec->what, from, to);
    if (!out) /* a check only */
        return VG_OK;
    const char *u[] = {id, to, note, actor, extra};
    return db_json(c, spec->update_sql, spec->nparams, u, spec->what, out, err);
}

static vg_status transition(PGconn *c, const transition_spec *spec, const char *id, const char *to,
                            const char *note, const char *actor, const char *extra, char **out,
                            vg_error *err)
{
    vg_status st = db_begin(c, err);
    if (st != VG_OK)
        return st;
    st = transition_in_tx(c, spec, id, to, note, actor, extra, out, err);
    if (st == VG_OK)
        st = db_commit(c, err);
    if (st == VG_OK)
        return VG_OK;
    free(*out);
    *out = NULL;
    db_rollback(c);
    return st;
}

static const transition_spec alert_spec = {
    "alert", "SELECT status FROM alerts WHERE id = $1 FOR UPDATE",
    "UPDATE alerts SET status = $2, disposition = $5, note = coalesce($3, note),"
    " actor = $4, updated_at = now() WHERE id = $1 RETURNING vigil_alert_json(alerts)::text",
    5, alert_transition_ok};

vg_status alert_transition(PGconn *c, const char *id, const char *to, const char *disposition,
                           const char *note, const char *actor, char **out, vg_error *err)
{
    *out = NULL;
    return transition(c, &alert_spec, id, to, note, actor, disposition, out, err);
}

vg_status alert_transition_in_tx(PGconn *c, const char *id, const char *to, const char *disposition,
                                 const char *note, const char *actor, char **out, vg_error *err)
{
    if (out)
        *out = NULL;
    return transition_in_tx(c, &alert_spec, id, to, note, actor, disposition, out, err);
}

vg_status kyc_transition(PGconn *c, const char *id, const char *to, const char *note,
                         const char *actor, char **out, vg_error *err)
{
    static const transition_spec spec = {
        "KYC task", "SELECT status FROM kyc_tasks WHERE id = $1 FOR UPDATE",
        "UPDATE kyc_tasks SET status = $2, note = coalesce($3, note), actor = $4,"
        " updated_at = now() WHERE id = $1 RETURNING vigil_kyc_json(kyc_tasks)::text",
        4, kyc_transition_ok};
    *out = NULL;
    return transition(c, &spec, id, to, note, actor, NULL, out, err);
}

vg_status rules_list(PGconn *c, char **out, vg_error *err)
{
    return db_json(c,
                   "SELECT jsonb_build_object('items', coalesce(jsonb_agg(vigil_rule_json(r)"
                   " ORDER BY r.id), '[]'))::text FROM rules r",
                   0, NULL, "rules", out, err);
}

/* Checks one parameter against the current value's type: amounts are
 * decimal strings, counts and windows positive integers. */
static vg_status check_param(const char *key, const json_t *cur, const json_t *val, vg_error *err)
{
    char field[160], canon[MONEY_STR_MAX];
    snprintf(field, sizeof field, "params.%s", key);
    if (json_is_string(cur)) {
        if (!json_is_string(val))
            return vg_fail(err, VG_E_INVALID, field, "must be a decimal string, e.g. \"10000\"");
        return money_parse(json_string_value(val), 4, field, canon, NULL, err);
    }
    if (!json_is_integer(val) || json_integer_value(val) < 1 || json_integer_value(val) > 1000000)
        return vg_fail(err, VG_E_INVALID, field, "must be an integer from 1 to 1000000");
    if (strcmp(key, "lower_pct") == 0 || strcmp(key, "out_pct") == 0) {
        if (json_integer_value(val) > 100)
            return vg_fail(err, VG_E_INVALID, field, "must be a percentage from 1 to 100");
    }
    return VG_OK;
}

/* Locks rule `id`, merges `patch` into its params (each key must exist and
 * keep its type) and hands out the merged params (compact, sorted keys) and
 * the current version. Inside the caller's transaction. */
static vg_status rule_merge(PGconn *c, const char *id, const json_t *patch, char **params_text,
                            long *version, vg_error *err)
{
    *params_text = NULL;
    const char *p[] = {id};
    PGresult *r =
        db_exec(c, "SELECT params::text, version FROM rules WHERE id = $1 FOR UPDATE", 1, p, err);
    if (!r)
        return err ? err->code : VG_E_INTERNAL;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return vg_fail(err, VG_E_NOT_FOUND, NULL, "rule %s not found", id);
    }
    json_t *params = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
    *version = atol(PQgetvalue(r, 0, 1));
    PQclear(r);
    vg_status st = VG_OK;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)patch, key, val)
    {
        json_t *cur = json_object_get(params, key);
        if (!cur) {
            char field[160];
            snprintf(field, sizeof field, "params.%s", key);
            st = vg_fail(err, VG_E_INVALID, field, "rule %s has no parameter '%s'", id, key);
            break;
        }
        if ((st = check_param(key, cur, val, err)) != VG_OK)
            break;
        json_object_set(params, key, val);
    }
    if (st == VG_OK && !(*params_text = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS)))
        st = vg_fail(err, VG_E_INTERNAL, NULL, "could not encode the rule's parameters");
    json_decref(params);
    return st;
}

vg_status rule_check(PGconn *c, const char *id, const json_t *patch, long *version, vg_error *err)
{
    char *params_text = NULL;
    vg_status st = rule_merge(c, id, patch, &params_text, version, err);
    free(params_text);
    return st;
}

vg_status rule_update_in_tx(PGconn *c, const char *id, const json_t *patch, const char *mode,
                            const char *severity, const char *actor, long expect_version,
                            char **out, vg_error *err)
{
    *out = NULL;
    char *params_text = NULL;
    long version = 0;
    vg_status st = rule_merge(c, id, patch, &params_text, &version, err);
    if (st == VG_OK && expect_version >= 0 && version != expect_version)
        st = vg_fail(err, VG_E_CONFLICT, "version",
                     "rule %s is at version %ld, the change was proposed against version %ld; "
                     "reject it and propose again",
                     id, version, expect_version);
    if (st == VG_OK) {
        const char *u[] = {id, params_text, mode, severity, actor};
        st = db_json(c,
                     "UPDATE rules SET params = $2::jsonb, mode = coalesce($3, mode),"
                     " severity = coalesce($4, severity), version = version + 1,"
                     " updated_at = now(), updated_by = $5 WHERE id = $1"
                     " RETURNING vigil_rule_json(rules)::text",
                     5, u, "rule", out, err);
    }
    free(params_text);
    return st;
}
