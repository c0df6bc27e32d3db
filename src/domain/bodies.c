/*
 * bodies.c — request bodies outside validate.c's member tables: the JSON
 * text, the transactions envelope and the small PATCH bodies.
 *
 * The PATCH decoders share one shape: refuse a non-object, refuse unknown
 * members by name, read each optional string member (UTF-8 text of bounded
 * length), then check the combination. The first failure found is the one
 * reported, so the same body always gets the same error.
 */
#include "domain/bodies.h"

#include <stdio.h>
#include <string.h>

#include "domain/risk.h"
#include "domain/validate.h"
#include "domain/workflow.h"

json_t *body_parse(const char *buf, size_t len, long max_depth, vg_error *err)
{
    if (len == 0)
        return vg_fail(err, VG_E_MALFORMED, "body", "a JSON body is required"), NULL;
    if (json_text_depth(buf, len) > max_depth)
        return vg_fail(err, VG_E_MALFORMED, "body", "JSON nesting deeper than %ld levels",
                       max_depth),
               NULL;
    json_error_t jerr;
    json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j)
        return vg_fail(err, VG_E_MALFORMED, "body", "invalid JSON at line %d column %d: %s",
                       jerr.line, jerr.column, jerr.text),
               NULL;
    return j;
}

/* ---- POST /transactions ------------------------------------------------- */

static json_t *canonical_item(const tx_input *t)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s?, s:s?, s:s?, s:s}", "external_id",
                     t->external_id, "customer_id", t->customer_id, "amount", t->amount, "currency",
                     t->currency, "direction", t->direction, "channel", t->channel, "cp_name",
                     t->cp_name[0] ? t->cp_name : NULL, "cp_account",
                     t->cp_account[0] ? t->cp_account : NULL, "cp_country",
                     t->cp_country[0] ? t->cp_country : NULL, "occurred_at", t->occurred_at);
}

/* Decodes every item of `list`; the canonical array, or NULL with err (for
 * a batch, err->items lists each bad item). */
static json_t *decode_items(const json_t *list, int batch, int64_t now_us, vg_error *err)
{
    json_t *items = json_array();
    tx_input t;
    size_t i;
    const json_t *item;
    json_array_foreach(list, i, item)
    {
        vg_error one = {0};
        if (tx_decode(item, now_us, &t, &one) == VG_OK) {
            json_array_append_new(items, canonical_item(&t));
        } else if (batch) {
            char field[300];
            snprintf(field, sizeof field, "transactions[%zu]%s%s", i, one.field[0] ? "." : "",
                     one.field);
            vg_fail_item(err, (long)i, field, one.detail);
        } else {
            *err = one;
            one.items = NULL;
            if (!err->field[0]) /* the top level has no name of its own */
                snprintf(err->field, sizeof err->field, "body");
        }
        vg_error_clear(&one);
    }
    if (err->code != VG_OK) {
        if (batch)
            vg_fail(err, VG_E_INVALID, "transactions", "%zu of %zu transactions are invalid",
                    json_array_size(err->items), json_array_size(list));
        json_decref(items);
        return NULL;
    }
    return items;
}

vg_status tx_body_decode(const json_t *body, long max_batch, int64_t now_us, json_t **items,
                         int *batch, vg_error *err)
{
    json_t *list = NULL;
    *items = NULL;
    *batch = 0;
    if (json_is_object(body) && json_object_get(body, "transactions")) {
        *batch = 1;
        list = json_incref(json_object_get(body, "transactions"));
        if (json_object_size(body) != 1)
            vg_fail(err, VG_E_INVALID, "body", "a batch body holds only \"transactions\": [...]");
        else if (!json_is_array(list) || json_array_size(list) == 0)
            vg_fail(err, VG_E_INVALID, "transactions", "must be a non-empty array");
        else if (json_array_size(list) > (size_t)max_batch)
            vg_fail(err, VG_E_TOO_LARGE, "transactions",
                    "at most %ld transactions per request (got %zu)", max_batch,
                    json_array_size(list));
    } else {
        list = json_array();
        json_array_append(list, (json_t *)body);
    }
    if (err->code == VG_OK)
        *items = decode_items(list, *batch, now_us, err);
    json_decref(list);
    return *items ? VG_OK : (err->code ? err->code : VG_E_INTERNAL);
}

/* ---- PATCH bodies ------------------------------------------------------- */

vg_status body_members_only(const json_t *body, const char *const *allowed, vg_error *err)
{
    if (!json_is_object(body))
        return vg_fail(err, VG_E_INVALID, "body", "must be a JSON object");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        const char *const *a = allowed;
        while (*a && strcmp(*a, key) != 0)
            a++;
        if (*a)
            continue;
        char names[256] = "";
        for (a = allowed; *a; a++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s",
                     a == allowed ? "" : ", ", *a);
        if (!key[0]) /* no name to report: name the body */
            return vg_fail(err, VG_E_INVALID, "body",
                           "unknown field \"\" (a member with an empty name; known: %s)", names);
        return vg_fail(err, VG_E_INVALID, key, "unknown field (%s)", names);
    }
    return VG_OK;
}

