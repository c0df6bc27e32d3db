/*
 * test_rules.c — the seven monitoring rules end to end: batches posted over
 * HTTP to the real `vigil serve`, alerts read back over HTTP, rule hits and
 * events read from PostgreSQL.
 *
 * For every rule, one test whose transactions must fire it, checking the
 * alert completely (rule version, params, severity, transaction ids in
 * occurred_at order, aggregates, window end, its rule_hits row), and one
 * whose transactions sit just on the wrong side of each threshold or window
 * and must not. Then suppression of a growing pattern, shadow and disabled
 * modes, and the order of events in the outbox.
 *
 * One environment for the file. Each test makes its own customers and counts
 * only their rows, so the tests do not depend on the order they run in; the
 * mode tests put their rule back to active in their teardown. All times are
 * fixed dates in the past, far apart per test, so windows never overlap by
 * accident.
 */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fixture_approvals.h"

#define MAX_BATCH 32

/* One transaction of a batch; NULL currency means USD, NULL cp_country no
 * counterparty. */
typedef struct tx {
    const char *amount, *direction, *channel, *occurred_at, *currency, *cp_country;
} tx;

/* In USD, in another currency, with a counterparty in a country. */
#define TX(amount, dir, channel, at)          ((tx){amount, dir, channel, at, NULL, NULL})
#define TX_CUR(amount, dir, channel, at, cur) ((tx){amount, dir, channel, at, cur, NULL})
#define TX_CP(amount, dir, channel, at, cp)   ((tx){amount, dir, channel, at, NULL, cp})

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

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* Sends `body` (stolen, may be NULL) with the admin key; asserts a response
 * arrived. */
static void call(h_env *env, const char *method, json_t *body, h_resp *r, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void call(h_env *env, const char *method, json_t *body, h_resp *r, const char *fmt, ...)
{
    char path[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    assert_int_equal(h_http(env, method, path, env->admin_key, text, -1, NULL, r), 0);
    free(text);
}

/* Onboards a customer living in `country`; its id goes to id. */
static void new_customer(h_env *env, const char *country, char id[37])
{
    static int n;
    char name[64];
    snprintf(name, sizeof name, "Rules Test %d", ++n);
    h_resp r;
    call(env, "POST", json_pack("{s:s, s:s}", "full_name", name, "country", country), &r,
         "/customers");
    assert_int_equal(r.status, 201);
    const json_t *c = json_object_get(r.json, "customer");
    const char *v = jstr(c ? c : r.json, "id");
    assert_non_null(v);
    assert_int_equal(strlen(v), 36);
    memcpy(id, v, 37);
    h_resp_free(&r);
}

/* Posts txs[0..n) for customer `cust` as one batch (one INSERT, one rule
 * evaluation) and copies the stored ids, in order, into ids (may be NULL). */
static void post_batch(h_env *env, const char *cust, const tx *txs, size_t n, char (*ids)[37])
{
    static int seq;
    assert_true(n > 0 && n <= MAX_BATCH);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        char ext[64];
        snprintf(ext, sizeof ext, "rules-%d", ++seq);
        json_t *item =
            json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "external_id", ext, "customer_id",
                      cust, "amount", txs[i].amount, "currency",
                      txs[i].currency ? txs[i].currency : "USD", "direction", txs[i].direction,
                      "channel", txs[i].channel, "occurred_at", txs[i].occurred_at);
        assert_non_null(item);
        if (txs[i].cp_country)
            json_object_set_new(item, "counterparty",
                                json_pack("{s:s}", "country", txs[i].cp_country));
        json_array_append_new(list, item);
    }
    h_resp r;
    call(env, "POST", json_pack("{s:o}", "transactions", list), &r, "/transactions");
    if (r.status != 201)
        fail_msg("POST /transactions: %ld %s", r.status, r.body);
    const json_t *items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), n);
    for (size_t i = 0; ids && i < n; i++) {
        const char *id = jstr(json_array_get(items, i), "id");
        assert_non_null(id);
        memcpy(ids[i], id, 37);
    }
    h_resp_free(&r);
}

/* ---- assertions ----------------------------------------------------------- */

static long long alerts_of(h_env *env, const char *cust, const char *rule)
{
    return h_db_count(env, "SELECT count(*) FROM alerts WHERE customer_id = $1 AND rule_id = $2",
                      cust, rule);
}

static long long hits_of(h_env *env, const char *cust, const char *rule, const char *mode)
{
    return h_db_count(env,
                      "SELECT count(*) FROM rule_hits WHERE customer_id = $1 AND rule_id = $2"
                      " AND mode = $3",
                      cust, rule, mode);
}

/* Asserts that `rule` raised nothing at all for `cust`, in any mode. */
static void assert_quiet(h_env *env, const char *cust, const char *rule)
{
    assert_int_equal(alerts_of(env, cust, rule), 0);
    assert_int_equal(
        h_db_count(env, "SELECT count(*) FROM rule_hits WHERE customer_id = $1 AND rule_id = $2",
                   cust, rule),
        0);
}

/* The sequencer drains the outbox into event_log, so events are looked for
 * there, once the alert's has been sequenced: its aml.alert.created must
 * come after the aml.transaction.ingested of each of its n transactions. */
