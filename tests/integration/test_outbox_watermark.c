/*
 * test_outbox_watermark.c — the sequencer scans the outbox from a low
 * watermark and never skips a row that commits late (0017).
 *
 * Most tests call vigil_sequence(), the sequencer's own function, directly,
 * carrying its state (watermark and candidate) from call to call as
 * src/events/sequencer.c does, and never sweep from 0 unless they say so:
 * a row the watermark skipped would stay in the outbox and fail them.
 *
 * What must hold:
 *   - a row whose transaction drew its id before others and commits after
 *     the sequencer took them is sequenced; the watermark waits below it;
 *   - a long read-only snapshot (pg_dump, a report) does not hold the
 *     watermark back; a writer older than the candidate does;
 *   - under concurrent writers that commit and roll back in random order,
 *     every committed row is sequenced exactly once and the outbox ends
 *     empty, without a sweep;
 *   - a call that stops at its batch limit moves the watermark only over
 *     the rows it took;
 *   - the sweep takes a row below the watermark and counts it as a stray;
 *   - its statements walk the outbox's primary key even when planned on an
 *     empty outbox (0018), and it hashes events inline (0019);
 *   - `vigil serve` moves the watermark and reports it in /metrics, with no
 *     strays.
 */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The sequencer's state between calls, as in src/events/sequencer.c. */
typedef struct seq_state {
    char low[24], cand_id[24], cand_xid[24];
    int moved, strays;
} seq_state;

#define OUTBOX_ROW                                                                                 \
    "INSERT INTO outbox (event_id, event_type, subject, payload)"                                  \
    " SELECT e, 'test.watermark', 'tests/' || e, jsonb_build_object('id', e)"                      \
    " FROM (SELECT gen_random_uuid() AS e) x"

/* $1 rows at once. */
#define OUTBOX_ROWS                                                                                \
    "INSERT INTO outbox (event_id, event_type, subject, payload)"                                  \
    " SELECT e, 'test.watermark', 'tests/' || e, '{}'"                                             \
    " FROM (SELECT gen_random_uuid() AS e FROM generate_series(1, $1::int)) x"

static h_env *start(void)
{
    h_env *env = h_env_new();
    assert_non_null(env);
    assert_int_equal(h_pg_start(env), 0);
    assert_int_equal(h_migrate(env), 0);
    return env;
}

/* One vigil_sequence call on conn with state s (limit rows, sweep or not). */
static void seq_call(PGconn *conn, seq_state *s, int limit, int sweep)
{
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit);
    if (!s->low[0])
        strcpy(s->low, "0");
    const char *p[] = {lim, s->low, s->cand_id[0] ? s->cand_id : NULL,
                       s->cand_xid[0] ? s->cand_xid : NULL, sweep ? "true" : "false"};
    PGresult *r = PQexecParams(conn,
                               "SELECT moved, low, cand_id, cand_xid, strays FROM"
                               " vigil_sequence($1::int, $2::bigint, $3::bigint, $4::xid8,"
                               " $5::boolean)",
                               5, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "vigil_sequence: %s", PQerrorMessage(conn));
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    s->moved = atoi(PQgetvalue(r, 0, 0));
    assert_true(atoll(PQgetvalue(r, 0, 1)) >= atoll(s->low)); /* never moves down */
    snprintf(s->low, sizeof s->low, "%s", PQgetvalue(r, 0, 1));
    snprintf(s->cand_id, sizeof s->cand_id, "%s", PQgetvalue(r, 0, 2));
    snprintf(s->cand_xid, sizeof s->cand_xid, "%s", PQgetvalue(r, 0, 3));
    s->strays = atoi(PQgetvalue(r, 0, 4));
    PQclear(r);
}

