/*
 * test_harness.c — the harness tests itself: real PostgreSQL and nats-server
 * start, survive crash restarts on the same ports with their data, and leave
 * nothing behind; then the whole h_setup path against the real vigil binary.
 */
#include "harness.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

static int dir_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void pg_survives_crash_restart(void **state)
{
    h_env *env = h_env_new();
    assert_non_null(env);
    assert_true(dir_exists(env->dir));
    assert_int_not_equal(env->pg_port, env->http_port);
    /* Immediate shutdown discards asynchronously committed WAL; this test
     * checks durability, so it commits synchronously. */
    assert_int_equal(h_pg_set(env, "synchronous_commit=on"), 0);
    assert_int_equal(h_pg_start(env), 0);
    assert_true(env->pg_pid > 0);
    char expect_url[128];
    snprintf(expect_url, sizeof expect_url, "postgresql://postgres@127.0.0.1:%d/vigil",
             env->pg_port);
    assert_string_equal(env->db_url, expect_url);

    assert_int_equal(h_db_count(env, "SELECT 1"), 1);
    assert_int_equal(h_db_count(env, "SELECT $1::int + $2::int", "40", "2"), 42);
    char *db = h_db_text(env, "SELECT current_database()");
    assert_non_null(db);
    assert_string_equal(db, "vigil");
    free(db);
    char *sc = h_db_text(env, "SHOW fsync");
    assert_non_null(sc);
    assert_string_equal(sc, "off");
    free(sc);
    assert_int_equal(h_db_exec(env, "CREATE TABLE t (v text); INSERT INTO t VALUES ('a')"), 0);
    assert_int_equal(h_db_exec(env, "INSERT INTO t VALUES ($1)", "b"), 0);
    assert_int_equal(h_db_exec(env, "SELECT no_such_column FROM t"), -1);

    int port = env->pg_port;
    pid_t old = env->pg_pid;
    assert_int_equal(h_pg_restart(env, "immediate"), 0);
    assert_int_equal(env->pg_port, port);
    assert_true(env->pg_pid > 0 && env->pg_pid != old);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM t"), 2);

    /* SIGKILL to the postmaster and its backends at once, like a power cut. */
    PGconn *other = h_db_connect(env);
    assert_non_null(other);
    assert_int_equal(h_pg_restart(env, "kill"), 0);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM t WHERE v = $1", "b"), 1);
    PQfinish(other);

    assert_int_equal(h_pg_stop(env, "fast"), 0);
    assert_int_equal(env->pg_pid, 0);
    assert_int_equal(h_db_count(env, "SELECT 1"), -1); /* down: an error, not a hang */
    assert_int_equal(h_pg_start(env), 0);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM t"), 2);

    char dir[H_PATH_SIZE];
    snprintf(dir, sizeof dir, "%s", env->dir);
    pid_t pg = env->pg_pid;
    h_teardown(env);
    assert_false(dir_exists(dir));
    assert_int_equal(kill(pg, 0), -1);
}

static void nats_restarts_on_same_port_and_store(void **state)
{
    h_env *env = h_env_new();
    assert_non_null(env);
    assert_int_equal(h_nats_start(env), 0);
    assert_true(env->nats_port > 0 && env->nats_pid > 0);
    assert_int_equal(h_wait_port(env->nats_port, 0), 0);
    /* The port answers a connection from anyone, but only nats-server owns
     * it: the check that tells a test's own server from another test's. */
    assert_int_equal(h_wait_listener(env->nats_pid, env->nats_port, 0), 0);
    assert_int_equal(h_wait_listener(getpid(), env->nats_port, 50), -1);
    assert_int_equal(h_wait_listener(env->nats_pid, h_free_port(), 50), -1);

    /* A stream with one message, to prove the store dir survives restarts. */
    natsConnection *nc = h_nats_connect(env);
    assert_non_null(nc);
    jsCtx *js = NULL;
    assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = "HARNESS";
    const char *subjects[] = {"harness.>"};
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    assert_int_equal(js_AddStream(NULL, js, &cfg, NULL, NULL), NATS_OK);
    jsPubAck *ack = NULL;
    assert_int_equal(js_Publish(&ack, js, "harness.one", "x", 1, NULL, NULL), NATS_OK);
    jsPubAck_Destroy(ack);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    assert_int_equal(h_js_stream_msgs(env, "HARNESS"), 1);

    int port = env->nats_port;
    pid_t old = env->nats_pid;
    assert_int_equal(h_nats_restart(env, SIGTERM), 0);
    assert_int_equal(h_js_stream_msgs(env, "HARNESS"), 1);

    old = env->nats_pid;
    assert_int_equal(h_nats_restart(env, SIGKILL), 0);
    assert_int_equal(env->nats_port, port);
    assert_true(env->nats_pid > 0 && env->nats_pid != old);
    assert_int_equal(h_wait_port(env->nats_port, 5000), 0);
    assert_true(h_js_stream_msgs(env, "HARNESS") >= 0); /* the stream itself survived */

    assert_int_equal(h_nats_stop(env, SIGTERM), 0);
    assert_int_equal(h_wait_port(port, 0), -1);

    char dir[H_PATH_SIZE];
    snprintf(dir, sizeof dir, "%s", env->dir);
    h_teardown(env);
    assert_false(dir_exists(dir));
}

