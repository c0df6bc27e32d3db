/*
 * cli_audit_verify.c — `vigil audit verify`: recompute event_log's hash
 * chain in C and name the first row that breaks it.
 *
 * The chain (0006_event_log.sql) is
 *
 *   hash(seq) = sha256(prev_hash || seq || '\n' || event_id || '\n' ||
 *                      event_type || '\n' || subject || '\n' || payload::text)
 *   prev_hash(1) = 32 zero bytes
 *
 * and is recomputed here with OpenSSL from the stored columns, never with
 * the database's vigil_event_hash(), so a compromised function cannot vouch
 * for its own rows. Rows are read in pages of AUDIT_PAGE by seq inside one
 * REPEATABLE READ READ ONLY transaction: constant memory, and every page,
 * the cursor and the log's end come from the same snapshot.
 *
 * What each finding means:
 *   missing            seq jumps: rows were deleted (the chain resumes after)
 *   edited             the stored hash is not the hash of the row's content
 *   reordered          the row holds another seq's event (its payload says
 *                      so), with or without that event's hashes: rows were
 *                      moved or swapped
 *   broken link        the row is self-consistent but its prev_hash is not
 *                      the previous row's hash: the previous row was
 *                      rewritten with a recomputed hash, or rows were moved
 *   removed at the end the chain alone cannot see a truncated tail, so the
 *                      log's last seq is compared with the publisher's
 *                      cursor and, when NATS answers, the stream's newest
 *                      event: both may only be behind the log, never ahead.
 *
 * Limit: a writer who rewrites every row from K to the end with fresh
 * hashes, and the cursor and the stream to match, leaves a valid chain.
 * Keep the printed head hash somewhere they cannot reach (a ticket, a
 * signed report) and compare it on the next run.
 */
#include "cli/cli.h"

#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events/stream.h"
#include "store/db.h"

#define AUDIT_CMD  "audit verify"
#define AUDIT_PAGE 5000
#define AUDIT_KEEP 100 /* problems kept for the report; all are counted */
#define AUDIT_SHOW 10  /* of which the text report prints this many */
#define HASH_LEN   32
#define HASH_MAX   64 /* longest stored hash we decode (tampered rows may differ) */

typedef struct problem {
    int64_t seq;
    const char *kind;
    char detail[400];
} problem;

typedef struct audit {
    EVP_MD_CTX *md;
    int64_t from, to;             /* requested range; to == 0: up to the end */
    int64_t first, last;          /* first and last seq seen */
    int64_t events;               /* rows checked */
    int64_t prev_seq;             /* seq of the previous row; 0 before the first */
    unsigned char prev[HASH_LEN]; /* the previous row's stored hash ... */
    int have_prev;                /* ... when it is known and 32 bytes long */
    problem kept[AUDIT_KEEP];
    int64_t nproblems;
    /* the ends of history */
    int64_t log_last, cursor;
    char stream_note[600]; /* what the stream says, or why it was not asked */
} audit;

static void add_problem(audit *a, int64_t seq, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add_problem(audit *a, int64_t seq, const char *kind, const char *fmt, ...)
{
    if (a->nproblems < AUDIT_KEEP) {
        problem *p = &a->kept[a->nproblems];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->detail, sizeof p->detail, fmt, ap);
        va_end(ap);
        p->seq = seq;
        p->kind = kind;
    }
    a->nproblems++;
}

/* Decodes PostgreSQL's encode(x, 'hex') into out (at most HASH_MAX bytes).
 * Returns the byte count, or -1 when it does not fit or is not hex. */
static int unhex(const char *hex, unsigned char *out)
{
    size_t n = strlen(hex);
    if (n % 2 || n / 2 > HASH_MAX)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = hex[2 * i + k];
            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= (unsigned)(c - '0');
            else if (c >= 'a' && c <= 'f')
                v |= (unsigned)(c - 'a' + 10);
            else
                return -1;
        }
        out[i] = (unsigned char)v;
    }
    return (int)(n / 2);
}

/* The chain hash of one row, as 0006_event_log.sql defines it, with `seq`
 * as text (the row's own, or another one when diagnosing a moved row).
 * Returns 1, or 0 when OpenSSL fails. */
