/*
 * cli_reconcile.c — `vigil reconcile`: make the JetStream stream hold every
 * event of event_log again.
 *
 * nats-server 2.9 acknowledges before it fsyncs, and a stream can be
 * purged, deleted or lose its storage dir; event_log is the durable record
 * (DESIGN.md, invariant 6). reconcile reads the whole stream with an
 * ordered push consumer, marks each Vigil-Seq it finds in a bitmap sized to
 * event_log's last seq, and re-publishes what is missing:
 *
 *   - missing seqs that are exactly the tail (nothing after the first of
 *     them is in the stream) are re-sent in seq order as ordinary messages,
 *     after the publisher's cursor is rewound to the last seq the stream
 *     still holds. Like the publisher's, the first message of a window
 *     expects the stream's last sequence, the others their predecessor's
 *     id (Nats-Expected-Last-Msg-Id). That makes a race with a running
 *     publisher harmless: if it appends first, our next message is refused
 *     and we read the stream again instead of storing anything twice or
 *     out of order;
 *   - holes in the middle are re-sent with Vigil-Repair: 1: consumers take
 *     them by event id, and the publisher's tail scan skips them.
 *
 * Every message carries Nats-Msg-Id = event id. JetStream 2.9 keeps its
 * duplicate window across a purge or a deleted message, so an id purged
 * less than VIGIL_STREAM_DUPLICATE_WINDOW ago is acknowledged as a
 * duplicate and not stored. reconcile recognises such an ack (it names a
 * stream seq the stream no longer holds) and re-sends from there with
 * Nats-Msg-Id = "<event id>:<run id>", unique to this run.
 *
 * Afterwards the stream is read again; the exit code says whether it now
 * holds every event. Memory: one bit per seq plus one publish window.
 */
#include "cli/cli.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "events/stream.h"
#include "store/db.h"
#include "store/store_event_log.h"

#define RECON_CMD      "reconcile"
#define SCAN_WAIT_MS   5000 /* longest silence while reading the stream */
#define RECON_ATTEMPTS 5    /* reads (each but the last followed by a repair) */

/* Where one message of the window stands. */
enum { ACK_PENDING, ACK_STORED, ACK_DUPLICATE, ACK_REFUSED };

/* The window in flight; filled by on_ack on a libnats thread. */
typedef struct window {
    pthread_mutex_t mu;
    int n;
    int64_t *seqs;        /* event seq of each message, ascending */
    unsigned char *state; /* ACK_* */
    uint64_t *stream_seq; /* stored: its stream seq; duplicate: the original's */
    int wrong_last;       /* a refusal was "wrong last sequence" */
    char error[256];      /* first other refusal */
} window;

typedef struct recon {
    const vg_config *cfg;
    PGconn *db;
    jsCtx *js;
    window w;
    int64_t from, log_last, cursor;
    unsigned char *bits; /* bit s set: Vigil-Seq s is in the stream */
    char salt[40];       /* run id for Nats-Msg-Id once a stale duplicate was seen */
    /* the last read of the stream */
    uint64_t stream_last; /* stream's last sequence before the read */
    int64_t present, missing, first_missing, duplicates, out_of_order, foreign, max_seq;
    int64_t republished;
} recon;

static int has(const recon *x, int64_t s)
{
    return (x->bits[s >> 3] >> (s & 7)) & 1;
}

static int64_t next_missing(const recon *x, int64_t s)
{
    while (s <= x->log_last && has(x, s))
        s++;
    return s;
}

/* ---- reading the stream ---------------------------------------------------- */

static void account(recon *x, natsMsg *m, int64_t *max_in_order)
{
    const char *v = NULL, *rep = NULL;
    char *end = NULL;
    long long seq = natsMsgHeader_Get(m, HDR_SEQ, &v) == NATS_OK ? strtoll(v, &end, 10) : 0;
    if (seq <= 0 || (end && *end)) {
        x->foreign++;
        return;
    }
    if (seq > x->max_seq)
        x->max_seq = seq;
    if (natsMsgHeader_Get(m, HDR_REPAIR, &rep) != NATS_OK) { /* written in order */
        if (seq < *max_in_order)
            x->out_of_order++;
        else
            *max_in_order = seq;
    }
    if (seq < x->from || seq > x->log_last)
        return;
    if (has(x, seq)) {
        x->duplicates++;
    } else {
        x->bits[seq >> 3] |= (unsigned char)(1u << (seq & 7));
        x->present++;
    }
}

