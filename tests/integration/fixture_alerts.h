/*
 * fixture_alerts.h — customers and alert-raising transactions through the
 * real API, for the consumer tests (test_consumers.c, test_webhooks.c), and
 * a poll for a database count to reach a value.
 *
 * Header-only (static functions) because the harness library is shared by
 * every integration test and these helpers serve only a few. Include after
 * <cmocka.h>.
 */
#ifndef VIGIL_TEST_FIXTURE_ALERTS_H
#define VIGIL_TEST_FIXTURE_ALERTS_H

#include "harness.h"

#include <stdio.h>

/* Creates a customer in GB; copies its id into `id`. Fails the test on any
 * status but 201. */
static void fx_customer(h_env *env, const char *name, char id[64])
{
    char body[256];
    h_resp r = {0};
    snprintf(body, sizeof body, "{\"full_name\": \"%s\", \"country\": \"GB\"}", name);
    assert_int_equal(h_post(env, env->admin_key, body, &r, "/customers"), 0);
    assert_int_equal(r.status, 201);
    snprintf(id, 64, "%s", json_string_value(json_object_get(r.json, "id")));
    h_resp_free(&r);
}

/* A large cash deposit (external id `ext`): raises one large_cash alert for
 * the customer, hence one aml.alert.created. */
static void fx_large_cash(h_env *env, const char *customer, const char *ext)
{
    char body[512];
    h_resp r = {0};
    snprintf(body, sizeof body,
             "{\"external_id\": \"%s\", \"customer_id\": \"%s\", \"amount\": \"25000.00\","
             " \"currency\": \"USD\", \"direction\": \"in\", \"channel\": \"cash\","
             " \"occurred_at\": \"2026-11-20T10:00:00Z\"}",
             ext, customer);
    assert_int_equal(h_post(env, env->admin_key, body, &r, "/transactions"), 0);
    assert_int_equal(r.status, 201);
    h_resp_free(&r);
}

/* Polls `sql` (one integer; $1 = p1 unless NULL) every 50 ms until it
 * equals `want` or timeout_ms passes; returns the last value read. */
static long long fx_wait_count(h_env *env, long long want, int timeout_ms, const char *sql,
                               const char *p1)
{
    long long v = -1;
    for (long long t0 = h_now_ms(); h_now_ms() - t0 < timeout_ms; h_sleep_ms(50)) {
        v = p1 ? h_db_count(env, sql, p1) : h_db_count(env, sql);
        if (v == want)
            break;
    }
    return v;
}

#endif
