/*
 * test_authz.c — who may call what: the role × endpoint matrix.
 *
 * The policy is written down here a second time, independently of
 * src/api/api_routes.c, and compared with the real routing table (this test
 * links vigil_core to read `api_routes`): a route added to the server without
 * a decision here, or a decision here without its route, fails the test.
 *
 * Then every route of the real table is called with every kind of caller: no
 * key, malformed Authorization headers, an unknown key, a revoked key, an
 * expired key, and a key of each of the four roles. A denied call must get exactly 401 (no usable
 * key) or 403 (a valid key whose role the route does not admit) as problem+json; an admitted call
 * must get past authorization (anything but 401/403, and no server error). Bodies are "{}", so
 * admitted writes are refused by validation and the whole matrix leaves the database as it found
 * it.
 */
#include "harness.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/api.h"

#define ADMIN   ((unsigned)ROLE_ADMIN)
#define INGEST  ((unsigned)ROLE_INGEST)
#define ANALYST ((unsigned)ROLE_ANALYST)
#define AUDITOR ((unsigned)ROLE_AUDITOR)
#define PUBLIC  0u

/* The authorization policy, as the product defines it. */
static const struct policy {
    const char *method, *pattern;
    unsigned roles; /* PUBLIC: no key needed */
} policy[] = {
    {"GET", "/healthz", PUBLIC},
    {"GET", "/readyz", PUBLIC},
    /* The dashboard's HTML, scripts and styles hold no data: the page asks
     * for a key and reads everything through the routes below. */
    {"GET", "/", PUBLIC},
    {"GET", "/ui/{file}", PUBLIC},

    {"POST", "/customers", ADMIN | INGEST},
    {"PATCH", "/customers/{id}", ADMIN | INGEST},
    {"POST", "/transactions", ADMIN | INGEST},

    {"GET", "/customers", ADMIN | ANALYST | AUDITOR},
    {"GET", "/customers/{id}", ADMIN | ANALYST | AUDITOR},
    {"GET", "/customers/{id}/risk", ADMIN | ANALYST | AUDITOR},
    {"GET", "/transactions", ADMIN | ANALYST | AUDITOR},
    {"GET", "/transactions/{id}", ADMIN | ANALYST | AUDITOR},
    {"GET", "/alerts", ADMIN | ANALYST | AUDITOR},
    {"GET", "/alerts/{id}", ADMIN | ANALYST | AUDITOR},
    {"GET", "/kyc/tasks", ADMIN | ANALYST | AUDITOR},
    {"GET", "/rules", ADMIN | ANALYST | AUDITOR},

    {"PATCH", "/alerts/{id}", ADMIN | ANALYST},
    {"PATCH", "/kyc/tasks/{id}", ADMIN | ANALYST},

    {"PATCH", "/rules/{id}", ADMIN},

    /* Four eyes: proposals are casework (read like alerts); deciding one is
     * an admin's or analyst's act (who may decide which proposal, and never
     * their own, is tested in test_four_eyes.c). */
    {"GET", "/approvals", ADMIN | ANALYST | AUDITOR},
    {"GET", "/approvals/{id}", ADMIN | ANALYST | AUDITOR},
    {"POST", "/approvals/{id}/approve", ADMIN | ANALYST},
    {"POST", "/approvals/{id}/reject", ADMIN | ANALYST},

    /* The event feed carries customers, transactions and alerts: the same
     * audience as reading those. Metrics show business volumes and backlogs:
     * not public, and not for the write-only ingest role. */
    {"GET", "/events", ADMIN | ANALYST | AUDITOR},
    {"GET", "/events/stream", ADMIN | ANALYST | AUDITOR},
    {"GET", "/metrics", ADMIN | ANALYST | AUDITOR},

    /* Dead letters: reading them is oversight; redriving re-applies an
     * event's effect, an operator's act. */
    {"GET", "/dead-letters", ADMIN | ANALYST | AUDITOR},
    {"POST", "/dead-letters/{id}/redrive", ADMIN},

    /* Webhooks send every matching event to a URL of the registrant's
     * choosing: registering, listing and switching them is an admin's act.
     * The delivery record (what was sent where, and when) is evidence an
     * auditor may read. */
    {"POST", "/webhooks", ADMIN},
    {"GET", "/webhooks", ADMIN},
    {"PATCH", "/webhooks/{id}", ADMIN},
    {"GET", "/webhooks/{id}/deliveries", ADMIN | AUDITOR},

    /* The API contract: read like the other read endpoints. */
    {"GET", "/openapi.yaml", ADMIN | ANALYST | AUDITOR},
};
#define NPOLICY (sizeof policy / sizeof policy[0])

