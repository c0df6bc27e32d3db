/*
 * test_webhooks.c — outgoing webhooks end to end: registration, signed
 * CloudEvent POSTs of matching events only, retries with backoff, a dead
 * letter past the horizon and its redrive, exactly one delivery per
 * (webhook, event) across a full JetStream redelivery, and who may do what.
 *
 * Real PostgreSQL, nats-server and vigil serve (harness); the receivers are
 * a libmicrohttpd server inside this test process, on loopback only. Its
 * paths behave differently:
 *   /ok, /all  always 200
 *   /flaky     500 to its first two requests, then 200
 *   /fail      500 while fail_always is set, else 200
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "fixture_alerts.h"
#include "harness.h"

#define SECRET       "it-secret-0123456789abcdef"
#define BACKOFF_MS   200
#define HORIZON_S    2
#define MAX_RECEIVED 1024

static h_env *env;

static const char *const webhook_env[] = {"VIGIL_WEBHOOK_BACKOFF_MS=200",
                                          "VIGIL_WEBHOOK_HORIZON_S=2",
                                          "VIGIL_WEBHOOK_TIMEOUT_MS=3000", NULL};

/* ---- the receiver ------------------------------------------------------ */

typedef struct received {
    char path[32];
    char content_type[128], webhook_id[64], event_id[64], attempt[16], timestamp[32];
    char signature[160];
    char *body;
    size_t len;
    long long at_ms; /* h_now_ms() on arrival */
    int status;      /* what the receiver answered */
} received;

static struct {
    struct MHD_Daemon *daemon;
    int port;
    pthread_mutex_t mu;
    received r[MAX_RECEIVED];
    int n;
    int flaky_seen;
    int fail_always;
} rx = {.mu = PTHREAD_MUTEX_INITIALIZER};

typedef struct upload {
    char *buf;
    size_t len;
} upload;

static void copy_header(struct MHD_Connection *c, const char *name, char *out, size_t outsz)
{
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
    snprintf(out, outsz, "%s", v ? v : "");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **con_cls)
{
    upload *u = *con_cls;
    if (!u) {
        *con_cls = u = calloc(1, sizeof *u);
        return u ? MHD_YES : MHD_NO;
    }
    if (*size) {
        char *b = realloc(u->buf, u->len + *size + 1);
        if (!b)
            return MHD_NO;
        u->buf = b;
        memcpy(u->buf + u->len, data, *size);
        u->len += *size;
        u->buf[u->len] = '\0';
        *size = 0;
        return MHD_YES;
    }
    int status = 200;
    pthread_mutex_lock(&rx.mu);
    if (strcmp(url, "/flaky") == 0)
        status = rx.flaky_seen++ < 2 ? 500 : 200;
    else if (strcmp(url, "/fail") == 0 && rx.fail_always)
        status = 500;
    if (rx.n < MAX_RECEIVED) {
        received *r = &rx.r[rx.n++];
        snprintf(r->path, sizeof r->path, "%s", url);
        copy_header(c, "Content-Type", r->content_type, sizeof r->content_type);
        copy_header(c, "Vigil-Webhook-Id", r->webhook_id, sizeof r->webhook_id);
        copy_header(c, "Vigil-Event-Id", r->event_id, sizeof r->event_id);
        copy_header(c, "Vigil-Delivery-Attempt", r->attempt, sizeof r->attempt);
        copy_header(c, "Vigil-Timestamp", r->timestamp, sizeof r->timestamp);
        copy_header(c, "Vigil-Signature", r->signature, sizeof r->signature);
        r->body = u->buf ? u->buf : strdup("");
        r->len = u->len;
        u->buf = NULL;
        r->at_ms = h_now_ms();
        r->status = status;
    }
    pthread_mutex_unlock(&rx.mu);
    static char ok[] = "ok", no[] = "receiver says no";
    struct MHD_Response *resp =
        status == 200 ? MHD_create_response_from_buffer(2, ok, MHD_RESPMEM_PERSISTENT)
                      : MHD_create_response_from_buffer(16, no, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls,
                    enum MHD_RequestTerminationCode toe)
{
    upload *u = *con_cls;
    if (u)
        free(u->buf);
    free(u);
    *con_cls = NULL;
}

static int receiver_start(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    rx.daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                                 on_request, NULL, MHD_OPTION_SOCK_ADDR, &sin,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL, MHD_OPTION_END);
    if (!rx.daemon)
        return -1;
    rx.port = MHD_get_daemon_info(rx.daemon, MHD_DAEMON_INFO_BIND_PORT)->port;
    return rx.port > 0 ? 0 : -1;
}

/* Requests received for `webhook_id` (NULL: all); copies up to max. */
static int received_for(const char *webhook_id, received *out, int max)
{
    int n = 0;
    pthread_mutex_lock(&rx.mu);
    for (int i = 0; i < rx.n; i++)
        if (!webhook_id || strcmp(rx.r[i].webhook_id, webhook_id) == 0) {
            if (out && n < max)
                out[n] = rx.r[i];
            n++;
        }
    pthread_mutex_unlock(&rx.mu);
    return n;
}

