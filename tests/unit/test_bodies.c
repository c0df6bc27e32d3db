/*
 * test_bodies.c — the decoders of domain/bodies.h: the JSON text, the
 * POST /transactions envelope and the PATCH bodies, each refusal checked for
 * the field it names.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "domain/bodies.h"

#define NOW_US 1794744000000000LL /* 2026-11-15T12:00:00Z */

static json_t *parse(const char *text, vg_error *err)
{
    return body_parse(text, strlen(text), 4, err);
}

static void test_body_parse(void **state)
{
    vg_error err = {0};
    json_t *j = parse("{\"a\": [1, {\"b\": 2}]}", &err);
    assert_non_null(j);
    json_decref(j);
    static const char *const bad[] = {"", "{\"a\": [[[[1]]]]}", "{\"a\": 1, \"a\": 2}", "{",
                                      "\"scalar\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_null(parse(bad[i], &err));
        assert_int_equal(err.code, VG_E_MALFORMED);
        assert_string_equal(err.field, "body");
        vg_error_clear(&err);
    }
    /* Brackets inside strings do not count towards the depth. */
    j = parse("{\"a\": \"[[[[[[[[\"}", &err);
    assert_non_null(j);
    json_decref(j);
}

static const char *const TX =
    "{\"external_id\": \"e-%d\", \"customer_id\": \"6F1C1E5A-8D2B-4C3A-9E7F-0123456789AB\","
    " \"amount\": \"%s\", \"currency\": \"USD\", \"direction\": \"in\", \"channel\": \"cash\","
    " \"occurred_at\": \"2026-11-15T10:00:00+01:00\"}";

static json_t *tx(int n, const char *amount)
{
    char text[512];
    snprintf(text, sizeof text, TX, n, amount);
    json_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    return j;
}

static void test_tx_single_and_batch(void **state)
{
    vg_error err = {0};
    json_t *items = NULL;
    int batch = -1;
    json_t *one = tx(1, "007.5");
    assert_int_equal(tx_body_decode(one, 10, NOW_US, &items, &batch, &err), VG_OK);
    assert_int_equal(batch, 0);
    json_t *item = json_array_get(items, 0);
    assert_string_equal(json_string_value(json_object_get(item, "amount")), "7.50");
    assert_string_equal(json_string_value(json_object_get(item, "customer_id")),
                        "6f1c1e5a-8d2b-4c3a-9e7f-0123456789ab");
    assert_string_equal(json_string_value(json_object_get(item, "occurred_at")),
                        "2026-11-15T09:00:00.000000Z");
    json_decref(items);
    json_decref(one);

    json_t *body =
        json_pack("{s:[o,o,o]}", "transactions", tx(1, "1.00"), tx(2, "-1"), tx(3, "1.001"));
    assert_int_equal(tx_body_decode(body, 10, NOW_US, &items, &batch, &err), VG_E_INVALID);
    assert_null(items);
    assert_int_equal(batch, 1);
    assert_string_equal(err.field, "transactions");
    assert_int_equal(json_array_size(err.items), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(err.items, 0), "field")),
                        "transactions[1].amount");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(err.items, 1), "index")), 2);
    vg_error_clear(&err);
    assert_int_equal(tx_body_decode(body, 2, NOW_US, &items, &batch, &err), VG_E_TOO_LARGE);
    assert_string_equal(err.field, "transactions");
    vg_error_clear(&err);
    json_decref(body);

    body = json_pack("{s:[], s:i}", "transactions", "x", 1);
    assert_int_equal(tx_body_decode(body, 10, NOW_US, &items, &batch, &err), VG_E_INVALID);
    assert_string_equal(err.field, "body");
    vg_error_clear(&err);
    json_decref(body);

    body = json_pack("[i]", 1); /* not an object: named "body" */
    assert_int_equal(tx_body_decode(body, 10, NOW_US, &items, &batch, &err), VG_E_INVALID);
    assert_string_equal(err.field, "body");
    vg_error_clear(&err);
    json_decref(body);
}

/* Decodes `text` with `fn`; checks the status and, on refusal, the field. */
#define EXPECT(fn, text, out, st, fld)                                                             \
    do {                                                                                           \
        vg_error e_ = {0};                                                                         \
        json_t *b_ = json_loads(text, JSON_DECODE_ANY, NULL);                                      \
        assert_non_null(b_);                                                                       \
        assert_int_equal(fn(b_, out, &e_), st);                                                    \
        if (st != VG_OK)                                                                           \
            assert_string_equal(e_.field, fld);                                                    \
        vg_error_clear(&e_);                                                                       \
        json_decref(b_);                                                                           \
    } while (0)

