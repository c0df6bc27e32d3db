/*
 * bodies.h — the request bodies that validate.h does not decode: the JSON
 * text itself, the POST /transactions envelope (one object or a batch), and
 * the PATCH bodies of alerts, KYC tasks, rules and webhooks.
 *
 * Pure functions over bytes and jansson values, like validate.h: the API
 * calls them before it borrows a database connection, and the fuzz harnesses
 * in fuzz/ call them without any server. Each failure names the field.
 */
#ifndef VIGIL_DOMAIN_BODIES_H
#define VIGIL_DOMAIN_BODIES_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "util/status.h"

/* Parses buf[0..len) as one JSON value: empty bodies and nesting deeper than
 * `max_depth` (checked before parsing, so a deep body costs no memory) are
 * VG_E_MALFORMED naming "body", as is invalid JSON or a duplicate key. The
 * caller owns the returned value; NULL with err on failure. */
json_t *body_parse(const char *buf, size_t len, long max_depth, vg_error *err);

/* VG_OK when `body` is an object whose members are all named in `allowed`
 * (NULL-terminated); else VG_E_INVALID naming "body" (not an object) or the
 * first unknown member, with the allowed names in the detail. */
vg_status body_members_only(const json_t *body, const char *const *allowed, vg_error *err);

/* Decodes a POST /transactions body: one transaction object, or
 * {"transactions": [...]} with 1..max_batch objects (*batch = 1). Every item
 * goes through tx_decode(); a bad item in a batch is listed in err->items by
 * index with its field ("transactions[3].amount") and the whole batch is
 * refused; for a single object the field is the member's name ("body" for
 * the object itself). On success *items is a new array of canonical items
 * {external_id, customer_id, amount, currency, direction, channel, cp_name?,
 * cp_account?, cp_country?, occurred_at} as vigil_ingest() reads them. */
vg_status tx_body_decode(const json_t *body, long max_batch, int64_t now_us, json_t **items,
                         int *batch, vg_error *err);

/* PATCH /alerts/{id}: {"status", "disposition", "note"}. status is required
 * (open|investigating|closed), a disposition is required when closing and
 * allowed only then. The strings are borrowed from `body`. */
typedef struct alert_patch {
    const char *status, *disposition, *note;
} alert_patch;
vg_status alert_patch_decode(const json_t *body, alert_patch *out, vg_error *err);

/* PATCH /kyc/tasks/{id}: {"status", "note"}; status required. Borrowed. */
typedef struct kyc_patch {
    const char *status, *note;
} kyc_patch;
vg_status kyc_patch_decode(const json_t *body, kyc_patch *out, vg_error *err);

/* PATCH /rules/{id}: {"params": {...}, "mode", "severity"}, at least one.
 * mode active|shadow|disabled, severity low|medium|high. Borrowed; the
 * parameters themselves are checked by the database (per rule). */
typedef struct rule_patch {
    const json_t *params;
    const char *mode, *severity;
} rule_patch;
vg_status rule_patch_decode(const json_t *body, rule_patch *out, vg_error *err);

/* PATCH /webhooks/{id}: {"active": true|false}, nothing else. */
vg_status webhook_patch_decode(const json_t *body, int *active, vg_error *err);

/* POST /approvals/{id}/approve|reject: {"note"}, or no body at all (NULL).
 * The note is required (non-empty) when note_required (a rejection says
 * why). *note is borrowed from body, NULL when absent. */
vg_status decision_decode(const json_t *body, int note_required, const char **note, vg_error *err);

#endif
