/*
 * test_timeparse.c — RFC 3339 timestamps, calendar dates, day numbers.
 *
 * Expected epoch values were computed independently (Python's datetime).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "domain/timeparse.h"

static void test_rfc3339_accepts(void **state)
{
    static const struct {
        const char *in;
        int64_t us;
    } cases[] = {
        {"1970-01-01T00:00:00Z", 0},
        {"1970-01-01T00:00:00.000001Z", 1},
        {"1970-01-01T00:00:00.0000009Z", 0}, /* truncated, not rounded */
        {"1970-01-01T01:00:00+01:00", 0},
        {"1969-12-31T19:00:00-05:00", 0},
        {"1970-01-01T00:00:00-00:00", 0},
        {"1969-12-31T23:59:59Z", -1000000},
        {"1969-12-31T23:59:59.5Z", -500000},
        {"2000-02-29T12:00:00Z", 951825600000000LL},
        {"2024-02-29T23:59:59.999999999Z", 1709251199999999LL},
        {"2026-03-01T12:30:00.123456789-05:30", 1772388000123456LL},
        {"2026-03-01T12:30:00.123456-05:30", 1772388000123456LL},
        {"2026-03-01T12:30:00.1234560-05:30", 1772388000123456LL},
        {"1900-01-01T00:00:00Z", -2208988800000000LL},
        {"9999-12-31T23:59:59.999999Z", 253402300799999999LL},
        {"2026-01-01T00:00:00+23:59", 1767139260000000LL},
        {"2026-01-01T00:00:00-23:59", 1767311940000000LL},
        {"2038-01-19T03:14:08Z", 2147483648000000LL},
        {"2026-11-15T12:00:00.1Z", 1794744000100000LL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t us = 42;
        vg_error err = {0};
        if (rfc3339_parse(cases[i].in, "occurred_at", &us, &err) != VG_OK)
            fail_msg("%s refused: %s", cases[i].in, err.detail);
        if (us != cases[i].us)
            fail_msg("%s: %lld, expected %lld", cases[i].in, (long long)us, (long long)cases[i].us);
    }
}

