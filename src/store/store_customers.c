/*
 * store_customers.c — customer writes and reads.
 *
 * Risk is computed in C (domain/risk.c, pure) from inputs gathered here in
 * one query; the result, its factors and the KYC tasks it implies are
 * written in the same transaction as the change that caused it.
 */
#include "store/store_customers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/db.h"
#include "store/store_list.h"
#include "util/log.h"

#define ST_CHECK(expr)                                                                             \
    do {                                                                                           \
        if ((st = (expr)) != VG_OK)                                                                \
            goto end;                                                                              \
    } while (0)

static const char *opt(int has, const char *value)
{
    return has && value[0] ? value : NULL;
}

/* Opens tasks of `kinds` for the customer in one statement (so they give one
 * aml.kyc.tasks.created event), skipping kinds already open. */
static vg_status open_tasks(PGconn *c, const char *id, const char *kinds, const char *reason,
                            int due_days, vg_error *err)
{
    char days[16];
    snprintf(days, sizeof days, "%d", due_days);
    const char *p[] = {id, kinds, reason, days};
    return db_run(c,
                  "INSERT INTO kyc_tasks (customer_id, kind, reason, due_at) "
                  "SELECT $1, k, $3, now() + make_interval(days => $4::int) "
                  "FROM unnest(string_to_array($2, ',')) WITH ORDINALITY AS x(k, o) "
                  "WHERE NOT EXISTS (SELECT 1 FROM kyc_tasks t WHERE t.customer_id = $1 "
                  "  AND t.kind = x.k AND t.status IN ('open', 'in_progress')) ORDER BY o",
                  4, p, err);
}

static const char EDD_TASKS[] = "source_of_funds,source_of_wealth,senior_management_approval";
static const char ONBOARDING_TASKS[] =
    "identity_verification,address_verification,sanctions_pep_screening";

