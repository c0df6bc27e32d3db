/*
 * fuzz_csv.c — csv_parse_line(), the RFC 4180 reader of `vigil import`.
 *
 * The whole input is read record by record as the importer does at the end
 * of a file (at_eof = 1), and once more in two chunks (at_eof = 0 on the
 * first). Properties: every call either ends the input, or consumes at
 * least one byte and no more than are left (so a reader always advances);
 * a record has 1..CSV_MAX_FIELDS fields, each inside the record's buffer
 * and NUL-terminated; a field of an unquoted record has no separator or
 * line end in it.
 */
#include "fuzz.h"

#include "domain/csv.h"

static void check_record(const csv_record *rec, const char *raw, size_t consumed)
{
    FUZZ_CHECK(rec->nfields >= 1 && rec->nfields <= CSV_MAX_FIELDS);
    int quoted = memchr(raw, '"', consumed) != NULL;
    for (size_t i = 0; i < rec->nfields; i++) {
        FUZZ_CHECK(rec->off[i] + rec->len[i] < rec->cap);
        FUZZ_CHECK(rec->data[rec->off[i] + rec->len[i]] == '\0');
        FUZZ_CHECK(csv_field(rec, i) == rec->data + rec->off[i]);
        if (!quoted)
            FUZZ_CHECK(!memchr(csv_field(rec, i), ',', rec->len[i]) &&
                       !memchr(csv_field(rec, i), '\n', rec->len[i]));
    }
}

static void read_all(const char *buf, size_t len, int at_eof, csv_record *rec)
{
    for (;;) {
        size_t consumed = (size_t)-1;
        const char *why = NULL;
        int rc = csv_parse_line(buf, len, at_eof, rec, &consumed, &why);
        if (rc == CSV_END) {
            FUZZ_CHECK(len == 0);
            return;
        }
        if (rc == CSV_INCOMPLETE) {
            FUZZ_CHECK(!at_eof);
            return;
        }
        FUZZ_CHECK(rc == CSV_RECORD || rc == CSV_ERROR);
        FUZZ_CHECK(consumed >= 1 && consumed <= len);
        if (rc == CSV_RECORD)
            check_record(rec, buf, consumed);
        else
            FUZZ_CHECK(why && why[0]);
        buf += consumed;
        len -= consumed;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    csv_record rec = {0};
    read_all((const char *)data, size, 1, &rec);
    read_all((const char *)data, size / 2, 0, &rec);
    csv_record_free(&rec);
    return 0;
}
