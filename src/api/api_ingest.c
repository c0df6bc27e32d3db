/*
 * api_ingest.c — group commit for single-transaction POSTs (api_ingest.h).
 *
 * Requests are parked: the handler suspends its connection and queues the
 * item; VIGIL_INGEST_FLUSHES flusher threads each take the queue's head (up
 * to VIGIL_MAX_BATCH items), run one `vigil_ingest` on a pooled connection,
 * answer every item they took and resume those connections. An HTTP worker
 * thread never waits for the database here: while it did (each request
 * blocked its thread until its flush committed), the other connections of
 * that thread waited too, event streams among them (bench/ANALYSIS.md,
 * benchmark 4: 15-55 ms from a stream's resume to its next frame).
 * Waiters live on the heap until their owner collects the answer.
 *
 * Without flushers (VIGIL_INGEST_FLUSHES=0, or while stopping) a caller
 * blocks in api_ingest_one: it queues a waiter and leads a flush itself
 * when a slot is free (with VIGIL_INGEST_FLUSHES=0, alone).
 * A leader or flusher touches a waiter only under the mutex or while it is
 * taken and not yet marked done.
 *
 * Wake-ups are addressed: each waiter sleeps on its own condition variable.
 * A leader that finishes wakes the waiters it answered and, when work is
 * left and it is not going on itself, the queue's head (the next leader).
 * A broadcast to every waiter on each flush woke up to VIGIL_HTTP_THREADS
 * threads of which all but a few went back to sleep: at 32 threads that
 * was most of the server's context switches.
 */
#include "api/api_ingest.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "events/pipeline.h"
#include "events/wake.h"
#include "store/db.h"
#include "store/store_keys.h"
#include "store/store_work.h"
#include "util/log.h"

typedef struct waiter {
    struct MHD_Connection *conn; /* parked request to resume when done; NULL: a blocked caller */
    char *text;                  /* the item as JSON, dumped by its own thread */
    size_t len;
    char key_id[37]; /* the request's API key, checked again in the flush's transaction */
    struct waiter *next;
    pthread_cond_t cv; /* signalled when done, or when it may lead */
    int done;
    /* the answer */
    vg_status st;
    vg_error err;
    char *out;
    char id[37];
    int created;
} waiter;

#define MAX_FLUSHERS 256 /* VIGIL_INGEST_FLUSHES's upper bound (util/config.h) */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t work; /* flushers: a parked item was queued, or stopping */
    waiter *head, *tail;
    int running, max_running, max_items;
    int stopping, nflushers;
    db_pool *pool;
    pthread_t flushers[MAX_FLUSHERS];
    int sequence, seq_limit; /* VIGIL_INGEST_SEQUENCE, VIGIL_SEQUENCER_BATCH */
    atomic_llong flushes, items, alone, largest;
    atomic_llong sequenced, seq_failed; /* events sequenced by flushes; failed attempts */
} ing = {.mu = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER, .max_items = 1};

static void *flusher_main(void *arg);

vg_status api_ingest_start(const vg_config *cfg, db_pool *pool, vg_error *err)
{
    pthread_mutex_lock(&ing.mu);
    ing.max_running = (int)cfg->ingest_flushes;
    ing.max_items = (int)cfg->max_batch;
    ing.sequence = (int)cfg->ingest_sequence;
    ing.seq_limit = (int)cfg->sequencer_batch;
    ing.pool = pool;
    ing.stopping = 0;
    pthread_mutex_unlock(&ing.mu);
    int want = ing.max_running < MAX_FLUSHERS ? ing.max_running : MAX_FLUSHERS;
    int n = 0;
    while (n < want && pthread_create(&ing.flushers[n], NULL, flusher_main, NULL) == 0)
        n++;
    pthread_mutex_lock(&ing.mu);
    ing.nflushers = n;
    pthread_mutex_unlock(&ing.mu);
    if (n < want) {
        api_ingest_stop();
        return vg_fail(err, VG_E_INTERNAL, NULL, "cannot start the ingest flusher threads");
    }
    return VG_OK;
}

void api_ingest_stop(void)
{
    /* Flushers answer and resume everything queued before they exit, so no
     * connection is left suspended when the HTTP daemon stops. */
    pthread_mutex_lock(&ing.mu);
    ing.stopping = 1;
    pthread_cond_broadcast(&ing.work);
    pthread_mutex_unlock(&ing.mu);
    for (int i = 0; i < ing.nflushers; i++)
        pthread_join(ing.flushers[i], NULL);
    pthread_mutex_lock(&ing.mu); /* api_ingest_park reads it under the mutex */
    ing.nflushers = 0;
    pthread_mutex_unlock(&ing.mu);
}