/* Reads every message of the stream (an ordered consumer: no acks, flow
 * controlled) up to its last sequence as of the start, then counts what is
 * missing from [from, log_last]. */
static vg_status scan_stream(recon *x, vg_error *err)
{
    const char *name = x->cfg->stream;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsSubscription *sub = NULL;
    vg_status st = VG_OK;
    int64_t max_in_order = 0;
    memset(x->bits, 0, (size_t)(x->log_last / 8 + 1));
    x->present = x->duplicates = x->out_of_order = x->foreign = x->max_seq = 0;

    natsStatus s = js_GetStreamInfo(&si, x->js, name, NULL, &jerr);
    if (s != NATS_OK)
        return vg_fail(err, VG_E_UNAVAILABLE, "VIGIL_STREAM", "cannot read stream %s: %s", name,
                       natsStatus_GetText(s));
    uint64_t msgs = si->State.Msgs;
    x->stream_last = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    if (msgs > 0) {
        jsSubOptions so;
        jsSubOptions_Init(&so);
        so.Stream = name;
        so.Ordered = true;
        so.Config.DeliverPolicy = js_DeliverAll;
        s = js_SubscribeSync(&sub, x->js, STREAM_SUBJECTS, NULL, &so, &jerr);
        if (s != NATS_OK)
            st = vg_fail(err, VG_E_UNAVAILABLE, "VIGIL_STREAM",
                         "cannot read stream %s: %s (JetStream error %d)", name,
                         natsStatus_GetText(s), (int)jerr);
    }
    int more = sub != NULL;
    for (uint64_t at = 0; more;) {
        natsMsg *m = NULL;
        jsMsgMetaData *meta = NULL;
        s = natsSubscription_NextMsg(&m, sub, SCAN_WAIT_MS);
        if (s == NATS_OK)
            s = natsMsg_GetMetaData(&meta, m);
        if (s != NATS_OK) {
            st = vg_fail(err, VG_E_UNAVAILABLE, "VIGIL_STREAM",
                         "reading stream %s stopped after stream seq %llu of %llu: %s", name,
                         (unsigned long long)at, (unsigned long long)x->stream_last,
                         natsStatus_GetText(s));
            more = 0;
        } else {
            account(x, m, &max_in_order);
            at = meta->Sequence.Stream;
            /* Done at the last sequence seen before the read, or earlier when
             * that one was deleted and nothing is pending. */
            more = at < x->stream_last && meta->NumPending > 0;
        }
        jsMsgMetaData_Destroy(meta);
        natsMsg_Destroy(m);
    }
    if (sub) {
        natsSubscription_Unsubscribe(sub); /* removes the ephemeral consumer */
        natsSubscription_Destroy(sub);
    }
    if (st != VG_OK)
        return st;
    x->first_missing = next_missing(x, x->from);
    x->missing = x->log_last - x->from + 1 - x->present;
    return VG_OK;
}

/* ---- publishing ------------------------------------------------------------ */

/* Runs on a libnats thread for every message of the window. Owns `msg`
 * (nats.h, jsPubAckHandler: with an ack handler the library hands the
 * message back instead of freeing it). */
