/*
 * test_ingest_coalesce.c — concurrent single-transaction POSTs share one
 * commit (src/api/api_ingest.c), and each still gets its own answer.
 *
 * The first request's flush is held inside PostgreSQL by a row lock the
 * test takes on its customer; with VIGIL_INGEST_FLUSHES=1 every request sent
 * meanwhile must wait, and all of them go in the next flush together. Among
 * them: new transactions, three with one external_id, two naming an unknown
 * customer, and one a trigger (installed by the test, as the owner) makes
 * the database refuse without naming an item. Expected: each new one 201,
 * exactly one of the three 201 and two 200 duplicates of it, the unknown
 * customers 422 naming customer_id, the trigger's victim alone fails, the
 * others are written — and /metrics shows that all of them were joined,
 * although vigil has only two HTTP threads (waiting requests are parked,
 * not holding a thread). A SIGTERM while requests are parked drains them:
 * each gets its 201 once the held flush commits, and vigil exits with 0.
 */
#include "harness.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

typedef struct call {
    h_env *env;
    char body[512];
    h_resp r;
    atomic_int done;
    pthread_t th;
} call;

static void *run_call(void *arg)
{
    call *c = arg;
    h_post(c->env, c->env->admin_key, c->body, &c->r, "/transactions");
    atomic_store(&c->done, 1);
    return NULL;
}

static void tx_body(call *c, const char *ext, const char *customer)
{
    snprintf(c->body, sizeof c->body,
             "{\"external_id\": \"%s\", \"customer_id\": \"%s\", \"amount\": \"120.00\","
             " \"currency\": \"USD\", \"direction\": \"in\", \"channel\": \"wire\","
             " \"occurred_at\": \"2026-11-01T10:00:00Z\"}",
             ext, customer);
}

static char *new_customer(h_env *env, const char *name)
{
    char body[128];
    snprintf(body, sizeof body, "{\"full_name\": \"%s\", \"country\": \"DE\"}", name);
    char id[40];
    assert_int_equal(h_customer_create(env, body, id, sizeof id), 0);
    return strdup(id);
}

static long long metric(h_env *env, const char *name)
{
    double v;
    assert_int_equal(h_metric(env, env->admin_key, name, &v), 0);
    return (long long)v;
}

static const char *jstr(const h_resp *r, const char *k)
{
    return json_string_value(json_object_get(r->json, k));
}

/* PostgreSQL with the schema, an admin key, and vigil serve with cfg. */
static h_env *start_env(const char *const *cfg)
{
    h_env *env = h_env_new();
    assert_non_null(env);
    assert_int_equal(h_pg_start(env), 0);
    assert_int_equal(h_migrate(env), 0);
    assert_int_equal(h_key_create(env, "admin", env->admin_key, sizeof env->admin_key), 0);
    assert_int_equal(h_vigil_start(env, cfg), 0);
    return env;
}

/* Locks customer `id` in an open transaction: a flush that writes one of its
 * transactions waits inside PostgreSQL until release_hold. */
