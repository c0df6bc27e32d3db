/*
 * test_event_pii.c — VIGIL_EVENT_PII: which personal data customer events
 * carry.
 *
 * With the default (full) a customer's events carry email and date_of_birth;
 * after a restart with minimal, new customer events (created and updated) in
 * event_log and in the JetStream message carry neither — not even as text
 * anywhere in the event — while the API still returns both; a restart with
 * full brings them back. An unknown value stops `vigil serve` at start.
 * Writing customers plans the event body's statements once per session, not
 * once per customer.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define STREAM  "AML_EVENTS"
#define WAIT_MS 20000

static h_env *env;

static int setup(void **state)
{
    env = h_setup(1);
    return env ? 0 : -1;
}

static int teardown(void **state)
{
    h_teardown(env);
    return 0;
}

static void restart(const char *const *extra_env)
{
    h_vigil_stop(env, SIGTERM);
    assert_int_equal(h_vigil_start(env, extra_env), 0);
}

/* Creates a customer with an email and a date of birth; writes its id. */
static void create_customer(const char *name, const char *email, char id[64])
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"full_name\": \"%s\", \"email\": \"%s\", \"date_of_birth\": \"1984-06-03\","
             " \"country\": \"NL\"}",
             name, email);
    assert_int_equal(h_customer_create(env, body, id, 64), 0);
}

/* The payload of the `type` event about `subject` in event_log (waits for
 * the sequencer); the caller json_decref()s. */
static json_t *logged_event(const char *type, const char *subject)
{
    char *text = NULL;
    for (long long t0 = h_now_ms(); !text && h_now_ms() - t0 < WAIT_MS;) {
        text = h_db_text(env,
                         "SELECT payload::text FROM event_log WHERE event_type = $1"
                         " AND subject = $2 ORDER BY seq DESC LIMIT 1",
                         type, subject);
        if (!text)
            h_sleep_ms(100);
    }
    assert_non_null(text);
    json_t *ev = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(ev);
    return ev;
}

/* The body of the last JetStream message on subject `type`, once it is the
 * event about `subject` (waits for the publisher); json_decref() it. */
static json_t *published_event(const char *type, const char *subject)
{
    natsConnection *nc = h_nats_connect(env);
    assert_non_null(nc);
    jsCtx *js = NULL;
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = 5000;
    assert_int_equal(natsConnection_JetStream(&js, nc, &o), NATS_OK);
    json_t *found = NULL;
    for (long long t0 = h_now_ms(); !found && h_now_ms() - t0 < WAIT_MS;) {
        natsMsg *m = NULL;
        jsErrCode jerr = 0;
        if (js_GetLastMsg(&m, js, STREAM, type, NULL, &jerr) == NATS_OK) {
            json_t *ev = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
            const char *s = json_string_value(json_object_get(ev, "subject"));
            if (s && strcmp(s, subject) == 0)
                found = ev;
            else
                json_decref(ev);
            natsMsg_Destroy(m);
        }
        if (!found)
            h_sleep_ms(100);
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    assert_non_null(found);
    return found;
}

/* Checks what `ev` (a whole CloudEvent) says about the customer. */
static void check_event(json_t *ev, const char *id, const char *email, int full)
{
    json_t *data = json_object_get(ev, "data");
    assert_true(json_is_object(data));
    assert_string_equal(json_string_value(json_object_get(data, "id")), id);
    assert_non_null(json_string_value(json_object_get(data, "full_name")));
    assert_string_equal(json_string_value(json_object_get(data, "country")), "NL");
    char *text = json_dumps(ev, JSON_COMPACT);
    if (full) {
        assert_string_equal(json_string_value(json_object_get(data, "email")), email);
        assert_string_equal(json_string_value(json_object_get(data, "date_of_birth")),
                            "1984-06-03");
    } else {
        assert_null(json_object_get(data, "email"));
        assert_null(json_object_get(data, "date_of_birth"));
        /* Not elsewhere in the event either. */
        assert_null(strstr(text, email));
        assert_null(strstr(text, "1984-06-03"));
    }
    free(text);
    json_decref(ev);
}

/* The API shows the customer whole, whatever the events carry. */
static void check_api(const char *id, const char *email)
{
    h_resp r = {0};
    assert_int_equal(h_get(env, env->admin_key, &r, "/customers/%s", id), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "email")), email);
    assert_string_equal(json_string_value(json_object_get(r.json, "date_of_birth")), "1984-06-03");
    h_resp_free(&r);
}

static void stored_setting(const char *expect)
{
    char *v = h_db_text(env, "SELECT event_pii FROM vigil_settings");
    assert_non_null(v);
    assert_string_equal(v, expect);
    free(v);
}