/* Calls until nothing more moves and the watermark stops moving. */
static void seq_settle(PGconn *conn, seq_state *s)
{
    for (int i = 0; i < 1000; i++) {
        char before[24];
        snprintf(before, sizeof before, "%s", s->low);
        seq_call(conn, s, 100, 0);
        assert_int_equal(s->strays, 0);
        if (s->moved == 0 && strcmp(before, s->low) == 0 && i > 2)
            return;
    }
    fail_msg("the sequencer did not settle");
}

static void x(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
    assert_true(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK);
    PQclear(r);
}

static long long value(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    long long v = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

/* Row `late` draws its id first and commits last, after the sequencer took
 * the rows drawn after it; a second late row comes through a business
 * trigger (a customer). */
static void late_commit_is_sequenced(void **state)
{
    (void)state;
    h_env *env = start();
    PGconn *db = h_db(env);
    seq_state s = {0};
    seq_settle(db, &s); /* the migrations wrote no events; a first candidate */

    PGconn *late = h_db_connect(env);
    assert_non_null(late);
    x(late, "BEGIN");
    long long late_id = value(late, OUTBOX_ROW " RETURNING id"); /* the first write */
    PGconn *late2 = h_db_connect(env);
    assert_non_null(late2);
    x(late2, "BEGIN");
    x(late2, "INSERT INTO customers (full_name, country) VALUES ('Late Commit', 'DE')");

    for (int i = 0; i < 5; i++) {
        assert_int_equal(h_db_exec(env, OUTBOX_ROW), 0);
        seq_call(db, &s, 100, 0);
        assert_int_equal(s.moved, 1);
        assert_int_equal(s.strays, 0);
        assert_true(atoll(s.low) <= late_id); /* waits below the open row */
    }
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM event_log"), 5);

    x(late, "COMMIT");
    x(late2, "COMMIT");
    seq_settle(db, &s);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM outbox"), 0);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM event_log"), 5 + 1 + 1);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM event_log"
                                     " WHERE event_type = 'aml.customer.created'"),
                     1);
    /* And the watermark is past every id drawn. */
    assert_true(atoll(s.low) > h_db_count(env, "SELECT last_value FROM outbox_id_seq"));
    PQfinish(late);
    PQfinish(late2);
    h_teardown(env);
}

/* A REPEATABLE READ transaction holding its snapshot (no xid) while 2,000
 * rows are written and sequenced: the watermark passes them all. A writer
 * (an xid, no outbox row yet) holds it until it ends, then its own row,
 * drawn last, is sequenced too. */
static void only_writers_hold_the_watermark(void **state)
{
    (void)state;
    h_env *env = start();
    PGconn *db = h_db(env);
    seq_state s = {0};
    seq_settle(db, &s);

    PGconn *reader = h_db_connect(env);
    assert_non_null(reader);
    x(reader, "BEGIN ISOLATION LEVEL REPEATABLE READ");
    long long seen = value(reader, "SELECT count(*) FROM event_log");
    for (int i = 0; i < 20; i++) {
        assert_int_equal(h_db_exec(env, OUTBOX_ROWS, "100"), 0);
        seq_call(db, &s, 1000, 0);
    }
    seq_settle(db, &s);
    long long drawn = h_db_count(env, "SELECT last_value FROM outbox_id_seq");
    assert_true(atoll(s.low) > drawn);
    assert_int_equal(value(reader, "SELECT count(*) FROM event_log"), seen); /* still open */

    PGconn *writer = h_db_connect(env);
    assert_non_null(writer);
    x(writer, "BEGIN");
    x(writer, "SELECT pg_current_xact_id()");
    long long low_at_writer = atoll(s.low);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(h_db_exec(env, OUTBOX_ROW), 0);
        seq_call(db, &s, 1000, 0);
        seq_call(db, &s, 1000, 0);
    }
    assert_int_equal(atoll(s.low), low_at_writer); /* held: the writer may own a row */
    x(writer, OUTBOX_ROW);
    x(writer, "COMMIT");
    seq_settle(db, &s);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM outbox"), 0);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM event_log"), seen + 2000 + 3 + 1);
    assert_true(atoll(s.low) > h_db_count(env, "SELECT last_value FROM outbox_id_seq"));
    x(reader, "COMMIT");
    PQfinish(reader);
    PQfinish(writer);
    h_teardown(env);
}

