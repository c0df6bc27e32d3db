/*
 * test_wake.c — the sequencer is woken by whoever committed events, not by
 * a NOTIFY inside every business transaction (0009, src/events/wake.c).
 *
 * The sequencer's fallback poll is set to 60 s, so an event sequenced within
 * a few seconds proves the wake-up path that was meant:
 *   1. in-process: `vigil serve` with the api and sequencer roles — the HTTP
 *      write kicks the local sequencer (eventfd); a single transaction's
 *      kick comes from the group commit's flush, once per group;
 *   2. across processes: the api in one `vigil serve`, the sequencer in
 *      another — the writer's notifier thread sends NOTIFY vigil_outbox;
 *   3. the fallback: a plain SQL insert into the outbox (nobody kicks) is
 *      sequenced by the poll, here set to 200 ms.
 * And no business transaction notifies any more: the outbox has no trigger
 * that calls pg_notify.
 *
 * Last, the premise of db_take_notifies(), which every LISTENing loop (the
 * sequencer's and publisher's wait, the SSE hub, the webhook delivery
 * worker) calls before it sleeps on its connection's socket: a NOTIFY that
 * arrives while the session runs a query comes back with that query's
 * result and waits in libpq's queue, and the socket has nothing more to
 * read. (This test links vigil_core for that function.)
 */
#include "harness.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <poll.h>

#include "store/db.h"

static const char *const CUSTOMER = "{\"full_name\": \"Wake Test\", \"country\": \"DE\"}";

/* Milliseconds until the outbox is empty and event_log holds more than
 * `before` events, or -1 after timeout_ms. */
static long long wait_sequenced(h_env *env, long long before, int timeout_ms)
{
    long long t0 = h_now_ms();
    while (h_now_ms() - t0 < timeout_ms) {
        if (h_db_count(env, "SELECT count(*) FROM outbox") == 0 &&
            h_db_count(env, "SELECT count(*) FROM event_log") > before)
            return h_now_ms() - t0;
        h_sleep_ms(20);
    }
    return -1;
}

/* Waits until some process holds the sequencer's advisory lock. */
static int wait_sequencer_leader(h_env *env)
{
    for (int i = 0; i < 200; i++) {
        if (h_db_count(env, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                            " AND granted AND ((classid::bigint << 32) | objid::bigint)"
                            " = 7307100201") > 0)
            return 0;
        h_sleep_ms(50);
    }
    return -1;
}

static void post_customer(h_env *env)
{
    h_resp r = {0};
    assert_int_equal(h_post(env, env->admin_key, CUSTOMER, &r, "/customers"), 0);
    assert_int_equal(r.status, 201);
    h_resp_free(&r);
}

/* PostgreSQL, the schema, an admin key and (cfg not NULL) `vigil serve`
 * with cfg whose sequencer leads. */
static h_env *start(const char *const *cfg)
{
    h_env *env = h_env_new();
    assert_non_null(env);
    assert_int_equal(h_pg_start(env), 0);
    assert_int_equal(h_migrate(env), 0);
    assert_int_equal(h_key_create(env, "admin", env->admin_key, sizeof env->admin_key), 0);
    if (cfg) {
        assert_int_equal(h_vigil_start(env, cfg), 0);
        assert_int_equal(wait_sequencer_leader(env), 0);
    }
    return env;
}

/* Posts one transaction of a new customer, alone: the group commit's
 * flush (api_ingest.c) kicks for it, not the request. */
static void post_transaction(h_env *env)
{
    char id[40], body[320];
    assert_int_equal(h_customer_create(env, CUSTOMER, id, sizeof id), 0);
    assert_true(wait_sequenced(env, 0, 5000) >= 0); /* the customer's events first */
    static int n;
    snprintf(body, sizeof body,
             "{\"external_id\": \"wake-%d\", \"customer_id\": \"%s\", \"amount\": \"10.00\","
             " \"currency\": \"USD\", \"direction\": \"in\", \"channel\": \"wire\","
             " \"occurred_at\": \"2026-11-01T10:00:00Z\"}",
             ++n, id);
    h_resp r = {0};
    assert_int_equal(h_post(env, env->admin_key, body, &r, "/transactions"), 0);
    assert_int_equal(r.status, 201);
    h_resp_free(&r);
}

/* Three writes by `post`; the events of each must be sequenced within 5 s
 * (the sequencer's poll is 60 s: only a wake-up does that). */
static void expect_prompt_of(h_env *env, const char *how, void (*post)(h_env *))
{
    h_sleep_ms(300); /* past the leader's first round */
    for (int i = 0; i < 3; i++) {
        long long before = h_db_count(env, "SELECT count(*) FROM event_log");
        post(env);
        long long ms = wait_sequenced(env, before, 5000);
        fprintf(stderr, "wake: %s, sequenced %lld ms after the 201\n", how, ms);
        assert_true(ms >= 0);
    }
}

static void expect_prompt(h_env *env, const char *how)
{
    expect_prompt_of(env, how, post_customer);
}

static void no_business_trigger_notifies(void **state)
{
    h_env *env = start(NULL);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM pg_trigger t"
                                     " JOIN pg_proc p ON p.oid = t.tgfoid"
                                     " WHERE t.tgrelid = 'outbox'::regclass"
                                     "   AND p.prosrc LIKE '%pg_notify%'"),
                     0);
    h_teardown(env);
}

