/*
 * timeparse.c — strict RFC 3339 timestamps and ISO 8601 dates, by hand.
 *
 * mktime/strptime depend on the process time zone and locale and accept
 * inputs we want refused, so the parser reads fixed positions itself and
 * checks them against the proleptic Gregorian calendar. Conversions between
 * civil dates and day numbers use Howard Hinnant's era-based algorithms
 * (http://howardhinnant.github.io/date_algorithms.html), which are exact for
 * every year and need no tables.
 */
#include "domain/timeparse.h"

#include <time.h>

#define US_PER_SEC  1000000LL
#define SEC_PER_DAY 86400LL
#define YEAR_MIN    1900
#define YEAR_MAX    9999
/* "YYYY-MM-DD" */
#define DATE_LEN 10

static const char timestamp_example[] = "must be an RFC 3339 timestamp with offset, "
                                        "e.g. \"2026-03-01T12:30:00Z\" or "
                                        "\"2026-03-01T13:30:00.250+01:00\"";

/* Reads exactly `n` ASCII digits at `p` into *out; 0 if any is not a digit
 * (which also stops at a NUL, so short input is never over-read). */
static int read_digits(const char *p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 1;
}

static int is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
    static const int len[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : len[m - 1];
}

/* Parses "YYYY-MM-DD" at the start of `s` (what follows is the caller's
 * business) and checks it against the calendar. On success stores the day
 * number in *days. */
static vg_status read_date(const char *s, const char *field, const char *syntax_detail,
                           int64_t *days, vg_error *err)
{
    int y, m, d;
    if (!read_digits(s, 4, &y) || s[4] != '-' || !read_digits(s + 5, 2, &m) || s[7] != '-' ||
        !read_digits(s + 8, 2, &d))
        return vg_fail(err, VG_E_INVALID, field, "%s", syntax_detail);
    if (y < YEAR_MIN || y > YEAR_MAX)
        return vg_fail(err, VG_E_INVALID, field, "year must be between %d and %d", YEAR_MIN,
                       YEAR_MAX);
    if (m < 1 || m > 12 || d < 1 || d > days_in_month(y, m))
        return vg_fail(err, VG_E_INVALID, field, "is not a valid calendar date");
    *days = days_from_civil(y, (unsigned)m, (unsigned)d);
    return VG_OK;
}

/* Parses "HH:MM:SS" at `s` into seconds of the day. */
static int read_time_of_day(const char *s, int64_t *secs)
{
    int h, mi, sec;
    if (!read_digits(s, 2, &h) || s[2] != ':' || !read_digits(s + 3, 2, &mi) || s[5] != ':' ||
        !read_digits(s + 6, 2, &sec))
        return -1;
    /* A leap second (:60) cannot be represented in Unix time; refused. */
    if (h > 23 || mi > 59 || sec > 59)
        return 0;
    *secs = h * 3600LL + mi * 60LL + sec;
    return 1;
}

/* Parses "[.fffffffff]" at *p, advancing it; digits past the sixth are
 * truncated (not rounded) to microseconds. 0 on a '.' without 1..9 digits. */
static int read_fraction(const char **p, int64_t *us)
{
    *us = 0;
    if (**p != '.')
        return 1;
    const char *f = ++*p;
    int n = 0;
    while (f[n] >= '0' && f[n] <= '9')
        n++;
    if (n < 1 || n > 9)
        return 0;
    for (int i = 0; i < 6; i++)
        *us = *us * 10 + (i < n ? f[i] - '0' : 0);
    *p = f + n;
    return 1;
}

/* Parses "Z" or "±HH:MM" that must end the string. -1 on bad syntax, 0 when
 * out of range (beyond ±23:59), 1 with the offset east of UTC in seconds. */
static int read_offset(const char *p, int64_t *offset)
{
    if (p[0] == 'Z' && p[1] == '\0') {
        *offset = 0;
        return 1;
    }
    int h, m;
    if ((p[0] != '+' && p[0] != '-') || !read_digits(p + 1, 2, &h) || p[3] != ':' ||
        !read_digits(p + 4, 2, &m) || p[6] != '\0')
        return -1;
    if (h > 23 || m > 59)
        return 0;
    *offset = (h * 3600LL + m * 60LL) * (p[0] == '-' ? -1 : 1);
    return 1;
}

