/*
 * api_ingest.c — group commit for single-transaction POSTs (api_ingest.h).
 *
 * Waiters queue in arrival order under one mutex. A caller that finds fewer
 * than VIGIL_INGEST_FLUSHES flushes running becomes a leader: it takes the
 * queue's head (up to VIGIL_MAX_BATCH items, its own or not), runs one
 * `vigil_ingest` on its own connection, answers every waiter it took and
 * loops until its own item is answered. Waiters live on their callers'
 * stacks; a leader touches one only under the mutex or while the waiter is
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

#include "store/db.h"
#include "util/log.h"

typedef struct waiter {
    char *text; /* the item as JSON, dumped by its own thread */
    size_t len;
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

static struct {
    pthread_mutex_t mu;
    waiter *head, *tail;
    int running, max_running, max_items;
    atomic_llong flushes, items, alone, largest;
} ing = {.mu = PTHREAD_MUTEX_INITIALIZER, .max_items = 1};

void api_ingest_start(const vg_config *cfg)
{
    pthread_mutex_lock(&ing.mu);
    ing.max_running = (int)cfg->ingest_flushes;
    ing.max_items = (int)cfg->max_batch;
    pthread_mutex_unlock(&ing.mu);
}

void api_ingest_stop(void)
{
    /* Nothing to free: waiters belong to their callers, and the server has
     * drained its requests before this is called. */
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

static db_stmt ingest_rows = DB_STMT("SELECT idx, duplicate, tx->>'id',"
                                     " (tx || jsonb_build_object('duplicate', duplicate))::text"
                                     " FROM vigil_ingest($1::jsonb) ORDER BY idx",
                                     1);

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
        const char *p[] = {text};
        vg_error err = {0};
        PGresult *r = db_exec_stmt(db, &ingest_rows, p, &err);
        atomic_fetch_add(&ing.flushes, 1);
        atomic_fetch_add(&ing.items, n);
        long long big = atomic_load(&ing.largest);
        while (n > big && !atomic_compare_exchange_weak(&ing.largest, &big, n))
            ;
        if (r && PQntuples(r) == n) {
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
        /* Items refused by index: answer them, send the rest again. */
        int refused = 0;
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

vg_status api_ingest_one(PGconn *db, json_t *item, char **out, char id[37], int *created,
                         vg_error *err)
{
    waiter w = {0};
    w.text = json_dumps(item, JSON_COMPACT);
    if (!w.text)
        abort();
    w.len = strlen(w.text);
    pthread_cond_init(&w.cv, NULL);
    pthread_mutex_lock(&ing.mu);
    if (ing.max_running == 0) { /* coalescing off: every request alone */
        pthread_mutex_unlock(&ing.mu);
        waiter *one = &w;
        flush(db, &one, 1);
        pthread_mutex_lock(&ing.mu);
        w.done = 1;
    } else {
        if (ing.tail)
            ing.tail->next = &w;
        else
            ing.head = &w;
        ing.tail = &w;
    }
    waiter **g = NULL;
    while (!w.done) {
        if (ing.running >= ing.max_running || !ing.head) {
            pthread_cond_wait(&w.cv, &ing.mu);
            continue;
        }
        if (!g && !(g = malloc(sizeof *g * (size_t)ing.max_items)))
            abort();
        int n = 0;
        while (ing.head && n < ing.max_items) {
            g[n++] = ing.head;
            ing.head = ing.head->next;
        }
        if (!ing.head)
            ing.tail = NULL;
        ing.running++;
        pthread_mutex_unlock(&ing.mu);
        flush(db, g, n);
        pthread_mutex_lock(&ing.mu);
        ing.running--;
        for (int i = 0; i < n; i++) {
            g[i]->done = 1; /* its owner may return once we unlock */
            if (g[i] != &w)
                pthread_cond_signal(&g[i]->cv);
        }
        /* The slot just freed: if this thread is done, the head leads next
         * (it is asleep: a waiter that is awake and holds no slot is only
         * ever here, under the mutex, checking for one). */
        if (w.done && ing.head)
            pthread_cond_signal(&ing.head->cv);
    }
    pthread_mutex_unlock(&ing.mu);
    pthread_cond_destroy(&w.cv);
    free(g);
    free(w.text);
    if (w.st != VG_OK) {
        if (err) {
            vg_error_clear(err);
            *err = w.err;
        } else {
            vg_error_clear(&w.err);
        }
        return w.st;
    }
    *out = w.out;
    memcpy(id, w.id, 37);
    *created = w.created;
    return VG_OK;
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
}
