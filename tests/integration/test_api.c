/*
 * test_api.c — the platform core's HTTP API end to end: the real `vigil
 * serve` in front of a real PostgreSQL, driven over HTTP.
 *
 * Every test checks three things: the HTTP status, the body, and what the
 * database holds afterwards — the business rows and the CloudEvents the
 * triggers wrote to the outbox, or, for a refused or failed request, that
 * neither exists.
 *
 * Three groups, each sharing one environment (one h_setup) to keep the run
 * short: customers; transactions and casework (alerts, KYC tasks, error
 * format, atomicity); rules, which change state every later ingest sees.
 * Inside a group each test makes its own customers and asserts on rows
 * scoped to them or on before/after deltas, so tests do not depend on the
 * order they run in.
 *
 * `vigil serve` runs with VIGIL_ROLES=api: the events stay in the outbox,
 * where the triggers put them, instead of being moved on by the sequencer.
 */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fixture_approvals.h"

/* h_setup's admin key is the first key of the env: "it-admin-1". */
#define ACTOR "key:it-admin-1"
/* A well-formed UUID no row has. */
#define NO_SUCH_ID "6f1c2a9e-4b7d-4e5a-9c3b-2d8e1f0a7b64"
#define OCCURRED   "2024-03-01T12:00:00Z"

/* ---- environment ---------------------------------------------------------- */

static int group_setup(void **state)
{
    h_env *env = h_setup(0);
    *state = env;
    return env ? 0 : -1;
}

static int group_teardown(void **state)
{
    h_teardown(*state);
    return 0;
}

/* ---- requests ------------------------------------------------------------- */

/* Sends one request with the admin key and asserts that a response arrived
 * and that it carries an X-Request-Id (every response must). */
static void call(h_env *env, const char *method, const char *body, h_resp *r, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void call(h_env *env, const char *method, const char *body, h_resp *r, const char *fmt, ...)
{
    char path[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    assert_int_equal(h_http(env, method, path, env->admin_key, body, -1, NULL, r), 0);
    assert_true(r->request_id[0] != '\0');
}

/* POSTs (or PATCHes) `body` (stolen) as compact JSON. */
static void send_json(h_env *env, const char *method, const char *path, json_t *body, h_resp *r)
{
    assert_non_null(body);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    assert_non_null(text);
    call(env, method, text, r, "%s", path);
    free(text);
}

/* ---- JSON assertions ------------------------------------------------------ */

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static void assert_jstr(const json_t *o, const char *key, const char *expect)
{
    const char *v = jstr(o, key);
    if (!v)
        fail_msg("member \"%s\" is missing or not a string (want \"%s\")", key, expect);
    assert_string_equal(v, expect);
}

static void assert_jint(const json_t *o, const char *key, json_int_t expect)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        fail_msg("member \"%s\" is missing or not an integer (want %lld)", key, (long long)expect);
    assert_int_equal(json_integer_value(v), expect);
}

static void assert_jbool(const json_t *o, const char *key, int expect)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_boolean(v))
        fail_msg("member \"%s\" is missing or not a boolean", key);
    assert_int_equal(json_is_true(v), expect);
}

static void assert_jnull(const json_t *o, const char *key)
{
    if (!json_is_null(json_object_get(o, key)))
        fail_msg("member \"%s\" should be null", key);
}

/* The array member `key`, asserted to hold `n` elements. */
static json_t *jarray(const json_t *o, const char *key, size_t n)
{
    json_t *a = json_object_get(o, key);
    if (!json_is_array(a))
        fail_msg("member \"%s\" is missing or not an array", key);
    assert_int_equal(json_array_size(a), n);
    return a;
}

/* How many objects of array `a` have member `key` equal to string `value`. */
static int count_with(const json_t *a, const char *key, const char *value)
{
    int n = 0;
    size_t i;
    const json_t *e;
    json_array_foreach(a, i, e)
    {
        const char *v = jstr(e, key);
        n += v && strcmp(v, value) == 0;
    }
    return n;
}

/* "YYYY-MM-DDTHH:MM:SS[.f+]Z", as vigil_ts() writes it. */
static int is_utc_timestamp(const char *s)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    if (!s || strlen(s) < sizeof shape)
        return 0;
    for (size_t i = 0; i < sizeof shape - 1; i++)
        if (shape[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != shape[i])
            return 0;
    const char *p = s + sizeof shape - 1;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++)
            ;
    return strcmp(p, "Z") == 0;
}

/* An error reply: the status, application/problem+json whose "status" is
 * the HTTP status, a title, a detail, the request id of the X-Request-Id
 * header and, when `field` is not NULL, that "field". */
static void assert_problem(const h_resp *r, long status, const char *field)
{
    assert_int_equal(r->status, status);
    assert_string_equal(r->content_type, "application/problem+json");
    assert_non_null(r->json);
    assert_jint(r->json, "status", status);
    const char *title = jstr(r->json, "title"), *detail = jstr(r->json, "detail");
    assert_true(title && title[0]);
    assert_true(detail && detail[0]);
    assert_true(r->request_id[0] != '\0');
    assert_jstr(r->json, "request_id", r->request_id);
    if (field)
        assert_jstr(r->json, "field", field);
}

/* One request that must fail with `status` (and `field`, when not NULL). */
static void expect_problem(h_env *env, const char *method, const char *path, const char *body,
                           long status, const char *field)
{
    h_resp r;
    call(env, method, body, &r, "%s", path);
    assert_problem(&r, status, field);
    h_resp_free(&r);
}

/* ---- database assertions -------------------------------------------------- */

/* Row counts of every table a request may write. */
typedef struct counts {
    long long customers, risk, kyc_tasks, transactions, alerts, rule_hits, outbox;
} counts;

static counts snapshot(h_env *env)
{
    counts c = {
        h_db_count(env, "SELECT count(*) FROM customers"),
        h_db_count(env, "SELECT count(*) FROM risk_assessments"),
        h_db_count(env, "SELECT count(*) FROM kyc_tasks"),
        h_db_count(env, "SELECT count(*) FROM transactions"),
        h_db_count(env, "SELECT count(*) FROM alerts"),
        h_db_count(env, "SELECT count(*) FROM rule_hits"),
        h_db_count(env, "SELECT count(*) FROM outbox"),
    };
    assert_true(c.customers >= 0 && c.risk >= 0 && c.kyc_tasks >= 0 && c.transactions >= 0 &&
                c.alerts >= 0 && c.rule_hits >= 0 && c.outbox >= 0);
    return c;
}

/* Asserts now - before == the given deltas, table by table. */
static void assert_delta(h_env *env, const counts *before, long long customers, long long risk,
                         long long kyc_tasks, long long transactions, long long alerts,
                         long long outbox)
{
    counts now = snapshot(env);
    assert_int_equal(now.customers - before->customers, customers);
    assert_int_equal(now.risk - before->risk, risk);
    assert_int_equal(now.kyc_tasks - before->kyc_tasks, kyc_tasks);
    assert_int_equal(now.transactions - before->transactions, transactions);
    assert_int_equal(now.alerts - before->alerts, alerts);
    assert_int_equal(now.outbox - before->outbox, outbox);
}

static void assert_nothing_written(h_env *env, const counts *before)
{
    counts now = snapshot(env);
    assert_delta(env, before, 0, 0, 0, 0, 0, 0);
    assert_int_equal(now.rule_hits, before->rule_hits);
}

/* The highest outbox id so far: events after it were written later. */
static long long outbox_mark(h_env *env)
{
    long long m = h_db_count(env, "SELECT coalesce(max(id), 0) FROM outbox");
    assert_true(m >= 0);
    return m;
}

/* Asserts the types of the events written after `mark`, comma-separated in
 * outbox.id order ("" for none), of `subject` (NULL: of every subject). */
static void assert_events(h_env *env, long long mark, const char *subject, const char *expect)
{
    char m[32];
    snprintf(m, sizeof m, "%lld", mark);
    char *got = subject ? h_db_text(env,
                                    "SELECT coalesce(string_agg(event_type, ',' ORDER BY id), '')"
                                    " FROM outbox WHERE id > $1 AND subject = $2",
                                    m, subject)
                        : h_db_text(env,
                                    "SELECT coalesce(string_agg(event_type, ',' ORDER BY id), '')"
                                    " FROM outbox WHERE id > $1",
                                    m);
    assert_non_null(got);
    assert_string_equal(got, expect);
    free(got);
}

/* The events of `subject` after `mark`, in outbox.id order, as an array of
 * {event_id, event_type, subject, payload}; each payload is checked to be a
 * CloudEvent 1.0 envelope agreeing with its row. Caller json_decref-s. */
static json_t *events_of(h_env *env, long long mark, const char *subject)
{
    char m[32];
    snprintf(m, sizeof m, "%lld", mark);
    char *text = h_db_text(env,
                           "SELECT coalesce(json_agg(json_build_object('event_id', event_id,"
                           " 'event_type', event_type, 'subject', subject, 'payload', payload)"
                           " ORDER BY id), '[]')::text FROM outbox WHERE id > $1 AND subject = $2",
                           m, subject);
    assert_non_null(text);
    json_t *rows = json_loads(text, 0, NULL);
    free(text);
    assert_true(json_is_array(rows));
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        const json_t *p = json_object_get(row, "payload");
        assert_true(json_is_object(p));
        assert_jstr(p, "specversion", "1.0");
        assert_non_null(jstr(row, "event_id"));
        assert_jstr(p, "id", jstr(row, "event_id"));
        assert_jstr(p, "source", "/vigil");
        assert_non_null(jstr(row, "event_type"));
        assert_jstr(p, "type", jstr(row, "event_type"));
        assert_jstr(p, "subject", subject);
        assert_true(is_utc_timestamp(jstr(p, "time")));
        assert_jstr(p, "datacontenttype", "application/json");
        assert_true(json_is_object(json_object_get(p, "data")));
    }
    return rows;
}

/* The "data" of event i of an events_of() array. */
static const json_t *event_data(const json_t *rows, size_t i)
{
    return json_object_get(json_object_get(json_array_get(rows, i), "payload"), "data");
}

