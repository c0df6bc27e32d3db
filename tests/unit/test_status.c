/*
 * test_status.c — the status registry and the vg_error helpers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "util/status.h"

static void test_http_mapping(void **state)
{
    static const struct {
        vg_status code;
        int http;
        const char *slug;
    } cases[] = {
        {VG_OK, 200, "ok"},
        {VG_E_MALFORMED, 400, "malformed-request"},
        {VG_E_UNAUTHORIZED, 401, "unauthorized"},
        {VG_E_FORBIDDEN, 403, "forbidden"},
        {VG_E_NOT_FOUND, 404, "not-found"},
        {VG_E_METHOD, 405, "method-not-allowed"},
        {VG_E_CONFLICT, 409, "conflict"},
        {VG_E_TOO_LARGE, 413, "payload-too-large"},
        {VG_E_MEDIA_TYPE, 415, "unsupported-media-type"},
        {VG_E_INVALID, 422, "validation-failed"},
        {VG_E_RATE_LIMITED, 429, "too-many-requests"},
        {VG_E_UNAVAILABLE, 503, "service-unavailable"},
        {VG_E_INTERNAL, 500, "internal-error"},
        {VG_E_IO, 500, "io-error"},
        {VG_E_CONFIG, 500, "configuration-error"},
    };
    assert_int_equal(sizeof cases / sizeof cases[0], VG_STATUS__COUNT);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(vg_status_http(cases[i].code), cases[i].http);
        assert_string_equal(vg_status_slug(cases[i].code), cases[i].slug);
    }
}

static void test_registry_is_complete_and_unique(void **state)
{
    for (int a = 0; a < VG_STATUS__COUNT; a++) {
        assert_true(strlen(vg_status_title((vg_status)a)) > 0);
        assert_memory_equal(vg_status_name((vg_status)a), "VG_", 3);
        for (int b = a + 1; b < VG_STATUS__COUNT; b++) {
            assert_string_not_equal(vg_status_slug((vg_status)a), vg_status_slug((vg_status)b));
            assert_string_not_equal(vg_status_name((vg_status)a), vg_status_name((vg_status)b));
        }
    }
    assert_string_equal(vg_status_name(VG_E_INVALID), "VG_E_INVALID");
    assert_string_equal(vg_status_title(VG_E_INVALID), "Validation failed");
}

static void test_out_of_range_codes_are_internal(void **state)
{
    vg_status bad[] = {VG_STATUS__COUNT, (vg_status)-1, (vg_status)1000};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(vg_status_http(bad[i]), 500);
        assert_string_equal(vg_status_slug(bad[i]), "internal-error");
        assert_string_equal(vg_status_title(bad[i]), "Internal error");
        assert_string_equal(vg_status_name(bad[i]), "VG_E_UNKNOWN");
    }
}

static void test_vg_fail_records_where_and_why(void **state)
{
    vg_error err = {0};
    assert_int_equal(vg_fail(&err, VG_E_INVALID, "amount", "has %d too many %s", 2, "digits"),
                     VG_E_INVALID);
    assert_int_equal(err.code, VG_E_INVALID);
    assert_string_equal(err.field, "amount");
    assert_string_equal(err.detail, "has 2 too many digits");

    assert_int_equal(vg_fail(&err, VG_E_NOT_FOUND, NULL, "no such customer"), VG_E_NOT_FOUND);
    assert_string_equal(err.field, "");
    assert_int_equal(err.code, VG_E_NOT_FOUND);

    /* A NULL err only returns the code. */
    assert_int_equal(vg_fail(NULL, VG_E_CONFLICT, "x", "y"), VG_E_CONFLICT);
}

static void test_vg_fail_truncates_safely(void **state)
{
    char long_field[300], long_detail[1000];
    memset(long_field, 'f', sizeof long_field - 1);
    long_field[sizeof long_field - 1] = '\0';
    memset(long_detail, 'd', sizeof long_detail - 1);
    long_detail[sizeof long_detail - 1] = '\0';
    vg_error err = {0};
    vg_fail(&err, VG_E_INVALID, long_field, "%s", long_detail);
    assert_int_equal(strlen(err.field), sizeof err.field - 1);
    assert_int_equal(strlen(err.detail), sizeof err.detail - 1);
}

static void test_item_errors_accumulate_and_clear(void **state)
{
    vg_error err = {0};
    assert_int_equal(vg_fail_item(&err, 0, "amount", "must be greater than zero"), VG_E_INVALID);
    assert_int_equal(vg_fail_item(&err, 7, NULL, NULL), VG_E_INVALID);
    assert_int_equal(err.code, VG_E_INVALID);
    assert_int_equal(json_array_size(err.items), 2);

    json_t *first = json_array_get(err.items, 0);
    assert_int_equal(json_integer_value(json_object_get(first, "index")), 0);
    assert_string_equal(json_string_value(json_object_get(first, "field")), "amount");
    assert_string_equal(json_string_value(json_object_get(first, "detail")),
                        "must be greater than zero");
    json_t *second = json_array_get(err.items, 1);
    assert_int_equal(json_integer_value(json_object_get(second, "index")), 7);
    assert_string_equal(json_string_value(json_object_get(second, "field")), "");
    assert_string_equal(json_string_value(json_object_get(second, "detail")), "");

    vg_error_clear(&err);
    assert_null(err.items);
    assert_int_equal(err.code, VG_OK);
    assert_string_equal(err.field, "");

    assert_int_equal(vg_fail_item(NULL, 1, "x", "y"), VG_E_INVALID);
    vg_error_clear(&err); /* zeroed: fine */
    vg_error_clear(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_mapping),
        cmocka_unit_test(test_registry_is_complete_and_unique),
        cmocka_unit_test(test_out_of_range_codes_are_internal),
        cmocka_unit_test(test_vg_fail_records_where_and_why),
        cmocka_unit_test(test_vg_fail_truncates_safely),
        cmocka_unit_test(test_item_errors_accumulate_and_clear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
