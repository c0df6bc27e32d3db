/*
 * test_four_eyes.c — maker-checker: closing an alert as escalated or
 * sar_filed, and changing a rule, take effect only when a second person
 * approves.
 *
 * Each test checks the HTTP answers, the rows (the alert or rule unchanged
 * until approval, the approval's status) and the events in the outbox, in
 * order. `vigil serve` runs with VIGIL_ROLES=api so the events stay in the
 * outbox where the triggers wrote them.
 */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

typedef struct fixture {
    h_env *env;
    /* "it-admin-1" is env->admin_key */
    char admin2[256], analyst1[256], analyst2[256], auditor[256], ingest[256];
    char analyst1_again[256]; /* another key of the person "analyst-one" */
} fixture;

static fixture *F;

/* `vigil keys create --role ROLE --name NAME`; the key is the last line. */
static void named_key(h_env *env, const char *role, const char *name, char out[256])
{
    assert_int_equal(h_key_create_named(env, role, name, out, 256), 0);
    assert_true(strncmp(out, "vgl_", 4) == 0);
}

static int setup(void **state)
{
    setenv("VIGIL_ROLES", "api", 1);
    fixture *f = calloc(1, sizeof *f);
    if (!f || !(f->env = h_setup(0))) {
        free(f);
        return -1;
    }
    if (h_key_create(f->env, "admin", f->admin2, sizeof f->admin2) != 0 ||
        h_key_create(f->env, "analyst", f->analyst2, sizeof f->analyst2) != 0 ||
        h_key_create(f->env, "auditor", f->auditor, sizeof f->auditor) != 0 ||
        h_key_create(f->env, "ingest", f->ingest, sizeof f->ingest) != 0) {
        h_teardown(f->env);
        free(f);
        return -1;
    }
    *state = F = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f)
        h_teardown(f->env);
    free(f);
    return 0;
}

static long long outbox_mark(h_env *env)
{
    long long m = h_db_count(env, "SELECT coalesce(max(id), 0) FROM outbox");
    assert_true(m >= 0);
    return m;
}