/* Asserts that the first column of the first row of sql is `expect`. */
#define assert_db_text(env, expect, ...)                                                           \
    do {                                                                                           \
        char *t_ = h_db_text(env, __VA_ARGS__);                                                    \
        if (!t_)                                                                                   \
            fail_msg("no value for: %s", #__VA_ARGS__);                                            \
        assert_string_equal(t_, expect);                                                           \
        free(t_);                                                                                  \
    } while (0)

/* ---- fixtures ------------------------------------------------------------- */

/* POSTs a customer body, asserts 201, copies the id; returns the body (caller
 * json_decref-s). */
static json_t *create_customer(h_env *env, const char *body, char id[37])
{
    h_resp r;
    call(env, "POST", body, &r, "/customers");
    if (r.status != 201)
        fail_msg("POST /customers %s: %ld %s", body, r.status, r.body);
    assert_non_null(r.json);
    const char *v = jstr(r.json, "id");
    assert_non_null(v);
    assert_int_equal(strlen(v), 36);
    memcpy(id, v, 37);
    json_t *j = json_incref(r.json);
    h_resp_free(&r);
    return j;
}

/* A low-risk customer in a country that is on no list. */
static void plain_customer(h_env *env, const char *name, char id[37])
{
    char body[256];
    snprintf(body, sizeof body, "{\"full_name\": \"%s\", \"country\": \"DE\"}", name);
    json_decref(create_customer(env, body, id));
}

static json_t *tx_item(const char *ext, const char *customer, const char *amount,
                       const char *currency, const char *channel, const char *occurred_at)
{
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "external_id", ext, "customer_id",
                          customer, "amount", amount, "currency", currency, "direction", "in",
                          "channel", channel, "occurred_at", occurred_at);
    assert_non_null(j);
    return j;
}

static void post_batch(h_env *env, json_t *items, h_resp *r)
{
    send_json(env, "POST", "/transactions", json_pack("{s:o}", "transactions", items), r);
}

/* Ingests one transaction (stolen), asserts 201 and copies its id. */
static void ingest_one(h_env *env, json_t *item, char id[37])
{
    h_resp r;
    send_json(env, "POST", "/transactions", item, &r);
    if (r.status != 201)
        fail_msg("POST /transactions: %ld %s", r.status, r.body);
    const char *v = jstr(r.json, "id");
    assert_non_null(v);
    assert_int_equal(strlen(v), 36);
    memcpy(id, v, 37);
    h_resp_free(&r);
}

/* The id of the one alert that transaction tx_id contributed to. */
static void alert_of_tx(h_env *env, const char *tx_id, char id[37])
{
    assert_int_equal(
        h_db_count(env, "SELECT count(*) FROM alerts WHERE $1::uuid = ANY (transaction_ids)",
                   tx_id),
        1);
    char *v =
        h_db_text(env, "SELECT id::text FROM alerts WHERE $1::uuid = ANY (transaction_ids)", tx_id);
    assert_non_null(v);
    assert_int_equal(strlen(v), 36);
    memcpy(id, v, 37);
    free(v);
}

/* ==== customers ============================================================ */

static void customer_create_scores_opens_tasks_and_emits(void **state)
{
    h_env *env = *state;
    counts before = snapshot(env);
    long long mark = outbox_mark(env);

    h_resp r;
    call(env, "POST", "{\"full_name\": \"Test User\", \"email\": \"test@example.com\"}", &r,
         "/customers");
    assert_int_equal(r.status, 201);
    assert_string_equal(r.content_type, "application/json");
    assert_non_null(r.json);
    char id[37];
    assert_non_null(jstr(r.json, "id"));
    snprintf(id, sizeof id, "%s", jstr(r.json, "id"));
    assert_int_equal(strlen(id), 36);

    char loc[256], want_loc[64];
    assert_int_equal(h_resp_header(&r, "Location", loc, sizeof loc), 0);
    snprintf(want_loc, sizeof want_loc, "/customers/%s", id);
    assert_string_equal(loc, want_loc);

    assert_jstr(r.json, "full_name", "Test User");
    assert_jstr(r.json, "email", "test@example.com");
    assert_jbool(r.json, "duplicate", 0);

    /* No country: baseline 5 + country_unknown 10, low. */
    const json_t *risk = json_object_get(r.json, "risk");
    assert_jint(risk, "score", 15);
    assert_jstr(risk, "level", "low");
    assert_jint(risk, "version", 1);
    const json_t *factors = jarray(risk, "factors", 2);
    json_int_t sum = 0;
    size_t i;
    const json_t *f;
    json_array_foreach(factors, i, f)
    {
        assert_non_null(jstr(f, "name"));
        assert_true(json_is_integer(json_object_get(f, "contribution")));
        sum += json_integer_value(json_object_get(f, "contribution"));
    }
    assert_int_equal(sum, 15);
    assert_int_equal(count_with(factors, "name", "baseline"), 1);
    assert_int_equal(count_with(factors, "name", "country_unknown"), 1);

    const json_t *tasks = jarray(r.json, "kyc_tasks", 3);
    assert_int_equal(count_with(tasks, "kind", "identity_verification"), 1);
    assert_int_equal(count_with(tasks, "kind", "address_verification"), 1);
    assert_int_equal(count_with(tasks, "kind", "sanctions_pep_screening"), 1);
    assert_int_equal(count_with(tasks, "status", "open"), 3);
    assert_int_equal(count_with(tasks, "reason", "onboarding"), 3);
    assert_int_equal(count_with(tasks, "customer_id", id), 3);
    h_resp_free(&r);

    /* The database holds exactly what the reply says. */
    assert_delta(env, &before, 1, 1, 3, 0, 0, 3);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM customers WHERE id = $1"
                                " AND full_name = 'Test User' AND email = 'test@example.com'"
                                " AND risk_score = 15 AND risk_level = 'low' AND risk_version = 1"
                                " AND NOT pep AND country IS NULL AND external_id IS NULL",
                                id),
                     1);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM risk_assessments WHERE customer_id = $1"
                                " AND version = 1 AND score = 15 AND level = 'low'"
                                " AND reason = 'onboarding' AND actor = $2"
                                " AND jsonb_array_length(factors) = 2",
                                id, ACTOR),
                     1);
    /* Low risk: onboarding tasks are due in 30 days. */
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM kyc_tasks WHERE customer_id = $1"
                                " AND status = 'open' AND reason = 'onboarding'"
                                " AND due_at BETWEEN now() + interval '29 days'"
                                " AND now() + interval '31 days'",
                                id),
                     3);

    /* Three events, in this order, all about this customer. */
    assert_events(env, mark, NULL, "aml.customer.created,aml.customer.risk,aml.kyc.tasks.created");
    json_t *ev = events_of(env, mark, id);
    assert_int_equal(json_array_size(ev), 3);
    assert_jstr(event_data(ev, 0), "id", id);
    assert_jstr(event_data(ev, 0), "full_name", "Test User");
    assert_jstr(event_data(ev, 1), "customer_id", id);
    assert_jint(event_data(ev, 1), "version", 1);
    assert_jint(event_data(ev, 1), "score", 15);
    assert_jstr(event_data(ev, 2), "customer_id", id);
    assert_int_equal(count_with(jarray(event_data(ev, 2), "tasks", 3), "customer_id", id), 3);
    json_decref(ev);

    /* Read back, by the id in upper case too (UUIDs are case-insensitive). */
    char upper[37];
    for (size_t k = 0; k < sizeof upper; k++)
        upper[k] = id[k] >= 'a' && id[k] <= 'f' ? (char)(id[k] - 'a' + 'A') : id[k];
    const char *const forms[] = {id, upper};
    for (size_t k = 0; k < 2; k++) {
        call(env, "GET", NULL, &r, "/customers/%s", forms[k]);
        assert_int_equal(r.status, 200);
        assert_jstr(r.json, "id", id);
        assert_jstr(r.json, "full_name", "Test User");
        assert_jint(json_object_get(r.json, "risk"), "score", 15);
        jarray(r.json, "kyc_tasks", 3);
        h_resp_free(&r);
    }
}

static void customer_external_id_is_idempotent(void **state)
{
    h_env *env = *state;
    const char *body = "{\"full_name\": \"Idem User\", \"external_id\": \"crm-1001\","
                       " \"country\": \"DE\"}";
    char id[37];
    json_t *first = create_customer(env, body, id);
    assert_jstr(first, "external_id", "crm-1001");
    assert_jbool(first, "duplicate", 0);
    json_decref(first);

    counts before = snapshot(env);
    long long mark = outbox_mark(env);
    h_resp r;
    call(env, "POST", body, &r, "/customers");
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "id", id);
    assert_jbool(r.json, "duplicate", 1);
    assert_jstr(r.json, "full_name", "Idem User");
    jarray(r.json, "kyc_tasks", 3);
    h_resp_free(&r);

    /* A retry with other data still returns what was stored first. */
    call(env, "POST", "{\"full_name\": \"Other Name\", \"external_id\": \"crm-1001\"}", &r,
         "/customers");
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "id", id);
    assert_jbool(r.json, "duplicate", 1);
    assert_jstr(r.json, "full_name", "Idem User");
    assert_jstr(r.json, "country", "DE");
    h_resp_free(&r);

    assert_nothing_written(env, &before);
    assert_events(env, mark, NULL, "");
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM customers WHERE external_id = 'crm-1001'"
                                     " AND full_name = 'Idem User'"),
                     1);
}

static void customer_pep_in_high_risk_country_gets_edd(void **state)
{
    h_env *env = *state;
    counts before = snapshot(env);
    long long mark = outbox_mark(env);
    char id[37];
    json_t *c = create_customer(
        env, "{\"full_name\": \"Pep Person\", \"country\": \"IR\", \"pep\": true}", id);

    /* baseline 5 + pep 35 + country_high_risk 30. */
    const json_t *risk = json_object_get(c, "risk");
    assert_jint(risk, "score", 70);
    assert_jstr(risk, "level", "high");
    const json_t *factors = jarray(risk, "factors", 3);
    assert_int_equal(count_with(factors, "name", "pep"), 1);
    assert_int_equal(count_with(factors, "name", "country_high_risk"), 1);
    assert_int_equal(count_with(factors, "name", "baseline"), 1);

    const json_t *tasks = jarray(c, "kyc_tasks", 6);
    const char *const kinds[] = {"identity_verification",   "address_verification",
                                 "sanctions_pep_screening", "source_of_funds",
                                 "source_of_wealth",        "senior_management_approval"};
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(count_with(tasks, "kind", kinds[i]), 1);
    assert_int_equal(count_with(tasks, "reason", "enhanced_due_diligence"), 3);
    assert_int_equal(count_with(tasks, "reason", "onboarding"), 3);
    json_decref(c);

    assert_delta(env, &before, 1, 1, 6, 0, 0, 4);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM kyc_tasks WHERE customer_id = $1"
                                " AND reason = 'enhanced_due_diligence' AND status = 'open'"
                                " AND kind IN ('source_of_funds', 'source_of_wealth',"
                                " 'senior_management_approval')",
                                id),
                     3);
    /* High risk: every task is due within a week. */
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM kyc_tasks WHERE customer_id = $1"
                                " AND due_at BETWEEN now() + interval '6 days'"
                                " AND now() + interval '8 days'",
                                id),
                     6);
    assert_events(env, mark, id,
                  "aml.customer.created,aml.customer.risk,aml.kyc.tasks.created,"
                  "aml.kyc.tasks.created");

    h_resp r;
    call(env, "GET", NULL, &r, "/customers/%s/risk", id);
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "customer_id", id);
    assert_jint(json_object_get(r.json, "current"), "score", 70);
    assert_jstr(json_object_get(r.json, "current"), "level", "high");
    const json_t *items = jarray(r.json, "items", 1);
    const json_t *a = json_array_get(items, 0);
    assert_jint(a, "version", 1);
    assert_jint(a, "score", 70);
    assert_jstr(a, "level", "high");
    assert_jstr(a, "reason", "onboarding");
    assert_jstr(a, "actor", ACTOR);
    jarray(a, "factors", 3);
    h_resp_free(&r);

    expect_problem(env, "GET", "/customers/" NO_SUCH_ID "/risk", NULL, 404, NULL);
}

