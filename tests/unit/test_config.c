/*
 * test_config.c — configuration from the environment: defaults, overrides,
 * and refusals that name the variable.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/config.h"

static void clear_env(void)
{
    unsetenv("VIGIL_HTTP_ADDR");
    unsetenv("VIGIL_MAX_BATCH");
    unsetenv("VIGIL_RISK_MEDIUM");
    unsetenv("VIGIL_RISK_HIGH");
    unsetenv("VIGIL_HTTP_THREADS");
}

static void defaults(void **state)
{
    clear_env();
    vg_config cfg;
    vg_error err = {0};
    assert_int_equal(config_load(&cfg, &err), VG_OK);
    assert_string_equal(cfg.http_addr, "127.0.0.1:8000");
    assert_string_equal(cfg.stream, "AML_EVENTS");
    assert_int_equal(cfg.max_batch, 10000);
    assert_int_equal(cfg.risk_medium, 30);
    assert_int_equal(cfg.risk_high, 60);
}

static void overrides(void **state)
{
    clear_env();
    setenv("VIGIL_HTTP_ADDR", "0.0.0.0:9000", 1);
    setenv("VIGIL_MAX_BATCH", "500", 1);
    vg_config cfg;
    vg_error err = {0};
    assert_int_equal(config_load(&cfg, &err), VG_OK);
    assert_string_equal(cfg.http_addr, "0.0.0.0:9000");
    assert_int_equal(cfg.max_batch, 500);
    clear_env();
}

static void refuses_bad_integers(void **state)
{
    static const char *bad[] = {"abc", "12x", "", "-1", "0", "100001", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        clear_env();
        setenv("VIGIL_MAX_BATCH", bad[i], 1);
        vg_config cfg;
        vg_error err = {0};
        vg_status st = config_load(&cfg, &err);
        if (bad[i][0] == '\0') { /* empty means "use the default" */
            assert_int_equal(st, VG_OK);
            continue;
        }
        assert_int_equal(st, VG_E_CONFIG);
        assert_string_equal(err.field, "VIGIL_MAX_BATCH");
        assert_non_null(strstr(err.detail, "VIGIL_MAX_BATCH"));
    }
    clear_env();
}

static void refuses_inverted_thresholds(void **state)
{
    clear_env();
    setenv("VIGIL_RISK_MEDIUM", "70", 1);
    setenv("VIGIL_RISK_HIGH", "60", 1);
    vg_config cfg;
    vg_error err = {0};
    assert_int_equal(config_load(&cfg, &err), VG_E_CONFIG);
    assert_string_equal(err.field, "VIGIL_RISK_MEDIUM");
    clear_env();
}

/* NATS authentication: one method, each with its pair, files readable. */
static void refuses_incomplete_nats_auth(void **state)
{
    static const struct {
        const char *set[4]; /* K=V, NULL-terminated */
        const char *field;
    } cases[] = {
        {{"VIGIL_NATS_USER=vigil", NULL}, "VIGIL_NATS_PASSWORD_FILE"},
        {{"VIGIL_NATS_NKEY=UABC", NULL}, "VIGIL_NATS_NKEY_SEED"},
        {{"VIGIL_NATS_TLS_CERT=/proc/version", NULL}, "VIGIL_NATS_TLS_KEY"},
        {{"VIGIL_NATS_USER=vigil", "VIGIL_NATS_PASSWORD_FILE=/proc/version",
          "VIGIL_NATS_TOKEN_FILE=/proc/version", NULL},
         "VIGIL_NATS_USER"},
        {{"VIGIL_NATS_TOKEN_FILE=/nonexistent/token", NULL}, "VIGIL_NATS_TOKEN_FILE"},
        {{"VIGIL_NATS_TLS_CA=/nonexistent/ca.crt", NULL}, "VIGIL_NATS_TLS_CA"},
    };
    static const char *const vars[] = {"VIGIL_NATS_USER",       "VIGIL_NATS_PASSWORD_FILE",
                                       "VIGIL_NATS_TOKEN_FILE", "VIGIL_NATS_NKEY",
                                       "VIGIL_NATS_TLS_CERT",   "VIGIL_NATS_TLS_CA"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        clear_env();
        for (size_t v = 0; v < sizeof vars / sizeof vars[0]; v++)
            unsetenv(vars[v]);
        for (size_t k = 0; cases[i].set[k]; k++)
            putenv((char *)cases[i].set[k]);
        vg_config cfg;
        vg_error err = {0};
        assert_int_equal(config_load(&cfg, &err), VG_E_CONFIG);
        assert_string_equal(err.field, cases[i].field);
    }
    for (size_t v = 0; v < sizeof vars / sizeof vars[0]; v++)
        unsetenv(vars[v]);
    /* A complete, readable setting loads. */
    setenv("VIGIL_NATS_TOKEN_FILE", "/proc/version", 1);
    vg_config cfg;
    vg_error err = {0};
    assert_int_equal(config_load(&cfg, &err), VG_OK);
    assert_string_equal(cfg.nats_token_file, "/proc/version");
    unsetenv("VIGIL_NATS_TOKEN_FILE");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(overrides),
        cmocka_unit_test(refuses_bad_integers),
        cmocka_unit_test(refuses_inverted_thresholds),
        cmocka_unit_test(refuses_incomplete_nats_auth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