vg_status risk_reassess_many(PGconn *c, int n, const char *const *ids, const char *const *reasons,
                             const risk_config *rcfg, const char *actor, int force, int *changed,
                             vg_error *err)
{
    if (changed)
        *changed = 0;
    db_array want;
    db_array_init(&want);
    for (int i = 0; i < n; i++)
        db_array_add(&want, ids[i]);
    /* Locked in id order, so two reassessments (or a reassessment and an
     * ingest's rule pass, which locks its customers the same way) never
     * wait for each other in a cycle. NO KEY UPDATE, not UPDATE: the score
     * changes no key, and NO KEY UPDATE does not conflict with the KEY
     * SHARE locks that inserts referencing the customer take for their
     * foreign keys (a transaction, an alert), in whatever order those come;
     * FOR UPDATE would, and with several customers held that can deadlock. */
    const char *p[] = {want.text};
    static db_stmt inputs = DB_STMT(
        "SELECT array_position($1::uuid[], c.id), c.country IS NOT NULL,"
        " EXISTS (SELECT 1 FROM high_risk_countries h WHERE h.country = c.country),"
        " c.pep, c.customer_type = 'business',"
        " coalesce(date_part('year', age(c.date_of_birth))::int, -1),"
        " (SELECT count(*) FROM alerts a WHERE a.customer_id = c.id AND a.status <> 'closed'),"
        " (SELECT count(*) FROM alerts a WHERE a.customer_id = c.id"
        "   AND a.disposition = 'escalated'),"
        " (SELECT count(*) FROM alerts a WHERE a.customer_id = c.id"
        "   AND a.disposition = 'sar_filed'),"
        " c.risk_score, c.risk_level, c.risk_version "
        "FROM customers c WHERE c.id = ANY ($1::uuid[]) ORDER BY c.id FOR NO KEY UPDATE",
        1);
    PGresult *r = db_exec_stmt(c, &inputs, p, err);
    db_array_free(&want);
    if (!r)
        return err ? err->code : VG_E_INTERNAL;
    vg_status st = VG_OK;
    char *seen = calloc((size_t)n + 1, 1);
    int *rise = calloc((size_t)n + 1, sizeof *rise);
    if (!seen || !rise)
        abort();
    db_array a_id, a_version, a_score, a_level, a_factors, a_reason;
    db_array *arrays[] = {&a_id, &a_version, &a_score, &a_level, &a_factors, &a_reason};
    for (size_t k = 0; k < sizeof arrays / sizeof arrays[0]; k++)
        db_array_init(arrays[k]);
    for (int row = 0; row < PQntuples(r) && st == VG_OK; row++) {
        int i = atoi(PQgetvalue(r, row, 0)) - 1;
        if (i < 0 || i >= n || seen[i]) {
            st = vg_fail(err, VG_E_INTERNAL, NULL, "risk: customer ids must be distinct");
            break;
        }
        seen[i] = 1;
        risk_input in = {
            .has_country = PQgetvalue(r, row, 1)[0] == 't',
            .country_high_risk = PQgetvalue(r, row, 2)[0] == 't',
            .pep = PQgetvalue(r, row, 3)[0] == 't',
            .is_business = PQgetvalue(r, row, 4)[0] == 't',
            .age_years = atoi(PQgetvalue(r, row, 5)),
            .open_alerts = atoi(PQgetvalue(r, row, 6)),
            .escalated_alerts = atoi(PQgetvalue(r, row, 7)),
            .sar_filed = atoi(PQgetvalue(r, row, 8)),
        };
        int old_score = atoi(PQgetvalue(r, row, 9));
        int old_level = risk_level_parse(PQgetvalue(r, row, 10));
        int old_version = atoi(PQgetvalue(r, row, 11));
        risk_result res;
        risk_score(rcfg, &in, &res);
        if (!force && res.score == old_score && (int)res.level == old_level)
            continue;
        json_t *whole = risk_result_json(&res);
        char *factors = json_dumps(json_object_get(whole, "factors"), JSON_COMPACT);
        json_decref(whole);
        if (!factors) {
            st = vg_fail(err, VG_E_INTERNAL, NULL, "could not encode risk factors");
            break;
        }
        char version[16], score[16];
        snprintf(version, sizeof version, "%d", old_version + 1);
        snprintf(score, sizeof score, "%d", res.score);
        db_array_add(&a_id, ids[i]);
        db_array_add(&a_version, version);
        db_array_add(&a_score, score);
        db_array_add(&a_level, risk_level_name(res.level));
        db_array_add(&a_factors, factors);
        db_array_add(&a_reason, reasons[i]);
        free(factors);
        rise[i] = res.level == RISK_HIGH && old_level != RISK_HIGH;
    }
    PQclear(r);
    for (int i = 0; i < n && st == VG_OK; i++)
        if (!seen[i])
            st = vg_fail(err, VG_E_NOT_FOUND, NULL, "customer %s not found", ids[i]);
    /* One statement writes every new assessment (each row emits its
     * aml.customer.risk), one updates every customer, in input order. */
    if (st == VG_OK && a_id.n) {
        const char *ins[] = {a_id.text,      a_version.text, a_score.text,       a_level.text,
                             a_factors.text, a_reason.text,  RISK_MODEL_VERSION, actor};
        static db_stmt assess = DB_STMT(
            "INSERT INTO risk_assessments (customer_id, version, score, level, factors,"
            " model_version, reason, actor)"
            " SELECT u.id, u.version, u.score, u.level, u.factors::jsonb, $7, u.reason, $8"
            " FROM unnest($1::uuid[], $2::int[], $3::int[], $4::text[], $5::text[], $6::text[])"
            "   WITH ORDINALITY AS u (id, version, score, level, factors, reason, o)"
            " ORDER BY u.o",
            8);
        st = db_run_stmt(c, &assess, ins, err);
        const char *upd[] = {a_id.text, a_score.text, a_level.text, a_version.text};
        static db_stmt update =
            DB_STMT("UPDATE customers c SET risk_score = u.score, risk_level = u.level,"
                    " risk_version = u.version"
                    " FROM unnest($1::uuid[], $2::int[], $3::text[], $4::int[])"
                    "   AS u (id, score, level, version) WHERE c.id = u.id",
                    4);
        if (st == VG_OK)
            st = db_run_stmt(c, &update, upd, err);
    }
    for (int i = 0; i < n && st == VG_OK; i++)
        if (rise[i])
            st = open_tasks(c, ids[i], EDD_TASKS, "enhanced_due_diligence",
                            risk_kyc_due_days(RISK_HIGH), err);
    if (st == VG_OK && changed)
        *changed = a_id.n;
    for (size_t k = 0; k < sizeof arrays / sizeof arrays[0]; k++)
        db_array_free(arrays[k]);
    free(seen);
    free(rise);
    return st;
}

vg_status risk_reassess(PGconn *c, const char *id, const risk_config *rcfg, const char *reason,
                        const char *actor, int force, int *changed, vg_error *err)
{
    return risk_reassess_many(c, 1, &id, &reason, rcfg, actor, force, changed, err);
}