static void customer_patch_rescores(void **state)
{
    h_env *env = *state;
    char id[37];
    json_t *c = create_customer(
        env, "{\"full_name\": \"Patch Me\", \"email\": \"patch@example.com\", \"country\": \"DE\"}",
        id);
    assert_jint(json_object_get(c, "risk"), "score", 5);
    assert_jstr(json_object_get(c, "risk"), "level", "low");
    json_decref(c);

    counts before = snapshot(env);
    long long mark = outbox_mark(env);
    h_resp r;
    call(env, "PATCH", "{\"pep\": true, \"country\": \"KP\"}", &r, "/customers/%s", id);
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "id", id);
    assert_jbool(r.json, "pep", 1);
    assert_jstr(r.json, "country", "KP");
    assert_jstr(r.json, "email", "patch@example.com");
    assert_jint(json_object_get(r.json, "risk"), "score", 70);
    assert_jstr(json_object_get(r.json, "risk"), "level", "high");
    assert_jint(json_object_get(r.json, "risk"), "version", 2);
    assert_int_equal(count_with(jarray(r.json, "kyc_tasks", 6), "reason", "enhanced_due_diligence"),
                     3);
    h_resp_free(&r);

    assert_delta(env, &before, 0, 1, 3, 0, 0, 3);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM customers WHERE id = $1 AND pep"
                                " AND country = 'KP' AND risk_score = 70 AND risk_level = 'high'"
                                " AND risk_version = 2",
                                id),
                     1);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM risk_assessments WHERE customer_id = $1"
                                " AND version = 2 AND score = 70 AND level = 'high'"
                                " AND reason = 'customer_updated' AND actor = $2",
                                id, ACTOR),
                     1);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM kyc_tasks WHERE customer_id = $1"
                                " AND reason = 'enhanced_due_diligence' AND status = 'open'",
                                id),
                     3);
    assert_events(env, mark, NULL, "aml.customer.updated,aml.customer.risk,aml.kyc.tasks.created");
    json_t *ev = events_of(env, mark, id);
    assert_jstr(event_data(ev, 1), "level", "high");
    assert_jint(event_data(ev, 1), "version", 2);
    json_decref(ev);

    call(env, "GET", NULL, &r, "/customers/%s/risk", id);
    assert_int_equal(r.status, 200);
    const json_t *items = jarray(r.json, "items", 2);
    assert_jint(json_array_get(items, 0), "version", 2);
    assert_jint(json_array_get(items, 1), "version", 1);
    assert_jstr(json_array_get(items, 1), "level", "low");
    h_resp_free(&r);

    /* A change that moves no risk factor: an update event, no assessment. */
    before = snapshot(env);
    mark = outbox_mark(env);
    call(env, "PATCH", "{\"email\": \"new@example.com\"}", &r, "/customers/%s", id);
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "email", "new@example.com");
    assert_jint(json_object_get(r.json, "risk"), "version", 2);
    h_resp_free(&r);
    assert_delta(env, &before, 0, 0, 0, 0, 0, 1);
    assert_events(env, mark, id, "aml.customer.updated");

    /* A patch that changes nothing says nothing. */
    mark = outbox_mark(env);
    call(env, "PATCH", "{\"country\": \"KP\", \"pep\": true}", &r, "/customers/%s", id);
    assert_int_equal(r.status, 200);
    assert_jint(json_object_get(r.json, "risk"), "version", 2);
    h_resp_free(&r);
    assert_events(env, mark, NULL, "");
}

static void customer_patch_refusals(void **state)
{
    h_env *env = *state;
    char id[37], path[128];
    plain_customer(env, "Refuse Patch", id);
    snprintf(path, sizeof path, "/customers/%s", id);
    counts before = snapshot(env);
    long long mark = outbox_mark(env);

    expect_problem(env, "PATCH", path, "{\"external_id\": \"x-1\"}", 422, "external_id");
    expect_problem(env, "PATCH", path, "{\"full_name\": null}", 422, "full_name");
    expect_problem(env, "PATCH", path, "{\"nmae\": \"Typo\"}", 422, "nmae");
    expect_problem(env, "PATCH", path, "{\"country\": \"de\"}", 422, "country");
    expect_problem(env, "PATCH", path, "{}", 422, NULL);
    expect_problem(env, "PATCH", "/customers/" NO_SUCH_ID, "{\"full_name\": \"Ghost\"}", 404, NULL);
    expect_problem(env, "PATCH", "/customers/not-a-uuid", "{\"full_name\": \"Ghost\"}", 404, NULL);

    assert_nothing_written(env, &before);
    assert_events(env, mark, NULL, "");
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM customers WHERE id = $1"
                                " AND full_name = 'Refuse Patch' AND country = 'DE'"
                                " AND external_id IS NULL",
                                id),
                     1);
}

static void customer_post_refusals(void **state)
{
    h_env *env = *state;
    counts before = snapshot(env);
    long long mark = outbox_mark(env);

    expect_problem(env, "POST", "/customers", "{\"email\": \"x@example.com\"}", 422, "full_name");
    expect_problem(env, "POST", "/customers", "{\"full_name\": \"   \"}", 422, "full_name");
    expect_problem(env, "POST", "/customers", "{\"full_name\": \"A\", \"email\": \"nope\"}", 422,
                   "email");
    expect_problem(env, "POST", "/customers", "{\"full_name\": \"A\", \"country\": \"Germany\"}",
                   422, "country");
    expect_problem(env, "POST", "/customers", "{\"full_name\": \"A\", \"pep\": \"yes\"}", 422,
                   "pep");
    expect_problem(env, "POST", "/customers", "{\"full_name\": \"A\", \"nmae\": \"B\"}", 422,
                   "nmae");
    expect_problem(env, "POST", "/customers",
                   "{\"full_name\": \"A\", \"date_of_birth\": \"2999-01-01\"}", 422,
                   "date_of_birth");
    expect_problem(env, "POST", "/customers", "{\"full_name\": \"A\", \"external_id\": \"a b\"}",
                   422, "external_id");

    assert_nothing_written(env, &before);
    assert_events(env, mark, NULL, "");
}

static void customers_keyset_pagination(void **state)
{
    h_env *env = *state;
    char mine[5][37];
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof name, "Page User %d", i);
        plain_customer(env, name, mine[i]);
    }
    long long total = h_db_count(env, "SELECT count(*) FROM customers");
    assert_true(total >= 5);

    char(*seen)[37] = calloc((size_t)total + 1, sizeof *seen);
    assert_non_null(seen);
    long long nseen = 0;
    char after[37] = "";
    int pages = 0;
    for (;;) {
        h_resp r;
        if (after[0])
            call(env, "GET", NULL, &r, "/customers?limit=2&after=%s", after);
        else
            call(env, "GET", NULL, &r, "/customers?limit=2");
        assert_int_equal(r.status, 200);
        const json_t *items = json_object_get(r.json, "items");
        assert_true(json_is_array(items));
        assert_true(json_array_size(items) <= 2);
        size_t i;
        const json_t *c;
        json_array_foreach(items, i, c)
        {
            const char *id = jstr(c, "id");
            assert_non_null(id);
            for (long long k = 0; k < nseen; k++)
                if (strcmp(seen[k], id) == 0)
                    fail_msg("customer %s seen twice", id);
            assert_true(nseen < total);
            snprintf(seen[nseen++], 37, "%s", id);
        }
        const json_t *next = json_object_get(r.json, "next");
        if (json_is_null(next)) {
            h_resp_free(&r);
            break;
        }
        assert_true(json_is_string(next));
        /* "next" is the last item of a full page. */
        assert_int_equal(json_array_size(items), 2);
        assert_string_equal(json_string_value(next), jstr(json_array_get(items, 1), "id"));
        snprintf(after, sizeof after, "%s", json_string_value(next));
        h_resp_free(&r);
        assert_true(++pages < 1000);
    }
    assert_int_equal(nseen, total);
    /* Mine appear once each, in creation order. */
    long long last = -1;
    for (int i = 0; i < 5; i++) {
        long long at = -1;
        for (long long k = 0; k < nseen; k++)
            if (strcmp(seen[k], mine[i]) == 0)
                at = k;
        assert_true(at > last);
        last = at;
    }
    free(seen);

    expect_problem(env, "GET", "/customers?limit=0", NULL, 422, "limit");
    expect_problem(env, "GET", "/customers?limit=501", NULL, 422, "limit");
    expect_problem(env, "GET", "/customers?limit=2x", NULL, 422, "limit");
    expect_problem(env, "GET", "/customers?after=page-2", NULL, 422, "after");
}

/* ==== transactions and casework ============================================ */

static void transaction_single_and_idempotent(void **state)
{
    h_env *env = *state;
    char cust[37];
    plain_customer(env, "Single Tx", cust);
    counts before = snapshot(env);
    long long mark = outbox_mark(env);

    json_t *item = tx_item("tx-single-1", cust, "125.5", "EUR", "wire", OCCURRED);
    json_object_set_new(item, "counterparty",
                        json_pack("{s:s, s:s, s:s}", "name", "ACME GmbH", "account",
                                  "DE89370400440532013000", "country", "DE"));
    h_resp r;
    send_json(env, "POST", "/transactions", json_incref(item), &r);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.content_type, "application/json");
    char id[37];
    assert_non_null(jstr(r.json, "id"));
    snprintf(id, sizeof id, "%s", jstr(r.json, "id"));
    assert_int_equal(strlen(id), 36);
    char loc[256], want_loc[64];
    assert_int_equal(h_resp_header(&r, "Location", loc, sizeof loc), 0);
    snprintf(want_loc, sizeof want_loc, "/transactions/%s", id);
    assert_string_equal(loc, want_loc);
    assert_jbool(r.json, "duplicate", 0);
    assert_jstr(r.json, "external_id", "tx-single-1");
    assert_jstr(r.json, "customer_id", cust);
    assert_jstr(r.json, "amount", "125.50"); /* canonical: two decimals for EUR */
    assert_jstr(r.json, "amount_base", "135.5400");
    assert_jstr(r.json, "currency", "EUR");
    assert_jstr(json_object_get(r.json, "counterparty"), "name", "ACME GmbH");
    h_resp_free(&r);

    assert_delta(env, &before, 0, 0, 0, 1, 0, 1);
    assert_db_text(env, "125.50", "SELECT amount::text FROM transactions WHERE id = $1", id);
    assert_db_text(env, "135.5400", "SELECT amount_base::text FROM transactions WHERE id = $1", id);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM transactions WHERE id = $1"
                                " AND occurred_at = '2024-03-01T12:00:00Z' AND direction = 'in'"
                                " AND channel = 'wire' AND counterparty_country = 'DE'",
                                id),
                     1);
    assert_events(env, mark, NULL, "aml.transaction.ingested");
    json_t *ev = events_of(env, mark, id);
    assert_int_equal(json_array_size(ev), 1);
    assert_jstr(event_data(ev, 0), "external_id", "tx-single-1");
    assert_jstr(event_data(ev, 0), "amount", "125.50");
    json_decref(ev);

    /* The retry, and a retry carrying another amount: the stored one. */
    before = snapshot(env);
    mark = outbox_mark(env);
    send_json(env, "POST", "/transactions", json_incref(item), &r);
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "id", id);
    assert_jbool(r.json, "duplicate", 1);
    h_resp_free(&r);
    json_object_set_new(item, "amount", json_string("999.00"));
    send_json(env, "POST", "/transactions", item, &r);
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "id", id);
    assert_jbool(r.json, "duplicate", 1);
    assert_jstr(r.json, "amount", "125.50");
    h_resp_free(&r);
    assert_nothing_written(env, &before);
    assert_events(env, mark, NULL, "");
}

