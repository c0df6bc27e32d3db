/*
 * store_keys.c — creation, lookup, revocation and listing of API keys.
 *
 * Only a SHA-256 of each key is stored. A key has 256 bits of entropy, so a
 * fast hash is enough (no password stretching needed).
 *
 * Constant-time comparison. Looking a key up by its hash in SQL would
 * compare hashes with memcmp inside a B-tree probe; that timing reveals how
 * many leading bytes of sha256(guess) match a stored hash, which tells an
 * attacker nothing about a secret they cannot invert the hash to. So it was
 * never an exploitable oracle. Still, an index probe on secret-derived data
 * is a pattern reviewers must reason about each time; instead the lookup
 * uses only the key's public prefix ("vgl_" + 8 characters, the same text
 * `vigil keys list` prints), and the secret-derived comparison happens here
 * with CRYPTO_memcmp, whose time does not depend on where bytes differ.
 * Every candidate with that prefix is compared (in practice one).
 */
#include "store/store_keys.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain/timeparse.h"
#include "store/db.h"
#include "util/hex.h"
#include "util/log.h"

static const struct {
    vg_role role;
    const char *name;
} roles[] = {
    {ROLE_ADMIN, "admin"},
    {ROLE_INGEST, "ingest"},
    {ROLE_ANALYST, "analyst"},
    {ROLE_AUDITOR, "auditor"},
};

vg_role role_parse(const char *name)
{
    for (size_t i = 0; name && i < sizeof roles / sizeof roles[0]; i++)
        if (strcmp(name, roles[i].name) == 0)
            return roles[i].role;
    return 0;
}

const char *role_name(vg_role role)
{
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
        if (roles[i].role == role)
            return roles[i].name;
    return "unknown";
}

vg_status keys_hash_hex(const char *secret, char out[65], vg_error *err)
{
    unsigned char md[32];
    unsigned int len = 0;
    out[0] = '\0';
    if (EVP_Digest(secret, strlen(secret), md, &len, EVP_sha256(), NULL) != 1 || len != sizeof md)
        return vg_fail(err, VG_E_INTERNAL, NULL, "cannot compute SHA-256 (OpenSSL)");
    hex_encode(md, sizeof md, out);
    return VG_OK;
}