/* Routes whose admitted calls get a never-ending text/event-stream. */
static int is_stream(const char *pattern)
{
    return strcmp(pattern, "/events/stream") == 0;
}

/* The kinds of caller. `role` is the key's role bit, 0 for callers without a
 * valid key; `header` is the whole Authorization line, "" for none. */
typedef struct caller {
    const char *name;
    unsigned role;
    char header[300];
    char key[256]; /* the key itself, when role != 0 */
} caller;

enum { NCALLERS = 11 };

typedef struct fixture {
    h_env *env;
    caller callers[NCALLERS];
    char uuid[64]; /* substituted for every {id} */
} fixture;

static const struct policy *policy_find(const char *method, const char *pattern)
{
    for (size_t i = 0; i < NPOLICY; i++)
        if (strcmp(policy[i].method, method) == 0 && strcmp(policy[i].pattern, pattern) == 0)
            return &policy[i];
    return NULL;
}

static const api_route *route_find(const char *method, const char *pattern)
{
    for (const api_route *r = api_routes; r->method; r++)
        if (strcmp(r->method, method) == 0 && strcmp(r->pattern, pattern) == 0)
            return r;
    return NULL;
}

static void roles_text(unsigned roles, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s%s%s%s%s", roles ? "" : " public", roles & ADMIN ? " admin" : "",
             roles & INGEST ? " ingest" : "", roles & ANALYST ? " analyst" : "",
             roles & AUDITOR ? " auditor" : "");
}

static void caller_set(caller *c, const char *name, unsigned role, const char *header)
{
    c->name = name;
    c->role = role;
    snprintf(c->header, sizeof c->header, "%s", header ? header : "");
}

static int key_caller(h_env *env, caller *c, const char *role_name, unsigned role)
{
    char key[256], line[300];
    if (h_key_create(env, role_name, key, sizeof key) != 0)
        return -1;
    snprintf(line, sizeof line, "Authorization: Bearer %s", key);
    caller_set(c, role_name, role, line);
    snprintf(c->key, sizeof c->key, "%s", key);
    return 0;
}

/* `vigil keys ARGS...`: its exit code, and the last stdout line (the key,
 * for create) in out when it exits 0 (-1 if there is no such line). */
static int keys_cli(h_env *env, char *out, size_t outsz, const char *const *args)
{
    char *text = NULL;
    const char *argv[12] = {"keys"};
    for (int i = 0; args[i] && i < 10; i++)
        argv[i + 1] = args[i];
    int rc = h_vigil_runv(env, NULL, NULL, &text, NULL, argv);
    if (rc == 0 && out && h_last_line(text, out, outsz) != 0)
        rc = -1;
    free(text);
    return rc;
}

/* A caller whose key was valid once: revoked with `vigil keys revoke
 * PREFIX`, or created with `--expires-in 1s` (the caller waits it out). */
