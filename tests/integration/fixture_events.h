/*
 * fixture_events.h — history for the event-log tests (test_audit.c,
 * test_reconcile.c): events made through the real API, then waited for
 * until the publisher has acknowledged every one of them.
 *
 * Header-only (static functions) because the harness library is shared by
 * every integration test and these helpers serve only the event tests.
 * Include after <cmocka.h>.
 */
#ifndef VIGIL_TEST_FIXTURE_EVENTS_H
#define VIGIL_TEST_FIXTURE_EVENTS_H

#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* POSTs one batch of `ntx` transactions (external ids TAG-t) for customer
 * `id`: one database transaction, so its events are sequenced together.
 * Fails the test unless 201. */
static void fx_post_transactions(h_env *env, const char *id, const char *tag, int ntx)
{
    json_t *items = json_array();
    for (int t = 0; t < ntx; t++) {
        char ext[96], amount[32];
        snprintf(ext, sizeof ext, "%s-%d", tag, t);
        snprintf(amount, sizeof amount, "%d.%02d", 10 + t, t % 100);
        json_array_append_new(items, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "external_id",
                                               ext, "customer_id", id, "amount", amount, "currency",
                                               "EUR", "direction", "in", "channel", "wire",
                                               "occurred_at", "2024-03-01T12:00:00Z"));
    }
    json_t *batch = json_pack("{s:o}", "transactions", items);
    char *text = json_dumps(batch, JSON_COMPACT);
    json_decref(batch);
    assert_non_null(text);
    h_resp r;
    assert_int_equal(h_post(env, env->admin_key, text, &r, "/transactions"), 0);
    free(text);
    if (r.status != 201)
        fail_msg("POST /transactions: %ld %.300s", r.status, r.body);
    h_resp_free(&r);
}

/* Creates `ncust` customers, then for each a batch of `ntx` transactions
 * (external ids TAG-c-t), all through the HTTP API with the admin key.
 * Fails the test on any non-2xx. */
static void fx_produce(h_env *env, const char *tag, int ncust, int ntx)
{
    for (int c = 0; c < ncust; c++) {
        char body[256], id[64], batch_tag[64];
        h_resp r;
        snprintf(body, sizeof body, "{\"full_name\": \"%s customer %d\", \"country\": \"DE\"}", tag,
                 c);
        assert_int_equal(h_post(env, env->admin_key, body, &r, "/customers"), 0);
        if (r.status != 201)
            fail_msg("POST /customers: %ld %s", r.status, r.body);
        snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r.json, "id")));
        h_resp_free(&r);
        snprintf(batch_tag, sizeof batch_tag, "%s-%d", tag, c);
        fx_post_transactions(env, id, batch_tag, ntx);
    }
}

/* Waits up to timeout_ms until history is quiet: the outbox empty, the
 * publisher's cursor at max(event_log.seq) > 0, and that seq unchanged for
 * FX_QUIET_MS (the built-in consumers emit events of their own, e.g.
 * aml.customer.risk after an alert, shortly after the publisher caught up).
 * Returns that seq. */
#define FX_QUIET_MS 1000
static long long fx_wait_published(h_env *env, int timeout_ms)
{
    long long deadline = h_now_ms() + timeout_ms, last = -1, cursor = -1;
    long long stable_seq = -1, stable_since = 0;
    while (h_now_ms() < deadline) {
        long long pending = h_db_count(env, "SELECT count(*) FROM outbox");
        last = h_db_count(env, "SELECT coalesce(max(seq), 0) FROM event_log");
        cursor = h_db_count(env, "SELECT seq FROM cursors WHERE name = 'publisher'");
        if (pending == 0 && last > 0 && cursor == last) {
            if (last != stable_seq) {
                stable_seq = last;
                stable_since = h_now_ms();
            } else if (h_now_ms() - stable_since >= FX_QUIET_MS) {
                return last;
            }
        } else {
            stable_seq = -1;
        }
        h_sleep_ms(50);
    }
    fail_msg("history did not settle within %d ms (publisher cursor %lld, last seq %lld)",
             timeout_ms, cursor, last);
    return -1;
}

/* Runs `vigil ARGS...` and returns its exit code; stdout into *out (caller
 * frees), both streams echoed to the test's stderr for the record. */
static int fx_run(h_env *env, char **out, const char *const *argv)
{
    char *err = NULL;
    long long t0 = h_now_ms();
    int rc = h_vigil_runv(env, NULL, NULL, out, &err, argv);
    fprintf(stderr, "$ vigil");
    for (size_t i = 0; argv[i]; i++)
        fprintf(stderr, " %s", argv[i]);
    /* Long outputs (replays) are cut: the record needs their shape only. */
    size_t len = *out ? strlen(*out) : 0;
    fprintf(stderr, "   # exit %d, %lld ms\n%.*s%s%s", rc, h_now_ms() - t0,
            (int)(len > 1500 ? 1500 : len), *out ? *out : "",
            len > 1500 ? "\n[... stdout cut ...]\n" : "", err ? err : "");
    free(err);
    return rc;
}

#endif
