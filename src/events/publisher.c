/*
 * publisher.c — event_log → JetStream.
 *
 * Loop: read up to VIGIL_PUBLISH_WINDOW events after the cursor, publish
 * them asynchronously (subject = type, Nats-Msg-Id = event id, Vigil-Seq),
 * wait for the acks (reading the next window meanwhile), advance the cursor
 * over the contiguous acknowledged prefix (a Duplicate ack counts), commit
 * the cursor (without waiting for its fsync). Anything short of a
 * full window of acks: keep what is contiguous, back off, re-read the
 * stream's tail and go again. Nothing is skipped: an event leaves the
 * loop's concern only when JetStream has acknowledged it.
 *
 * Order: a window's message i carries Nats-Expected-Last-Sequence = the
 * stream's last sequence + i and (i > 0) Nats-Expected-Last-Msg-Id = its
 * predecessor's event id. If one message is lost (connection dropped
 * mid-window) or anyone else appended meanwhile, every later one is refused
 * by the server instead of being stored ahead of it, so stream order always
 * equals seq order.
 *
 * One ack per window (the default; VIGIL_PUBLISH_ACK_EACH=1 asks for one per
 * event): every message but the window's last is published without a reply
 * subject, so JetStream checks and stores it as usual but answers nothing;
 * the last one is published with js_PublishMsgAsync. That chain makes the
 * last ack cumulative: JetStream stores message i only when the stream ends,
 * at that moment, at sequence last + i with message i-1's id, so the last
 * message acknowledged as new at last + n means messages 0..n-1 are stored
 * at last + 1..last + n, in order, each once. Any other outcome (a refusal,
 * a duplicate, another sequence, no ack) is a failed window: the tail is
 * re-read (it says how far the window got: a stored prefix, by the same
 * chain) and the publisher acknowledges each event until a window goes
 * through, so a refusal names its event. Per event this saves JetStream an
 * ack to build and route and libnats a reply inbox, a pending-ack entry and
 * an ack to parse: in benchmark 3 the machine spent 27.5-29.0 against
 * 45.1-45.9 us of CPU per event (bench/ANALYSIS.md).
 *
 * Loss detection: at the start of every term, after every reconnect and
 * after every failure the tail of the stream is read. A tail behind the
 * cursor means JetStream lost acknowledged messages (storage wiped, stream
 * deleted, the fsync-less power loss Jepsen found): the cursor is rewound
 * and the missing events are published again. A tail ahead of the cursor means we
 * crashed between a PubAck and the cursor commit: the cursor moves forward
 * and nothing is re-sent.
 */
#include "events/publisher.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "domain/timeparse.h"
#include "events/leader.h"
#include "events/stream.h"
#include "store/db.h"
#include "util/log.h"

#define TAIL_RECHECK_US (10 * 1000000LL)
/* While disconnected, how often a probe asks NATS why (see stream_probe). */
#define PROBE_EVERY_US (5 * 1000000LL)

/* One window in flight. Lives as long as the publisher (not the term):
 * libnats may run the ack handler after a connection is destroyed. */
struct publisher_window {
    pthread_mutex_t mu;
    long long base; /* seq of the first event */
    int n;
    unsigned char *acked;     /* 1 = acked, 2 = refused */
    uint64_t last_stream_seq; /* highest stream seq acknowledged */
    uint64_t first_stored;    /* stream seqs below this are gone (purged) */
    int duplicates;           /* acks that were Duplicate */
    char error[200];
};
typedef struct publisher_window window;

static void set_error(publisher *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(publisher *p, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&p->mu);
    int changed = strcmp(msg, p->last_error) != 0;
    snprintf(p->last_error, sizeof p->last_error, "%s", msg);
    pthread_mutex_unlock(&p->mu);
    if (changed) /* once per state change, not once per event */
        log_warn("publisher: %s", msg);
}

