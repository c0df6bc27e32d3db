/*
 * test_consumers.c — the risk consumer applies each event exactly once,
 * survives redelivery of the whole stream, and a poison event is retried
 * with visible backoff, dead-lettered after MaxDeliver, and redriven once
 * its cause is fixed, without holding up the events behind it.
 *
 * Real PostgreSQL, nats-server and vigil serve (API, sequencer, publisher,
 * consumers) started by the harness. The first test calls the runner's
 * decoders directly (this test links vigil_core).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "consumers/consumer.h"
#include "fixture_alerts.h"
#include "harness.h"

static h_env *env;

static const char *const consumer_env[] = {"VIGIL_CONSUMER_BACKOFF_MS=300",
                                           "VIGIL_CONSUMER_MAX_DELIVER=3",
                                           "VIGIL_CONSUMER_ACK_WAIT_MS=5000", NULL};

static int setup(void **state)
{
    env = h_setup(1);
    if (!env)
        return -1;
    h_vigil_stop(env, SIGTERM);
    return h_vigil_start(env, consumer_env);
}

static int teardown(void **state)
{
    h_teardown(env);
    return 0;
}

static void risk_rescored_once_per_alert(void **state)
{
    char c[64];
    fx_customer(env, "Alert Twice", c);
    /* One alert at a time: the consumer scores the customer's current state,
     * so two alerts already open when it runs give one assessment, not two. */
    fx_large_cash(env, c, "rc-1");
    assert_int_equal(fx_wait_count(env, 2, 30000,
                                   "SELECT count(*) FROM risk_assessments WHERE customer_id = $1",
                                   c),
                     2);
    fx_large_cash(env, c, "rc-2");
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM alerts WHERE customer_id = $1", c), 2);
    /* onboarding + one assessment per alert (each alert adds 5 points) */
    assert_int_equal(fx_wait_count(env, 3, 30000,
                                   "SELECT count(*) FROM risk_assessments WHERE customer_id = $1",
                                   c),
                     3);
    assert_int_equal(h_db_count(env, "SELECT risk_score FROM customers WHERE id = $1", c), 15);
    char *reason = h_db_text(env,
                             "SELECT reason FROM risk_assessments WHERE customer_id = $1"
                             " ORDER BY version DESC LIMIT 1",
                             c);
    assert_non_null(reason);
    assert_non_null(strstr(reason, "aml.alert.created"));
    free(reason);
    /* the new assessment went out as an event through the outbox */
    assert_true(
        fx_wait_count(env, 3, 30000,
                      "SELECT count(*) FROM event_log WHERE event_type = 'aml.customer.risk'"
                      " AND subject = $1",
                      c) == 3);
}

/* POSTs {"transactions": [...]} of one item per customer per round: `rounds`
 * items of `amount` for each of customers[0..n) (in reverse order when
 * `reverse`), external ids "<tag>-<customer index>-<round>". */
static void post_batch(char (*customers)[64], int n, int rounds, int reverse, const char *amount,
                       const char *channel, const char *tag)
{
    json_t *list = json_array();
    for (int k = 0; k < n; k++)
        for (int round = 0; round < rounds; round++) {
            int i = reverse ? n - 1 - k : k;
            char ext[64];
            snprintf(ext, sizeof ext, "%s-%d-%d", tag, i, round);
            json_array_append_new(list,
                                  json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "external_id",
                                            ext, "customer_id", customers[i], "amount", amount,
                                            "currency", "USD", "direction", "in", "channel",
                                            channel, "occurred_at", "2026-11-20T10:00:00Z"));
        }
    json_t *body = json_pack("{s:o}", "transactions", list);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    h_resp r = {0};
    assert_int_equal(h_post(env, env->admin_key, text, &r, "/transactions"), 0);
    free(text);
    assert_true(r.status >= 200 && r.status < 300);
    h_resp_free(&r);
}

/* Alerts that waited for the consumer (it was not running when they were
 * raised) are applied in batches: one transaction for several events, one
 * reassessment per customer however many of its alerts a batch holds, and
 * the scores one event at a time gives. Ingest runs on the same customers
 * meanwhile: the consumer locks its customers in id order with NO KEY
 * UPDATE, which the ingest's foreign-key checks do not wait for, so neither
 * side can wait for the other in a cycle (PostgreSQL would log a deadlock). */