static int chain_hash(EVP_MD_CTX *md, const unsigned char *prev, size_t prev_len, const char *seq,
                      PGresult *r, int i, unsigned char out[HASH_LEN])
{
    unsigned len = 0;
    int ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL) && EVP_DigestUpdate(md, prev, prev_len) &&
             EVP_DigestUpdate(md, seq, strlen(seq));
    for (int col = 1; ok && col <= 4; col++) /* event_id, type, subject, payload */
        ok = EVP_DigestUpdate(md, "\n", 1) &&
             EVP_DigestUpdate(md, PQgetvalue(r, i, col), (size_t)PQgetlength(r, i, col));
    return ok && EVP_DigestFinal_ex(md, out, &len) && len == HASH_LEN;
}

/* The stored hash does not match the row's content: tell an edit from a
 * moved row, whose payload names the seq it was hashed under. */
static vg_status diagnose(audit *a, PGresult *r, int i, int64_t seq, const unsigned char *prev,
                          int prev_len, const unsigned char *hash, const unsigned char *own,
                          vg_error *err)
{
    json_t *j = json_loadb(PQgetvalue(r, i, 4), (size_t)PQgetlength(r, i, 4), 0, NULL);
    json_t *s = json_object_get(j, "seq");
    int64_t other = json_is_integer(s) ? (int64_t)json_integer_value(s) : seq;
    json_decref(j);
    char stored_hex[2 * HASH_LEN + 1], own_hex[2 * HASH_LEN + 1];
    cli_hex(hash, HASH_LEN, stored_hex);
    cli_hex(own, HASH_LEN, own_hex);
    if (other == seq) {
        add_problem(a, seq, "edited", "stored hash %s, recomputed %s", stored_hex, own_hex);
        return VG_OK;
    }
    char other_txt[24];
    unsigned char as_other[HASH_LEN];
    snprintf(other_txt, sizeof other_txt, "%" PRId64, other);
    if (!chain_hash(a->md, prev, (size_t)prev_len, other_txt, r, i, as_other))
        return vg_fail(err, VG_E_INTERNAL, NULL, "SHA-256 failed (OpenSSL)");
    if (memcmp(as_other, hash, HASH_LEN) == 0)
        add_problem(a, seq, "reordered",
                    "the row holds the event of seq %" PRId64 " with that event's own hashes: "
                    "rows were moved or swapped",
                    other);
    else
        add_problem(a, seq, "reordered",
                    "the row holds the content of seq %" PRId64
                    " (its payload says \"seq\": %" PRId64
                    ") and matches neither hash: rows were moved and rewritten",
                    other, other);
    return VG_OK;
}

/* Checks row i of a page against its predecessor (see the file comment). */
static vg_status check_row(audit *a, PGresult *r, int i, vg_error *err)
{
    const char *seq_txt = PQgetvalue(r, i, 0);
    int64_t seq = strtoll(seq_txt, NULL, 10);
    int64_t expected = a->prev_seq ? a->prev_seq + 1 : a->from;
    int linked = a->have_prev;
    if (seq > expected) {
        if (seq - expected == 1)
            add_problem(a, expected, "missing",
                        "no row for seq %" PRId64 "; the chain resumes at seq %" PRId64, expected,
                        seq);
        else
            add_problem(a, expected, "missing",
                        "no rows for seqs %" PRId64 "..%" PRId64
                        "; the chain resumes at seq %" PRId64,
                        expected, seq - 1, seq);
        linked = 0; /* the hash the row should link to is gone with its row */
    }
    unsigned char prev[HASH_MAX], hash[HASH_MAX], own[HASH_LEN];
    int prev_len = unhex(PQgetvalue(r, i, 5), prev);
    int hash_len = unhex(PQgetvalue(r, i, 6), hash);
    a->have_prev = 0;
    if (prev_len < 0 || hash_len != HASH_LEN) {
        add_problem(a, seq, "edited", "stored %s is not a 32-byte SHA-256 (%d bytes)",
                    hash_len != HASH_LEN ? "hash" : "prev_hash",
                    hash_len != HASH_LEN ? hash_len : prev_len);
    } else if (!chain_hash(a->md, prev, (size_t)prev_len, seq_txt, r, i, own)) {
        return vg_fail(err, VG_E_INTERNAL, NULL, "SHA-256 failed (OpenSSL)");
    } else {
        if (memcmp(own, hash, HASH_LEN) != 0) {
            vg_status st = diagnose(a, r, i, seq, prev, prev_len, hash, own, err);
            if (st != VG_OK)
                return st;
        } else if (linked && (prev_len != HASH_LEN || memcmp(prev, a->prev, HASH_LEN) != 0)) {
            char want[2 * HASH_LEN + 1], got[2 * HASH_MAX + 1];
            cli_hex(a->prev, HASH_LEN, want);
            cli_hex(prev, (size_t)prev_len, got);
            if (seq == 1)
                add_problem(a, seq, "broken link",
                            "prev_hash %s, but the chain starts from 32 zero bytes", got);
            else /* linked: the previous row is seq - 1 */
                add_problem(a, seq, "broken link",
                            "prev_hash %s, but the hash of seq %" PRId64 " is %s: that row was "
                            "rewritten with a recomputed hash, or rows were moved",
                            got, seq - 1, want);
        }
        memcpy(a->prev, hash, HASH_LEN);
        a->have_prev = 1;
    }
    if (!a->first)
        a->first = seq;
    a->last = a->prev_seq = seq;
    a->events++;
    return VG_OK;
}

