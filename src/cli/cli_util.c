/*
 * cli_util.c — small pieces the operator commands share: option values,
 * error reporting with the right exit code, hex.
 */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int cli_parse_seq(const char *cmd, const char *opt, const char *value, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = value ? strtoll(value, &end, 10) : 0;
    if (!value || !*value || *end || errno || v < 1) {
        fprintf(stderr, "vigil %s: %s needs a positive integer seq, got '%s'\n", cmd, opt,
                value ? value : "");
        return -1;
    }
    *out = v;
    return 0;
}

int cli_usage_error(const char *cmd, const char *usage, const char *msg, const char *arg)
{
    fprintf(stderr, "vigil %s: %s%s\nusage: %s\n", cmd, msg, arg ? arg : "", usage);
    return CLI_USAGE;
}

int cli_fail(const char *cmd, const vg_error *err)
{
    fprintf(stderr, "vigil %s: %s%s%s\n", cmd, err->field[0] ? err->field : "",
            err->field[0] ? ": " : "", err->detail[0] ? err->detail : vg_status_title(err->code));
    return err->code == VG_E_UNAVAILABLE ? CLI_UNAVAILABLE : CLI_FAILED;
}

void cli_hex(const unsigned char *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

int64_t cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
