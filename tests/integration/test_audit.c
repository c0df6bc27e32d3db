/*
 * test_audit.c — `vigil audit verify` against real history, and history
 * tampered with on purpose.
 *
 * Events are made through the API and published; the verifier, which
 * recomputes the chain in C, must then agree with the hashes PostgreSQL
 * computed (the printed head hash is the stored one). Then the database
 * owner disables the append-only trigger, as only an owner can, and
 * tampers with event_log in each way an auditor worries about, restoring
 * the original rows between cases:
 *
 *   edited      one payload's amount changed          → that seq, "edited"
 *   missing     one row deleted                       → that seq, "missing"
 *   reordered   two rows' contents (hashes too) swapped → the first, "reordered"
 *   rehashed    one payload changed and its hash recomputed with the
 *               database's own function              → the next seq, "broken link"
 *   re-chained  row 1 rehashed from another start      → seq 1, "broken link"
 *   truncated   the last row deleted                  → "removed at the end"
 *
 * Also: UPDATE, DELETE and TRUNCATE on event_log fail while the trigger is
 * on, whoever asks (the test connects as the owner).
 *
 * VIGIL_TEST_AUDIT_TX (default 200) sets how many transactions are made,
 * for timing the verifier on a larger log.
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

#include "fixture_events.h"

static const char *const VERIFY[] = {"audit", "verify", NULL};

/* Runs SQL as the owner with the append-only trigger off for its duration. */
static void tamper(h_env *env, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tamper(h_env *env, const char *fmt, ...)
{
    char sql[2048], all[2300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    snprintf(all, sizeof all,
             "BEGIN; ALTER TABLE event_log DISABLE TRIGGER event_log_append_only; %s;"
             " ALTER TABLE event_log ENABLE TRIGGER event_log_append_only; COMMIT",
             sql);
    assert_int_equal(h_db_exec(env, all), 0);
}

/* Puts the original rows back and checks the verifier agrees. */
static void restore(h_env *env)
{
    tamper(env, "DELETE FROM event_log; INSERT INTO event_log SELECT * FROM audit_original");
    char *out = NULL;
    assert_int_equal(fx_run(env, &out, VERIFY), 0);
    free(out);
}

/* Runs audit verify and asserts it fails with `seq: kind` on its first line. */
static void expect_problem(h_env *env, long long seq, const char *kind)
{
    char *out = NULL, want[128];
    assert_int_equal(fx_run(env, &out, VERIFY), 1);
    assert_non_null(out);
    snprintf(want, sizeof want, "seq %lld: %s (", seq, kind);
    if (strncmp(out, want, strlen(want)) != 0)
        fail_msg("expected the first line to start with '%s', got:\n%s", want, out);
    assert_non_null(strstr(out, "event_log NOT intact"));
    free(out);
}

/* 1 when SQL fails with the append-only error. */
static int refused(h_env *env, const char *sql)
{
    PGresult *r = PQexec(h_db(env), sql);
    int ok = PQresultStatus(r) == PGRES_FATAL_ERROR &&
             strstr(PQresultErrorMessage(r), "event_log is append-only") != NULL;
    if (!ok)
        fprintf(stderr, "%s: %s %s\n", sql, PQresStatus(PQresultStatus(r)),
                PQresultErrorMessage(r));
    PQclear(r);
    return ok;
}

static void audit_detects_tampering(void **state)
{
    h_env *env = h_setup(1);
    assert_non_null(env);
    const char *ntx_env = getenv("VIGIL_TEST_AUDIT_TX");
    int ntx = ntx_env ? atoi(ntx_env) : 200;
    int per = ntx > 10000 ? 10000 : ntx; /* VIGIL_MAX_BATCH */
    fx_produce(env, "aud", ntx / per, per);
    long long n = fx_wait_published(env, 120000);
    fprintf(stderr, "%lld events published\n", n);

    /* Intact: the C chain ends in the hash PostgreSQL stored. */
    char nstr[24], want[256], *out = NULL;
    snprintf(nstr, sizeof nstr, "%lld", n);
    char *head =
        h_db_text(env, "SELECT encode(hash, 'hex') FROM event_log WHERE seq = $1::bigint", nstr);
    assert_non_null(head);
    long long t0 = h_now_ms();
    assert_int_equal(fx_run(env, &out, VERIFY), 0);
    fprintf(stderr, "audit verify of %lld events: %lld ms\n", n, h_now_ms() - t0);
    snprintf(want, sizeof want, "event_log intact: seqs 1..%lld (%lld events), head hash %s\n", n,
             n, head);
    assert_non_null(out);
    assert_int_equal(strncmp(out, want, strlen(want)), 0);
    snprintf(want, sizeof want, "event_log ends at seq %lld; publisher cursor %lld; stream", n, n);
    assert_non_null(strstr(out, want));
    free(out);
    free(head);

    /* A range starts from the stored hash before it. */
    const char *const range[] = {"audit", "verify", "--from-seq", "10", "--to-seq", "20", NULL};
    head = h_db_text(env, "SELECT encode(hash, 'hex') FROM event_log WHERE seq = 20");
    assert_int_equal(fx_run(env, &out, range), 0);
    snprintf(want, sizeof want, "event_log intact: seqs 10..20 (11 events), head hash %s\n", head);
    assert_string_equal(strtok(out, "\n"), strtok(want, "\n"));
    free(out);
    free(head);

    /* JSON. */
    const char *const as_json[] = {"audit", "verify", "--json", NULL};
    assert_int_equal(fx_run(env, &out, as_json), 0);
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    assert_true(json_is_true(json_object_get(j, "intact")));
    assert_int_equal(json_integer_value(json_object_get(j, "events")), n);
    assert_int_equal(json_integer_value(json_object_get(j, "problems_total")), 0);
    json_decref(j);
    free(out);

    /* (Until 0027 this test also converted event_log to jsonb and back, as
     * 0021's upgrade did to a log kept as jsonb, and verified again. That
     * held while every stored payload was a jsonb rendering; since 0027 a
     * payload is the text the sequencer built ("seq" first, transaction
     * events compact), and a round trip through jsonb reformats it, which
     * the chain reports as an edit, as (a') below shows. 0021's conversion
     * ran on logs that held only jsonb renderings.) */

    /* Usage errors are exit 2. */
    const char *const bad[] = {"audit", "verify", "--from-seq", "0", NULL};
    assert_int_equal(fx_run(env, &out, bad), 2);
    free(out);

    /* The trigger refuses every change to history, the owner's included. */
    assert_true(refused(env, "UPDATE event_log SET subject = 'x' WHERE seq = 1"));
    assert_true(refused(env, "DELETE FROM event_log WHERE seq = 1"));
    assert_true(refused(env, "TRUNCATE event_log"));
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM event_log"), n);

    assert_int_equal(h_db_exec(env, "CREATE TABLE audit_original AS SELECT * FROM event_log"), 0);
    long long k = h_db_count(env,
                             "SELECT min(seq) FROM event_log WHERE event_type ="
                             " 'aml.transaction.ingested' AND seq >= $1::bigint / 2",
                             nstr);
    assert_true(k > 1 && k + 5 < n);

    /* (a) edited */
    tamper(env,
           "UPDATE event_log SET payload = jsonb_set(payload::jsonb, '{data,amount}', '\"1.00\"')"
           " WHERE seq = %lld",
           k);
    expect_problem(env, k, "edited");
    const char *const json_again[] = {"audit", "verify", "--json", NULL};
    assert_int_equal(fx_run(env, &out, json_again), 1);
    j = json_loads(out, 0, NULL);
    assert_non_null(j);
    json_t *first = json_array_get(json_object_get(j, "problems"), 0);
    assert_int_equal(json_integer_value(json_object_get(first, "seq")), k);
    assert_string_equal(json_string_value(json_object_get(first, "kind")), "edited");
    assert_true(json_is_false(json_object_get(j, "intact")));
    json_decref(j);
    free(out);
    restore(env);

    /* (a') reformatted only: the same JSON value with other spacing. The log
     * keeps the hashed text byte for byte (json, 0021), so this is an edit. */
    tamper(env,
           "UPDATE event_log SET payload = replace(payload::text, '\":', '\": ')::json"
           " WHERE seq = %lld",
           k);
    char kstr[24];
    snprintf(kstr, sizeof kstr, "%lld", k);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM event_log e JOIN audit_original o"
                                " USING (seq) WHERE seq = $1::bigint"
                                " AND e.payload::jsonb = o.payload::jsonb"
                                " AND e.payload::text <> o.payload::text",
                                kstr),
                     1);
    expect_problem(env, k, "edited");
    restore(env);

    /* (b) missing */
    tamper(env, "DELETE FROM event_log WHERE seq = %lld", k);
    expect_problem(env, k, "missing");
    restore(env);

    /* (c) reordered: rows k and k+5 trade everything but their seq. */
    tamper(env,
           "CREATE TEMP TABLE swap AS SELECT * FROM event_log WHERE seq IN (%lld, %lld);"
           " UPDATE event_log SET event_id = gen_random_uuid() WHERE seq IN (%lld, %lld);"
           " UPDATE event_log e SET event_id = s.event_id, event_type = s.event_type,"
           " subject = s.subject, payload = s.payload, prev_hash = s.prev_hash, hash = s.hash"
           " FROM swap s WHERE e.seq IN (%lld, %lld) AND s.seq = %lld - e.seq;"
           " DROP TABLE swap",
           k, k + 5, k, k + 5, k, k + 5, 2 * k + 5);
    expect_problem(env, k, "reordered");
    restore(env);

    /* (d) edited, and its hash recomputed with the database's own function:
     * the row is self-consistent, the next one no longer links to it. */
    tamper(env,
           "UPDATE event_log SET payload = jsonb_set(payload::jsonb, '{data,amount}', '\"1.00\"'),"
           " hash = vigil_event_hash(prev_hash, seq, event_id, event_type, subject,"
           " jsonb_set(payload::jsonb, '{data,amount}', '\"1.00\"')) WHERE seq = %lld",
           k);
    expect_problem(env, k + 1, "broken link");
    restore(env);

    /* (e) the first row re-chained from another start than 32 zero bytes. */
    tamper(env, "UPDATE event_log SET prev_hash = sha256('forged'),"
                " hash = vigil_event_hash(sha256('forged'), seq, event_id, event_type, subject,"
                " payload) WHERE seq = 1");
    expect_problem(env, 1, "broken link");
    restore(env);

    /* (f) the last row removed: only the cursor and the stream can tell. */
    tamper(env, "DELETE FROM event_log WHERE seq = %lld", n);
    expect_problem(env, n, "removed at the end");
    restore(env);

    int failed = env->failed;
    h_teardown(env);
    assert_int_equal(failed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(audit_detects_tampering),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