static int wait_received(const char *webhook_id, int want, int timeout_ms)
{
    int n = 0;
    for (long long t0 = h_now_ms(); h_now_ms() - t0 < timeout_ms; h_sleep_ms(20))
        if ((n = received_for(webhook_id, NULL, 0)) >= want)
            break;
    return n;
}

/* 1 when `r` carries a valid signature by `secret` over its body. */
static int signature_ok(const received *r, const char *secret)
{
    long long t = 0;
    char hex[65] = "";
    if (sscanf(r->signature, "t=%lld,v1=%64[0-9a-f]", &t, hex) != 2 || strlen(hex) != 64)
        return 0;
    char ts[32];
    snprintf(ts, sizeof ts, "%lld", t);
    if (strcmp(ts, r->timestamp) != 0)
        return 0;
    /* the message is "<t>.<raw body>" */
    size_t mlen = strlen(ts) + 1 + r->len;
    unsigned char *msg = malloc(mlen), mac[32];
    unsigned int maclen = 0;
    memcpy(msg, ts, strlen(ts));
    msg[strlen(ts)] = '.';
    memcpy(msg + strlen(ts) + 1, r->body, r->len);
    HMAC(EVP_sha256(), secret, (int)strlen(secret), msg, mlen, mac, &maclen);
    free(msg);
    char want[65];
    for (int i = 0; i < 32; i++)
        snprintf(want + 2 * i, 3, "%02x", mac[i]);
    return maclen == 32 && CRYPTO_memcmp(want, hex, 64) == 0;
}

/* ---- vigil side helpers ------------------------------------------------ */

static int setup(void **state)
{
    if (receiver_start() != 0)
        return -1;
    env = h_setup(1);
    if (!env)
        return -1;
    h_vigil_stop(env, SIGTERM);
    return h_vigil_start(env, webhook_env);
}

static int teardown(void **state)
{
    h_teardown(env);
    if (rx.daemon)
        MHD_stop_daemon(rx.daemon);
    for (int i = 0; i < rx.n; i++)
        free(rx.r[i].body);
    return 0;
}

/* Registers a webhook to the receiver's `path`; `types` is JSON (or NULL),
 * `secret` NULL asks Vigil for one (copied to secret_out, 128 bytes). */
static void register_webhook(const char *path, const char *types, const char *secret, char id[64],
                             char *secret_out)
{
    char body[512];
    h_resp r = {0};
    int n = snprintf(body, sizeof body, "{\"url\": \"http://127.0.0.1:%d%s\"", rx.port, path);
    if (types)
        n += snprintf(body + n, sizeof body - (size_t)n, ", \"event_types\": %s", types);
    if (secret)
        n += snprintf(body + n, sizeof body - (size_t)n, ", \"secret\": \"%s\"", secret);
    snprintf(body + n, sizeof body - (size_t)n, "}");
    assert_int_equal(h_post(env, env->admin_key, body, &r, "/webhooks"), 0);
    if (r.status != 201)
        fail_msg("POST /webhooks %s: %ld %s", body, r.status, r.body);
    snprintf(id, 64, "%s", json_string_value(json_object_get(r.json, "id")));
    const char *given = json_string_value(json_object_get(r.json, "secret"));
    if (secret)
        assert_null(given); /* the caller's own secret is not echoed */
    else if (secret_out)
        snprintf(secret_out, 128, "%s", given ? given : "");
    h_resp_free(&r);
}

/* Waits until every committed event went through the webhooks consumer and
 * no delivery to an active webhook is unfinished, stably for 600 ms. */
static void wait_quiet(int timeout_ms)
{
    int stable = 0;
    for (long long t0 = h_now_ms(); h_now_ms() - t0 < timeout_ms; h_sleep_ms(200)) {
        long long outbox = h_db_count(env, "SELECT count(*) FROM outbox");
        long long logged = h_db_count(env, "SELECT count(*) FROM event_log");
        long long done =
            h_db_count(env, "SELECT count(*) FROM processed_events WHERE consumer = 'webhooks'");
        long long open = h_db_count(env, "SELECT count(*) FROM webhook_deliveries d JOIN webhooks"
                                         " w ON w.id = d.webhook_id WHERE w.active AND"
                                         " d.status IN ('pending', 'failed')");
        stable = outbox == 0 && logged == done && open == 0 ? stable + 1 : 0;
        if (stable >= 3)
            return;
    }
    fail_msg("webhook deliveries did not settle within %d ms", timeout_ms);
}

/* GET /webhooks/{id}/deliveries as the admin; returns the items (owned by r). */
static json_t *deliveries(const char *id, h_resp *r)
{
    assert_int_equal(h_get(env, env->admin_key, r, "/webhooks/%s/deliveries", id), 0);
    assert_int_equal(r->status, 200);
    return json_object_get(r->json, "items");
}

static void set_active(const char *id, int active)
{
    h_resp r = {0};
    assert_int_equal(h_patch(env, env->admin_key,
                             active ? "{\"active\": true}" : "{\"active\": false}", &r,
                             "/webhooks/%s", id),
                     0);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_is_true(json_object_get(r.json, "active")), active);
    h_resp_free(&r);
}