static void test_rfc3339_refuses(void **state)
{
    static const struct {
        const char *in;
        const char *detail_part;
    } cases[] = {
        {"", "RFC 3339"},
        {"2026-03-01", "RFC 3339"},
        {"2026-03-01T12:00:00", "RFC 3339"},    /* offset is mandatory */
        {"2026-03-01t12:00:00Z", "RFC 3339"},   /* lower-case separator */
        {"2026-03-01 12:00:00Z", "RFC 3339"},   /* space separator */
        {"2026-03-01T12:00:00z", "RFC 3339"},   /* lower-case zone */
        {"2026-03-01T12:00Z", "RFC 3339"},      /* seconds are mandatory */
        {"2026-3-01T12:00:00Z", "RFC 3339"},    /* fixed width */
        {"2026-03-1T12:00:00Z", "RFC 3339"},    /* fixed width */
        {"2026-03-01T2:00:00Z", "RFC 3339"},    /* fixed width */
        {"20260301T120000Z", "RFC 3339"},       /* basic format */
        {"2026-03-01T12:00:00,5Z", "RFC 3339"}, /* comma fraction */
        {"2026-03-01T12:00:00+0100", "RFC 3339"},
        {"2026-03-01T12:00:00+01", "RFC 3339"},
        {"2026-03-01T12:00:00+01:00:00", "RFC 3339"},
        {"2026-03-01T12:00:00Z ", "RFC 3339"},
        {" 2026-03-01T12:00:00Z", "RFC 3339"},
        {"2026-03-01T12:00:00ZZ", "RFC 3339"},
        {"2026-03-01T12:00:00UTC", "RFC 3339"},
        {"+2026-03-01T12:00:00Z", "RFC 3339"},
        {"2026-03-01T12:00:00.Z", "fractional"},
        {"2026-03-01T12:00:00.1234567890Z", "fractional"}, /* 10 digits */
        {"2026-03-01T24:00:00Z", "time of day"},
        {"2026-03-01T12:60:00Z", "time of day"},
        {"2026-03-01T23:59:60Z", "time of day"}, /* leap second */
        {"2026-03-01T12:00:00+24:00", "offset"},
        {"2026-03-01T12:00:00+12:60", "offset"},
        {"2026-02-29T00:00:00Z", "calendar date"},
        {"2026-13-01T00:00:00Z", "calendar date"},
        {"2026-00-10T00:00:00Z", "calendar date"},
        {"2026-04-31T00:00:00Z", "calendar date"},
        {"2026-01-00T00:00:00Z", "calendar date"},
        {"1900-02-29T00:00:00Z", "calendar date"},
        {"1899-12-31T23:59:59Z", "year"},
        {"0000-01-01T00:00:00Z", "year"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t us = 42;
        vg_error err = {0};
        if (rfc3339_parse(cases[i].in, "occurred_at", &us, &err) != VG_E_INVALID)
            fail_msg("\"%s\" accepted", cases[i].in);
        assert_string_equal(err.field, "occurred_at");
        if (!strstr(err.detail, cases[i].detail_part))
            fail_msg("\"%s\": detail \"%s\" lacks \"%s\"", cases[i].in, err.detail,
                     cases[i].detail_part);
        assert_true(us == 42);
    }
    vg_error err = {0};
    int64_t us;
    assert_int_equal(rfc3339_parse(NULL, "t", &us, &err), VG_E_INVALID);
    assert_string_equal(err.field, "t");
}

static void test_rfc3339_format(void **state)
{
    static const struct {
        int64_t us;
        const char *out;
    } cases[] = {
        {0, "1970-01-01T00:00:00.000000Z"},
        {1, "1970-01-01T00:00:00.000001Z"},
        {-1, "1969-12-31T23:59:59.999999Z"},
        {-500000, "1969-12-31T23:59:59.500000Z"},
        {951825600123456LL, "2000-02-29T12:00:00.123456Z"},
        {-2208988800000000LL, "1900-01-01T00:00:00.000000Z"},
        {253402300799999999LL, "9999-12-31T23:59:59.999999Z"},
        /* outside 0000..9999: clamped */
        {INT64_MAX, "9999-12-31T23:59:59.999999Z"},
        {INT64_MIN, "0000-01-01T00:00:00.000000Z"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[32];
        memset(out, 'x', sizeof out);
        rfc3339_format(cases[i].us, out);
        assert_string_equal(out, cases[i].out);
        assert_int_equal(strlen(out), 27);
    }
}

static void test_rfc3339_round_trip(void **state)
{
    /* Every ~13 days from 1900 to 2100, at an awkward time of day. */
    for (int64_t us = -2208988800000000LL; us < 4102444800000000LL; us += 1123456789012LL) {
        char text[32];
        int64_t back = 0;
        rfc3339_format(us, text);
        if (rfc3339_parse(text, "t", &back, NULL) != VG_OK || back != us)
            fail_msg("%lld -> %s -> %lld", (long long)us, text, (long long)back);
    }
}

static void test_date_parse(void **state)
{
    static const struct {
        const char *in;
        int32_t days;
    } good[] = {
        {"1970-01-01", 0},     {"1969-12-31", -1},      {"1900-01-01", -25567},
        {"2000-02-29", 11016}, {"2000-03-01", 11017},   {"2024-02-29", 19782},
        {"2026-11-15", 20772}, {"9999-12-31", 2932896}, {"2024-12-31", 20088},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int32_t days = 42;
        vg_error err = {0};
        if (date_parse(good[i].in, "date_of_birth", &days, &err) != VG_OK)
            fail_msg("%s refused: %s", good[i].in, err.detail);
        assert_int_equal(days, good[i].days);
    }
    assert_int_equal(date_parse("2024-02-29", "d", NULL, NULL), VG_OK);

    static const char *const bad[] = {
        "2023-02-29", "1900-02-29",           "2100-02-29",  "2026-04-31",  "2026-06-31",
        "2026-09-31", "2026-11-31",           "2026-01-32",  "2026-00-01",  "2026-13-01",
        "1899-12-31", "0001-01-01",           "10000-01-01", "2026-1-01",   "2026/01/01",
        "26-01-01",   "2026-01-01T00:00:00Z", "2026-01-01 ", " 2026-01-01", "",
        "20260101",   "2026-01-0a",           "2026-01",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int32_t days = 42;
        vg_error err = {0};
        if (date_parse(bad[i], "date_of_birth", &days, &err) != VG_E_INVALID)
            fail_msg("\"%s\" accepted", bad[i]);
        assert_string_equal(err.field, "date_of_birth");
        assert_int_equal(days, 42);
    }
    assert_int_equal(date_parse(NULL, "d", NULL, NULL), VG_E_INVALID);
}

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static void test_days_from_civil(void **state)
{
    assert_true(days_from_civil(1970, 1, 1) == 0);
    assert_true(days_from_civil(1969, 12, 31) == -1);
    assert_true(days_from_civil(2000, 3, 1) == 11017);
    assert_true(days_from_civil(1, 1, 1) == -719162);
    assert_true(days_from_civil(0, 3, 1) == -719468);
    assert_true(days_from_civil(-1, 12, 31) == days_from_civil(0, 1, 1) - 1);

    /* Walking the calendar day by day, the day number goes up by exactly one:
     * covers month ends, leap days, centuries and the 400-year rule. */
    static const int len[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int64_t expect = days_from_civil(-401, 1, 1);
    for (int64_t y = -401; y <= 2401; y++)
        for (unsigned m = 1; m <= 12; m++) {
            unsigned n = (unsigned)len[m - 1] + (m == 2 && is_leap(y));
            for (unsigned d = 1; d <= n; d++, expect++)
                if (days_from_civil(y, m, d) != expect)
                    fail_msg("%lld-%02u-%02u: %lld, expected %lld", (long long)y, m, d,
                             (long long)days_from_civil(y, m, d), (long long)expect);
        }
}

static void test_now_is_the_wall_clock(void **state)
{
    int64_t before = (int64_t)time(NULL);
    int64_t now = now_epoch_us();
    int64_t after = (int64_t)time(NULL);
    assert_true(now / 1000000 >= before - 1);
    assert_true(now / 1000000 <= after + 1);
    assert_true(now > 1577836800000000LL); /* after 2020-01-01 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3339_accepts),
        cmocka_unit_test(test_rfc3339_refuses),
        cmocka_unit_test(test_rfc3339_format),
        cmocka_unit_test(test_rfc3339_round_trip),
        cmocka_unit_test(test_date_parse),
        cmocka_unit_test(test_days_from_civil),
        cmocka_unit_test(test_now_is_the_wall_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