static void risk_batches_reassess_each_customer_once(void **state)
{
    enum { K = 12 };
    char ids[K][64];
    long long base[K];
    for (int i = 0; i < K; i++) {
        char name[32];
        snprintf(name, sizeof name, "Batch Customer %d", i);
        fx_customer(env, name, ids[i]);
        base[i] = h_db_count(env, "SELECT risk_score FROM customers WHERE id = $1", ids[i]);
    }
    long long before =
        h_db_count(env, "SELECT count(*) FROM processed_events WHERE consumer = 'risk'");

    /* Two alerts per customer while no consumer runs, all in the stream. */
    const char *no_consumers[] = {consumer_env[0], consumer_env[1], consumer_env[2],
                                  "VIGIL_ROLES=api,sequencer,publisher", NULL};
    h_vigil_stop(env, SIGTERM);
    assert_int_equal(h_vigil_start(env, no_consumers), 0);
    post_batch(ids, K, 2, 0, "25000.00", "cash", "rb");
    post_batch(ids, 1, 8, 0, "25000.00", "cash", "rb-more"); /* the first has 10 */
    const int events = 2 * K + 8;
    long long in_log = -1;
    for (long long t0 = h_now_ms(); h_now_ms() - t0 < 30000; h_sleep_ms(50)) {
        in_log = h_db_count(env, "SELECT CASE WHEN EXISTS (SELECT 1 FROM outbox) THEN -1"
                                 " ELSE (SELECT count(*) FROM event_log) END");
        if (in_log >= 0 && h_js_stream_msgs(env, "AML_EVENTS") == in_log)
            break;
    }
    assert_true(in_log > 0);
    assert_int_equal(h_js_stream_msgs(env, "AML_EVENTS"), in_log);

    /* A transaction holds the lock that a foreign-key check takes (KEY
     * SHARE) on every customer, as an insert that references them does,
     * and stays open while the consumer applies the backlog: the consumer
     * must not wait for it (with FOR UPDATE it would, and with several
     * customers held that wait can close a cycle). */
    PGconn *holder = PQconnectdb(env->db_url);
    assert_int_equal(PQstatus(holder), CONNECTION_OK);
    PGresult *res = PQexec(holder, "BEGIN");
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    for (int i = K - 1; i >= 0; i--) {
        const char *p[] = {ids[i]};
        res = PQexecParams(holder, "SELECT 1 FROM customers WHERE id = $1 FOR KEY SHARE", 1, NULL,
                           p, NULL, NULL, 0);
        assert_int_equal(PQntuples(res), 1);
        PQclear(res);
    }
    /* The consumer starts on that backlog while more transactions for the
     * same customers come in (in the opposite order). */
    h_vigil_stop(env, SIGTERM);
    assert_int_equal(h_vigil_start(env, consumer_env), 0);
    post_batch(ids, K, 1, 1, "50.00", "card", "rb-later");
    assert_int_equal(fx_wait_count(env, before + events, 20000,
                                   "SELECT count(*) FROM processed_events WHERE consumer = 'risk'",
                                   NULL),
                     before + events);
    res = PQexec(holder, "COMMIT");
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    PQfinish(holder);

    /* Batches: fewer transactions than events (this process's counters).
     * The consumer counts a batch after its commit, so the last batch's
     * rows can be visible a moment before its count: wait for it. */
    double processed = -1, batches = -1;
    for (long long t0 = h_now_ms(); h_now_ms() - t0 < 10000; h_sleep_ms(50)) {
        assert_int_equal(h_metric(env, env->admin_key,
                                  "vigil_consumer_processed_total{consumer=\"risk\"}", &processed),
                         0);
        if (processed >= events)
            break;
    }
    assert_int_equal(
        h_metric(env, env->admin_key, "vigil_consumer_batches_total{consumer=\"risk\"}", &batches),
        0);
    assert_true(processed == events);
    assert_true(batches >= 1 && batches < processed);

    for (int i = 0; i < K; i++) {
        /* onboarding + one: both alerts were open when the first of their
         * events was applied, so the second changed nothing */
        assert_int_equal(
            h_db_count(env, "SELECT count(*) FROM risk_assessments WHERE customer_id = $1", ids[i]),
            2);
        /* open alerts count 5 points each, at most 20 */
        assert_int_equal(h_db_count(env, "SELECT risk_score FROM customers WHERE id = $1", ids[i]),
                         base[i] + (i == 0 ? 20 : 10));
        assert_int_equal(
            h_db_count(env, "SELECT risk_version FROM customers WHERE id = $1", ids[i]), 2);
        char *reason = h_db_text(env,
                                 "SELECT reason FROM risk_assessments WHERE customer_id = $1"
                                 " ORDER BY version DESC LIMIT 1",
                                 ids[i]);
        assert_non_null(reason);
        /* it names the events of the batch that made it: at most 8, the
         * rest counted ("; and 2 more") */
        int named = 0;
        for (const char *at = reason; (at = strstr(at, "aml.alert.created ")); at++)
            named++;
        const char *more = strstr(reason, "; and ");
        assert_true(named >= 1 && named <= 8);
        if (more)
            assert_true(named == 8 && atoi(more + 6) >= 1 && named + atoi(more + 6) <= 10);
        free(reason);
        assert_int_equal(fx_wait_count(env, 2, 30000,
                                       "SELECT count(*) FROM event_log"
                                       " WHERE event_type = 'aml.customer.risk' AND subject = $1",
                                       ids[i]),
                         2);
    }
    char logp[H_PATH_SIZE + 16];
    snprintf(logp, sizeof logp, "%s/pg/log", env->dir);
    char *pglog = h_read_file(logp);
    assert_non_null(pglog);
    assert_null(strstr(pglog, "deadlock detected"));
    free(pglog);
}

