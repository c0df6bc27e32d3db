/*
 * test_uuid7.c — time-ordered ids (0013_time_ordered_ids.sql).
 *
 * vigil_uuid7() makes RFC 9562 version 7 UUIDs: the first 48 bits are the
 * Unix time in ms (big-endian), then version 7, variant 10, random bits.
 * What must hold:
 *   - 10,000 calls in one statement give 10,000 distinct ids, each version 7
 *     with variant 10xx, whose time is within a few seconds of the server's
 *     clock and never goes down in the order of generation;
 *   - through the real API (the service role, the real triggers), a batch of
 *     transactions gets version 7 transaction, alert and event ids, all
 *     distinct, and the events' times never go down along seq;
 *   - no column default and no function of the schema still mints version 4
 *     ids (a later migration that brings gen_random_uuid() back fails here);
 *   - `vigil audit verify` still verifies the chain, and migrate runs again.
 *
 * On a schema without 0013 the first test fails (no vigil_uuid7()) and so
 * does the second (gen_random_uuid() ids have version 4).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define NTX 40 /* transactions in the batch; 3 of them large cash (alerts) */

/* The 48-bit ms of a uuid column/expression U, as SQL. */
#define UUID_MS(u) "('x' || left(replace((" u ")::text, '-', ''), 12))::bit(48)::bigint"

static h_env *env;

static int setup(void **state)
{
    (void)state;
    env = h_setup(0);
    return env ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    h_teardown(env);
    return 0;
}

/* Column `col` of the first row, as a number (not NULL). */
static long long row_value(PGresult *r, int col)
{
    assert_false(PQgetisnull(r, 0, col));
    return strtoll(PQgetvalue(r, 0, col), NULL, 10);
}

/* Runs a query as the owner (the env's cached connection); one row expected. */
static PGresult *one_row(const char *sql)
{
    PGconn *db = h_db(env);
    assert_non_null(db);
    PGresult *r = PQexec(db, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "%s\n-> %s\n", sql, PQerrorMessage(db));
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(r), 1);
    return r;
}

/* ---- the function ------------------------------------------------------------ */

static void uuid7_function(void **state)
{
    (void)state;
    /* One statement: 10,000 ids in generation order (ordinality), then
     * everything counted over them. The ms bounds are the clock read before
     * and after (clock_timestamp(), the same clock the ids read). */
    PGresult *r = one_row(
        "WITH t0 AS MATERIALIZED (SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)"
        "                                  ::bigint AS ms),"
        " g AS MATERIALIZED (SELECT o, vigil_uuid7() AS u FROM t0,"
        "                    generate_series(1, 10000) WITH ORDINALITY AS s(i, o)),"
        " t1 AS MATERIALIZED (SELECT count(*) AS n,"
        "                     floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms"
        "                     FROM g),"
        " m AS (SELECT o, u, " UUID_MS(
            "u") " AS ms FROM g),"
                 " d AS (SELECT ms, lag(ms) OVER (ORDER BY o) AS prev FROM m)"
                 " SELECT (SELECT count(*) FROM m),"
                 "        (SELECT count(DISTINCT u) FROM m),"
                 "        (SELECT count(*) FROM m WHERE substr(u::text, 15, 1) = '7'),"
                 "        (SELECT count(*) FROM m WHERE substr(u::text, 20, 1) IN ('8', '9', 'a', "
                 "'b')),"
                 "        (SELECT count(*) FROM d WHERE ms < prev),"
                 "        (SELECT min(ms) FROM m) - (SELECT ms FROM t0),"
                 "        (SELECT ms FROM t1) - (SELECT max(ms) FROM m),"
                 "        (SELECT ms FROM t0) - floor(extract(epoch FROM now()) * 1000)::bigint,"
                 "        (SELECT count(DISTINCT substr(u::text, 25)) FROM m)");
    long long n = row_value(r, 0), distinct = row_value(r, 1), v7 = row_value(r, 2),
              variant = row_value(r, 3), down = row_value(r, 4), after_t0 = row_value(r, 5),
              before_t1 = row_value(r, 6), t0_vs_now = row_value(r, 7),
              distinct_tail = row_value(r, 8);
    PQclear(r);
    fprintf(stderr,
            "10,000 ids: %lld distinct, %lld version 7, %lld variant 10, %lld time steps down,"
            " first %lld ms after t0, last %lld ms before t1\n",
            distinct, v7, variant, down, after_t0, before_t1);
    assert_int_equal(n, 10000);
    assert_int_equal(distinct, 10000);
    assert_int_equal(v7, 10000);
    assert_int_equal(variant, 10000);
    assert_int_equal(down, 0);
    /* Inside [t0, t1]: the embedded time is the clock's, not a constant or
     * the transaction start (which may be earlier than t0, never later). */
    assert_true(after_t0 >= 0);
    assert_true(before_t1 >= 0);
    assert_true(t0_vs_now >= 0 && t0_vs_now < 5000);
    /* The last 48 bits are random, not derived from the time. */
    assert_true(distinct_tail > 9990);

    /* The time really is Unix ms: an id decodes to within 5 s of now(). */
    char *lag = h_db_text(
        env,
        "SELECT abs(" UUID_MS("vigil_uuid7()") " -"
                                               " floor(extract(epoch FROM now()) * 1000)::bigint)");
    assert_non_null(lag);
    assert_true(atoll(lag) < 5000);
    free(lag);
}