static void base64url(const unsigned char *in, size_t n, char *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = alphabet[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        out[o++] = alphabet[(acc << (6 - bits)) & 63];
    out[o] = '\0';
}

static void fill_info_row(PGresult *r, int row, api_key_info *info)
{
    snprintf(info->id, sizeof info->id, "%s", PQgetvalue(r, row, 0));
    snprintf(info->name, sizeof info->name, "%s", PQgetvalue(r, row, 1));
    info->role = role_parse(PQgetvalue(r, row, 2));
    info->expires_at[0] = '\0';
}

static void fill_info(PGresult *r, api_key_info *info)
{
    fill_info_row(r, 0, info);
}

vg_status keys_create(PGconn *c, const char *role, const char *name, const char *expires_at,
                      long long expires_in_s, char secret[API_KEY_SECRET_MAX], api_key_info *info,
                      vg_error *err)
{
    if (!role_parse(role))
        return vg_fail(err, VG_E_INVALID, "role",
                       "unknown role '%s' (admin|ingest|analyst|auditor)", role ? role : "");
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return vg_fail(err, VG_E_INTERNAL, NULL, "no randomness available for a new key");
    memcpy(secret, "vgl_", 4);
    base64url(raw, sizeof raw, secret + 4);
    char hash[65], prefix[KEY_PREFIX_LEN + 1], in_s[32];
    if (keys_hash_hex(secret, hash, err) != VG_OK)
        return VG_E_INTERNAL;
    snprintf(prefix, sizeof prefix, "%.*s", KEY_PREFIX_LEN, secret);
    snprintf(in_s, sizeof in_s, "%lld", expires_in_s);
    const char *p[] = {name, role, hash, prefix, expires_at, expires_in_s > 0 ? in_s : NULL};
    PGresult *r = db_exec(c,
                          "INSERT INTO api_keys (name, role, key_hash, key_prefix, expires_at)"
                          " VALUES ($1, $2, decode($3, 'hex'), $4, coalesce($5::timestamptz,"
                          " now() + $6::bigint * interval '1 second'))"
                          " RETURNING id, name, role, vigil_ts(expires_at)",
                          6, p, err);
    if (!r)
        return err ? err->code : VG_E_INTERNAL;
    if (info) {
        fill_info(r, info);
        snprintf(info->expires_at, sizeof info->expires_at, "%s", PQgetvalue(r, 0, 3));
    }
    PQclear(r);
    return VG_OK;
}

/* The hash of a secret that has a key's shape; VG_E_UNAUTHORIZED otherwise. */
static vg_status hash_of_secret(const char *secret, char want[65], vg_error *err)
{
    /* Anything but a key's alphabet cannot be a key (and must not reach
     * SQL as a prefix that is not valid UTF-8). */
    size_t n = strlen(secret);
    if (n < KEY_PREFIX_LEN || strspn(secret, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                             "0123456789-_") != n)
        return vg_fail(err, VG_E_UNAUTHORIZED, "Authorization", "unknown API key");
    return keys_hash_hex(secret, want, err) == VG_OK ? VG_OK : VG_E_INTERNAL;
}

/* keys_authenticate once the secret's hash is known (`want`). */
static vg_status authenticate_hashed(PGconn *c, const char *secret, const char want[65],
                                     api_key_info *info, vg_error *err)
{
    char prefix[KEY_PREFIX_LEN + 1];
    snprintf(prefix, sizeof prefix, "%.*s", KEY_PREFIX_LEN, secret);
    const char *p[] = {prefix};
    static db_stmt lookup =
        DB_STMT("SELECT id, name, role, encode(key_hash, 'hex'), revoked_at IS NOT NULL,"
                " vigil_ts(expires_at), expires_at <= now(),"
                " last_used_at IS NULL OR last_used_at < now() - interval '1 minute'"
                " FROM api_keys WHERE key_prefix = $1",
                1);
    PGresult *r = db_exec_stmt(c, &lookup, p, err);
    if (!r)
        return err ? err->code : VG_E_INTERNAL;
    int match = -1;
    for (int i = 0; i < PQntuples(r); i++) {
        /* encode() writes lowercase hex, as keys_hash_hex does. */
        const char *have = PQgetvalue(r, i, 3);
        if (PQgetlength(r, i, 3) == 64 && CRYPTO_memcmp(have, want, 64) == 0)
            match = i;
    }
    vg_status st = VG_OK;
    if (match < 0)
        st = vg_fail(err, VG_E_UNAUTHORIZED, "Authorization", "unknown API key");
    else if (strcmp(PQgetvalue(r, match, 4), "t") == 0)
        st = vg_fail(err, VG_E_UNAUTHORIZED, "Authorization",
                     "this API key was revoked; ask an administrator for a new one");
    else if (strcmp(PQgetvalue(r, match, 6), "t") == 0)
        st = vg_fail(err, VG_E_UNAUTHORIZED, "Authorization",
                     "this API key expired at %s; ask an administrator for a new one",
                     PQgetvalue(r, match, 5));
    else {
        fill_info_row(r, match, info);
        /* Record the use, at most once a minute per key, so most requests
         * stay read-only and never wait on the key's row. */
        if (strcmp(PQgetvalue(r, match, 7), "t") == 0) {
            const char *u[] = {info->id};
            static db_stmt used =
                DB_STMT("UPDATE api_keys SET last_used_at = now() WHERE id = $1", 1);
            st = db_run_stmt(c, &used, u, err);
        }
    }
    PQclear(r);
    return st;
}

vg_status keys_authenticate(PGconn *c, const char *secret, api_key_info *info, vg_error *err)
{
    char want[65];
    vg_status st = hash_of_secret(secret, want, err);
    return st == VG_OK ? authenticate_hashed(c, secret, want, info, err) : st;
}

vg_status keys_revoke(PGconn *c, const char *id_or_prefix, api_key_info *info, int *already,
                      vg_error *err)
{
    const char *p[] = {id_or_prefix};
    PGresult *r = db_exec(c,
                          "SELECT id, name, role, revoked_at IS NOT NULL FROM api_keys"
                          " WHERE id::text = lower($1) OR key_prefix = $1",
                          1, p, err);
    if (!r)
        return err ? err->code : VG_E_INTERNAL;
    vg_status st = VG_OK;
    if (PQntuples(r) == 0)
        st = vg_fail(err, VG_E_NOT_FOUND, "key", "no key has the id or prefix '%s'", id_or_prefix);
    else if (PQntuples(r) > 1)
        st = vg_fail(err, VG_E_CONFLICT, "key",
                     "%d keys have the prefix '%s'; give the key's id (vigil keys list)",
                     PQntuples(r), id_or_prefix);
    else {
        fill_info(r, info);
        *already = strcmp(PQgetvalue(r, 0, 3), "t") == 0;
        const char *u[] = {info->id};
        if (!*already)
            st = db_run(c,
                        "UPDATE api_keys SET revoked_at = now() WHERE id = $1"
                        " AND revoked_at IS NULL",
                        1, u, err);
    }
    PQclear(r);
    return st;
}

json_t *keys_list(PGconn *c, vg_error *err)
{
    PGresult *r =
        db_exec(c,
                "SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'name', name, 'role', role,"
                " 'prefix', key_prefix, 'created_at', vigil_ts(created_at),"
                " 'revoked_at', vigil_ts(revoked_at), 'expires_at', vigil_ts(expires_at),"
                " 'last_used_at', vigil_ts(last_used_at), 'state', CASE WHEN revoked_at IS NOT"
                " NULL THEN 'revoked' WHEN expires_at <= now() THEN 'expired' ELSE 'active' END)"
                " ORDER BY created_at), '[]')::text FROM api_keys",
                0, NULL, err);
    if (!r)
        return NULL;
    json_t *j = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
    PQclear(r);
    return j;
}

/* ---- the ingest path's cache (store_keys.h, keys_authenticate_cached) ---- */

#define KEY_CACHE_SIZE   64
#define KEY_CACHE_TTL_US (60 * 1000000LL)

static struct {
    char hash[65]; /* "" = free slot */
    api_key_info info;
    int64_t at_us; /* mono_us() of the lookup */
} key_cache[KEY_CACHE_SIZE];
static pthread_mutex_t key_cache_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_llong key_cache_hits, key_cache_misses;

vg_status keys_authenticate_cached(PGconn *c, const char *secret, api_key_info *info, int *cached,
                                   vg_error *err)
{
    *cached = 0;
    char want[65];
    vg_status st = hash_of_secret(secret, want, err);
    if (st != VG_OK)
        return st;
    int64_t now = mono_us();
    pthread_mutex_lock(&key_cache_mu);
    for (int i = 0; i < KEY_CACHE_SIZE && !*cached; i++)
        if (key_cache[i].hash[0] && now - key_cache[i].at_us < KEY_CACHE_TTL_US &&
            CRYPTO_memcmp(key_cache[i].hash, want, 64) == 0) {
            *info = key_cache[i].info;
            *cached = 1;
        }
    pthread_mutex_unlock(&key_cache_mu);
    if (*cached) {
        atomic_fetch_add(&key_cache_hits, 1);
        return VG_OK;
    }
    atomic_fetch_add(&key_cache_misses, 1);
    if ((st = authenticate_hashed(c, secret, want, info, err)) != VG_OK)
        return st;
    /* Into a free slot, one expired or holding this key, else the oldest. */
    pthread_mutex_lock(&key_cache_mu);
    int slot = 0;
    for (int i = 0; i < KEY_CACHE_SIZE; i++) {
        if (!key_cache[i].hash[0] || now - key_cache[i].at_us >= KEY_CACHE_TTL_US ||
            memcmp(key_cache[i].hash, want, 64) == 0) {
            slot = i;
            break;
        }
        if (key_cache[i].at_us < key_cache[slot].at_us)
            slot = i;
    }
    memcpy(key_cache[slot].hash, want, sizeof key_cache[slot].hash);
    key_cache[slot].info = *info;
    key_cache[slot].at_us = now;
    pthread_mutex_unlock(&key_cache_mu);
    return VG_OK;
}

void keys_cache_forget(const char *id)
{
    pthread_mutex_lock(&key_cache_mu);
    for (int i = 0; i < KEY_CACHE_SIZE; i++)
        if (key_cache[i].hash[0] && strcmp(key_cache[i].info.id, id) == 0)
            key_cache[i].hash[0] = '\0';
    pthread_mutex_unlock(&key_cache_mu);
}

void keys_cache_stats(long long *hits, long long *misses)
{
    *hits = atomic_load(&key_cache_hits);
    *misses = atomic_load(&key_cache_misses);
}
