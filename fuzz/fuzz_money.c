/*
 * fuzz_money.c — money_parse(), the decimal amounts of every transaction.
 *
 * Input: byte 0 picks the currency's exponent (0..4, as ISO 4217 has), the
 * rest is the amount text. Properties: a refusal names the field; an
 * accepted amount round-trips (parse → canonical → parse gives the same
 * text and minor units), the canonical text is exactly the minor units
 * written with `exponent` decimals, and it is positive and below
 * MONEY_MAX_MAJOR.
 */
#include "fuzz.h"

#include <inttypes.h>

#include "domain/money.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int exponent = data[0] % 5;
    char *s = fuzz_cstring(data + 1, size - 1);
    char out[MONEY_STR_MAX], again[MONEY_STR_MAX];
    int64_t minor = -1, minor2 = -1;
    vg_error err = {0};
    vg_status st = money_parse(s, exponent, "amount", out, &minor, &err);
    if (st == VG_OK) {
        FUZZ_CHECK(minor > 0);
        int64_t scale = 1;
        for (int i = 0; i < exponent; i++)
            scale *= 10;
        FUZZ_CHECK(minor / scale < MONEY_MAX_MAJOR);
        char expect[MONEY_STR_MAX + 8];
        if (exponent)
            snprintf(expect, sizeof expect, "%" PRId64 ".%0*" PRId64, minor / scale, exponent,
                     minor % scale);
        else
            snprintf(expect, sizeof expect, "%" PRId64, minor);
        FUZZ_CHECK(strcmp(expect, out) == 0);
        FUZZ_CHECK(money_parse(out, exponent, "amount", again, &minor2, NULL) == VG_OK);
        FUZZ_CHECK(strcmp(again, out) == 0 && minor2 == minor);
    } else {
        fuzz_check_refusal(st, &err);
        FUZZ_CHECK(strcmp(err.field, "amount") == 0);
    }
    vg_error_clear(&err);
    free(s);
    return 0;
}
