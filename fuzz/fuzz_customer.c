/*
 * fuzz_customer.c — POST /customers and PATCH /customers/{id} bodies:
 * body_parse() then customer_decode() for create and for patch.
 *
 * Properties: a refusal is a 4xx naming a field and leaves the output
 * untouched; an accepted body holds only what the contract allows (a
 * trimmed, non-blank name on create, assigned country codes, real dates not
 * in the future, one of the customer types).
 */
#include "fuzz.h"

#include "domain/bodies.h"
#include "domain/iso.h"
#include "domain/timeparse.h"
#include "domain/validate.h"

static void check_accepted(const customer_input *in, int is_patch)
{
    if (!is_patch)
        FUZZ_CHECK(in->has_full_name);
    if (in->has_full_name) {
        size_t n = strlen(in->full_name);
        FUZZ_CHECK(n > 0 && text_ok(in->full_name, VG_NAME_MAX));
        FUZZ_CHECK(in->full_name[0] != ' ' && in->full_name[n - 1] != ' ');
    }
    if (in->has_email && in->email[0])
        FUZZ_CHECK(text_ok(in->email, VG_EMAIL_MAX) && strchr(in->email, '@'));
    if (in->has_country && in->country[0])
        FUZZ_CHECK(iso_country_valid(in->country));
    if (in->has_date_of_birth && in->date_of_birth[0]) {
        int32_t days;
        FUZZ_CHECK(date_parse(in->date_of_birth, "date_of_birth", &days, NULL) == VG_OK);
        FUZZ_CHECK(days <= FUZZ_TODAY);
    }
    if (in->has_customer_type && in->customer_type[0])
        FUZZ_CHECK(!strcmp(in->customer_type, "individual") ||
                   !strcmp(in->customer_type, "business"));
    if (in->has_pep)
        FUZZ_CHECK(in->pep == 0 || in->pep == 1);
    if (in->has_external_id && in->external_id[0])
        FUZZ_CHECK(text_ok(in->external_id, VG_EXTID_MAX) && !strchr(in->external_id, ' '));
    if (is_patch)
        FUZZ_CHECK(!in->has_external_id);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *body = fuzz_body(data, size);
    if (!body)
        return 0;
    vg_error err = {0};
    for (int is_patch = 0; is_patch <= 1; is_patch++) {
        customer_input in, untouched;
        memset(&in, 0xA5, sizeof in);
        untouched = in;
        vg_status st = customer_decode(body, is_patch, FUZZ_TODAY, &in, &err);
        if (st == VG_OK) {
            check_accepted(&in, is_patch);
        } else {
            fuzz_check_refusal(st, &err);
            FUZZ_CHECK(memcmp(&in, &untouched, sizeof in) == 0);
        }
        vg_error_clear(&err);
    }
    json_decref(body);
    return 0;
}