static int dead_key_caller(h_env *env, caller *c, const char *name, int revoke)
{
    char key[256], prefix[16], line[300];
    const char *create[] = {"create", "--role",       "admin", "--name",
                            name,     "--expires-in", "1s",    NULL};
    if (revoke)
        create[5] = NULL; /* no expiry */
    if (keys_cli(env, key, sizeof key, create) != 0 || strncmp(key, "vgl_", 4) != 0)
        return -1;
    snprintf(prefix, sizeof prefix, "%.12s", key);
    const char *rev[] = {"revoke", prefix, NULL};
    if (revoke && keys_cli(env, NULL, 0, rev) != 0)
        return -1;
    snprintf(line, sizeof line, "Authorization: Bearer %s", key);
    caller_set(c, name, 0, line);
    snprintf(c->key, sizeof c->key, "%s", key);
    return 0;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f || !(f->env = h_setup(0))) {
        free(f);
        return -1;
    }
    char *uuid = h_db_text(f->env, "SELECT gen_random_uuid()::text");
    /* A well-formed key (same alphabet and length as a real one) that no one
     * was ever given. */
    char *unknown = h_db_text(f->env, "SELECT 'vgl_' || left(replace(gen_random_uuid()::text ||"
                                      " gen_random_uuid()::text, '-', ''), 43)");
    if (!uuid || !unknown)
        goto fail;
    snprintf(f->uuid, sizeof f->uuid, "%s", uuid);
    f->env->http_timeout_ms = 10000; /* a stream not in is_stream() fails, not hangs */
    char line[300];
    snprintf(line, sizeof line, "Authorization: Bearer %s", unknown);
    caller_set(&f->callers[0], "no key", 0, NULL);
    caller_set(&f->callers[1], "'Bearer' alone", 0, "Authorization: Bearer");
    caller_set(&f->callers[2], "Basic scheme", 0, "Authorization: Basic xyz");
    caller_set(&f->callers[3], "lower-case scheme", 0, "Authorization: bearer lowercase");
    caller_set(&f->callers[4], "unknown key", 0, line);
    if (key_caller(f->env, &f->callers[5], "admin", ADMIN) != 0 ||
        key_caller(f->env, &f->callers[6], "ingest", INGEST) != 0 ||
        key_caller(f->env, &f->callers[7], "analyst", ANALYST) != 0 ||
        key_caller(f->env, &f->callers[8], "auditor", AUDITOR) != 0 ||
        dead_key_caller(f->env, &f->callers[9], "revoked key", 1) != 0 ||
        dead_key_caller(f->env, &f->callers[10], "expired key", 0) != 0)
        goto fail;
    h_sleep_ms(1100); /* the expiring key's second passes */
    free(uuid);
    free(unknown);
    *state = f;
    return 0;
fail:
    free(uuid);
    free(unknown);
    h_teardown(f->env);
    free(f);
    return -1;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f)
        h_teardown(f->env);
    free(f);
    return 0;
}

/* (a) The real table and the policy list the same routes with the same roles. */
static void routing_table_matches_policy(void **state)
{
    int problems = 0, nroutes = 0;
    char have[64], want[64];
    for (const api_route *r = api_routes; r->method; r++, nroutes++) {
        const struct policy *p = policy_find(r->method, r->pattern);
        if (!p) {
            fprintf(stderr, "route %s %s has no decision in the authorization policy\n", r->method,
                    r->pattern);
            problems++;
        } else if (p->roles != r->roles) {
            roles_text(r->roles, have, sizeof have);
            roles_text(p->roles, want, sizeof want);
            fprintf(stderr, "route %s %s admits {%s }, the policy says {%s }\n", r->method,
                    r->pattern, have, want);
            problems++;
        }
    }
    for (size_t i = 0; i < NPOLICY; i++) {
        if (!route_find(policy[i].method, policy[i].pattern)) {
            fprintf(stderr, "policy entry %s %s has no route in api_routes\n", policy[i].method,
                    policy[i].pattern);
            problems++;
        }
    }
    assert_int_equal(nroutes, NPOLICY);
    assert_int_equal(problems, 0);
}

/* The route's pattern with every {x} replaced by `id`. */
static void concrete_path(const char *pattern, const char *id, char *out, size_t outsz)
{
    size_t o = 0;
    for (const char *p = pattern; *p && o + 1 < outsz;) {
        if (*p == '{') {
            o += (size_t)snprintf(out + o, outsz - o, "%s", id);
            p += strcspn(p, "}");
            p += *p == '}';
        } else {
            out[o++] = *p++;
        }
    }
    out[o < outsz ? o : outsz - 1] = '\0';
}

/* 1 when r is an application/problem+json body whose "status" is `status`. */
static int is_problem(const h_resp *r, long status)
{
    return strncmp(r->content_type, "application/problem+json", 24) == 0 &&
           json_is_object(r->json) &&
           json_integer_value(json_object_get(r->json, "status")) == status;
}

/* An admitted call to a stream route: its status, from the headers alone. */
static long stream_status(h_env *env, const caller *c, const char *path)
{
    long status = 0;
    h_sse *s = h_sse_open(env, c->key[0] ? c->key : NULL, path, NULL, &status);
    h_sse_close(s);
    return s ? 200 : status;
}

