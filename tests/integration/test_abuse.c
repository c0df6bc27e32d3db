/*
 * test_abuse.c — abuse limits: per-key request rate (429 + Retry-After),
 * a deadline for a request to arrive (slow-loris), and open event streams
 * per key.
 *
 * One `vigil serve` with small limits: 5 requests/s and bursts of 10 per
 * key, 3 s for a request to arrive, 2 streams per key, 1 s heartbeats. Each
 * test uses fresh keys, so their buckets do not interfere.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

static int setup(void **state)
{
    setenv("VIGIL_RATE_LIMIT", "5", 1);
    setenv("VIGIL_RATE_BURST", "10", 1);
    setenv("VIGIL_HTTP_TIMEOUT", "3", 1);
    setenv("VIGIL_SSE_MAX_PER_KEY", "2", 1);
    setenv("VIGIL_SSE_HEARTBEAT", "1", 1);
    h_env *env = h_setup(0);
    *state = env;
    return env ? 0 : -1;
}

static int teardown(void **state)
{
    h_teardown(*state);
    return 0;
}

static long status_of(h_env *env, const char *method, const char *path, const char *key,
                      const char *body, h_resp *keep)
{
    h_resp r;
    long st = h_http(env, method, path, key, body, -1, NULL, &r) == 0 ? r.status : -1;
    if (keep)
        *keep = r;
    else
        h_resp_free(&r);
    return st;
}

/* The value of a counter on /metrics (read with a fresh key), or -1. */
static long long metric(h_env *env, const char *name)
{
    char key[256];
    double v;
    assert_int_equal(h_key_create(env, "auditor", key, sizeof key), 0);
    assert_int_equal(h_metric(env, key, name, &v), 0);
    return (long long)v;
}

static void burst_beyond_the_rate_gets_429_and_recovers(void **state)
{
    h_env *env = *state;
    char key[256], other[256], ingest[256];
    assert_int_equal(h_key_create(env, "analyst", key, sizeof key), 0);
    assert_int_equal(h_key_create(env, "analyst", other, sizeof other), 0);
    assert_int_equal(h_key_create(env, "ingest", ingest, sizeof ingest), 0);

    int ok = 0;
    h_resp r = {0};
    long st = 0;
    for (int i = 0; i < 40; i++) {
        st = status_of(env, "GET", "/customers", key, NULL, &r);
        if (st != 200)
            break;
        ok++;
        h_resp_free(&r);
    }
    /* The bucket holds 10, and refills 5/s while we send. */
    fprintf(stderr, "rate: %d requests served before the first 429\n", ok);
    assert_true(ok >= 10 && ok < 30);
    assert_int_equal(st, 429);
    assert_true(strncmp(r.content_type, "application/problem+json", 24) == 0);
    assert_int_equal(json_integer_value(json_object_get(r.json, "status")), 429);
    int retry = atoi(r.retry_after);
    assert_true(retry >= 1 && retry <= 2);
    h_resp_free(&r);

    /* Health checks have no key and no limit; other keys are not affected;
     * ingest keys have their own (higher) limit. */
    for (int i = 0; i < 15; i++)
        assert_int_equal(status_of(env, "GET", "/healthz", NULL, NULL, NULL), 200);
    assert_int_equal(status_of(env, "GET", "/customers", other, NULL, NULL), 200);
    for (int i = 0; i < 25; i++)
        assert_int_equal(status_of(env, "POST", "/customers", ingest, "{}", NULL), 422);

    /* After Retry-After the key works again. */
    h_sleep_ms(retry * 1000 + 100);
    assert_int_equal(status_of(env, "GET", "/customers", key, NULL, NULL), 200);
    assert_true(metric(env, "vigil_http_rate_limited_total") >= 1);
}

/* A client that sends its request headers a byte at a time (slow-loris) is
 * cut after VIGIL_HTTP_TIMEOUT, while other requests are served meanwhile. */