static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    window *w = closure;
    const char *v = NULL;
    int64_t seq = natsMsgHeader_Get(msg, HDR_SEQ, &v) == NATS_OK ? strtoll(v, NULL, 10) : -1;
    pthread_mutex_lock(&w->mu);
    int lo = 0, hi = w->n - 1, idx = -1;
    while (lo <= hi) { /* the window's seqs ascend */
        int mid = lo + (hi - lo) / 2;
        if (w->seqs[mid] == seq) {
            idx = mid;
            break;
        }
        if (w->seqs[mid] < seq)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    if (idx >= 0 && pa) {
        w->state[idx] = pa->Duplicate ? ACK_DUPLICATE : ACK_STORED;
        w->stream_seq[idx] = pa->Sequence;
    } else if (idx >= 0) {
        w->state[idx] = ACK_REFUSED;
        if (pae && (pae->ErrCode == JSStreamWrongLastSequenceErr ||
                    pae->ErrCode == JSStreamWrongLastMsgIDErr))
            w->wrong_last = 1;
        else if (!w->error[0])
            snprintf(
                w->error, sizeof w->error, "JetStream refused seq %" PRId64 ": %s (code %d)", seq,
                pae && pae->ErrText ? pae->ErrText : natsStatus_GetText(pae ? pae->Err : NATS_ERR),
                pae ? (int)pae->ErrCode : 0);
    }
    pthread_mutex_unlock(&w->mu);
    natsMsg_Destroy(msg);
}

/* Rows (seq, event_id, event_type, payload) of one window: first <= seq <=
 * min(log_last, first + window - 1). The upper bound is a seq, not only a
 * LIMIT: on a freshly filled, not yet analyzed event_log the planner
 * otherwise sorts everything after `first` for every window. */
static PGresult *fetch(recon *x, int64_t first, vg_error *err)
{
    char a[24], b[24];
    int64_t last = first + x->cfg->publish_window - 1;
    snprintf(a, sizeof a, "%" PRId64, first);
    snprintf(b, sizeof b, "%" PRId64, last < x->log_last ? last : x->log_last);
    const char *p[] = {a, b};
    return db_exec(x->db,
                   "SELECT seq, event_id::text, event_type, payload::text FROM event_log"
                   " WHERE seq >= $1::bigint AND seq <= $2::bigint ORDER BY seq",
                   2, p, err);
}

/* Sends rows[pick[0..n)] of r and waits for their acks (window states).
 * In order (repair == 0): message k expects the stream's last sequence to
 * be expect_last + k. */
static vg_status send_window(recon *x, PGresult *r, const int *pick, int n, int repair,
                             uint64_t expect_last, vg_error *err)
{
    window *w = &x->w;
    pthread_mutex_lock(&w->mu);
    w->n = n;
    w->wrong_last = 0;
    w->error[0] = '\0';
    for (int k = 0; k < n; k++) {
        w->seqs[k] = strtoll(PQgetvalue(r, pick[k], 0), NULL, 10);
        w->state[k] = ACK_PENDING;
    }
    pthread_mutex_unlock(&w->mu);

    natsStatus s = NATS_OK;
    int sent = 0;
    char ids[2][120]; /* this message's Nats-Msg-Id and its predecessor's */
    for (int k = 0; k < n && s == NATS_OK; k++) {
        int i = pick[k];
        char *id = ids[k % 2];
        natsMsg *m = NULL;
        snprintf(id, sizeof ids[0], "%s%s%s", PQgetvalue(r, i, 1), x->salt[0] ? ":" : "", x->salt);
        s = stream_event_msg(&m, PQgetvalue(r, i, 2), PQgetvalue(r, i, 0), PQgetvalue(r, i, 3),
                             PQgetlength(r, i, 3), repair);
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = id;
        /* In order, like the publisher: the first expects the stream's last
         * sequence (0: empty stream, no expectation), each later one its
         * predecessor's id, which, unlike last + k, no other writer's
         * appends can match by coincidence. */
        if (!repair && k == 0)
            po.ExpectLastSeq = expect_last;
        else if (!repair)
            po.ExpectLastMsgId = ids[(k + 1) % 2];
        if (s == NATS_OK)
            s = js_PublishMsgAsync(x->js, &m, &po);
        natsMsg_Destroy(m);
        sent += s == NATS_OK;
    }
    jsPubOptions wait;
    jsPubOptions_Init(&wait);
    wait.MaxWait = x->cfg->publish_ack_timeout_ms;
    natsStatus done = sent ? js_PublishAsyncComplete(x->js, &wait) : NATS_OK;
    if (done != NATS_OK) { /* give up on what is still pending: it counts as not stored */
        natsMsgList pending;
        if (js_PublishAsyncGetPendingList(&pending, x->js) == NATS_OK)
            natsMsgList_Destroy(&pending);
    }
    if (s != NATS_OK)
        return vg_fail(err, VG_E_UNAVAILABLE, "VIGIL_NATS_URL", "publishing to %s failed: %s",
                       x->cfg->stream, natsStatus_GetText(s));
    if (done != NATS_OK)
        return vg_fail(err, VG_E_UNAVAILABLE, "VIGIL_NATS_URL",
                       "no acknowledgment from JetStream within %ldms: %s",
                       x->cfg->publish_ack_timeout_ms, natsStatus_GetText(done));
    return VG_OK;
}

