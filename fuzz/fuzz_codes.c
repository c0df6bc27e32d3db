/*
 * fuzz_codes.c — the small parsers every decoder leans on: ISO 3166-1
 * countries, ISO 4217 currencies, UUIDs (path parameters such as
 * /dead-letters/{id}/redrive, ?after=, customer_id), text_ok() and the
 * nesting pre-check json_text_depth().
 *
 * Properties: an accepted country is two upper-case letters and a currency
 * three with an exponent 0..4; an accepted UUID canonicalises to its
 * lower-case 36-character form, which is accepted again and equal to the
 * input ignoring case; text_ok never accepts a control byte or more bytes
 * than allowed; json_text_depth is between 0 and the input's length.
 */
#include "fuzz.h"

#include <ctype.h>
#include <strings.h>

#include "domain/iso.h"
#include "domain/validate.h"

static int upper(const char *s, size_t n)
{
    if (strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 'A' || s[i] > 'Z')
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstring(data, size);
    if (iso_country_valid(s))
        FUZZ_CHECK(upper(s, 2));
    int e = iso_currency_exponent(s);
    FUZZ_CHECK(e >= -1 && e <= 4);
    if (e >= 0)
        FUZZ_CHECK(upper(s, 3));
    char canon[37], again[37];
    if (uuid_parse(s, canon)) {
        FUZZ_CHECK(strlen(canon) == 36 && strcasecmp(canon, s) == 0);
        for (int i = 0; i < 36; i++)
            FUZZ_CHECK(!isupper((unsigned char)canon[i]));
        FUZZ_CHECK(uuid_parse(canon, again) && strcmp(again, canon) == 0);
    }
    size_t max = size ? data[0] : 0;
    if (text_ok(s, max)) {
        FUZZ_CHECK(strlen(s) <= max);
        for (const char *p = s; *p; p++)
            FUZZ_CHECK((unsigned char)*p >= 0x20 && *p != 0x7F);
    }
    int depth = json_text_depth((const char *)data, size);
    FUZZ_CHECK(depth >= 0 && (size_t)depth <= size);
    free(s);
    return 0;
}