static void assert_events_in_order(h_env *env, const char *alert_id, long long n)
{
    long long deadline = h_now_ms() + 15000;
    while (h_db_count(env,
                      "SELECT count(*) FROM event_log WHERE subject = $1"
                      " AND event_type = 'aml.alert.created'",
                      alert_id) != 1) {
        if (h_now_ms() > deadline)
            fail_msg("aml.alert.created of alert %s never reached event_log", alert_id);
        h_sleep_ms(20);
    }
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM event_log e, alerts a, event_log t"
                                " WHERE e.subject = $1 AND e.event_type = 'aml.alert.created'"
                                " AND a.id = $1::uuid AND t.event_type = 'aml.transaction.ingested'"
                                " AND t.subject::uuid = ANY (a.transaction_ids) AND t.seq < e.seq",
                                alert_id),
                     n);
}

/* The events of one type written so far, sequenced or not, as an SQL
 * subquery of (subject, p = the payload's text). One statement reads both
 * tables in one snapshot, so an event is in exactly one of them. */
#define EVENTS_OF_TYPE(type)                                                                       \
    "(SELECT subject, payload::text AS p FROM outbox WHERE event_type = '" type "'"                \
    " UNION ALL SELECT subject, payload::text FROM event_log WHERE event_type = '" type "')"

/* aml.alert.created events written so far, sequenced or not. */
static long long alert_events(h_env *env)
{
    long long n = h_db_count(env, "SELECT count(*) FROM " EVENTS_OF_TYPE("aml.alert.created") " e");
    assert_true(n >= 0);
    return n;
}

/* The one alert of `rule` for `cust`, read through GET /alerts, checked
 * against the rule as it is now and against the transactions it names:
 * expect[0..n) in this order (occurred_at order), window_end their latest
 * occurred_at, one active rule_hits row pointing at it, and its event after
 * theirs. Returns the alert's aggregates (owned by
 * *alert, which the caller json_decref-s). */
static const json_t *the_alert(h_env *env, const char *cust, const char *rule, char (*expect)[37],
                               size_t n, json_t **alert)
{
    h_resp r;
    call(env, "GET", NULL, &r, "/alerts?customer_id=%s&rule_id=%s", cust, rule);
    assert_int_equal(r.status, 200);
    const json_t *items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 1);
    json_t *a = json_incref(json_array_get(items, 0));
    h_resp_free(&r);

    const char *id = jstr(a, "id");
    assert_non_null(id);
    assert_string_equal(jstr(a, "rule_id"), rule);
    assert_string_equal(jstr(a, "customer_id"), cust);
    assert_string_equal(jstr(a, "status"), "open");

    /* rule_version, params and severity are the rule's, as in force. */
    assert_true(json_is_integer(json_object_get(a, "rule_version")));
    char version[24];
    snprintf(version, sizeof version, "%lld",
             (long long)json_integer_value(json_object_get(a, "rule_version")));
    char *params = json_dumps(json_object_get(a, "params"), JSON_COMPACT);
    assert_non_null(params);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM rules WHERE id = $1 AND version = $2::int"
                                " AND params = $3::jsonb AND severity = $4",
                                rule, version, params, jstr(a, "severity")),
                     1);
    free(params);

    const json_t *got = json_object_get(a, "transaction_ids");
    assert_int_equal(json_array_size(got), n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(json_string_value(json_array_get(got, i)), expect[i]);

    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM alerts a WHERE id = $1 AND window_end ="
                                " (SELECT max(occurred_at) FROM transactions t"
                                "  WHERE t.id = ANY (a.transaction_ids))",
                                id),
                     1);
    assert_int_equal(
        h_db_count(env,
                   "SELECT count(*) FROM rule_hits h JOIN alerts a ON a.id = h.alert_id"
                   " WHERE h.alert_id = $1 AND h.mode = 'active'"
                   " AND h.rule_version = a.rule_version"
                   " AND h.transaction_ids = a.transaction_ids"
                   " AND h.aggregates = a.aggregates AND h.window_end = a.window_end",
                   id),
        1);
    assert_events_in_order(env, id, (long long)n);

    const json_t *agg = json_object_get(a, "aggregates");
    assert_true(json_is_object(agg) && json_object_size(agg) > 0);
    *alert = a;
    return agg;
}

static void assert_agg_str(const json_t *agg, const char *key, const char *expect)
{
    const char *v = jstr(agg, key);
    if (!v)
        fail_msg("aggregate \"%s\" is missing or not a string (want \"%s\")", key, expect);
    assert_string_equal(v, expect);
}

static void assert_agg_int(const json_t *agg, const char *key, json_int_t expect)
{
    const json_t *v = json_object_get(agg, key);
    if (!json_is_integer(v))
        fail_msg("aggregate \"%s\" is missing or not an integer", key);
    assert_int_equal(json_integer_value(v), expect);
}

/* The string array aggregate `key`, joined with ','. */
static void assert_agg_list(const json_t *agg, const char *key, const char *expect)
{
    const json_t *a = json_object_get(agg, key);
    assert_true(json_is_array(a));
    char buf[256] = "";
    size_t i;
    const json_t *e;
    json_array_foreach(a, i, e)
    {
        assert_true(json_is_string(e));
        if (i)
            strcat(buf, ",");
        strncat(buf, json_string_value(e), sizeof buf - strlen(buf) - 2);
    }
    assert_string_equal(buf, expect);
}