/* With --from-seq N > 1 the chain starts from row N-1's stored hash, so the
 * link into N is verified too. */
static vg_status load_anchor(audit *a, PGconn *c, vg_error *err)
{
    char s[24];
    snprintf(s, sizeof s, "%" PRId64, a->from - 1);
    const char *p[] = {s};
    PGresult *r =
        db_exec(c, "SELECT encode(hash, 'hex') FROM event_log WHERE seq = $1::bigint", 1, p, err);
    if (!r)
        return err->code;
    if (PQntuples(r) == 0)
        add_problem(a, a->from - 1, "missing",
                    "no row for seq %" PRId64 ", the anchor of --from-seq %" PRId64, a->from - 1,
                    a->from);
    else if (unhex(PQgetvalue(r, 0, 0), a->prev) == HASH_LEN)
        a->have_prev = 1;
    else
        add_problem(a, a->from - 1, "edited", "stored hash is not a 32-byte SHA-256");
    PQclear(r);
    return VG_OK;
}

/* Walks [from, min(to, log_last)] in pages of AUDIT_PAGE seqs. Each page is
 * bounded by seq, not only by LIMIT: on a freshly filled, not yet analyzed
 * event_log the planner would otherwise sort the whole rest of the log for
 * every page. A page may hold fewer rows (a gap), so the walk is by seq. */
static vg_status scan(audit *a, PGconn *c, vg_error *err)
{
    char after[24], upto[24];
    int64_t end = a->to && a->to < a->log_last ? a->to : a->log_last;
    for (int64_t pos = a->from - 1; pos < end; pos += AUDIT_PAGE) {
        snprintf(after, sizeof after, "%" PRId64, pos);
        snprintf(upto, sizeof upto, "%" PRId64, end - pos < AUDIT_PAGE ? end : pos + AUDIT_PAGE);
        const char *p[] = {after, upto};
        PGresult *r = db_exec(c,
                              "SELECT seq, event_id::text, event_type, subject, payload::text,"
                              " encode(prev_hash, 'hex'), encode(hash, 'hex') FROM event_log"
                              " WHERE seq > $1::bigint AND seq <= $2::bigint ORDER BY seq",
                              2, p, err);
        if (!r)
            return err->code;
        vg_status st = VG_OK;
        for (int i = 0; i < PQntuples(r) && st == VG_OK; i++)
            st = check_row(a, r, i, err);
        PQclear(r);
        if (st != VG_OK)
            return st;
    }
    return VG_OK;
}

/* The log's last seq and the publisher's cursor (same snapshot). */
static vg_status load_ends(audit *a, PGconn *c, vg_error *err)
{
    PGresult *r = db_exec(c,
                          "SELECT (SELECT coalesce(max(seq), 0) FROM event_log),"
                          " (SELECT seq FROM cursors WHERE name = 'publisher')",
                          0, NULL, err);
    if (!r)
        return err->code;
    a->log_last = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    a->cursor = PQgetisnull(r, 0, 1) ? -1 : strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    PQclear(r);
    return VG_OK;
}