static void full_by_default(void **state)
{
    char id[64];
    stored_setting("full");
    create_customer("Full Default", "full.default@example.com", id);
    check_event(logged_event("aml.customer.created", id), id, "full.default@example.com", 1);
    check_event(published_event("aml.customer.created", id), id, "full.default@example.com", 1);
    check_api(id, "full.default@example.com");
}

static void minimal_leaves_email_and_birth_date_out(void **state)
{
    static const char *const minimal[] = {"VIGIL_EVENT_PII=minimal", NULL};
    restart(minimal);
    stored_setting("minimal");
    char id[64];
    create_customer("Min Imal", "min.imal@example.com", id);
    check_event(logged_event("aml.customer.created", id), id, "min.imal@example.com", 0);
    check_event(published_event("aml.customer.created", id), id, "min.imal@example.com", 0);
    check_api(id, "min.imal@example.com");

    /* An update is an event about the customer too. */
    h_resp r = {0};
    assert_int_equal(h_patch(env, env->admin_key, "{\"email\": \"new.mail@example.com\"}", &r,
                             "/customers/%s", id),
                     0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    check_event(logged_event("aml.customer.updated", id), id, "new.mail@example.com", 0);
    check_event(published_event("aml.customer.updated", id), id, "new.mail@example.com", 0);
    check_api(id, "new.mail@example.com");
}

static void full_again_and_unknown_value_refused(void **state)
{
    /* An unknown value is a configuration error at start, not a guess. */
    static const char *const bad[] = {"VIGIL_EVENT_PII=partial", NULL};
    static const char *const serve[] = {"serve", NULL};
    char *err = NULL;
    h_vigil_stop(env, SIGTERM);
    int rc = h_vigil_runv(env, bad, NULL, NULL, &err, serve);
    assert_true(rc != 0 && rc != -1);
    assert_non_null(err);
    assert_non_null(strstr(err, "VIGIL_EVENT_PII"));
    free(err);
    stored_setting("minimal"); /* untouched by the refused start */

    restart(NULL);
    stored_setting("full");
    char id[64];
    create_customer("Full Again", "full.again@example.com", id);
    check_event(logged_event("aml.customer.created", id), id, "full.again@example.com", 1);
    check_event(published_event("aml.customer.created", id), id, "full.again@example.com", 1);
}

/* Writing many customers must not plan the event body's statements once per
 * customer (migration 0020: as a SQL function that PostgreSQL cannot
 * inline, vigil_customer_event_json was parsed and planned on every call).
 * Its own cluster, with pg_stat_statements counting nested plans. */
static void event_body_planned_once_per_session(void **state)
{
    (void)state;
    h_env *e = h_env_new();
    assert_non_null(e);
    assert_int_equal(h_pg_set(e, "shared_preload_libraries=pg_stat_statements"), 0);
    assert_int_equal(h_pg_set(e, "pg_stat_statements.track=all"), 0);
    assert_int_equal(h_pg_set(e, "pg_stat_statements.track_planning=on"), 0);
    assert_int_equal(h_pg_start(e), 0);
    assert_int_equal(h_migrate(e), 0);
    assert_int_equal(h_db_exec(e, "CREATE EXTENSION pg_stat_statements"), 0);
    assert_int_equal(h_db_exec(e, "SELECT pg_stat_statements_reset()"), 0);
    assert_int_equal(h_db_exec(e, "INSERT INTO customers (full_name, country, external_id, email)"
                                  " SELECT 'Plan ' || g, 'DE', 'plan-' || g, 'p' || g || '@x.org'"
                                  " FROM generate_series(1, 200) g"),
                     0);
    assert_int_equal(h_db_count(e, "SELECT count(*) FROM outbox"
                                   " WHERE event_type = 'aml.customer.created'"),
                     200);
    /* The statement that reads the event_pii setting, run once per customer. */
    const char *q = "FROM pg_stat_statements WHERE query LIKE '%event_pii FROM vigil_settings%'"
                    " AND query NOT LIKE '%pg_stat_statements%'";
    char calls[256], plans[256];
    snprintf(calls, sizeof calls, "SELECT coalesce(sum(calls), 0) %s", q);
    snprintf(plans, sizeof plans, "SELECT coalesce(sum(plans), 0) %s", q);
    long long c = h_db_count(e, calls), p = h_db_count(e, plans);
    fprintf(stderr, "event_pii statement: %lld calls, %lld plans\n", c, p);
    assert_true(c >= 200);
    assert_true(p >= 1 && p <= 2);
    h_teardown(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(full_by_default),
        cmocka_unit_test(minimal_leaves_email_and_birth_date_out),
        cmocka_unit_test(full_again_and_unknown_value_refused),
        cmocka_unit_test(event_body_planned_once_per_session),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