static void utilities(void **state)
{
    int a = h_free_port(), b = h_free_port();
    assert_true(a > 0 && b > 0 && a != b);
    assert_int_equal(h_wait_port(a, 50), -1);

    h_env *env = h_env_new();
    assert_non_null(env);
    h_resp r;
    /* Nothing listens on http_port yet: a transport error, and r is usable. */
    assert_int_equal(h_get(env, NULL, &r, "/healthz"), -1);
    assert_null(r.body);
    h_resp_free(&r);
    h_resp_free(NULL);
    h_teardown(env);
    h_teardown(NULL);
}

/* The full path through the real binary; skipped until `vigil serve` works. */
static void setup_serves_vigil(void **state)
{
    if (access(VIGIL_BIN, X_OK) != 0) {
        fprintf(stderr, "skipping: %s is not built\n", VIGIL_BIN);
        skip();
    }
    h_env *env = h_setup(0);
    assert_non_null(env);
    assert_true(env->vigil_pid > 0);
    assert_true(strlen(env->admin_key) > 0);

    h_resp r;
    assert_int_equal(h_get(env, NULL, &r, "/healthz"), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);

    assert_int_equal(h_get(env, NULL, &r, "/customers"), 0);
    assert_int_equal(r.status, 401);
    h_resp_free(&r);
    assert_int_equal(h_get(env, env->admin_key, &r, "/customers"), 0);
    assert_int_not_equal(r.status, 401);
    assert_int_not_equal(r.status, 403);
    h_resp_free(&r);

    /* One-shot commands: stdout captured, exit code returned. */
    char *out = NULL;
    assert_int_equal(h_vigil_run(env, &out, "--help", NULL), 0);
    assert_non_null(strstr(out, "VIGIL_DATABASE_URL"));
    free(out);
    assert_int_not_equal(h_vigil_run(env, NULL, "no-such-command", NULL), 0);

    /* A second instance on its own port: extra env overrides the harness's. */
    int port2 = h_free_port();
    char addr[64], url[96];
    snprintf(addr, sizeof addr, "VIGIL_HTTP_ADDR=127.0.0.1:%d", port2);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", port2);
    const char *extra[] = {addr, NULL};
    const char *serve[] = {"serve", NULL};
    pid_t second = h_vigil_spawn(env, extra, serve, NULL, 0);
    assert_true(second > 0);
    assert_int_equal(h_wait_listener(second, port2, 15000), 0);
    assert_int_equal(h_http(env, "GET", url, NULL, NULL, -1, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    assert_int_equal(h_proc_stop(second, SIGTERM, 15000), 0);

    assert_int_equal(h_vigil_stop(env, SIGTERM), 0);
    assert_int_equal(h_vigil_start(env, NULL), 0);
    assert_int_equal(h_get(env, env->admin_key, &r, "/healthz"), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);

    char dir[H_PATH_SIZE];
    snprintf(dir, sizeof dir, "%s", env->dir);
    int failed = env->failed;
    h_teardown(env);
    assert_false(dir_exists(dir));
    assert_int_equal(failed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(utilities),
        cmocka_unit_test(pg_survives_crash_restart),
        cmocka_unit_test(nats_restarts_on_same_port_and_store),
        cmocka_unit_test(setup_serves_vigil),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
