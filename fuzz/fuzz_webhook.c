/*
 * fuzz_webhook.c — POST /webhooks bodies: body_parse() then
 * webhook_decode().
 *
 * Properties: a refusal is a 4xx naming a field and leaves the output
 * untouched; an accepted registration has an http(s) URL of at most 2048
 * bytes, at most 32 event types each starting "aml.", and a secret of
 * 16..256 bytes when one was given.
 */
#include "fuzz.h"

#include <strings.h>

#include "domain/bodies.h"
#include "domain/webhook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *body = fuzz_body(data, size);
    if (!body)
        return 0;
    vg_error err = {0};
    static webhook_input in, untouched; /* 70 kB: not on the stack */
    memset(&in, 0xA5, sizeof in);
    untouched = in;
    vg_status st = webhook_decode(body, &in, &err);
    if (st == VG_OK) {
        FUZZ_CHECK(strlen(in.url) <= WEBHOOK_URL_MAX);
        FUZZ_CHECK(!strncasecmp(in.url, "http://", 7) || !strncasecmp(in.url, "https://", 8));
        FUZZ_CHECK(in.ntypes >= 0 && in.ntypes <= WEBHOOK_TYPES_MAX);
        for (int i = 0; i < in.ntypes; i++)
            FUZZ_CHECK(strncmp(in.types[i], "aml.", 4) == 0 &&
                       strlen(in.types[i]) <= WEBHOOK_TYPE_MAX);
        if (in.has_secret)
            FUZZ_CHECK(strlen(in.secret) >= WEBHOOK_SECRET_MIN &&
                       strlen(in.secret) <= WEBHOOK_SECRET_MAX);
    } else {
        fuzz_check_refusal(st, &err);
        FUZZ_CHECK(memcmp(&in, &untouched, sizeof in) == 0);
    }
    vg_error_clear(&err);
    json_decref(body);
    return 0;
}
