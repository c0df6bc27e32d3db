/*
 * config.c — environment → vg_config, driven by the table in config.h.
 */
#include "util/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