static PGconn *hold_customer(h_env *env, const char *id)
{
    PGconn *hold = h_db_connect(env);
    assert_non_null(hold);
    const char *p[] = {id};
    PGresult *res = PQexec(hold, "BEGIN");
    PQclear(res);
    res = PQexecParams(hold, "SELECT 1 FROM customers WHERE id = $1 FOR UPDATE", 1, NULL, p, NULL,
                       NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    PQclear(res);
    return hold;
}

/* Waits (up to 10 s) until a flush waits on that lock. */
static void wait_flush_held(h_env *env)
{
    long long t0 = h_now_ms();
    while (h_db_count(env, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                           " AND query LIKE '%vigil_ingest%'") < 1) {
        assert_true(h_now_ms() - t0 < 10000);
        h_sleep_ms(20);
    }
}

static void release_hold(PGconn *hold)
{
    PGresult *res = PQexec(hold, "COMMIT");
    PQclear(res);
    PQfinish(hold);
}

enum { FIRST, GOOD0, GOOD1, GOOD2, GOOD3, DUP0, DUP1, DUP2, UNKNOWN0, UNKNOWN1, BOOM, NCALLS };

static void joined_requests_get_their_own_answers(void **state)
{
    (void)state;
    /* Two HTTP threads for eleven requests: a request waiting for its flush
     * is parked, not holding a thread, so all of them are read and queued
     * while the first flush is held. */
    const char *cfg[] = {"VIGIL_INGEST_FLUSHES=1", "VIGIL_HTTP_THREADS=2", NULL};
    h_env *env = start_env(cfg);
    char *a = new_customer(env, "Held Customer"), *b = new_customer(env, "Joined Customer");
    /* A failure that names no item, for one external_id only. */
    assert_int_equal(h_db_exec(env, "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$"
                                    " BEGIN IF NEW.external_id = 'boom' THEN"
                                    "  RAISE EXCEPTION 'boom refused'; END IF; RETURN NEW; END $$;"
                                    " CREATE TRIGGER boom BEFORE INSERT ON transactions"
                                    " FOR EACH ROW EXECUTE FUNCTION boom()"),
                     0);
    long long flushes0 = metric(env, "vigil_ingest_flushes_total");

    /* Hold the first flush inside PostgreSQL. */
    PGconn *hold = hold_customer(env, a);

    static call calls[NCALLS];
    memset(calls, 0, sizeof calls);
    for (int i = 0; i < NCALLS; i++)
        calls[i].env = env;
    tx_body(&calls[FIRST], "held-1", a);
    for (int i = GOOD0; i <= GOOD3; i++) {
        char ext[32];
        snprintf(ext, sizeof ext, "joined-%d", i);
        tx_body(&calls[i], ext, b);
    }
    for (int i = DUP0; i <= DUP2; i++)
        tx_body(&calls[i], "dup-1", b);
    tx_body(&calls[UNKNOWN0], "unknown-1", "00000000-0000-4000-8000-000000000001");
    tx_body(&calls[UNKNOWN1], "unknown-2", "00000000-0000-4000-8000-000000000002");
    tx_body(&calls[BOOM], "boom", b);

    assert_int_equal(pthread_create(&calls[FIRST].th, NULL, run_call, &calls[FIRST]), 0);
    wait_flush_held(env);
    for (int i = GOOD0; i < NCALLS; i++)
        assert_int_equal(pthread_create(&calls[i].th, NULL, run_call, &calls[i]), 0);
    h_sleep_ms(800);
    /* Nobody is answered while the one flush slot is held. */
    for (int i = 0; i < NCALLS; i++)
        assert_int_equal(atomic_load(&calls[i].done), 0);
    release_hold(hold);
    for (int i = 0; i < NCALLS; i++)
        pthread_join(calls[i].th, NULL);

    assert_int_equal(calls[FIRST].r.status, 201);
    for (int i = GOOD0; i <= GOOD3; i++) {
        char ext[32], want[80], loc[128];
        snprintf(ext, sizeof ext, "joined-%d", i);
        assert_int_equal(calls[i].r.status, 201);
        assert_string_equal(jstr(&calls[i].r, "external_id"), ext);
        assert_string_equal(jstr(&calls[i].r, "customer_id"), b);
        assert_false(json_is_true(json_object_get(calls[i].r.json, "duplicate")));
        snprintf(want, sizeof want, "/transactions/%s", jstr(&calls[i].r, "id"));
        assert_int_equal(h_resp_header(&calls[i].r, "Location", loc, sizeof loc), 0);
        assert_non_null(strstr(loc, want));
    }
    int created = 0;
    for (int i = DUP0; i <= DUP2; i++) {
        assert_true(calls[i].r.status == 201 || calls[i].r.status == 200);
        assert_int_equal(json_is_true(json_object_get(calls[i].r.json, "duplicate")),
                         calls[i].r.status == 200);
        created += calls[i].r.status == 201;
        assert_string_equal(jstr(&calls[i].r, "id"), jstr(&calls[DUP0].r, "id"));
    }
    assert_int_equal(created, 1);
    for (int i = UNKNOWN0; i <= UNKNOWN1; i++) {
        assert_int_equal(calls[i].r.status, 422);
        assert_string_equal(jstr(&calls[i].r, "field"), "customer_id");
        assert_non_null(strstr(jstr(&calls[i].r, "detail"), "unknown customer"));
    }
    assert_int_equal(calls[BOOM].r.status, 500);
    assert_non_null(strstr(jstr(&calls[BOOM].r, "detail"), "boom refused"));

    /* Written: the held one, four new, one of the three; nothing else. */
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM transactions"), 6);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM transactions WHERE external_id"
                                     " IN ('unknown-1', 'unknown-2', 'boom')"),
                     0);
    /* Each written transaction has its event, once. */
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM (SELECT payload::jsonb FROM outbox UNION ALL"
                                " SELECT payload::jsonb FROM event_log) e"
                                " WHERE payload->>'type' = 'aml.transaction.ingested'"),
                     6);

    long long largest = metric(env, "vigil_ingest_largest_flush");
    long long flushes = metric(env, "vigil_ingest_flushes_total") - flushes0;
    long long alone = metric(env, "vigil_ingest_retried_alone_total");
    fprintf(stderr, "coalesce: %d requests, %lld flushes, largest %lld, retried alone %lld\n",
            NCALLS, flushes, largest, alone);
    /* Every request sent while the first flush was held went in the next
     * one (the blocking design could not: each waiting request held one of
     * the two HTTP threads). */
    assert_int_equal(largest, NCALLS - 1);
    for (int i = 0; i < NCALLS; i++)
        h_resp_free(&calls[i].r);
    free(a);
    free(b);
    h_teardown(env);
}