#define WRITERS    6
#define PER_WRITER 150

static atomic_int writers_done;

typedef struct writer {
    h_env *env;
    pthread_t th;
    unsigned seed;
    int committed, failed;
} writer;

/* Transactions of 1 to 3 outbox rows, some through a customer's trigger,
 * each held open 0 to 9 ms, one in five rolled back. */
static void *write_loop(void *arg)
{
    writer *w = arg;
    PGconn *c = h_db_connect(w->env);
    if (!c) {
        w->failed = 1;
        atomic_fetch_add(&writers_done, 1);
        return NULL;
    }
    for (int i = 0; i < PER_WRITER && !w->failed; i++) {
        int rows = 1 + (int)(rand_r(&w->seed) % 3);
        int rollback = rand_r(&w->seed) % 5 == 0;
        PGresult *r = PQexec(c, "BEGIN");
        PQclear(r);
        for (int k = 0; k < rows; k++) {
            r = PQexec(c, rand_r(&w->seed) % 4 == 0
                              ? "INSERT INTO customers (full_name, country) VALUES ('W', 'DE')"
                              : OUTBOX_ROW);
            if (PQresultStatus(r) != PGRES_COMMAND_OK) {
                fprintf(stderr, "writer: %s", PQerrorMessage(c));
                w->failed = 1;
            }
            PQclear(r);
            h_sleep_ms((int)(rand_r(&w->seed) % 10));
        }
        r = PQexec(c, rollback ? "ROLLBACK" : "COMMIT");
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            w->failed = 1;
        PQclear(r);
        if (!rollback)
            w->committed += rows;
    }
    PQfinish(c);
    atomic_fetch_add(&writers_done, 1);
    return NULL;
}

static void concurrent_writers_lose_nothing(void **state)
{
    (void)state;
    h_env *env = start();
    PGconn *db = h_db(env);
    seq_state s = {0};
    seq_settle(db, &s);
    long long before = h_db_count(env, "SELECT count(*) FROM event_log");

    atomic_store(&writers_done, 0);
    writer w[WRITERS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < WRITERS; i++) {
        w[i].env = env;
        w[i].seed = 7919u * (unsigned)(i + 1);
        assert_int_equal(pthread_create(&w[i].th, NULL, write_loop, &w[i]), 0);
    }
    /* Small batches, so calls often stop at the limit with rows left. */
    long long calls = 0, t0 = h_now_ms();
    while (atomic_load(&writers_done) < WRITERS) {
        assert_true(h_now_ms() - t0 < 120000);
        seq_call(db, &s, 7, 0);
        assert_int_equal(s.strays, 0);
        calls++;
    }
    int committed = 0;
    for (int i = 0; i < WRITERS; i++) {
        assert_int_equal(pthread_join(w[i].th, NULL), 0);
        assert_false(w[i].failed);
        committed += w[i].committed;
    }
    seq_settle(db, &s);
    fprintf(stderr, "watermark: %d rows committed by %d writers, %lld calls while writing\n",
            committed, WRITERS, calls);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM outbox"), 0);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM event_log") - before, committed);
    assert_int_equal(h_db_count(env, "SELECT count(*) - count(DISTINCT event_id) FROM event_log"),
                     0);
    h_teardown(env);
}

/* A backlog larger than the batch: a call that stops at its limit moves the
 * watermark only over the rows it took, even when its candidate covers the
 * whole backlog. */
