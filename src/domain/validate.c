/*
 * validate.c — request bodies to checked domain inputs.
 *
 * Every body is a JSON object described by a table of members: name, decoder,
 * whether it is required. decode_object() walks a table in two passes: first
 * it refuses any key the table does not know (so a typo such as "amout" is
 * reported by name instead of silently ignored), then it decodes the known
 * members in table order, so that for a given body the error reported is
 * always the same one. A decoder writes into a local struct that reaches the
 * caller only when the whole body is valid.
 *
 * Strings are checked as bytes: valid UTF-8 (no overlong forms, surrogates or
 * code points past U+10FFFF), no control characters, no embedded NUL, and a
 * maximum length in bytes, since that is what the database column stores.
 */
#include "domain/validate.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "domain/iso.h"
#include "domain/timeparse.h"

/* How far in the future a transaction may claim to have happened: clock skew
 * between a client and us, and time zones done wrong, but not more. */
#define TX_FUTURE_SLACK_US (24LL * 3600 * 1000000)
#define FIELD_MAX          sizeof(((vg_error *)0)->field)

typedef vg_status (*member_fn)(const json_t *v, const char *field, void *dst, const void *ctx,
                               vg_error *err);

/* One member of a JSON object: its key, how to decode it into the caller's
 * struct, and whether a body without it is refused. */
typedef struct member {
    const char *name;
    member_fn decode;
    int required;
} member;

static const char *const customer_types[] = {"individual", "business", NULL};
static const char *const directions[] = {"in", "out", NULL};
static const char *const channels[] = {"cash", "wire", "card", "ach", "crypto", "other", NULL};

/* ---- UTF-8 and plain-text checks ---------------------------------------- */

static int in_range(unsigned char c, unsigned char lo, unsigned char hi)
{
    return c >= lo && c <= hi;
}

/* Length of the well-formed, non-control UTF-8 sequence at `p`, or 0. The
 * second-byte ranges are those of RFC 3629 section 4: they exclude overlong
 * forms (E0 80..9F, F0 80..8F), UTF-16 surrogates (ED A0..BF) and code points
 * above U+10FFFF (F4 90..). A NUL inside a sequence fails the range test, so
 * a truncated sequence is never read past the terminator. */
static int utf8_sequence(const unsigned char *p)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return c < 0x20 || c == 0x7F ? 0 : 1;
    if (c < 0xC2) /* stray continuation byte, or overlong C0/C1 lead */
        return 0;
    if (c < 0xE0)
        return in_range(p[1], 0x80, 0xBF) ? 2 : 0;
    if (c < 0xF0) {
        unsigned char lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return in_range(p[1], lo, hi) && in_range(p[2], 0x80, 0xBF) ? 3 : 0;
    }
    if (c < 0xF5) {
        unsigned char lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return in_range(p[1], lo, hi) && in_range(p[2], 0x80, 0xBF) && in_range(p[3], 0x80, 0xBF)
                   ? 4
                   : 0;
    }
    return 0;
}

int text_ok(const char *s, size_t max_bytes)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (p[i] != '\0') {
        int n = utf8_sequence(p + i);
        if (n == 0)
            return 0;
        i += (size_t)n;
        if (i > max_bytes)
            return 0;
    }
    return 1;
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int uuid_parse(const char *s, char out[37])
{
    char lower[37];
    if (!s)
        return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
            lower[i] = '-';
        } else if (is_hex(s[i])) {
            lower[i] = s[i] >= 'A' && s[i] <= 'F' ? (char)(s[i] - 'A' + 'a') : s[i];
        } else {
            return 0; /* also stops at the NUL of a short string */
        }
    }
    if (s[36] != '\0')
        return 0;
    lower[36] = '\0';
    if (out)
        memcpy(out, lower, sizeof lower);
    return 1;
}

int json_text_depth(const char *buf, size_t len)
{
    int depth = 0, max = 0, in_string = 0;
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (in_string) {
            if (c == '\\')
                i++; /* the escaped character, '"' included, is content */
            else if (c == '"')
                in_string = 0;
            continue;
        }
        if (c == '"') {
            in_string = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max)
                max = depth;
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return max;
}

