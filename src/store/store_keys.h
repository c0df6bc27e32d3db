/*
 * store_keys.h — API keys: random secrets shown once, stored as SHA-256.
 */
#ifndef VIGIL_STORE_KEYS_H
#define VIGIL_STORE_KEYS_H

#include <jansson.h>
#include <libpq-fe.h>

#include "util/status.h"

/* Role bits; a route lists the roles it admits. */
typedef enum {
    ROLE_ADMIN = 1 << 0,
    ROLE_INGEST = 1 << 1,
    ROLE_ANALYST = 1 << 2,
    ROLE_AUDITOR = 1 << 3,
} vg_role;

#define ROLE_ANY_READER (ROLE_ADMIN | ROLE_ANALYST | ROLE_AUDITOR)

/* "admin" → ROLE_ADMIN ...; 0 when unknown. */
vg_role role_parse(const char *name);
const char *role_name(vg_role role);

/* A key as the server knows it after authentication. */
typedef struct api_key_info {
    char id[37];
    char name[129];
    vg_role role;
    char expires_at[40]; /* RFC 3339, "" when the key never expires (keys_create) */
} api_key_info;

/* Characters of a key that identify it publicly (stored, listed, used for
 * lookup): "vgl_" + 8 of the 43 random ones. */
#define KEY_PREFIX_LEN 12

/* Creates a key for `role` named `name`: 32 random bytes from OpenSSL,
 * written as "vgl_" + base64url. Writes the secret into `secret` (shown to
 * the user once; only its SHA-256 is stored). The key expires at
 * `expires_at` (RFC 3339, checked by PostgreSQL) or `expires_in_s` seconds
 * from now when > 0; never when both are unset (NULL, 0). */
#define API_KEY_SECRET_MAX 64
vg_status keys_create(PGconn *c, const char *role, const char *name, const char *expires_at,
                      long long expires_in_s, char secret[API_KEY_SECRET_MAX], api_key_info *info,
                      vg_error *err);

/* Looks up an active (not revoked, not expired) key by its secret and
 * records its use (last_used_at, to the minute). VG_E_UNAUTHORIZED with a
 * detail saying whether the key is unknown, revoked or expired (only a
 * holder of the exact secret learns which); VG_E_UNAVAILABLE when the
 * database is down. */
vg_status keys_authenticate(PGconn *c, const char *secret, api_key_info *info, vg_error *err);

/* keys_authenticate for POST /transactions, from a per-process cache of
 * keys that authenticated in the last minute (*cached = 1; no database
 * round trip), else looked up and cached. A cached key may have been
 * revoked or have expired since: the caller must have the database check
 * the key again in the transaction that writes (vigil_ingest_rows_keyed, as the
 * ingest flush does), or call keys_authenticate before anything else. A
 * key is looked up (and its last use recorded) at least once a minute while
 * it is used. Only keys that authenticated are cached (by the SHA-256 of
 * their secret); at most 64, the oldest replaced. Thread-safe. */
vg_status keys_authenticate_cached(PGconn *c, const char *secret, api_key_info *info, int *cached,
                                   vg_error *err);
/* Drops key `id` from that cache (its next request is looked up). */
void keys_cache_forget(const char *id);
/* The cache's hits and misses so far (for /metrics). */
void keys_cache_stats(long long *hits, long long *misses);

/* Revokes the key whose id or prefix is `id_or_prefix` (at once: every
 * request looks the key up, and an ingest request's key is checked again
 * in its write transaction). *already = 1 when it was revoked before (no
 * change). VG_E_NOT_FOUND; VG_E_CONFLICT when a prefix names several keys. */
vg_status keys_revoke(PGconn *c, const char *id_or_prefix, api_key_info *info, int *already,
                      vg_error *err);

/* Array of {id, name, role, prefix, created_at, revoked_at, expires_at,
 * last_used_at, state: active|revoked|expired}. */
json_t *keys_list(PGconn *c, vg_error *err);

/* SHA-256 of `secret` as 64 lower-case hex characters + NUL. VG_E_INTERNAL
 * (out empty) if OpenSSL cannot compute it. */
vg_status keys_hash_hex(const char *secret, char out[65], vg_error *err);

#endif
