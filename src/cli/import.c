/*
 * import.c — validate, batch and ingest transactions; report every reject
 * (see import.h for the contract and the decisions behind it).
 */
#include "cli/import.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "domain/timeparse.h"
#include "domain/bodies.h"
#include "store/store_work.h"

struct importer {
    PGconn *db;
    int batch, quiet;
    int tty; /* stderr is a terminal: clear the progress bar before a report */
    const char *rejects_path;
    FILE *rejects;
    int write_failed;
    json_t *items; /* queued canonical transactions */
    long *lines;   /* their line numbers */
    char **raws;   /* their original text (or NULL) */
    import_stats st;
};

importer *importer_new(PGconn *db, int batch, const char *rejects_path, int quiet)
{
    importer *im = calloc(1, sizeof *im);
    if (!im)
        abort();
    im->db = db;
    im->batch = batch > 0 ? batch : 1;
    im->quiet = quiet;
    im->tty = isatty(STDERR_FILENO);
    im->rejects_path = rejects_path;
    im->items = json_array();
    im->lines = calloc((size_t)im->batch, sizeof *im->lines);
    im->raws = calloc((size_t)im->batch, sizeof *im->raws);
    if (!im->items || !im->lines || !im->raws)
        abort();
    return im;
}

/* Reports one rejected record (already counted in records). */
static void reject(importer *im, long line, const char *field, const char *detail, const char *raw)
{
    im->st.rejected++;
    if (!im->quiet)
        fprintf(stderr, "%sline %ld: %s%s%s\n", im->tty ? "\r\033[K" : "", line,
                field && *field ? field : "", field && *field ? ": " : "", detail);
    if (!im->rejects_path || im->write_failed)
        return;
    if (!im->rejects && !(im->rejects = fopen(im->rejects_path, "w"))) {
        fprintf(stderr, "vigil import: cannot create rejects file %s: %s\n", im->rejects_path,
                strerror(errno));
        im->write_failed = 1;
        return;
    }
    json_t *j = json_pack("{s:I, s:s, s:s, s:s?}", "line", (json_int_t)line, "field",
                          field ? field : "", "reason", detail, "record", raw);
    /* A raw record that is not valid UTF-8 cannot be a JSON string: keep
     * the report, say so instead of the record. */
    if (!j)
        j = json_pack("{s:I, s:s, s:s, s:s}", "line", (json_int_t)line, "field", field ? field : "",
                      "reason", detail, "record_note",
                      "the record is not valid UTF-8 and is not repeated here");
    if (!j || json_dumpf(j, im->rejects, JSON_COMPACT) != 0 || fputc('\n', im->rejects) == EOF)
        im->write_failed = 1;
    json_decref(j);
}

void importer_reject(importer *im, long line, const char *field, const char *detail,
                     const char *raw)
{
    im->st.records++;
    reject(im, line, field, detail, raw);
}

/* "counterparty.name" → "counterparty_name": the CSV column that holds it. */
static void column_name(const char *field, int csv_names, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s", field);
    if (csv_names && strncmp(out, "counterparty.", 13) == 0)
        out[12] = '_';
}

vg_status importer_add(importer *im, long line, const json_t *record, const char *raw,
                       int csv_names, vg_error *err)
{
    im->st.records++;
    /* POST /transactions would take {"transactions": [...]} as a batch;
     * here a record is one transaction. */
    if (!json_is_object(record) || json_object_get(record, "transactions")) {
        reject(im, line, "record", "must be one transaction object", raw);
        return VG_OK;
    }
    /* The API's own decoder: the same checks, the same canonical item. */
    json_t *items = NULL;
    int batch = 0;
    vg_error one = {0};
    if (tx_body_decode(record, 1, now_epoch_us(), &items, &batch, &one) != VG_OK) {
        char field[160];
        const char *f = one.field[0] && strcmp(one.field, "body") != 0 ? one.field : "record";
        column_name(f, csv_names, field, sizeof field);
        reject(im, line, field, one.detail, raw);
        vg_error_clear(&one);
        return VG_OK;
    }
    size_t n = json_array_size(im->items);
    json_array_append(im->items, json_array_get(items, 0));
    json_decref(items);
    im->lines[n] = line;
    im->raws[n] = raw ? strdup(raw) : NULL;
    if (n + 1 >= (size_t)im->batch)
        return importer_flush(im, err);
    return VG_OK;
}