/* 1 for a plausible address: one '@', non-empty local part, a domain with a
 * '.' that is neither its first nor last character, no spaces. Deliverability
 * is for a confirmation mail to find out, not a regular expression. */
static int email_ok(const char *s)
{
    const char *at = strchr(s, '@');
    if (!at || at == s || strchr(at + 1, '@') || strchr(s, ' '))
        return 0;
    const char *domain = at + 1;
    size_t dlen = strlen(domain);
    return dlen >= 3 && domain[0] != '.' && domain[dlen - 1] != '.' && strchr(domain, '.');
}

/* ---- member decoders shared by all bodies ------------------------------- */

/* The string value of `v` (its length in *len), or NULL after recording why
 * not: `v` is not a string, or holds an embedded NUL (which jansson can
 * represent, but C strings and PostgreSQL text cannot). */
static const char *get_string(const json_t *v, const char *field, size_t *len, vg_error *err)
{
    if (!json_is_string(v)) {
        vg_fail(err, VG_E_INVALID, field, "must be a string");
        return NULL;
    }
    const char *s = json_string_value(v);
    *len = json_string_length(v);
    if (strlen(s) != *len) {
        vg_fail(err, VG_E_INVALID, field, "must not contain control characters");
        return NULL;
    }
    return s;
}

/* Free text of at most `size - 1` bytes, copied into dst[size]. */
static vg_status get_text(const json_t *v, const char *field, char *dst, size_t size, vg_error *err)
{
    size_t len;
    const char *s = get_string(v, field, &len, err);
    if (!s)
        return VG_E_INVALID;
    if (len > size - 1)
        return vg_fail(err, VG_E_INVALID, field, "must be at most %zu bytes", size - 1);
    if (!text_ok(s, size - 1))
        return vg_fail(err, VG_E_INVALID, field, "must be valid UTF-8 without control characters");
    memcpy(dst, s, len + 1);
    return VG_OK;
}

/* Free text with leading and trailing spaces removed, which must leave
 * something: a name of only spaces is no name. */
static vg_status get_name(const json_t *v, const char *field, char *dst, size_t size, vg_error *err)
{
    vg_status st = get_text(v, field, dst, size, err);
    if (st != VG_OK)
        return st;
    size_t start = strspn(dst, " "), end = strlen(dst);
    while (end > start && dst[end - 1] == ' ')
        end--;
    if (end == start)
        return vg_fail(err, VG_E_INVALID, field, "must not be blank");
    memmove(dst, dst + start, end - start);
    dst[end - start] = '\0';
    return VG_OK;
}

static vg_status get_email(const json_t *v, const char *field, char *dst, size_t size,
                           vg_error *err)
{
    vg_status st = get_text(v, field, dst, size, err);
    if (st != VG_OK)
        return st;
    if (!email_ok(dst))
        return vg_fail(err, VG_E_INVALID, field,
                       "must be an email address, e.g. \"name@example.com\"");
    return VG_OK;
}

/* A code that `valid` accepts (a country, a currency), copied into dst[size]. */
static vg_status get_code(const json_t *v, const char *field, int (*valid)(const char *),
                          const char *detail, char *dst, size_t size, vg_error *err)
{
    size_t len;
    const char *s = get_string(v, field, &len, err);
    if (!s)
        return VG_E_INVALID;
    if (!valid(s))
        return vg_fail(err, VG_E_INVALID, field, "%s", detail);
    assert(len < size);
    memcpy(dst, s, len + 1);
    return VG_OK;
}

static vg_status get_country(const json_t *v, const char *field, char dst[3], vg_error *err)
{
    return get_code(v, field, iso_country_valid,
                    "must be an ISO 3166-1 alpha-2 country code in upper case, e.g. \"DE\"", dst, 3,
                    err);
}

static int currency_known(const char *code)
{
    return iso_currency_exponent(code) >= 0;
}

/* The client's own identifier: 1..VG_EXTID_MAX printable ASCII bytes
 * without spaces, so it can be shown, logged and typed back unambiguously. */