static void full_batch_moves_only_over_what_it_took(void **state)
{
    (void)state;
    h_env *env = start();
    PGconn *db = h_db(env);
    seq_state s = {0};
    seq_settle(db, &s);
    assert_int_equal(h_db_exec(env, OUTBOX_ROWS, "50"), 0);
    long long last = h_db_count(env, "SELECT max(id) FROM outbox");
    long long taken = 0;
    for (int i = 0; i < 3; i++) {
        seq_call(db, &s, 10, 0);
        assert_int_equal(s.moved, 10);
        taken += 10;
        long long next = h_db_count(env, "SELECT min(id) FROM outbox");
        assert_true(atoll(s.low) <= next);
    }
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM outbox"), 50 - taken);
    seq_settle(db, &s);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM outbox"), 0);
    assert_true(atoll(s.low) > last);
    h_teardown(env);
}

/* A watermark set too high by hand hides a row; the sweep finds it and
 * counts it. */
static void sweep_finds_strays(void **state)
{
    (void)state;
    h_env *env = start();
    PGconn *db = h_db(env);
    seq_state s = {0};
    seq_settle(db, &s);
    assert_int_equal(h_db_exec(env, OUTBOX_ROW), 0);
    snprintf(s.low, sizeof s.low, "%lld",
             h_db_count(env, "SELECT last_value FROM outbox_id_seq") + 1000);
    seq_call(db, &s, 100, 0);
    assert_int_equal(s.moved, 0);
    seq_call(db, &s, 100, 1);
    assert_int_equal(s.moved, 1);
    assert_int_equal(s.strays, 1);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM outbox"), 0);
    h_teardown(env);
}

typedef struct plans {
    char text[1 << 16];
    size_t len;
} plans;

static void keep_plan(void *arg, const char *msg)
{
    plans *p = arg;
    int n = snprintf(p->text + p->len, sizeof p->text - p->len, "%s", msg);
    if (n > 0)
        p->len += (size_t)n < sizeof p->text - p->len ? (size_t)n : sizeof p->text - p->len - 1;
}

/* The plans of every statement inside vigil_sequence (auto_explain) walk
 * outbox_pkey, even when they were made while the outbox was empty and
 * vacuumed to 0 pages, and still after the heap has grown (0018). */
static void plans_walk_the_primary_key(void **state)
{
    (void)state;
    h_env *env = start();
    PGconn *c = h_db_connect(env);
    assert_non_null(c);
    static plans p;
    p.len = 0;
    p.text[0] = '\0';
    PQsetNoticeProcessor(c, keep_plan, &p);
    x(c, "LOAD 'auto_explain'");
    x(c, "SET auto_explain.log_min_duration = 0");
    x(c, "SET auto_explain.log_nested_statements = on");
    x(c, "SET auto_explain.log_level = notice");
    assert_int_equal(h_db_exec(env, "DELETE FROM outbox"), 0);
    assert_int_equal(h_db_exec(env, "VACUUM outbox"), 0);
    seq_state s = {0};
    for (int i = 0; i < 8; i++) { /* past PL/pgSQL's switch to generic plans */
        assert_int_equal(h_db_exec(env, OUTBOX_ROW), 0);
        seq_call(c, &s, 100, 0);
        assert_int_equal(s.moved, 1);
    }
    assert_int_equal(h_db_exec(env, OUTBOX_ROWS, "2000"), 0);
    seq_call(c, &s, 100, 0);
    assert_int_equal(s.moved, 100);
    assert_non_null(strstr(p.text, "Index Scan using outbox_pkey on outbox"));
    if (strstr(p.text, "Seq Scan on outbox") || strstr(p.text, "Bitmap Heap Scan on outbox"))
        fail_msg("vigil_sequence planned a scan of the outbox heap:\n%s", p.text);
    PQfinish(c);
    h_teardown(env);
}

/* The hash of each event is computed inline in vigil_sequence, not by a
 * call of vigil_event_hash per event (0019): with every function call
 * tracked, the transaction that sequenced 50 events called vigil_sequence
 * once and vigil_event_hash never. */