/* Sets a rule's mode through PATCH /rules/{id} and its approval by a
 * second admin (four eyes); returns its new version. */
static long long set_mode(h_env *env, const char *rule, const char *mode)
{
    h_resp r;
    char path[128], body[64];
    snprintf(path, sizeof path, "/rules/%s", rule);
    snprintf(body, sizeof body, "{\"mode\": \"%s\"}", mode);
    fx_approved_patch(env, path, body, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "mode"), mode);
    long long v = json_integer_value(json_object_get(r.json, "version"));
    assert_true(v > 1);
    h_resp_free(&r);
    return v;
}

/* ==== large_cash {threshold: "10000"} ===================================== */

static void large_cash_fires(void **state)
{
    h_env *env = *state;
    char cust[37], ids[2][37];
    new_customer(env, "GB", cust);
    /* At the threshold exactly, and 8000 GBP out = 10160 USD base. */
    const tx b[] = {TX("10000.00", "in", "cash", "2025-01-06T10:00:00Z"),
                    TX_CUR("8000", "out", "cash", "2025-01-06T11:00:00Z", "GBP")};
    post_batch(env, cust, b, 2, ids);

    assert_int_equal(alerts_of(env, cust, "large_cash"), 2);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM alerts WHERE rule_id = 'large_cash'"
                                " AND transaction_ids = ARRAY[$1::uuid]"
                                " AND aggregates = '{\"amount_base\": \"10000.0000\","
                                " \"threshold\": \"10000\"}'",
                                ids[0]),
                     1);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM alerts WHERE rule_id = 'large_cash'"
                                " AND transaction_ids = ARRAY[$1::uuid] AND severity = 'medium'"
                                " AND aggregates->>'amount_base' = '10160.0000'",
                                ids[1]),
                     1);
    assert_int_equal(hits_of(env, cust, "large_cash", "active"), 2);
}

static void large_cash_quiet(void **state)
{
    h_env *env = *state;
    char cust[37];
    new_customer(env, "GB", cust);
    /* A cent under; large but not cash; 9259.25 EUR = 9999.99 USD. */
    const tx b[] = {TX("9999.99", "in", "cash", "2025-01-13T10:00:00Z"),
                    TX("50000", "out", "wire", "2025-01-13T11:00:00Z"),
                    TX_CUR("9259.25", "in", "cash", "2025-01-13T12:00:00Z", "EUR")};
    post_batch(env, cust, b, 3, NULL);
    assert_quiet(env, cust, "large_cash");
}

/* ==== structuring {threshold "10000", lower_pct 90, min_count 3, 24 h} ===== */

static void structuring_fires(void **state)
{
    h_env *env = *state;
    char cust[37], ids[4][37];
    new_customer(env, "GB", cust);
    /* Two deposits now, the third in a later request: the rule reads the
     * history, not only the batch. 23:59:59 apart end to end. */
    const tx b1[] = {TX("9500", "in", "cash", "2025-02-03T10:00:00Z"),
                     TX("9100", "in", "cash", "2025-02-03T15:00:00Z")};
    post_batch(env, cust, b1, 2, ids);
    assert_quiet(env, cust, "structuring");
    const tx b2[] = {TX("9900", "in", "cash", "2025-02-04T09:59:59Z")};
    post_batch(env, cust, b2, 1, ids + 2);

    json_t *a;
    const json_t *agg = the_alert(env, cust, "structuring", ids, 3, &a);
    assert_agg_int(agg, "count", 3);
    assert_agg_str(agg, "sum", "28500.0000");
    assert_agg_str(agg, "window_start", "2025-02-03T09:59:59.000000Z");
    assert_agg_str(agg, "window_end", "2025-02-04T09:59:59.000000Z");
    assert_string_equal(jstr(a, "severity"), "high");
    json_decref(a);

    /* A fourth deposit continues the same pattern: no second alert. */
    const tx b3[] = {TX("9000", "in", "cash", "2025-02-04T11:00:00Z")};
    post_batch(env, cust, b3, 1, ids + 3);
    assert_int_equal(alerts_of(env, cust, "structuring"), 1);
    assert_int_equal(hits_of(env, cust, "structuring", "active"), 1);
}

static void structuring_quiet(void **state)
{
    h_env *env = *state;
    char cust[37];
    new_customer(env, "GB", cust);
    /* 8999.99 is under 90 %; the last deposit is 24 h + 1 s after the
     * first, so no 24 h window holds three; an outgoing cash payment and a
     * wire deposit of the right size do not count. */
    const tx b1[] = {TX("9500", "in", "cash", "2025-02-10T10:00:00Z"),
                     TX("8999.99", "in", "cash", "2025-02-10T11:00:00Z"),
                     TX("9500", "in", "cash", "2025-02-10T12:00:00Z"),
                     TX("9500", "out", "cash", "2025-02-10T13:00:00Z"),
                     TX("9500", "in", "wire", "2025-02-10T14:00:00Z")};
    post_batch(env, cust, b1, 5, NULL);
    const tx b2[] = {TX("9500", "in", "cash", "2025-02-11T10:00:01Z")};
    post_batch(env, cust, b2, 1, NULL);
    assert_quiet(env, cust, "structuring");
}