/* SIGTERM while requests are parked behind a held flush: the drain waits
 * for them, each gets its 201 once the flush commits, and vigil exits
 * cleanly (no connection is left suspended when the daemon stops). */
static void shutdown_answers_parked_requests(void **state)
{
    (void)state;
    const char *cfg[] = {"VIGIL_INGEST_FLUSHES=1", "VIGIL_SHUTDOWN_GRACE=5", NULL};
    h_env *env = start_env(cfg);
    char *b = new_customer(env, "Shutdown Customer");
    PGconn *hold = hold_customer(env, b);
    enum { N = 24 };
    static call calls[N];
    memset(calls, 0, sizeof calls);
    for (int i = 0; i < N; i++) {
        char ext[32];
        snprintf(ext, sizeof ext, "stop-%d", i);
        calls[i].env = env;
        tx_body(&calls[i], ext, b);
        assert_int_equal(pthread_create(&calls[i].th, NULL, run_call, &calls[i]), 0);
    }
    /* Until the first flush waits on the lock and the rest are parked. */
    wait_flush_held(env);
    h_sleep_ms(300);
    pid_t vigil = env->vigil_pid;
    env->vigil_pid = 0; /* this test stops it */
    assert_int_equal(kill(vigil, SIGTERM), 0);
    h_sleep_ms(500);
    for (int i = 0; i < N; i++)
        assert_int_equal(atomic_load(&calls[i].done), 0);
    release_hold(hold);
    for (int i = 0; i < N; i++) {
        pthread_join(calls[i].th, NULL);
        assert_int_equal(calls[i].r.status, 201);
        h_resp_free(&calls[i].r);
    }
    assert_int_equal(h_proc_stop(vigil, 0, 15000), 0); /* exit 0 after the drain */
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM transactions"
                                     " WHERE external_id LIKE 'stop-%'"),
                     N);
    free(b);
    h_teardown(env);
}

/* SIGTERM under a steady load on keep-alive connections (the harness keeps
 * one connection per thread): requests that start after the signal are
 * refused (503, problem+json, "Connection: close") instead of served, so
 * the drain ends when the requests already running finish, not when
 * VIGIL_SHUTDOWN_GRACE runs out. The chaos test found vigil serving new
 * requests on open connections through the whole grace and taking over
 * its 15 s stop timeout. Every request is answered: 201 before the
 * signal, 503 or a refused connection after; none fails otherwise. */
typedef struct loader {
    h_env *env;
    const char *customer;
    int id;
    atomic_int *stop;
    long created, refused, unreachable, other;
    char refusal[256], other_what[256];
    pthread_t th;
} loader;

