/*
 * csv.h — a small, strict RFC 4180 record parser.
 *
 * Pure code over a byte buffer (no I/O): fields separated by ',', records
 * ended by LF or CRLF, fields optionally enclosed in double quotes, inside
 * which ',' CR and LF are data and "" is one quote. Strict where RFC 4180 is:
 * a quote inside an unquoted field, anything but a separator or line end
 * after a closing quote, and a bare CR outside quotes are errors (reported,
 * never guessed at). The importer (src/cli/cli_import.c) feeds it a file.
 */
#ifndef VIGIL_DOMAIN_CSV_H
#define VIGIL_DOMAIN_CSV_H

#include <stddef.h>

#define CSV_MAX_FIELDS 64

/* One parsed record. Field i is data + off[i], len[i] bytes long and
 * NUL-terminated (a field may itself contain NUL bytes only if the input
 * did). `data` is owned and reused by the next csv_parse_line on the same
 * record; release it with csv_record_free. Zero-initialise before first use. */
typedef struct csv_record {
    size_t nfields;
    size_t off[CSV_MAX_FIELDS];
    size_t len[CSV_MAX_FIELDS];
    char *data;
    size_t cap;
} csv_record;

/* Return values of csv_parse_line. */
#define CSV_RECORD     1  /* a complete record is in *rec */
#define CSV_END        0  /* len == 0: no more input */
#define CSV_INCOMPLETE -1 /* buf ends inside a quoted field and !at_eof: give more input */
#define CSV_ERROR      -2 /* malformed: *why says how, *consumed skips the bad record */

/* Parses the record that starts at buf[0] (len bytes available). `at_eof`
 * says no more bytes follow, so a last record without a line end is
 * complete. On CSV_RECORD and CSV_ERROR, *consumed is the number of bytes
 * the record occupies including its line end (on error: up to and including
 * the next LF outside quotes, or everything left), so the caller can go on
 * with the next record. `why` (may be NULL) receives a static message on
 * CSV_ERROR. An empty line is a record with one empty field. */
int csv_parse_line(const char *buf, size_t len, int at_eof, csv_record *rec, size_t *consumed,
                   const char **why);

/* Field i of rec as a NUL-terminated string (i < rec->nfields). */
const char *csv_field(const csv_record *rec, size_t i);

/* Frees what rec owns and zeroes it. NULL is a no-op. */
void csv_record_free(csv_record *rec);

#endif