/* The answer of a waiter from one row of vigil_ingest. */
static void answer_row(waiter *w, const PGresult *r, int row)
{
    w->st = VG_OK;
    w->created = strcmp(PQgetvalue(r, row, 1), "f") == 0;
    snprintf(w->id, sizeof w->id, "%s", PQgetvalue(r, row, 2));
    if (!(w->out = strdup(PQgetvalue(r, row, 3))))
        abort();
}

/* The same failure, given to a waiter (vg_error owns its items). */
static void answer_error(waiter *w, const vg_error *err)
{
    w->st = err->code;
    w->err.code = err->code;
    memcpy(w->err.field, err->field, sizeof w->err.field);
    memcpy(w->err.detail, err->detail, sizeof w->err.detail);
    w->err.items = err->items ? json_deep_copy(err->items) : NULL;
}

/* vigil_ingest_rows_keyed checks the items' API keys first, in the
 * transaction that writes (migrations 0024, 0028): the request was
 * authenticated from a cache (keys_authenticate_cached). Each item's answer
 * over the rows of `rows_sql`, then `extra` columns. */
#define INGEST_ROWS_SQL(extra, rows_sql)                                                           \
    "SELECT idx, duplicate, id, " TX_ANSWER_ITEM_SQL extra " FROM " rows_sql " ORDER BY idx"
static db_stmt ingest_rows =
    DB_STMT(INGEST_ROWS_SQL("", "vigil_ingest_rows_keyed($1::jsonb, $2::uuid[])"), 2);

/* The same, then the sequencer's own step in the same transaction (0030),
 * from the local sequencer's watermark $3, at most $4 rows; its outcome in
 * columns 4.. (tx_sequencing_read). */
static db_stmt ingest_sequenced =
    DB_STMT(INGEST_ROWS_SQL(", seq_moved, seq_strays, seq_error",
                            "vigil_ingest_rows_sequenced($1::jsonb, $2::uuid[], $3::bigint,"
                            " $4::int)"),
            4);

int api_ingest_sequencing(int n, tx_sequencing *seq)
{
    *seq = (tx_sequencing){0};
    /* Only the watermark goes in, never out: the step's own candidate
     * (0017) is not valid (the ingest's xid was assigned before the step
     * reads the outbox sequence, not after), so it passes no candidate,
     * moves no watermark, and its outputs are not kept. A backlog is the
     * sequencer's work: a commit that POSTs wait for takes at most 256
     * rows plus 16 per transaction in it. */
    seq->limit = 256 + 16 * n < ing.seq_limit ? 256 + 16 * n : ing.seq_limit;
    return ing.sequence && wake_local_low(&seq->low);
}

int api_ingest_sequenced(const tx_sequencing *seq)
{
    if (seq->moved < 0) {
        /* The ingest committed; its events wait for the sequencer, which
         * meets the same failure and reports it (vigil_sequencer_errors). */
        atomic_fetch_add(&ing.seq_failed, 1);
        log_warn("ingest: sequencing in the commit failed (%s); the sequencer takes the events",
                 seq->error);
    }
    if (seq->moved > 0)
        atomic_fetch_add(&ing.sequenced, seq->moved);
    if (seq->strays > 0) {
        pipeline *p = pipeline_current();
        if (p)
            atomic_fetch_add(&p->seq.strays, seq->strays);
        log_error("ingest: %d outbox row(s) below the sequencer's watermark %lld were "
                  "sequenced; please report this",
                  seq->strays, seq->low);
    }
    return seq->moved < 0 || seq->moved >= seq->limit;
}

/* The distinct API keys of n waiters, as an array literal. */
static void keys_of(waiter *const *g, int n, db_array *keys)
{
    db_array_init(keys);
    for (int i = 0; i < n; i++) {
        int seen = !g[i]->key_id[0]; /* none: nothing to check */
        for (int j = 0; j < i && !seen; j++)
            seen = strcmp(g[j]->key_id, g[i]->key_id) == 0;
        if (!seen)
            db_array_add(keys, g[i]->key_id);
    }
}

