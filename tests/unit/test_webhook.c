/*
 * test_webhook.c — webhook registration bodies (each refusal names its
 * field) and the delivery signature, checked against an HMAC computed
 * independently (Python's hmac module).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "domain/webhook.h"

/* Decodes `text`; expects a refusal naming `field`. */
static void refused(const char *text, const char *field)
{
    json_t *body = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    assert_non_null(body);
    webhook_input in;
    vg_error err = {0};
    vg_status st = webhook_decode(body, &in, &err);
    if (st != VG_E_INVALID || strcmp(err.field, field) != 0)
        fail_msg("%s: got %d field '%s' (%s), expected a refusal of '%s'", text, st, err.field,
                 err.detail, field);
    json_decref(body);
}

static void accepts_a_full_registration(void **state)
{
    json_t *body = json_loads("{\"url\": \"https://hooks.example.com/vigil?x=1\","
                              " \"event_types\": [\"aml.alert.\", \"aml.customer.risk\"],"
                              " \"secret\": \"0123456789abcdef\"}",
                              0, NULL);
    webhook_input in;
    vg_error err = {0};
    assert_int_equal(webhook_decode(body, &in, &err), VG_OK);
    assert_string_equal(in.url, "https://hooks.example.com/vigil?x=1");
    assert_int_equal(in.ntypes, 2);
    assert_string_equal(in.types[0], "aml.alert.");
    assert_string_equal(in.types[1], "aml.customer.risk");
    assert_int_equal(in.has_secret, 1);
    assert_string_equal(in.secret, "0123456789abcdef");
    json_decref(body);
}

static void accepts_a_minimal_registration(void **state)
{
    json_t *body = json_loads("{\"url\": \"http://127.0.0.1:9000/\"}", 0, NULL);
    webhook_input in;
    vg_error err = {0};
    assert_int_equal(webhook_decode(body, &in, &err), VG_OK);
    assert_int_equal(in.ntypes, 0);
    assert_int_equal(in.has_secret, 0);
    json_decref(body);
}

static void refuses_bad_bodies_naming_the_field(void **state)
{
    refused("[]", "body");
    refused("{}", "url");
    refused("{\"url\": null}", "url");
    refused("{\"url\": 42}", "url");
    refused("{\"url\": \"\"}", "url");
    refused("{\"url\": \"not a url\"}", "url");
    refused("{\"url\": \"ftp://example.com/x\"}", "url");
    refused("{\"url\": \"file:///etc/passwd\"}", "url");
    refused("{\"url\": \"example.com/hook\"}", "url");
    /* Found by fuzz/fuzz_webhook (fuzz/regressions/webhook/one-slash-url):
     * libcurl reads these as https://hooks.example.com/, but the text is
     * what Vigil stores and shows. */
    refused("{\"url\": \"https:/hooks.example.com/vigil\"}", "url");
    refused("{\"url\": \"http:hooks.example.com\"}", "url");
    refused("{\"url\": \"https://user:pw@example.com/\"}", "url");
    refused("{\"url\": \"https://example.com/\\u0000x\"}", "url");
    refused("{\"url\": \"https://example.com/\\nx\"}", "url");
    refused("{\"url\": \"https://x\", \"event_types\": \"aml.alert.\"}", "event_types");
    refused("{\"url\": \"https://x\", \"event_types\": [\"aml.alert.\", \"alert\"]}",
            "event_types[1]");
    refused("{\"url\": \"https://x\", \"event_types\": [\"aml.\"]}", "event_types[0]");
    refused("{\"url\": \"https://x\", \"event_types\": [\"aml.Alert\"]}", "event_types[0]");
    refused("{\"url\": \"https://x\", \"event_types\": [\"aml..x\"]}", "event_types[0]");
    refused("{\"url\": \"https://x\", \"event_types\": [1]}", "event_types[0]");
    refused("{\"url\": \"https://x\", \"secret\": \"short\"}", "secret");
    refused("{\"url\": \"https://x\", \"secret\": 1234567890123456789}", "secret");
    refused("{\"url\": \"https://x\", \"secret\": \"0123456789abcdef\\u0001\"}", "secret");
    refused("{\"url\": \"https://x\", \"secrte\": \"0123456789abcdef\"}", "secrte");

    char big[WEBHOOK_URL_MAX + 64];
    int n = snprintf(big, sizeof big, "{\"url\": \"https://example.com/");
    memset(big + n, 'a', WEBHOOK_URL_MAX);
    snprintf(big + n + WEBHOOK_URL_MAX, 8, "\"}");
    refused(big, "url");

    char many[2048] = "{\"url\": \"https://x\", \"event_types\": [";
    for (int i = 0; i <= WEBHOOK_TYPES_MAX; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%s\"aml.t%d\"", i ? "," : "", i);
    strcat(many, "]}");
    refused(many, "event_types");
}

static void signature_matches_an_independent_hmac(void **state)
{
    char sig[WEBHOOK_SIG_SIZE];
    const char body[] = "{\"id\":\"x\"}";
    assert_int_equal(webhook_sign("whsec-test-0123456789", 1700000000LL, body, strlen(body), sig),
                     0);
    assert_string_equal(
        sig, "t=1700000000,v1=58d28fbf086fbde99f454837fdfb2969fcf8a373b8c67bbf7e0c796c15ba40bf");
    /* another timestamp signs differently: a captured signature cannot be
     * moved to a fresher timestamp */
    char other[WEBHOOK_SIG_SIZE];
    assert_int_equal(webhook_sign("whsec-test-0123456789", 1700000001LL, body, strlen(body), other),
                     0);
    assert_string_not_equal(strchr(sig, ','), strchr(other, ','));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepts_a_full_registration),
        cmocka_unit_test(accepts_a_minimal_registration),
        cmocka_unit_test(refuses_bad_bodies_naming_the_field),
        cmocka_unit_test(signature_matches_an_independent_hmac),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
