/*
 * fuzz_patch.c — the PATCH bodies of /alerts/{id}, /kyc/tasks/{id},
 * /rules/{id} and /webhooks/{id}, and the decision body of
 * /approvals/{id}/approve|reject: body_parse() then each decoder on the
 * same value (their members overlap: status, note).
 *
 * Properties: a refusal is a 4xx naming a field; an accepted alert patch
 * moves to a known status, with a known disposition exactly when closing;
 * an accepted KYC patch names a known status; an accepted rule patch changes
 * something, with a known mode and severity and an object of params; an
 * accepted webhook patch is a boolean; an accepted decision has a note of
 * valid text, present when required.
 */
#include "fuzz.h"

#include "domain/bodies.h"
#include "domain/risk.h"
#include "domain/validate.h"
#include "domain/workflow.h"

static void alert(const json_t *body)
{
    vg_error err = {0};
    alert_patch p;
    vg_status st = alert_patch_decode(body, &p, &err);
    if (st == VG_OK) {
        FUZZ_CHECK(p.status && alert_status_valid(p.status));
        FUZZ_CHECK((strcmp(p.status, "closed") == 0) == (p.disposition != NULL));
        FUZZ_CHECK(!p.disposition || alert_disposition_valid(p.disposition));
        FUZZ_CHECK(!p.note || text_ok(p.note, VG_NOTE_MAX));
    } else {
        fuzz_check_refusal(st, &err);
    }
    vg_error_clear(&err);
}

static void kyc(const json_t *body)
{
    vg_error err = {0};
    kyc_patch p;
    vg_status st = kyc_patch_decode(body, &p, &err);
    if (st == VG_OK)
        FUZZ_CHECK(p.status && kyc_status_valid(p.status) &&
                   (!p.note || text_ok(p.note, VG_NOTE_MAX)));
    else
        fuzz_check_refusal(st, &err);
    vg_error_clear(&err);
}

static void rule(const json_t *body)
{
    vg_error err = {0};
    rule_patch p;
    vg_status st = rule_patch_decode(body, &p, &err);
    if (st == VG_OK) {
        FUZZ_CHECK(p.params || p.mode || p.severity);
        FUZZ_CHECK(!p.params || json_is_object(p.params));
        FUZZ_CHECK(!p.mode || !strcmp(p.mode, "active") || !strcmp(p.mode, "shadow") ||
                   !strcmp(p.mode, "disabled"));
        FUZZ_CHECK(!p.severity || risk_level_parse(p.severity) >= 0);
    } else {
        fuzz_check_refusal(st, &err);
    }
    vg_error_clear(&err);
}

static void webhook(const json_t *body)
{
    vg_error err = {0};
    int active = -1;
    vg_status st = webhook_patch_decode(body, &active, &err);
    if (st == VG_OK)
        FUZZ_CHECK(active == 0 || active == 1);
    else
        fuzz_check_refusal(st, &err);
    if (st != VG_OK)
        FUZZ_CHECK(active == -1);
    vg_error_clear(&err);
}

static void decision(const json_t *body, int note_required)
{
    vg_error err = {0};
    const char *note = NULL;
    vg_status st = decision_decode(body, note_required, &note, &err);
    if (st == VG_OK)
        FUZZ_CHECK((!note || text_ok(note, VG_NOTE_MAX)) && (!note_required || (note && *note)));
    else
        fuzz_check_refusal(st, &err);
    vg_error_clear(&err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *body = fuzz_body(data, size);
    if (!body)
        return 0;
    alert(body);
    kyc(body);
    rule(body);
    webhook(body);
    decision(body, 0);
    decision(body, 1);
    json_decref(body);
    return 0;
}