static void slow_loris_is_dropped(void **state)
{
    h_env *env = *state;
    char key[256];
    assert_int_equal(h_key_create(env, "auditor", key, sizeof key), 0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)env->http_port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    const char *start = "GET /customers HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    assert_true(send(fd, start, strlen(start), MSG_NOSIGNAL) > 0);

    long long t0 = h_now_ms(), closed_at = -1;
    int served = 0;
    char got[512];
    size_t got_len = 0;
    while (h_now_ms() - t0 < 15000 && closed_at < 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 400) > 0) {
            ssize_t n = recv(fd, got + got_len, sizeof got - 1 - got_len, 0);
            if (n <= 0) {
                closed_at = h_now_ms() - t0;
                break;
            }
            got_len += (size_t)n;
        }
        /* One more byte of the never-ending header... */
        if (send(fd, "a", 1, MSG_NOSIGNAL) != 1) {
            closed_at = h_now_ms() - t0;
            break;
        }
        /* ...while everyone else is served. */
        served += status_of(env, "GET", "/healthz", NULL, NULL, NULL) == 200;
        served += status_of(env, "GET", "/customers", key, NULL, NULL) == 200;
    }
    close(fd);
    got[got_len] = '\0';
    fprintf(stderr, "slow-loris: cut after %lld ms; %d requests served meanwhile\n", closed_at,
            served);
    assert_true(closed_at >= 2500 && closed_at <= 7000);
    assert_int_equal(got_len, 0); /* cut, never answered */
    assert_true(served >= 8);
    assert_true(metric(env, "vigil_http_slow_requests_cut_total") >= 1);
}

/* An event stream outlives VIGIL_HTTP_TIMEOUT (its request arrived; a long
 * response is not slow input) and still delivers. */
static void event_stream_outlives_the_request_timeout(void **state)
{
    h_env *env = *state;
    char key[256];
    assert_int_equal(h_key_create(env, "analyst", key, sizeof key), 0);
    long status = 0;
    h_sse *s = h_sse_open(env, key, "/events/stream?type=aml.customer.created", NULL, &status);
    assert_non_null(s);
    h_sleep_ms(4500);
    h_resp r;
    assert_int_equal(
        h_post(env, env->admin_key, "{\"full_name\": \"Stream Survivor\"}", &r, "/customers"), 0);
    assert_int_equal(r.status, 201);
    h_resp_free(&r);
    h_sse_event ev = {0};
    int found = 0;
    for (int i = 0; i < 20 && !found; i++) {
        int got = h_sse_next(s, &ev, 10000);
        assert_int_equal(got, 1);
        const char *name =
            json_string_value(json_object_get(json_object_get(ev.json, "data"), "full_name"));
        found = name && strcmp(name, "Stream Survivor") == 0;
        h_sse_event_free(&ev);
    }
    assert_true(found);
    h_sse_close(s);
}

static void event_streams_per_key_are_limited(void **state)
{
    h_env *env = *state;
    char key[256], other[256];
    assert_int_equal(h_key_create(env, "analyst", key, sizeof key), 0);
    assert_int_equal(h_key_create(env, "analyst", other, sizeof other), 0);
    long status = 0;
    h_sse *a = h_sse_open(env, key, "/events/stream", NULL, &status);
    h_sse *b = h_sse_open(env, key, "/events/stream", NULL, &status);
    assert_non_null(a);
    assert_non_null(b);
    /* The third of one key is refused with 429 + Retry-After... */
    h_resp r;
    assert_int_equal(h_get(env, key, &r, "/events/stream"), 0);
    assert_int_equal(r.status, 429);
    assert_true(strncmp(r.content_type, "application/problem+json", 24) == 0);
    assert_non_null(strstr(json_string_value(json_object_get(r.json, "detail")), "2 open"));
    assert_true(atoi(r.retry_after) >= 1);
    h_resp_free(&r);
    /* ...another key's is not. */
    h_sse *c = h_sse_open(env, other, "/events/stream", NULL, &status);
    assert_non_null(c);
    h_sse_close(c);
    /* A closed stream frees its place (noticed at the next heartbeat). */
    h_sse_close(a);
    h_sse *again = NULL;
    for (long long t0 = h_now_ms(); !again && h_now_ms() - t0 < 10000; h_sleep_ms(250))
        again = h_sse_open(env, key, "/events/stream", NULL, &status);
    assert_non_null(again);
    h_sse_close(again);
    h_sse_close(b);
    assert_true(metric(env, "vigil_sse_refused_per_key_total") >= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(burst_beyond_the_rate_gets_429_and_recovers),
        cmocka_unit_test(slow_loris_is_dropped),
        cmocka_unit_test(event_stream_outlives_the_request_timeout),
        cmocka_unit_test(event_streams_per_key_are_limited),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