/* A Duplicate ack names the stream seq of the message it duplicates. If the
 * stream no longer holds that message, the id was remembered across a purge
 * or delete: a stale duplicate. Returns 1 stale, 0 not, -1 error. */
static int stale_duplicate(recon *x, uint64_t original, vg_error *err)
{
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetMsg(&m, x->js, x->cfg->stream, original, NULL, &jerr);
    natsMsg_Destroy(m);
    if (s == NATS_OK)
        return 0;
    if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
        return 1;
    vg_fail(err, VG_E_UNAVAILABLE, "VIGIL_STREAM", "cannot read message %llu of %s: %s",
            (unsigned long long)original, x->cfg->stream, natsStatus_GetText(s));
    return -1;
}

/* From now on this run sends Nats-Msg-Id = "<event id>:<run id>". */
static void use_salt(recon *x)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(x->salt, sizeof x->salt, "reconcile-%llx-%x",
             (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec,
             (unsigned)getpid());
    printf("note: JetStream's duplicate window still holds ids of messages the stream lost; "
           "re-sending with Nats-Msg-Id = <event id>:%s\n",
           x->salt);
}

enum { SENT_ALL, SENT_RETRY }; /* RETRY: someone else wrote; read the stream again */

/* The missing seqs are the tail: re-send them in order after the stream's
 * last message (see the file comment). */
static vg_status resend_tail(recon *x, int *outcome, vg_error *err)
{
    int64_t next = x->first_missing;
    uint64_t last = x->stream_last;
    int *pick = malloc((size_t)x->cfg->publish_window * sizeof *pick);
    vg_status st = pick ? VG_OK : vg_fail(err, VG_E_INTERNAL, NULL, "out of memory");
    *outcome = SENT_ALL;
    while (st == VG_OK && next <= x->log_last && *outcome == SENT_ALL) {
        PGresult *r = fetch(x, next, err);
        if (!r) {
            st = err->code;
            break;
        }
        int n = PQntuples(r);
        for (int i = 0; i < n; i++)
            pick[i] = i;
        if (n == 0 || strtoll(PQgetvalue(r, 0, 0), NULL, 10) != next)
            st = vg_fail(err, VG_E_INTERNAL, NULL,
                         "event_log has no row for seq %" PRId64 " (run `vigil audit verify`)",
                         next);
        if (st == VG_OK)
            st = send_window(x, r, pick, n, 0, last, err);
        PQclear(r);
        if (st != VG_OK)
            break;
        window *w = &x->w;
        pthread_mutex_lock(&w->mu);
        int k = 0;
        while (k < n && w->state[k] == ACK_STORED)
            k++;
        if (k > 0)
            last = w->stream_seq[k - 1];
        int state = k < n ? w->state[k] : ACK_STORED, wrong_last = w->wrong_last;
        uint64_t original = k < n ? w->stream_seq[k] : 0;
        char refusal[256];
        snprintf(refusal, sizeof refusal, "%s", w->error);
        pthread_mutex_unlock(&w->mu);
        x->republished += k;
        next += k;
        if (k == n)
            continue;
        if (state == ACK_DUPLICATE) {
            int stale = x->salt[0] ? 0 : stale_duplicate(x, original, err);
            if (stale < 0)
                st = err->code;
            else if (stale)
                use_salt(x); /* and go again from `next` */
            else
                *outcome = SENT_RETRY;
        } else if (state == ACK_REFUSED && wrong_last && !refusal[0]) {
            *outcome = SENT_RETRY;
        } else {
            st = vg_fail(err, VG_E_UNAVAILABLE, "VIGIL_STREAM", "seq %" PRId64 " not stored: %s",
                         next, refusal[0] ? refusal : "no acknowledgment");
        }
    }
    free(pick);
    return st;
}