/* Asks the stream for its newest event; NATS being away is noted, not an
 * error: the chain is the database's and is verified either way. Returns
 * that event's seq, or 0. */
static int64_t ask_stream(audit *a, const vg_config *cfg)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    vg_error err = {0};
    uint64_t stream_last = 0;
    int64_t tail = 0;
    if (stream_connect(cfg, "vigil-audit", 0, NULL, NULL, &nc, &js, &err) != VG_OK ||
        stream_tail(js, cfg, &stream_last, &tail, &err) != VG_OK) {
        snprintf(a->stream_note, sizeof a->stream_note, "stream %.128s not checked: %.400s",
                 cfg->stream, err.detail);
        tail = 0;
    } else {
        snprintf(a->stream_note, sizeof a->stream_note,
                 "stream %.128s newest event seq %" PRId64 " (stream seq %llu)", cfg->stream, tail,
                 (unsigned long long)stream_last);
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    vg_error_clear(&err);
    return tail;
}

/* Truncation: the cursor and the stream may trail the log, never lead it. */
static void check_tail(audit *a, int64_t stream_tail)
{
    if (a->cursor <= a->log_last && stream_tail <= a->log_last)
        return;
    char why[200] = "";
    if (a->cursor > a->log_last)
        snprintf(why, sizeof why,
                 "the publisher's cursor says seqs through %" PRId64 " were published", a->cursor);
    if (stream_tail > a->log_last)
        snprintf(why + strlen(why), sizeof why - strlen(why), "%sthe stream holds seq %" PRId64,
                 why[0] ? " and " : "", stream_tail);
    add_problem(a, a->log_last + 1, "removed at the end",
                "event_log ends at seq %" PRId64 " but %s", a->log_last, why);
}

static void print_text(const audit *a, const char *head_hex)
{
    if (a->nproblems == 0) {
        if (a->events)
            printf("event_log intact: seqs %" PRId64 "..%" PRId64 " (%" PRId64
                   " events), head hash %s\n",
                   a->first, a->last, a->events, head_hex);
        else
            printf("event_log intact: no events in the range\n");
    } else {
        int64_t shown = a->nproblems < AUDIT_SHOW ? a->nproblems : AUDIT_SHOW;
        for (int64_t k = 0; k < shown; k++)
            printf("seq %" PRId64 ": %s (%s)\n", a->kept[k].seq, a->kept[k].kind,
                   a->kept[k].detail);
        if (a->nproblems > shown)
            printf("... and %" PRId64 " more\n", a->nproblems - shown);
        printf("event_log NOT intact: %" PRId64 " problem%s in %" PRId64
               " rows checked; first at seq %" PRId64 "\n",
               a->nproblems, a->nproblems == 1 ? "" : "s", a->events, a->kept[0].seq);
    }
    printf("event_log ends at seq %" PRId64 "; publisher cursor %" PRId64 "; %s\n", a->log_last,
           a->cursor, a->stream_note);
}

static int print_json(const audit *a, const char *head_hex)
{
    json_t *problems = json_array();
    int64_t kept = a->nproblems < AUDIT_KEEP ? a->nproblems : AUDIT_KEEP;
    for (int64_t k = 0; problems && k < kept; k++)
        json_array_append_new(problems,
                              json_pack("{s:I, s:s, s:s}", "seq", (json_int_t)a->kept[k].seq,
                                        "kind", a->kept[k].kind, "detail", a->kept[k].detail));
    json_t *o = json_pack("{s:b, s:I, s:I, s:I, s:s?, s:I, s:I, s:s, s:o, s:I}", "intact",
                          a->nproblems == 0, "from_seq", (json_int_t)a->first, "to_seq",
                          (json_int_t)a->last, "events", (json_int_t)a->events, "head_hash",
                          a->events ? head_hex : NULL, "log_last_seq", (json_int_t)a->log_last,
                          "publisher_cursor", (json_int_t)a->cursor, "stream", a->stream_note,
                          "problems", problems, "problems_total", (json_int_t)a->nproblems);
    int rc = o ? json_dumpf(o, stdout, JSON_COMPACT) : -1;
    json_decref(o);
    if (rc == 0)
        putchar('\n');
    return rc;
}