static void in_process_kick(void **state)
{
    const char *cfg[] = {"VIGIL_ROLES=api,sequencer", "VIGIL_SEQUENCER_POLL_MS=60000", NULL};
    h_env *env = start(cfg);
    expect_prompt(env, "in-process");
    h_teardown(env);
}

/* A single POST /transactions is committed by a flush of the group commit,
 * parked (flusher threads) or blocking (VIGIL_INGEST_FLUSHES=0); the flush
 * wakes the sequencer once for its group and the requests it answers do
 * not kick again. */
static void in_process_kick_from_group_commit(void **state)
{
    const char *parked[] = {"VIGIL_ROLES=api,sequencer", "VIGIL_SEQUENCER_POLL_MS=60000", NULL};
    h_env *env = start(parked);
    expect_prompt_of(env, "in-process, group commit", post_transaction);
    assert_int_equal(h_vigil_stop(env, SIGTERM), 0);
    const char *blocking[] = {"VIGIL_ROLES=api,sequencer", "VIGIL_SEQUENCER_POLL_MS=60000",
                              "VIGIL_INGEST_FLUSHES=0", NULL};
    assert_int_equal(h_vigil_start(env, blocking), 0);
    assert_int_equal(wait_sequencer_leader(env), 0);
    expect_prompt_of(env, "in-process, group commit without flushers", post_transaction);
    h_teardown(env);
}

static void across_processes_notify(void **state)
{
    const char *api[] = {"VIGIL_ROLES=api", "VIGIL_SEQUENCER_POLL_MS=60000", NULL};
    h_env *env = start(NULL);
    assert_int_equal(h_vigil_start(env, api), 0);
    char port[64];
    snprintf(port, sizeof port, "VIGIL_HTTP_ADDR=127.0.0.1:%d", h_free_port());
    const char *seq_env[] = {"VIGIL_ROLES=sequencer", "VIGIL_SEQUENCER_POLL_MS=60000", port, NULL};
    const char *argv[] = {"serve", NULL};
    pid_t seq = h_vigil_spawn(env, seq_env, argv, NULL, 0);
    assert_true(seq > 0);
    assert_int_equal(wait_sequencer_leader(env), 0);
    expect_prompt(env, "across processes");
    assert_int_equal(h_proc_stop(seq, SIGTERM, 10000), 0);
    h_teardown(env);
}

static void plain_sql_is_found_by_the_poll(void **state)
{
    const char *cfg[] = {"VIGIL_ROLES=api,sequencer", "VIGIL_SEQUENCER_POLL_MS=200", NULL};
    h_env *env = start(cfg);
    long long before = h_db_count(env, "SELECT count(*) FROM event_log");
    /* Written by SQL alone (no Vigil process committed it, nobody kicks). */
    assert_int_equal(h_db_exec(env, "INSERT INTO customers (full_name, country)"
                                    " VALUES ('Plain SQL', 'DE')"),
                     0);
    assert_true(h_db_count(env, "SELECT count(*) FROM outbox") > 0);
    long long ms = wait_sequenced(env, before, 5000);
    fprintf(stderr, "wake: plain SQL, sequenced %lld ms after the insert (poll 200 ms)\n", ms);
    assert_true(ms >= 0);
    h_teardown(env);
}

static void notify_during_a_query_waits_in_libpq_not_on_the_socket(void **state)
{
    h_env *env = h_env_new();
    assert_non_null(env);
    assert_int_equal(h_pg_start(env), 0);
    PGconn *a = h_db_connect(env), *b = h_db_connect(env);
    assert_non_null(a);
    assert_non_null(b);
    PQclear(PQexec(a, "LISTEN vigil_test_queue"));
    PQclear(PQexec(b, "SELECT pg_advisory_lock(4242)"));
    /* a's query waits for b's lock: it is running when the NOTIFY comes */
    assert_int_equal(PQsendQuery(a, "SELECT pg_advisory_lock(4242)"), 1);
    char pid[16];
    snprintf(pid, sizeof pid, "%d", PQbackendPID(a));
    int waiting = 0;
    for (int i = 0; i < 200 && !waiting; i++) {
        waiting = h_db_count(env,
                             "SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int"
                             " AND wait_event_type = 'Lock'",
                             pid) == 1;
        if (!waiting)
            h_sleep_ms(20);
    }
    assert_true(waiting);
    PQclear(PQexec(b, "NOTIFY vigil_test_queue"));
    PQclear(PQexec(b, "SELECT pg_advisory_unlock(4242)"));
    PGresult *r;
    while ((r = PQgetResult(a)))
        PQclear(r);
    /* the query is answered; the socket is quiet, the notification queued */
    struct pollfd pfd = {.fd = PQsocket(a), .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 300), 0);
    assert_int_equal(db_take_notifies(a), 1);
    assert_int_equal(db_take_notifies(a), 0);
    PQfinish(a);
    PQfinish(b);
    h_teardown(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_business_trigger_notifies),
        cmocka_unit_test(in_process_kick),
        cmocka_unit_test(in_process_kick_from_group_commit),
        cmocka_unit_test(across_processes_notify),
        cmocka_unit_test(plain_sql_is_found_by_the_poll),
        cmocka_unit_test(notify_during_a_query_waits_in_libpq_not_on_the_socket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