static vg_status get_external_id(const json_t *v, const char *field, char dst[VG_EXTID_MAX + 1],
                                 vg_error *err)
{
    size_t len;
    const char *s = get_string(v, field, &len, err);
    if (!s)
        return VG_E_INVALID;
    int ok = len >= 1 && len <= VG_EXTID_MAX;
    for (size_t i = 0; ok && i < len; i++)
        ok = s[i] >= 0x21 && s[i] <= 0x7E;
    if (!ok)
        return vg_fail(err, VG_E_INVALID, field,
                       "must be 1 to %d printable ASCII characters without spaces", VG_EXTID_MAX);
    memcpy(dst, s, len + 1);
    return VG_OK;
}

/* One of the NULL-terminated `allowed` words, copied into dst[size]. */
static vg_status get_enum(const json_t *v, const char *field, const char *const *allowed,
                          const char *detail, char *dst, size_t size, vg_error *err)
{
    size_t len;
    const char *s = get_string(v, field, &len, err);
    if (!s)
        return VG_E_INVALID;
    for (; *allowed; allowed++) {
        if (strcmp(s, *allowed) == 0) {
            assert(len < size);
            memcpy(dst, s, len + 1);
            return VG_OK;
        }
    }
    return vg_fail(err, VG_E_INVALID, field, "%s", detail);
}

/* Writes "<where>.<name>" (or just "<name>" at the top level) into field. */
static void member_field(char field[FIELD_MAX], const char *where, const char *name)
{
    snprintf(field, FIELD_MAX, "%s%s%s", where, *where ? "." : "", name);
}

/* Decodes object `obj` (found at `where`, "" for the body itself) through the
 * `n` members of the table into `dst`. Refuses a non-object, an unknown key,
 * and — when `enforce_required` — a missing required member. Counts the
 * members present in *present. */
static vg_status decode_object(const json_t *obj, const char *where, const member *members,
                               size_t n, int enforce_required, void *dst, const void *ctx,
                               size_t *present, vg_error *err)
{
    char field[FIELD_MAX];
    if (!json_is_object(obj))
        return vg_fail(err, VG_E_INVALID, where, "must be a JSON object");

    const char *key;
    json_t *value;
    /* jansson's iteration API takes a non-const object; nothing is modified. */
    json_object_foreach((json_t *)obj, key, value)
    {
        size_t i = 0;
        while (i < n && strcmp(key, members[i].name) != 0)
            i++;
        if (i == n && !key[0]) /* no name to report: name the object holding it */
            return vg_fail(err, VG_E_INVALID, where,
                           "unknown field \"\" (a member with an "
                           "empty name)");
        if (i == n) {
            member_field(field, where, key);
            return vg_fail(err, VG_E_INVALID, field, "unknown field");
        }
    }

    *present = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_object_get(obj, members[i].name);
        member_field(field, where, members[i].name);
        if (!v) {
            if (enforce_required && members[i].required)
                return vg_fail(err, VG_E_INVALID, field, "is required");
            continue;
        }
        (*present)++;
        vg_status st = members[i].decode(v, field, dst, ctx, err);
        if (st != VG_OK)
            return st;
    }
    return VG_OK;
}

/* ---- customers ----------------------------------------------------------- */

typedef struct customer_ctx {
    int is_patch;
    int32_t today_days;
} customer_ctx;

/* A JSON null on a patch clears an optional member. */
static int clears(const json_t *v, const customer_ctx *c)
{
    return c->is_patch && json_is_null(v);
}

static vg_status customer_full_name(const json_t *v, const char *field, void *dst, const void *ctx,
                                    vg_error *err)
{
    customer_input *in = dst;
    if (clears(v, ctx))
        return vg_fail(err, VG_E_INVALID, field, "cannot be cleared");
    in->has_full_name = 1;
    return get_name(v, field, in->full_name, sizeof in->full_name, err);
}

static vg_status customer_email(const json_t *v, const char *field, void *dst, const void *ctx,
                                vg_error *err)
{
    customer_input *in = dst;
    in->has_email = 1;
    return clears(v, ctx) ? VG_OK : get_email(v, field, in->email, sizeof in->email, err);
}

static vg_status customer_country(const json_t *v, const char *field, void *dst, const void *ctx,
                                  vg_error *err)
{
    customer_input *in = dst;
    in->has_country = 1;
    return clears(v, ctx) ? VG_OK : get_country(v, field, in->country, err);
}