/* The event types written after `mark`, comma-separated in outbox order. */
static void assert_events(h_env *env, long long mark, const char *expect)
{
    char m[32];
    snprintf(m, sizeof m, "%lld", mark);
    char *got = h_db_text(env,
                          "SELECT coalesce(string_agg(event_type, ',' ORDER BY id), '')"
                          " FROM outbox WHERE id > $1",
                          m);
    assert_non_null(got);
    if (strcmp(got, expect) != 0)
        fprintf(stderr, "events: got '%s', expected '%s'\n", got, expect);
    assert_string_equal(got, expect);
    free(got);
}

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* One request; fails the test on a transport error. */
static long req(const char *method, const char *key, const char *body, h_resp *r, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));
static long req(const char *method, const char *key, const char *body, h_resp *r, const char *fmt,
                ...)
{
    char path[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    assert_int_equal(h_http(F->env, method, path, key, body, -1, NULL, r), 0);
    if (r->status >= 400) /* for the log of a failing run */
        fprintf(stderr, "%s %s: %ld %s\n", method, path, r->status, r->body);
    return r->status;
}

/* Asserts a problem+json answer with `status`; frees r. */
static void expect_problem(h_resp *r, long status, const char *detail_part)
{
    if (r->status != status)
        fprintf(stderr, "got %ld: %s\n", r->status, r->body);
    assert_int_equal(r->status, status);
    assert_true(strncmp(r->content_type, "application/problem+json", 24) == 0);
    if (detail_part) {
        const char *d = jstr(r->json, "detail");
        assert_non_null(d);
        if (!strstr(d, detail_part))
            fprintf(stderr, "detail '%s' lacks '%s'\n", d, detail_part);
        assert_non_null(strstr(d, detail_part));
    }
    h_resp_free(r);
}

/* A fresh alert under investigation; its id into `id`. */
static void investigating_alert(const char *name, char id[64])
{
    char cust[64], ext[64], body[512];
    h_resp t;
    snprintf(body, sizeof body, "{\"full_name\": \"%s\", \"country\": \"GB\"}", name);
    assert_int_equal(req("POST", F->env->admin_key, body, &t, "/customers"), 201);
    snprintf(cust, sizeof cust, "%s", jstr(t.json, "id"));
    h_resp_free(&t);
    static int n;
    snprintf(ext, sizeof ext, "4eyes-%d", ++n);
    snprintf(body, sizeof body,
             "{\"external_id\": \"%s\", \"customer_id\": \"%s\", \"amount\": \"25000.00\","
             " \"currency\": \"USD\", \"direction\": \"in\", \"channel\": \"cash\","
             " \"occurred_at\": \"2026-01-20T10:00:00Z\"}",
             ext, cust);
    assert_int_equal(req("POST", F->env->admin_key, body, &t, "/transactions"), 201);
    h_resp_free(&t);
    char *a = h_db_text(F->env, "SELECT id::text FROM alerts WHERE customer_id = $1", cust);
    assert_non_null(a);
    snprintf(id, 64, "%s", a);
    free(a);
    h_resp r;
    assert_int_equal(
        req("PATCH", F->analyst2, "{\"status\": \"investigating\"}", &r, "/alerts/%s", id), 200);
    h_resp_free(&r);
}

/* PATCHes a close that needs approval; returns the approval id in `ap`. */
static void propose_close(const char *key, const char *alert, const char *disposition, char ap[64])
{
    char body[256];
    snprintf(body, sizeof body,
             "{\"status\": \"closed\", \"disposition\": \"%s\", \"note\": \"case 4E-%s\"}",
             disposition, disposition);
    h_resp r;
    assert_int_equal(req("PATCH", key, body, &r, "/alerts/%s", alert), 202);
    assert_string_equal(jstr(r.json, "status"), "pending");
    assert_string_equal(jstr(r.json, "kind"), "alert_close");
    assert_string_equal(jstr(r.json, "target_id"), alert);
    assert_string_equal(jstr(json_object_get(r.json, "payload"), "disposition"), disposition);
    snprintf(ap, 64, "%s", jstr(r.json, "id"));
    char loc[128], want[128];
    assert_int_equal(h_resp_header(&r, "Location", loc, sizeof loc), 0);
    snprintf(want, sizeof want, "/approvals/%s", ap);
    assert_string_equal(loc, want);
    h_resp_free(&r);
}

static void alert_close_needs_a_second_person(void **state)
{
    (void)state;
    h_env *env = F->env;
    named_key(env, "analyst", "analyst-one", F->analyst1);
    named_key(env, "analyst", "analyst-one", F->analyst1_again);
    char alert[64], ap[64];
    investigating_alert("Four Eyes One", alert);

    long long mark = outbox_mark(env);
    propose_close(F->analyst1, alert, "sar_filed", ap);
    /* Nothing changed yet but the proposal and its event. */
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM alerts WHERE id = $1"
                                " AND status = 'investigating' AND disposition IS NULL",
                                alert),
                     1);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM approvals WHERE id = $1 AND status ="
                                " 'pending' AND proposed_by = 'key:analyst-one'",
                                ap),
                     1);
    assert_events(env, mark, "aml.approval.proposed");

    h_resp r;
    /* One pending proposal per alert. */
    req("PATCH", F->analyst2, "{\"status\": \"closed\", \"disposition\": \"escalated\"}", &r,
        "/alerts/%s", alert);
    expect_problem(&r, 409, ap);
    /* The proposer, with the same key or another key of the same name. */
    req("POST", F->analyst1, NULL, &r, "/approvals/%s/approve", ap);
    expect_problem(&r, 403, "another person");
    req("POST", F->analyst1_again, NULL, &r, "/approvals/%s/approve", ap);
    expect_problem(&r, 403, "same name");
    /* Roles that may not decide. */
    req("POST", F->auditor, NULL, &r, "/approvals/%s/approve", ap);
    expect_problem(&r, 403, NULL);
    req("POST", F->ingest, NULL, &r, "/approvals/%s/approve", ap);
    expect_problem(&r, 403, NULL);
    assert_events(env, mark, "aml.approval.proposed");
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM alerts WHERE id = $1"
                                " AND status = 'investigating'",
                                alert),
                     1);

    /* Anyone may read the proposal. */
    assert_int_equal(
        req("GET", F->auditor, NULL, &r, "/approvals?status=pending&target_id=%s", alert), 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    assert_string_equal(jstr(json_array_get(json_object_get(r.json, "items"), 0), "id"), ap);
    h_resp_free(&r);

    /* A second analyst approves: applied in the same transaction. */
    assert_int_equal(req("POST", F->analyst2, "{\"note\": \"agreed, SAR filed\"}", &r,
                         "/approvals/%s/approve", ap),
                     200);
    assert_string_equal(jstr(r.json, "status"), "approved");
    assert_string_equal(jstr(r.json, "decision_note"), "agreed, SAR filed");
    const json_t *result = json_object_get(r.json, "result");
    assert_string_equal(jstr(result, "status"), "closed");
    assert_string_equal(jstr(result, "disposition"), "sar_filed");
    assert_string_equal(jstr(result, "actor"), "key:analyst-one");
    h_resp_free(&r);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM alerts WHERE id = $1 AND status = 'closed'"
                                " AND disposition = 'sar_filed' AND note = 'case 4E-sar_filed'",
                                alert),
                     1);
    assert_events(env, mark, "aml.approval.proposed,aml.approval.approved,aml.alert.updated");
    char m[32];
    snprintf(m, sizeof m, "%lld", mark);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM outbox WHERE id > $1 AND event_type ="
                                " 'aml.approval.approved' AND subject = $2 AND payload->'data'"
                                "->>'decided_by' LIKE 'key:it-analyst-%'",
                                m, ap),
                     1);

    /* Decided once. */
    req("POST", F->admin2, NULL, &r, "/approvals/%s/approve", ap);
    expect_problem(&r, 409, "already approved");
    req("POST", F->admin2, "{\"note\": \"no\"}", &r, "/approvals/%s/reject", ap);
    expect_problem(&r, 409, "already approved");
}

