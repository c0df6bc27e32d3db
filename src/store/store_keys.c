/*
 * store_keys.c — creation, lookup and listing of API keys.
 *
 * Only a SHA-256 of each key is stored. A key has 256 bits of entropy, so a
 * fast hash is enough (no password stretching needed) and lookup by hash is
 * an index probe: the secret is never compared byte by byte in C.
 */
#include "store/store_keys.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "store/db.h"
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

void keys_hash_hex(const char *secret, char out[65])
{
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(secret, strlen(secret), md, &len, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
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

static void fill_info(PGresult *r, api_key_info *info)
{
    snprintf(info->id, sizeof info->id, "%s", PQgetvalue(r, 0, 0));
    snprintf(info->name, sizeof info->name, "%s", PQgetvalue(r, 0, 1));
    info->role = role_parse(PQgetvalue(r, 0, 2));
}

vg_status keys_create(PGconn *c, const char *role, const char *name,
                      char secret[API_KEY_SECRET_MAX], api_key_info *info, vg_error *err)
{
    if (!role_parse(role))
        return vg_fail(err, VG_E_INVALID, "role",
                       "unknown role '%s' (admin|ingest|analyst|auditor)", role ? role : "");
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return vg_fail(err, VG_E_INTERNAL, NULL, "no randomness available for a new key");
    memcpy(secret, "vgl_", 4);
    base64url(raw, sizeof raw, secret + 4);
    char hash[65], prefix[13];
    keys_hash_hex(secret, hash);
    snprintf(prefix, sizeof prefix, "%.12s", secret);
    const char *p[] = {name, role, hash, prefix};
    PGresult *r = db_exec(c,
                          "INSERT INTO api_keys (name, role, key_hash, key_prefix) "
                          "VALUES ($1, $2, decode($3, 'hex'), $4) RETURNING id, name, role",
                          4, p, err);
    if (!r)
        return err ? err->code : VG_E_INTERNAL;
    if (info)
        fill_info(r, info);
    PQclear(r);
    return VG_OK;
}

vg_status keys_authenticate(PGconn *c, const char *secret, api_key_info *info, vg_error *err)
{
    char hash[65];
    keys_hash_hex(secret, hash);
    const char *p[] = {hash};
    /* One round trip: look the key up and record its use, at most once a
     * minute per key (an UPDATE that matches nothing writes nothing, so
     * most requests stay read-only and never wait on the key's row). */
    PGresult *r = db_exec(c,
                          "WITH k AS (SELECT id, name, role, last_used_at FROM api_keys"
                          "  WHERE key_hash = decode($1, 'hex') AND revoked_at IS NULL),"
                          " touch AS (UPDATE api_keys a SET last_used_at = now() FROM k"
                          "  WHERE a.id = k.id AND (k.last_used_at IS NULL"
                          "  OR k.last_used_at < now() - interval '1 minute'))"
                          " SELECT id, name, role FROM k",
                          1, p, err);
    if (!r)
        return err ? err->code : VG_E_INTERNAL;
    vg_status st = VG_OK;
    if (PQntuples(r) != 1)
        st = vg_fail(err, VG_E_UNAUTHORIZED, "Authorization", "unknown or revoked API key");
    else
        fill_info(r, info);
    PQclear(r);
    return st;
}

json_t *keys_list(PGconn *c, vg_error *err)
{
    PGresult *r =
        db_exec(c,
                "SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'name', name, 'role', role,"
                " 'prefix', key_prefix, 'created_at', vigil_ts(created_at),"
                " 'revoked_at', vigil_ts(revoked_at), 'last_used_at', vigil_ts(last_used_at))"
                " ORDER BY created_at), '[]')::text FROM api_keys",
                0, NULL, err);
    if (!r)
        return NULL;
    json_t *j = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
    PQclear(r);
    return j;
}
