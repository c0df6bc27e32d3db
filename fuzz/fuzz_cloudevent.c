/*
 * fuzz_cloudevent.c — what a consumer does with a JetStream message before
 * it touches the database: consumer_event_decode() of the body with its
 * Vigil-Seq header.
 *
 * Input: if byte 0 is odd, the text up to the first '\n' after it is the
 * Vigil-Seq header and the rest is the body; otherwise there is no header
 * and all after byte 0 is the body. Properties: a refusal is
 * VG_E_MALFORMED; an accepted event has a UUID id taken from the JSON, a
 * positive seq (when a header was given: the header, all digits), the
 * subject as its type and "data" borrowed from the event.
 *
 * The same input also goes to consumer_event_from_headers(), the body as
 * Nats-Msg-Id: it accepts only a UUID id with a seq header of digits, and
 * then reads the seq exactly as consumer_event_decode() does.
 */
#include "fuzz.h"

#include "consumers/consumer.h"
#include "domain/validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *hdr = NULL;
    const uint8_t *body = data + 1;
    size_t len = size - 1;
    if (data[0] & 1) {
        const uint8_t *nl = memchr(body, '\n', len);
        size_t n = nl ? (size_t)(nl - body) : len;
        hdr = fuzz_cstring(body, n);
        body += nl ? n + 1 : n;
        len -= nl ? n + 1 : n;
    }
    json_t *event = (json_t *)1;
    consumer_event ev;
    vg_error err = {0};
    vg_status st =
        consumer_event_decode((const char *)body, len, hdr, "aml.alert.created", &event, &ev, &err);
    FUZZ_CHECK(event != (json_t *)1);
    if (st == VG_OK) {
        FUZZ_CHECK(event && ev.event == event && ev.id && uuid_parse(ev.id, NULL));
        FUZZ_CHECK(ev.id == json_string_value(json_object_get(event, "id")));
        FUZZ_CHECK(ev.seq > 0 && strcmp(ev.type, "aml.alert.created") == 0);
        FUZZ_CHECK(ev.data == json_object_get(event, "data"));
        if (hdr) { /* the header, when present, is the seq: all digits */
            char text[32];
            snprintf(text, sizeof text, "%lld", ev.seq);
            FUZZ_CHECK(strspn(hdr, "0123456789") == strlen(hdr));
            FUZZ_CHECK(strcmp(hdr + strspn(hdr, "0"), text) == 0);
        }
    } else {
        FUZZ_CHECK(st == VG_E_MALFORMED && err.code == st && err.detail[0]);
    }
    vg_error_clear(&err);
    json_decref(event);

    char *id = fuzz_cstring(body, len);
    consumer_event hv;
    st = consumer_event_from_headers(id, hdr, "aml.alert.created", &hv, &err);
    if (st == VG_OK) {
        FUZZ_CHECK(hv.id == id && uuid_parse(id, NULL) && hv.seq > 0);
        FUZZ_CHECK(!hv.event && !hv.data && strcmp(hv.type, "aml.alert.created") == 0);
        FUZZ_CHECK(hdr && strspn(hdr, "0123456789") == strlen(hdr));
        char text[32];
        snprintf(text, sizeof text, "%lld", hv.seq);
        FUZZ_CHECK(strcmp(hdr + strspn(hdr, "0"), text) == 0);
    } else {
        FUZZ_CHECK(st == VG_E_MALFORMED && err.code == st && err.detail[0]);
    }
    vg_error_clear(&err);
    free(id);
    free(hdr);
    return 0;
}