static void rejected_proposal_changes_nothing(void **state)
{
    (void)state;
    h_env *env = F->env;
    char alert[64], ap[64];
    investigating_alert("Four Eyes Two", alert);
    long long mark = outbox_mark(env);
    propose_close(env->admin_key, alert, "escalated", ap);

    h_resp r;
    req("POST", F->admin2, NULL, &r, "/approvals/%s/reject", ap);
    expect_problem(&r, 422, NULL); /* a rejection says why */
    req("POST", F->admin2, "{\"note\": \"x\", \"extra\": 1}", &r, "/approvals/%s/reject", ap);
    expect_problem(&r, 422, NULL);
    assert_int_equal(req("POST", F->admin2, "{\"note\": \"not enough evidence\"}", &r,
                         "/approvals/%s/reject", ap),
                     200);
    assert_string_equal(jstr(r.json, "status"), "rejected");
    assert_null(json_object_get(r.json, "result"));
    h_resp_free(&r);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM alerts WHERE id = $1"
                                " AND status = 'investigating'",
                                alert),
                     1);
    assert_events(env, mark, "aml.approval.proposed,aml.approval.rejected");
    req("POST", F->analyst2, NULL, &r, "/approvals/%s/approve", ap);
    expect_problem(&r, 409, "already rejected");

    /* Closing without four eyes stays direct. */
    assert_int_equal(req("PATCH", F->analyst2,
                         "{\"status\": \"closed\", \"disposition\": \"false_positive\"}", &r,
                         "/alerts/%s", alert),
                     200);
    assert_string_equal(jstr(r.json, "status"), "closed");
    h_resp_free(&r);
    /* A proposal on an alert that cannot close is refused as the move would be. */
    req("PATCH", F->analyst2, "{\"status\": \"closed\", \"disposition\": \"sar_filed\"}", &r,
        "/alerts/%s", alert);
    expect_problem(&r, 409, "cannot move");
}