/* ==== velocity {max_count 20, window_minutes 60} =========================== */

/* n card payments from `start` (an hour's minute) on 2025-03-DAY, `step`
 * minutes apart, as one batch. */
static void post_card_run(h_env *env, const char *cust, int day, int hour, int first_min, int step,
                          size_t n, char (*ids)[37])
{
    tx b[MAX_BATCH];
    char when[MAX_BATCH][32];
    for (size_t i = 0; i < n; i++) {
        int m = first_min + (int)i * step;
        snprintf(when[i], sizeof when[i], "2025-03-%02dT%02d:%02d:00Z", day, hour + m / 60, m % 60);
        b[i] = TX("25.00", "out", "card", when[i]);
    }
    post_batch(env, cust, b, n, ids);
}

static void velocity_fires(void **state)
{
    h_env *env = *state;
    char cust[37], ids[22][37];
    new_customer(env, "GB", cust);
    post_card_run(env, cust, 3, 10, 0, 2, 20, ids); /* 10:00 .. 10:38 */
    assert_quiet(env, cust, "velocity");
    /* The 21st at 11:00 sharp: [10:00, 11:00] holds 21, more than 20. */
    post_card_run(env, cust, 3, 11, 0, 1, 1, ids + 20);

    json_t *a;
    const json_t *agg = the_alert(env, cust, "velocity", ids, 21, &a);
    assert_agg_int(agg, "count", 21);
    assert_agg_str(agg, "window_start", "2025-03-03T10:00:00.000000Z");
    json_decref(a);
}

static void velocity_quiet(void **state)
{
    h_env *env = *state;
    char cust[37];
    new_customer(env, "GB", cust);
    /* 21 payments, but the first one is 61 minutes before the last. */
    post_card_run(env, cust, 10, 10, 0, 1, 1, NULL);
    post_card_run(env, cust, 10, 10, 4, 3, 20, NULL); /* 10:04 .. 11:01 */
    assert_quiet(env, cust, "velocity");
}

/* ==== high_risk_jurisdiction {window_hours 24} ============================= */

static void high_risk_jurisdiction_fires(void **state)
{
    h_env *env = *state;
    char cust[37], ids[3][37];
    new_customer(env, "GB", cust);
    /* Iran (FATF black) and Nigeria (grey) counterparties; France is not
     * listed and stays out of the alert. */
    const tx b[] = {TX_CP("120", "out", "wire", "2025-04-07T09:00:00Z", "NG"),
                    TX_CP("130", "out", "wire", "2025-04-07T09:30:00Z", "FR"),
                    TX_CP("140", "out", "wire", "2025-04-07T10:00:00Z", "IR")};
    post_batch(env, cust, b, 3, ids);

    char flagged[2][37];
    memcpy(flagged[0], ids[0], 37);
    memcpy(flagged[1], ids[2], 37);
    json_t *a;
    const json_t *agg = the_alert(env, cust, "high_risk_jurisdiction", flagged, 2, &a);
    assert_agg_list(agg, "countries", "IR,NG");
    assert_agg_list(agg, "lists", "fatf_black,fatf_grey");
    json_decref(a);

    /* A customer who lives in a listed country: every transaction counts. */
    char kp[37], kp_ids[2][37];
    new_customer(env, "KP", kp);
    const tx k[] = {TX("10", "in", "card", "2025-04-07T09:00:00Z"),
                    TX_CP("20", "out", "ach", "2025-04-07T10:00:00Z", "FR")};
    post_batch(env, kp, k, 2, kp_ids);
    agg = the_alert(env, kp, "high_risk_jurisdiction", kp_ids, 2, &a);
    assert_agg_list(agg, "countries", "KP");
    json_decref(a);
}

static void high_risk_jurisdiction_quiet(void **state)
{
    h_env *env = *state;
    char cust[37];
    new_customer(env, "GB", cust);
    const tx b[] = {TX_CP("120", "out", "wire", "2025-04-14T09:00:00Z", "FR"),
                    TX_CP("130", "in", "wire", "2025-04-14T10:00:00Z", "US"),
                    TX("140", "out", "card", "2025-04-14T11:00:00Z")};
    post_batch(env, cust, b, 3, NULL);
    assert_quiet(env, cust, "high_risk_jurisdiction");
}

/* ==== rapid_movement {min_inflow "5000", out_pct 90, window_hours 48} ====== */

static void rapid_movement_fires(void **state)
{
    h_env *env = *state;
    char cust[37], ids[3][37];
    new_customer(env, "GB", cust);
    const tx b1[] = {TX("5000", "in", "wire", "2025-05-05T10:00:00Z")};
    post_batch(env, cust, b1, 1, ids);
    /* 4499.99 + 0.01 = 90 % of the inflow, the last one exactly 48 h after
     * it (the window is inclusive). */
    const tx b2[] = {TX("4499.99", "out", "wire", "2025-05-06T10:00:00Z"),
                     TX("0.01", "out", "card", "2025-05-07T10:00:00Z")};
    post_batch(env, cust, b2, 2, ids + 1);

    json_t *a;
    const json_t *agg = the_alert(env, cust, "rapid_movement", ids, 3, &a);
    assert_agg_str(agg, "inflow", "5000.0000");
    assert_agg_str(agg, "outflow", "4500.0000");
    assert_agg_str(agg, "ratio_pct", "90.00");
    json_decref(a);
}

