/*
 * cli_import.c — `vigil import transactions FILE`: bulk-load a CSV (header
 * row, RFC 4180) or JSON Lines file through the importer (import.h).
 *
 * The file is read whole into memory (a million rows is ~150 MB) and walked
 * record by record; the line number of a record is the physical line it
 * starts on (the CSV header is line 1). Progress goes to stderr: a bar with
 * rate and ETA redrawn in place on a terminal, otherwise one plain line per
 * --progress seconds (so logs of a cron job or CI run stay readable).
 */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/import.h"
#include "domain/csv.h"
#include "store/db.h"

#define IMPORT_CMD "import transactions"

/* The CSV columns: a transaction's fields, counterparty flattened. */
static const char *const csv_columns[] = {
    "external_id",
    "customer_id",
    "amount",
    "currency",
    "direction",
    "channel",
    "occurred_at",
    "counterparty_name",
    "counterparty_account",
    "counterparty_country",
    NULL,
};

typedef struct progress {
    int tty;
    double interval_ms; /* plain lines: at most one per interval */
    size_t total;       /* bytes in the file */
    int64_t start, last;
    long long last_batches;
} progress;

static void progress_show(progress *p, const importer *im, size_t done, int final)
{
    const import_stats *s = importer_stats(im);
    int64_t now = cli_now_ms();
    if (!final) {
        if (p->tty && now - p->last < 100)
            return;
        /* Plain lines: after a batch has landed, at most once per interval. */
        if (!p->tty && (s->batches == p->last_batches || now - p->last < p->interval_ms))
            return;
    }
    p->last = now;
    p->last_batches = s->batches;
    double secs = (double)(now - p->start) / 1000.0;
    double pct = p->total ? 100.0 * (double)done / (double)p->total : 100.0;
    double rate = secs > 0 ? (double)s->records / secs : 0;
    double eta = done > 0 && done < p->total ? secs * (double)(p->total - done) / (double)done : 0;
    if (p->tty) {
        char bar[31];
        int fill = (int)(pct * 30 / 100);
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        fprintf(stderr,
                "\r[%s] %3.0f%%  %lld records  %.0f/s  ETA %d:%02d  (new %lld, dup %lld, "
                "rejected %lld)\033[K%s",
                bar, pct, s->records, rate, (int)eta / 60, (int)eta % 60, s->imported,
                s->duplicates, s->rejected, final ? "\n" : "");
    } else {
        fprintf(stderr,
                "progress: %.0f%% %lld records, %lld new, %lld duplicates, %lld rejected, "
                "%.0f records/s, ETA %.0f s\n",
                pct, s->records, s->imported, s->duplicates, s->rejected, rate, eta);
    }
    fflush(stderr);
}

/* Counts the LFs in buf[0..n). */
static long count_lines(const char *buf, size_t n)
{
    long k = 0;
    for (size_t i = 0; i < n; i++)
        k += buf[i] == '\n';
    return k;
}

/* A copy of the record's text without its line end, for the rejects file. */
static char *raw_text(const char *p, size_t n)
{
    while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r'))
        n--;
    return strndup(p, n);
}

/* Maps the header to column indexes; prints the problem and returns -1. */
static int csv_header(const csv_record *h, int *col_of)
{
    int seen[16] = {0};
    for (size_t i = 0; i < h->nfields; i++) {
        const char *name = csv_field(h, i);
        int k = 0;
        while (csv_columns[k] && strcmp(csv_columns[k], name) != 0)
            k++;
        if (!csv_columns[k]) {
            fprintf(stderr,
                    "vigil " IMPORT_CMD ": line 1: unknown column '%s' (columns: external_id, "
                    "customer_id, amount, currency, direction, channel, occurred_at, "
                    "counterparty_name, counterparty_account, counterparty_country)\n",
                    name);
            return -1;
        }
        if (seen[k]++) {
            fprintf(stderr, "vigil " IMPORT_CMD ": line 1: column '%s' appears twice\n", name);
            return -1;
        }
        col_of[i] = k;
    }
    return 0;
}

/* A CSV record as the transaction object the API would receive: empty cells
 * are absent, the counterparty columns form "counterparty". */