/* Runs the n waiters of `all` as one vigil_ingest and answers each. */
static void flush(PGconn *db, waiter *const *all, int n)
{
    size_t cap = 2;
    for (int i = 0; i < n; i++)
        cap += all[i]->len + 1;
    char *text = malloc(cap + 1);
    waiter **g = malloc(sizeof *g * (size_t)n); /* those not answered yet */
    if (!text || !g)
        abort();
    memcpy(g, all, sizeof *g * (size_t)n);
    while (n > 0) {
        size_t len = 0;
        text[len++] = '[';
        for (int i = 0; i < n; i++) {
            if (i)
                text[len++] = ',';
            memcpy(text + len, g[i]->text, g[i]->len);
            len += g[i]->len;
        }
        text[len++] = ']';
        text[len] = '\0';
        db_array keys;
        keys_of(g, n, &keys);
        /* Sequenced in the commit when the sequencer leads here (its
         * watermark is known); else the sequencer is woken after it. */
        tx_sequencing seq;
        int sequenced = api_ingest_sequencing(n, &seq);
        char low_s[24], limit_s[16];
        tx_sequencing_params(&seq, low_s, limit_s);
        const char *p[] = {text, keys.text, low_s, limit_s};
        vg_error err = {0};
        PGresult *r = db_exec_stmt(db, sequenced ? &ingest_sequenced : &ingest_rows, p, &err);
        db_array_free(&keys);
        atomic_fetch_add(&ing.flushes, 1);
        atomic_fetch_add(&ing.items, n);
        long long big = atomic_load(&ing.largest);
        while (n > big && !atomic_compare_exchange_weak(&ing.largest, &big, n))
            ;
        if (r && PQntuples(r) == n) {
            /* Committed: wake the sequencer now (if needed), once for the
             * group. Each request kicking after its reply went out used to
             * spread n kicks over the time their connections took to
             * resume; a round that had already taken this commit's events
             * was then woken again to find nothing (bench/ANALYSIS.md,
             * empty rounds). */
            if (sequenced)
                tx_sequencing_read(r, 4, &seq);
            if (!sequenced || api_ingest_sequenced(&seq))
                wake_kick();
            for (int i = 0; i < n; i++)
                answer_row(g[i], r, i);
            PQclear(r);
            break;
        }
        if (r) { /* cannot happen: vigil_ingest answers every item */
            log_error("ingest: vigil_ingest returned %d rows for %d items", PQntuples(r), n);
            vg_fail(&err, VG_E_INTERNAL, NULL, "ingest returned %d rows for %d items", PQntuples(r),
                    n);
            PQclear(r);
        }
        /* Items refused by index: answer them, send the rest again. A
         * key refused (revoked or expired since it was cached; its id in
         * err.items): its items, likewise, and no more of it from the
         * cache. */
        int refused = 0;
        const char *bad_key =
            err.code == VG_E_UNAUTHORIZED ? json_string_value(json_array_get(err.items, 0)) : NULL;
        if (bad_key) {
            keys_cache_forget(bad_key);
            for (int i = 0; i < n; i++) {
                if (strcmp(g[i]->key_id, bad_key) != 0)
                    continue;
                vg_fail(&g[i]->err, VG_E_UNAUTHORIZED, "Authorization", "%s", err.detail);
                g[i]->st = VG_E_UNAUTHORIZED;
                refused++;
            }
        }
        size_t k;
        json_t *e;
        if (err.code == VG_E_INVALID && json_array_size(err.items) > 0) {
            json_array_foreach(err.items, k, e)
            {
                json_int_t i = json_integer_value(json_object_get(e, "index"));
                if (i < 0 || i >= n || g[i]->st != VG_OK || g[i]->out)
                    continue;
                vg_fail(&g[i]->err, VG_E_INVALID, json_string_value(json_object_get(e, "field")),
                        "%s", json_string_value(json_object_get(e, "detail")));
                g[i]->st = VG_E_INVALID;
                refused++;
            }
        }
        if (refused) {
            int m = 0;
            for (int i = 0; i < n; i++)
                if (g[i]->st == VG_OK)
                    g[m++] = g[i];
            n = m;
        } else if (n > 1 && err.code != VG_E_UNAVAILABLE) {
            /* A failure that names no item (a constraint, an internal
             * error): one bad item must not fail the others. */
            atomic_fetch_add(&ing.alone, n);
            for (int i = 0; i < n; i++)
                flush(db, &g[i], 1);
            n = 0;
        } else {
            for (int i = 0; i < n; i++)
                answer_error(g[i], &err);
            n = 0;
        }
        vg_error_clear(&err);
    }
    free(g);
    free(text);
}