/* The outflows that count are those after the window's FIRST inflow, also
 * when a later inflow follows them; an outflow before it is neither summed
 * nor listed. In: 5,000 then 10; out: 4,600 between them (91.8 %). */
static void rapid_movement_counts_from_first_inflow(void **state)
{
    h_env *env = *state;
    char cust[37], ids[4][37];
    new_customer(env, "GB", cust);
    const tx b[] = {TX("700", "out", "wire", "2025-05-19T09:00:00Z"),
                    TX("5000", "in", "wire", "2025-05-19T10:00:00Z"),
                    TX("4600", "out", "wire", "2025-05-19T11:00:00Z"),
                    TX("10", "in", "wire", "2025-05-19T12:00:00Z")};
    post_batch(env, cust, b, 4, ids);

    json_t *a;
    const json_t *agg = the_alert(env, cust, "rapid_movement", ids + 1, 3, &a);
    assert_agg_str(agg, "inflow", "5010.0000");
    assert_agg_str(agg, "outflow", "4600.0000");
    assert_agg_str(agg, "ratio_pct", "91.82");
    json_decref(a);
}

static void rapid_movement_quiet(void **state)
{
    h_env *env = *state;
    char c1[37], c2[37], c3[37];
    new_customer(env, "GB", c1);
    new_customer(env, "GB", c2);
    new_customer(env, "GB", c3);
    /* 89.99 %, and an outflow before the first inflow does not count. */
    const tx b1[] = {TX("5000", "out", "wire", "2025-05-12T09:00:00Z"),
                     TX("5000", "in", "wire", "2025-05-12T10:00:00Z"),
                     TX("4499.99", "out", "wire", "2025-05-13T10:00:00Z")};
    post_batch(env, c1, b1, 3, NULL);
    /* Inflow a cent under min_inflow, all of it out again. */
    const tx b2[] = {TX("4999.99", "in", "wire", "2025-05-12T10:00:00Z"),
                     TX("4999.99", "out", "wire", "2025-05-12T11:00:00Z")};
    post_batch(env, c2, b2, 2, NULL);
    /* The outflow 48 h + 1 s after the inflow. */
    const tx b3[] = {TX("6000", "in", "wire", "2025-05-12T10:00:00Z")};
    post_batch(env, c3, b3, 1, NULL);
    const tx b4[] = {TX("6000", "out", "wire", "2025-05-14T10:00:01Z")};
    post_batch(env, c3, b4, 1, NULL);
    assert_quiet(env, c1, "rapid_movement");
    assert_quiet(env, c2, "rapid_movement");
    assert_quiet(env, c3, "rapid_movement");
}

/* A growing pattern alerts once: a batch that keeps it over the thresholds
 * inside the window of the earlier hit is suppressed (vigil_record_hits's
 * test, made first by rapid_movement itself since 0025), and a new pattern
 * whose window starts at or after the earlier hit's end alerts again. A
 * suppressed customer's neighbour in time is not suppressed by it. */
static void rapid_movement_suppressed_then_again(void **state)
{
    h_env *env = *state;
    char cust[37], other[37], edge[37], inside[37];
    new_customer(env, "GB", cust);
    new_customer(env, "GB", other);
    new_customer(env, "GB", edge);
    new_customer(env, "GB", inside);
    /* Every one but `other`: a first hit, its window ending 05-26 11:00. */
    const tx b1[] = {TX("5000", "in", "wire", "2025-05-26T10:00:00Z"),
                     TX("4600", "out", "wire", "2025-05-26T11:00:00Z")};
    post_batch(env, cust, b1, 2, NULL);
    post_batch(env, edge, b1, 2, NULL);
    post_batch(env, inside, b1, 2, NULL);
    assert_int_equal(alerts_of(env, cust, "rapid_movement"), 1);

    /* Still over 90 %, 47 h after the first hit's end: suppressed. */
    const tx b2[] = {TX("300", "out", "wire", "2025-05-28T10:00:00Z")};
    post_batch(env, cust, b2, 1, NULL);
    assert_int_equal(alerts_of(env, cust, "rapid_movement"), 1);
    assert_int_equal(hits_of(env, cust, "rapid_movement", "active"), 1);
    /* Another customer's first pattern, at the same time: it alerts. */
    const tx b3[] = {TX("7000", "in", "wire", "2025-05-28T09:00:00Z"),
                     TX("7000", "out", "wire", "2025-05-28T10:00:00Z")};
    post_batch(env, other, b3, 2, NULL);
    assert_int_equal(alerts_of(env, other, "rapid_movement"), 1);

    /* A new pattern whose 48 h window starts exactly at the first hit's
     * end (the test is window_end > start): it alerts. One second earlier
     * it overlaps and is suppressed. */
    const tx at_edge[] = {TX("5000", "in", "wire", "2025-05-28T10:30:00Z"),
                          TX("5000", "out", "wire", "2025-05-28T11:00:00Z")};
    post_batch(env, edge, at_edge, 2, NULL);
    assert_int_equal(alerts_of(env, edge, "rapid_movement"), 2);
    const tx overlapping[] = {TX("5000", "in", "wire", "2025-05-28T10:30:00Z"),
                              TX("5000", "out", "wire", "2025-05-28T10:59:59Z")};
    post_batch(env, inside, overlapping, 2, NULL);
    assert_int_equal(alerts_of(env, inside, "rapid_movement"), 1);
    assert_int_equal(hits_of(env, inside, "rapid_movement", "active"), 1);
}