/* Holes in the middle: re-send each missing event as a repair. */
static vg_status resend_holes(recon *x, vg_error *err)
{
    int *pick = malloc((size_t)x->cfg->publish_window * sizeof *pick);
    int *again = malloc((size_t)x->cfg->publish_window * sizeof *again);
    vg_status st = pick && again ? VG_OK : vg_fail(err, VG_E_INTERNAL, NULL, "out of memory");
    for (int64_t pos = x->first_missing; st == VG_OK && pos <= x->log_last;) {
        PGresult *r = fetch(x, pos, err);
        if (!r) {
            st = err->code;
            break;
        }
        int rows = PQntuples(r), n = 0;
        for (int i = 0; i < rows; i++)
            if (!has(x, strtoll(PQgetvalue(r, i, 0), NULL, 10)))
                pick[n++] = i;
        int64_t last_row = rows ? strtoll(PQgetvalue(r, rows - 1, 0), NULL, 10) : x->log_last;
        for (int round = 0; st == VG_OK && n > 0 && round < 2; round++) {
            st = send_window(x, r, pick, n, 1, 0, err);
            int retry = 0;
            for (int k = 0; st == VG_OK && k < n; k++) {
                pthread_mutex_lock(&x->w.mu);
                int state = x->w.state[k];
                uint64_t original = x->w.stream_seq[k];
                pthread_mutex_unlock(&x->w.mu);
                int stale = 0;
                if (state == ACK_STORED)
                    x->republished++;
                else if (state == ACK_DUPLICATE && !x->salt[0] &&
                         (stale = stale_duplicate(x, original, err)) < 0)
                    st = err->code;
                else if (state == ACK_DUPLICATE && stale)
                    again[retry++] = pick[k];
                else if (state != ACK_DUPLICATE) /* a live duplicate: already there */
                    st = vg_fail(err, VG_E_UNAVAILABLE, "VIGIL_STREAM",
                                 "seq %" PRId64 " not stored: %s", x->w.seqs[k],
                                 x->w.error[0] ? x->w.error : "no acknowledgment");
            }
            if (st == VG_OK && retry > 0 && round == 0)
                use_salt(x);
            memcpy(pick, again, (size_t)retry * sizeof *pick);
            n = retry;
        }
        PQclear(r);
        pos = next_missing(x, last_row + 1);
    }
    free(pick);
    free(again);
    return st;
}

/* ---- the command ----------------------------------------------------------- */

/* event_log's extent from `from` and the publisher's cursor. event_log must
 * be gap-free there: re-publishing a tampered log would spread the damage. */
static vg_status load_log(recon *x, vg_error *err)
{
    char f[24];
    snprintf(f, sizeof f, "%" PRId64, x->from);
    const char *p[] = {f};
    PGresult *r = db_exec(x->db,
                          "SELECT count(*), coalesce(max(seq), 0),"
                          " (SELECT seq FROM cursors WHERE name = 'publisher')"
                          " FROM event_log WHERE seq >= $1::bigint",
                          1, p, err);
    if (!r)
        return err->code;
    int64_t rows = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    x->log_last = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    x->cursor = PQgetisnull(r, 0, 2) ? 0 : strtoll(PQgetvalue(r, 0, 2), NULL, 10);
    PQclear(r);
    if (x->log_last < x->from)
        x->log_last = x->from - 1; /* nothing to check */
    if (rows != x->log_last - x->from + 1)
        return vg_fail(err, VG_E_CONFIG, "event_log",
                       "event_log holds %" PRId64 " rows for seqs %" PRId64 "..%" PRId64
                       ": it has gaps; run `vigil audit verify` before reconciling",
                       rows, x->from, x->log_last);
    return VG_OK;
}

