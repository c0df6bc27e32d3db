/*
 * timeparse.h — RFC 3339 timestamps and ISO 8601 calendar dates, validated
 * against the real calendar (leap years, month lengths), without locale or
 * time-zone state (no mktime/strptime).
 */
#ifndef VIGIL_DOMAIN_TIMEPARSE_H
#define VIGIL_DOMAIN_TIMEPARSE_H

#include <stdint.h>

#include "util/status.h"

/* Parses "YYYY-MM-DDTHH:MM:SS[.ffffff](Z|±HH:MM)" ('t'/'z' and ' ' separator
 * refused: strict RFC 3339 'T'). Up to 9 fractional digits (truncated to
 * microseconds). Year 1900..9999. Offset mandatory. Writes microseconds since
 * the Unix epoch (UTC). Returns VG_E_INVALID naming `field` on failure. */
vg_status rfc3339_parse(const char *s, const char *field, int64_t *epoch_us, vg_error *err);

/* Formats epoch microseconds as "YYYY-MM-DDTHH:MM:SS.ffffffZ" (27 chars +
 * NUL). `out` must hold 32 bytes. Instants outside years 0000..9999 are
 * clamped to that range. */
void rfc3339_format(int64_t epoch_us, char out[32]);

/* Parses a calendar date "YYYY-MM-DD" (year 1900..9999). Writes days since
 * 1970-01-01 (may be negative) if `days` is not NULL. */
vg_status date_parse(const char *s, const char *field, int32_t *days, vg_error *err);

/* Days since 1970-01-01 for a proleptic Gregorian date (no validation). */
int64_t days_from_civil(int64_t y, unsigned m, unsigned d);

/* Current time in epoch microseconds (CLOCK_REALTIME). */
int64_t now_epoch_us(void);

/* Microseconds on CLOCK_MONOTONIC: for intervals and deadlines, which a
 * wall-clock step must not stretch or cut short. */
int64_t mono_us(void);

#endif