static void transaction_batch_of_50(void **state)
{
    h_env *env = *state;
    char cust[37];
    plain_customer(env, "Batch Fifty", cust);
    counts before = snapshot(env);
    long long mark = outbox_mark(env);

    /* One an hour, small odd amounts: no rule fires. */
    json_t *items = json_array();
    char want_amounts[50 * 12] = "";
    for (int i = 0; i < 50; i++) {
        char ext[32], amount[16], at[32];
        snprintf(ext, sizeof ext, "b50-%02d", i);
        snprintf(amount, sizeof amount, "%d.25", i + 1);
        snprintf(at, sizeof at, "2024-02-%02dT%02d:00:00Z", 1 + i / 24, i % 24);
        json_array_append_new(items, tx_item(ext, cust, amount, "USD", "card", at));
        snprintf(want_amounts + strlen(want_amounts), sizeof want_amounts - strlen(want_amounts),
                 "%s%s", i ? "," : "", amount);
    }
    h_resp r;
    post_batch(env, items, &r);
    assert_int_equal(r.status, 201);
    assert_jint(r.json, "created", 50);
    assert_jint(r.json, "duplicates", 0);
    const json_t *out = jarray(r.json, "items", 50);
    for (size_t i = 0; i < 50; i++) {
        char ext[32];
        snprintf(ext, sizeof ext, "b50-%02zu", i);
        const json_t *t = json_array_get(out, i);
        assert_jstr(t, "external_id", ext);
        assert_jstr(t, "customer_id", cust);
        assert_jbool(t, "duplicate", 0);
        assert_non_null(jstr(t, "id"));
    }
    h_resp_free(&r);

    assert_delta(env, &before, 0, 0, 0, 50, 0, 50);
    assert_db_text(env, want_amounts,
                   "SELECT string_agg(amount::text, ',' ORDER BY external_id) FROM transactions"
                   " WHERE customer_id = $1",
                   cust);
    /* One statement gave all fifty the same ingested_at: pages must still
     * show each exactly once (the keyset breaks ties on id). */
    char after[37] = "";
    int seen = 0, got[50] = {0};
    for (int page = 0; page < 20; page++) {
        if (after[0])
            call(env, "GET", NULL, &r, "/transactions?customer_id=%s&limit=7&after=%s", cust,
                 after);
        else
            call(env, "GET", NULL, &r, "/transactions?customer_id=%s&limit=7", cust);
        assert_int_equal(r.status, 200);
        const json_t *list = json_object_get(r.json, "items");
        assert_true(json_is_array(list));
        size_t i;
        const json_t *t;
        json_array_foreach(list, i, t)
        {
            const char *ext = jstr(t, "external_id");
            int k = -1;
            assert_true(ext && sscanf(ext, "b50-%d", &k) == 1 && k >= 0 && k < 50);
            if (got[k]++)
                fail_msg("%s seen twice", ext);
            seen++;
        }
        int done = json_is_null(json_object_get(r.json, "next"));
        if (!done)
            snprintf(after, sizeof after, "%s", jstr(r.json, "next"));
        h_resp_free(&r);
        if (done)
            break;
    }
    assert_int_equal(seen, 50);
    assert_int_equal(h_db_count(env,
                                "SELECT count(DISTINCT ingested_at) FROM transactions"
                                " WHERE customer_id = $1",
                                cust),
                     1);

    /* Fifty events, each for one of this batch's transactions. */
    char m[32];
    snprintf(m, sizeof m, "%lld", mark);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM outbox WHERE id > $1", m), 50);
    assert_int_equal(h_db_count(env,
                                "SELECT count(DISTINCT t.id) FROM outbox o JOIN transactions t"
                                " ON t.id::text = o.subject WHERE o.id > $1"
                                " AND o.event_type = 'aml.transaction.ingested'"
                                " AND t.customer_id = $2",
                                m, cust),
                     50);
}

static void transaction_batch_duplicates(void **state)
{
    h_env *env = *state;
    char cust[37], stored[37];
    plain_customer(env, "Batch Dups", cust);
    ingest_one(env, tx_item("dup-stored", cust, "40.40", "USD", "card", OCCURRED), stored);
    counts before = snapshot(env);
    long long mark = outbox_mark(env);

    json_t *items = json_array();
    json_array_append_new(items, tx_item("dup-a", cust, "10.10", "USD", "card", OCCURRED));
    json_array_append_new(items, tx_item("dup-b", cust, "20.20", "USD", "card", OCCURRED));
    json_array_append_new(items, tx_item("dup-a", cust, "30.30", "USD", "card", OCCURRED));
    json_array_append_new(items, tx_item("dup-stored", cust, "50.50", "USD", "card", OCCURRED));
    h_resp r;
    post_batch(env, json_incref(items), &r);
    assert_int_equal(r.status, 201);
    assert_jint(r.json, "created", 2);
    assert_jint(r.json, "duplicates", 2);
    const json_t *out = jarray(r.json, "items", 4);
    const char *const ext[] = {"dup-a", "dup-b", "dup-a", "dup-stored"};
    const int dup[] = {0, 0, 1, 1};
    for (size_t i = 0; i < 4; i++) {
        assert_jstr(json_array_get(out, i), "external_id", ext[i]);
        assert_jbool(json_array_get(out, i), "duplicate", dup[i]);
    }
    /* The first occurrence wins; a repeat names the stored row. */
    assert_non_null(jstr(json_array_get(out, 0), "id"));
    assert_jstr(json_array_get(out, 2), "id", jstr(json_array_get(out, 0), "id"));
    assert_jstr(json_array_get(out, 2), "amount", "10.10");
    assert_jstr(json_array_get(out, 3), "id", stored);
    assert_jstr(json_array_get(out, 3), "amount", "40.40");
    h_resp_free(&r);

    assert_delta(env, &before, 0, 0, 0, 2, 0, 2);
    assert_db_text(env, "dup-a=10.10,dup-b=20.20,dup-stored=40.40",
                   "SELECT string_agg(external_id || '=' || amount::text, ',' ORDER BY"
                   " external_id) FROM transactions WHERE customer_id = $1",
                   cust);
    assert_events(env, mark, NULL, "aml.transaction.ingested,aml.transaction.ingested");

    /* The same batch again: all duplicates, 200, nothing written. */
    before = snapshot(env);
    mark = outbox_mark(env);
    post_batch(env, items, &r);
    assert_int_equal(r.status, 200);
    assert_jint(r.json, "created", 0);
    assert_jint(r.json, "duplicates", 4);
    h_resp_free(&r);
    assert_nothing_written(env, &before);
    assert_events(env, mark, NULL, "");
}

static void transaction_batch_with_bad_items_is_refused_whole(void **state)
{
    h_env *env = *state;
    char cust[37];
    plain_customer(env, "Batch Bad", cust);
    counts before = snapshot(env);
    long long mark = outbox_mark(env);

    json_t *items = json_array();
    for (int i = 0; i < 10; i++) {
        char ext[32];
        snprintf(ext, sizeof ext, "bad-batch-%d", i);
        json_t *t = tx_item(ext, cust, "12.50", "USD", "card", OCCURRED);
        if (i == 2)
            json_object_set_new(t, "amount", json_string("12,50"));
        if (i == 5)
            json_object_set_new(t, "currency", json_string("ZZZ"));
        if (i == 7)
            json_object_del(t, "direction");
        json_array_append_new(items, t);
    }
    h_resp r;
    post_batch(env, items, &r);
    assert_problem(&r, 422, "transactions");
    const json_t *errors = jarray(r.json, "errors", 3);
    const long idx[] = {2, 5, 7};
    const char *const field[] = {"transactions[2].amount", "transactions[5].currency",
                                 "transactions[7].direction"};
    for (size_t i = 0; i < 3; i++) {
        const json_t *e = json_array_get(errors, i);
        assert_jint(e, "index", idx[i]);
        assert_jstr(e, "field", field[i]);
        assert_true(jstr(e, "detail") && jstr(e, "detail")[0]);
    }
    h_resp_free(&r);

    assert_nothing_written(env, &before);
    assert_events(env, mark, NULL, "");
    assert_int_equal(
        h_db_count(env, "SELECT count(*) FROM transactions WHERE customer_id = $1", cust), 0);
}

static void transaction_batch_naming_unknown_customer_is_refused(void **state)
{
    h_env *env = *state;
    char cust[37];
    plain_customer(env, "Batch Unknown", cust);
    counts before = snapshot(env);
    long long mark = outbox_mark(env);

    json_t *items = json_array();
    for (int i = 0; i < 6; i++) {
        char ext[32];
        snprintf(ext, sizeof ext, "unknown-cust-%d", i);
        json_array_append_new(
            items, tx_item(ext, i == 3 ? NO_SUCH_ID : cust, "12.50", "USD", "card", OCCURRED));
    }
    h_resp r;
    post_batch(env, items, &r);
    assert_problem(&r, 422, "transactions");
    const json_t *e = json_array_get(jarray(r.json, "errors", 1), 0);
    assert_jint(e, "index", 3);
    assert_jstr(e, "field", "transactions[3].customer_id");
    h_resp_free(&r);

    /* An ISO currency without an exchange rate is refused the same way. */
    items = json_array();
    json_array_append_new(items, tx_item("no-fx-0", cust, "12.50", "USD", "card", OCCURRED));
    json_array_append_new(items, tx_item("no-fx-1", cust, "12.50", "THB", "card", OCCURRED));
    post_batch(env, items, &r);
    assert_problem(&r, 422, "transactions");
    e = json_array_get(jarray(r.json, "errors", 1), 0);
    assert_jint(e, "index", 1);
    assert_jstr(e, "field", "transactions[1].currency");
    h_resp_free(&r);

    /* A single transaction names the field directly. */
    send_json(env, "POST", "/transactions",
              tx_item("unknown-cust-single", NO_SUCH_ID, "12.50", "USD", "card", OCCURRED), &r);
    assert_problem(&r, 422, "customer_id");
    h_resp_free(&r);

    assert_nothing_written(env, &before);
    assert_events(env, mark, NULL, "");
}