static void stale_proposal_is_refused(void **state)
{
    (void)state;
    h_env *env = F->env;
    char alert[64], ap[64];
    investigating_alert("Four Eyes Three", alert);
    propose_close(F->analyst2, alert, "sar_filed", ap);
    /* Meanwhile someone closes the alert directly. */
    h_resp r;
    assert_int_equal(req("PATCH", env->admin_key,
                         "{\"status\": \"closed\", \"disposition\": \"no_action\"}", &r,
                         "/alerts/%s", alert),
                     200);
    h_resp_free(&r);
    long long mark = outbox_mark(env);
    req("POST", F->admin2, NULL, &r, "/approvals/%s/approve", ap);
    expect_problem(&r, 409, "cannot move");
    /* Nothing of the approval was kept. */
    assert_events(env, mark, "");
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM approvals WHERE id = $1"
                                " AND status = 'pending' AND decided_at IS NULL",
                                ap),
                     1);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM alerts WHERE id = $1"
                                " AND disposition = 'no_action'",
                                alert),
                     1);
    /* The proposer withdraws it. */
    assert_int_equal(
        req("POST", F->analyst2, "{\"note\": \"overtaken\"}", &r, "/approvals/%s/reject", ap), 200);
    h_resp_free(&r);
    assert_events(env, mark, "aml.approval.rejected");
}

static void rule_change_needs_another_admin(void **state)
{
    (void)state;
    h_env *env = F->env;
    char *before = h_db_text(env, "SELECT version || ' ' || mode FROM rules WHERE id = 'velocity'");
    assert_non_null(before);
    long v0 = atol(before);
    long long mark = outbox_mark(env);
    h_resp r;
    /* Analysts may not even propose. */
    req("PATCH", F->analyst2, "{\"mode\": \"shadow\"}", &r, "/rules/velocity");
    expect_problem(&r, 403, NULL);
    /* Invalid changes are refused at once, not at approval. */
    req("PATCH", env->admin_key, "{\"params\": {\"nope\": 1}}", &r, "/rules/velocity");
    expect_problem(&r, 422, NULL);
    req("PATCH", env->admin_key, "{\"mode\": \"shadow\"}", &r, "/rules/no_such_rule");
    expect_problem(&r, 404, NULL);
    assert_events(env, mark, "");

    assert_int_equal(req("PATCH", env->admin_key,
                         "{\"mode\": \"shadow\", \"params\": {\"max_count\": 30}}", &r,
                         "/rules/velocity"),
                     202);
    char ap[64];
    snprintf(ap, sizeof ap, "%s", jstr(r.json, "id"));
    assert_string_equal(jstr(r.json, "kind"), "rule_change");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(r.json, "payload"), "base_version")),
        v0);
    h_resp_free(&r);
    {
        char *now =
            h_db_text(env, "SELECT version || ' ' || mode FROM rules WHERE id = 'velocity'");
        assert_non_null(now);
        assert_string_equal(now, before);
        free(now);
    }
    req("POST", F->analyst2, NULL, &r, "/approvals/%s/approve", ap);
    expect_problem(&r, 403, "admin");
    req("POST", env->admin_key, NULL, &r, "/approvals/%s/approve", ap);
    expect_problem(&r, 403, "another person");
    req("POST", F->analyst2, "{\"note\": \"no\"}", &r, "/approvals/%s/reject", ap);
    expect_problem(&r, 403, "admin");

    assert_int_equal(req("POST", F->admin2, NULL, &r, "/approvals/%s/approve", ap), 200);
    const json_t *rule = json_object_get(r.json, "result");
    assert_string_equal(jstr(rule, "mode"), "shadow");
    assert_int_equal(json_integer_value(json_object_get(rule, "version")), v0 + 1);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(rule, "params"), "max_count")), 30);
    assert_string_equal(jstr(rule, "updated_by"), "key:it-admin-1");
    h_resp_free(&r);
    assert_events(env, mark, "aml.approval.proposed,aml.approval.approved,aml.rule.changed");

    /* Stale: the rule moved on after the proposal. */
    assert_int_equal(req("PATCH", env->admin_key, "{\"mode\": \"active\"}", &r, "/rules/velocity"),
                     202);
    snprintf(ap, sizeof ap, "%s", jstr(r.json, "id"));
    h_resp_free(&r);
    assert_int_equal(h_db_exec(env, "UPDATE rules SET version = version + 1 WHERE id = 'velocity'"),
                     0);
    req("POST", F->admin2, NULL, &r, "/approvals/%s/approve", ap);
    expect_problem(&r, 409, "version");
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM rules WHERE id = 'velocity'"
                                     " AND mode = 'shadow'"),
                     1);
    assert_int_equal(
        req("POST", env->admin_key, "{\"note\": \"stale\"}", &r, "/approvals/%s/reject", ap), 200);
    h_resp_free(&r);
    free(before);
}