/* 0026: the suppression test is inlined in both of its callers instead of
 * being called once per customer (0025's boolean SQL function was not
 * inlined: a sub-select in a scalar SQL function prevents it). Counted by
 * PostgreSQL's own function statistics for one transaction, which count
 * only calls that were not inlined: an ingest that runs the rules and
 * records a rapid_movement hit (so both the pre-check and vigil_record_hits
 * evaluate the test) calls vigil_run_rules and vigil_record_hits, and no
 * function named like "suppress" (neither vigil_suppressing_hits nor
 * 0025's vigil_hit_suppressed). Rolled back. */
static void suppression_test_is_inlined(void **state)
{
    h_env *env = *state;
    char cust[37], sql[1536];
    new_customer(env, "GB", cust);
    snprintf(sql, sizeof sql,
             "BEGIN; SET LOCAL track_functions = 'all';"
             " SELECT count(*) FROM vigil_ingest('["
             "{\"external_id\": \"inl-%s-1\", \"customer_id\": \"%s\", \"amount\": \"5000\","
             " \"currency\": \"USD\", \"direction\": \"in\", \"channel\": \"wire\","
             " \"occurred_at\": \"2025-07-01T10:00:00Z\"},"
             "{\"external_id\": \"inl-%s-2\", \"customer_id\": \"%s\", \"amount\": \"4600\","
             " \"currency\": \"USD\", \"direction\": \"out\", \"channel\": \"wire\","
             " \"occurred_at\": \"2025-07-01T11:00:00Z\"}]')",
             cust, cust, cust, cust);
    assert_int_equal(h_db_exec(env, sql), 0);
    const char *calls = "SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions"
                        " WHERE funcname = $1";
    long long run_rules = h_db_count(env, calls, "vigil_run_rules");
    long long record_hits = h_db_count(env, calls, "vigil_record_hits");
    long long suppressing =
        h_db_count(env, "SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions"
                        " WHERE funcname LIKE '%suppress%'");
    long long hits = h_db_count(env,
                                "SELECT count(*) FROM rule_hits WHERE customer_id = $1"
                                " AND rule_id = 'rapid_movement' AND window_end IS NOT NULL",
                                cust);
    assert_int_equal(h_db_exec(env, "ROLLBACK"), 0);
    assert_int_equal(run_rules, 1);
    assert_true(record_hits >= 1);
    assert_int_equal(hits, 1);
    assert_int_equal(suppressing, 0);
}

/* Alerts and their events are rendered as text since 0029. The reference
 * is 0003's jsonb_build_object, kept here: the created event's data and
 * the API's rendering must be the same JSON value as it gives, for new
 * alerts and for one closed with a note and actor holding quotes, a
 * backslash, a newline, a control character and non-ASCII letters. */
#define ALERT_JSON_REFERENCE                                                                       \
    "jsonb_build_object('id', a.id, 'customer_id', a.customer_id, 'rule_id', a.rule_id,"           \
    " 'rule_version', a.rule_version, 'params', a.params, 'severity', a.severity,"                 \
    " 'transaction_ids', to_jsonb(a.transaction_ids), 'aggregates', a.aggregates,"                 \
    " 'window_end', vigil_ts(a.window_end), 'status', a.status,"                                   \
    " 'disposition', a.disposition, 'note', a.note, 'actor', a.actor,"                             \
    " 'created_at', vigil_ts(a.created_at), 'updated_at', vigil_ts(a.updated_at))"

static void alert_json_matches_reference(void **state)
{
    h_env *env = *state;
    char cust[37];
    new_customer(env, "GB", cust);
    /* The cash outflow comes before the first inflow, so rapid_movement
     * does not count it. */
    const tx b[] = {TX("12000.00", "out", "cash", "2025-08-04T09:00:00Z"),
                    TX("5000", "in", "wire", "2025-08-04T10:00:00Z"),
                    TX("4800", "out", "wire", "2025-08-04T11:00:00Z")};
    post_batch(env, cust, b, 3, NULL);
    assert_int_equal(alerts_of(env, cust, "large_cash"), 1);
    assert_int_equal(alerts_of(env, cust, "rapid_movement"), 1);

    /* Each created event's data, wherever the event is now. */
    assert_int_equal(
        h_db_count(env,
                   "SELECT count(*) FROM alerts a JOIN " EVENTS_OF_TYPE(
                       "aml.alert.created") " e"
                                            " ON e.subject = a.id::text"
                                            " WHERE a.customer_id = $1"
                                            " AND (e.p::jsonb)->'data' = " ALERT_JSON_REFERENCE,
                   cust),
        2);

    assert_int_equal(h_db_exec(env,
                               "UPDATE alerts SET status = 'closed',"
                               " disposition = 'false_positive',"
                               " note = E'said \"ok\" \\\\ then\\nZo\\u00eb \\x01 end',"
                               " actor = E'analyst \"7\"', updated_at = now()"
                               " WHERE customer_id = $1 AND rule_id = 'large_cash'",
                               cust),
                     0);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM alerts a WHERE a.customer_id = $1"
                                " AND vigil_alert_json(a) = " ALERT_JSON_REFERENCE
                                " AND vigil_alert_json_text(a)::jsonb = vigil_alert_json(a)",
                                cust),
                     2);
    /* The update's event carries the same rendering (and the status it
     * replaced). */
    assert_int_equal(
        h_db_count(env,
                   "SELECT count(*) FROM alerts a JOIN " EVENTS_OF_TYPE(
                       "aml.alert.updated") " e"
                                            " ON e.subject = a.id::text"
                                            " WHERE a.customer_id = $1 AND a.note LIKE 'said%'"
                                            " AND (e.p::jsonb)->'data' = " ALERT_JSON_REFERENCE
                                            " || jsonb_build_object('previous_status', 'open')",
                   cust),
        1);
}