static void redelivery_of_everything_changes_nothing(void **state)
{
    /* The risk consumer's rows only: the webhooks consumer (every event) may
     * still be catching up with the last ones. */
    long long processed =
        h_db_count(env, "SELECT count(*) FROM processed_events WHERE consumer = 'risk'");
    long long assessments = h_db_count(env, "SELECT count(*) FROM risk_assessments");
    assert_true(processed > 0);
    /* Delete the durable consumer: when vigil restarts it is recreated
     * with DeliverAll and JetStream delivers every alert event again. */
    h_vigil_stop(env, SIGTERM);
    natsConnection *nc = h_nats_connect(env);
    assert_non_null(nc);
    jsCtx *js = NULL;
    assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    assert_int_equal(js_DeleteConsumer(js, "AML_EVENTS", "vigil-risk", NULL, NULL), NATS_OK);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    assert_int_equal(h_vigil_start(env, consumer_env), 0);
    h_sleep_ms(3000); /* the whole (small) stream is redelivered within this */
    char *log = h_read_file(env->vigil_log);
    assert_non_null(log);
    assert_non_null(strstr(log, "consumer risk: consuming"));
    free(log);
    assert_int_equal(
        h_db_count(env, "SELECT count(*) FROM processed_events WHERE consumer = 'risk'"),
        processed);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM risk_assessments"), assessments);
}