/* ---- tests ------------------------------------------------------------- */

static char ok_id[64];

static void signed_delivery_of_matching_events_only(void **state)
{
    char all_id[64], all_secret[128], c[64];
    register_webhook("/ok", "[\"aml.alert.\"]", SECRET, ok_id, NULL);
    register_webhook("/all", NULL, NULL, all_id, all_secret);
    assert_int_equal(strlen(all_secret), 64); /* 32 random bytes, hex */
    long long seq0 = h_db_count(env, "SELECT coalesce(max(seq), 0) FROM event_log");

    fx_customer(env, "Webhook Alice", c);
    long long t0 = h_now_ms();
    fx_large_cash(env, c, "wh-1");
    assert_int_equal(wait_received(ok_id, 1, 30000), 1);
    received got;
    received_for(ok_id, &got, 1);
    fprintf(stderr, "webhook latency, POST /transactions 201 -> receiver: %lld ms\n",
            got.at_ms - t0);
    char *steps = h_db_text(
        env,
        "SELECT format('alert committed -> event_log %s ms -> consumer %s ms -> claimed %s ms',"
        " round(extract(epoch FROM e.recorded_at - a.created_at) * 1000),"
        " round(extract(epoch FROM d.created_at - e.recorded_at) * 1000),"
        " round(extract(epoch FROM t.started_at - d.created_at) * 1000))"
        " FROM webhook_deliveries d JOIN webhook_attempts t ON t.delivery_id = d.id"
        " JOIN event_log e ON e.event_id = d.event_id"
        " JOIN alerts a ON a.id::text = e.subject WHERE d.webhook_id = $1",
        ok_id);
    fprintf(stderr, "webhook latency breakdown: %s\n", steps ? steps : "?");
    free(steps);

    /* let everything that follows from it (risk event, other webhooks) settle */
    assert_int_equal(fx_wait_count(env, 1, 30000,
                                   "SELECT count(*) FROM event_log WHERE event_type ="
                                   " 'aml.customer.risk' AND subject = $1 AND payload->'data'->>"
                                   "'reason' LIKE 'aml.alert%'",
                                   c),
                     1);
    wait_quiet(30000);

    /* exactly one POST to /ok: the alert, with every header right */
    assert_int_equal(received_for(ok_id, &got, 1), 1);
    assert_string_equal(got.path, "/ok");
    assert_string_equal(got.content_type, "application/cloudevents+json");
    assert_string_equal(got.webhook_id, ok_id);
    assert_string_equal(got.attempt, "1");
    assert_true(llabs(atoll(got.timestamp) - (long long)time(NULL)) < 60);
    assert_true(signature_ok(&got, SECRET));
    assert_false(signature_ok(&got, "another-secret-0123456789"));
    json_t *ev = json_loads(got.body, 0, NULL);
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_object_get(ev, "type")), "aml.alert.created");
    assert_string_equal(json_string_value(json_object_get(ev, "id")), got.event_id);
    assert_string_equal(json_string_value(json_object_get(ev, "specversion")), "1.0");
    /* the body is the stored event, byte for byte */
    char *stored =
        h_db_text(env, "SELECT payload::text FROM event_log WHERE event_id = $1", got.event_id);
    assert_non_null(stored);
    assert_string_equal(stored, got.body);
    free(stored);
    json_decref(ev);

    /* /all (no filter) got every event since it registered, once each, with
     * the secret Vigil generated; /ok got none of the other types */
    char seqtxt[32];
    snprintf(seqtxt, sizeof seqtxt, "%lld", seq0);
    long long events = h_db_count(env, "SELECT count(*) FROM event_log WHERE seq > $1", seqtxt);
    assert_true(events >= 5); /* customer, kyc tasks, transaction, alert, risk... */
    received all[64];
    int nall = received_for(all_id, all, 64);
    assert_int_equal(nall, events);
    int customer_created = 0;
    for (int i = 0; i < nall; i++) {
        assert_true(signature_ok(&all[i], all_secret));
        for (int k = 0; k < i; k++)
            assert_string_not_equal(all[k].event_id, all[i].event_id);
        assert_int_equal(h_db_count(env,
                                    "SELECT count(*) FROM event_log WHERE event_id = $1"
                                    " AND seq > $2",
                                    all[i].event_id, seqtxt),
                         1);
        json_t *e = json_loads(all[i].body, 0, NULL);
        customer_created +=
            strcmp(json_string_value(json_object_get(e, "type")), "aml.customer.created") == 0;
        json_decref(e);
    }
    assert_int_equal(customer_created, 1);

    /* the delivery record */
    h_resp r = {0};
    json_t *items = deliveries(ok_id, &r);
    assert_int_equal(json_array_size(items), 1);
    json_t *d = json_array_get(items, 0);
    assert_string_equal(json_string_value(json_object_get(d, "status")), "delivered");
    assert_string_equal(json_string_value(json_object_get(d, "event_id")), got.event_id);
    assert_int_equal(json_integer_value(json_object_get(d, "attempts")), 1);
    json_t *a = json_array_get(json_object_get(d, "attempt_log"), 0);
    assert_int_equal(json_integer_value(json_object_get(a, "http_status")), 200);
    assert_string_equal(json_string_value(json_object_get(a, "outcome")), "delivered");
    h_resp_free(&r);

    /* the listing never shows a secret, only its hint */
    assert_int_equal(h_get(env, env->admin_key, &r, "/webhooks"), 0);
    assert_int_equal(r.status, 200);
    assert_null(strstr(r.body, SECRET));
    assert_null(strstr(r.body, all_secret));
    size_t i;
    json_t *w;
    json_array_foreach(json_object_get(r.json, "items"), i, w)
    {
        assert_null(json_object_get(w, "secret"));
        if (strcmp(json_string_value(json_object_get(w, "id")), ok_id) == 0)
            assert_string_equal(json_string_value(json_object_get(w, "secret_hint")), "…cdef");
    }
    h_resp_free(&r);

    /* switched off: /all gets nothing more (checked in the next test) */
    set_active(all_id, 0);
    set_active(ok_id, 0);
}

