/*
 * test_validate.c — request body decoding: customers (create and patch),
 * transactions, and the text, UUID and JSON-depth checks beneath them.
 *
 * Every refusal is checked for the field it names, since that is what a
 * client needs to fix its request.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "domain/timeparse.h"
#include "domain/validate.h"

/* A fixed "today" and "now" so the tests do not depend on the clock:
 * 2026-11-15 and 2026-11-15T12:00:00Z. */
#define TODAY  20772
#define NOW_US 1794744000000000LL

/* Parses test JSON; any value at the top, embedded NULs kept. */
static json_t *J(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (!j)
        fail_msg("bad test JSON %s: %s", text, e.text);
    return j;
}

/* A string of `n` copies of `c`. */
static const char *repeat(char c, size_t n)
{
    static char buf[300];
    assert_true(n < sizeof buf);
    memset(buf, c, n);
    buf[n] = '\0';
    return buf;
}

typedef struct refusal {
    const char *body;   /* JSON text */
    const char *field;  /* expected err.field */
    const char *detail; /* a piece of the expected err.detail */
} refusal;

static void check_refusal(const refusal *c, vg_status st, const vg_error *err)
{
    if (st != VG_E_INVALID)
        fail_msg("%s: accepted (status %d)", c->body, st);
    if (strcmp(err->field, c->field) != 0)
        fail_msg("%s: field \"%s\", expected \"%s\" (%s)", c->body, err->field, c->field,
                 err->detail);
    if (!strstr(err->detail, c->detail))
        fail_msg("%s: detail \"%s\" lacks \"%s\"", c->body, err->detail, c->detail);
}

/* ---- text_ok ------------------------------------------------------------ */

