/*
 * validate.h — decoding request bodies into checked domain inputs.
 *
 * Pure functions over jansson values: they never touch the database. Each
 * failure names the field as the client wrote it ("amount",
 * "counterparty.country") with a detail a person can act on. Unknown fields
 * are refused (a typo such as "amout" must not be silently ignored).
 */
#ifndef VIGIL_DOMAIN_VALIDATE_H
#define VIGIL_DOMAIN_VALIDATE_H

#include <stdint.h>
#include <jansson.h>

#include "domain/money.h"
#include "util/status.h"

#define VG_NAME_MAX    200 /* full_name, counterparty.name (bytes) */
#define VG_EMAIL_MAX   254
#define VG_EXTID_MAX   128 /* external_id: printable ASCII, no spaces */
#define VG_ACCOUNT_MAX 64
#define VG_NOTE_MAX    4000

typedef struct customer_input {
    int has_full_name;
    char full_name[VG_NAME_MAX + 1];
    int has_email;
    char email[VG_EMAIL_MAX + 1];
    int has_country;
    char country[3];
    int has_date_of_birth;
    char date_of_birth[11];
    int has_customer_type;
    char customer_type[11]; /* "individual" | "business" */
    int has_pep;
    int pep;
    int has_external_id;
    char external_id[VG_EXTID_MAX + 1];
} customer_input;

/* Decodes a customer body. For create (`is_patch` 0) `full_name` is required
 * and `email` optional; for a patch every field is optional but at least one
 * must be present, and `external_id` may not be changed. A JSON null for an
 * optional field clears it (has_X = 1 with an empty value) on patch only.
 * `today_days` (days since epoch) bounds date_of_birth: not in the future,
 * not before 1900-01-01. full_name is stored with leading and trailing spaces
 * removed and may not be blank. `out` is written only on success. */
vg_status customer_decode(const json_t *body, int is_patch, int32_t today_days, customer_input *out,
                          vg_error *err);

typedef struct tx_input {
    char external_id[VG_EXTID_MAX + 1];
    char customer_id[37]; /* canonical lower-case UUID */
    char amount[MONEY_STR_MAX];
    int64_t amount_minor;
    char currency[4];
    char direction[4]; /* "in" | "out" */
    char channel[7];   /* cash|wire|card|ach|crypto|other */
    int has_counterparty;
    char cp_name[VG_NAME_MAX + 1];
    char cp_account[VG_ACCOUNT_MAX + 1];
    char cp_country[3];   /* "" when absent */
    char occurred_at[32]; /* canonical RFC 3339 UTC */
    int64_t occurred_us;
} tx_input;

/* Decodes one transaction object. Required: external_id, customer_id,
 * amount (a JSON string, never a number), currency, direction, channel,
 * occurred_at. Optional: counterparty {name, account, country}.
 * occurred_at may not be more than 24 h after `now_us`. has_counterparty is
 * set when the counterparty object has at least one member; its name is
 * trimmed like full_name. `out` is written only on success. */
vg_status tx_decode(const json_t *item, int64_t now_us, tx_input *out, vg_error *err);

/* 1 if `s` is a UUID in 8-4-4-4-12 hex form (either case); writes the lower
 * case form to `out` (37 bytes) when not NULL. */
int uuid_parse(const char *s, char out[37]);

/* 1 if `s` is valid UTF-8 without control characters (U+0000..U+001F,
 * U+007F) and at most `max_bytes` long. */
int text_ok(const char *s, size_t max_bytes);

/* Maximum nesting depth of the JSON text in buf[0..len) (arrays and objects;
 * brackets inside strings ignored). Used to refuse over-deep input before
 * parsing it. */
int json_text_depth(const char *buf, size_t len);

#endif