static void failing_receiver_retried_with_backoff(void **state)
{
    char id[64], c[64];
    int ok_before = received_for(ok_id, NULL, 0), all_before = received_for(NULL, NULL, 0);
    register_webhook("/flaky", "[\"aml.alert.created\"]", SECRET, id, NULL);
    fx_customer(env, "Webhook Bob", c);
    fx_large_cash(env, c, "wh-2");
    assert_int_equal(
        fx_wait_count(env, 1, 30000,
                      "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = $1 AND status ="
                      " 'delivered'",
                      id),
        1);
    received got[8];
    assert_int_equal(received_for(id, got, 8), 3);
    for (int i = 0; i < 3; i++) {
        char n[4];
        snprintf(n, sizeof n, "%d", i + 1);
        assert_string_equal(got[i].attempt, n);
        assert_string_equal(got[i].event_id, got[0].event_id);
        assert_true(signature_ok(&got[i], SECRET));
    }
    assert_int_equal(got[0].status, 500);
    assert_int_equal(got[1].status, 500);
    assert_int_equal(got[2].status, 200);
    /* the receiver saw the backoff: >= 200 ms, then >= 400 ms */
    fprintf(stderr, "retry spacing at the receiver: %lld ms, %lld ms\n",
            got[1].at_ms - got[0].at_ms, got[2].at_ms - got[1].at_ms);
    assert_true(got[1].at_ms - got[0].at_ms >= BACKOFF_MS);
    assert_true(got[2].at_ms - got[1].at_ms >= 2 * BACKOFF_MS);

    h_resp r = {0};
    json_t *items = deliveries(id, &r);
    assert_int_equal(json_array_size(items), 1);
    json_t *d = json_array_get(items, 0);
    assert_string_equal(json_string_value(json_object_get(d, "status")), "delivered");
    assert_int_equal(json_integer_value(json_object_get(d, "attempts")), 3);
    json_t *log = json_object_get(d, "attempt_log");
    assert_int_equal(json_array_size(log), 3);
    static const char *const outcomes[] = {"retry", "retry", "delivered"};
    static const int codes[] = {500, 500, 200};
    for (int i = 0; i < 3; i++) {
        json_t *a = json_array_get(log, (size_t)i);
        assert_int_equal(json_integer_value(json_object_get(a, "attempt")), i + 1);
        assert_int_equal(json_integer_value(json_object_get(a, "http_status")), codes[i]);
        assert_string_equal(json_string_value(json_object_get(a, "outcome")), outcomes[i]);
    }
    assert_non_null(
        strstr(json_string_value(json_object_get(json_array_get(log, 0), "error")), "HTTP 500"));
    h_resp_free(&r);
    /* spacing as recorded: the start of each attempt >= the previous + backoff */
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM webhook_attempts a JOIN webhook_attempts b"
                                " ON b.delivery_id = a.delivery_id AND b.attempt = a.attempt + 1"
                                " JOIN webhook_deliveries d ON d.id = a.delivery_id"
                                " WHERE d.webhook_id = $1 AND b.started_at - a.started_at >="
                                " make_interval(secs => 0.2 * 2 ^ (a.attempt - 1))",
                                id),
                     2);

    /* switched-off webhooks got nothing, not even a queued delivery */
    wait_quiet(30000);
    assert_int_equal(received_for(ok_id, NULL, 0), ok_before);
    assert_int_equal(received_for(NULL, NULL, 0) - all_before, 3);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM webhook_deliveries d JOIN webhooks w ON"
                                     " w.id = d.webhook_id WHERE NOT w.active AND d.created_at >"
                                     " w.updated_at"),
                     0);
}

