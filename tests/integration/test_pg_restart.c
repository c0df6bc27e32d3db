/*
 * test_pg_restart.c — PostgreSQL restarts under load; vigil keeps running.
 *
 * Client threads POST transactions with unique external_ids in a loop and
 * follow the client contract: a 503 is retried with the SAME external_id
 * until it is accepted. Meanwhile PostgreSQL is restarted twice, once "fast"
 * (clients disconnected, clean shutdown) and once "immediate" (no checkpoint,
 * crash recovery). The cluster runs with fsync and synchronous_commit on, so
 * a commit acknowledged to vigil survives the crash and the checks below are
 * a real guarantee, not luck.
 *
 * What must hold:
 *   - during the outage requests fail as 503 problem+json with Retry-After
 *     (never a hang, a transport error or another status);
 *   - after each restart requests succeed again, and /readyz is 200 again
 *     within seconds, with the same vigil process;
 *   - every external_id acknowledged with a 2xx is stored exactly once with
 *     exactly one aml.transaction.ingested event: no lost accepted write, no
 *     duplicate, no event without its row;
 *   - while PostgreSQL is down /readyz is 503 and names the database check.
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

#define NCLIENTS     4
#define RETRY_FOR_MS 30000 /* a client gives an id up after this long */
#define READY_MS     5000  /* how soon /readyz must be 200 after a restart */

/* Where the test is; clients count their outcomes by phase. */
enum { P_BEFORE, P_FAST, P_AFTER_FAST, P_IMMEDIATE, P_AFTER_IMMEDIATE, NPHASES };
static const char *const phase_names[NPHASES] = {"before", "fast restart", "after fast",
                                                 "immediate restart", "after immediate"};
static atomic_int phase, stop;

typedef struct client {
    h_env *env;
    const char *key;
    char customer_id[40];
    int n;
    pthread_t thread;

    char (*ids)[32]; /* every external_id it sent, in order */
    long *final;     /* the status that ended each one's retries */
    size_t nids, cap;

    int accepted[NPHASES];    /* 2xx responses by phase */
    int unavailable[NPHASES]; /* 503 responses by phase */
    int bad_503;              /* 503 without problem+json or Retry-After */
    int unexpected;           /* any other status */
    int transport;            /* no response at all */
    int first_try_dup;        /* 200 "duplicate" for an id never sent before */
    int given_up;             /* ids still failing after RETRY_FOR_MS */
    char first_problem[600];
} client;

static int is_problem(const h_resp *r, long status)
{
    return strncmp(r->content_type, "application/problem+json", 24) == 0 &&
           json_is_object(r->json) &&
           json_integer_value(json_object_get(r->json, "status")) == status;
}

static void note(client *c, const char *what, const h_resp *r)
{
    if (!c->first_problem[0])
        snprintf(c->first_problem, sizeof c->first_problem, "%s: %ld %s Retry-After=%s %.400s",
                 what, r->status, r->content_type, r->retry_after, r->body ? r->body : "");
}

static void record(client *c, const char *id, long status)
{
    if (c->nids == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 1024;
        c->ids = realloc(c->ids, c->cap * sizeof *c->ids);
        c->final = realloc(c->final, c->cap * sizeof *c->final);
        if (!c->ids || !c->final)
            abort();
    }
    snprintf(c->ids[c->nids], sizeof c->ids[0], "%s", id);
    c->final[c->nids++] = status;
}

/* Sends one transaction until it is accepted (or refused for good, or
 * RETRY_FOR_MS passes); returns the final status, -1 for no response. */
