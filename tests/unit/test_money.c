/*
 * test_money.c — money_parse: canonical forms, minor units, every refusal.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "domain/money.h"

typedef struct good_case {
    const char *in;
    int exponent;
    const char *canonical;
    int64_t minor;
} good_case;

static void test_accepts_and_canonicalises(void **state)
{
    static const good_case cases[] = {
        {"1", 2, "1.00", 100},
        {"125.50", 2, "125.50", 12550},
        {"125.5", 2, "125.50", 12550},
        {"007.50", 2, "7.50", 750},
        {"7", 2, "7.00", 700},
        {"7", 0, "7", 7},
        {"0.01", 2, "0.01", 1},
        {"0.5", 2, "0.50", 50},
        {"00.10", 2, "0.10", 10},
        {"00000000000000000000001", 2, "1.00", 100},
        {"1.234", 3, "1.234", 1234},
        {"1.2", 3, "1.200", 1200},
        {"0.001", 3, "0.001", 1},
        {"0.0001", 4, "0.0001", 1},
        {"1.5", 4, "1.5000", 15000},
        {"999999999999", 0, "999999999999", 999999999999LL},
        {"999999999999.99", 2, "999999999999.99", 99999999999999LL},
        {"999999999999.9999", 4, "999999999999.9999", 9999999999999999LL},
        {"0000999999999999.999", 3, "999999999999.999", 999999999999999LL},
        {"1000", 0, "1000", 1000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const good_case *c = &cases[i];
        char out[MONEY_STR_MAX];
        int64_t minor = -1;
        vg_error err = {0};
        if (money_parse(c->in, c->exponent, "amount", out, &minor, &err) != VG_OK)
            fail_msg("\"%s\" (exponent %d) refused: %s", c->in, c->exponent, err.detail);
        assert_string_equal(out, c->canonical);
        assert_true(minor == c->minor);
    }
}

typedef struct bad_case {
    const char *in;
    int exponent;
    const char *detail_part; /* a piece of the expected detail */
} bad_case;

static void test_refuses(void **state)
{
    static char huge[420];
    memset(huge, '9', 400);
    strcpy(huge + 400, ".99");
    static char huge_zeros[420]; /* 400 leading zeros are fine, the value is not */
    memset(huge_zeros, '0', 400);
    strcpy(huge_zeros + 400, "1000000000000");

    const bad_case cases[] = {
        {"", 2, "decimal string"},
        {".5", 2, "decimal string"},
        {"1.", 2, "decimal string"},
        {"1.", 0, "decimal string"},
        {"+1", 2, "decimal string"},
        {"-1", 2, "decimal string"},
        {"1e3", 2, "decimal string"},
        {"1E3", 0, "decimal string"},
        {" 1", 2, "decimal string"},
        {"1 ", 2, "decimal string"},
        {"1,000", 2, "decimal string"},
        {"1.2.3", 2, "decimal string"},
        {"1..2", 2, "decimal string"},
        {"abc", 2, "decimal string"},
        {"0x10", 2, "decimal string"},
        {"NaN", 2, "decimal string"},
        {"Infinity", 2, "decimal string"},
        {"\xef\xbc\x91", 2, "decimal string"}, /* FULLWIDTH DIGIT ONE */
        {"1\n", 2, "decimal string"},
        {"0", 2, "greater than zero"},
        {"0", 0, "greater than zero"},
        {"0.00", 2, "greater than zero"},
        {"000", 2, "greater than zero"},
        {"0.0", 3, "greater than zero"},
        {"1.001", 2, "more than 2 decimal places"},
        {"1.000", 2, "more than 2 decimal places"},
        {"0.0001", 3, "more than 3 decimal places"},
        {"1.0", 0, "whole number"},
        {"1.00000", 4, "more than 4 decimal places"},
        {"1000000000000", 2, "less than 1000000000000"},
        {"1000000000000", 0, "less than 1000000000000"},
        {"1000000000000.00", 2, "less than 1000000000000"},
        {"9999999999999", 2, "less than 1000000000000"},
        {"99999999999999999999999999", 2, "less than 1000000000000"},
        {huge, 2, "less than 1000000000000"},
        {huge_zeros, 0, "less than 1000000000000"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *c = &cases[i];
        char out[MONEY_STR_MAX] = "untouched";
        int64_t minor = -7;
        vg_error err = {0};
        vg_status st = money_parse(c->in, c->exponent, "amount", out, &minor, &err);
        if (st != VG_E_INVALID)
            fail_msg("\"%.40s\" (exponent %d) accepted as %s", c->in, c->exponent, out);
        assert_int_equal(err.code, VG_E_INVALID);
        assert_string_equal(err.field, "amount");
        if (!strstr(err.detail, c->detail_part))
            fail_msg("\"%.40s\": detail \"%s\" lacks \"%s\"", c->in, err.detail, c->detail_part);
        /* Results are written only on success. */
        assert_string_equal(out, "untouched");
        assert_true(minor == -7);
    }
}

static void test_null_input_and_optional_outputs(void **state)
{
    char out[MONEY_STR_MAX];
    vg_error err = {0};
    assert_int_equal(money_parse(NULL, 2, "x", out, NULL, &err), VG_E_INVALID);
    assert_string_equal(err.field, "x");
    /* `minor` and `err` may be NULL. */
    assert_int_equal(money_parse("3.5", 2, "amount", out, NULL, NULL), VG_OK);
    assert_string_equal(out, "3.50");
    assert_int_equal(money_parse("-3.5", 2, "amount", out, NULL, NULL), VG_E_INVALID);
}

static void test_unsupported_exponent_is_internal(void **state)
{
    char out[MONEY_STR_MAX];
    vg_error err = {0};
    assert_int_equal(money_parse("1", -1, "amount", out, NULL, &err), VG_E_INTERNAL);
    assert_int_equal(money_parse("1", 5, "amount", out, NULL, &err), VG_E_INTERNAL);
    assert_int_equal(money_parse("1", 4, "amount", out, NULL, &err), VG_OK);
}

static void test_largest_amount_fits_canonical_buffer(void **state)
{
    char out[MONEY_STR_MAX];
    int64_t minor = 0;
    assert_int_equal(money_parse("999999999999.9999", 4, "amount", out, &minor, NULL), VG_OK);
    assert_true(strlen(out) < MONEY_STR_MAX);
    /* Exact: no float ever saw the value. */
    assert_true(minor == 9999999999999999LL);
    assert_int_equal(money_parse("0.1", 2, "amount", out, &minor, NULL), VG_OK);
    assert_true(minor == 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts_and_canonicalises),
        cmocka_unit_test(test_refuses),
        cmocka_unit_test(test_null_input_and_optional_outputs),
        cmocka_unit_test(test_unsupported_exponent_is_internal),
        cmocka_unit_test(test_largest_amount_fits_canonical_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
