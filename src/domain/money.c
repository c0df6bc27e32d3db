/*
 * money.c — parsing decimal amount strings into exact integers.
 *
 * An amount arrives as text ("1250.50") so that it never passes through a
 * binary float on its way in. It is scanned once: integer digits, an optional
 * '.', fraction digits. Leading zeros are counted out before any arithmetic,
 * so a 400-digit string is refused as too large without ever overflowing an
 * integer. The accepted range (< 10^12 major units, exponent <= 4) keeps the
 * amount in minor units below 10^16, well inside int64_t.
 */
#include "domain/money.h"

#include <stdio.h>

/* ISO 4217 uses at most 4 minor digits (CLF, UYW). */
#define MONEY_MAX_EXPONENT 4
/* Significant integer digits of the largest accepted amount (999999999999). */
#define MONEY_MAX_MAJOR_DIGITS 12

static const int64_t pow10_table[] = {1, 10, 100, 1000, 10000};

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Value of the `n` digits at `p`; the caller has bounded `n` so it fits. */
static int64_t digits_value(const char *p, size_t n)
{
    int64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (p[i] - '0');
    return v;
}

static vg_status bad_syntax(const char *field, vg_error *err)
{
    return vg_fail(err, VG_E_INVALID, field,
                   "must be a decimal string, e.g. \"125.50\" (digits with an optional '.' "
                   "and decimals; no sign, exponent, spaces or separators)");
}

static vg_status too_many_decimals(const char *field, int exponent, vg_error *err)
{
    if (exponent == 0)
        return vg_fail(err, VG_E_INVALID, field, "must be a whole number in this currency");
    return vg_fail(err, VG_E_INVALID, field, "has more than %d decimal places for this currency",
                   exponent);
}

vg_status money_parse(const char *s, int exponent, const char *field, char out[MONEY_STR_MAX],
                      int64_t *minor, vg_error *err)
{
    if (exponent < 0 || exponent > MONEY_MAX_EXPONENT)
        return vg_fail(err, VG_E_INTERNAL, field, "unsupported currency exponent %d", exponent);
    if (!s)
        return bad_syntax(field, err);

    const char *int_start = s, *p = s;
    while (is_digit(*p))
        p++;
    size_t int_len = (size_t)(p - int_start);
    const char *frac_start = NULL;
    size_t frac_len = 0;
    if (*p == '.') {
        frac_start = ++p;
        while (is_digit(*p))
            p++;
        frac_len = (size_t)(p - frac_start);
        if (frac_len == 0) /* "1." */
            return bad_syntax(field, err);
    }
    if (int_len == 0 || *p != '\0') /* "", ".5", "+1", "1e3", "1,000" */
        return bad_syntax(field, err);
    if (frac_len > (size_t)exponent)
        return too_many_decimals(field, exponent, err);

    while (int_len > 1 && *int_start == '0') { /* "007.50" is 7.50 */
        int_start++;
        int_len--;
    }
    if (int_len > MONEY_MAX_MAJOR_DIGITS)
        return vg_fail(err, VG_E_INVALID, field, "must be less than %lld", MONEY_MAX_MAJOR);

    int64_t major = digits_value(int_start, int_len);
    /* Fraction digits scaled to the currency: "5" with exponent 2 is 50. */
    int64_t frac = frac_len ? digits_value(frac_start, frac_len) : 0;
    frac *= pow10_table[(size_t)exponent - frac_len];
    int64_t total = major * pow10_table[exponent] + frac;
    if (total == 0)
        return vg_fail(err, VG_E_INVALID, field, "must be greater than zero");

    if (exponent == 0)
        snprintf(out, MONEY_STR_MAX, "%lld", (long long)major);
    else
        snprintf(out, MONEY_STR_MAX, "%lld.%0*lld", (long long)major, exponent, (long long)frac);
    if (minor)
        *minor = total;
    return VG_OK;
}