static long send_until_accepted(client *c, const char *id)
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"external_id\": \"%s\", \"customer_id\": \"%s\", \"amount\": \"12.34\","
             " \"currency\": \"EUR\", \"direction\": \"out\", \"channel\": \"card\","
             " \"occurred_at\": \"2024-03-01T12:00:00Z\"}",
             id, c->customer_id);
    long long deadline = h_now_ms() + RETRY_FOR_MS;
    for (int attempt = 1;; attempt++) {
        h_resp r;
        int rc = h_http(c->env, "POST", "/transactions", c->key, body, -1, NULL, &r);
        int ph = atomic_load(&phase);
        long status = rc == 0 ? r.status : -1;
        if (rc != 0) {
            c->transport++;
        } else if (status == 200 || status == 201) {
            c->accepted[ph]++;
            if (status == 200 && attempt == 1) {
                c->first_try_dup++;
                note(c, "200 duplicate on the first attempt", &r);
            }
        } else if (status == 503) {
            c->unavailable[ph]++;
            if (!is_problem(&r, 503) || atoi(r.retry_after) < 1) {
                c->bad_503++;
                note(c, "503 without problem+json or Retry-After", &r);
            }
        } else {
            c->unexpected++;
            note(c, "unexpected status", &r);
        }
        h_resp_free(&r);
        if (status != 503 && status != -1)
            return status; /* accepted, or refused for good */
        if (h_now_ms() > deadline) {
            c->given_up++;
            return status;
        }
        h_sleep_ms(50); /* Retry-After says 1 s; sooner finds the recovery sooner */
    }
}

static void *client_main(void *arg)
{
    client *c = arg;
    char id[32];
    while (!atomic_load(&stop)) {
        snprintf(id, sizeof id, "pgr-%d-%zu", c->n, c->nids);
        record(c, id, send_until_accepted(c, id));
    }
    return NULL;
}

/* Polls /readyz until 200; returns how long it took, or -1 after timeout_ms. */
static long long wait_ready(h_env *env, int timeout_ms)
{
    long long t0 = h_now_ms();
    while (h_now_ms() - t0 < timeout_ms) {
        h_resp r;
        long status = h_get(env, NULL, &r, "/readyz") == 0 ? r.status : -1;
        h_resp_free(&r);
        if (status == 200)
            return h_now_ms() - t0;
        h_sleep_ms(100);
    }
    return -1;
}

static int create_customer(h_env *env, const char *key, char *id_out, size_t outsz)
{
    h_resp r;
    int ok = h_post(env, key, "{\"full_name\": \"Restart Load\", \"country\": \"DE\"}", &r,
                    "/customers") == 0 &&
             r.status == 201 && json_is_string(json_object_get(r.json, "id"));
    if (ok)
        snprintf(id_out, outsz, "%s", json_string_value(json_object_get(r.json, "id")));
    h_resp_free(&r);
    return ok ? 0 : -1;
}

static char *show(h_env *env, const char *setting)
{
    char sql[64];
    snprintf(sql, sizeof sql, "SHOW %s", setting);
    return h_db_text(env, sql);
}

static void assert_setting(h_env *env, const char *setting, const char *value)
{
    char *v = show(env, setting);
    assert_non_null(v);
    assert_string_equal(v, value);
    free(v);
}

/* A durable cluster, migrated, with vigil serving and an ingest key. */
static h_env *durable_setup(char *key, size_t keysz)
{
    h_env *env = h_env_new();
    if (!env)
        return NULL;
    /* The harness default trades durability for speed; a later -c wins. */
    if (h_pg_set(env, "fsync=on") != 0 || h_pg_set(env, "synchronous_commit=on") != 0 ||
        h_pg_set(env, "full_page_writes=on") != 0 || h_pg_start(env) != 0 || h_migrate(env) != 0 ||
        h_key_create(env, "ingest", key, keysz) != 0 || h_vigil_start(env, NULL) != 0) {
        h_mark_failed(env);
        h_teardown(env);
        return NULL;
    }
    env->http_timeout_ms = 15000; /* a request must never hang on a dead database */
    return env;
}