static void clear_error(publisher *p)
{
    pthread_mutex_lock(&p->mu);
    int had = p->last_error[0] != '\0';
    p->last_error[0] = '\0';
    pthread_mutex_unlock(&p->mu);
    if (had)
        log_info("publisher: healthy again; published through seq %lld",
                 atomic_load(&p->published_seq));
}

void publisher_last_error(publisher *p, char *out, size_t n)
{
    pthread_mutex_lock(&p->mu);
    snprintf(out, n, "%s", p->last_error);
    pthread_mutex_unlock(&p->mu);
}

static void on_disconnected(void *closure);
static void on_reconnected(void *closure);

void publisher_init(publisher *p, const vg_config *cfg, atomic_int *stop)
{
    memset(p, 0, sizeof *p);
    p->cfg = cfg;
    p->stop = stop;
    pthread_mutex_init(&p->mu, NULL);
    p->cb = (stream_callbacks){on_disconnected, on_reconnected, p};
    p->win = calloc(1, sizeof *p->win);
    if (!p->win || !(p->win->acked = calloc((size_t)cfg->publish_window, 1)))
        abort();
    pthread_mutex_init(&p->win->mu, NULL);
}

void publisher_destroy(publisher *p)
{
    pthread_mutex_destroy(&p->win->mu);
    free(p->win->acked);
    free(p->win);
    pthread_mutex_destroy(&p->mu);
}

static void on_disconnected(void *closure)
{
    publisher *p = closure;
    atomic_store(&p->nats_connected, 0);
    /* Closing our own connection on the way out is not an outage: no
     * warning (which would alarm whoever watches the logs) and no error on
     * /readyz's last state. */
    if (atomic_load(p->stop)) {
        log_info("publisher: NATS connection closed (stopping)");
        return;
    }
    set_error(p, "disconnected from NATS; events accumulate in PostgreSQL until it is back");
}

static void on_reconnected(void *closure)
{
    publisher *p = closure;
    atomic_store(&p->nats_connected, 1);
    atomic_fetch_add(&p->reconnects, 1);
    log_info("publisher: reconnected to NATS");
}

/* Runs on a libnats thread for every message of the window. */
static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    window *w = closure;
    const char *seq = NULL;
    natsMsgHeader_Get(msg, HDR_SEQ, &seq);
    long long idx = seq ? atoll(seq) - w->base : -1;
    pthread_mutex_lock(&w->mu);
    if (idx >= 0 && idx < w->n) {
        if (pa && pa->Duplicate && pa->Sequence < w->first_stored) {
            /* JetStream remembers the id but no longer holds the message
             * (purged inside the duplicate window): not stored, so not
             * acknowledged. It goes through once the window has passed. */
            w->acked[idx] = 2;
            w->duplicates++;
            if (!w->error[0])
                snprintf(w->error, sizeof w->error,
                         "seq %s was purged from the stream but its id is still in the "
                         "duplicate window; re-sending until the window has passed",
                         seq);
        } else if (pa) {
            w->acked[idx] = 1;
            if (pa->Duplicate)
                w->duplicates++;
            if (pa->Sequence > w->last_stream_seq)
                w->last_stream_seq = pa->Sequence;
        } else {
            w->acked[idx] = 2;
            if (!w->error[0] && pae)
                snprintf(w->error, sizeof w->error, "JetStream refused seq %s: %s (code %d)", seq,
                         pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err),
                         (int)pae->ErrCode);
        }
    }
    pthread_mutex_unlock(&w->mu);
    /* With an AckHandler libnats hands the published message back and no
     * longer frees it (nats.h, jsPubAckHandler): without this every event
     * published leaked its message (LSan misses it: the allocation is
     * inside libnats.so, which tests/lsan.supp suppresses). */
    natsMsg_Destroy(msg);
}

