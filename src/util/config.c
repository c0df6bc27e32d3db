/*
 * config.c — environment → vg_config, driven by the table in config.h.
 */
#include "util/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static vg_status parse_long(const char *env, const char *s, long lo, long hi, long *out,
                            vg_error *err)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return vg_fail(err, VG_E_CONFIG, env, "%s=%s: expected an integer in %ld..%ld", env, s, lo,
                       hi);
    *out = v;
    return VG_OK;
}

/* NATS authentication is one method at a time, and each needs its pair. */
static vg_status nats_auth_check(const vg_config *cfg, vg_error *err)
{
    int methods = !!cfg->nats_user[0] + !!cfg->nats_token_file[0] + !!cfg->nats_creds[0] +
                  !!cfg->nats_nkey[0];
    if (methods > 1)
        return vg_fail(err, VG_E_CONFIG, "VIGIL_NATS_USER",
                       "set one NATS authentication method: VIGIL_NATS_USER, "
                       "VIGIL_NATS_TOKEN_FILE, VIGIL_NATS_CREDS or VIGIL_NATS_NKEY");
    if (!cfg->nats_user[0] != !cfg->nats_password_file[0])
        return vg_fail(err, VG_E_CONFIG, "VIGIL_NATS_PASSWORD_FILE",
                       "VIGIL_NATS_USER and VIGIL_NATS_PASSWORD_FILE go together");
    if (!cfg->nats_nkey[0] != !cfg->nats_nkey_seed[0])
        return vg_fail(err, VG_E_CONFIG, "VIGIL_NATS_NKEY_SEED",
                       "VIGIL_NATS_NKEY and VIGIL_NATS_NKEY_SEED go together");
    if (!cfg->nats_tls_cert[0] != !cfg->nats_tls_key[0])
        return vg_fail(err, VG_E_CONFIG, "VIGIL_NATS_TLS_KEY",
                       "VIGIL_NATS_TLS_CERT and VIGIL_NATS_TLS_KEY go together");
    /* A file that cannot be read is a mistake to report at start, not a
     * connection that keeps failing later. */
    const struct {
        const char *env, *path;
    } files[] = {{"VIGIL_NATS_PASSWORD_FILE", cfg->nats_password_file},
                 {"VIGIL_NATS_TOKEN_FILE", cfg->nats_token_file},
                 {"VIGIL_NATS_CREDS", cfg->nats_creds},
                 {"VIGIL_NATS_NKEY_SEED", cfg->nats_nkey_seed},
                 {"VIGIL_NATS_TLS_CA", cfg->nats_tls_ca},
                 {"VIGIL_NATS_TLS_CERT", cfg->nats_tls_cert},
                 {"VIGIL_NATS_TLS_KEY", cfg->nats_tls_key}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (files[i].path[0] && access(files[i].path, R_OK) != 0)
            return vg_fail(err, VG_E_CONFIG, files[i].env, "%s: cannot read %s: %s", files[i].env,
                           files[i].path, strerror(errno));
    return VG_OK;
}

vg_status config_load(vg_config *cfg, vg_error *err)
{
    const char *v;
    memset(cfg, 0, sizeof *cfg);
#define VG_CFG_S(field, env, def, help)                                                            \
    v = getenv(env);                                                                               \
    snprintf(cfg->field, sizeof cfg->field, "%s", v &&*v ? v : def);
#define VG_CFG_I(field, env, def, lo, hi, help)                                                    \
    v = getenv(env);                                                                               \
    cfg->field = def;                                                                              \
    if (v && *v && parse_long(env, v, lo, hi, &cfg->field, err) != VG_OK)                          \
        return VG_E_CONFIG;
    VG_CONFIG_STRINGS(VG_CFG_S)
    VG_CONFIG_INTS(VG_CFG_I)
#undef VG_CFG_S
#undef VG_CFG_I
    if (nats_auth_check(cfg, err) != VG_OK)
        return VG_E_CONFIG;
    if (strcmp(cfg->event_pii, "full") != 0 && strcmp(cfg->event_pii, "minimal") != 0)
        return vg_fail(err, VG_E_CONFIG, "VIGIL_EVENT_PII",
                       "VIGIL_EVENT_PII=%s: expected full or minimal", cfg->event_pii);
    if (cfg->risk_medium >= cfg->risk_high)
        return vg_fail(err, VG_E_CONFIG, "VIGIL_RISK_MEDIUM",
                       "VIGIL_RISK_MEDIUM (%ld) must be below VIGIL_RISK_HIGH (%ld)",
                       cfg->risk_medium, cfg->risk_high);
    return VG_OK;
}

void config_print_help(void *stream)
{
    FILE *f = stream;
    fprintf(f, "Environment:\n");
#define VG_CFG_S(field, env, def, help) fprintf(f, "  %-26s %s (default: %s)\n", env, help, def);
#define VG_CFG_I(field, env, def, lo, hi, help)                                                    \
    fprintf(f, "  %-26s %s (default: %ld)\n", env, help, (long)(def));
    VG_CONFIG_STRINGS(VG_CFG_S)
    VG_CONFIG_INTS(VG_CFG_I)
#undef VG_CFG_S
#undef VG_CFG_I
}