static json_t *csv_object(const csv_record *r, const int *col_of)
{
    json_t *o = json_object(), *cp = json_object();
    for (size_t i = 0; i < r->nfields; i++) {
        const char *v = csv_field(r, i), *name = csv_columns[col_of[i]];
        if (!*v)
            continue;
        json_t *s = json_stringn_nocheck(v, r->len[i]);
        if (strncmp(name, "counterparty_", 13) == 0)
            json_object_set_new(cp, name + 13, s);
        else
            json_object_set_new(o, name, s);
    }
    if (json_object_size(cp))
        json_object_set_new(o, "counterparty", cp);
    else
        json_decref(cp);
    return o;
}

/* Walks a CSV file. Returns VG_OK or the database failure. */
static vg_status import_csv(importer *im, progress *pg, const char *buf, size_t len, vg_error *err)
{
    csv_record rec = {0};
    size_t pos = 0, used;
    long line = 1;
    const char *why;
    int col_of[CSV_MAX_FIELDS];
    vg_status st = VG_OK;
    /* A UTF-8 byte order mark (spreadsheet exports) is not part of the
     * first column's name. */
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) {
        buf += 3;
        len -= 3;
    }
    int rc = csv_parse_line(buf, len, 1, &rec, &used, &why);
    if (rc != CSV_RECORD || csv_header(&rec, col_of) != 0) {
        if (rc == CSV_END)
            fprintf(stderr, "vigil " IMPORT_CMD ": the file is empty (a header row is needed)\n");
        else if (rc == CSV_ERROR)
            fprintf(stderr, "vigil " IMPORT_CMD ": line 1: %s\n", why);
        csv_record_free(&rec);
        return vg_fail(err, VG_E_INVALID, "header", "unusable header row");
    }
    size_t ncols = rec.nfields;
    pos = used;
    line += count_lines(buf, used);
    while (st == VG_OK &&
           (rc = csv_parse_line(buf + pos, len - pos, 1, &rec, &used, &why)) != CSV_END) {
        char *raw = raw_text(buf + pos, used);
        if (rc == CSV_ERROR) {
            importer_reject(im, line, "record", why, raw);
            /* counted as a record: it was one, just not a readable one */
        } else if (rec.nfields == 1 && rec.len[0] == 0) {
            /* a blank line holds no record */
        } else if (rec.nfields != ncols) {
            char why_n[96];
            snprintf(why_n, sizeof why_n, "has %zu fields, the header has %zu", rec.nfields, ncols);
            importer_reject(im, line, "record", why_n, raw);
        } else {
            json_t *o = csv_object(&rec, col_of);
            st = importer_add(im, line, o, raw, 1, err);
            json_decref(o);
        }
        free(raw);
        pos += used;
        line += count_lines(buf + pos - used, used);
        progress_show(pg, im, pos, 0);
    }
    csv_record_free(&rec);
    return st;
}