static vg_status rewind_cursor(recon *x, int64_t to, vg_error *err)
{
    char v[24];
    snprintf(v, sizeof v, "%" PRId64, to);
    const char *p[] = {v};
    PGresult *r = db_exec(x->db,
                          "UPDATE cursors SET seq = $1::bigint, updated_at = now()"
                          " WHERE name = 'publisher' AND seq > $1::bigint",
                          1, p, err);
    if (!r)
        return err->code;
    if (strcmp(PQcmdTuples(r), "0") != 0)
        printf("publisher cursor rewound from %" PRId64 " to %" PRId64 "\n", x->cursor, to);
    PQclear(r);
    return VG_OK;
}

/* One read, then a repair unless `read_only`; *done when the stream was
 * complete on reading. */
static vg_status round_trip(recon *x, int read_only, int *done, vg_error *err)
{
    int64_t t0 = cli_now_ms();
    vg_status st = scan_stream(x, err);
    if (st == VG_OK)
        printf("read stream %s: %" PRId64 " of %" PRId64 " events present, %" PRId64
               " missing (%" PRId64 " ms)\n",
               x->cfg->stream, x->present, x->log_last - x->from + 1, x->missing,
               cli_now_ms() - t0);
    *done = st == VG_OK && x->missing == 0;
    if (st != VG_OK || *done || read_only)
        return st;
    int outcome = SENT_ALL;
    int64_t before = x->republished;
    t0 = cli_now_ms();
    if (x->max_seq < x->first_missing) {
        printf("missing seqs %" PRId64 "..%" PRId64 " are the tail: re-sending them in order\n",
               x->first_missing, x->log_last);
        st = rewind_cursor(x, x->first_missing - 1, err);
        if (st == VG_OK)
            st = resend_tail(x, &outcome, err);
        if (st == VG_OK && outcome == SENT_RETRY)
            printf("another writer appended to the stream meanwhile; reading it again\n");
    } else {
        printf("%" PRId64 " missing seqs are holes (first %" PRId64
               "): re-sending them with %s: 1\n",
               x->missing, x->first_missing, HDR_REPAIR);
        st = resend_holes(x, err);
    }
    if (st == VG_OK)
        printf("re-sent %" PRId64 " events (%" PRId64 " ms)\n", x->republished - before,
               cli_now_ms() - t0);
    return st;
}

static int usage(FILE *f)
{
    fprintf(f, "usage: vigil reconcile [--from-seq N] [--dry-run]\n"
               "  Reads the JetStream stream, re-publishes every event of event_log (seq >= N)\n"
               "  that it lacks, and reads it again. --dry-run only reports.\n"
               "  Exit 0 when the stream holds every event, 1 when not, 2 usage,\n"
               "  3 PostgreSQL or NATS unavailable.\n");
    return f == stdout ? CLI_OK : CLI_USAGE;
}

