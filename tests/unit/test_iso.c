/*
 * test_iso.c — ISO 3166-1 country and ISO 4217 currency tables.
 *
 * Enumerating every possible code both counts the tables and proves that the
 * binary search finds each entry (an unsorted table would lose some).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "domain/iso.h"

static void test_every_assigned_country_is_found(void **state)
{
    int n = 0;
    char code[3] = {0};
    for (code[0] = 'A'; code[0] <= 'Z'; code[0]++)
        for (code[1] = 'A'; code[1] <= 'Z'; code[1]++)
            n += iso_country_valid(code);
    assert_int_equal(n, 249);
}

static void test_country_codes(void **state)
{
    static const char *const valid[] = {"DE", "US", "GB", "CH", "JP", "AD", "ZW", "AX", "BQ",
                                        "CW", "SS", "SX", "PS", "TW", "VA", "AQ", "UM"};
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
        if (!iso_country_valid(valid[i]))
            fail_msg("%s refused", valid[i]);

    static const char *const invalid[] = {
        "de", "De", "dE", "XK", "UK",  "EU", "ZZ", "AA", "QM",  "XA", "AN",
        "YU", "CS", "",   "D",  "DEU", "D1", "1D", " D", "DE ", "D-", "\xc3\x84X",
    };
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++)
        if (iso_country_valid(invalid[i]))
            fail_msg("\"%s\" accepted", invalid[i]);
    assert_int_equal(iso_country_valid(NULL), 0);
}

static void test_every_active_currency_is_found(void **state)
{
    int n = 0;
    char code[4] = {0};
    for (code[0] = 'A'; code[0] <= 'Z'; code[0]++)
        for (code[1] = 'A'; code[1] <= 'Z'; code[1]++)
            for (code[2] = 'A'; code[2] <= 'Z'; code[2]++) {
                int e = iso_currency_exponent(code);
                if (e >= 0) {
                    n++;
                    if (e > 4)
                        fail_msg("%s has exponent %d", code, e);
                }
            }
    assert_int_equal(n, 165);
}

static void test_currency_exponents(void **state)
{
    static const struct {
        const char *code;
        int exponent;
    } cases[] = {
        {"USD", 2}, {"EUR", 2}, {"GBP", 2}, {"CHF", 2}, {"JPY", 0}, {"KRW", 0},
        {"CLP", 0}, {"ISK", 0}, {"VND", 0}, {"XOF", 0}, {"XAF", 0}, {"XPF", 0},
        {"UGX", 0}, {"PYG", 0}, {"BHD", 3}, {"KWD", 3}, {"JOD", 3}, {"OMR", 3},
        {"TND", 3}, {"IQD", 3}, {"LYD", 3}, {"CLF", 4}, {"UYW", 4}, {"UYI", 0},
        {"XCG", 2}, {"ZWG", 2}, {"SLE", 2}, {"VED", 2}, {"AED", 2}, {"ZMW", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (iso_currency_exponent(cases[i].code) != cases[i].exponent)
            fail_msg("%s: exponent %d, expected %d", cases[i].code,
                     iso_currency_exponent(cases[i].code), cases[i].exponent);
}

static void test_refused_currencies(void **state)
{
    static const char *const invalid[] = {
        /* case, length, charset */
        "usd", "Usd", "US", "USDD", "", "U5D", " USD",
        /* no minor unit in ISO 4217 ("N.A."): nothing to check an amount against */
        "XAU", "XAG", "XPD", "XPT", "XDR", "XTS", "XXX", "XBA", "XUA", "XSU",
        /* withdrawn */
        "ANG", "BGN", "HRK", "ZWL", "CUC", "SLL", "VEF", "LTL", "DEM",
        /* not ISO */
        "BTC", "RMB"};
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++)
        if (iso_currency_exponent(invalid[i]) != -1)
            fail_msg("\"%s\" accepted", invalid[i]);
    assert_int_equal(iso_currency_exponent(NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_assigned_country_is_found),
        cmocka_unit_test(test_country_codes),
        cmocka_unit_test(test_every_active_currency_is_found),
        cmocka_unit_test(test_currency_exponents),
        cmocka_unit_test(test_refused_currencies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