static void *run_loader(void *arg)
{
    loader *l = arg;
    for (int i = 0; !atomic_load(l->stop); i++) {
        call c = {.env = l->env};
        char ext[48];
        snprintf(ext, sizeof ext, "keepalive-%d-%d", l->id, i);
        tx_body(&c, ext, l->customer);
        int rc = h_post(l->env, l->env->admin_key, c.body, &c.r, "/transactions");
        if (rc != 0) {
            l->unreachable++;
            h_sleep_ms(20);
        } else if (c.r.status == 201) {
            l->created++;
        } else if (c.r.status == 503) {
            /* The first refusal's content type, Connection and detail. */
            int closes = c.r.headers && strcasestr(c.r.headers, "connection: close");
            const char *detail = jstr(&c.r, "detail");
            if (!l->refused++)
                snprintf(l->refusal, sizeof l->refusal, "%s|%s|%s", c.r.content_type,
                         closes ? "close" : "", detail ? detail : "");
        } else {
            l->other++;
            snprintf(l->other_what, sizeof l->other_what, "%ld %.200s", c.r.status, c.r.body);
        }
        h_resp_free(&c.r);
    }
    return NULL;
}

static void shutdown_under_keepalive_load_is_prompt(void **state)
{
    (void)state;
    const char *cfg[] = {"VIGIL_SHUTDOWN_GRACE=10", NULL};
    h_env *env = start_env(cfg);
    char *b = new_customer(env, "Keepalive Customer");
    enum { K = 4 };
    static loader l[K];
    atomic_int stop = 0;
    for (int i = 0; i < K; i++) {
        memset(&l[i], 0, sizeof l[i]);
        l[i].env = env;
        l[i].customer = b;
        l[i].id = i;
        l[i].stop = &stop;
        assert_int_equal(pthread_create(&l[i].th, NULL, run_loader, &l[i]), 0);
    }
    h_sleep_ms(1500); /* the load runs */
    pid_t vigil = env->vigil_pid;
    env->vigil_pid = 0; /* this test stops it */
    long long t0 = h_now_ms();
    assert_int_equal(kill(vigil, SIGTERM), 0);
    int rc = h_proc_stop(vigil, 0, 15000); /* 0: exited 0 within 15 s */
    long long took = h_now_ms() - t0;
    h_sleep_ms(300); /* the loaders see the refusals and the closed port */
    atomic_store(&stop, 1);
    long created = 0, refused = 0, other = 0;
    for (int i = 0; i < K; i++) {
        pthread_join(l[i].th, NULL);
        created += l[i].created;
        refused += l[i].refused;
        other += l[i].other;
        if (l[i].other)
            fprintf(stderr, "loader %d: unexpected answer %s\n", i, l[i].other_what);
    }
    fprintf(stderr, "SIGTERM under keep-alive load: stopped in %lld ms; %ld created, %ld refused\n",
            took, created, refused);
    assert_int_equal(rc, 0);
    assert_true(took < 5000); /* the grace is 10 s */
    assert_true(created > 0);
    assert_true(refused > 0);
    assert_int_equal(other, 0);
    for (int i = 0; i < K; i++)
        if (l[i].refused) {
            assert_non_null(strstr(l[i].refusal, "application/problem+json|close|"));
            assert_non_null(strstr(l[i].refusal, "shutting down"));
        }
    /* What was answered 201 is stored, and nothing else: a refused request
     * wrote nothing. */
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM transactions"
                                     " WHERE external_id LIKE 'keepalive-%'"),
                     created);
    free(b);
    h_teardown(env);
}