/* Marks the n waiters of g answered and wakes each: a parked request by
 * resuming its connection (libmicrohttpd calls the handler again), a
 * blocked caller by its condition variable. Called with ing.mu held; the
 * resumes happen after it is released (a resumed request may be freed at
 * once, so its connection is read first). */
static void finish_taken(waiter *const *g, int n, const waiter *self)
{
    struct MHD_Connection **resume = malloc(sizeof *resume * (size_t)(n > 0 ? n : 1));
    if (!resume)
        abort();
    int nr = 0;
    for (int i = 0; i < n; i++) {
        if (g[i]->conn)
            resume[nr++] = g[i]->conn;
        g[i]->done = 1; /* its owner may go on once we unlock */
        if (!g[i]->conn && g[i] != self)
            pthread_cond_signal(&g[i]->cv);
    }
    /* A slot is free: the next flusher, or a blocked caller at the head. */
    pthread_cond_signal(&ing.work);
    if (ing.head && !ing.head->conn)
        pthread_cond_signal(&ing.head->cv);
    pthread_mutex_unlock(&ing.mu);
    for (int i = 0; i < nr; i++)
        MHD_resume_connection(resume[i]);
    free(resume);
    pthread_mutex_lock(&ing.mu);
}

/* Takes up to max_items from the queue's head into g; ing.mu held. */
static int take(waiter **g)
{
    int n = 0;
    while (ing.head && n < ing.max_items) {
        g[n++] = ing.head;
        ing.head = ing.head->next;
    }
    if (!ing.head)
        ing.tail = NULL;
    return n;
}

/* Appends w to the queue; ing.mu held. */
static void enqueue(waiter *w)
{
    if (ing.tail)
        ing.tail->next = w;
    else
        ing.head = w;
    ing.tail = w;
}

/* A flusher: runs the flushes of parked requests on a pooled connection, so
 * no HTTP worker thread waits for the database while its other connections
 * (event streams among them) wait for it. */
static void *flusher_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "ingest flush");
    waiter **g = malloc(sizeof *g * (size_t)ing.max_items);
    if (!g)
        abort();
    pthread_mutex_lock(&ing.mu);
    for (;;) {
        if (ing.head && ing.running < ing.max_running) {
            int n = take(g);
            ing.running++;
            pthread_mutex_unlock(&ing.mu);
            vg_error err = {0};
            PGconn *db = db_acquire(ing.pool, &err);
            if (db) {
                flush(db, g, n);
                db_release(ing.pool, db);
            } else {
                for (int i = 0; i < n; i++)
                    answer_error(g[i], &err);
            }
            vg_error_clear(&err);
            pthread_mutex_lock(&ing.mu);
            ing.running--;
            finish_taken(g, n, NULL);
            continue;
        }
        if (ing.stopping && !ing.head)
            break;
        pthread_cond_wait(&ing.work, &ing.mu);
    }
    pthread_mutex_unlock(&ing.mu);
    free(g);
    return NULL;
}

static waiter *waiter_new(json_t *item, const char *key_id)
{
    waiter *w = calloc(1, sizeof *w);
    if (!w || !(w->text = json_dumps(item, JSON_COMPACT)))
        abort();
    snprintf(w->key_id, sizeof w->key_id, "%s", key_id);
    w->len = strlen(w->text);
    pthread_cond_init(&w->cv, NULL);
    return w;
}

api_ingest_ticket *api_ingest_park(struct MHD_Connection *conn, json_t *item, const char *key_id)
{
    pthread_mutex_lock(&ing.mu);
    int ok = ing.nflushers > 0 && !ing.stopping;
    pthread_mutex_unlock(&ing.mu);
    if (!ok)
        return NULL;
    waiter *w = waiter_new(item, key_id);
    w->conn = conn;
    pthread_mutex_lock(&ing.mu);
    if (ing.stopping) {
        pthread_mutex_unlock(&ing.mu);
        api_ingest_ticket_free(w);
        return NULL;
    }
    /* Suspended before any flusher can see it, so the resume never comes
     * first. */
    MHD_suspend_connection(conn);
    enqueue(w);
    pthread_cond_signal(&ing.work);
    pthread_mutex_unlock(&ing.mu);
    return w;
}