/* Walks a JSON Lines file: one transaction object per line. */
static vg_status import_jsonl(importer *im, progress *pg, const char *buf, size_t len,
                              vg_error *err)
{
    size_t pos = 0;
    long line = 0;
    vg_status st = VG_OK;
    while (st == VG_OK && pos < len) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (buf + pos)) : len - pos;
        line++;
        size_t body = n;
        if (body > 0 && buf[pos + body - 1] == '\r')
            body--;
        size_t k = 0;
        while (k < body && (buf[pos + k] == ' ' || buf[pos + k] == '\t'))
            k++;
        if (k < body) {
            char *raw = strndup(buf + pos, body);
            json_error_t jerr;
            json_t *o = json_loadb(buf + pos, body, JSON_REJECT_DUPLICATES, &jerr);
            if (!o) {
                char why[200];
                snprintf(why, sizeof why, "not valid JSON: %s (column %d)", jerr.text, jerr.column);
                importer_reject(im, line, "record", why, raw);
            } else {
                st = importer_add(im, line, o, raw, 0, err);
            }
            json_decref(o);
            free(raw);
        }
        pos += n + (nl != NULL);
        progress_show(pg, im, pos, 0);
    }
    return st;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;
    if (!f)
        return NULL;
    for (;;) {
        if (n + 65536 > cap) {
            cap = cap ? cap * 2 : 1 << 20;
            char *p = realloc(buf, cap);
            if (!p)
                abort();
            buf = p;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static int usage_error(const char *msg, const char *arg)
{
    return cli_usage_error(IMPORT_CMD,
                           "vigil import transactions FILE [--format csv|jsonl] [--batch N]"
                           " [--rejects PATH] [--progress SECONDS] [--quiet]",
                           msg, arg);
}

int cli_import(const vg_config *cfg, int argc, char **argv)
{
    const char *file = NULL, *format = NULL, *rejects = NULL;
    long batch = 1000, every = 1;
    int quiet = 0;
    if (argc < 1 || strcmp(argv[0], "transactions") != 0)
        return usage_error("what to import: transactions", NULL);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char *end;
        if (strcmp(a, "--format") == 0 && i + 1 < argc) {
            format = argv[++i];
            if (strcmp(format, "csv") != 0 && strcmp(format, "jsonl") != 0)
                return usage_error("--format is csv or jsonl, not ", format);
        } else if (strcmp(a, "--batch") == 0 && i + 1 < argc) {
            batch = strtol(argv[++i], &end, 10);
            if (*end || batch < 1 || batch > cfg->max_batch)
                return usage_error("--batch must be 1 .. VIGIL_MAX_BATCH, got ", argv[i]);
        } else if (strcmp(a, "--rejects") == 0 && i + 1 < argc) {
            rejects = argv[++i];
        } else if (strcmp(a, "--progress") == 0 && i + 1 < argc) {
            every = strtol(argv[++i], &end, 10);
            if (*end || every < 0)
                return usage_error("--progress needs seconds >= 0, got ", argv[i]);
        } else if (strcmp(a, "--quiet") == 0) {
            quiet = 1;
        } else if (a[0] != '-' && !file) {
            file = a;
        } else {
            return usage_error("unexpected argument ", a);
        }
    }
    if (!file)
        return usage_error("name the FILE to import", NULL);
    if (!format) {
        const char *dot = strrchr(file, '.');
        if (dot && strcmp(dot, ".csv") == 0)
            format = "csv";
        else if (dot && (strcmp(dot, ".jsonl") == 0 || strcmp(dot, ".ndjson") == 0))
            format = "jsonl";
        else
            return usage_error("cannot tell the format from the name (.csv, .jsonl, .ndjson); "
                               "give --format for ",
                               file);
    }
    char rejects_default[4096];
    if (!rejects) {
        snprintf(rejects_default, sizeof rejects_default, "%s.rejects", file);
        rejects = rejects_default;
    }
    size_t len = 0;
    char *buf = read_all(file, &len);
    if (!buf) {
        fprintf(stderr, "vigil " IMPORT_CMD ": cannot read %s: %s\n", file, strerror(errno));
        return CLI_FAILED;
    }
    vg_error err = {0};
    PGconn *db = db_connect(cfg->database_url, (int)cfg->db_connect_timeout, &err);
    if (!db) {
        free(buf);
        return cli_fail(IMPORT_CMD, &err);
    }
    importer *im = importer_new(db, (int)batch, rejects, quiet);
    progress pg = {.tty = isatty(STDERR_FILENO),
                   .interval_ms = (double)every * 1000,
                   .total = len,
                   .start = cli_now_ms()};
    pg.last = pg.start - (int64_t)pg.interval_ms; /* the first batch may report at once */
    vg_status st = strcmp(format, "csv") == 0 ? import_csv(im, &pg, buf, len, &err)
                                              : import_jsonl(im, &pg, buf, len, &err);
    if (st == VG_OK)
        st = importer_flush(im, &err);
    progress_show(&pg, im, st == VG_OK ? len : 0, 1);
    const import_stats s = *importer_stats(im);
    int rc = CLI_OK;
    if (st != VG_OK) {
        rc = cli_fail(IMPORT_CMD, &err);
        if (s.batches > 0 || err.code == VG_E_UNAVAILABLE)
            fprintf(stderr, "vigil " IMPORT_CMD ": stopped; what was imported stays, and "
                            "re-running the same file skips it (duplicates)\n");
    }
    if (importer_free(im) != 0 && rc == CLI_OK)
        rc = CLI_FAILED;
    double secs = (double)(cli_now_ms() - pg.start) / 1000.0;
    printf("%s: %lld records: %lld imported, %lld duplicates, %lld rejected%s%s%s in %.1f s "
           "(%.0f records/s)\n",
           file, s.records, s.imported, s.duplicates, s.rejected, s.rejected ? " (see " : "",
           s.rejected ? rejects : "", s.rejected ? ")" : "", secs,
           secs > 0 ? (double)s.records / secs : 0.0);
    if (s.rejected && rc == CLI_OK)
        rc = CLI_FAILED;
    PQfinish(db);
    vg_error_clear(&err);
    free(buf);
    return rc;
}