static void past_horizon_dead_letter_then_redrive(void **state)
{
    char id[64], c[64];
    pthread_mutex_lock(&rx.mu);
    rx.fail_always = 1;
    pthread_mutex_unlock(&rx.mu);
    register_webhook("/fail", "[\"aml.alert.created\"]", SECRET, id, NULL);
    fx_customer(env, "Webhook Carol", c);
    fx_large_cash(env, c, "wh-3");
    assert_int_equal(fx_wait_count(env, 1, 30000,
                                   "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = $1"
                                   " AND status = 'dead'",
                                   id),
                     1);
    /* retried until the horizon (2 s), then given up */
    long long attempts =
        h_db_count(env, "SELECT attempts FROM webhook_deliveries WHERE webhook_id = $1", id);
    assert_true(attempts >= 3);
    assert_int_equal(received_for(id, NULL, 0), attempts);
    assert_true(h_db_count(env,
                           "SELECT (extract(epoch FROM max(a.started_at) - d.created_at) * 1000)"
                           "::bigint FROM webhook_attempts a JOIN webhook_deliveries d ON"
                           " d.id = a.delivery_id WHERE d.webhook_id = $1 GROUP BY d.created_at",
                           id) >= HORIZON_S * 1000);
    char *event =
        h_db_text(env, "SELECT event_id::text FROM webhook_deliveries WHERE webhook_id = $1", id);
    assert_non_null(event);

    /* the dead letter, visible where operators look */
    h_resp r = {0};
    assert_int_equal(h_get(env, env->admin_key, &r, "/dead-letters?consumer=webhooks"), 0);
    assert_int_equal(r.status, 200);
    json_t *items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 1);
    json_t *dl = json_array_get(items, 0);
    assert_string_equal(json_string_value(json_object_get(dl, "event_id")), event);
    assert_string_equal(json_string_value(json_object_get(dl, "status")), "dead");
    const char *why = json_string_value(json_object_get(dl, "last_error"));
    assert_non_null(strstr(why, id));
    assert_non_null(strstr(why, "HTTP 500"));
    char dl_id[64];
    snprintf(dl_id, sizeof dl_id, "%s", json_string_value(json_object_get(dl, "id")));
    h_resp_free(&r);
    assert_int_equal(h_get(env, env->admin_key, &r, "/metrics"), 0);
    assert_non_null(strstr(r.body, "\nvigil_webhook_deliveries_dead 1\n"));
    assert_non_null(strstr(r.body, "vigil_dead_letters{consumer=\"webhooks\"} 1\n"));
    h_resp_free(&r);

    /* the receiver is fixed; a redrive sends it again, with a fresh horizon */
    pthread_mutex_lock(&rx.mu);
    rx.fail_always = 0;
    pthread_mutex_unlock(&rx.mu);
    assert_int_equal(h_post(env, env->admin_key, "{}", &r, "/dead-letters/%s/redrive", dl_id), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "redriven");
    h_resp_free(&r);
    assert_int_equal(fx_wait_count(env, 1, 30000,
                                   "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = $1"
                                   " AND status = 'delivered'",
                                   id),
                     1);
    assert_int_equal(received_for(id, NULL, 0), attempts + 1);
    assert_int_equal(
        h_db_count(env, "SELECT attempts FROM webhook_deliveries WHERE webhook_id = $1", id),
        attempts + 1);
    /* redriving twice is refused: nothing is sent a third time */
    assert_int_equal(h_post(env, env->admin_key, "{}", &r, "/dead-letters/%s/redrive", dl_id), 0);
    assert_int_equal(r.status, 409);
    h_resp_free(&r);
    free(event);
    set_active(id, 0);
}

/* This process's counter `name`{consumer="webhooks"} from /metrics (it
 * must be there). */
static long long webhooks_metric(const char *name)
{
    char labelled[128];
    snprintf(labelled, sizeof labelled, "%s{consumer=\"webhooks\"}", name);
    double v;
    assert_int_equal(h_metric(env, env->admin_key, labelled, &v), 0);
    assert_true(v >= 0);
    return (long long)v;
}

