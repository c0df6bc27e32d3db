/*
 * import.h — the transaction importer shared by `vigil import transactions`
 * and `vigil demo seed`.
 *
 * Decision: the importer writes through the database function
 * vigil_ingest(jsonb) on a VIGIL_DATABASE_URL connection (tx_ingest), not
 * through the HTTP API. It is the very function POST /transactions runs, so
 * rules, events and idempotency are identical, and a bulk load needs neither
 * a running `vigil serve` nor an API key (the database credentials are the
 * operator's authority, as for `vigil migrate`).
 *
 * Every record is first decoded with the API's own validation
 * (tx_body_decode, i.e. tx_decode);
 * a bad record is rejected alone (line number, field, reason: on stderr and
 * in the rejects file) and the good ones are queued. A full queue is one
 * atomic vigil_ingest batch. If the database still refuses the batch
 * (VG422: unknown customer, currency without a rate) it names the rows: they
 * are rejected and the rest of the batch is sent again, so good records
 * always land. Re-importing the same records inserts nothing twice
 * (external_id), and the duplicates are counted as such.
 */
#ifndef VIGIL_CLI_IMPORT_H
#define VIGIL_CLI_IMPORT_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>

#include "util/status.h"

typedef struct import_stats {
    long long records;    /* records read (blank lines excluded) */
    long long imported;   /* new rows written */
    long long duplicates; /* already stored (same external_id), or repeated in the input */
    long long rejected;   /* refused, each reported */
    long long batches;    /* vigil_ingest calls that succeeded */
} import_stats;

typedef struct importer importer;

/* A new importer writing through `db` (borrowed) in batches of `batch`.
 * `rejects_path` (may be NULL: report on stderr only) is created when the
 * first record is rejected. `quiet` suppresses the per-record stderr lines
 * (the rejects file still gets them). Never NULL. */
importer *importer_new(PGconn *db, int batch, const char *rejects_path, int quiet);

/* Validates one record (a transaction object as POST /transactions takes it)
 * read at `line` and queues it, sending the batch when it is full. `raw`
 * (may be NULL) is the record's original text for the rejects file.
 * `csv_names` maps field names to CSV column names in reports
 * ("counterparty.name" → "counterparty_name"). A rejected record is not an
 * error; VG_OK unless the database failed (err set; VG_E_UNAVAILABLE: the
 * import can simply be re-run). */
vg_status importer_add(importer *im, long line, const json_t *record, const char *raw,
                       int csv_names, vg_error *err);

/* Rejects a record that could not even be parsed (bad CSV, bad JSON). */
void importer_reject(importer *im, long line, const char *field, const char *detail,
                     const char *raw);

/* Sends what is queued. VG_OK or the database's failure. */
vg_status importer_flush(importer *im, vg_error *err);

/* Counters so far. */
const import_stats *importer_stats(const importer *im);

/* Closes the rejects file (reporting a write error on stderr: returns -1),
 * removes a stale one from an earlier run when nothing was rejected, frees
 * im. NULL is a no-op returning 0. */
int importer_free(importer *im);

#endif