/* One call; returns 1 when the outcome matches the policy, else prints why. */
static int check_call(h_env *env, const api_route *route, unsigned allowed, const caller *c,
                      const char *id)
{
    char path[256];
    concrete_path(route->pattern, id, path, sizeof path);
    int admitted = allowed == PUBLIC || (allowed & c->role);
    long want = c->role ? 403 : 401;
    h_resp r = {0};
    int ok;
    if (admitted && is_stream(route->pattern)) {
        r.status = stream_status(env, c, path);
        ok = r.status > 0 && r.status != 401 && r.status != 403 && r.status < 500;
    } else {
        int has_body = strcmp(route->method, "POST") == 0 || strcmp(route->method, "PATCH") == 0;
        const char *headers[] = {c->header[0] ? c->header : NULL, NULL};
        if (h_http(env, route->method, path, NULL, has_body ? "{}" : NULL, -1, headers, &r) != 0)
            r.status = -1;
        ok = admitted ? r.status > 0 && r.status != 401 && r.status != 403 && r.status < 500
                      : r.status == want && is_problem(&r, want);
    }
    if (!ok)
        fprintf(stderr, "%s %s as %s: got %ld (%s) %s; expected %s\n", route->method, path, c->name,
                r.status, r.content_type, r.body ? r.body : "",
                admitted      ? "to get past authorization"
                : want == 401 ? "401 problem+json"
                              : "403 problem+json");
    h_resp_free(&r);
    return ok;
}

/* Business rows (events follow from them; the sequencer moves those). */
static long long count_rows(h_env *env)
{
    return h_db_count(env, "SELECT (SELECT count(*) FROM customers) + (SELECT count(*) FROM"
                           " transactions) + (SELECT count(*) FROM alerts) + (SELECT count(*)"
                           " FROM kyc_tasks)");
}

/* (b) Every route of the real table × every kind of caller. */
static void role_matrix(void **state)
{
    fixture *f = *state;
    long long before = count_rows(f->env);
    assert_true(before >= 0);
    int calls = 0, wrong = 0;
    for (const api_route *r = api_routes; r->method; r++) {
        const struct policy *p = policy_find(r->method, r->pattern);
        if (!p)
            continue; /* reported by routing_table_matches_policy */
        for (int i = 0; i < NCALLERS; i++, calls++)
            wrong += !check_call(f->env, r, p->roles, &f->callers[i], f->uuid);
    }
    fprintf(stderr, "authz matrix: %d calls, %d wrong\n", calls, wrong);
    assert_int_equal(calls, (int)NPOLICY * NCALLERS);
    assert_int_equal(wrong, 0);
    /* Denied writes wrote nothing (and admitted "{}" bodies were refused). */
    assert_int_equal(count_rows(f->env), before);
}

static long status_of(h_env *env, const char *method, const char *path, const char *key,
                      const char *body, int *problem401)
{
    h_resp r;
    long status = h_http(env, method, path, key, body, -1, NULL, &r) == 0 ? r.status : -1;
    *problem401 = is_problem(&r, 401);
    h_resp_free(&r);
    return status;
}

/* Revokes the key whose secret is `key` with plain SQL, as an operator's
 * script or another instance would: no process of this test is told. */
static void revoke_in_db(h_env *env, const char *key)
{
    assert_int_equal(h_db_count(env,
                                "WITH u AS (UPDATE api_keys SET revoked_at = now()"
                                " WHERE key_hash = sha256(convert_to($1, 'UTF8')) RETURNING 1)"
                                " SELECT count(*) FROM u",
                                key),
                     1);
}