/* Drops the queued entries whose index vigil_ingest named in err->items,
 * rejecting each. Returns how many were dropped. */
static size_t drop_refused(importer *im, const vg_error *err)
{
    size_t n = json_array_size(im->items), dropped = 0;
    char *bad = calloc(n ? n : 1, 1);
    size_t i;
    json_t *e;
    if (!bad)
        abort();
    json_array_foreach(err->items, i, e)
    {
        json_int_t idx = json_integer_value(json_object_get(e, "index"));
        if (idx < 0 || (size_t)idx >= n || bad[idx])
            continue;
        bad[idx] = 1;
        const char *field = json_string_value(json_object_get(e, "field"));
        const char *detail = json_string_value(json_object_get(e, "detail"));
        reject(im, im->lines[idx], field, detail ? detail : "refused by the database",
               im->raws[idx]);
    }
    json_t *keep = json_array();
    size_t k = 0;
    for (i = 0; i < n; i++) {
        if (bad[i]) {
            free(im->raws[i]);
            dropped++;
            continue;
        }
        json_array_append(keep, json_array_get(im->items, i));
        im->lines[k] = im->lines[i];
        im->raws[k] = im->raws[i];
        k++;
    }
    json_decref(im->items);
    im->items = keep;
    free(bad);
    return dropped;
}

vg_status importer_flush(importer *im, vg_error *err)
{
    vg_status st = VG_OK;
    while (json_array_size(im->items) > 0) {
        char *text = json_dumps(im->items, JSON_COMPACT), *out = NULL;
        vg_error e = {0};
        long created = 0, duplicates = 0;
        st = tx_ingest(im->db, text, &out, &created, &duplicates, &e);
        free(text);
        if (st == VG_OK) {
            im->st.imported += created;
            im->st.duplicates += duplicates;
            im->st.batches++;
            free(out);
            break;
        }
        /* The database named the rows it refuses: reject them, retry the
         * rest. Anything else (down, internal) stops the import. */
        if (st == VG_E_INVALID && e.items && drop_refused(im, &e) > 0) {
            vg_error_clear(&e);
            st = VG_OK;
            continue;
        }
        if (err) {
            vg_error_clear(err);
            *err = e;
        } else {
            vg_error_clear(&e);
        }
        return st;
    }
    for (size_t i = 0; i < json_array_size(im->items); i++)
        free(im->raws[i]);
    json_array_clear(im->items);
    return st;
}

const import_stats *importer_stats(const importer *im)
{
    return &im->st;
}

int importer_free(importer *im)
{
    if (!im)
        return 0;
    int rc = im->write_failed ? -1 : 0;
    if (im->rejects && fclose(im->rejects) != 0)
        rc = -1;
    if (rc != 0)
        fprintf(stderr, "vigil import: writing the rejects file %s failed\n", im->rejects_path);
    /* A rejects file left by an earlier run would describe lines that are
     * fine now: remove it so that what exists is always this run's. */
    if (!im->rejects && im->rejects_path && im->st.rejected == 0 && unlink(im->rejects_path) != 0 &&
        errno != ENOENT) {
        fprintf(stderr, "vigil import: cannot remove stale rejects file %s: %s\n", im->rejects_path,
                strerror(errno));
        rc = -1;
    }
    for (size_t i = 0; i < json_array_size(im->items); i++)
        free(im->raws[i]);
    json_decref(im->items);
    free(im->lines);
    free(im->raws);
    free(im);
    return rc;
}