static vg_status customer_date_of_birth(const json_t *v, const char *field, void *dst,
                                        const void *ctx, vg_error *err)
{
    customer_input *in = dst;
    const customer_ctx *c = ctx;
    in->has_date_of_birth = 1;
    if (clears(v, c))
        return VG_OK;
    size_t len;
    int32_t days;
    const char *s = get_string(v, field, &len, err);
    if (!s)
        return VG_E_INVALID;
    vg_status st = date_parse(s, field, &days, err); /* also refuses years before 1900 */
    if (st != VG_OK)
        return st;
    if (days > c->today_days)
        return vg_fail(err, VG_E_INVALID, field, "must not be in the future");
    memcpy(in->date_of_birth, s, len + 1);
    return VG_OK;
}

static vg_status customer_type(const json_t *v, const char *field, void *dst, const void *ctx,
                               vg_error *err)
{
    customer_input *in = dst;
    in->has_customer_type = 1;
    return get_enum(v, field, customer_types, "must be \"individual\" or \"business\"",
                    in->customer_type, sizeof in->customer_type, err);
}

static vg_status customer_pep(const json_t *v, const char *field, void *dst, const void *ctx,
                              vg_error *err)
{
    customer_input *in = dst;
    if (!json_is_boolean(v))
        return vg_fail(err, VG_E_INVALID, field, "must be true or false");
    in->has_pep = 1;
    in->pep = json_is_true(v);
    return VG_OK;
}

static vg_status customer_external_id(const json_t *v, const char *field, void *dst,
                                      const void *ctx, vg_error *err)
{
    customer_input *in = dst;
    const customer_ctx *c = ctx;
    /* Other systems hold this id; changing it would orphan their records. */
    if (c->is_patch)
        return vg_fail(err, VG_E_INVALID, field, "cannot be changed");
    in->has_external_id = 1;
    return get_external_id(v, field, in->external_id, err);
}

static const member customer_members[] = {
    {"full_name", customer_full_name, 1},     {"email", customer_email, 0},
    {"country", customer_country, 0},         {"date_of_birth", customer_date_of_birth, 0},
    {"customer_type", customer_type, 0},      {"pep", customer_pep, 0},
    {"external_id", customer_external_id, 0},
};

vg_status customer_decode(const json_t *body, int is_patch, int32_t today_days, customer_input *out,
                          vg_error *err)
{
    customer_input in;
    memset(&in, 0, sizeof in);
    const customer_ctx ctx = {is_patch, today_days};
    size_t present = 0;
    vg_status st = decode_object(body, "", customer_members,
                                 sizeof customer_members / sizeof customer_members[0], !is_patch,
                                 &in, &ctx, &present, err);
    /* A failure of the body itself (not an object, a member with an empty
     * name) has no member to name: name the body, as tx bodies do. */
    if (st != VG_OK && err && !err->field[0])
        snprintf(err->field, sizeof err->field, "body");
    if (st != VG_OK)
        return st;
    if (is_patch && present == 0)
        return vg_fail(err, VG_E_INVALID, "body", "no fields to update");
    *out = in;
    return VG_OK;
}

/* ---- transactions -------------------------------------------------------- */

static vg_status tx_external_id(const json_t *v, const char *field, void *dst, const void *ctx,
                                vg_error *err)
{
    tx_input *in = dst;
    return get_external_id(v, field, in->external_id, err);
}

static vg_status tx_customer_id(const json_t *v, const char *field, void *dst, const void *ctx,
                                vg_error *err)
{
    tx_input *in = dst;
    size_t len;
    const char *s = get_string(v, field, &len, err);
    if (!s)
        return VG_E_INVALID;
    if (!uuid_parse(s, in->customer_id))
        return vg_fail(err, VG_E_INVALID, field,
                       "must be a UUID, e.g. \"6f1c2a9e-4b7d-4e5a-9c3b-2d8e1f0a7b64\"");
    return VG_OK;
}

static vg_status tx_currency(const json_t *v, const char *field, void *dst, const void *ctx,
                             vg_error *err)
{
    tx_input *in = dst;
    return get_code(v, field, currency_known, "unknown currency", in->currency, sizeof in->currency,
                    err);
}