static void redelivered_stream_enqueues_nothing_twice(void **state)
{
    wait_quiet(30000);
    long long deliveries = h_db_count(env, "SELECT count(*) FROM webhook_deliveries");
    long long processed =
        h_db_count(env, "SELECT count(*) FROM processed_events WHERE consumer = 'webhooks'");
    int posts = received_for(NULL, NULL, 0);
    assert_true(deliveries > 0);
    /* every webhook on again, so a second enqueue would have somewhere to go */
    assert_int_equal(h_db_exec(env, "UPDATE webhooks SET active = true"), 0);

    /* Delete the durable consumer: restarted, vigil recreates it with
     * DeliverAll and JetStream hands it every event again. */
    h_vigil_stop(env, SIGTERM);
    natsConnection *nc = h_nats_connect(env);
    assert_non_null(nc);
    jsCtx *js = NULL;
    assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    assert_int_equal(js_DeleteConsumer(js, "AML_EVENTS", "vigil-webhooks", NULL, NULL), NATS_OK);
    assert_int_equal(h_vigil_start(env, webhook_env), 0);
    /* wait until the new durable has been through the whole stream */
    int drained = 0;
    for (long long t0 = h_now_ms(); !drained && h_now_ms() - t0 < 30000; h_sleep_ms(100)) {
        jsConsumerInfo *ci = NULL;
        if (js_GetConsumerInfo(&ci, js, "AML_EVENTS", "vigil-webhooks", NULL, NULL) == NATS_OK) {
            drained = ci->NumPending == 0 && ci->NumAckPending == 0 && ci->Delivered.Stream > 0;
            jsConsumerInfo_Destroy(ci);
        }
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    assert_true(drained);
    h_sleep_ms(1000); /* a wrongly enqueued delivery would be sent within this */

    assert_true(webhooks_metric("vigil_consumer_duplicates_total") ==
                processed); /* every one seen again */
    assert_int_equal(
        h_db_count(env, "SELECT count(*) FROM processed_events WHERE consumer = 'webhooks'"),
        processed);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM webhook_deliveries"), deliveries);
    assert_int_equal(received_for(NULL, NULL, 0), posts);
    assert_int_equal(h_db_exec(env, "UPDATE webhooks SET active = false"), 0);
}

static const char *const batch_env[] = {"VIGIL_WEBHOOK_BACKOFF_MS=200",
                                        "VIGIL_CONSUMER_MAX_DELIVER=2",
                                        "VIGIL_CONSUMER_BACKOFF_MS=200", NULL};

/* Makes a backlog for the consumers: with them off, 50 transactions
 * `prefix`0..49 of `customer` are ingested and published; then vigil
 * restarts with them on (batch_env). */
static void backlog(const char *prefix, const char *customer)
{
    static const char *const no_consumers[] = {"VIGIL_ROLES=api,sequencer,publisher", NULL};
    h_vigil_stop(env, SIGTERM);
    assert_int_equal(h_vigil_start(env, no_consumers), 0);
    char body[16384];
    int n = snprintf(body, sizeof body, "{\"transactions\": [");
    for (int i = 0; i < 50; i++)
        n += snprintf(body + n, sizeof body - (size_t)n,
                      "%s{\"external_id\": \"%s%d\", \"customer_id\": \"%s\","
                      " \"amount\": \"10.00\", \"currency\": \"USD\", \"direction\": \"in\","
                      " \"channel\": \"wire\", \"occurred_at\": \"2026-11-2%dT10:%02d:00Z\"}",
                      i ? ", " : "", prefix, i, customer, i % 10, i);
    snprintf(body + n, sizeof body - (size_t)n, "]}");
    h_resp r = {0};
    assert_int_equal(h_post(env, env->admin_key, body, &r, "/transactions"), 0);
    assert_int_equal(r.status, 201);
    h_resp_free(&r);
    /* all of it in the stream before a consumer runs */
    assert_int_equal(fx_wait_count(env, 0, 30000,
                                   "SELECT (SELECT count(*) FROM outbox) + (SELECT max(seq) FROM"
                                   " event_log) - (SELECT seq FROM cursors WHERE name ="
                                   " 'publisher')",
                                   NULL),
                     0);
    h_vigil_stop(env, SIGTERM);
    assert_int_equal(h_vigil_start(env, batch_env), 0);
}

/* Deliveries to webhook `wh` of transactions whose external id is like `like`. */
#define DELIVERED_LIKE                                                                             \
    "SELECT count(*) FROM webhook_deliveries d JOIN event_log e USING (event_id)"                  \
    " WHERE d.webhook_id = $1 AND e.payload->'data'->>'external_id' LIKE '%s'"

/* The webhooks consumer applies what has arrived as one batch (one
 * statement, one commit): a backlog of 50 events takes fewer transactions
 * than events, and each event is enqueued once. Then one event of a second
 * backlog cannot be enqueued (a trigger refuses it): the batch that holds
 * it fails, is applied again one event at a time, and only that event is
 * retried and dead-lettered; every other one is enqueued exactly once. */
static void backlog_applied_in_batches_a_bad_event_fails_alone(void **state)
{
    char wh[64], cust[64], sql[512];
    register_webhook("/batch", NULL, NULL, wh, NULL);
    fx_customer(env, "Batch Customer", cust);
    wait_quiet(30000);

    backlog("wh-clean-", cust);
    snprintf(sql, sizeof sql, DELIVERED_LIKE, "wh-clean-%");
    assert_int_equal(fx_wait_count(env, 50, 30000, sql, wh), 50);
    long long processed = webhooks_metric("vigil_consumer_processed_total");
    long long batches = webhooks_metric("vigil_consumer_batches_total");
    assert_true(processed >= 50);
    assert_true(batches >= 1);
    assert_true(batches < processed);

    assert_int_equal(h_db_exec(env,
                               "CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql"
                               " AS $$ BEGIN IF EXISTS (SELECT 1 FROM event_log e WHERE"
                               " e.event_id = NEW.event_id AND e.payload->'data'->>'external_id'"
                               " = 'wh-bad-25') THEN RAISE EXCEPTION 'refused: wh-bad-25';"
                               " END IF; RETURN NEW; END $$;"
                               " CREATE TRIGGER test_refuse BEFORE INSERT ON webhook_deliveries"
                               " FOR EACH ROW EXECUTE FUNCTION test_refuse();"),
                     0);
    backlog("wh-bad-", cust);
    assert_int_equal(fx_wait_count(env, 1, 30000,
                                   "SELECT count(*) FROM dead_letters WHERE consumer = 'webhooks'"
                                   " AND last_error LIKE '%refused: wh-bad-25%'",
                                   NULL),
                     1);
    assert_int_equal(h_db_count(env, "SELECT deliveries FROM dead_letters WHERE consumer ="
                                     " 'webhooks' AND last_error LIKE '%wh-bad-25%'"),
                     2);
    snprintf(sql, sizeof sql, DELIVERED_LIKE, "wh-bad-%");
    assert_int_equal(fx_wait_count(env, 49, 30000, sql, wh), 49);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM processed_events p JOIN event_log e"
                                     " USING (event_id) WHERE p.consumer = 'webhooks' AND"
                                     " e.payload->'data'->>'external_id' = 'wh-bad-25'"),
                     0);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) - count(DISTINCT event_id) FROM"
                                " webhook_deliveries WHERE webhook_id = $1",
                                wh),
                     0);
    assert_int_equal(h_db_exec(env, "DROP TRIGGER test_refuse ON webhook_deliveries"), 0);
    set_active(wh, 0);
    h_vigil_stop(env, SIGTERM);
    assert_int_equal(h_vigil_start(env, webhook_env), 0);
}