/* ==== dormant_reactivation {dormant_days 180, min_amount "5000"} =========== */

static void dormant_reactivation_fires(void **state)
{
    h_env *env = *state;
    char cust[37], ids[3][37];
    new_customer(env, "GB", cust);
    const tx b1[] = {TX("10", "in", "card", "2024-01-01T10:00:00Z")};
    post_batch(env, cust, b1, 1, ids);
    /* 180 days later to the second; the next one, an hour on, is ordinary
     * activity again. */
    const tx b2[] = {TX("5000", "out", "wire", "2024-06-29T10:00:00Z"),
                     TX("7000", "out", "wire", "2024-06-29T11:00:00Z")};
    post_batch(env, cust, b2, 2, ids + 1);

    json_t *a;
    const json_t *agg = the_alert(env, cust, "dormant_reactivation", ids + 1, 1, &a);
    assert_agg_int(agg, "gap_days", 180);
    assert_agg_str(agg, "previous_activity", "2024-01-01T10:00:00.000000Z");
    json_decref(a);
}

static void dormant_reactivation_quiet(void **state)
{
    h_env *env = *state;
    char cust[37];
    new_customer(env, "GB", cust);
    /* A first transaction is not a reactivation; a cent under min_amount
     * after a long gap; then a gap one second short of 180 days. */
    const tx b1[] = {TX("9000", "in", "wire", "2024-01-08T10:00:00Z")};
    post_batch(env, cust, b1, 1, NULL);
    const tx b2[] = {TX("4999.99", "in", "wire", "2024-09-01T10:00:00Z")};
    post_batch(env, cust, b2, 1, NULL);
    const tx b3[] = {TX("9000", "in", "wire", "2025-02-28T09:59:59Z")};
    post_batch(env, cust, b3, 1, NULL);
    assert_quiet(env, cust, "dormant_reactivation");
}

/* ==== round_amounts {min_count 3, unit "1000", window_days 7} ============== */

static void round_amounts_fires(void **state)
{
    h_env *env = *state;
    char cust[37], ids[5][37];
    new_customer(env, "GB", cust);
    /* Whole thousands in the transaction's own currency (2000 EUR), over
     * exactly 7 days; cash and 1500 are not counted. */
    const tx b1[] = {TX("1000", "out", "wire", "2025-06-02T10:00:00Z"),
                     TX("1000", "out", "cash", "2025-06-03T10:00:00Z"),
                     TX("3000.00", "out", "ach", "2025-06-04T10:00:00Z"),
                     TX("1500", "out", "wire", "2025-06-05T10:00:00Z")};
    post_batch(env, cust, b1, 4, ids);
    assert_quiet(env, cust, "round_amounts");
    const tx b2[] = {TX_CUR("2000", "in", "wire", "2025-06-09T10:00:00Z", "EUR")};
    post_batch(env, cust, b2, 1, ids + 4);

    char expect[3][37];
    memcpy(expect[0], ids[0], 37);
    memcpy(expect[1], ids[2], 37);
    memcpy(expect[2], ids[4], 37);
    json_t *a;
    const json_t *agg = the_alert(env, cust, "round_amounts", expect, 3, &a);
    assert_agg_int(agg, "count", 3);
    assert_agg_str(agg, "unit", "1000");
    assert_string_equal(jstr(a, "severity"), "low");
    json_decref(a);
}

static void round_amounts_quiet(void **state)
{
    h_env *env = *state;
    char cust[37];
    new_customer(env, "GB", cust);
    /* The third round transfer is 7 days + 1 s after the first. */
    const tx b[] = {TX("1000", "out", "wire", "2025-06-16T10:00:00Z"),
                    TX("3000.00", "out", "ach", "2025-06-20T10:00:00Z"),
                    TX("999.99", "out", "wire", "2025-06-21T10:00:00Z"),
                    TX("2000", "out", "wire", "2025-06-23T10:00:01Z")};
    post_batch(env, cust, b, 4, NULL);
    assert_quiet(env, cust, "round_amounts");
}

/* ==== modes ================================================================ */

static int restore_structuring(void **state)
{
    set_mode(*state, "structuring", "active");
    return 0;
}