/* VIGIL_INGEST_FLUSHES=0: concurrent requests each commit alone. */
static void coalescing_off_commits_each_alone(void **state)
{
    (void)state;
    const char *cfg[] = {"VIGIL_INGEST_FLUSHES=0", NULL};
    h_env *env = start_env(cfg);
    char *b = new_customer(env, "Alone Customer");
    static call calls[8];
    memset(calls, 0, sizeof calls);
    for (int i = 0; i < 8; i++) {
        char ext[32];
        snprintf(ext, sizeof ext, "alone-%d", i);
        calls[i].env = env;
        tx_body(&calls[i], ext, b);
        assert_int_equal(pthread_create(&calls[i].th, NULL, run_call, &calls[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(calls[i].th, NULL);
        assert_int_equal(calls[i].r.status, 201);
        h_resp_free(&calls[i].r);
    }
    assert_int_equal(metric(env, "vigil_ingest_largest_flush"), 1);
    assert_int_equal(metric(env, "vigil_ingest_flushes_total"), 8);
    free(b);
    h_teardown(env);
}

/* Waits (up to 10 s) until the sequencer leads in this vigil serve. */
static void wait_sequencer_leads(h_env *env)
{
    long long t0 = h_now_ms();
    while (metric(env, "vigil_sequencer_leader") != 1) {
        assert_true(h_now_ms() - t0 < 10000);
        h_sleep_ms(50);
    }
}

/* The sequencer's rounds that moved something, from one /metrics answer. */
static long long sequencer_moves(h_env *env)
{
    h_resp r = {0};
    assert_int_equal(h_get(env, env->admin_key, &r, "/metrics"), 0);
    assert_int_equal(r.status, 200);
    long long n = (long long)(h_metric_in(r.body, "vigil_sequencer_calls_total") -
                              h_metric_in(r.body, "vigil_sequencer_empty_calls_total"));
    h_resp_free(&r);
    return n;
}

static void wait_outbox_empty(h_env *env)
{
    long long t0 = h_now_ms();
    while (h_db_count(env, "SELECT count(*) FROM outbox") != 0) {
        assert_true(h_now_ms() - t0 < 10000);
        h_sleep_ms(20);
    }
}

/* The aml.transaction.ingested events in event_log of the transactions
 * whose external_id is LIKE `pattern` (one each when all is well). */
static long long logged(h_env *env, const char *pattern)
{
    return h_db_count(env,
                      "SELECT count(*) FROM transactions t JOIN event_log l"
                      " ON l.subject = t.id::text WHERE t.external_id LIKE $1"
                      " AND l.event_type = 'aml.transaction.ingested'",
                      pattern);
}

/* event_log is gap-free from 1 and its hash chain holds. */
static void assert_log_intact(h_env *env)
{
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM event_log"),
                     h_db_count(env, "SELECT coalesce(max(seq), 0) FROM event_log"));
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM event_log l"
                                     " LEFT JOIN event_log p ON p.seq = l.seq - 1"
                                     " WHERE l.prev_hash IS DISTINCT FROM coalesce(p.hash,"
                                     "  decode(repeat('00', 32), 'hex'))"
                                     " OR l.hash <> vigil_event_hash(l.prev_hash, l.seq,"
                                     "  l.event_id, l.event_type, l.subject, l.payload)"),
                     0);
}

/* With the sequencer leading in the same process, a single POST's commit
 * also sequences its event (migration 0030): it is in event_log, written by
 * the ingest's own transaction, when the 201 arrives; with
 * VIGIL_INGEST_SEQUENCE=0 the sequencer does it in a commit of its own. */
static void commit_sequences_its_events(void **state)
{
    (void)state;
    for (int on = 1; on >= 0; on--) {
        const char *cfg[] = {"VIGIL_ROLES=api,sequencer",
                             on ? "VIGIL_INGEST_SEQUENCE=1" : "VIGIL_INGEST_SEQUENCE=0", NULL};
        h_env *env = start_env(cfg);
        wait_sequencer_leads(env);
        char *c = new_customer(env, "Sequenced Customer");
        wait_outbox_empty(env);
        long long moves = sequencer_moves(env);
        for (int i = 0; i < 5; i++) {
            call k = {.env = env};
            char ext[32];
            snprintf(ext, sizeof ext, "seq-%d", i);
            tx_body(&k, ext, c);
            run_call(&k);
            assert_int_equal(k.r.status, 201);
            h_resp_free(&k.r);
            if (on) /* at once: its commit put it there */
                assert_int_equal(logged(env, ext), 1);
        }
        /* Either way each event is sequenced once, in POST order; only
         * without it did the sequencer move them. */
        wait_outbox_empty(env);
        assert_int_equal(
            h_db_count(env, "SELECT count(*) FROM (SELECT t.external_id,"
                            "  row_number() OVER (ORDER BY l.seq) AS n"
                            "  FROM event_log l JOIN transactions t ON l.subject = t.id::text"
                            "  WHERE l.event_type = 'aml.transaction.ingested') x"
                            " WHERE x.external_id = 'seq-' || (x.n - 1)"),
            5);
        assert_int_equal(sequencer_moves(env) > moves, !on);
        assert_int_equal(metric(env, "vigil_ingest_sequenced_events_total") >= 5, on);
        assert_int_equal(metric(env, "vigil_ingest_sequence_failures_total"), 0);
        assert_log_intact(env);
        free(c);
        h_teardown(env);
    }
}

