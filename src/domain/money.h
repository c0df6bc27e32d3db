/*
 * money.h — exact decimal amounts. Never C floating point (invariant 8).
 *
 * Amounts travel as decimal strings ("1250.50") and are checked against the
 * currency's minor-unit exponent (ISO 4217: USD 2, JPY 0, BHD 3). The
 * canonical form has no leading zeros and exactly `exponent` decimals, so it
 * can be handed to PostgreSQL's NUMERIC unchanged.
 */
#ifndef VIGIL_DOMAIN_MONEY_H
#define VIGIL_DOMAIN_MONEY_H

#include <stddef.h>
#include <stdint.h>

#include "util/status.h"

/* Largest accepted amount, in major units (exclusive): one trillion. */
#define MONEY_MAX_MAJOR 1000000000000LL
/* Room for the canonical form of any accepted amount. */
#define MONEY_STR_MAX 32

/* Parses `s` (digits, optional '.' and digits; no sign, exponent, spaces or
 * leading '+') as an amount in a currency with `exponent` minor digits.
 * Rejects: empty, non-digits, more fractional digits than `exponent`, zero,
 * values >= MONEY_MAX_MAJOR. On success writes the canonical string into
 * `out` (MONEY_STR_MAX bytes) and, if `minor` is not NULL, the amount in
 * minor units. On failure returns VG_E_INVALID with `field` and a detail in
 * `err`. */
vg_status money_parse(const char *s, int exponent, const char *field, char out[MONEY_STR_MAX],
                      int64_t *minor, vg_error *err);

#endif
