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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(overrides),
        cmocka_unit_test(refuses_bad_integers),
        cmocka_unit_test(refuses_inverted_thresholds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
