/*
 * webhook.h — what a webhook registration may say, and how a delivery is
 * signed. Pure code: no I/O (libcurl is used only to parse URLs).
 *
 * Signature scheme (what a receiver implements to trust a delivery):
 *
 *   Vigil-Timestamp: <t>                          unix seconds at sending time
 *   Vigil-Signature: t=<t>,v1=<hex>
 *   hex = lower-case hex of HMAC-SHA256(key = the webhook secret's bytes,
 *                                       message = "<t>" "." <raw request body>)
 *
 * A receiver recomputes the HMAC over the raw body bytes it received (before
 * any JSON parsing), compares in constant time, rejects the request when
 * |now - t| > 300 s (a replayed capture is older than that), and drops
 * deliveries whose Vigil-Event-Id it has already processed (delivery is
 * at-least-once, and each retry is signed afresh with a new t).
 */
#ifndef VIGIL_DOMAIN_WEBHOOK_H
#define VIGIL_DOMAIN_WEBHOOK_H

#include <jansson.h>
#include <stddef.h>

#include "util/status.h"

#define WEBHOOK_URL_MAX    2048
#define WEBHOOK_TYPES_MAX  32
#define WEBHOOK_TYPE_MAX   128
#define WEBHOOK_SECRET_MIN 16
#define WEBHOOK_SECRET_MAX 256
#define WEBHOOK_SIG_SIZE   96 /* "t=" + 20 digits + ",v1=" + 64 hex + NUL, rounded up */
#define WEBHOOK_REPLAY_S   300

/* A checked POST /webhooks body. */
typedef struct webhook_input {
    char url[WEBHOOK_URL_MAX + 1];
    int ntypes; /* 0 = every event */
    char types[WEBHOOK_TYPES_MAX][WEBHOOK_TYPE_MAX + 1];
    int has_secret; /* 0: the caller generates one */
    char secret[WEBHOOK_SECRET_MAX + 1];
} webhook_input;

/* Decodes {"url", "event_types", "secret"}: url required, http or https, at
 * most 2048 bytes, with a host and without user:password; event_types an
 * optional array of at most 32 event types ("aml.alert.created") or prefixes
 * ending in '.' ("aml.alert."), each starting "aml." and made of [a-z0-9._-];
 * secret optional, 16..256 bytes of printable text. Unknown members are
 * refused. On failure the field is named ("url", "event_types[2]", ...);
 * `out` is written only on success. */
vg_status webhook_decode(const json_t *body, webhook_input *out, vg_error *err);

/* Writes the Vigil-Signature header value for `body[0..len)` sent at unix
 * time `ts` into `out`. Returns 0, or -1 if OpenSSL failed (out = ""). */
int webhook_sign(const char *secret, long long ts, const char *body, size_t len,
                 char out[WEBHOOK_SIG_SIZE]);

#endif
