/*
 * fuzz_transactions.c — POST /transactions bodies, single or batch:
 * body_parse() then tx_body_decode() (which runs tx_decode on each item).
 *
 * Properties: a refusal is a 4xx naming a field, and a refused batch lists
 * each bad item as "transactions[i]..." with i inside the batch; an accepted
 * body yields one canonical item per input item whose amount is the
 * canonical form for its currency (money_parse is idempotent on it), whose
 * customer_id is a lower-case UUID and whose occurred_at parses back to at
 * most 24 h after "now".
 */
#include "fuzz.h"

#include "domain/bodies.h"
#include "domain/iso.h"
#include "domain/money.h"
#include "domain/timeparse.h"
#include "domain/validate.h"

#define MAX_BATCH 8 /* small, so that the limit itself is reached */

static void check_item(const json_t *item)
{
    const char *amount = json_string_value(json_object_get(item, "amount"));
    const char *currency = json_string_value(json_object_get(item, "currency"));
    const char *customer = json_string_value(json_object_get(item, "customer_id"));
    const char *occurred = json_string_value(json_object_get(item, "occurred_at"));
    FUZZ_CHECK(amount && currency && customer && occurred);
    FUZZ_CHECK(json_string_value(json_object_get(item, "external_id")));
    int exponent = iso_currency_exponent(currency);
    FUZZ_CHECK(exponent >= 0);
    char again[MONEY_STR_MAX];
    int64_t minor = 0;
    FUZZ_CHECK(money_parse(amount, exponent, "amount", again, &minor, NULL) == VG_OK);
    FUZZ_CHECK(strcmp(again, amount) == 0 && minor > 0);
    char canon[37];
    FUZZ_CHECK(uuid_parse(customer, canon) && strcmp(canon, customer) == 0);
    int64_t us;
    FUZZ_CHECK(rfc3339_parse(occurred, "occurred_at", &us, NULL) == VG_OK);
    FUZZ_CHECK(us <= FUZZ_NOW_US + 24LL * 3600 * 1000000);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *body = fuzz_body(data, size), *items = NULL;
    if (!body)
        return 0;
    vg_error err = {0};
    int batch = -1;
    vg_status st = tx_body_decode(body, MAX_BATCH, FUZZ_NOW_US, &items, &batch, &err);
    FUZZ_CHECK(batch == 0 || batch == 1);
    if (st == VG_OK) {
        FUZZ_CHECK(json_is_array(items));
        const json_t *list = batch ? json_object_get(body, "transactions") : NULL;
        FUZZ_CHECK(json_array_size(items) == (batch ? json_array_size(list) : 1));
        FUZZ_CHECK(json_array_size(items) >= 1 && json_array_size(items) <= MAX_BATCH);
        size_t i;
        json_t *item;
        json_array_foreach(items, i, item) check_item(item);
    } else {
        fuzz_check_refusal(st, &err);
        FUZZ_CHECK(items == NULL);
        size_t i, n = json_array_size(json_object_get(body, "transactions"));
        json_t *e;
        json_array_foreach(err.items, i, e)
        {
            const char *field = json_string_value(json_object_get(e, "field"));
            json_int_t index = json_integer_value(json_object_get(e, "index"));
            FUZZ_CHECK(batch && field && strncmp(field, "transactions[", 13) == 0);
            FUZZ_CHECK(index >= 0 && (size_t)index < n);
        }
    }
    vg_error_clear(&err);
    json_decref(items);
    json_decref(body);
    return 0;
}