static int usage(FILE *f)
{
    fprintf(f, "usage: vigil audit verify [--from-seq N] [--to-seq M] [--json]\n"
               "  Recomputes event_log's SHA-256 hash chain and names the first edited,\n"
               "  missing, reordered or truncated event. Exit 0 intact, 1 not intact,\n"
               "  2 usage, 3 database unavailable.\n");
    return f == stdout ? CLI_OK : CLI_USAGE;
}

int cli_audit_verify(const vg_config *cfg, int argc, char **argv)
{
    audit *a = calloc(1, sizeof *a);
    int json = 0, rc = CLI_FAILED;
    vg_error err = {0};
    PGconn *c = NULL;
    if (!a) {
        fprintf(stderr, "vigil %s: out of memory\n", AUDIT_CMD);
        return CLI_FAILED;
    }
    a->from = 1;
    a->have_prev = 1; /* from seq 1 the chain starts at 32 zero bytes (calloc) */
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            rc = usage(stdout);
            goto end;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if ((strcmp(argv[i], "--from-seq") == 0 || strcmp(argv[i], "--to-seq") == 0) &&
                   i + 1 < argc) {
            int64_t *dst = argv[i][2] == 'f' ? &a->from : &a->to;
            if (cli_parse_seq(AUDIT_CMD, argv[i], argv[i + 1], dst) != 0) {
                rc = CLI_USAGE;
                goto end;
            }
            i++;
        } else {
            fprintf(stderr, "vigil %s: unexpected argument '%s'\n", AUDIT_CMD, argv[i]);
            rc = usage(stderr);
            goto end;
        }
    }
    if (a->from > 1)
        a->have_prev = 0; /* until load_anchor reads row from-1 */
    if (a->to && a->to < a->from) {
        fprintf(stderr, "vigil %s: --to-seq %" PRId64 " is before --from-seq %" PRId64 "\n",
                AUDIT_CMD, a->to, a->from);
        rc = CLI_USAGE;
        goto end;
    }
    a->md = EVP_MD_CTX_new();
    if (!a->md) {
        vg_fail(&err, VG_E_INTERNAL, NULL, "cannot create an OpenSSL digest context");
        rc = cli_fail(AUDIT_CMD, &err);
        goto end;
    }
    if (!(c = db_connect(cfg->database_url, (int)cfg->db_connect_timeout, &err)) ||
        PQsetClientEncoding(c, "UTF8") != 0 || /* the chain hashes UTF-8 bytes */
        db_run(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, &err) != VG_OK ||
        load_ends(a, c, &err) != VG_OK || (a->from > 1 && load_anchor(a, c, &err) != VG_OK) ||
        scan(a, c, &err) != VG_OK) {
        if (c && err.code == VG_OK)
            vg_fail(&err, VG_E_UNAVAILABLE, NULL, "database: %s", PQerrorMessage(c));
        rc = cli_fail(AUDIT_CMD, &err);
        goto end;
    }
    db_rollback(c); /* read only: nothing to keep */
    check_tail(a, ask_stream(a, cfg));

    char head_hex[2 * HASH_LEN + 1] = "";
    if (a->have_prev)
        cli_hex(a->prev, HASH_LEN, head_hex);
    int write_failed = 0;
    if (json)
        write_failed = print_json(a, head_hex) != 0;
    else
        print_text(a, head_hex);
    if (write_failed || fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "vigil %s: cannot write the report to stdout\n", AUDIT_CMD);
        goto end;
    }
    if (a->nproblems) {
        fprintf(stderr, "vigil %s: event_log is NOT intact: seq %" PRId64 ": %s\n", AUDIT_CMD,
                a->kept[0].seq, a->kept[0].kind);
        rc = CLI_FAILED;
    } else {
        rc = CLI_OK;
    }
end:
    PQfinish(c);
    if (a)
        EVP_MD_CTX_free(a->md);
    free(a);
    vg_error_clear(&err);
    return rc;
}