static vg_status load_cursor(PGconn *c, long long *cursor, vg_error *err)
{
    PGresult *r = db_exec(c, "SELECT seq FROM cursors WHERE name = 'publisher'", 0, NULL, err);
    if (!r)
        return err->code;
    *cursor = PQntuples(r) ? atoll(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    return VG_OK;
}

/* The cursor's update and the read of the window after it, alone or
 * together (save_and_read below). $1: the cursor; $2: the window size. */
#define CURSOR_UPDATE                                                                              \
    "UPDATE cursors SET seq = $1::bigint, updated_at = now() WHERE name = 'publisher'"
/* A seq range: an index range scan whatever the stats. */
#define WINDOW_SELECT                                                                              \
    "SELECT seq, event_id, event_type, payload::text FROM event_log"                               \
    " WHERE seq > $1::bigint AND seq <= $1::bigint + $2::int ORDER BY seq"

static vg_status save_cursor(PGconn *c, long long cursor, vg_error *err)
{
    char v[32];
    snprintf(v, sizeof v, "%lld", cursor);
    const char *p[] = {v};
    static db_stmt save = DB_STMT(CURSOR_UPDATE, 1);
    return db_run_stmt(c, &save, p, err);
}

/* Reconciles the cursor with the stream's tail (see file comment). Sets
 * *stream_last to the stream's last sequence. */
static vg_status sync_tail(publisher *p, jsCtx *js, PGconn *c, long long *cursor,
                           uint64_t *stream_last, vg_error *err)
{
    int64_t tail = 0;
    vg_status st = stream_tail(js, p->cfg, stream_last, &tail, err);
    if (st != VG_OK)
        return st;
    PGresult *r = db_exec(c, "SELECT coalesce(max(seq), 0) FROM event_log", 0, NULL, err);
    if (!r)
        return err->code;
    long long log_last = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (tail > log_last)
        return vg_fail(err, VG_E_CONFIG, "VIGIL_STREAM",
                       "stream %s holds seq %lld but event_log ends at %lld: was the database "
                       "restored from an older backup? Refusing to publish over it",
                       p->cfg->stream, (long long)tail, log_last);
    if (tail < *cursor) {
        log_error("publisher: stream %s holds events only through seq %lld but %lld were "
                  "acknowledged: JetStream lost %lld events; publishing them again",
                  p->cfg->stream, (long long)tail, *cursor, *cursor - (long long)tail);
        atomic_fetch_add(&p->republished, *cursor - tail);
    }
    if (tail != *cursor) {
        *cursor = tail;
        if ((st = save_cursor(c, *cursor, err)) != VG_OK)
            return st;
    }
    uint64_t first = 0;
    int64_t head = 0;
    if ((st = stream_first_seq(js, p->cfg, &first, err)) != VG_OK ||
        (st = stream_head(js, p->cfg, first, &head, err)) != VG_OK)
        return st;
    /* Events missing below the oldest stored one cannot be re-sent in order;
     * say so (once per value) and count them, for `vigil reconcile`. */
    long long missing = head > 1 ? head - 1 : 0;
    if (missing != atomic_exchange(&p->missing_head, missing) && missing)
        log_error("publisher: stream %s lacks events 1..%lld (purged?); they cannot be re-sent "
                  "in order: run `vigil reconcile` to append them as repairs",
                  p->cfg->stream, missing);
    pthread_mutex_lock(&p->win->mu);
    p->win->first_stored = first;
    pthread_mutex_unlock(&p->win->mu);
    atomic_store(&p->published_seq, *cursor);
    return VG_OK;
}

static db_stmt read_window = DB_STMT(WINDOW_SELECT, 2);

/* The cursor's commit and the read of the window after it in one round
 * trip: what the loop does after every window that was not prefetched
 * (most of them at steady load), saving a round trip on the path from the
 * sequencer's commit to JetStream (benchmark 4). */
static db_stmt save_and_read = DB_STMT("WITH saved AS (" CURSOR_UPDATE ") " WINDOW_SELECT, 2);

/* Sends the read of the window after `cursor` without waiting for it (and,
 * with save, commits `cursor` as the publisher's cursor in the same
 * statement). */
static int send_read(publisher *p, PGconn *c, long long cursor, int save, vg_error *err)
{
    char after[32], lim[16];
    snprintf(after, sizeof after, "%lld", cursor);
    snprintf(lim, sizeof lim, "%ld", p->cfg->publish_window);
    const char *params[] = {after, lim};
    return db_send_stmt(c, save ? &save_and_read : &read_window, params, err);
}

/* Collects the result of send_read (NULL with err on failure). */
static PGresult *recv_read(PGconn *c, vg_error *err)
{
    PGresult *r, *keep = NULL;
    while ((r = PQgetResult(c))) {
        if (!keep)
            keep = r;
        else
            PQclear(r);
    }
    if (!keep || PQresultStatus(keep) != PGRES_TUPLES_OK) {
        db_map_error(c, keep, err);
        PQclear(keep);
        return NULL;
    }
    return keep;
}

/* Publishes m without a reply subject, with the JetStream headers that
 * js_PublishMsgAsync would set from po (libnats sets them only there):
 * JetStream checks and stores it the same way, and sends no ack. */
static natsStatus publish_unacked(natsConnection *nc, natsMsg *m, const jsPubOptions *po)
{
    char last[24];
    natsStatus s = natsMsgHeader_Set(m, HDR_MSG_ID, po->MsgId);
    if (s == NATS_OK && po->ExpectLastSeq > 0) {
        snprintf(last, sizeof last, "%llu", (unsigned long long)po->ExpectLastSeq);
        s = natsMsgHeader_Set(m, HDR_EXPECT_LAST_SEQ, last);
    }
    if (s == NATS_OK && po->ExpectLastMsgId)
        s = natsMsgHeader_Set(m, HDR_EXPECT_LAST_ID, po->ExpectLastMsgId);
    return s == NATS_OK ? natsConnection_PublishMsg(nc, m) : s;
}

/* Publishes one window; returns how many leading events were acknowledged
 * (-1 on a database error, with err). `*rows` holds the window's events
 * when a previous call prefetched them (NULL: read them now). While the
 * window's acks are awaited, the next window is read (the database works
 * while JetStream does); it is handed back in `*rows` when every event of
 * this window was acknowledged, else discarded. */
static int publish_window(publisher *p, natsConnection *nc, jsCtx *js, PGconn *c, window *w,
                          long long cursor, uint64_t *stream_last, int ack_each, PGresult **rows,
                          vg_error *err)
{
    PGresult *r = *rows;
    *rows = NULL;
    if (!r && (!send_read(p, c, cursor, 0, err) || !(r = recv_read(c, err))))
        return -1;
    int n = PQntuples(r);
    if (n == 0) {
        PQclear(r);
        return 0;
    }
    pthread_mutex_lock(&w->mu);
    w->base = cursor + 1;
    w->n = n;
    memset(w->acked, 0, (size_t)n);
    w->last_stream_seq = *stream_last;
    w->duplicates = 0;
    w->error[0] = '\0';
    pthread_mutex_unlock(&w->mu);
    /* One ack for the window (see the file comment): every message but the
     * last goes out without a reply subject. */
    int chained = !ack_each && n > 1;
    atomic_fetch_add(ack_each ? &p->windows_each : &p->windows_chained, 1);

    natsStatus s = NATS_OK;
    int sent = 0;
    for (int i = 0; i < n && s == NATS_OK; i++) {
        long long seq = atoll(PQgetvalue(r, i, 0));
        if (seq != cursor + 1 + i) { /* event_log is gap-free by construction */
            log_error("publisher: event_log gap at seq %lld (expected %lld)", seq, cursor + 1 + i);
            break;
        }
        natsMsg *m = NULL;
        s = stream_event_msg(&m, PQgetvalue(r, i, 2), PQgetvalue(r, i, 0), PQgetvalue(r, i, 3),
                             PQgetlength(r, i, 3), 0);
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = PQgetvalue(r, i, 1);
        /* Message i expects the stream to end at last + i AND (i > 0) with
         * its predecessor's id; the server refuses it unless both hold, so
         * it can never be stored ahead of a predecessor that was not.
         * Either check alone has a hole: a number chain can match by
         * coincidence once another writer (reconcile's repairs) appended;
         * an id chain matches stale state when the predecessor was a
         * re-send JetStream answered as a Duplicate of a purged message
         * (not stored), and the next new message then overtook it. */
        po.ExpectLastSeq = *stream_last + (uint64_t)i; /* 0: empty stream, no check */
        if (i > 0)
            po.ExpectLastMsgId = PQgetvalue(r, i - 1, 1);
        if (s == NATS_OK && chained && i == n / 2 && i < n - 1 && p->fault_skip_one) {
            /* Fault injection for tests (VIGIL_FAULT=publisher_skip_one):
             * one message of a window never reaches NATS, once. */
            p->fault_skip_one = 0;
            log_warn("publisher: fault injection: seq %lld of a window not sent", seq);
        } else if (s == NATS_OK && chained && i < n - 1)
            s = publish_unacked(nc, m, &po);
        else if (s == NATS_OK)
            s = js_PublishMsgAsync(js, &m, &po);
        natsMsg_Destroy(m);
        if (s == NATS_OK)
            sent++;
    }
    PQclear(r);
    /* A full window: more may follow; read them while the acks come in. */
    int prefetching = n == p->cfg->publish_window;
    if (prefetching && !send_read(p, c, cursor + n, 0, err))
        return -1;
    jsPubOptions wait;
    jsPubOptions_Init(&wait);
    wait.MaxWait = p->cfg->publish_ack_timeout_ms;
    natsStatus done = sent ? js_PublishAsyncComplete(js, &wait) : NATS_OK;
    PGresult *next = prefetching ? recv_read(c, err) : NULL;
    if (prefetching && !next)
        return -1;
    if (done != NATS_OK) {
        /* Drop what is still pending: it will be re-sent from the cursor. */
        natsMsgList pending;
        if (js_PublishAsyncGetPendingList(&pending, js) == NATS_OK)
            natsMsgList_Destroy(&pending);
    }
    pthread_mutex_lock(&w->mu);
    int contiguous = 0;
    if (chained) {
        /* All or nothing: the last message stored, new, at the sequence
         * right after the others, proves the chain (see the file comment).
         * Anything else: the caller re-reads the stream's tail, which says
         * how far the window got, and goes on acknowledging each event. */
        if (w->acked[n - 1] == 1 && w->duplicates == 0 &&
            w->last_stream_seq == *stream_last + (uint64_t)n)
            contiguous = n;
        else if (w->acked[n - 1] == 1 && !w->error[0])
            snprintf(w->error, sizeof w->error,
                     "the window's last event (seq %lld) was acknowledged at stream sequence "
                     "%llu%s, not %llu",
                     cursor + n, (unsigned long long)w->last_stream_seq,
                     w->duplicates ? " as a duplicate" : "",
                     (unsigned long long)(*stream_last + (uint64_t)n));
    } else {
        while (contiguous < n && w->acked[contiguous] == 1)
            contiguous++;
    }
    if (contiguous == n) {
        *stream_last = w->last_stream_seq;
        *rows = next;
    } else {
        PQclear(next);
    }
    if (contiguous < n) {
        char why[256];
        if (w->error[0])
            snprintf(why, sizeof why, "%s", w->error);
        else if (s != NATS_OK)
            snprintf(why, sizeof why, "publish failed: %s", natsStatus_GetText(s));
        else
            snprintf(why, sizeof why, "no acknowledgment from JetStream within %ldms: %s",
                     p->cfg->publish_ack_timeout_ms, natsStatus_GetText(done));
        if (chained) /* the window's one ack speaks for the window: say which it was */
            set_error(p,
                      "window of seqs %lld..%lld not confirmed (%s); re-reading the stream's "
                      "tail and acknowledging each event until a window goes through",
                      cursor + 1, cursor + n, why);
        else
            set_error(p, "%s", why);
    }
    pthread_mutex_unlock(&w->mu);
    return contiguous;
}

void publisher_run(void *arg, PGconn *c)
{
    publisher *p = arg;
    vg_error err = {0};
    window *wp = p->win;
    pthread_mutex_lock(&wp->mu);
    wp->n = 0;
    pthread_mutex_unlock(&wp->mu);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = p->cfg->publish_window;
    jo.PublishAsync.AckHandler = on_ack;
    jo.PublishAsync.AckHandlerClosure = wp;
    jo.Wait = p->cfg->publish_ack_timeout_ms;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    long long cursor = 0;
    uint64_t stream_last = 0;
    int synced = 0, backoff = 100;
    int ack_each = (int)p->cfg->publish_ack_each;
    char refusal[160] = "";
    int64_t probed_at = 0;
    int64_t synced_at = 0;
    long long seen_reconnects = 0;
    const char *fault = getenv("VIGIL_FAULT");
    int crash_before_cursor_commit = fault && strcmp(fault, "publisher_crash_before_cursor") == 0;
    p->fault_skip_one = fault && strcmp(fault, "publisher_skip_one") == 0;

    PGresult *ahead = NULL; /* the next window, read while acks were awaited */
    /* The cursor needs no fsync of its own: one lost in a crash is behind
     * the stream, and sync_tail moves it forward without re-sending. */
    if (db_run(c, "LISTEN vigil_events", 0, NULL, &err) != VG_OK ||
        db_run(c, "SET synchronous_commit = off", 0, NULL, &err) != VG_OK ||
        load_cursor(c, &cursor, &err) != VG_OK)
        goto db_fail;
    atomic_store(&p->published_seq, cursor);
    if (stream_connect(p->cfg, "vigil-publisher", 1, &p->cb, &jo, &nc, &js, &err) != VG_OK) {
        set_error(p, "%s", err.detail);
        goto end;
    }
    while (!atomic_load(p->stop)) {
        if (natsConnection_Status(nc) != NATS_CONN_STATUS_CONNECTED) {
            /* Between attempts libnats says only "no server available": a
             * probe now and then asks NATS whether it refuses us
             * (authorization, TLS), and why. */
            char why[160];
            stream_conn_error(nc, why, sizeof why);
            if (now_epoch_us() - probed_at > PROBE_EVERY_US) {
                probed_at = now_epoch_us();
                stream_probe(p->cfg, refusal, sizeof refusal);
            }
            atomic_store(&p->nats_connected, 0);
            if (refusal[0])
                set_error(p,
                          "NATS at %s refuses the connection: %s; events accumulate in "
                          "PostgreSQL",
                          p->cfg->nats_url, refusal);
            else
                set_error(p, "NATS at %s unreachable%s%s; events accumulate in PostgreSQL",
                          p->cfg->nats_url, why[0] ? ": " : "", why);
            synced = 0;
            if (natsConnection_Status(nc) == NATS_CONN_STATUS_CLOSED) {
                /* libnats 3.4 gives up for good, MaxReconnect -1 or not, when
                 * the first connect fails after TCP was accepted (EOF, reset,
                 * handshake timeout: NATS behind a proxy or load balancer,
                 * or stopping just then). Start a new connection. */
                jsCtx_Destroy(js);
                natsConnection_Destroy(nc);
                if (stream_connect(p->cfg, "vigil-publisher", 1, &p->cb, &jo, &nc, &js, &err) !=
                    VG_OK) {
                    set_error(p, "%s", err.detail);
                    goto end;
                }
            }
            leader_sleep(p->stop, 200);
            if (leader_wait_notify(c, -1, 0) < 0) /* keep the DB session honest */
                goto db_lost;
            continue;
        }
        atomic_store(&p->nats_connected, 1);
        refusal[0] = '\0';
        /* A reconnect can be to a server that restarted without its storage;
         * an idle loop may never have seen the disconnected state, so count
         * reconnects rather than rely on observing it. */
        long long reconnects = atomic_load(&p->reconnects);
        if (reconnects != seen_reconnects) {
            seen_reconnects = reconnects;
            synced = 0;
        }
        if (!synced) {
            PQclear(ahead); /* read for a cursor sync_tail may move */
            ahead = NULL;
            vg_status st = stream_ensure(js, p->cfg, &err);
            if (st == VG_OK)
                st = sync_tail(p, js, c, &cursor, &stream_last, &err);
            if (st != VG_OK) {
                if (PQstatus(c) != CONNECTION_OK)
                    goto db_lost;
                atomic_store(&p->stream_ok, st != VG_E_CONFIG ? 1 : 0);
                set_error(p, "%s", err.detail);
                vg_error_clear(&err);
                leader_sleep(p->stop, backoff);
                backoff = backoff < 5000 ? backoff * 2 : 5000;
                continue;
            }
            atomic_store(&p->stream_ok, 1);
            synced = 1;
            synced_at = now_epoch_us();
        }
        int acked = publish_window(p, nc, js, c, wp, cursor, &stream_last, ack_each, &ahead, &err);
        if (acked < 0)
            goto db_lost;
        if (acked > 0 && crash_before_cursor_commit) {
            /* Fault injection for tests (VIGIL_FAULT=publisher_crash_before_cursor):
             * die after JetStream acknowledged and before the cursor commit. */
            log_warn("publisher: fault injection: exiting after PubAck, before cursor commit");
            _exit(99);
        }
        if (acked > 0) {
            cursor += acked;
            if (!ahead && acked == wp->n) {
                /* Not prefetched: commit the cursor and read what follows it
                 * in one statement; an empty read waits for a NOTIFY below. */
                if (!send_read(p, c, cursor, 1, &err) || !(ahead = recv_read(c, &err)))
                    goto db_lost;
            } else if (save_cursor(c, cursor, &err) != VG_OK) {
                goto db_lost;
            }
            atomic_store(&p->published_seq, cursor);
        }
        if (acked < wp->n && wp->n > 0) {
            atomic_fetch_add(&p->publish_errors, 1);
            synced = 0;   /* re-read the tail before trying again */
            ack_each = 1; /* until a window goes through: each failure named */
            leader_sleep(p->stop, backoff);
            backoff = backoff < 5000 ? backoff * 2 : 5000;
            wp->n = 0;
            continue;
        }
        backoff = 100;
        ack_each = (int)p->cfg->publish_ack_each;
        clear_error(p);
        if (ahead && PQntuples(ahead) == 0) { /* read with the cursor: nothing new yet */
            PQclear(ahead);
            ahead = NULL;
            wp->n = 0;
        }
        if (wp->n == 0 && leader_wait_notify(c, -1, 500) < 0) /* idle: wait for new events */
            goto db_lost;
        /* A purge keeps the stream's last sequence, so Expected-Last-Sequence
         * never notices it: re-read the tail every few seconds when idle. */
        if (wp->n == 0 && now_epoch_us() - synced_at > TAIL_RECHECK_US)
            synced = 0;
        wp->n = 0;
    }
    goto end;
db_lost:
db_fail:
    log_warn("publisher: database: %s", err.detail[0] ? err.detail : PQerrorMessage(c));
end:
    PQclear(ahead);
    vg_error_clear(&err);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}