static void poison_event_dead_lettered_then_redriven(void **state)
{
    char bad[64], good[64];
    fx_customer(env, "Poison Customer", bad);
    fx_customer(env, "Healthy Customer", good);
    /* The cause: a constraint that refuses this customer's reassessment. */
    char sql[512];
    snprintf(sql, sizeof sql,
             "CREATE FUNCTION test_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
             " IF NEW.customer_id = '%s' AND NEW.reason LIKE 'aml.alert%%' THEN"
             " RAISE EXCEPTION 'poison: reassessment refused'; END IF; RETURN NEW; END $$;"
             " CREATE TRIGGER test_poison BEFORE INSERT ON risk_assessments"
             " FOR EACH ROW EXECUTE FUNCTION test_poison();",
             bad);
    assert_int_equal(h_db_exec(env, sql), 0);
    fx_large_cash(env, bad, "poison-1");
    fx_large_cash(env, good, "healthy-1");
    /* the healthy event behind it is not held up */
    assert_int_equal(fx_wait_count(env, 2, 30000,
                                   "SELECT count(*) FROM risk_assessments WHERE customer_id = $1",
                                   good),
                     2);
    /* three deliveries, then a dead letter */
    assert_int_equal(fx_wait_count(env, 1, 30000,
                                   "SELECT count(*) FROM dead_letters WHERE status = 'dead'", NULL),
                     1);
    assert_int_equal(h_db_count(env, "SELECT deliveries FROM dead_letters"), 3);
    char *why = h_db_text(env, "SELECT last_error FROM dead_letters");
    assert_non_null(why);
    assert_non_null(strstr(why, "poison"));
    free(why);
    /* retries were spaced by the backoff (300 ms, then 600 ms), not instant */
    long long spread =
        h_db_count(env,
                   "SELECT (extract(epoch FROM d.created_at - a.created_at) * 1000)::bigint"
                   " FROM dead_letters d, alerts a WHERE a.customer_id = $1",
                   bad);
    assert_true(spread >= 800);

    h_resp r = {0};
    assert_int_equal(h_get(env, env->admin_key, &r, "/dead-letters?status=dead"), 0);
    assert_int_equal(r.status, 200);
    json_t *items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 1);
    char id[64];
    snprintf(id, sizeof id, "%s",
             json_string_value(json_object_get(json_array_get(items, 0), "id")));
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 0), "consumer")),
                        "risk");
    h_resp_free(&r);

    /* redrive before the fix: still failing, still dead */
    assert_int_equal(h_post(env, env->admin_key, "{}", &r, "/dead-letters/%s/redrive", id), 0);
    assert_true(r.status >= 400);
    h_resp_free(&r);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM dead_letters WHERE status = 'dead'"), 1);

    /* fix the cause, redrive: applied once, letter marked */
    assert_int_equal(h_db_exec(env, "DROP TRIGGER test_poison ON risk_assessments"), 0);
    assert_int_equal(h_post(env, env->admin_key, "{}", &r, "/dead-letters/%s/redrive", id), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "redriven");
    h_resp_free(&r);
    assert_int_equal(
        h_db_count(env, "SELECT count(*) FROM risk_assessments WHERE customer_id = $1", bad), 2);
    /* a second redrive is refused: nothing applied twice */
    assert_int_equal(h_post(env, env->admin_key, "{}", &r, "/dead-letters/%s/redrive", id), 0);
    assert_int_equal(r.status, 409);
    h_resp_free(&r);
    assert_int_equal(
        h_db_count(env, "SELECT count(*) FROM risk_assessments WHERE customer_id = $1", bad), 2);
}

/* The webhooks consumer's batch takes an event's id, seq and type from the
 * headers (consumer_event_from_headers) and parses the body only when they
 * do not give them; both decoders read Vigil-Seq alike. */
static void event_read_from_headers_only_when_they_suffice(void **state)
{
    const char *id = "0190c3b8-1a2b-7c3d-8e4f-001122334455";
    const char *type = "aml.transaction.created";
    consumer_event ev;
    vg_error err = {0};
    assert_int_equal(consumer_event_from_headers(id, "42", type, &ev, &err), VG_OK);
    assert_ptr_equal(ev.id, id);
    assert_int_equal(ev.seq, 42);
    assert_string_equal(ev.type, type);
    assert_null(ev.event);
    assert_null(ev.data);
    /* not usable: the caller parses the body instead */
    const char *ids[] = {NULL, "", "0190c3b8-1a2b-7c3d-8e4f-001122334455:run-7", "not-a-uuid"};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        assert_int_equal(consumer_event_from_headers(ids[i], "42", type, &ev, &err),
                         VG_E_MALFORMED);
        vg_error_clear(&err);
    }
    assert_int_equal(consumer_event_from_headers(id, "42", "", &ev, NULL), VG_E_MALFORMED);
    char body[160];
    snprintf(body, sizeof body, "{\"id\": \"%s\", \"seq\": 7, \"data\": {}}", id);
    const char *seqs[] = {NULL, "", "0", "-1", "+5", " 5", "12abc", "99999999999999999999", "9"};
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
        vg_status want = i == 8 ? VG_OK : VG_E_MALFORMED;
        assert_int_equal(consumer_event_from_headers(id, seqs[i], type, &ev, NULL), want);
        /* the body decoder: a header that is given but unusable is refused
         * too, never replaced by the body's own "seq" */
        json_t *j = NULL;
        vg_status st = consumer_event_decode(body, strlen(body), seqs[i], type, &j, &ev, NULL);
        json_decref(j);
        assert_int_equal(st, seqs[i] ? want : VG_OK);
        if (st == VG_OK)
            assert_int_equal(ev.seq, seqs[i] ? 9 : 7);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(event_read_from_headers_only_when_they_suffice),
        cmocka_unit_test(risk_rescored_once_per_alert),
        cmocka_unit_test(risk_batches_reassess_each_customer_once),
        cmocka_unit_test(redelivery_of_everything_changes_nothing),
        cmocka_unit_test(poison_event_dead_lettered_then_redriven),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
