/*
 * webhook.c — webhook registrations checked, deliveries signed.
 *
 * Registration input is refused field by field (the API turns each refusal
 * into a 422 naming it). URLs are parsed by libcurl's own parser, the one
 * that will later send to them, so what passes here is what curl connects
 * to: no second opinion that could disagree.
 */
#include "domain/webhook.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "domain/bodies.h"
#include "domain/validate.h"
#include "util/hex.h"

/* Checks the url member; writes it to `out`. */
static vg_status decode_url(const json_t *v, char out[WEBHOOK_URL_MAX + 1], vg_error *err)
{
    if (!v || json_is_null(v))
        return vg_fail(err, VG_E_INVALID, "url", "required: the http(s) URL to POST events to");
    const char *s = json_string_value(v);
    if (!s || strlen(s) != json_string_length(v) || !text_ok(s, WEBHOOK_URL_MAX) || !*s)
        return vg_fail(err, VG_E_INVALID, "url",
                       "must be a string of 1 to %d bytes of text without control characters",
                       WEBHOOK_URL_MAX);
    CURLU *u = curl_url();
    if (!u)
        return vg_fail(err, VG_E_INTERNAL, "url", "out of memory parsing the URL");
    char *scheme = NULL, *host = NULL, *user = NULL, *password = NULL;
    vg_status st = VG_OK;
    CURLUcode rc = curl_url_set(u, CURLUPART_URL, s, 0);
    if (rc != CURLUE_OK)
        st = vg_fail(err, VG_E_INVALID, "url", "not an absolute URL: %s", curl_url_strerror(rc));
    /* libcurl also reads "https:/host" (one slash) as https://host; the text
     * is stored and shown as sent, so it must already be the usual form. */
    else if (strncasecmp(s, "http://", 7) != 0 && strncasecmp(s, "https://", 8) != 0)
        st = vg_fail(err, VG_E_INVALID, "url", "must start with http:// or https://");
    else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
             (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0))
        st = vg_fail(err, VG_E_INVALID, "url", "must be an http:// or https:// URL");
    else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host)
        st = vg_fail(err, VG_E_INVALID, "url", "must name a host");
    else if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
             curl_url_get(u, CURLUPART_PASSWORD, &password, 0) == CURLUE_OK)
        /* It would be shown by GET /webhooks; the signature authenticates. */
        st = vg_fail(err, VG_E_INVALID, "url", "must not contain user:password credentials");
    else
        memcpy(out, s, strlen(s) + 1);
    curl_free(scheme);
    curl_free(host);
    curl_free(user);
    curl_free(password);
    curl_url_cleanup(u);
    return st;
}

/* "aml." then lower-case letters, digits, '.', '_' or '-'; no empty label
 * ("aml..x"). A trailing '.' makes it a prefix. */
static int type_ok(const char *s, size_t len)
{
    if (len < 5 || len > WEBHOOK_TYPE_MAX || strncmp(s, "aml.", 4) != 0)
        return 0;
    for (size_t i = 4; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
        if (c == '.' && s[i - 1] == '.')
            return 0;
    }
    return 1;
}

static vg_status decode_types(const json_t *v, webhook_input *in, vg_error *err)
{
    in->ntypes = 0;
    if (!v || json_is_null(v))
        return VG_OK;
    if (!json_is_array(v))
        return vg_fail(err, VG_E_INVALID, "event_types",
                       "must be an array of event types or prefixes ([] = every event)");
    if (json_array_size(v) > WEBHOOK_TYPES_MAX)
        return vg_fail(err, VG_E_INVALID, "event_types", "at most %d entries", WEBHOOK_TYPES_MAX);
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item)
    {
        const char *s = json_string_value(item);
        size_t len = s ? json_string_length(item) : 0;
        if (!s || strlen(s) != len || !type_ok(s, len)) {
            char field[40];
            snprintf(field, sizeof field, "event_types[%zu]", i);
            return vg_fail(err, VG_E_INVALID, field,
                           "must be an event type such as \"aml.alert.created\" or a prefix"
                           " ending in '.' such as \"aml.alert.\" (lower case, at most %d bytes)",
                           WEBHOOK_TYPE_MAX);
        }
        memcpy(in->types[in->ntypes++], s, len + 1);
    }
    return VG_OK;
}

static vg_status decode_secret(const json_t *v, webhook_input *in, vg_error *err)
{
    in->has_secret = 0;
    if (!v || json_is_null(v))
        return VG_OK;
    const char *s = json_string_value(v);
    size_t len = s ? json_string_length(v) : 0;
    if (!s || strlen(s) != len || len < WEBHOOK_SECRET_MIN || !text_ok(s, WEBHOOK_SECRET_MAX))
        return vg_fail(err, VG_E_INVALID, "secret",
                       "must be %d to %d bytes of text (omit it to have one generated)",
                       WEBHOOK_SECRET_MIN, WEBHOOK_SECRET_MAX);
    memcpy(in->secret, s, len + 1);
    in->has_secret = 1;
    return VG_OK;
}

vg_status webhook_decode(const json_t *body, webhook_input *out, vg_error *err)
{
    static const char *const known[] = {"url", "event_types", "secret", NULL};
    if (body_members_only(body, known, err) != VG_OK)
        return err->code;
    webhook_input in;
    vg_status st = decode_url(json_object_get(body, "url"), in.url, err);
    if (st == VG_OK)
        st = decode_types(json_object_get(body, "event_types"), &in, err);
    if (st == VG_OK)
        st = decode_secret(json_object_get(body, "secret"), &in, err);
    if (st == VG_OK)
        *out = in;
    return st;
}

int webhook_sign(const char *secret, long long ts, const char *body, size_t len,
                 char out[WEBHOOK_SIG_SIZE])
{
    char prefix[32];
    int plen = snprintf(prefix, sizeof prefix, "%lld.", ts);
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t maclen = 0;
    out[0] = '\0';
    /* HMAC over "<t>." then the body, streamed: the body is never copied. */
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = hmac ? EVP_MAC_CTX_new(hmac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    int ok = ctx && EVP_MAC_init(ctx, (const unsigned char *)secret, strlen(secret), params) &&
             EVP_MAC_update(ctx, (const unsigned char *)prefix, (size_t)plen) &&
             EVP_MAC_update(ctx, (const unsigned char *)body, len) &&
             EVP_MAC_final(ctx, mac, &maclen, sizeof mac) && maclen == 32;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(hmac);
    if (!ok)
        return -1;
    int n = snprintf(out, WEBHOOK_SIG_SIZE, "t=%lld,v1=", ts);
    if (n < 0 || (size_t)n + 2 * maclen + 1 > WEBHOOK_SIG_SIZE)
        return -1;
    hex_encode(mac, maclen, out + n);
    return 0;
}