/* vigil_consume_webhooks_many itself, set-based since 0022: an id repeated
 * within a batch is applied once, at its first position; an event the
 * consumer already processed is not applied again; every applied event gets
 * one delivery per active webhook subscribed to it; an event missing from
 * event_log fails the whole batch and leaves nothing behind. Run as its own
 * consumer name, so vigil's webhooks consumer is not involved. */
static void batch_function_applies_each_event_once_and_refuses_unknown_ones(void **state)
{
    char id[64];
    register_webhook("/setbased", "[\"aml.customer.\"]", NULL, id, NULL);
    const char *pick = "SELECT event_id::text FROM event_log WHERE event_type = $1 ORDER BY seq"
                       " LIMIT 1 OFFSET $2";
    char *cust = h_db_text(env, pick, "aml.customer.created", "0");
    char *cust2 = h_db_text(env, pick, "aml.customer.created", "1");
    char *tx = h_db_text(env, pick, "aml.transaction.ingested", "0");
    assert_non_null(cust);
    assert_non_null(cust2);
    assert_non_null(tx);
    assert_int_equal(
        h_db_exec(env,
                  "INSERT INTO processed_events (consumer, event_id, seq)"
                  " SELECT 'sqltest', event_id, seq FROM event_log WHERE event_id = $1",
                  cust2),
        0);
    const char *call = "SELECT vigil_consume_webhooks_many('sqltest', b.ids, b.seqs, b.types)::text"
                       " FROM (SELECT array_agg(l.event_id ORDER BY x.o) AS ids,"
                       " array_agg(l.seq ORDER BY x.o) AS seqs,"
                       " array_agg(l.event_type ORDER BY x.o) AS types"
                       " FROM unnest($1::uuid[]) WITH ORDINALITY x(id, o)"
                       " JOIN event_log l ON l.event_id = x.id) b";
    char ids[200];
    snprintf(ids, sizeof ids, "{%s,%s,%s,%s}", tx, cust, cust2, cust);
    char *applied = h_db_text(env, call, ids);
    assert_non_null(applied);
    assert_string_equal(applied, "{t,t,f,f}");
    free(applied);
    /* one delivery, to the new webhook, for the one customer event applied;
     * none for the transaction (not subscribed) or the processed event */
    assert_int_equal(
        h_db_count(env, "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = $1", id), 1);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = $1"
                                " AND event_id = $2",
                                id, cust),
                     1);
    assert_int_equal(
        h_db_count(env, "SELECT count(*) FROM processed_events WHERE consumer = 'sqltest'"), 3);
    /* again: a redelivery of the whole batch applies nothing */
    applied = h_db_text(env, call, ids);
    assert_non_null(applied);
    assert_string_equal(applied, "{f,f,f,f}");
    free(applied);
    /* an event that is not in event_log: the batch fails, nothing is kept */
    assert_int_not_equal(
        h_db_exec(
            env,
            "SELECT vigil_consume_webhooks_many('sqltest', ARRAY[$1, gen_random_uuid()]::uuid[],"
            " ARRAY[1, 2]::bigint[], ARRAY['aml.customer.created', 'aml.customer.created'])",
            cust2),
        0);
    assert_int_equal(
        h_db_count(env, "SELECT count(*) FROM processed_events WHERE consumer = 'sqltest'"), 3);
    assert_int_equal(
        h_db_count(env, "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = $1", id), 1);
    set_active(id, 0);
    free(cust);
    free(cust2);
    free(tx);
}

