/*
 * fuzz_time.c — rfc3339_parse() (occurred_at) and date_parse()
 * (date_of_birth) on the same text.
 *
 * Properties: a refusal names the field; an accepted timestamp formats
 * (UTC, microseconds) to a text that parses back to the same instant when
 * that instant lies in the years the parser accepts (an offset may move
 * 1900-01-01T00:00+01:00 into 1899); an accepted date is exactly ten
 * characters whose fields give the returned day number, and the formatted
 * midnight of that day starts with the same ten characters.
 */
#include "fuzz.h"

#include "domain/timeparse.h"

#define DAY_US 86400000000LL

static void timestamp(const char *s)
{
    int64_t us = 0, again = 0;
    vg_error err = {0};
    vg_status st = rfc3339_parse(s, "occurred_at", &us, &err);
    if (st == VG_OK) {
        char text[32];
        rfc3339_format(us, text);
        FUZZ_CHECK(strlen(text) == 27);
        if (us >= days_from_civil(1900, 1, 1) * DAY_US &&
            us < days_from_civil(10000, 1, 1) * DAY_US) {
            FUZZ_CHECK(rfc3339_parse(text, "occurred_at", &again, NULL) == VG_OK);
            FUZZ_CHECK(again == us);
        }
    } else {
        fuzz_check_refusal(st, &err);
        FUZZ_CHECK(strcmp(err.field, "occurred_at") == 0);
    }
    vg_error_clear(&err);
}

static void date(const char *s)
{
    int32_t days = 0;
    vg_error err = {0};
    vg_status st = date_parse(s, "date_of_birth", &days, &err);
    if (st == VG_OK) {
        FUZZ_CHECK(strlen(s) == 10 && s[4] == '-' && s[7] == '-');
        int64_t y = atoi(s), m = atoi(s + 5), d = atoi(s + 8);
        FUZZ_CHECK(days == days_from_civil(y, (unsigned)m, (unsigned)d));
        char text[32];
        rfc3339_format((int64_t)days * DAY_US, text);
        FUZZ_CHECK(strncmp(text, s, 10) == 0);
    } else {
        fuzz_check_refusal(st, &err);
        FUZZ_CHECK(strcmp(err.field, "date_of_birth") == 0);
    }
    vg_error_clear(&err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstring(data, size);
    timestamp(s);
    date(s);
    free(s);
    return 0;
}