/* The transaction event's JSON (built as text since 0027) for the values a
 * hand-written renderer gets wrong: quotes and backslashes in the external
 * id, a name with quotes, a backslash and non-ASCII letters, and (written
 * straight into the table, as an import could; the API refuses them)
 * control characters; a missing account (null) and no counterparty at all
 * (null). The payload must parse, and every field must be the value
 * stored, compared here with the strings the test sent. */
static json_t *tx_event_data(h_env *env, long long mark, const char *tx_id)
{
    /* events_of parses each payload and checks its CloudEvent envelope. */
    json_t *evs = events_of(env, mark, tx_id);
    assert_int_equal(json_array_size(evs), 1);
    const json_t *ev = json_array_get(evs, 0);
    assert_jstr(ev, "event_type", "aml.transaction.ingested");
    json_t *data = json_incref(json_object_get(json_object_get(ev, "payload"), "data"));
    json_decref(evs);
    assert_jstr(data, "id", tx_id);
    return data;
}

static void transaction_event_text_escapes(void **state)
{
    h_env *env = *state;
    char cust[37], api_tx[37];
    plain_customer(env, "Escapes", cust);
    long long mark = outbox_mark(env);

    const char *ext = "esc-\"q\"\\b/";
    const char *name = "O'Brien \"Zo\xc3\xab\" \\ \xe2\x98\x83 Ltd";
    json_t *item = tx_item(ext, cust, "12.50", "EUR", "wire", OCCURRED);
    json_object_set_new(item, "counterparty",
                        json_pack("{s:s, s:s}", "name", name, "country", "DE"));
    ingest_one(env, item, api_tx);
    json_t *d = tx_event_data(env, mark, api_tx);
    assert_jstr(d, "external_id", ext);
    assert_jstr(d, "customer_id", cust);
    assert_jstr(d, "amount", "12.50");
    assert_jstr(d, "amount_base", "13.5000"); /* 12.50 x 1.08 */
    assert_jstr(d, "currency", "EUR");
    assert_jstr(d, "direction", "in");
    assert_jstr(d, "channel", "wire");
    assert_jstr(d, "occurred_at", "2024-03-01T12:00:00.000000Z");
    assert_non_null(jstr(d, "ingested_at"));
    json_t *cp = json_object_get(d, "counterparty");
    assert_jstr(cp, "name", name);
    assert_true(json_is_null(json_object_get(cp, "account")));
    assert_jstr(cp, "country", "DE");
    assert_int_equal(json_object_size(d), 11);
    assert_int_equal(json_object_size(cp), 3);
    json_decref(d);

    /* Control characters and a tab, newline and DEL; no counterparty. */
    char *raw = h_db_text(env,
                          "INSERT INTO transactions (external_id, customer_id, amount, currency,"
                          " amount_base, direction, channel, counterparty_name, occurred_at)"
                          " VALUES ('esc-raw', $1, 7, 'USD', 7, 'out', 'cash',"
                          " E'a\\tb\\nc\\x01d\\x1fe\\x7f', '2024-03-01T12:00:00Z') RETURNING id",
                          cust);
    char *bare = h_db_text(env,
                           "INSERT INTO transactions (external_id, customer_id, amount, currency,"
                           " amount_base, direction, channel, occurred_at)"
                           " VALUES ('esc-bare', $1, 8, 'USD', 8, 'out', 'card',"
                           " '2024-03-01T12:00:00Z') RETURNING id",
                           cust);
    assert_non_null(raw);
    assert_non_null(bare);
    d = tx_event_data(env, mark, raw);
    cp = json_object_get(d, "counterparty");
    assert_jstr(cp, "name",
                "a\tb\nc\x01"
                "d\x1f"
                "e\x7f");
    assert_true(json_is_null(json_object_get(cp, "account")));
    assert_true(json_is_null(json_object_get(cp, "country")));
    json_decref(d);
    d = tx_event_data(env, mark, bare);
    assert_true(json_is_null(json_object_get(d, "counterparty")));
    assert_jstr(d, "external_id", "esc-bare");
    json_decref(d);
    free(raw);
    free(bare);
}

static void transaction_get_and_list(void **state)
{
    h_env *env = *state;
    char c1[37], c2[37], t0[37], t1[37], t2[37], t3[37];
    plain_customer(env, "List One", c1);
    plain_customer(env, "List Two", c2);
    ingest_one(env, tx_item("list-1a", c1, "1.11", "USD", "card", OCCURRED), t0);
    ingest_one(env, tx_item("list-1b", c1, "2.22", "GBP", "card", OCCURRED), t1);
    ingest_one(env, tx_item("list-1c", c1, "3.33", "USD", "ach", OCCURRED), t2);
    ingest_one(env, tx_item("list-2a", c2, "4.44", "USD", "card", OCCURRED), t3);
    h_resp r;

    call(env, "GET", NULL, &r, "/transactions/%s", t1);
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "id", t1);
    assert_jstr(r.json, "external_id", "list-1b");
    assert_jstr(r.json, "customer_id", c1);
    assert_jstr(r.json, "amount", "2.22");
    assert_jstr(r.json, "amount_base", "2.8194"); /* 2.22 × 1.27 */
    assert_jstr(r.json, "currency", "GBP");
    assert_jstr(r.json, "occurred_at", "2024-03-01T12:00:00.000000Z");
    h_resp_free(&r);
    expect_problem(env, "GET", "/transactions/" NO_SUCH_ID, NULL, 404, NULL);
    expect_problem(env, "GET", "/transactions/tx-1", NULL, 404, NULL);

    /* In ingest order, only c1's. */
    call(env, "GET", NULL, &r, "/transactions?customer_id=%s", c1);
    assert_int_equal(r.status, 200);
    const json_t *list = jarray(r.json, "items", 3);
    assert_jstr(json_array_get(list, 0), "id", t0);
    assert_jstr(json_array_get(list, 1), "id", t1);
    assert_jstr(json_array_get(list, 2), "id", t2);
    assert_int_equal(count_with(list, "customer_id", c1), 3);
    assert_jnull(r.json, "next");
    h_resp_free(&r);

    /* Two pages of c1's three; "next" is the last id of a full page. */
    call(env, "GET", NULL, &r, "/transactions?customer_id=%s&limit=2", c1);
    assert_int_equal(r.status, 200);
    list = jarray(r.json, "items", 2);
    assert_jstr(json_array_get(list, 0), "id", t0);
    assert_jstr(json_array_get(list, 1), "id", t1);
    assert_jstr(r.json, "next", t1);
    h_resp_free(&r);
    call(env, "GET", NULL, &r, "/transactions?customer_id=%s&limit=2&after=%s", c1, t1);
    assert_int_equal(r.status, 200);
    assert_jstr(json_array_get(jarray(r.json, "items", 1), 0), "id", t2);
    assert_jnull(r.json, "next");
    h_resp_free(&r);

    call(env, "GET", NULL, &r, "/transactions?customer_id=%s", c2);
    assert_int_equal(r.status, 200);
    assert_jstr(json_array_get(jarray(r.json, "items", 1), 0), "id", t3);
    h_resp_free(&r);

    expect_problem(env, "GET", "/transactions?customer_id=c-1", NULL, 422, "customer_id");
}

static void large_cash_raises_alert(void **state)
{
    h_env *env = *state;
    char cust[37], tx[37], alert[37];
    plain_customer(env, "Cash Heavy", cust);
    counts before = snapshot(env);
    long long mark = outbox_mark(env);

    ingest_one(env, tx_item("cash-15k", cust, "15000.00", "USD", "cash", OCCURRED), tx);
    assert_delta(env, &before, 0, 0, 0, 1, 1, 2);
    assert_db_text(env, "15000.00", "SELECT amount::text FROM transactions WHERE id = $1", tx);
    assert_db_text(env, "15000.0000", "SELECT amount_base::text FROM transactions WHERE id = $1",
                   tx);
    alert_of_tx(env, tx, alert);
    /* The transaction's event comes first, then its alert's. */
    assert_events(env, mark, NULL, "aml.transaction.ingested,aml.alert.created");
    json_t *ev = events_of(env, mark, alert);
    assert_int_equal(json_array_size(ev), 1);
    assert_jstr(event_data(ev, 0), "rule_id", "large_cash");
    assert_jstr(event_data(ev, 0), "customer_id", cust);
    json_decref(ev);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM rule_hits WHERE customer_id = $1"
                                " AND rule_id = 'large_cash' AND mode = 'active'"
                                " AND alert_id = $2",
                                cust, alert),
                     1);

    h_resp r;
    call(env, "GET", NULL, &r, "/alerts?customer_id=%s&rule_id=large_cash&status=open", cust);
    assert_int_equal(r.status, 200);
    const json_t *a = json_array_get(jarray(r.json, "items", 1), 0);
    assert_jstr(a, "id", alert);
    assert_jstr(a, "customer_id", cust);
    assert_jstr(a, "rule_id", "large_cash");
    assert_jint(a, "rule_version", 1);
    assert_jstr(json_object_get(a, "params"), "threshold", "10000");
    assert_jstr(a, "severity", "medium");
    assert_jstr(a, "status", "open");
    assert_jnull(a, "disposition");
    const json_t *ids = jarray(a, "transaction_ids", 1);
    assert_string_equal(json_string_value(json_array_get(ids, 0)), tx);
    assert_jstr(json_object_get(a, "aggregates"), "amount_base", "15000.0000");
    assert_jstr(json_object_get(a, "aggregates"), "threshold", "10000");
    h_resp_free(&r);

    call(env, "GET", NULL, &r, "/alerts/%s", alert);
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "id", alert);
    assert_jstr(r.json, "rule_id", "large_cash");
    assert_jint(r.json, "rule_version", 1);
    h_resp_free(&r);

    /* Every rule but large_cash stayed silent, and each filter filters. */
    call(env, "GET", NULL, &r, "/alerts?customer_id=%s", cust);
    assert_int_equal(r.status, 200);
    jarray(r.json, "items", 1);
    h_resp_free(&r);
    call(env, "GET", NULL, &r, "/alerts?customer_id=%s&status=closed", cust);
    assert_int_equal(r.status, 200);
    jarray(r.json, "items", 0);
    h_resp_free(&r);
    call(env, "GET", NULL, &r, "/alerts?customer_id=%s&rule_id=velocity", cust);
    assert_int_equal(r.status, 200);
    jarray(r.json, "items", 0);
    h_resp_free(&r);

    /* The threshold is inclusive: 9999.99 passes, 10000.00 alerts. */
    before = snapshot(env);
    char below[37], at[37];
    ingest_one(env, tx_item("cash-9999", cust, "9999.99", "USD", "cash", OCCURRED), below);
    assert_int_equal(
        h_db_count(env, "SELECT count(*) FROM alerts WHERE $1::uuid = ANY (transaction_ids)",
                   below),
        0);
    ingest_one(env, tx_item("cash-10000", cust, "10000.00", "USD", "cash", OCCURRED), at);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM alerts WHERE rule_id = 'large_cash'"
                                " AND transaction_ids = ARRAY[$1::uuid]",
                                at),
                     1);
    assert_delta(env, &before, 0, 0, 0, 2, 1, 3);

    expect_problem(env, "GET", "/alerts?status=bogus", NULL, 422, "status");
    expect_problem(env, "GET", "/alerts?customer_id=c-1", NULL, 422, "customer_id");
    expect_problem(env, "GET", "/alerts/" NO_SUCH_ID, NULL, 404, NULL);
}