/* The customer's id when its external_id is already known, else "" . */
static vg_status find_by_external_id(PGconn *c, const char *ext, char id[37], vg_error *err)
{
    id[0] = '\0';
    const char *p[] = {ext};
    PGresult *r = db_exec(c, "SELECT id FROM customers WHERE external_id = $1", 1, p, err);
    if (!r)
        return err ? err->code : VG_E_INTERNAL;
    if (PQntuples(r) == 1)
        snprintf(id, 37, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return VG_OK;
}

vg_status customers_create(PGconn *c, const customer_input *in, const risk_config *rcfg,
                           const char *actor, char **out, int *duplicate, vg_error *err)
{
    vg_status st;
    char id[37] = "";
    *out = NULL;
    *duplicate = 0;
    ST_CHECK(db_begin(c, err));
    const char *p[] = {in->full_name,
                       opt(in->has_email, in->email),
                       opt(in->has_country, in->country),
                       opt(in->has_date_of_birth, in->date_of_birth),
                       in->has_customer_type ? in->customer_type : "individual",
                       in->has_pep && in->pep ? "true" : "false",
                       opt(in->has_external_id, in->external_id)};
    PGresult *r = db_exec(c,
                          "INSERT INTO customers (full_name, email, country, date_of_birth,"
                          " customer_type, pep, external_id) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                          " ON CONFLICT (external_id) DO NOTHING RETURNING id",
                          7, p, err);
    if (!r) {
        st = err ? err->code : VG_E_INTERNAL;
        goto end;
    }
    if (PQntuples(r) == 1)
        snprintf(id, sizeof id, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);

    if (!id[0]) { /* idempotent replay of an earlier create */
        db_rollback(c);
        ST_CHECK(find_by_external_id(c, in->external_id, id, err));
        *duplicate = 1;
        return customers_get(c, id, out, err);
    }
    ST_CHECK(risk_reassess(c, id, rcfg, "onboarding", actor, 1, NULL, err));
    /* The onboarding tasks are due sooner for riskier customers. */
    const char *q[] = {id};
    r = db_exec(c, "SELECT risk_level FROM customers WHERE id = $1", 1, q, err);
    if (!r) {
        st = err ? err->code : VG_E_INTERNAL;
        goto end;
    }
    int level = risk_level_parse(PQgetvalue(r, 0, 0));
    PQclear(r);
    ST_CHECK(open_tasks(c, id, ONBOARDING_TASKS, "onboarding", risk_kyc_due_days((risk_level)level),
                        err));
    ST_CHECK(customers_get(c, id, out, err));
    ST_CHECK(db_commit(c, err));
    return VG_OK;
end:
    db_rollback(c);
    free(*out);
    *out = NULL;
    return st;
}

vg_status customers_update(PGconn *c, const char *id, const customer_input *in,
                           const risk_config *rcfg, const char *actor, char **out, vg_error *err)
{
    vg_status st;
    *out = NULL;
    ST_CHECK(db_begin(c, err));
    /* Each column is set only when the patch names it ($N_set = true). */
    const char *p[] = {id,
                       in->has_full_name ? "t" : "f",
                       in->full_name,
                       in->has_email ? "t" : "f",
                       opt(in->has_email, in->email),
                       in->has_country ? "t" : "f",
                       opt(in->has_country, in->country),
                       in->has_date_of_birth ? "t" : "f",
                       opt(in->has_date_of_birth, in->date_of_birth),
                       in->has_customer_type ? "t" : "f",
                       in->customer_type,
                       in->has_pep ? "t" : "f",
                       in->pep ? "t" : "f"};
    PGresult *r =
        db_exec(c,
                "UPDATE customers SET"
                " full_name = CASE WHEN $2::bool THEN $3 ELSE full_name END,"
                " email = CASE WHEN $4::bool THEN $5 ELSE email END,"
                " country = CASE WHEN $6::bool THEN $7 ELSE country END,"
                " date_of_birth = CASE WHEN $8::bool THEN $9::date ELSE date_of_birth END,"
                " customer_type = CASE WHEN $10::bool THEN $11 ELSE customer_type END,"
                " pep = CASE WHEN $12::bool THEN $13::bool ELSE pep END,"
                " updated_at = now() WHERE id = $1 RETURNING id",
                13, p, err);
    if (!r) {
        st = err ? err->code : VG_E_INTERNAL;
        goto end;
    }
    int found = PQntuples(r) == 1;
    PQclear(r);
    if (!found) {
        st = vg_fail(err, VG_E_NOT_FOUND, NULL, "customer %s not found", id);
        goto end;
    }
    ST_CHECK(risk_reassess(c, id, rcfg, "customer_updated", actor, 0, NULL, err));
    ST_CHECK(customers_get(c, id, out, err));
    ST_CHECK(db_commit(c, err));
    return VG_OK;
end:
    db_rollback(c);
    free(*out);
    *out = NULL;
    return st;
}

vg_status customers_get(PGconn *c, const char *id, char **out, vg_error *err)
{
    const char *p[] = {id};
    return db_json(c, "SELECT vigil_customer_detail($1)::text", 1, p, "customer", out, err);
}

vg_status customers_list(PGconn *c, const char *after, int limit, char **out, vg_error *err)
{
    static const list_spec spec = {"customers", "vigil_customer_json", "created_at", {NULL}};
    return store_list(c, &spec, NULL, after, limit, out, err);
}

vg_status customers_risk_history(PGconn *c, const char *id, char **out, vg_error *err)
{
    const char *p[] = {id};
    return db_json(
        c,
        "SELECT jsonb_build_object('customer_id', c.id, 'current',"
        " jsonb_build_object('score', c.risk_score, 'level', c.risk_level),"
        " 'items', coalesce((SELECT jsonb_agg(vigil_risk_json(r) ORDER BY r.version DESC)"
        " FROM risk_assessments r WHERE r.customer_id = c.id), '[]'))::text"
        " FROM customers c WHERE c.id = $1",
        1, p, "customer", out, err);
}