vg_status api_ingest_collect(api_ingest_ticket *w, char **out, char id[37], int *created,
                             vg_error *err)
{
    pthread_mutex_lock(&ing.mu);
    int done = w->done;
    pthread_mutex_unlock(&ing.mu);
    vg_status st;
    if (!done) { /* cannot happen: the connection is resumed only when done */
        log_error("ingest: a parked request resumed before its flush ended");
        st = vg_fail(err, VG_E_INTERNAL, NULL, "ingest answer missing");
    } else if ((st = w->st) != VG_OK) {
        vg_error_clear(err);
        *err = w->err;
        w->err.items = NULL;
    } else {
        *out = w->out;
        w->out = NULL;
        memcpy(id, w->id, 37);
        *created = w->created;
    }
    api_ingest_ticket_free(w);
    return st;
}

void api_ingest_ticket_free(api_ingest_ticket *w)
{
    if (!w)
        return;
    pthread_cond_destroy(&w->cv);
    vg_error_clear(&w->err);
    free(w->out);
    free(w->text);
    free(w);
}

vg_status api_ingest_one(PGconn *db, json_t *item, const char *key_id, char **out, char id[37],
                         int *created, vg_error *err)
{
    waiter *w = waiter_new(item, key_id);
    pthread_mutex_lock(&ing.mu);
    if (ing.max_running == 0) { /* coalescing off: every request alone */
        pthread_mutex_unlock(&ing.mu);
        flush(db, &w, 1);
        pthread_mutex_lock(&ing.mu);
        w->done = 1;
    } else {
        enqueue(w);
    }
    waiter **g = NULL;
    while (!w->done) {
        if (ing.running >= ing.max_running || !ing.head) {
            pthread_cond_wait(&w->cv, &ing.mu);
            continue;
        }
        if (!g && !(g = malloc(sizeof *g * (size_t)ing.max_items)))
            abort();
        int n = take(g);
        ing.running++;
        pthread_mutex_unlock(&ing.mu);
        flush(db, g, n);
        pthread_mutex_lock(&ing.mu);
        ing.running--;
        /* Wakes the others it answered and, for the slot just freed, a
         * flusher or the head when it is a blocked caller (asleep: a waiter
         * that is awake and holds no slot is only ever here, under the
         * mutex, checking for one). */
        finish_taken(g, n, w);
    }
    pthread_mutex_unlock(&ing.mu);
    free(g);
    return api_ingest_collect(w, out, id, created, err);
}

void api_ingest_render(FILE *f)
{
    fprintf(f,
            "# HELP vigil_ingest_flushes_total vigil_ingest calls made for single-transaction "
            "POSTs (each one statement and one commit for the requests joined in it).\n"
            "# TYPE vigil_ingest_flushes_total counter\nvigil_ingest_flushes_total %lld\n",
            (long long)atomic_load(&ing.flushes));
    fprintf(f,
            "# HELP vigil_ingest_flushed_items_total Transactions sent in those calls (items / "
            "flushes = transactions per commit).\n"
            "# TYPE vigil_ingest_flushed_items_total counter\n"
            "vigil_ingest_flushed_items_total %lld\n",
            (long long)atomic_load(&ing.items));
    fprintf(f,
            "# HELP vigil_ingest_largest_flush Most single-POST transactions joined in one "
            "commit since start.\n# TYPE vigil_ingest_largest_flush gauge\n"
            "vigil_ingest_largest_flush %lld\n",
            (long long)atomic_load(&ing.largest));
    fprintf(f,
            "# HELP vigil_ingest_retried_alone_total Transactions sent again one at a time "
            "because their joined commit failed without naming an item.\n"
            "# TYPE vigil_ingest_retried_alone_total counter\n"
            "vigil_ingest_retried_alone_total %lld\n",
            (long long)atomic_load(&ing.alone));
    fprintf(f,
            "# HELP vigil_ingest_sequenced_events_total Events sequenced in the commit of "
            "single-transaction POSTs (VIGIL_INGEST_SEQUENCE), theirs and any waiting.\n"
            "# TYPE vigil_ingest_sequenced_events_total counter\n"
            "vigil_ingest_sequenced_events_total %lld\n",
            (long long)atomic_load(&ing.sequenced));
    fprintf(f,
            "# HELP vigil_ingest_sequence_failures_total Commits whose sequencing step failed "
            "(rolled back alone; the sequencer took the events).\n"
            "# TYPE vigil_ingest_sequence_failures_total counter\n"
            "vigil_ingest_sequence_failures_total %lld\n",
            (long long)atomic_load(&ing.seq_failed));
}