static void transaction_batch_raising_two_alerts(void **state)
{
    h_env *env = *state;
    char cust[37];
    plain_customer(env, "Cash Batch", cust);
    counts before = snapshot(env);
    long long mark = outbox_mark(env);

    json_t *items = json_array();
    json_array_append_new(items,
                          tx_item("cash-batch-1", cust, "15000.00", "USD", "cash", OCCURRED));
    json_array_append_new(items,
                          tx_item("cash-batch-2", cust, "16000.00", "USD", "cash", OCCURRED));
    h_resp r;
    post_batch(env, items, &r);
    assert_int_equal(r.status, 201);
    assert_jint(r.json, "created", 2);
    const json_t *out = jarray(r.json, "items", 2);
    char tx1[37], tx2[37], a1[37], a2[37];
    assert_non_null(jstr(json_array_get(out, 0), "id"));
    assert_non_null(jstr(json_array_get(out, 1), "id"));
    snprintf(tx1, sizeof tx1, "%s", jstr(json_array_get(out, 0), "id"));
    snprintf(tx2, sizeof tx2, "%s", jstr(json_array_get(out, 1), "id"));
    h_resp_free(&r);

    /* One alert per transaction, and one event per row, each its own id. */
    alert_of_tx(env, tx1, a1);
    alert_of_tx(env, tx2, a2);
    assert_string_not_equal(a1, a2);
    assert_delta(env, &before, 0, 0, 0, 2, 2, 4);
    assert_events(env, mark, NULL,
                  "aml.transaction.ingested,aml.transaction.ingested,aml.alert.created,"
                  "aml.alert.created");
    char m[32];
    snprintf(m, sizeof m, "%lld", mark);
    assert_int_equal(
        h_db_count(env, "SELECT count(DISTINCT event_id) FROM outbox WHERE id > $1", m), 4);
    json_decref(events_of(env, mark, a1));
    json_decref(events_of(env, mark, a2));
}

static void alert_workflow(void **state)
{
    h_env *env = *state;
    char cust[37], tx_a[37], tx_b[37], a[37], b[37], path[128];
    plain_customer(env, "Alert Flow", cust);
    ingest_one(env, tx_item("flow-a", cust, "15000.00", "USD", "cash", OCCURRED), tx_a);
    ingest_one(env, tx_item("flow-b", cust, "12000.00", "USD", "cash", OCCURRED), tx_b);
    alert_of_tx(env, tx_a, a);
    alert_of_tx(env, tx_b, b);
    snprintf(path, sizeof path, "/alerts/%s", a);
    counts before = snapshot(env);
    long long mark = outbox_mark(env);

    expect_problem(env, "PATCH", path, "{\"status\": \"closed\", \"disposition\": \"no_action\"}",
                   409, "status"); /* open → closed skips investigating */
    expect_problem(env, "PATCH", path, "{\"status\": \"closed\"}", 422, "disposition");
    expect_problem(env, "PATCH", path,
                   "{\"status\": \"investigating\", \"disposition\": \"false_positive\"}", 422,
                   "disposition");
    expect_problem(env, "PATCH", path, "{\"status\": \"closed\", \"disposition\": \"maybe\"}", 422,
                   "disposition");
    expect_problem(env, "PATCH", path, "{\"status\": \"bogus\"}", 422, "status");
    expect_problem(env, "PATCH", path, "{\"note\": \"no status\"}", 422, "status");
    expect_problem(env, "PATCH", path, "{\"status\": \"investigating\", \"color\": \"red\"}", 422,
                   "color");
    expect_problem(env, "PATCH", "/alerts/" NO_SUCH_ID, "{\"status\": \"investigating\"}", 404,
                   NULL);
    assert_nothing_written(env, &before);
    assert_events(env, mark, NULL, "");
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM alerts WHERE id = $1 AND status = 'open'"
                                " AND actor IS NULL",
                                a),
                     1);

    h_resp r;
    call(env, "PATCH", "{\"status\": \"investigating\"}", &r, "%s", path);
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "id", a);
    assert_jstr(r.json, "status", "investigating");
    assert_jnull(r.json, "disposition");
    assert_jstr(r.json, "actor", ACTOR);
    h_resp_free(&r);

    call(env, "PATCH",
         "{\"status\": \"closed\", \"disposition\": \"false_positive\","
         " \"note\": \"car dealer; cash is normal\"}",
         &r, "%s", path);
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "status", "closed");
    assert_jstr(r.json, "disposition", "false_positive");
    assert_jstr(r.json, "note", "car dealer; cash is normal");
    assert_jstr(r.json, "actor", ACTOR);
    h_resp_free(&r);

    expect_problem(env, "PATCH", path, "{\"status\": \"investigating\"}", 409, "status");

    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM alerts WHERE id = $1 AND status = 'closed'"
                                " AND disposition = 'false_positive'"
                                " AND note = 'car dealer; cash is normal' AND actor = $2",
                                a, ACTOR),
                     1);
    assert_int_equal(
        h_db_count(env, "SELECT count(*) FROM alerts WHERE id = $1 AND status = 'open'", b), 1);
    assert_events(env, mark, NULL, "aml.alert.updated,aml.alert.updated");
    json_t *ev = events_of(env, mark, a);
    assert_int_equal(json_array_size(ev), 2);
    assert_jstr(event_data(ev, 0), "status", "investigating");
    assert_jstr(event_data(ev, 0), "previous_status", "open");
    assert_jstr(event_data(ev, 1), "status", "closed");
    assert_jstr(event_data(ev, 1), "previous_status", "investigating");
    assert_jstr(event_data(ev, 1), "disposition", "false_positive");
    assert_jstr(event_data(ev, 1), "actor", ACTOR);
    json_decref(ev);

    call(env, "GET", NULL, &r, "/alerts?customer_id=%s&status=closed", cust);
    assert_int_equal(r.status, 200);
    assert_jstr(json_array_get(jarray(r.json, "items", 1), 0), "id", a);
    h_resp_free(&r);
}

static void kyc_task_workflow(void **state)
{
    h_env *env = *state;
    char cust[37], task[37], path[128];
    plain_customer(env, "Kyc Flow", cust);

    h_resp r;
    call(env, "GET", NULL, &r, "/kyc/tasks?customer_id=%s&status=open", cust);
    assert_int_equal(r.status, 200);
    const json_t *items = jarray(r.json, "items", 3);
    assert_int_equal(count_with(items, "customer_id", cust), 3);
    assert_int_equal(count_with(items, "status", "open"), 3);
    h_resp_free(&r);
    call(env, "GET", NULL, &r, "/kyc/tasks?customer_id=%s&kind=identity_verification", cust);
    assert_int_equal(r.status, 200);
    const json_t *t = json_array_get(jarray(r.json, "items", 1), 0);
    assert_jstr(t, "kind", "identity_verification");
    assert_non_null(jstr(t, "id"));
    snprintf(task, sizeof task, "%s", jstr(t, "id"));
    h_resp_free(&r);
    snprintf(path, sizeof path, "/kyc/tasks/%s", task);

    counts before = snapshot(env);
    long long mark = outbox_mark(env);
    expect_problem(env, "PATCH", path, "{\"status\": \"completed\"}", 409, "status");
    expect_problem(env, "PATCH", path, "{\"status\": \"done\"}", 422, "status");
    expect_problem(env, "PATCH", path, "{\"status\": \"in_progress\", \"extra\": 1}", 422, "extra");
    expect_problem(env, "PATCH", "/kyc/tasks/" NO_SUCH_ID, "{\"status\": \"in_progress\"}", 404,
                   NULL);
    assert_nothing_written(env, &before);
    assert_events(env, mark, NULL, "");

    call(env, "PATCH", "{\"status\": \"in_progress\"}", &r, "%s", path);
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "id", task);
    assert_jstr(r.json, "status", "in_progress");
    assert_jstr(r.json, "actor", ACTOR);
    h_resp_free(&r);
    call(env, "PATCH", "{\"status\": \"completed\", \"note\": \"passport checked\"}", &r, "%s",
         path);
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "status", "completed");
    assert_jstr(r.json, "note", "passport checked");
    h_resp_free(&r);
    expect_problem(env, "PATCH", path, "{\"status\": \"in_progress\"}", 409, "status");

    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM kyc_tasks WHERE id = $1"
                                " AND status = 'completed' AND note = 'passport checked'"
                                " AND actor = $2",
                                task, ACTOR),
                     1);
    assert_events(env, mark, NULL, "aml.kyc.task.updated,aml.kyc.task.updated");
    json_t *ev = events_of(env, mark, task);
    assert_int_equal(json_array_size(ev), 2);
    assert_jstr(event_data(ev, 0), "status", "in_progress");
    assert_jstr(event_data(ev, 0), "previous_status", "open");
    assert_jstr(event_data(ev, 1), "status", "completed");
    assert_jstr(event_data(ev, 1), "previous_status", "in_progress");
    json_decref(ev);

    call(env, "GET", NULL, &r, "/kyc/tasks?customer_id=%s&status=open", cust);
    assert_int_equal(r.status, 200);
    assert_int_equal(count_with(jarray(r.json, "items", 2), "id", task), 0);
    h_resp_free(&r);
    call(env, "GET", NULL, &r, "/kyc/tasks?customer_id=%s&status=completed", cust);
    assert_int_equal(r.status, 200);
    assert_jstr(json_array_get(jarray(r.json, "items", 1), 0), "id", task);
    h_resp_free(&r);
    expect_problem(env, "GET", "/kyc/tasks?status=bogus", NULL, 422, "status");
}