static void test_patches(void **state)
{
    alert_patch a;
    EXPECT(alert_patch_decode, "{\"status\": \"investigating\"}", &a, VG_OK, "");
    EXPECT(alert_patch_decode, "{\"status\": \"closed\", \"disposition\": \"no_action\"}", &a,
           VG_OK, "");
    EXPECT(alert_patch_decode, "{\"status\": \"closed\"}", &a, VG_E_INVALID, "disposition");
    EXPECT(alert_patch_decode, "{\"status\": \"open\", \"disposition\": \"no_action\"}", &a,
           VG_E_INVALID, "disposition");
    EXPECT(alert_patch_decode, "{\"note\": \"x\"}", &a, VG_E_INVALID, "status");
    EXPECT(alert_patch_decode, "{\"status\": \"closed\", \"why\": 1}", &a, VG_E_INVALID, "why");
    EXPECT(alert_patch_decode, "[]", &a, VG_E_INVALID, "body");

    kyc_patch k;
    EXPECT(kyc_patch_decode, "{\"status\": \"completed\", \"note\": \"ok\"}", &k, VG_OK, "");
    EXPECT(kyc_patch_decode, "{\"status\": \"done\"}", &k, VG_E_INVALID, "status");
    EXPECT(kyc_patch_decode, "{\"status\": 3}", &k, VG_E_INVALID, "status");

    rule_patch r;
    EXPECT(rule_patch_decode, "{\"mode\": \"shadow\"}", &r, VG_OK, "");
    EXPECT(rule_patch_decode, "{\"params\": {\"n\": 1}}", &r, VG_OK, "");
    EXPECT(rule_patch_decode, "{}", &r, VG_E_INVALID, "body");
    EXPECT(rule_patch_decode, "{\"params\": null}", &r, VG_E_INVALID, "params");
    EXPECT(rule_patch_decode, "{\"severity\": \"extreme\"}", &r, VG_E_INVALID, "severity");

    int active = -1;
    EXPECT(webhook_patch_decode, "{\"active\": false}", &active, VG_OK, "");
    assert_int_equal(active, 0);
    EXPECT(webhook_patch_decode, "{\"active\": \"yes\"}", &active, VG_E_INVALID, "active");
    EXPECT(webhook_patch_decode, "{\"url\": \"x\"}", &active, VG_E_INVALID, "url");
}

/* POST /approvals/{id}/approve|reject: an optional {"note"}; a rejection
 * must say why. */
static void test_decision(void **state)
{
    (void)state;
    static const struct {
        const char *text; /* NULL: no body */
        int note_required;
        vg_status st;
        const char *field, *note;
    } cases[] = {
        {NULL, 0, VG_OK, "", NULL},
        {NULL, 1, VG_E_INVALID, "note", NULL},
        {"{}", 0, VG_OK, "", NULL},
        {"{\"note\": \"agreed\"}", 1, VG_OK, "", "agreed"},
        {"{\"note\": \"\"}", 1, VG_E_INVALID, "note", NULL},
        {"{\"note\": 5}", 0, VG_E_INVALID, "note", NULL},
        {"{\"note\": \"x\", \"by\": \"me\"}", 0, VG_E_INVALID, "by", NULL},
        {"[\"note\"]", 0, VG_E_INVALID, "body", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vg_error e = {0};
        json_t *b = cases[i].text ? json_loads(cases[i].text, JSON_DECODE_ANY, NULL) : NULL;
        const char *note = "unset";
        assert_int_equal(decision_decode(b, cases[i].note_required, &note, &e), cases[i].st);
        if (cases[i].st == VG_OK) {
            if (cases[i].note)
                assert_string_equal(note, cases[i].note);
            else
                assert_null(note);
        } else {
            assert_string_equal(e.field, cases[i].field);
        }
        vg_error_clear(&e);
        json_decref(b);
    }
}

static void test_unknown_member_lists_the_known(void **state)
{
    static const char *const allowed[] = {"status", "note", NULL};
    vg_error err = {0};
    json_t *b = json_pack("{s:s, s:i}", "status", "x", "stauts", 1);
    assert_int_equal(body_members_only(b, allowed, &err), VG_E_INVALID);
    assert_string_equal(err.field, "stauts");
    assert_string_equal(err.detail, "unknown field (status, note)");
    json_decref(b);
}

/* Found by fuzz/fuzz_patch (fuzz/regressions/patch/empty-member-name): a
 * member with an empty name was refused naming the field "", so the
 * problem+json named nothing. Now the body is named. */
static void test_empty_member_name_names_the_body(void **state)
{
    static const char *const allowed[] = {"status", "note", NULL};
    vg_error err = {0};
    json_t *b = json_pack("{s:s}", "", "investigating");
    assert_int_equal(body_members_only(b, allowed, &err), VG_E_INVALID);
    assert_string_equal(err.field, "body");
    assert_non_null(strstr(err.detail, "empty name"));
    vg_error_clear(&err);
    alert_patch a;
    assert_int_equal(alert_patch_decode(b, &a, &err), VG_E_INVALID);
    assert_string_equal(err.field, "body");
    json_decref(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_parse),
        cmocka_unit_test(test_tx_single_and_batch),
        cmocka_unit_test(test_patches),
        cmocka_unit_test(test_decision),
        cmocka_unit_test(test_unknown_member_lists_the_known),
        cmocka_unit_test(test_empty_member_name_names_the_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