/* POST /transactions with a batch of n transactions PREFIX-0..n-1. */
static void post_batch(h_env *env, const char *prefix, int n, const char *customer)
{
    size_t cap = 64 + (size_t)n * 300, len = 0;
    char *body = malloc(cap);
    assert_non_null(body);
    len += (size_t)snprintf(body + len, cap - len, "{\"transactions\": [");
    for (int i = 0; i < n; i++) {
        call k = {0};
        char ext[40];
        snprintf(ext, sizeof ext, "%s-%d", prefix, i);
        tx_body(&k, ext, customer);
        len += (size_t)snprintf(body + len, cap - len, "%s%s", i ? ", " : "", k.body);
    }
    snprintf(body + len, cap - len, "]}");
    h_resp r = {0};
    assert_int_equal(h_post(env, env->admin_key, body, &r, "/transactions"), 0);
    assert_int_equal(r.status, 201);
    h_resp_free(&r);
    free(body);
}

/* A batch of up to 100 is sequenced in its own commit too; a larger one
 * is left to the sequencer. */
static void small_batches_sequence_in_their_commit(void **state)
{
    (void)state;
    const char *cfg[] = {"VIGIL_ROLES=api,sequencer", NULL};
    h_env *env = start_env(cfg);
    wait_sequencer_leads(env);
    char *c = new_customer(env, "Batch Customer");
    wait_outbox_empty(env);
    long long moves = sequencer_moves(env);
    post_batch(env, "small", 3, c);
    assert_int_equal(logged(env, "small-%"), 3);
    post_batch(env, "edge", 100, c);
    assert_int_equal(logged(env, "edge-%"), 100);
    wait_outbox_empty(env);
    assert_int_equal(sequencer_moves(env), moves);
    post_batch(env, "large", 101, c);
    wait_outbox_empty(env);
    assert_true(sequencer_moves(env) > moves);
    assert_int_equal(logged(env, "%"), 204);
    assert_int_equal(metric(env, "vigil_sequencer_strays_total"), 0);
    assert_log_intact(env);
    free(c);
    h_teardown(env);
}

typedef struct poster {
    h_env *env;
    const char *customer;
    int k, n, failed;
    pthread_t th;
} poster;

static void *run_poster(void *arg)
{
    poster *p = arg;
    for (int i = 0; i < p->n; i++) {
        call k = {.env = p->env};
        char ext[32];
        snprintf(ext, sizeof ext, "mix-%d-%d", p->k, i);
        tx_body(&k, ext, p->customer);
        run_call(&k);
        p->failed += k.r.status != 201;
        h_resp_free(&k.r);
    }
    return NULL;
}

/* Commits that sequence their own events and the sequencer's rounds (woken
 * by customer writes meanwhile) share one gap-free, hash-chained log: every
 * event once, none left behind; with one flusher and with four (whose
 * commits, for different customers, meet at the sequencer's lock). */
