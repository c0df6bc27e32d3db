/*
 * fuzz.h — what every libFuzzer harness in fuzz/ shares: the entry point's
 * prototype and the checks of the properties a decoder promises.
 *
 * A harness calls a pure decoder on the input and then asserts what its
 * contract says; a broken property aborts, which libFuzzer reports as a
 * crash and saves the input (see fuzz/README.md).
 */
#ifndef VIGIL_FUZZ_FUZZ_H
#define VIGIL_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain/bodies.h"
#include "util/status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts with the failed property when `cond` is false. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz property failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A refusal is the client's fault (4xx), says why, and names a field (the
 * API puts it in the problem+json "field"). `st` is what the call returned. */
static inline void fuzz_check_refusal(vg_status st, const vg_error *err)
{
    FUZZ_CHECK(st != VG_OK);
    FUZZ_CHECK(err->code == st);
    FUZZ_CHECK(vg_status_http(st) >= 400 && vg_status_http(st) < 500);
    FUZZ_CHECK(err->field[0] != '\0');
    FUZZ_CHECK(err->detail[0] != '\0');
}

/* data[0..size) as a NUL-terminated string (cut at the first NUL, as a C
 * caller would see it); free() it. */
static inline char *fuzz_cstring(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* The fixed "now" of the harnesses (2026-11-27T12:00:00Z), so that a saved
 * input reproduces whatever day it is replayed. */
#define FUZZ_NOW_US   1795780800000000LL
#define FUZZ_TODAY    20784 /* days since 1970-01-01 of FUZZ_NOW_US */
#define FUZZ_MAXDEPTH 16    /* VIGIL_MAX_JSON_DEPTH's default */

/* The request body data[0..size) parsed as the API parses it, or NULL when
 * the API would refuse it (the refusal's contract checked). */
static inline json_t *fuzz_body(const uint8_t *data, size_t size)
{
    vg_error err = {0};
    json_t *body = body_parse((const char *)data, size, FUZZ_MAXDEPTH, &err);
    if (!body)
        fuzz_check_refusal(err.code, &err);
    vg_error_clear(&err);
    return body;
}

#endif