static void hash_is_inlined(void **state)
{
    (void)state;
    h_env *env = start();
    PGconn *c = h_db_connect(env);
    assert_non_null(c);
    assert_int_equal(h_db_exec(env, OUTBOX_ROWS, "50"), 0);
    x(c, "SET track_functions = 'all'");
    x(c, "BEGIN");
    seq_state s = {0};
    seq_call(c, &s, 100, 0);
    assert_int_equal(s.moved, 50);
    assert_int_equal(value(c, "SELECT count(*) FROM pg_stat_xact_user_functions"
                              " WHERE funcname = 'vigil_sequence' AND calls = 1"),
                     1);
    assert_int_equal(value(c, "SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions"
                              " WHERE funcname = 'vigil_event_hash'"),
                     0);
    x(c, "COMMIT");
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM event_log WHERE hash <> sha256("
                                     "prev_hash || convert_to(seq::text || E'\\n' || event_id::text"
                                     " || E'\\n' || event_type || E'\\n' || subject || E'\\n'"
                                     " || payload::text, 'UTF8'))"),
                     0);
    PQfinish(c);
    h_teardown(env);
}

static long long metric(h_env *env, const char *name)
{
    double v;
    assert_int_equal(h_metric(env, env->admin_key, name, &v), 0);
    return (long long)v;
}

/* The sequencer's rounds and empty rounds, from one /metrics answer (two
 * requests could fall either side of a round). */
static void sequencer_rounds(h_env *env, long long *calls, long long *empty)
{
    h_resp r = {0};
    assert_int_equal(h_get(env, env->admin_key, &r, "/metrics"), 0);
    assert_int_equal(r.status, 200);
    *calls = (long long)h_metric_in(r.body, "vigil_sequencer_calls_total");
    *empty = (long long)h_metric_in(r.body, "vigil_sequencer_empty_calls_total");
    h_resp_free(&r);
}

/* The real sequencer moves its watermark past what it sequenced. */
static void serve_reports_the_watermark(void **state)
{
    (void)state;
    h_env *env = start();
    assert_int_equal(h_key_create(env, "admin", env->admin_key, sizeof env->admin_key), 0);
    const char *cfg[] = {"VIGIL_ROLES=api,sequencer", "VIGIL_SEQUENCER_POLL_MS=100", NULL};
    assert_int_equal(h_vigil_start(env, cfg), 0);
    for (int i = 0; i < 5; i++) {
        h_resp r = {0};
        assert_int_equal(h_post(env, env->admin_key,
                                "{\"full_name\": \"Watermark\", \"country\": \"DE\"}", &r,
                                "/customers"),
                         0);
        assert_int_equal(r.status, 201);
        h_resp_free(&r);
    }
    long long drawn = h_db_count(env, "SELECT last_value FROM outbox_id_seq");
    long long t0 = h_now_ms();
    while (metric(env, "vigil_sequencer_outbox_low") <= drawn && h_now_ms() - t0 < 10000)
        h_sleep_ms(100);
    assert_true(metric(env, "vigil_sequencer_outbox_low") > drawn);
    assert_int_equal(metric(env, "vigil_sequencer_strays_total"), 0);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM outbox"), 0);
    /* Its rounds: some moved the five customers' events; with nothing more
     * to sequence, each poll (every 100 ms) is a round that moves nothing. */
    long long calls, empty, calls2, empty2;
    sequencer_rounds(env, &calls, &empty);
    assert_true(calls > empty && empty >= 0);
    h_sleep_ms(1000);
    sequencer_rounds(env, &calls2, &empty2);
    assert_true(calls2 - calls >= 3);
    assert_int_equal(empty2 - empty, calls2 - calls);
    h_teardown(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(late_commit_is_sequenced),
        cmocka_unit_test(only_writers_hold_the_watermark),
        cmocka_unit_test(concurrent_writers_lose_nothing),
        cmocka_unit_test(full_batch_moves_only_over_what_it_took),
        cmocka_unit_test(sweep_finds_strays),
        cmocka_unit_test(plans_walk_the_primary_key),
        cmocka_unit_test(hash_is_inlined),
        cmocka_unit_test(serve_reports_the_watermark),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