/* A key revoked in the database stops working at once: no cache outlives it. */
static void revoked_key_is_refused(void **state)
{
    fixture *f = *state;
    char key[256];
    int problem;
    assert_int_equal(h_key_create(f->env, "admin", key, sizeof key), 0);
    assert_int_equal(h_db_count(f->env,
                                "SELECT count(*) FROM api_keys WHERE last_used_at IS NOT NULL"
                                " AND key_hash = sha256(convert_to($1, 'UTF8'))",
                                key),
                     0);
    assert_int_equal(status_of(f->env, "GET", "/customers", key, NULL, &problem), 200);
    /* a successful use is recorded (keys list shows it) */
    assert_int_equal(h_db_count(f->env,
                                "SELECT count(*) FROM api_keys WHERE last_used_at IS NOT NULL"
                                " AND key_hash = sha256(convert_to($1, 'UTF8'))",
                                key),
                     1);
    revoke_in_db(f->env, key);
    assert_int_equal(status_of(f->env, "GET", "/customers", key, NULL, &problem), 401);
    assert_true(problem);
    assert_int_equal(status_of(f->env, "POST", "/transactions", key, "{}", &problem), 401);
    assert_true(problem);
    /* The other admin key is untouched. */
    assert_int_equal(status_of(f->env, "GET", "/customers", f->env->admin_key, NULL, &problem),
                     200);
}

/* POST /transactions authenticates from a cache of keys that worked in the
 * last minute (store_keys.h); a single transaction's key is checked again in
 * the transaction that writes it (vigil_ingest_keyed), anything else looks
 * the key up. So a key revoked or expired while cached writes nothing more,
 * answers 401 before any validation, and other keys' requests are not
 * affected. */
typedef struct poster {
    h_env *env;
    const char *key, *customer, *tag;
    int ok, unauthorized, other;
    pthread_t th;
} poster;

static long post_tx(h_env *env, const char *key, const char *customer, const char *ext,
                    char *detail, size_t detailsz)
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"external_id\": \"%s\", \"customer_id\": \"%s\", \"amount\": \"10.00\","
             " \"currency\": \"EUR\", \"direction\": \"in\", \"channel\": \"wire\","
             " \"occurred_at\": \"2026-03-01T12:00:00Z\"}",
             ext, customer);
    h_resp r;
    long status = h_post(env, key, body, &r, "/transactions") == 0 ? r.status : -1;
    if (detail)
        snprintf(detail, detailsz, "%s",
                 r.json ? json_string_value(json_object_get(r.json, "detail")) : "");
    if (status == 401 && !is_problem(&r, 401))
        status = -401;
    h_resp_free(&r);
    return status;
}

/* A new ingest key, used once (201) for `ext`: now in vigil's key cache. */
static void cached_ingest_key(h_env *env, const char *customer, const char *ext, char *key,
                              size_t keysz)
{
    assert_int_equal(h_key_create(env, "ingest", key, keysz), 0);
    assert_int_equal(post_tx(env, key, customer, ext, NULL, 0), 201);
}

static void *poster_main(void *arg)
{
    poster *p = arg;
    for (int i = 0; i < 20; i++) {
        char ext[64];
        snprintf(ext, sizeof ext, "%s-%d", p->tag, i);
        long st = post_tx(p->env, p->key, p->customer, ext, NULL, 0);
        if (st == 201)
            p->ok++;
        else if (st == 401)
            p->unauthorized++;
        else
            p->other++;
    }
    return NULL;
}

static double metric(h_env *env, const char *name)
{
    double v = -1;
    assert_int_equal(h_metric(env, env->admin_key, name, &v), 0);
    return v;
}