/* ---- through the API ------------------------------------------------------- */

/* Moves every committed outbox row into event_log (the sequencer's own
 * function; the background sequencer may get there first: same rows). */
static void sequence_all(void)
{
    for (int i = 0; i < 1000; i++) {
        long long moved = h_db_count(env, "SELECT moved FROM vigil_sequence(1000)");
        assert_true(moved >= 0);
        if (moved == 0)
            break;
    }
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM outbox"), 0);
}

static int is_v7(const char *id)
{
    return id && strlen(id) == 36 && id[14] == '7' && strchr("89ab", id[19]);
}

static void batch_ids_are_v7(void **state)
{
    (void)state;
    char head[24];
    long long before = h_db_count(env, "SELECT coalesce(max(seq), 0) FROM event_log");
    assert_true(before >= 0);
    snprintf(head, sizeof head, "%lld", before);

    h_resp r = {0};
    assert_int_equal(h_post(env, env->admin_key, "{\"full_name\": \"Seven\", \"country\": \"DE\"}",
                            &r, "/customers"),
                     0);
    assert_int_equal(r.status, 201);
    char customer[64];
    snprintf(customer, sizeof customer, "%s", json_string_value(json_object_get(r.json, "id")));
    h_resp_free(&r);
    assert_true(is_v7(customer));

    /* One request, one statement: NTX transactions, three of them large cash
     * (large_cash raises an alert each). */
    char body[NTX * 300], *p = body;
    p += sprintf(p, "{\"transactions\": [");
    for (int i = 0; i < NTX; i++)
        p += sprintf(p,
                     "%s{\"external_id\": \"u7-%d\", \"customer_id\": \"%s\", \"amount\":"
                     " \"%s\", \"currency\": \"USD\", \"direction\": \"in\", \"channel\":"
                     " \"%s\", \"occurred_at\": \"2026-01-0%dT12:00:00Z\"}",
                     i ? ", " : "", i, customer, i < 3 ? "25000.00" : "120.00",
                     i < 3 ? "cash" : "wire", 1 + i % 9);
    sprintf(p, "]}");
    assert_int_equal(h_post(env, env->admin_key, body, &r, "/transactions"), 0);
    if (r.status != 201)
        fprintf(stderr, "POST /transactions: %ld %s\n", r.status, r.body);
    assert_int_equal(r.status, 201);
    json_t *items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), NTX);
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item)
    {
        const char *id = json_string_value(json_object_get(item, "id"));
        if (!is_v7(id))
            fprintf(stderr, "transaction id %s is not a version 7 UUID\n", id ? id : "(none)");
        assert_true(is_v7(id));
    }
    h_resp_free(&r);

    sequence_all();

    /* The rows as stored. */
    assert_int_equal(h_db_count(env,
                                "SELECT count(DISTINCT id) FROM transactions"
                                " WHERE external_id LIKE 'u7-%' AND substr(id::text, 15, 1) = '7'"
                                " AND substr(id::text, 20, 1) IN ('8', '9', 'a', 'b')"),
                     NTX);
    long long alerts = h_db_count(env, "SELECT count(*) FROM alerts a"
                                       " JOIN customers c ON c.id = a.customer_id"
                                       " WHERE c.full_name = 'Seven'");
    assert_true(alerts >= 3); /* large_cash x3, whatever else fires */
    assert_int_equal(h_db_count(env, "SELECT count(DISTINCT a.id) FROM alerts a"
                                     " JOIN customers c ON c.id = a.customer_id"
                                     " WHERE c.full_name = 'Seven'"
                                     " AND substr(a.id::text, 15, 1) = '7'"),
                     alerts);

    /* The new events: customer created, NTX ingested, the alerts. */
    PGconn *db = h_db(env);
    assert_non_null(db);
    const char *params[] = {head};
    PGresult *q = PQexecParams(
        db,
        "WITH e AS (SELECT seq, event_id, event_type, payload, " UUID_MS(
            "event_id") " AS ms"
                        "           FROM event_log WHERE seq > $1::bigint),"
                        " d AS (SELECT ms, lag(ms) OVER (ORDER BY seq) AS prev FROM e)"
                        " SELECT (SELECT count(*) FROM e),"
                        "        (SELECT count(DISTINCT event_id) FROM e),"
                        "        (SELECT count(*) FROM e WHERE substr(event_id::text, 15, 1) = '7'"
                        "                AND substr(event_id::text, 20, 1) IN ('8', '9', 'a', "
                        "'b')),"
                        "        (SELECT count(*) FROM d WHERE ms < prev),"
                        "        (SELECT count(*) FROM e WHERE payload->>'id' <> event_id::text),"
                        "        (SELECT count(*) FROM e WHERE event_type = "
                        "'aml.transaction.ingested'),"
                        "        (SELECT count(*) FROM e WHERE event_type = 'aml.alert.created'),"
                        "        (SELECT max(abs(ms - floor(extract(epoch FROM now()) * "
                        "1000)::bigint)) FROM e)",
        1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(q) != PGRES_TUPLES_OK)
        fprintf(stderr, "events query: %s\n", PQerrorMessage(db));
    assert_int_equal(PQresultStatus(q), PGRES_TUPLES_OK);
    long long n = row_value(q, 0), distinct = row_value(q, 1), v7 = row_value(q, 2),
              down = row_value(q, 3), id_mismatch = row_value(q, 4), ingested = row_value(q, 5),
              alerted = row_value(q, 6), skew = row_value(q, 7);
    PQclear(q);
    fprintf(stderr,
            "%lld new events: %lld distinct ids, %lld version 7, %lld time steps down along seq,"
            " max %lld ms from now\n",
            n, distinct, v7, down, skew);
    assert_true(n >= NTX + alerts + 1);
    assert_int_equal(ingested, NTX);
    assert_int_equal(alerted, alerts);
    assert_int_equal(distinct, n);
    assert_int_equal(v7, n);
    assert_int_equal(down, 0);
    assert_int_equal(id_mismatch, 0); /* the CloudEvent id is the event_id */
    assert_true(skew < 60000);

    /* Nothing in the schema mints version 4 ids any more. */
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM information_schema.columns"
                                     " WHERE table_schema = 'public'"
                                     " AND column_default LIKE '%gen_random_uuid%'"),
                     0);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM pg_proc p"
                                     " JOIN pg_namespace n ON n.oid = p.pronamespace"
                                     " WHERE n.nspname = 'public' AND p.proname <> 'vigil_uuid7'"
                                     " AND p.prosrc LIKE '%gen_random_uuid%'"),
                     0);

    /* The chain still verifies (in C, from the stored columns). */
    char *out = NULL;
    int rc = h_vigil_run(env, &out, "audit", "verify", NULL);
    if (rc != 0)
        fprintf(stderr, "audit verify: %d\n%s\n", rc, out ? out : "");
    assert_int_equal(rc, 0);
    assert_non_null(out);
    assert_non_null(strstr(out, "event_log intact: seqs 1.."));
    free(out);

    /* Migrate again: nothing to apply, nothing breaks, still version 7. */
    assert_int_equal(h_migrate(env), 0);
    char *again = h_db_text(env, "SELECT substr(vigil_uuid7()::text, 15, 1)");
    assert_non_null(again);
    assert_string_equal(again, "7");
    free(again);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(uuid7_function),
        cmocka_unit_test(batch_ids_are_v7),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