/* `{id1,id2,...}` of the ids whose final status was 2xx; count in *n. */
static char *accepted_ids(client *cl, size_t *n)
{
    size_t cap = 16;
    for (int i = 0; i < NCLIENTS; i++)
        cap += cl[i].nids * 32;
    char *s = malloc(cap), *p = s;
    assert_non_null(s);
    *p++ = '{';
    *n = 0;
    for (int i = 0; i < NCLIENTS; i++)
        for (size_t j = 0; j < cl[i].nids; j++)
            if (cl[i].final[j] >= 200 && cl[i].final[j] < 300)
                p += sprintf(p, "%s%s", (*n)++ ? "," : "", cl[i].ids[j]);
    *p++ = '}';
    *p = '\0';
    return s;
}

static void restarts_under_load(void **state)
{
    char key[256];
    h_env *env = durable_setup(key, sizeof key);
    assert_non_null(env);
    assert_setting(env, "fsync", "on");
    assert_setting(env, "synchronous_commit", "on");
    pid_t vigil = env->vigil_pid;

    static client cl[NCLIENTS];
    memset(cl, 0, sizeof cl);
    atomic_store(&phase, P_BEFORE);
    atomic_store(&stop, 0);
    for (int i = 0; i < NCLIENTS; i++) {
        cl[i].env = env;
        cl[i].key = key;
        cl[i].n = i;
        /* One customer per client: the rule engine locks a customer per
         * batch, and the point here is concurrency, not that queue. */
        assert_int_equal(create_customer(env, key, cl[i].customer_id, sizeof cl[i].customer_id), 0);
    }
    for (int i = 0; i < NCLIENTS; i++)
        assert_int_equal(pthread_create(&cl[i].thread, NULL, client_main, &cl[i]), 0);

    h_sleep_ms(1000);
    atomic_store(&phase, P_FAST);
    int fast = h_pg_restart(env, "fast");
    atomic_store(&phase, P_AFTER_FAST);
    long long ready_fast = wait_ready(env, READY_MS);
    h_sleep_ms(1000);
    atomic_store(&phase, P_IMMEDIATE);
    int immediate = h_pg_restart(env, "immediate");
    atomic_store(&phase, P_AFTER_IMMEDIATE);
    long long ready_immediate = wait_ready(env, READY_MS);
    h_sleep_ms(1500);
    atomic_store(&stop, 1);
    for (int i = 0; i < NCLIENTS; i++)
        pthread_join(cl[i].thread, NULL);

    int accepted[NPHASES] = {0}, unavailable[NPHASES] = {0}, bad_503 = 0, unexpected = 0,
        transport = 0, first_try_dup = 0, given_up = 0;
    for (int i = 0; i < NCLIENTS; i++) {
        for (int p = 0; p < NPHASES; p++) {
            accepted[p] += cl[i].accepted[p];
            unavailable[p] += cl[i].unavailable[p];
        }
        bad_503 += cl[i].bad_503;
        unexpected += cl[i].unexpected;
        transport += cl[i].transport;
        first_try_dup += cl[i].first_try_dup;
        given_up += cl[i].given_up;
        if (cl[i].first_problem[0])
            fprintf(stderr, "client %d: %s\n", i, cl[i].first_problem);
    }
    for (int p = 0; p < NPHASES; p++)
        fprintf(stderr, "%-18s accepted %5d  503 %4d\n", phase_names[p], accepted[p],
                unavailable[p]);
    fprintf(stderr,
            "readyz 200 again %lld ms after the fast, %lld ms after the immediate restart\n",
            ready_fast, ready_immediate);

    assert_int_equal(fast, 0);
    assert_int_equal(immediate, 0);
    /* The same vigil served throughout. */
    assert_int_equal(env->vigil_pid, vigil);
    assert_int_equal(kill(vigil, 0), 0);
    /* The outage was seen, and seen the right way. */
    assert_true(unavailable[P_FAST] + unavailable[P_AFTER_FAST] + unavailable[P_IMMEDIATE] +
                    unavailable[P_AFTER_IMMEDIATE] >
                0);
    assert_int_equal(bad_503, 0);
    assert_int_equal(unexpected, 0);
    assert_int_equal(transport, 0);
    assert_int_equal(first_try_dup, 0);
    assert_int_equal(given_up, 0);
    /* Work got done before, between and after the restarts. */
    assert_true(accepted[P_BEFORE] > 0);
    assert_true(accepted[P_AFTER_FAST] > 0);
    assert_true(accepted[P_AFTER_IMMEDIATE] > 0);
    assert_true(ready_fast >= 0);
    assert_true(ready_immediate >= 0);

    /* Every acknowledged id: stored once, with exactly one event. */
    size_t n;
    char *ids = accepted_ids(cl, &n);
    fprintf(stderr, "%zu transactions acknowledged\n", n);
    long long has_log =
        h_db_count(env, "SELECT count(*) FROM pg_class WHERE relname = 'event_log'");
    assert_true(has_log >= 0);
    char events[512];
    /* Events of a row, in outbox or already moved by the sequencer. */
    snprintf(events, sizeof events,
             "(SELECT count(*) FROM outbox o WHERE o.event_type = 'aml.transaction.ingested'"
             " AND o.subject = t.id::text)%s",
             has_log ? " + (SELECT count(*) FROM event_log e WHERE e.event_type ="
                       " 'aml.transaction.ingested' AND e.subject = t.id::text)"
                     : "");
    char sql[1024];
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM unnest($1::text[]) AS a(x)"
                                " WHERE NOT EXISTS (SELECT 1 FROM transactions t"
                                " WHERE t.external_id = a.x)",
                                ids),
                     0);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM transactions t WHERE t.external_id = ANY($1::text[])"
             " AND %s <> 1",
             events);
    assert_int_equal(h_db_count(env, sql, ids), 0);
    /* Nothing stored that was never acknowledged (every id ended in a 2xx). */
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM transactions"
                                     " WHERE external_id LIKE 'pgr-%'"),
                     (long long)n);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM transactions t WHERE t.external_id LIKE 'pgr-%%' AND %s <> 1",
             events);
    assert_int_equal(h_db_count(env, sql), 0);
    free(ids);
    for (int i = 0; i < NCLIENTS; i++) {
        free(cl[i].ids);
        free(cl[i].final);
    }

    /* PostgreSQL down: /readyz says so and names the database check; a
     * write is a 503 problem with Retry-After. */
    assert_int_equal(h_pg_stop(env, "fast"), 0);
    h_resp r;
    assert_int_equal(h_get(env, NULL, &r, "/readyz"), 0);
    assert_int_equal(r.status, 503);
    json_t *db_ok =
        json_object_get(json_object_get(json_object_get(r.json, "checks"), "database"), "ok");
    assert_true(json_is_false(db_ok));
    assert_true(atoi(r.retry_after) >= 1);
    h_resp_free(&r);
    char body[512];
    snprintf(body, sizeof body,
             "{\"external_id\": \"pgr-down\", \"customer_id\": \"%s\", \"amount\": \"1.00\","
             " \"currency\": \"EUR\", \"direction\": \"in\", \"channel\": \"wire\","
             " \"occurred_at\": \"2024-03-01T12:00:00Z\"}",
             cl[0].customer_id);
    assert_int_equal(h_post(env, key, body, &r, "/transactions"), 0);
    assert_int_equal(r.status, 503);
    assert_true(is_problem(&r, 503));
    assert_true(atoi(r.retry_after) >= 1);
    h_resp_free(&r);

    assert_int_equal(h_pg_start(env), 0);
    assert_true(wait_ready(env, READY_MS) >= 0);
    assert_int_equal(h_post(env, key, body, &r, "/transactions"), 0);
    assert_int_equal(r.status, 201);
    h_resp_free(&r);
    assert_int_equal(env->vigil_pid, vigil);

    int failed = env->failed;
    h_teardown(env);
    assert_int_equal(failed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(restarts_under_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