static void commits_and_sequencer_share_the_log(void **state)
{
    (void)state;
    for (int flushes = 1; flushes <= 4; flushes += 3) {
        char fl[40];
        snprintf(fl, sizeof fl, "VIGIL_INGEST_FLUSHES=%d", flushes);
        const char *cfg[] = {"VIGIL_ROLES=api,sequencer", fl, NULL};
        h_env *env = start_env(cfg);
        wait_sequencer_leads(env);
        enum { P = 6, N = 30, CUSTOMERS = 40 };
        static poster ps[P];
        char *cs[P];
        for (int i = 0; i < P; i++) {
            char name[32];
            snprintf(name, sizeof name, "Poster %d", i);
            cs[i] = new_customer(env, name);
        }
        for (int i = 0; i < P; i++) {
            ps[i] = (poster){.env = env, .customer = cs[i], .k = i, .n = N};
            assert_int_equal(pthread_create(&ps[i].th, NULL, run_poster, &ps[i]), 0);
        }
        for (int i = 0; i < CUSTOMERS; i++) {
            char name[32];
            snprintf(name, sizeof name, "Mixed %d", i);
            free(new_customer(env, name));
        }
        for (int i = 0; i < P; i++) {
            pthread_join(ps[i].th, NULL);
            assert_int_equal(ps[i].failed, 0);
            free(cs[i]);
        }
        wait_outbox_empty(env);
        /* Both paths ran, */
        assert_true(metric(env, "vigil_ingest_sequenced_events_total") > 0);
        assert_true(h_db_count(env, "SELECT count(*) FROM event_log WHERE event_type ="
                                    " 'aml.customer.created'") == CUSTOMERS + P);
        /* every transaction's event is there once, */
        assert_int_equal(logged(env, "%"), P * N);
        assert_int_equal(h_db_count(env, "SELECT count(*) FROM event_log"),
                         h_db_count(env, "SELECT count(DISTINCT event_id) FROM event_log"));
        /* and the log is gap-free and chained. */
        assert_log_intact(env);
        assert_int_equal(metric(env, "vigil_sequencer_strays_total"), 0);
        h_teardown(env);
    }
}

/* The sequencing step failing (here: a payload that is not a JSON object,
 * written by plain SQL) does not fail the ingest: the transaction is
 * stored, the failure is returned, and the events wait in the outbox. */
static void failed_sequencing_keeps_the_ingest(void **state)
{
    (void)state;
    const char *cfg[] = {"VIGIL_ROLES=api", NULL};
    h_env *env = start_env(cfg);
    char *c = new_customer(env, "Poisoned Customer");
    assert_int_equal(h_db_exec(env, "INSERT INTO outbox (event_id, event_type, subject, payload)"
                                    " VALUES (gen_random_uuid(), 'aml.test.poison', 'p', '[1]')"),
                     0);
    call k = {0};
    char items[sizeof k.body + 2];
    tx_body(&k, "poisoned", c);
    snprintf(items, sizeof items, "[%s]", k.body);
    char *r = h_db_text(env,
                        "SELECT seq_moved || ' ' || coalesce(seq_error, '') FROM"
                        " vigil_ingest_rows_sequenced($1::jsonb, '{}'::uuid[], 0, 100)",
                        items);
    assert_non_null(r);
    assert_non_null(strstr(r, "-1 "));
    assert_non_null(strstr(r, "is not a JSON object"));
    free(r);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM transactions"
                                     " WHERE external_id = 'poisoned'"),
                     1);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM event_log"), 0);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM outbox"
                                     " WHERE event_type = 'aml.transaction.ingested'"),
                     1);
    /* Without the poison the same call sequences everything waiting. */
    assert_int_equal(h_db_exec(env, "DELETE FROM outbox WHERE event_type = 'aml.test.poison'"), 0);
    tx_body(&k, "cured", c);
    snprintf(items, sizeof items, "[%s]", k.body);
    long long waiting = h_db_count(env, "SELECT count(*) FROM outbox");
    assert_true(waiting >= 2); /* the customer's event and poisoned's */
    long long moved = h_db_count(env,
                                 "SELECT seq_moved FROM"
                                 " vigil_ingest_rows_sequenced($1::jsonb, '{}'::uuid[], 0, 100)",
                                 items);
    assert_true(moved > waiting); /* and cured's */
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM event_log"), moved);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM outbox"), 0);
    assert_log_intact(env);
    free(c);
    h_teardown(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(joined_requests_get_their_own_answers),
        cmocka_unit_test(coalescing_off_commits_each_alone),
        cmocka_unit_test(shutdown_answers_parked_requests),
        cmocka_unit_test(shutdown_under_keepalive_load_is_prompt),
        cmocka_unit_test(commit_sequences_its_events),
        cmocka_unit_test(commits_and_sequencer_share_the_log),
        cmocka_unit_test(failed_sequencing_keeps_the_ingest),
        cmocka_unit_test(small_batches_sequence_in_their_commit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