static void cached_ingest_key_rechecked(void **state)
{
    fixture *f = *state;
    h_env *env = f->env;
    h_resp r;
    char customer[40];
    assert_int_equal(h_customer_create(env, "{\"full_name\": \"Cache Check\", \"country\": \"DE\"}",
                                       customer, sizeof customer),
                     0);
    char key[256], other[256], detail[300];
    assert_int_equal(h_key_create(env, "ingest", key, sizeof key), 0);
    assert_int_equal(h_key_create(env, "ingest", other, sizeof other), 0);

    double misses0 = metric(env, "vigil_api_key_cache_misses_total");
    double hits0 = metric(env, "vigil_api_key_cache_hits_total");
    assert_int_equal(post_tx(env, key, customer, "kc-1", NULL, 0), 201);
    assert_int_equal(post_tx(env, key, customer, "kc-2", NULL, 0), 201);
    assert_int_equal(post_tx(env, other, customer, "kc-o1", NULL, 0), 201);
    /* One lookup per key, then the cache. */
    assert_true(metric(env, "vigil_api_key_cache_misses_total") - misses0 == 2);
    assert_true(metric(env, "vigil_api_key_cache_hits_total") - hits0 == 1);

    revoke_in_db(env, key);
    /* Cached, revoked: the write's transaction refuses it. */
    double hits1 = metric(env, "vigil_api_key_cache_hits_total");
    assert_int_equal(post_tx(env, key, customer, "kc-3", detail, sizeof detail), 401);
    assert_non_null(strstr(detail, "revoked"));
    assert_true(metric(env, "vigil_api_key_cache_hits_total") - hits1 == 1);
    assert_int_equal(
        h_db_count(env, "SELECT count(*) FROM transactions WHERE external_id = 'kc-3'"), 0);
    /* The refusal dropped it from the cache: looked up from now on. */
    double misses1 = metric(env, "vigil_api_key_cache_misses_total");
    assert_int_equal(post_tx(env, key, customer, "kc-4", detail, sizeof detail), 401);
    assert_true(metric(env, "vigil_api_key_cache_misses_total") - misses1 == 1);
    assert_int_equal(
        h_db_count(env, "SELECT count(*) FROM transactions WHERE external_id LIKE 'kc-_'"), 2);

    /* Revoked while cached, then a body that does not validate, and a
     * batch: 401 first, as on every route, nothing written. */
    char key2[256];
    cached_ingest_key(env, customer, "kd-1", key2, sizeof key2);
    revoke_in_db(env, key2);
    assert_int_equal(h_post(env, key2, "{\"external_id\": \"kd-bad\"}", &r, "/transactions"), 0);
    assert_true(is_problem(&r, 401));
    h_resp_free(&r);
    assert_int_equal(post_tx(env, key2, customer, "kd-2", NULL, 0), 401);
    char batch[1024];
    snprintf(batch, sizeof batch,
             "{\"transactions\": [{\"external_id\": \"kd-b1\", \"customer_id\": \"%s\","
             " \"amount\": \"1.00\", \"currency\": \"EUR\", \"direction\": \"in\", \"channel\":"
             " \"wire\", \"occurred_at\": \"2026-03-01T12:00:00Z\"}]}",
             customer);
    char key3[256];
    cached_ingest_key(env, customer, "ke-1", key3, sizeof key3);
    revoke_in_db(env, key3);
    assert_int_equal(h_post(env, key3, batch, &r, "/transactions"), 0);
    assert_true(is_problem(&r, 401));
    h_resp_free(&r);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM transactions WHERE external_id LIKE 'kd-%'"
                                " OR external_id = 'kd-b1'"),
                     1);

    /* Expired while cached. */
    char ekey[256];
    const char *create[] = {"create",   "--role",       "ingest", "--name",
                            "expiring", "--expires-in", "3s",     NULL};
    assert_int_equal(keys_cli(env, ekey, sizeof ekey, create), 0);
    assert_int_equal(post_tx(env, ekey, customer, "kx-1", NULL, 0), 201);
    h_sleep_ms(3200);
    assert_int_equal(post_tx(env, ekey, customer, "kx-2", detail, sizeof detail), 401);
    assert_non_null(strstr(detail, "expired at"));
    assert_int_equal(
        h_db_count(env, "SELECT count(*) FROM transactions WHERE external_id = 'kx-2'"), 0);

    /* A revoked key and a good one posting at the same time (their
     * requests share flushes): every request of the good one is written. */
    char key4[256];
    cached_ingest_key(env, customer, "kf-0", key4, sizeof key4);
    revoke_in_db(env, key4);
    poster pr[4] = {{env, key4, customer, "kf-a", 0, 0, 0, 0},
                    {env, other, customer, "kg-a", 0, 0, 0, 0},
                    {env, key4, customer, "kf-b", 0, 0, 0, 0},
                    {env, other, customer, "kg-b", 0, 0, 0, 0}};
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&pr[i].th, NULL, poster_main, &pr[i]), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(pr[i].th, NULL);
    for (int i = 0; i < 4; i++)
        fprintf(stderr, "%s: %d written, %d refused (401), %d other\n", pr[i].tag, pr[i].ok,
                pr[i].unauthorized, pr[i].other);
    assert_int_equal(pr[0].unauthorized + pr[2].unauthorized, 40);
    assert_int_equal(pr[1].ok + pr[3].ok, 40);
    assert_int_equal(pr[0].other + pr[1].other + pr[2].other + pr[3].other, 0);
    assert_int_equal(
        h_db_count(env, "SELECT count(*) FROM transactions WHERE external_id LIKE 'kf-_-%'"), 0);
    assert_int_equal(
        h_db_count(env, "SELECT count(*) FROM transactions WHERE external_id LIKE 'kg-_-%'"), 40);
}