static int restore_large_cash(void **state)
{
    set_mode(*state, "large_cash", "active");
    return 0;
}

/* Shadow: the hit is recorded with the rule version in force, but there is
 * no alert and no aml.alert.created event. Then, back in active mode, the
 * same growing pattern does alert: shadow hits do not suppress active ones. */
static void shadow_mode_records_hits_only(void **state)
{
    h_env *env = *state;
    char cust[37], ids[4][37], v[24];
    long long version = set_mode(env, "structuring", "shadow");
    snprintf(v, sizeof v, "%lld", version);
    new_customer(env, "GB", cust);
    long long events = alert_events(env);
    const tx b1[] = {TX("9500", "in", "cash", "2025-07-07T10:00:00Z"),
                     TX("9500", "in", "cash", "2025-07-07T11:00:00Z"),
                     TX("9500", "in", "cash", "2025-07-07T12:00:00Z")};
    post_batch(env, cust, b1, 3, ids);

    assert_int_equal(alerts_of(env, cust, "structuring"), 0);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM rule_hits WHERE customer_id = $1"
                                " AND rule_id = 'structuring' AND mode = 'shadow'"
                                " AND alert_id IS NULL AND rule_version = $2::int"
                                " AND cardinality(transaction_ids) = 3"
                                " AND aggregates->>'count' = '3'",
                                cust, v),
                     1);
    assert_int_equal(alert_events(env), events);

    set_mode(env, "structuring", "active");
    const tx b2[] = {TX("9500", "in", "cash", "2025-07-07T13:00:00Z")};
    post_batch(env, cust, b2, 1, ids + 3);
    json_t *a;
    const json_t *agg = the_alert(env, cust, "structuring", ids, 4, &a);
    assert_agg_int(agg, "count", 4);
    json_decref(a);
    assert_int_equal(hits_of(env, cust, "structuring", "shadow"), 1);
}

static void disabled_mode_records_nothing(void **state)
{
    h_env *env = *state;
    char cust[37];
    set_mode(env, "large_cash", "disabled");
    new_customer(env, "GB", cust);
    const tx b[] = {TX("25000", "in", "cash", "2025-07-14T10:00:00Z")};
    post_batch(env, cust, b, 1, NULL);
    assert_quiet(env, cust, "large_cash");
}

/* ==== every alert ========================================================== */

/* Whatever raised them, alerts record what an auditor needs: the rule
 * version and params in force, the contributing transactions (all the
 * customer's), what the rule computed, and a matching rule_hits row. */
static void every_alert_is_complete(void **state)
{
    h_env *env = *state;
    char cust[37];
    new_customer(env, "GB", cust);
    const tx b[] = {TX("12000", "in", "cash", "2025-08-04T10:00:00Z")};
    post_batch(env, cust, b, 1, NULL);
    assert_int_equal(alerts_of(env, cust, "large_cash"), 1);

    assert_true(h_db_count(env, "SELECT count(*) FROM alerts") > 0);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM alerts a WHERE a.rule_version < 1"
                                " OR jsonb_typeof(a.params) <> 'object' OR a.params = '{}'"
                                " OR jsonb_typeof(a.aggregates) <> 'object'"
                                " OR a.aggregates = '{}' OR cardinality(a.transaction_ids) = 0"
                                " OR EXISTS (SELECT 1 FROM unnest(a.transaction_ids) x(id)"
                                "   LEFT JOIN transactions t ON t.id = x.id"
                                "   WHERE t.customer_id IS DISTINCT FROM a.customer_id)"
                                " OR NOT EXISTS (SELECT 1 FROM rule_hits h WHERE h.alert_id = a.id"
                                "   AND h.mode = 'active')"),
                     0);
    /* Each alert's params are those of its rule version. */
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM (SELECT rule_id, rule_version"
                                     " FROM alerts GROUP BY 1, 2"
                                     " HAVING count(DISTINCT params) > 1) s"),
                     0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(large_cash_fires),
        cmocka_unit_test(large_cash_quiet),
        cmocka_unit_test(structuring_fires),
        cmocka_unit_test(structuring_quiet),
        cmocka_unit_test(velocity_fires),
        cmocka_unit_test(velocity_quiet),
        cmocka_unit_test(high_risk_jurisdiction_fires),
        cmocka_unit_test(high_risk_jurisdiction_quiet),
        cmocka_unit_test(rapid_movement_fires),
        cmocka_unit_test(rapid_movement_counts_from_first_inflow),
        cmocka_unit_test(rapid_movement_quiet),
        cmocka_unit_test(rapid_movement_suppressed_then_again),
        cmocka_unit_test(suppression_test_is_inlined),
        cmocka_unit_test(alert_json_matches_reference),
        cmocka_unit_test(dormant_reactivation_fires),
        cmocka_unit_test(dormant_reactivation_quiet),
        cmocka_unit_test(round_amounts_fires),
        cmocka_unit_test(round_amounts_quiet),
        cmocka_unit_test_teardown(shadow_mode_records_hits_only, restore_structuring),
        cmocka_unit_test_teardown(disabled_mode_records_nothing, restore_large_cash),
        cmocka_unit_test(every_alert_is_complete),
    };
    return cmocka_run_group_tests_name("rules", tests, group_setup, group_teardown) ? 1 : 0;
}