static int compare_ids(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void errors_are_problem_json(void **state)
{
    h_env *env = *state;
    counts before = snapshot(env);
    h_resp r;

    assert_int_equal(h_http(env, "GET", "/customers", NULL, NULL, -1, NULL, &r), 0);
    assert_problem(&r, 401, "Authorization");
    h_resp_free(&r);
    assert_int_equal(h_http(env, "GET", "/customers", "not-a-key", NULL, -1, NULL, &r), 0);
    assert_problem(&r, 401, NULL);
    h_resp_free(&r);

    char analyst[256];
    assert_int_equal(h_key_create(env, "analyst", analyst, sizeof analyst), 0);
    assert_int_equal(
        h_http(env, "PATCH", "/rules/large_cash", analyst, "{\"mode\": \"shadow\"}", -1, NULL, &r),
        0);
    assert_problem(&r, 403, NULL);
    h_resp_free(&r);

    expect_problem(env, "GET", "/no/such/endpoint", NULL, 404, NULL);
    expect_problem(env, "GET", "/customers/" NO_SUCH_ID, NULL, 404, NULL);
    expect_problem(env, "GET", "/customers/not-a-uuid", NULL, 404, NULL);

    call(env, "DELETE", NULL, &r, "/customers");
    assert_problem(&r, 405, NULL);
    char allow[128];
    assert_int_equal(h_resp_header(&r, "Allow", allow, sizeof allow), 0);
    assert_non_null(strstr(allow, "GET"));
    assert_non_null(strstr(allow, "POST"));
    h_resp_free(&r);

    const char *const text_plain[] = {"Content-Type: text/plain", NULL};
    assert_int_equal(h_http(env, "POST", "/customers", env->admin_key, "{\"full_name\": \"A\"}", -1,
                            text_plain, &r),
                     0);
    assert_problem(&r, 415, "Content-Type");
    h_resp_free(&r);

    expect_problem(env, "POST", "/customers", "{\"full_name\": ", 400, "body");
    expect_problem(env, "POST", "/customers", "{\"full_name\": \"A\", \"full_name\": \"B\"}", 400,
                   "body");
    char deep[64] = ""; /* 20 levels; VIGIL_MAX_JSON_DEPTH is 16 */
    for (int i = 0; i < 20; i++)
        deep[i] = '[', deep[21 + i] = ']';
    deep[20] = '1';
    expect_problem(env, "POST", "/customers", deep, 400, "body");
    expect_problem(env, "POST", "/customers", "[]", 422, NULL);
    expect_problem(env, "POST", "/transactions", "{\"transactions\": []}", 422, "transactions");
    expect_problem(env, "POST", "/transactions", "{\"transactions\": [], \"x\": 1}", 422, "body");
    /* VIGIL_MAX_BATCH (10000) is checked before any item is looked at. */
    json_t *many = json_array();
    for (int i = 0; i < 10001; i++)
        json_array_append_new(many, json_object());
    post_batch(env, many, &r);
    assert_problem(&r, 413, "transactions");
    h_resp_free(&r);

    /* A plain client request id is echoed, in the header and the body. */
    const char *const rid[] = {"X-Request-Id: it-req-42.a_b:c", NULL};
    assert_int_equal(
        h_http(env, "GET", "/customers/" NO_SUCH_ID, env->admin_key, NULL, -1, rid, &r), 0);
    assert_problem(&r, 404, NULL);
    assert_string_equal(r.request_id, "it-req-42.a_b:c");
    h_resp_free(&r);
    assert_int_equal(h_http(env, "GET", "/customers?limit=1", env->admin_key, NULL, -1, rid, &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.request_id, "it-req-42.a_b:c");
    h_resp_free(&r);
    /* One that could forge log lines is replaced by a fresh one. */
    const char *const bad_rid[] = {"X-Request-Id: forged\"id {x}", NULL};
    assert_int_equal(
        h_http(env, "GET", "/customers/" NO_SUCH_ID, env->admin_key, NULL, -1, bad_rid, &r), 0);
    assert_problem(&r, 404, NULL);
    assert_int_equal(strlen(r.request_id), 24);
    assert_int_equal(strspn(r.request_id, "0123456789abcdef"), 24);
    h_resp_free(&r);
    /* Our own ids are handed out from per-thread blocks of 256: more
     * requests than a block (on a kept-alive connection, so mostly one
     * thread) still all get distinct, well-formed ids. */
    enum { N_IDS = 600 };
    char(*ids)[32] = calloc(N_IDS, sizeof *ids);
    assert_non_null(ids);
    for (int i = 0; i < N_IDS; i++) {
        assert_int_equal(h_get(env, NULL, &r, "/healthz"), 0);
        assert_int_equal(r.status, 200);
        assert_int_equal(strlen(r.request_id), 24);
        assert_int_equal(strspn(r.request_id, "0123456789abcdef"), 24);
        memcpy(ids[i], r.request_id, 25); /* 24 characters (checked above) and the NUL */
        h_resp_free(&r);
    }
    qsort(ids, N_IDS, sizeof *ids, compare_ids);
    for (int i = 1; i < N_IDS; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
    free(ids);

    counts now = snapshot(env);
    assert_int_equal(now.customers, before.customers);
    assert_int_equal(now.transactions, before.transactions);
    assert_int_equal(now.outbox, before.outbox);
}

/* ---- atomicity: a write that fails late leaves neither row nor event ------ */

/* A BEFORE INSERT trigger on outbox that refuses the event of transaction
 * 'boom' and the KYC-tasks event of the customer named 'Boom Customer', so
 * that the request fails after its business rows were inserted. */
static void boom_install(h_env *env)
{
    assert_int_equal(
        h_db_exec(env,
                  "SET client_min_messages = warning;\n"
                  "CREATE OR REPLACE FUNCTION it_boom() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                  "BEGIN\n"
                  "  IF NEW.payload->'data'->>'external_id' = 'boom'\n"
                  "     OR (NEW.event_type = 'aml.kyc.tasks.created' AND EXISTS (\n"
                  "         SELECT 1 FROM customers c\n"
                  "         WHERE c.id = (NEW.payload->'data'->>'customer_id')::uuid\n"
                  "           AND c.full_name = 'Boom Customer')) THEN\n"
                  "    RAISE EXCEPTION 'it_boom: refusing %', NEW.event_type;\n"
                  "  END IF;\n"
                  "  RETURN NEW;\n"
                  "END $$;\n"
                  "DROP TRIGGER IF EXISTS it_boom ON outbox;\n"
                  "CREATE TRIGGER it_boom BEFORE INSERT ON outbox\n"
                  "  FOR EACH ROW EXECUTE FUNCTION it_boom();"),
        0);
}

static void boom_remove(h_env *env)
{
    assert_int_equal(h_db_exec(env, "DROP TRIGGER it_boom ON outbox; DROP FUNCTION it_boom()"), 0);
}

static void transaction_failing_at_its_event_leaves_nothing(void **state)
{
    h_env *env = *state;
    char cust[37];
    plain_customer(env, "Boom Tx", cust);
    boom_install(env);
    counts before = snapshot(env);
    long long mark = outbox_mark(env);

    h_resp r;
    send_json(env, "POST", "/transactions",
              tx_item("boom", cust, "15000.00", "USD", "cash", OCCURRED), &r);
    assert_true(r.status >= 500 && r.status <= 599);
    assert_problem(&r, r.status, NULL);
    h_resp_free(&r);
    /* In a batch, the good neighbour goes down with it. */
    json_t *items = json_array();
    json_array_append_new(items, tx_item("boom-neighbour", cust, "1.50", "USD", "card", OCCURRED));
    json_array_append_new(items, tx_item("boom", cust, "15000.00", "USD", "cash", OCCURRED));
    post_batch(env, items, &r);
    assert_true(r.status >= 500 && r.status <= 599);
    assert_problem(&r, r.status, NULL);
    h_resp_free(&r);

    assert_int_equal(h_db_count(env, "SELECT count(*) FROM transactions"
                                     " WHERE external_id IN ('boom', 'boom-neighbour')"),
                     0);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM outbox WHERE payload->'data'->>'external_id'"
                                " IN ('boom', 'boom-neighbour')"),
                     0);
    assert_nothing_written(env, &before);
    assert_events(env, mark, NULL, "");

    boom_remove(env);
    char id[37];
    ingest_one(env, tx_item("boom", cust, "15000.00", "USD", "cash", OCCURRED), id);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM transactions WHERE external_id = 'boom'"
                                " AND id = $1 AND amount::text = '15000.00'",
                                id),
                     1);
    assert_events(env, mark, NULL, "aml.transaction.ingested,aml.alert.created");
    assert_delta(env, &before, 0, 0, 0, 1, 1, 2);
}

static void customer_failing_at_its_last_event_leaves_nothing(void **state)
{
    h_env *env = *state;
    const char *body = "{\"full_name\": \"Boom Customer\", \"email\": \"boom@example.com\"}";
    boom_install(env);
    counts before = snapshot(env);
    long long mark = outbox_mark(env);

    h_resp r;
    call(env, "POST", body, &r, "/customers");
    assert_true(r.status >= 500 && r.status <= 599);
    assert_problem(&r, r.status, NULL);
    h_resp_free(&r);

    assert_int_equal(
        h_db_count(env, "SELECT count(*) FROM customers WHERE full_name = 'Boom Customer'"), 0);
    assert_nothing_written(env, &before);
    assert_events(env, mark, NULL, "");

    boom_remove(env);
    char id[37];
    json_decref(create_customer(env, body, id));
    assert_delta(env, &before, 1, 1, 3, 0, 0, 3);
    assert_events(env, mark, id, "aml.customer.created,aml.customer.risk,aml.kyc.tasks.created");
}

/* ==== rules ================================================================ */

/* Puts large_cash back to threshold 10000, active; returns its version. */
static json_int_t large_cash_reset(h_env *env)
{
    h_resp r;
    fx_approved_patch(env, "/rules/large_cash",
                      "{\"params\": {\"threshold\": \"10000\"}, \"mode\": \"active\"}", &r);
    assert_int_equal(r.status, 200);
    const json_t *v = json_object_get(r.json, "version");
    assert_true(json_is_integer(v));
    json_int_t version = json_integer_value(v);
    h_resp_free(&r);
    return version;
}