/* The detail of a 401 says what is wrong with a key that once worked. */
static void key_states_are_explained(void **state)
{
    fixture *f = *state;
    h_resp r;
    assert_int_equal(h_get(f->env, f->callers[9].key, &r, "/customers"), 0);
    assert_true(is_problem(&r, 401));
    assert_non_null(strstr(json_string_value(json_object_get(r.json, "detail")), "revoked"));
    h_resp_free(&r);
    assert_int_equal(h_get(f->env, f->callers[10].key, &r, "/customers"), 0);
    assert_true(is_problem(&r, 401));
    assert_non_null(strstr(json_string_value(json_object_get(r.json, "detail")), "expired at"));
    h_resp_free(&r);
    /* Same length and alphabet as a key, never issued. */
    assert_int_equal(
        h_get(f->env, "vgl_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &r, "/customers"), 0);
    assert_true(is_problem(&r, 401));
    assert_non_null(strstr(json_string_value(json_object_get(r.json, "detail")), "unknown"));
    h_resp_free(&r);

    /* keys list shows each state, the expiry and the last use. */
    char *list = NULL;
    assert_int_equal(h_vigil_run(f->env, &list, "keys", "list", NULL), 0);
    json_t *keys = json_loads(list, 0, NULL);
    free(list);
    assert_true(json_is_array(keys));
    int revoked = 0, expired = 0, used = 0;
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k)
    {
        const char *name = json_string_value(json_object_get(k, "name"));
        const char *st = json_string_value(json_object_get(k, "state"));
        if (strcmp(name, "revoked key") == 0)
            revoked +=
                strcmp(st, "revoked") == 0 && json_is_string(json_object_get(k, "revoked_at"));
        if (strcmp(name, "expired key") == 0)
            expired +=
                strcmp(st, "expired") == 0 && json_is_string(json_object_get(k, "expires_at"));
        used += json_is_string(json_object_get(k, "last_used_at"));
    }
    json_decref(keys);
    assert_int_equal(revoked, 1);
    assert_int_equal(expired, 1);
    assert_true(used >= 4); /* the role keys of the matrix */

    /* The CLI refuses what it cannot do, and says so. */
    const char *bad_in[] = {"create", "--role", "admin", "--expires-in", "90x", NULL};
    assert_int_equal(keys_cli(f->env, NULL, 0, bad_in), 2);
    const char *past[] = {"create", "--role", "admin", "--expires-at", "2001-01-01T00:00:00Z",
                          NULL};
    assert_int_equal(keys_cli(f->env, NULL, 0, past), 2);
    const char *nobody[] = {"revoke", "vgl_nosuchkey", NULL};
    assert_int_equal(keys_cli(f->env, NULL, 0, nobody), 1);
    /* Revoking twice is harmless. */
    char prefix[16];
    snprintf(prefix, sizeof prefix, "%.12s", f->callers[9].key);
    const char *again[] = {"revoke", prefix, NULL};
    assert_int_equal(keys_cli(f->env, NULL, 0, again), 0);

    /* A key that expires later works until then. */
    char later[256];
    const char *create[] = {"create", "--role", "auditor", "--expires-at", "2099-01-01T00:00:00Z",
                            NULL};
    assert_int_equal(keys_cli(f->env, later, sizeof later, create), 0);
    assert_int_equal(h_get(f->env, later, &r, "/customers"), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    assert_int_equal(h_db_count(f->env,
                                "SELECT count(*) FROM api_keys WHERE expires_at ="
                                " '2099-01-01T00:00:00Z' AND key_hash = sha256(convert_to($1,"
                                " 'UTF8'))",
                                later),
                     1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(routing_table_matches_policy),
        cmocka_unit_test(role_matrix),
        cmocka_unit_test(revoked_key_is_refused),
        cmocka_unit_test(cached_ingest_key_rechecked),
        cmocka_unit_test(key_states_are_explained),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