static vg_status tx_amount(const json_t *v, const char *field, void *dst, const void *ctx,
                           vg_error *err)
{
    tx_input *in = dst;
    /* A JSON number may already have been rounded by the client's float
     * parser; only a string carries the amount exactly. */
    if (!json_is_string(v))
        return vg_fail(err, VG_E_INVALID, field, "must be a decimal string, e.g. \"125.50\"");
    /* "currency" precedes "amount" in tx_members and is required, so it has
     * been checked: its exponent is known. */
    int exponent = iso_currency_exponent(in->currency);
    assert(exponent >= 0);
    size_t len;
    const char *s = get_string(v, field, &len, err);
    if (!s)
        return VG_E_INVALID;
    return money_parse(s, exponent, field, in->amount, &in->amount_minor, err);
}

static vg_status tx_direction(const json_t *v, const char *field, void *dst, const void *ctx,
                              vg_error *err)
{
    tx_input *in = dst;
    return get_enum(v, field, directions, "must be \"in\" or \"out\"", in->direction,
                    sizeof in->direction, err);
}

static vg_status tx_channel(const json_t *v, const char *field, void *dst, const void *ctx,
                            vg_error *err)
{
    tx_input *in = dst;
    return get_enum(v, field, channels, "must be one of cash, wire, card, ach, crypto, other",
                    in->channel, sizeof in->channel, err);
}

static vg_status tx_occurred_at(const json_t *v, const char *field, void *dst, const void *ctx,
                                vg_error *err)
{
    tx_input *in = dst;
    const int64_t *now_us = ctx;
    size_t len;
    int64_t us;
    const char *s = get_string(v, field, &len, err);
    if (!s)
        return VG_E_INVALID;
    vg_status st = rfc3339_parse(s, field, &us, err);
    if (st != VG_OK)
        return st;
    if (us > *now_us + TX_FUTURE_SLACK_US)
        return vg_fail(err, VG_E_INVALID, field, "must not be more than 24 hours in the future");
    in->occurred_us = us;
    rfc3339_format(us, in->occurred_at);
    return VG_OK;
}

static vg_status counterparty_name(const json_t *v, const char *field, void *dst, const void *ctx,
                                   vg_error *err)
{
    tx_input *in = dst;
    return get_name(v, field, in->cp_name, sizeof in->cp_name, err);
}

static vg_status counterparty_account(const json_t *v, const char *field, void *dst,
                                      const void *ctx, vg_error *err)
{
    tx_input *in = dst;
    vg_status st = get_text(v, field, in->cp_account, sizeof in->cp_account, err);
    if (st == VG_OK && in->cp_account[0] == '\0')
        return vg_fail(err, VG_E_INVALID, field, "must not be empty");
    return st;
}

static vg_status counterparty_country(const json_t *v, const char *field, void *dst,
                                      const void *ctx, vg_error *err)
{
    tx_input *in = dst;
    return get_country(v, field, in->cp_country, err);
}

static const member counterparty_members[] = {
    {"name", counterparty_name, 0},
    {"account", counterparty_account, 0},
    {"country", counterparty_country, 0},
};

static vg_status tx_counterparty(const json_t *v, const char *field, void *dst, const void *ctx,
                                 vg_error *err)
{
    tx_input *in = dst;
    size_t present = 0;
    vg_status st = decode_object(v, field, counterparty_members,
                                 sizeof counterparty_members / sizeof counterparty_members[0], 0,
                                 in, ctx, &present, err);
    in->has_counterparty = st == VG_OK && present > 0;
    return st;
}

static const member tx_members[] = {
    {"external_id", tx_external_id, 1}, {"customer_id", tx_customer_id, 1},
    {"currency", tx_currency, 1},       {"amount", tx_amount, 1},
    {"direction", tx_direction, 1},     {"channel", tx_channel, 1},
    {"occurred_at", tx_occurred_at, 1}, {"counterparty", tx_counterparty, 0},
};

vg_status tx_decode(const json_t *item, int64_t now_us, tx_input *out, vg_error *err)
{
    tx_input in;
    memset(&in, 0, sizeof in);
    size_t present = 0;
    vg_status st = decode_object(item, "", tx_members, sizeof tx_members / sizeof tx_members[0], 1,
                                 &in, &now_us, &present, err);
    if (st != VG_OK)
        return st;
    *out = in;
    return VG_OK;
}
