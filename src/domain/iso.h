/*
 * iso.h — ISO 3166-1 alpha-2 countries and ISO 4217 currencies.
 * Static tables compiled in; codes are upper case and matched exactly.
 */
#ifndef VIGIL_DOMAIN_ISO_H
#define VIGIL_DOMAIN_ISO_H

/* 1 if `code` is an assigned ISO 3166-1 alpha-2 code ("DE"), else 0. */
int iso_country_valid(const char *code);

/* Minor-unit exponent of an ISO 4217 currency ("USD" → 2, "JPY" → 0,
 * "BHD" → 3), or -1 when `code` is not an active ISO 4217 code. */
int iso_currency_exponent(const char *code);

#endif