static void approvals_list_and_refusals(void **state)
{
    (void)state;
    h_resp r;
    assert_int_equal(req("GET", F->auditor, NULL, &r, "/approvals?kind=rule_change"), 200);
    const json_t *items = json_object_get(r.json, "items");
    assert_true(json_array_size(items) >= 2);
    for (size_t i = 0; i < json_array_size(items); i++)
        assert_string_equal(jstr(json_array_get(items, i), "kind"), "rule_change");
    char id[64];
    snprintf(id, sizeof id, "%s", jstr(json_array_get(items, 0), "id"));
    h_resp_free(&r);
    assert_int_equal(req("GET", F->analyst2, NULL, &r, "/approvals/%s", id), 200);
    assert_string_equal(jstr(r.json, "id"), id);
    h_resp_free(&r);
    req("GET", F->auditor, NULL, &r, "/approvals?status=maybe");
    expect_problem(&r, 422, NULL);
    req("GET", F->auditor, NULL, &r, "/approvals?kind=other");
    expect_problem(&r, 422, NULL);
    req("GET", F->auditor, NULL, &r, "/approvals/6f1c2a9e-4b7d-4e5a-9c3b-2d8e1f0a7b64");
    expect_problem(&r, 404, NULL);
    req("POST", F->admin2, NULL, &r, "/approvals/6f1c2a9e-4b7d-4e5a-9c3b-2d8e1f0a7b64/approve");
    expect_problem(&r, 404, NULL);
    /* The database itself refuses a self-approval. */
    char alert[64], ap[64];
    investigating_alert("Four Eyes Four", alert);
    propose_close(F->analyst2, alert, "escalated", ap);
    assert_int_equal(h_db_exec(F->env,
                               "UPDATE approvals SET status = 'approved', decided_at = now(),"
                               " decided_by_key = proposed_by_key WHERE id = $1",
                               ap),
                     -1);
    assert_int_equal(h_db_count(F->env,
                                "SELECT count(*) FROM approvals WHERE id = $1"
                                " AND status = 'pending'",
                                ap),
                     1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(alert_close_needs_a_second_person),
        cmocka_unit_test(rejected_proposal_changes_nothing),
        cmocka_unit_test(stale_proposal_is_refused),
        cmocka_unit_test(rule_change_needs_another_admin),
        cmocka_unit_test(approvals_list_and_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