int cli_reconcile(const vg_config *cfg, int argc, char **argv)
{
    recon x = {.cfg = cfg, .from = 1, .w = {.mu = PTHREAD_MUTEX_INITIALIZER}};
    natsConnection *nc = NULL;
    vg_error err = {0};
    int dry_run = 0, rc = CLI_FAILED, done = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout);
        if (strcmp(argv[i], "--dry-run") == 0) {
            dry_run = 1;
        } else if (strcmp(argv[i], "--from-seq") == 0 && i + 1 < argc) {
            if (cli_parse_seq(RECON_CMD, argv[i], argv[i + 1], &x.from) != 0)
                return CLI_USAGE;
            i++;
        } else {
            fprintf(stderr, "vigil %s: unexpected argument '%s'\n", RECON_CMD, argv[i]);
            return usage(stderr);
        }
    }
    size_t wn = (size_t)cfg->publish_window;
    x.w.seqs = malloc(wn * sizeof *x.w.seqs);
    x.w.state = malloc(wn);
    x.w.stream_seq = malloc(wn * sizeof *x.w.stream_seq);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = cfg->publish_ack_timeout_ms;
    jo.PublishAsync.MaxPending = cfg->publish_window;
    jo.PublishAsync.AckHandler = on_ack;
    jo.PublishAsync.AckHandlerClosure = &x.w;
    if (!x.w.seqs || !x.w.state || !x.w.stream_seq) {
        vg_fail(&err, VG_E_INTERNAL, NULL, "out of memory");
        goto fail;
    }
    if (!(x.db = db_connect(cfg->database_url, (int)cfg->db_connect_timeout, &err)) ||
        load_log(&x, &err) != VG_OK)
        goto fail;
    if (!(x.bits = calloc((size_t)(x.log_last / 8 + 1), 1))) {
        vg_fail(&err, VG_E_INTERNAL, NULL, "out of memory for %" PRId64 " seqs", x.log_last);
        goto fail;
    }
    if (stream_connect(cfg, "vigil-reconcile", 0, NULL, &jo, &nc, &x.js, &err) != VG_OK ||
        stream_ensure(x.js, cfg, &err) != VG_OK)
        goto fail;
    printf("reconcile: stream %s, event_log seqs %" PRId64 "..%" PRId64
           ", publisher cursor %" PRId64 "\n",
           cfg->stream, x.from, x.log_last, x.cursor);

    /* The first read gives the report; each later one verifies the repair
     * before it, and the last one only verifies. */
    int64_t present = 0, missing = 0, duplicates = 0, out_of_order = 0;
    for (int attempt = 0; attempt < RECON_ATTEMPTS && !done; attempt++) {
        if (round_trip(&x, dry_run || attempt == RECON_ATTEMPTS - 1, &done, &err) != VG_OK)
            goto fail;
        if (attempt == 0) {
            present = x.present;
            missing = x.missing;
            duplicates = x.duplicates;
            out_of_order = x.out_of_order;
        }
        if (dry_run)
            break;
    }
    printf("checked=%" PRId64 " present=%" PRId64 " missing=%" PRId64 " republished=%" PRId64
           " duplicates=%" PRId64 " out_of_order=%" PRId64 "\n",
           x.log_last - x.from + 1, present, missing, x.republished, duplicates, out_of_order);
    if (x.foreign)
        fprintf(stderr,
                "vigil %s: stream %s holds %" PRId64 " messages without a valid %s header\n",
                RECON_CMD, cfg->stream, x.foreign, HDR_SEQ);
    int64_t log_now = x.log_last;
    if (x.max_seq > x.log_last && event_log_head(x.db, &log_now, &err) != VG_OK)
        goto fail;
    if (x.max_seq > log_now) /* events appended since we started are fine */
        fprintf(stderr,
                "vigil %s: stream %s holds seq %" PRId64 " but event_log ends at %" PRId64
                ": was the database restored from an older backup?\n",
                RECON_CMD, cfg->stream, x.max_seq, log_now);
    if (done) {
        printf("verified: stream %s holds all %" PRId64 " events of seqs %" PRId64 "..%" PRId64
               "\n",
               cfg->stream, x.log_last - x.from + 1, x.from, x.log_last);
        rc = x.foreign || x.max_seq > log_now ? CLI_FAILED : CLI_OK;
    } else {
        printf("NOT complete: stream %s lacks %" PRId64 " events (first seq %" PRId64 ")%s\n",
               cfg->stream, x.missing, x.first_missing, dry_run ? "; dry run, nothing sent" : "");
        fprintf(stderr,
                "vigil %s: stream %s still lacks %" PRId64 " events, first seq %" PRId64 "\n",
                RECON_CMD, cfg->stream, x.missing, x.first_missing);
        rc = CLI_FAILED;
    }
    if (fflush(stdout) != 0) {
        perror("vigil reconcile: stdout");
        rc = CLI_FAILED;
    }
    goto end;
fail:
    rc = cli_fail(RECON_CMD, &err);
end:
    jsCtx_Destroy(x.js);
    natsConnection_Destroy(nc);
    /* on_ack's closure is on this stack: let libnats's threads finish
     * before it goes (a one-shot command; nothing uses NATS afterwards). */
    nats_CloseAndWait(0);
    PQfinish(x.db);
    free(x.bits);
    free(x.w.seqs);
    free(x.w.state);
    free(x.w.stream_seq);
    vg_error_clear(&err);
    return rc;
}