static void rules_list(void **state)
{
    h_env *env = *state;
    h_resp r;
    call(env, "GET", NULL, &r, "/rules");
    assert_int_equal(r.status, 200);
    const json_t *items = jarray(r.json, "items", 7);
    const char *const ids[] = {"dormant_reactivation",
                               "high_risk_jurisdiction",
                               "large_cash",
                               "rapid_movement",
                               "round_amounts",
                               "structuring",
                               "velocity"};
    for (size_t i = 0; i < 7; i++) {
        const json_t *rule = json_array_get(items, i);
        assert_jstr(rule, "id", ids[i]); /* ordered by id */
        assert_true(jstr(rule, "name") && jstr(rule, "name")[0]);
        assert_true(jstr(rule, "description") && jstr(rule, "description")[0]);
        assert_true(json_is_object(json_object_get(rule, "params")));
        assert_true(json_object_size(json_object_get(rule, "params")) > 0);
        char v[32];
        snprintf(v, sizeof v, "%lld",
                 (long long)json_integer_value(json_object_get(rule, "version")));
        assert_int_equal(h_db_count(env,
                                    "SELECT count(*) FROM rules WHERE id = $1"
                                    " AND version = $2::int AND mode = $3 AND severity = $4",
                                    ids[i], v, jstr(rule, "mode"), jstr(rule, "severity")),
                         1);
    }
    assert_jstr(json_object_get(json_array_get(items, 5), "params"), "threshold", "10000");
    assert_jint(json_object_get(json_array_get(items, 5), "params"), "min_count", 3);
    h_resp_free(&r);
}

static void rule_change_applies_to_later_alerts_only(void **state)
{
    h_env *env = *state;
    json_int_t v = large_cash_reset(env);
    char cust[37], tx[37], early[37], late[37];
    plain_customer(env, "Rule Change", cust);
    ingest_one(env, tx_item("rule-15k-a", cust, "15000.00", "USD", "cash", OCCURRED), tx);
    alert_of_tx(env, tx, early);

    long long mark = outbox_mark(env);
    h_resp r;
    fx_approved_patch(env, "/rules/large_cash", "{\"params\": {\"threshold\": \"20000\"}}", &r);
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "id", "large_cash");
    assert_jint(r.json, "version", v + 1);
    assert_jstr(json_object_get(r.json, "params"), "threshold", "20000");
    assert_jstr(r.json, "mode", "active");
    assert_jstr(r.json, "updated_by", ACTOR);
    h_resp_free(&r);
    char want_v[32];
    snprintf(want_v, sizeof want_v, "%lld", (long long)(v + 1));
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM rules WHERE id = 'large_cash'"
                                " AND version = $1::int AND params->>'threshold' = '20000'",
                                want_v),
                     1);
    /* Four eyes: the proposal, its approval, then the change. */
    assert_events(env, mark, NULL, "aml.approval.proposed,aml.approval.approved,aml.rule.changed");
    json_t *ev = events_of(env, mark, "large_cash");
    assert_int_equal(json_array_size(ev), 1);
    assert_jint(event_data(ev, 0), "version", v + 1);
    const json_t *prev = json_object_get(event_data(ev, 0), "previous");
    assert_jint(prev, "version", v);
    assert_jstr(json_object_get(prev, "params"), "threshold", "10000");
    json_decref(ev);

    /* 15000 is under the new threshold: no hit, no alert. */
    counts before = snapshot(env);
    ingest_one(env, tx_item("rule-15k-b", cust, "15000.00", "USD", "cash", OCCURRED), tx);
    assert_int_equal(
        h_db_count(env, "SELECT count(*) FROM rule_hits WHERE $1::uuid = ANY (transaction_ids)",
                   tx),
        0);
    assert_delta(env, &before, 0, 0, 0, 1, 0, 1);

    /* 25000 alerts, and the alert records the rule as it is now. */
    ingest_one(env, tx_item("rule-25k", cust, "25000.00", "USD", "cash", OCCURRED), tx);
    alert_of_tx(env, tx, late);
    call(env, "GET", NULL, &r, "/alerts/%s", late);
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "rule_id", "large_cash");
    assert_jint(r.json, "rule_version", v + 1);
    assert_jstr(json_object_get(r.json, "params"), "threshold", "20000");
    assert_jstr(json_object_get(r.json, "aggregates"), "threshold", "20000");
    assert_jstr(json_object_get(r.json, "aggregates"), "amount_base", "25000.0000");
    h_resp_free(&r);
    /* The earlier alert keeps the rule it fired under. */
    call(env, "GET", NULL, &r, "/alerts/%s", early);
    assert_int_equal(r.status, 200);
    assert_jint(r.json, "rule_version", v);
    assert_jstr(json_object_get(r.json, "params"), "threshold", "10000");
    h_resp_free(&r);

    large_cash_reset(env);
}

static void rule_patch_refusals(void **state)
{
    h_env *env = *state;
    json_int_t v = large_cash_reset(env);
    char *structuring = h_db_text(env, "SELECT version || ' ' || params::text FROM rules"
                                       " WHERE id = 'structuring'");
    assert_non_null(structuring);
    counts before = snapshot(env);
    long long mark = outbox_mark(env);

    const char *lc = "/rules/large_cash", *st = "/rules/structuring";
    expect_problem(env, "PATCH", lc, "{\"params\": {\"xyz\": \"1\"}}", 422, "params.xyz");
    expect_problem(env, "PATCH", lc, "{\"params\": {\"threshold\": \"20000\", \"xyz\": 1}}", 422,
                   "params.xyz");
    expect_problem(env, "PATCH", lc, "{\"params\": {\"threshold\": 20000}}", 422,
                   "params.threshold");
    expect_problem(env, "PATCH", lc, "{\"params\": {\"threshold\": \"-5\"}}", 422,
                   "params.threshold");
    expect_problem(env, "PATCH", lc, "{\"params\": {\"threshold\": \"0\"}}", 422,
                   "params.threshold");
    expect_problem(env, "PATCH", st, "{\"params\": {\"min_count\": \"3\"}}", 422,
                   "params.min_count");
    expect_problem(env, "PATCH", st, "{\"params\": {\"lower_pct\": 150}}", 422, "params.lower_pct");
    expect_problem(env, "PATCH", lc, "{\"params\": [1]}", 422, "params");
    expect_problem(env, "PATCH", lc, "{\"mode\": \"bogus\"}", 422, "mode");
    expect_problem(env, "PATCH", lc, "{\"severity\": \"extreme\"}", 422, "severity");
    expect_problem(env, "PATCH", lc, "{\"enabled\": true}", 422, "enabled");
    expect_problem(env, "PATCH", lc, "{}", 422, NULL);
    expect_problem(env, "PATCH", "/rules/no_such_rule", "{\"mode\": \"active\"}", 404, NULL);

    assert_nothing_written(env, &before);
    assert_events(env, mark, NULL, "");
    char want_v[32];
    snprintf(want_v, sizeof want_v, "%lld", (long long)v);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM rules WHERE id = 'large_cash'"
                                " AND version = $1::int AND mode = 'active'"
                                " AND params = '{\"threshold\": \"10000\"}'::jsonb",
                                want_v),
                     1);
    assert_db_text(env, structuring,
                   "SELECT version || ' ' || params::text FROM rules WHERE id = 'structuring'");
    free(structuring);
}

static void rule_shadow_and_disabled_modes(void **state)
{
    h_env *env = *state;
    json_int_t v = large_cash_reset(env);
    char cust[37], tx[37];
    plain_customer(env, "Shadow Mode", cust);

    long long mark = outbox_mark(env);
    h_resp r;
    fx_approved_patch(env, "/rules/large_cash", "{\"mode\": \"shadow\"}", &r);
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "mode", "shadow");
    assert_jint(r.json, "version", v + 1);
    h_resp_free(&r);
    assert_events(env, mark, "large_cash", "aml.rule.changed");

    /* Shadow: the hit is recorded, no alert is raised. */
    counts before = snapshot(env);
    mark = outbox_mark(env);
    ingest_one(env, tx_item("shadow-15k", cust, "15000.00", "USD", "cash", OCCURRED), tx);
    char want_v[32];
    snprintf(want_v, sizeof want_v, "%lld", (long long)(v + 1));
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM rule_hits WHERE rule_id = 'large_cash'"
                                " AND mode = 'shadow' AND alert_id IS NULL"
                                " AND rule_version = $2::int AND transaction_ids = ARRAY[$1::uuid]",
                                tx, want_v),
                     1);
    assert_delta(env, &before, 0, 0, 0, 1, 0, 1);
    assert_events(env, mark, NULL, "aml.transaction.ingested");

    /* Disabled: not even a hit. */
    fx_approved_patch(env, "/rules/large_cash", "{\"mode\": \"disabled\"}", &r);
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "mode", "disabled");
    h_resp_free(&r);
    ingest_one(env, tx_item("disabled-15k", cust, "15000.00", "USD", "cash", OCCURRED), tx);
    assert_int_equal(
        h_db_count(env, "SELECT count(*) FROM rule_hits WHERE $1::uuid = ANY (transaction_ids)",
                   tx),
        0);

    assert_int_equal(large_cash_reset(env), v + 3);
}

int main(void)
{
    const struct CMUnitTest customers[] = {
        cmocka_unit_test(customer_create_scores_opens_tasks_and_emits),
        cmocka_unit_test(customer_external_id_is_idempotent),
        cmocka_unit_test(customer_pep_in_high_risk_country_gets_edd),
        cmocka_unit_test(customer_patch_rescores),
        cmocka_unit_test(customer_patch_refusals),
        cmocka_unit_test(customer_post_refusals),
        cmocka_unit_test(customers_keyset_pagination),
    };
    const struct CMUnitTest casework[] = {
        cmocka_unit_test(transaction_single_and_idempotent),
        cmocka_unit_test(transaction_batch_of_50),
        cmocka_unit_test(transaction_batch_duplicates),
        cmocka_unit_test(transaction_batch_with_bad_items_is_refused_whole),
        cmocka_unit_test(transaction_batch_naming_unknown_customer_is_refused),
        cmocka_unit_test(transaction_get_and_list),
        cmocka_unit_test(transaction_event_text_escapes),
        cmocka_unit_test(large_cash_raises_alert),
        cmocka_unit_test(transaction_batch_raising_two_alerts),
        cmocka_unit_test(alert_workflow),
        cmocka_unit_test(kyc_task_workflow),
        cmocka_unit_test(errors_are_problem_json),
        cmocka_unit_test(transaction_failing_at_its_event_leaves_nothing),
        cmocka_unit_test(customer_failing_at_its_last_event_leaves_nothing),
    };
    const struct CMUnitTest rules[] = {
        cmocka_unit_test(rules_list),
        cmocka_unit_test(rule_change_applies_to_later_alerts_only),
        cmocka_unit_test(rule_patch_refusals),
        cmocka_unit_test(rule_shadow_and_disabled_modes),
    };
    /* Only the API: the sequencer would move events out of the outbox while
     * the tests look for them there (the pipeline has its own suites). */
    setenv("VIGIL_ROLES", "api", 1);
    int failed = 0;
    failed += cmocka_run_group_tests_name("customers", customers, group_setup, group_teardown);
    failed += cmocka_run_group_tests_name("casework", casework, group_setup, group_teardown);
    failed += cmocka_run_group_tests_name("rules", rules, group_setup, group_teardown);
    return failed ? 1 : 0;
}