vg_status rfc3339_parse(const char *s, const char *field, int64_t *epoch_us, vg_error *err)
{
    if (!s)
        return vg_fail(err, VG_E_INVALID, field, "%s", timestamp_example);
    int64_t days, secs, frac_us, offset;
    vg_status st = read_date(s, field, timestamp_example, &days, err);
    if (st != VG_OK)
        return st;
    if (s[DATE_LEN] != 'T')
        return vg_fail(err, VG_E_INVALID, field, "%s", timestamp_example);
    const char *p = s + DATE_LEN + 1;
    int rc = read_time_of_day(p, &secs);
    if (rc < 0)
        return vg_fail(err, VG_E_INVALID, field, "%s", timestamp_example);
    if (rc == 0)
        return vg_fail(err, VG_E_INVALID, field, "time of day must be 00:00:00 to 23:59:59");
    p += 8;
    if (!read_fraction(&p, &frac_us))
        return vg_fail(err, VG_E_INVALID, field,
                       "fractional seconds must have 1 to 9 digits after '.'");
    rc = read_offset(p, &offset);
    if (rc < 0)
        return vg_fail(err, VG_E_INVALID, field, "%s", timestamp_example);
    if (rc == 0)
        return vg_fail(err, VG_E_INVALID, field, "UTC offset must be between -23:59 and +23:59");
    *epoch_us = (days * SEC_PER_DAY + secs - offset) * US_PER_SEC + frac_us;
    return VG_OK;
}

vg_status date_parse(const char *s, const char *field, int32_t *days, vg_error *err)
{
    static const char detail[] = "must be a date YYYY-MM-DD, e.g. \"1990-04-17\"";
    if (!s)
        return vg_fail(err, VG_E_INVALID, field, "%s", detail);
    int64_t d;
    vg_status st = read_date(s, field, detail, &d, err);
    if (st != VG_OK)
        return st;
    if (s[DATE_LEN] != '\0')
        return vg_fail(err, VG_E_INVALID, field, "%s", detail);
    if (days)
        *days = (int32_t)d; /* years 1900..9999 are within ±3 million days */
    return VG_OK;
}

int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    /* Count years from March so the leap day is the last day of the year. */
    const int64_t mm = m, dd = d; /* signed from here: no unsigned wrap-around */
    y -= mm <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;                                       /* [0, 399] */
    const int64_t doy = (153 * (mm > 2 ? mm - 3 : mm + 9) + 2) / 5 + dd - 1; /* [0, 365] */
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;               /* [0, 146096] */
    return era * 146097 + doe - 719468; /* 719468: days from 0000-03-01 to 1970-01-01 */
}

/* Inverse of days_from_civil. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const int64_t doe = z - era * 146097;                                      /* [0, 146096] */
    const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
    const int64_t mp = (5 * doy + 2) / 153;                                    /* [0, 11] */
    *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* Floor division, so that instants before 1970 land on the right day. */
static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* Writes `v` as exactly `width` decimal digits followed by `sep`; returns
 * the position after them. The caller keeps `v` below 10^width. */
static char *put_digits(char *p, unsigned v, int width, char sep)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    p[width] = sep;
    return p + width + 1;
}

void rfc3339_format(int64_t epoch_us, char out[32])
{
    /* Clamped to years 0000..9999, the range the fixed-width form can show. */
    const int64_t min_us = days_from_civil(0, 1, 1) * SEC_PER_DAY * US_PER_SEC;
    const int64_t max_us = days_from_civil(10000, 1, 1) * SEC_PER_DAY * US_PER_SEC - 1;
    if (epoch_us < min_us)
        epoch_us = min_us;
    if (epoch_us > max_us)
        epoch_us = max_us;
    int64_t secs = floor_div(epoch_us, US_PER_SEC);
    int64_t us = epoch_us - secs * US_PER_SEC;
    int64_t days = floor_div(secs, SEC_PER_DAY);
    int64_t sod = secs - days * SEC_PER_DAY;
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    char *p = out;
    p = put_digits(p, (unsigned)y, 4, '-');
    p = put_digits(p, m, 2, '-');
    p = put_digits(p, d, 2, 'T');
    p = put_digits(p, (unsigned)(sod / 3600), 2, ':');
    p = put_digits(p, (unsigned)(sod / 60 % 60), 2, ':');
    p = put_digits(p, (unsigned)(sod % 60), 2, '.');
    p = put_digits(p, (unsigned)us, 6, 'Z');
    *p = '\0';
}

int64_t now_epoch_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * US_PER_SEC + ts.tv_nsec / 1000;
}

int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * US_PER_SEC + ts.tv_nsec / 1000;
}