static void test_text_ok(void **state)
{
    static const struct {
        const char *s;
        size_t max;
        int ok;
    } cases[] = {
        {"", 0, 1},
        {"abc", 3, 1},
        {"abc", 2, 0},
        {" ~", 10, 1},
        {"tab\there", 20, 0},
        {"line\n", 20, 0},
        {"\r", 20, 0},
        {"\x1f", 20, 0},
        {"\x7f", 20, 0},
        {"caf\xc3\xa9", 5, 1},              /* é */
        {"caf\xc3\xa9", 4, 0},              /* 5 bytes, max 4 */
        {"\xe6\x97\xa5\xe6\x9c\xac", 6, 1}, /* 日本 */
        {"\xe6\x97\xa5\xe6\x9c\xac", 5, 0},
        {"\xc2\x80", 20, 1},         /* U+0080: a C1 control, not in the refused set */
        {"\xc0\xaf", 20, 0},         /* overlong '/' */
        {"\xc1\xbf", 20, 0},         /* overlong */
        {"\xe0\x80\xaf", 20, 0},     /* overlong '/' in 3 bytes */
        {"\xe0\x9f\xbf", 20, 0},     /* overlong U+07FF */
        {"\xe0\xa0\x80", 20, 1},     /* U+0800, shortest 3-byte */
        {"\xf0\x80\x80\xaf", 20, 0}, /* overlong in 4 bytes */
        {"\xf0\x8f\xbf\xbf", 20, 0}, /* overlong U+FFFF */
        {"\xed\xa0\x80", 20, 0},     /* U+D800 surrogate */
        {"\xed\xbf\xbf", 20, 0},     /* U+DFFF surrogate */
        {"\xed\x9f\xbf", 20, 1},     /* U+D7FF */
        {"\xee\x80\x80", 20, 1},     /* U+E000 */
        {"\xef\xbf\xbf", 20, 1},     /* U+FFFF */
        {"\xf0\x90\x80\x80", 20, 1}, /* U+10000 */
        {"\xf0\x9f\x98\x80", 20, 1}, /* U+1F600 */
        {"\xf4\x8f\xbf\xbf", 20, 1}, /* U+10FFFF */
        {"\xf4\x90\x80\x80", 20, 0}, /* U+110000 */
        {"\xf5\x80\x80\x80", 20, 0},
        {"\xf8\x88\x80\x80\x80", 20, 0},
        {"\xfe", 20, 0},
        {"\xff", 20, 0},
        {"\x80", 20, 0}, /* lone continuation */
        {"a\xbf", 20, 0},
        {"\xc3", 20, 0}, /* truncated sequences */
        {"a\xc3", 20, 0},
        {"\xe2\x82", 20, 0},
        {"\xf0\x9f\x98", 20, 0},
        {"\xc3(", 20, 0}, /* lead byte followed by ASCII */
        {"\xe2\x82(", 20, 0},
        {"\xc3\xa9\xa9", 20, 0}, /* one continuation too many */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (text_ok(cases[i].s, cases[i].max) != cases[i].ok)
            fail_msg("case %zu (max %zu): expected %d", i, cases[i].max, cases[i].ok);
}

/* ---- uuid_parse --------------------------------------------------------- */

static void test_uuid_parse(void **state)
{
    char out[37];
    assert_true(uuid_parse("6f1c2a9e-4b7d-4e5a-9c3b-2d8e1f0a7b64", out));
    assert_string_equal(out, "6f1c2a9e-4b7d-4e5a-9c3b-2d8e1f0a7b64");
    assert_true(uuid_parse("6F1C2A9E-4B7D-4E5A-9C3B-2D8E1F0A7B64", out));
    assert_string_equal(out, "6f1c2a9e-4b7d-4e5a-9c3b-2d8e1f0a7b64");
    assert_true(uuid_parse("00000000-0000-0000-0000-000000000000", NULL));

    static const char *const bad[] = {
        "",
        "6f1c2a9e-4b7d-4e5a-9c3b-2d8e1f0a7b6",   /* 35 */
        "6f1c2a9e-4b7d-4e5a-9c3b-2d8e1f0a7b645", /* 37 */
        "6f1c2a9e4b7d4e5a9c3b2d8e1f0a7b64",
        "6f1c2a9e-4b7d-4e5a-9c3b2d8e-1f0a7b64",
        "6f1c2a9e-4b7d-4e5a-9c3b-2d8e1f0a7b6g",
        "{6f1c2a9e-4b7d-4e5a-9c3b-2d8e1f0a7b64}",
        "urn:uuid:6f1c2a9e-4b7d-4e5a-9c3b-2d8e1f0a7b64",
        " 6f1c2a9e-4b7d-4e5a-9c3b-2d8e1f0a7b6",
        "6f1c2a9e_4b7d_4e5a_9c3b_2d8e1f0a7b64",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memcpy(out, "untouched", 10);
        if (uuid_parse(bad[i], out))
            fail_msg("\"%s\" accepted", bad[i]);
        assert_string_equal(out, "untouched");
    }
    assert_false(uuid_parse(NULL, out));
}

/* ---- json_text_depth ---------------------------------------------------- */

static void test_json_text_depth(void **state)
{
    static const struct {
        const char *text;
        int depth;
    } cases[] = {
        {"", 0},
        {"1", 0},
        {"\"x\"", 0},
        {"{}", 1},
        {"[]", 1},
        {"[][][]", 1},
        {"[[[]]]", 3},
        {"{\"a\":[1,{\"b\":[]}]}", 4},
        {"{\"a\":{\"b\":{}},\"c\":[]}", 3},
        {"[\"[[[[{{{{\"]", 1},         /* brackets inside a string */
        {"[\"\\\"[[[\"]", 1},          /* escaped quote does not end the string */
        {"[\"\\\\\",[[]]]", 3},        /* escaped backslash does */
        {"{\"k\\\"}\":[[\"]\"]]}", 3}, /* brackets and quotes in keys */
        {"]]]][", 1},                  /* stray closers do not go negative */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (json_text_depth(cases[i].text, strlen(cases[i].text)) != cases[i].depth)
            fail_msg("%s: depth %d, expected %d", cases[i].text,
                     json_text_depth(cases[i].text, strlen(cases[i].text)), cases[i].depth);

    /* Only buf[0..len) is read. */
    assert_int_equal(json_text_depth("[[[[", 2), 2);
    char deep[2001];
    memset(deep, '[', 1000);
    memset(deep + 1000, ']', 1000);
    deep[2000] = '\0';
    assert_int_equal(json_text_depth(deep, 2000), 1000);
}

/* ---- customers ---------------------------------------------------------- */

static vg_status decode_customer(const char *text, int is_patch, customer_input *out, vg_error *err)
{
    json_t *body = J(text);
    vg_status st = customer_decode(body, is_patch, TODAY, out, err);
    json_decref(body);
    return st;
}

static void test_customer_create_full(void **state)
{
    customer_input in;
    vg_error err = {0};
    vg_status st = decode_customer("{\"full_name\":\"  Ada Lovelace \", "
                                   "\"email\":\"ada@example.com\", \"country\":\"GB\", "
                                   "\"date_of_birth\":\"1990-04-17\", "
                                   "\"customer_type\":\"individual\", \"pep\":true, "
                                   "\"external_id\":\"CUST-0001_a:b\"}",
                                   0, &in, &err);
    if (st != VG_OK)
        fail_msg("refused: %s: %s", err.field, err.detail);
    assert_true(in.has_full_name);
    assert_string_equal(in.full_name, "Ada Lovelace"); /* trimmed */
    assert_true(in.has_email);
    assert_string_equal(in.email, "ada@example.com");
    assert_true(in.has_country);
    assert_string_equal(in.country, "GB");
    assert_true(in.has_date_of_birth);
    assert_string_equal(in.date_of_birth, "1990-04-17");
    assert_true(in.has_customer_type);
    assert_string_equal(in.customer_type, "individual");
    assert_true(in.has_pep);
    assert_int_equal(in.pep, 1);
    assert_true(in.has_external_id);
    assert_string_equal(in.external_id, "CUST-0001_a:b");
}

static void test_customer_create_minimal(void **state)
{
    customer_input in;
    vg_error err = {0};
    assert_int_equal(decode_customer("{\"full_name\":\"Zo\u00eb \u00c5str\u00f6m "
                                     "\\u5c71\\u7530 \\ud83d\\ude00\"}",
                                     0, &in, &err),
                     VG_OK);
    assert_string_equal(in.full_name, "Zo\u00eb \u00c5str\u00f6m \u5c71\u7530 \U0001F600");
    assert_false(in.has_email);
    assert_false(in.has_country);
    assert_false(in.has_date_of_birth);
    assert_false(in.has_customer_type);
    assert_false(in.has_pep);
    assert_false(in.has_external_id);

    /* Boundaries that are still accepted. */
    char body[1024];
    snprintf(body, sizeof body, "{\"full_name\":\"%s\"}", repeat('n', VG_NAME_MAX));
    assert_int_equal(decode_customer(body, 0, &in, &err), VG_OK);
    snprintf(body, sizeof body, "{\"full_name\":\"x\",\"external_id\":\"%s\"}",
             repeat('e', VG_EXTID_MAX));
    assert_int_equal(decode_customer(body, 0, &in, &err), VG_OK);
    snprintf(body, sizeof body, "{\"full_name\":\"x\",\"email\":\"%s@example.com\"}",
             repeat('m', VG_EMAIL_MAX - 12));
    assert_int_equal(decode_customer(body, 0, &in, &err), VG_OK);
    assert_int_equal(strlen(in.email), VG_EMAIL_MAX);
    assert_int_equal(
        decode_customer("{\"full_name\":\"x\",\"date_of_birth\":\"2026-11-15\"}", 0, &in, &err),
        VG_OK); /* born today */
    assert_int_equal(
        decode_customer("{\"full_name\":\"x\",\"date_of_birth\":\"1900-01-01\"}", 0, &in, &err),
        VG_OK);
    assert_int_equal(
        decode_customer("{\"full_name\":\"x\",\"date_of_birth\":\"2024-02-29\"}", 0, &in, &err),
        VG_OK);
    assert_int_equal(
        decode_customer("{\"full_name\":\"x\",\"customer_type\":\"business\",\"pep\":false}", 0,
                        &in, &err),
        VG_OK);
    assert_string_equal(in.customer_type, "business");
    assert_true(in.has_pep);
    assert_int_equal(in.pep, 0);
    static const char *const emails[] = {"a@b.co", "first.last+tag@sub.example.org",
                                         "x_y@d-1.example"};
    for (size_t i = 0; i < sizeof emails / sizeof emails[0]; i++) {
        snprintf(body, sizeof body, "{\"full_name\":\"x\",\"email\":\"%s\"}", emails[i]);
        if (decode_customer(body, 0, &in, &err) != VG_OK)
            fail_msg("%s refused: %s", emails[i], err.detail);
    }
}

static void test_customer_create_refusals(void **state)
{
    char long_name[512], long_email[512], long_extid[512];
    snprintf(long_name, sizeof long_name, "{\"full_name\":\"%s\"}", repeat('n', VG_NAME_MAX + 1));
    snprintf(long_email, sizeof long_email, "{\"full_name\":\"x\",\"email\":\"%s@example.com\"}",
             repeat('m', VG_EMAIL_MAX - 11));
    snprintf(long_extid, sizeof long_extid, "{\"full_name\":\"x\",\"external_id\":\"%s\"}",
             repeat('e', VG_EXTID_MAX + 1));

    const refusal cases[] = {
        {"[]", "body", "must be a JSON object"},
        {"\"Ada\"", "body", "must be a JSON object"},
        {"null", "body", "must be a JSON object"},
        {"42", "body", "must be a JSON object"},
        {"{}", "full_name", "is required"},
        {"{\"email\":\"a@b.co\"}", "full_name", "is required"},
        {"{\"full_name\":\"Ada\",\"amout\":1}", "amout", "unknown field"},
        {"{\"full_name\":\"Ada\",\"Email\":\"a@b.co\"}", "Email", "unknown field"},
        /* an unknown key is reported before a bad known one */
        {"{\"full_name\":5,\"zzz\":1}", "zzz", "unknown field"},
        /* known members are checked in a fixed order */
        {"{\"email\":\"bad\",\"full_name\":\"\"}", "full_name", "must not be blank"},
        {"{\"full_name\":\"   \"}", "full_name", "must not be blank"},
        {"{\"full_name\":\"\"}", "full_name", "must not be blank"},
        {"{\"full_name\":42}", "full_name", "must be a string"},
        {"{\"full_name\":[\"Ada\"]}", "full_name", "must be a string"},
        {"{\"full_name\":null}", "full_name", "must be a string"},
        {"{\"full_name\":\"A\\u0001\"}", "full_name", "control characters"},
        {"{\"full_name\":\"A\\u007f\"}", "full_name", "control characters"},
        {"{\"full_name\":\"A\\nB\"}", "full_name", "control characters"},
        {"{\"full_name\":\"A\\u0000B\"}", "full_name", "control characters"},
        {long_name, "full_name", "at most 200 bytes"},
        {"{\"full_name\":\"x\",\"email\":null}", "email", "must be a string"},
        {"{\"full_name\":\"x\",\"email\":\"ada\"}", "email", "email address"},
        {"{\"full_name\":\"x\",\"email\":\"a@b\"}", "email", "email address"},
        {"{\"full_name\":\"x\",\"email\":\"@b.co\"}", "email", "email address"},
        {"{\"full_name\":\"x\",\"email\":\"a@\"}", "email", "email address"},
        {"{\"full_name\":\"x\",\"email\":\"a@@b.co\"}", "email", "email address"},
        {"{\"full_name\":\"x\",\"email\":\"a@b.co@d.ef\"}", "email", "email address"},
        {"{\"full_name\":\"x\",\"email\":\"a b@c.de\"}", "email", "email address"},
        {"{\"full_name\":\"x\",\"email\":\"a@.com\"}", "email", "email address"},
        {"{\"full_name\":\"x\",\"email\":\"a@com.\"}", "email", "email address"},
        {long_email, "email", "at most 254 bytes"},
        {"{\"full_name\":\"x\",\"country\":\"de\"}", "country", "ISO 3166-1"},
        {"{\"full_name\":\"x\",\"country\":\"XK\"}", "country", "ISO 3166-1"},
        {"{\"full_name\":\"x\",\"country\":\"DEU\"}", "country", "ISO 3166-1"},
        {"{\"full_name\":\"x\",\"country\":\"\"}", "country", "ISO 3166-1"},
        {"{\"full_name\":\"x\",\"country\":\"DE\\u0000\"}", "country", "control characters"},
        {"{\"full_name\":\"x\",\"country\":49}", "country", "must be a string"},
        {"{\"full_name\":\"x\",\"date_of_birth\":\"2026-11-16\"}", "date_of_birth",
         "must not be in the future"},
        {"{\"full_name\":\"x\",\"date_of_birth\":\"1899-12-31\"}", "date_of_birth", "1900"},
        {"{\"full_name\":\"x\",\"date_of_birth\":\"2023-02-29\"}", "date_of_birth",
         "calendar date"},
        {"{\"full_name\":\"x\",\"date_of_birth\":\"17/04/1990\"}", "date_of_birth", "YYYY-MM-DD"},
        {"{\"full_name\":\"x\",\"date_of_birth\":\"1990-04-17T00:00:00Z\"}", "date_of_birth",
         "YYYY-MM-DD"},
        {"{\"full_name\":\"x\",\"date_of_birth\":19900417}", "date_of_birth", "must be a string"},
        {"{\"full_name\":\"x\",\"customer_type\":\"person\"}", "customer_type", "individual"},
        {"{\"full_name\":\"x\",\"customer_type\":\"Business\"}", "customer_type", "business"},
        {"{\"full_name\":\"x\",\"customer_type\":1}", "customer_type", "must be a string"},
        {"{\"full_name\":\"x\",\"pep\":\"true\"}", "pep", "true or false"},
        {"{\"full_name\":\"x\",\"pep\":1}", "pep", "true or false"},
        {"{\"full_name\":\"x\",\"pep\":null}", "pep", "true or false"},
        {"{\"full_name\":\"x\",\"external_id\":\"\"}", "external_id", "printable ASCII"},
        {"{\"full_name\":\"x\",\"external_id\":\"has space\"}", "external_id", "printable ASCII"},
        {"{\"full_name\":\"x\",\"external_id\":\"tab\\t\"}", "external_id", "printable ASCII"},
        {"{\"full_name\":\"x\",\"external_id\":\"caf\u00e9\"}", "external_id", "printable ASCII"},
        {"{\"full_name\":\"x\",\"external_id\":\"a\\u0000b\"}", "external_id", "control"},
        {"{\"full_name\":\"x\",\"external_id\":7}", "external_id", "must be a string"},
        {long_extid, "external_id", "printable ASCII"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        customer_input in;
        memset(&in, 0x5A, sizeof in);
        vg_error err = {0};
        vg_status st = decode_customer(cases[i].body, 0, &in, &err);
        check_refusal(&cases[i], st, &err);
        assert_int_equal(in.has_full_name, 0x5A5A5A5A); /* out untouched on failure */
    }
}

static void test_customer_invalid_utf8_is_refused(void **state)
{
    /* jansson refuses invalid UTF-8 in JSON text, but a json_t built in code
     * can carry any bytes; the decoder must not trust its input's origin. */
    static const char *const bad[] = {"\xc0\xaf", "\xed\xa0\x80", "abc\xe2\x82",
                                      "\xf4\x90\x80\x80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *body = json_object();
        json_object_set_new(body, "full_name", json_stringn_nocheck(bad[i], strlen(bad[i])));
        customer_input in;
        vg_error err = {0};
        assert_int_equal(customer_decode(body, 0, TODAY, &in, &err), VG_E_INVALID);
        assert_string_equal(err.field, "full_name");
        assert_non_null(strstr(err.detail, "UTF-8"));
        json_decref(body);
    }
}

static void test_customer_patch(void **state)
{
    customer_input in;
    vg_error err = {0};

    assert_int_equal(decode_customer("{\"pep\":false}", 1, &in, &err), VG_OK);
    assert_true(in.has_pep);
    assert_int_equal(in.pep, 0);
    assert_false(in.has_full_name); /* not required on patch */

    assert_int_equal(decode_customer("{\"email\":null}", 1, &in, &err), VG_OK);
    assert_true(in.has_email);
    assert_string_equal(in.email, "");

    assert_int_equal(
        decode_customer("{\"country\":null,\"date_of_birth\":null,\"full_name\":\" Bo \"}", 1, &in,
                        &err),
        VG_OK);
    assert_true(in.has_country);
    assert_string_equal(in.country, "");
    assert_true(in.has_date_of_birth);
    assert_string_equal(in.date_of_birth, "");
    assert_true(in.has_full_name);
    assert_string_equal(in.full_name, "Bo");
    assert_false(in.has_email);

    assert_int_equal(decode_customer("{\"country\":\"FR\"}", 1, &in, &err), VG_OK);
    assert_string_equal(in.country, "FR");

    const refusal cases[] = {
        {"{}", "body", "no fields to update"},
        {"[]", "body", "must be a JSON object"},
        {"{\"external_id\":\"x\"}", "external_id", "cannot be changed"},
        {"{\"external_id\":null}", "external_id", "cannot be changed"},
        {"{\"full_name\":null}", "full_name", "cannot be cleared"},
        {"{\"full_name\":\" \"}", "full_name", "must not be blank"},
        {"{\"customer_type\":null}", "customer_type", "must be a string"},
        {"{\"pep\":null}", "pep", "true or false"},
        {"{\"email\":\"nope\"}", "email", "email address"},
        {"{\"country\":\"ZZ\"}", "country", "ISO 3166-1"},
        {"{\"date_of_birth\":\"3000-01-01\"}", "date_of_birth", "future"},
        {"{\"nickname\":\"x\"}", "nickname", "unknown field"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(&err, 0, sizeof err);
        vg_status st = decode_customer(cases[i].body, 1, &in, &err);
        check_refusal(&cases[i], st, &err);
    }
}

/* ---- transactions ------------------------------------------------------- */

static const char good_tx[] = "{\"external_id\":\"TX-1\","
                              "\"customer_id\":\"6F1C2A9E-4B7D-4E5A-9C3B-2D8E1F0A7B64\","
                              "\"amount\":\"125.5\",\"currency\":\"USD\",\"direction\":\"in\","
                              "\"channel\":\"wire\","
                              "\"occurred_at\":\"2026-11-15T13:00:00.25+01:00\"}";

/* good_tx with `key` set to the JSON `value`, or removed when `value` is
 * NULL; then decoded. */
static vg_status decode_tx_with(const char *key, const char *value, tx_input *out, vg_error *err)
{
    json_t *item = J(good_tx);
    if (key && value)
        json_object_set_new(item, key, J(value));
    else if (key)
        json_object_del(item, key);
    vg_status st = tx_decode(item, NOW_US, out, err);
    json_decref(item);
    return st;
}

static void test_tx_good(void **state)
{
    tx_input tx;
    vg_error err = {0};
    if (decode_tx_with(NULL, NULL, &tx, &err) != VG_OK)
        fail_msg("refused: %s: %s", err.field, err.detail);
    assert_string_equal(tx.external_id, "TX-1");
    assert_string_equal(tx.customer_id, "6f1c2a9e-4b7d-4e5a-9c3b-2d8e1f0a7b64");
    assert_string_equal(tx.amount, "125.50");
    assert_true(tx.amount_minor == 12550);
    assert_string_equal(tx.currency, "USD");
    assert_string_equal(tx.direction, "in");
    assert_string_equal(tx.channel, "wire");
    assert_string_equal(tx.occurred_at, "2026-11-15T12:00:00.250000Z");
    assert_true(tx.occurred_us == NOW_US + 250000);
    assert_false(tx.has_counterparty);
    assert_string_equal(tx.cp_country, "");

    assert_int_equal(decode_tx_with("counterparty",
                                    "{\"name\":\" ACME GmbH \",\"account\":"
                                    "\"DE89370400440532013000\",\"country\":\"DE\"}",
                                    &tx, &err),
                     VG_OK);
    assert_true(tx.has_counterparty);
    assert_string_equal(tx.cp_name, "ACME GmbH");
    assert_string_equal(tx.cp_account, "DE89370400440532013000");
    assert_string_equal(tx.cp_country, "DE");

    assert_int_equal(decode_tx_with("counterparty", "{}", &tx, &err), VG_OK);
    assert_false(tx.has_counterparty);
    assert_int_equal(decode_tx_with("counterparty", "{\"country\":\"JP\"}", &tx, &err), VG_OK);
    assert_true(tx.has_counterparty);
    assert_string_equal(tx.cp_name, "");

    /* Exactly 24 hours ahead of "now" is still accepted. */
    assert_int_equal(decode_tx_with("occurred_at", "\"2026-11-16T12:00:00Z\"", &tx, &err), VG_OK);
    assert_int_equal(decode_tx_with("direction", "\"out\"", &tx, &err), VG_OK);
    static const char *const channels[] = {"\"cash\"", "\"wire\"",   "\"card\"",
                                           "\"ach\"",  "\"crypto\"", "\"other\""};
    for (size_t i = 0; i < sizeof channels / sizeof channels[0]; i++)
        assert_int_equal(decode_tx_with("channel", channels[i], &tx, &err), VG_OK);
}

static void test_tx_amount_follows_currency(void **state)
{
    static const struct {
        const char *currency, *amount, *canonical;
        int64_t minor;
    } cases[] = {
        {"\"JPY\"", "\"1000\"", "1000", 1000},
        {"\"BHD\"", "\"1.5\"", "1.500", 1500},
        {"\"CLF\"", "\"0.0001\"", "0.0001", 1},
        {"\"EUR\"", "\"007\"", "7.00", 700},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *item = J(good_tx);
        json_object_set_new(item, "currency", J(cases[i].currency));
        json_object_set_new(item, "amount", J(cases[i].amount));
        tx_input tx;
        vg_error err = {0};
        if (tx_decode(item, NOW_US, &tx, &err) != VG_OK)
            fail_msg("%s %s refused: %s", cases[i].currency, cases[i].amount, err.detail);
        assert_string_equal(tx.amount, cases[i].canonical);
        assert_true(tx.amount_minor == cases[i].minor);
        json_decref(item);
    }
}

static void test_tx_refusals(void **state)
{
    static const struct {
        const char *key, *value; /* value NULL: member removed */
        const char *field, *detail;
    } cases[] = {
        {"amount", "125.5", "amount", "must be a decimal string, e.g. \"125.50\""},
        {"amount", "125", "amount", "must be a decimal string, e.g. \"125.50\""},
        {"amount", "true", "amount", "must be a decimal string"},
        {"amount", "\"0\"", "amount", "greater than zero"},
        {"amount", "\"1e3\"", "amount", "decimal string"},
        {"amount", "\"-5\"", "amount", "decimal string"},
        {"amount", "\"1.001\"", "amount", "decimal places"},
        {"amount", "\"1000000000000\"", "amount", "less than"},
        {"amount", NULL, "amount", "is required"},
        {"currency", "\"usd\"", "currency", "unknown currency"},
        {"currency", "\"XXX\"", "currency", "unknown currency"},
        {"currency", "\"ANG\"", "currency", "unknown currency"},
        {"currency", "840", "currency", "must be a string"},
        {"currency", NULL, "currency", "is required"},
        {"customer_id", "\"not-a-uuid\"", "customer_id", "UUID"},
        {"customer_id", "\"6f1c2a9e4b7d4e5a9c3b2d8e1f0a7b64\"", "customer_id", "UUID"},
        {"customer_id", "42", "customer_id", "must be a string"},
        {"customer_id", NULL, "customer_id", "is required"},
        {"external_id", "\"with space\"", "external_id", "printable ASCII"},
        {"external_id", NULL, "external_id", "is required"},
        {"direction", "\"IN\"", "direction", "\"in\" or \"out\""},
        {"direction", "\"inbound\"", "direction", "\"in\" or \"out\""},
        {"direction", NULL, "direction", "is required"},
        {"channel", "\"swift\"", "channel", "one of cash, wire, card, ach, crypto, other"},
        {"channel", "\"\"", "channel", "one of"},
        {"channel", "null", "channel", "must be a string"},
        {"occurred_at", "\"2026-11-15\"", "occurred_at", "RFC 3339"},
        {"occurred_at", "\"2026-11-15T12:00:00\"", "occurred_at", "RFC 3339"},
        {"occurred_at", "1794744000", "occurred_at", "must be a string"},
        {"occurred_at", "\"2026-11-16T12:00:00.000001Z\"", "occurred_at",
         "more than 24 hours in the future"},
        {"occurred_at", NULL, "occurred_at", "is required"},
        {"counterparty", "\"ACME\"", "counterparty", "must be a JSON object"},
        {"counterparty", "null", "counterparty", "must be a JSON object"},
        {"counterparty", "[]", "counterparty", "must be a JSON object"},
        {"counterparty", "{\"iban\":\"x\"}", "counterparty.iban", "unknown field"},
        {"counterparty", "{\"country\":\"XX\"}", "counterparty.country", "ISO 3166-1"},
        {"counterparty", "{\"country\":\"de\"}", "counterparty.country", "ISO 3166-1"},
        {"counterparty", "{\"name\":\"  \"}", "counterparty.name", "must not be blank"},
        {"counterparty", "{\"name\":1}", "counterparty.name", "must be a string"},
        {"counterparty", "{\"name\":\"a\\u0002\"}", "counterparty.name", "control characters"},
        {"counterparty", "{\"account\":\"\"}", "counterparty.account", "must not be empty"},
        {"counterparty",
         "{\"account\":\"12345678901234567890123456789012345678901234567890123456789012345\"}",
         "counterparty.account", "at most 64 bytes"},
        {"amout", "\"1.00\"", "amout", "unknown field"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tx_input tx;
        memset(&tx, 0x5A, sizeof tx);
        vg_error err = {0};
        vg_status st = decode_tx_with(cases[i].key, cases[i].value, &tx, &err);
        char label[256];
        snprintf(label, sizeof label, "%s=%s", cases[i].key,
                 cases[i].value ? cases[i].value : "(removed)");
        const refusal r = {label, cases[i].field, cases[i].detail};
        check_refusal(&r, st, &err);
        assert_int_equal(tx.external_id[0], 0x5A); /* out untouched on failure */
    }
}

static void test_tx_currency_error_wins_over_amount(void **state)
{
    /* With both wrong, the amount cannot even be judged: report the currency. */
    json_t *item = J(good_tx);
    json_object_set_new(item, "currency", J("\"usd\""));
    json_object_set_new(item, "amount", J("12.5"));
    tx_input tx;
    vg_error err = {0};
    assert_int_equal(tx_decode(item, NOW_US, &tx, &err), VG_E_INVALID);
    assert_string_equal(err.field, "currency");
    assert_string_equal(err.detail, "unknown currency");
    json_decref(item);

    /* JPY has no minor unit: "10.5" is an amount error, named as such. */
    item = J(good_tx);
    json_object_set_new(item, "currency", J("\"JPY\""));
    json_object_set_new(item, "amount", J("\"10.5\""));
    assert_int_equal(tx_decode(item, NOW_US, &tx, &err), VG_E_INVALID);
    assert_string_equal(err.field, "amount");
    assert_non_null(strstr(err.detail, "whole number"));
    json_decref(item);
}

static void test_tx_item_must_be_object(void **state)
{
    static const char *const items[] = {"[1]", "\"tx\"", "null", "3.5"};
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
        json_t *item = J(items[i]);
        tx_input tx;
        vg_error err = {0};
        strcpy(err.field, "stale");
        assert_int_equal(tx_decode(item, NOW_US, &tx, &err), VG_E_INVALID);
        assert_string_equal(err.field, "");
        assert_string_equal(err.detail, "must be a JSON object");
        json_decref(item);
    }
}

/* Found by fuzz/fuzz_customer (fuzz/regressions/customer/non-object-body):
 * a body that is JSON but not an object was refused without naming a field,
 * so the problem+json had no "field" for the client to fix. */
static void test_customer_non_object_names_body(void **state)
{
    static const char *const bodies[] = {"[{\"full_name\": \"array\"}]", "[]", "\"x\"", "7"};
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        for (int is_patch = 0; is_patch <= 1; is_patch++) {
            json_t *body = J(bodies[i]);
            customer_input in;
            vg_error err = {0};
            assert_int_equal(customer_decode(body, is_patch, TODAY, &in, &err), VG_E_INVALID);
            assert_string_equal(err.field, "body");
            assert_string_equal(err.detail, "must be a JSON object");
            json_decref(body);
        }
    }
}

/* Found with fuzz/fuzz_patch (fuzz/regressions/patch/empty-member-name): an
 * unknown member with an empty name must still name a field: the object
 * holding it ("body" at the top, "counterparty" inside a transaction). */
static void test_empty_member_name_names_its_object(void **state)
{
    json_t *body = J("{\"\": 1, \"full_name\": \"Ada\"}");
    customer_input in;
    vg_error err = {0};
    assert_int_equal(customer_decode(body, 0, TODAY, &in, &err), VG_E_INVALID);
    assert_string_equal(err.field, "body");
    assert_non_null(strstr(err.detail, "empty name"));
    json_decref(body);

    json_t *item = J("{\"external_id\": \"e-1\", \"customer_id\":"
                     " \"6f1c1e5a-8d2b-4c3a-9e7f-0123456789ab\", \"amount\": \"1.00\","
                     " \"currency\": \"USD\", \"direction\": \"in\", \"channel\": \"cash\","
                     " \"occurred_at\": \"2026-11-15T10:00:00Z\", \"counterparty\": {\"\": 1}}");
    tx_input tx;
    assert_int_equal(tx_decode(item, NOW_US, &tx, &err), VG_E_INVALID);
    assert_string_equal(err.field, "counterparty");
    json_decref(item);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_ok),
        cmocka_unit_test(test_uuid_parse),
        cmocka_unit_test(test_json_text_depth),
        cmocka_unit_test(test_customer_create_full),
        cmocka_unit_test(test_customer_create_minimal),
        cmocka_unit_test(test_customer_create_refusals),
        cmocka_unit_test(test_customer_invalid_utf8_is_refused),
        cmocka_unit_test(test_customer_patch),
        cmocka_unit_test(test_tx_good),
        cmocka_unit_test(test_tx_amount_follows_currency),
        cmocka_unit_test(test_tx_refusals),
        cmocka_unit_test(test_tx_currency_error_wins_over_amount),
        cmocka_unit_test(test_tx_item_must_be_object),
        cmocka_unit_test(test_customer_non_object_names_body),
        cmocka_unit_test(test_empty_member_name_names_its_object),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
