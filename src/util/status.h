/*
 * status.h — the one status type every fallible Vigil function returns.
 *
 * Codes come from one X-macro table that also gives each its HTTP status,
 * problem+json type slug and title, so the API maps any error the same way.
 * A function that fails fills a caller-supplied vg_error (when not NULL) at
 * the place the error starts: which field, and a detail for a person.
 */
#ifndef VIGIL_UTIL_STATUS_H
#define VIGIL_UTIL_STATUS_H

#include <jansson.h>
#include <stdarg.h>

/*   name                http  slug                     title */
#define VG_STATUS_TABLE(X)                                                                         \
    X(VG_OK, 200, "ok", "OK")                                                                      \
    X(VG_E_MALFORMED, 400, "malformed-request", "Malformed request")                               \
    X(VG_E_UNAUTHORIZED, 401, "unauthorized", "Missing or invalid API key")                        \
    X(VG_E_FORBIDDEN, 403, "forbidden", "This key's role may not do this")                         \
    X(VG_E_NOT_FOUND, 404, "not-found", "Not found")                                               \
    X(VG_E_METHOD, 405, "method-not-allowed", "Method not allowed")                                \
    X(VG_E_CONFLICT, 409, "conflict", "Conflict with the current state")                           \
    X(VG_E_TOO_LARGE, 413, "payload-too-large", "Request body too large")                          \
    X(VG_E_MEDIA_TYPE, 415, "unsupported-media-type", "Unsupported media type")                    \
    X(VG_E_INVALID, 422, "validation-failed", "Validation failed")                                 \
    X(VG_E_RATE_LIMITED, 429, "too-many-requests", "Too many requests")                            \
    X(VG_E_UNAVAILABLE, 503, "service-unavailable", "Service temporarily unavailable")             \
    X(VG_E_INTERNAL, 500, "internal-error", "Internal error")                                      \
    X(VG_E_IO, 500, "io-error", "I/O error")                                                       \
    X(VG_E_CONFIG, 500, "configuration-error", "Configuration error")

typedef enum {
#define VG_X_ENUM(name, http, slug, title) name,
    VG_STATUS_TABLE(VG_X_ENUM)
#undef VG_X_ENUM
        VG_STATUS__COUNT
} vg_status;

/* Where and why a call failed. `items` (optional, owned) is a JSON array of
 * {"index", "field", "detail"} objects used when several inputs are bad at
 * once (a batch); the API copies it into the problem body as "errors". */
typedef struct vg_error {
    vg_status code;
    char field[128];
    char detail[512];
    json_t *items;
} vg_error;

int vg_status_http(vg_status s);
const char *vg_status_slug(vg_status s);
const char *vg_status_title(vg_status s);
const char *vg_status_name(vg_status s);

/* Records an error in `err` (if not NULL) and returns `code`, so a caller can
 * write `return vg_fail(err, VG_E_INVALID, "amount", "must be > 0");`.
 * `field` may be NULL. */
vg_status vg_fail(vg_error *err, vg_status code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Appends one item error {index, field, detail} to err->items (creating the
 * array) and sets err->code to VG_E_INVALID. Returns VG_E_INVALID. */
vg_status vg_fail_item(vg_error *err, long index, const char *field, const char *detail);

/* Resets `err` to VG_OK, releasing items. Safe on a zeroed struct. */
void vg_error_clear(vg_error *err);

#endif