/* POST /webhooks with `body`: expects 422 naming `field`. */
static void refused(const char *body, const char *field)
{
    h_resp r = {0};
    assert_int_equal(h_post(env, env->admin_key, body, &r, "/webhooks"), 0);
    if (r.status != 422 || !json_is_string(json_object_get(r.json, "field")) ||
        strcmp(json_string_value(json_object_get(r.json, "field")), field) != 0)
        fail_msg("POST /webhooks %.200s: got %ld %s, expected 422 naming %s", body, r.status,
                 r.body, field);
    assert_string_equal(r.content_type, "application/problem+json");
    h_resp_free(&r);
}

static void bad_registrations_refused_naming_the_field(void **state)
{
    long long before = h_db_count(env, "SELECT count(*) FROM webhooks");
    refused("{}", "url");
    refused("[]", "body");
    refused("{\"url\": \"ftp://127.0.0.1/x\"}", "url");
    refused("{\"url\": \"127.0.0.1:9/x\"}", "url");
    refused("{\"url\": \"http://u:p@127.0.0.1/x\"}", "url");
    refused("{\"url\": \"http://127.0.0.1/x\", \"event_types\": \"aml.alert.\"}", "event_types");
    refused("{\"url\": \"http://127.0.0.1/x\", \"event_types\": [\"aml.alert.\", \"alert\"]}",
            "event_types[1]");
    refused("{\"url\": \"http://127.0.0.1/x\", \"secret\": \"too short\"}", "secret");
    refused("{\"url\": \"http://127.0.0.1/x\", \"active\": true}", "active");
    char body[4096];
    int n = snprintf(body, sizeof body, "{\"url\": \"http://127.0.0.1/");
    memset(body + n, 'a', 2100);
    snprintf(body + n + 2100, 8, "\"}");
    refused(body, "url");
    n = snprintf(body, sizeof body, "{\"url\": \"http://127.0.0.1/x\", \"event_types\": [");
    for (int i = 0; i < 33; i++)
        n += snprintf(body + n, sizeof body - (size_t)n, "%s\"aml.t%d\"", i ? "," : "", i);
    snprintf(body + n, sizeof body - (size_t)n, "]}");
    refused(body, "event_types");
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM webhooks"), before);

    h_resp r = {0};
    char *id = h_db_text(env, "SELECT id::text FROM webhooks LIMIT 1");
    assert_non_null(id);
    assert_int_equal(h_patch(env, env->admin_key, "{\"active\": 1}", &r, "/webhooks/%s", id), 0);
    assert_int_equal(r.status, 422);
    assert_string_equal(json_string_value(json_object_get(r.json, "field")), "active");
    h_resp_free(&r);
    assert_int_equal(h_get(env, env->admin_key, &r, "/webhooks/%s/deliveries?status=lost", id), 0);
    assert_int_equal(r.status, 422);
    assert_string_equal(json_string_value(json_object_get(r.json, "field")), "status");
    h_resp_free(&r);
    free(id);
    assert_int_equal(
        h_get(env, env->admin_key, &r, "/webhooks/00000000-0000-4000-8000-000000000000/deliveries"),
        0);
    assert_int_equal(r.status, 404);
    h_resp_free(&r);
    assert_int_equal(h_patch(env, env->admin_key, "{\"active\": false}", &r,
                             "/webhooks/00000000-0000-4000-8000-000000000000"),
                     0);
    assert_int_equal(r.status, 404);
    h_resp_free(&r);
}

static void only_admins_register(void **state)
{
    static const char *const roles[] = {"ingest", "analyst", "auditor"};
    char body[256], key[256], id[64];
    snprintf(body, sizeof body, "{\"url\": \"http://127.0.0.1:%d/ok\"}", rx.port);
    char *wid = h_db_text(env, "SELECT id::text FROM webhooks LIMIT 1");
    assert_non_null(wid);
    snprintf(id, sizeof id, "%s", wid);
    free(wid);
    long long before = h_db_count(env, "SELECT count(*) FROM webhooks");
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
        h_resp r = {0};
        assert_int_equal(h_key_create(env, roles[i], key, sizeof key), 0);
        assert_int_equal(h_post(env, key, body, &r, "/webhooks"), 0);
        assert_int_equal(r.status, 403);
        h_resp_free(&r);
        assert_int_equal(h_get(env, key, &r, "/webhooks"), 0);
        assert_int_equal(r.status, 403);
        h_resp_free(&r);
        /* the delivery record is for oversight: auditors read it */
        assert_int_equal(h_get(env, key, &r, "/webhooks/%s/deliveries", id), 0);
        assert_int_equal(r.status, strcmp(roles[i], "auditor") == 0 ? 200 : 403);
        h_resp_free(&r);
    }
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM webhooks"), before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(signed_delivery_of_matching_events_only),
        cmocka_unit_test(failing_receiver_retried_with_backoff),
        cmocka_unit_test(past_horizon_dead_letter_then_redrive),
        cmocka_unit_test(redelivered_stream_enqueues_nothing_twice),
        cmocka_unit_test(backlog_applied_in_batches_a_bad_event_fails_alone),
        cmocka_unit_test(batch_function_applies_each_event_once_and_refuses_unknown_ones),
        cmocka_unit_test(bad_registrations_refused_naming_the_field),
        cmocka_unit_test(only_admins_register),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
