/*
 * csv.c — RFC 4180 records, one at a time, strictly (see csv.h).
 *
 * A single pass with three states: at the start of a field, inside an
 * unquoted field, inside a quoted field. Unescaped bytes are copied into the
 * record's own buffer, each field followed by a NUL, so callers get C
 * strings without a second pass.
 */
#include "domain/csv.h"

#include <stdlib.h>
#include <string.h>

enum { AT_START, UNQUOTED, QUOTED };

/* Appends byte ch to rec->data at *n, growing it. */
static void put(csv_record *rec, size_t *n, char ch)
{
    if (*n + 1 >= rec->cap) {
        size_t cap = rec->cap ? rec->cap * 2 : 256;
        char *p = realloc(rec->data, cap);
        if (!p)
            abort(); /* out of memory: nothing sensible to return */
        rec->data = p;
        rec->cap = cap;
    }
    rec->data[(*n)++] = ch;
}

/* Closes the current field (NUL) and opens the next one. Returns 0, or -1
 * when the record has too many fields. */
static int end_field(csv_record *rec, size_t *n)
{
    rec->len[rec->nfields] = *n - rec->off[rec->nfields];
    put(rec, n, '\0');
    if (++rec->nfields > CSV_MAX_FIELDS - 1)
        return -1;
    rec->off[rec->nfields] = *n;
    return 0;
}

/* Skips to just past the next LF outside quotes (or to the end). */
static size_t skip_record(const char *buf, size_t len, size_t i, int quoted)
{
    for (; i < len; i++) {
        if (buf[i] == '"')
            quoted = !quoted;
        else if (buf[i] == '\n' && !quoted)
            return i + 1;
    }
    return len;
}

static int fail(const char *buf, size_t len, size_t i, int quoted, size_t *consumed,
                const char **why, const char *msg)
{
    *consumed = skip_record(buf, len, i, quoted);
    if (why)
        *why = msg;
    return CSV_ERROR;
}

int csv_parse_line(const char *buf, size_t len, int at_eof, csv_record *rec, size_t *consumed,
                   const char **why)
{
    size_t n = 0, i = 0;
    int state = AT_START;
    *consumed = 0;
    if (len == 0)
        return CSV_END;
    rec->nfields = 0;
    rec->off[0] = 0;
    while (i < len) {
        char ch = buf[i];
        switch (state) {
        case AT_START:
        case UNQUOTED:
            if (ch == ',') {
                if (end_field(rec, &n) != 0)
                    return fail(buf, len, i, 0, consumed, why, "too many fields");
                state = AT_START;
                i++;
            } else if (ch == '\n' || ch == '\r') {
                size_t eol = ch == '\n' ? 1 : 0;
                if (ch == '\r') {
                    if (i + 1 < len && buf[i + 1] == '\n')
                        eol = 2;
                    else if (i + 1 < len || at_eof)
                        return fail(buf, len, i, 0, consumed, why, "bare CR outside quotes");
                    else
                        return CSV_INCOMPLETE; /* the LF may be in the next chunk */
                }
                end_field(rec, &n); /* nfields < max here: checked at each ',' */
                *consumed = i + eol;
                return CSV_RECORD;
            } else if (ch == '"') {
                if (state == UNQUOTED)
                    return fail(buf, len, i + 1, 0, consumed, why,
                                "quote inside an unquoted field");
                state = QUOTED;
                i++;
            } else {
                put(rec, &n, ch);
                state = UNQUOTED;
                i++;
            }
            break;
        case QUOTED:
            if (ch != '"') {
                put(rec, &n, ch);
                i++;
            } else if (i + 1 < len && buf[i + 1] == '"') {
                put(rec, &n, '"'); /* "" is one quote */
                i += 2;
            } else if (i + 1 == len && !at_eof) {
                return CSV_INCOMPLETE; /* cannot tell "" from " yet */
            } else {
                char next = i + 1 < len ? buf[i + 1] : '\n';
                if (next != ',' && next != '\n' && next != '\r')
                    return fail(buf, len, i + 1, 0, consumed, why, "text after a closing quote");
                state = UNQUOTED; /* only a separator or line end can follow */
                i++;
            }
            break;
        }
    }
    if (state == QUOTED) {
        if (!at_eof)
            return CSV_INCOMPLETE;
        *consumed = len;
        if (why)
            *why = "unterminated quoted field";
        return CSV_ERROR;
    }
    if (!at_eof)
        return CSV_INCOMPLETE; /* the line end has not arrived yet */
    end_field(rec, &n);
    *consumed = len;
    return CSV_RECORD;
}

const char *csv_field(const csv_record *rec, size_t i)
{
    return rec->data + rec->off[i];
}

void csv_record_free(csv_record *rec)
{
    if (!rec)
        return;
    free(rec->data);
    memset(rec, 0, sizeof *rec);
}