/* Reads an optional string member (NULL when absent or null); 0 with err
 * when present but not UTF-8 text of at most `max` bytes. */
static int opt_string(const json_t *body, const char *key, size_t max, const char **out,
                      vg_error *err)
{
    json_t *v = json_object_get(body, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 1;
    if (!json_is_string(v) || !text_ok(json_string_value(v), max)) {
        vg_fail(err, VG_E_INVALID, key, "must be a string of at most %zu bytes of UTF-8 text", max);
        return 0;
    }
    *out = json_string_value(v);
    return 1;
}

vg_status alert_patch_decode(const json_t *body, alert_patch *out, vg_error *err)
{
    static const char *const allowed[] = {"status", "disposition", "note", NULL};
    alert_patch p;
    if (body_members_only(body, allowed, err) != VG_OK ||
        !opt_string(body, "status", 32, &p.status, err) ||
        !opt_string(body, "disposition", 32, &p.disposition, err) ||
        !opt_string(body, "note", VG_NOTE_MAX, &p.note, err))
        return err->code;
    if (!p.status)
        return vg_fail(err, VG_E_INVALID, "status", "required: investigating or closed");
    if (!alert_status_valid(p.status))
        return vg_fail(err, VG_E_INVALID, "status", "must be open, investigating or closed");
    if (strcmp(p.status, "closed") == 0 && !p.disposition)
        return vg_fail(err, VG_E_INVALID, "disposition",
                       "required when closing: false_positive, no_action, escalated or sar_filed");
    if (p.disposition && !alert_disposition_valid(p.disposition))
        return vg_fail(err, VG_E_INVALID, "disposition",
                       "must be false_positive, no_action, escalated or sar_filed");
    if (p.disposition && strcmp(p.status, "closed") != 0)
        return vg_fail(err, VG_E_INVALID, "disposition", "only allowed when closing the alert");
    *out = p;
    return VG_OK;
}

vg_status kyc_patch_decode(const json_t *body, kyc_patch *out, vg_error *err)
{
    static const char *const allowed[] = {"status", "note", NULL};
    kyc_patch p;
    if (body_members_only(body, allowed, err) != VG_OK ||
        !opt_string(body, "status", 32, &p.status, err) ||
        !opt_string(body, "note", VG_NOTE_MAX, &p.note, err))
        return err->code;
    if (!p.status || !kyc_status_valid(p.status))
        return vg_fail(err, VG_E_INVALID, "status", "required: in_progress, completed or rejected");
    *out = p;
    return VG_OK;
}

vg_status rule_patch_decode(const json_t *body, rule_patch *out, vg_error *err)
{
    static const char *const allowed[] = {"params", "mode", "severity", NULL};
    rule_patch p;
    if (body_members_only(body, allowed, err) != VG_OK ||
        !opt_string(body, "mode", 16, &p.mode, err) ||
        !opt_string(body, "severity", 16, &p.severity, err))
        return err->code;
    p.params = json_object_get(body, "params");
    if (p.mode && strcmp(p.mode, "active") && strcmp(p.mode, "shadow") &&
        strcmp(p.mode, "disabled"))
        return vg_fail(err, VG_E_INVALID, "mode", "must be active, shadow or disabled");
    if (p.severity && risk_level_parse(p.severity) < 0)
        return vg_fail(err, VG_E_INVALID, "severity", "must be low, medium or high");
    if (p.params && !json_is_object(p.params))
        return vg_fail(err, VG_E_INVALID, "params", "must be an object");
    if (!p.params && !p.mode && !p.severity)
        return vg_fail(err, VG_E_INVALID, "body",
                       "nothing to change: give params, mode or severity");
    *out = p;
    return VG_OK;
}

vg_status webhook_patch_decode(const json_t *body, int *active, vg_error *err)
{
    static const char *const allowed[] = {"active", NULL};
    if (body_members_only(body, allowed, err) != VG_OK)
        return err->code;
    json_t *v = json_object_get(body, "active");
    if (!json_is_boolean(v))
        return vg_fail(err, VG_E_INVALID, "active", "required: true or false");
    *active = json_is_true(v);
    return VG_OK;
}

vg_status decision_decode(const json_t *body, int note_required, const char **note, vg_error *err)
{
    static const char *const allowed[] = {"note", NULL};
    *note = NULL;
    if (body && (body_members_only(body, allowed, err) != VG_OK ||
                 !opt_string(body, "note", VG_NOTE_MAX, note, err)))
        return err->code;
    if (note_required && (!*note || !**note))
        return vg_fail(err, VG_E_INVALID, "note", "required: say why the proposal is rejected");
    return VG_OK;
}
