/*
 * test_pipeline.c — the seed's loss scenarios, run against the real
 * pipeline: PostgreSQL → outbox → sequencer → event_log → publisher →
 * JetStream stream AML_EVENTS.
 *
 * seed/nats-reliability-analysis.md lists how the old fire-and-forget
 * publish lost events: a NATS restart, nobody subscribed, a network timeout,
 * a crashing subscriber, and its own demonstration (NATS stopped while a
 * customer is created). The tests below stage each of them, plus what the
 * new design adds as failure points: NATS losing acknowledged messages, a
 * vigil crash between a PubAck and the cursor commit, and a leader failover
 * between two `vigil serve`. Mostly while transactions are ingested; then
 * verify_stream() proves that the stream holds every event of event_log
 * exactly once, in seq order, and that every transaction the API accepted
 * has its event.
 *
 * PIPELINE_TEST=<test name> runs a single test.
 *
 * Load: a loader thread POSTs transactions with unique external_ids at a
 * modest rate and records the ids of the accepted ones; the API does not
 * depend on NATS, so in these tests every request must be accepted.
 */
#include "harness.h"

#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#define STREAM         "AML_EVENTS"
#define LOCK_SEQUENCER "7307100201"
#define LOCK_PUBLISHER "7307100202"
#define CAUGHT_UP_MS   20000 /* how long verify_stream waits for the publisher */
#define LOAD_EVERY_MS  10    /* a loader's pause between requests */

/* ---- load ------------------------------------------------------------------ */

static atomic_int next_tx; /* external_ids are unique across loaders and tests */

typedef struct loader {
    h_env *env;
    char url[160]; /* POST target: a vigil's base URL + /transactions */
    char customer_id[40];
    pthread_t thread;
    atomic_int stop;
    atomic_int accepted; /* 2xx so far; readable while the loader runs */
    /* Read after loader_stop only. */
    int server_errors; /* 5xx */
    int other_errors;  /* any other non-2xx */
    int transport;     /* no response */
    char (*ids)[40];   /* transaction ids of the accepted ones */
    size_t nids, cap;
    char first_problem[400];
} loader;

static void loader_note(loader *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void loader_note(loader *l, const char *fmt, ...)
{
    if (l->first_problem[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->first_problem, sizeof l->first_problem, fmt, ap);
    va_end(ap);
}

static void loader_record(loader *l, const char *id)
{
    if (l->nids == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->ids = realloc(l->ids, l->cap * sizeof *l->ids);
        if (!l->ids)
            abort();
    }
    snprintf(l->ids[l->nids++], sizeof l->ids[0], "%s", id);
}

static void *loader_main(void *arg)
{
    loader *l = arg;
    char body[512];
    while (!atomic_load(&l->stop)) {
        snprintf(body, sizeof body,
                 "{\"external_id\": \"pipe-%d\", \"customer_id\": \"%s\", \"amount\": \"12.34\","
                 " \"currency\": \"EUR\", \"direction\": \"out\", \"channel\": \"card\","
                 " \"occurred_at\": \"2024-03-01T12:00:00Z\"}",
                 atomic_fetch_add(&next_tx, 1), l->customer_id);
        h_resp r;
        if (h_http(l->env, "POST", l->url, l->env->admin_key, body, -1, NULL, &r) != 0) {
            l->transport++;
            loader_note(l, "no response from %s", l->url);
        } else if (r.status >= 200 && r.status < 300 &&
                   json_is_string(json_object_get(r.json, "id"))) {
            loader_record(l, json_string_value(json_object_get(r.json, "id")));
            atomic_fetch_add(&l->accepted, 1);
        } else {
            if (r.status >= 500)
                l->server_errors++;
            else
                l->other_errors++;
            loader_note(l, "%ld %.300s", r.status, r.body);
        }
        h_resp_free(&r);
        h_sleep_ms(LOAD_EVERY_MS);
    }
    return NULL;
}

/* Starts posting to base_url (a vigil's http://host:port). */
static void loader_start(loader *l, h_env *env, const char *base_url, const char *customer_id)
{
    memset(l, 0, sizeof *l);
    l->env = env;
    snprintf(l->url, sizeof l->url, "%s/transactions", base_url);
    snprintf(l->customer_id, sizeof l->customer_id, "%s", customer_id);
    assert_int_equal(pthread_create(&l->thread, NULL, loader_main, l), 0);
}

static void loader_stop(loader *l)
{
    atomic_store(&l->stop, 1);
    pthread_join(l->thread, NULL);
    fprintf(stderr, "loader %s: %d accepted, %d 5xx, %d other, %d without response%s%s\n", l->url,
            atomic_load(&l->accepted), l->server_errors, l->other_errors, l->transport,
            l->first_problem[0] ? "; first problem: " : "", l->first_problem);
}

/* The API never depends on NATS: every request of a loader was accepted. */
static void assert_all_accepted(const loader *l)
{
    assert_true(atomic_load(&l->accepted) > 0);
    assert_int_equal(l->server_errors, 0);
    assert_int_equal(l->other_errors, 0);
    assert_int_equal(l->transport, 0);
}

static void loader_free(loader *l)
{
    free(l->ids);
    l->ids = NULL;
    l->nids = l->cap = 0;
}

/* Waits (up to 30 s: a loaded CI box can be slow) until the loader has `more` accepted requests
 * beyond what it had at the call. On timeout it stops the loader (which prints its first problem)
 * and fails. */
static void expect_accepted(loader *l, int more)
{
    int base = atomic_load(&l->accepted);
    long long t0 = h_now_ms();
    while (atomic_load(&l->accepted) - base < more && h_now_ms() - t0 < 30000)
        h_sleep_ms(20);
    int got = atomic_load(&l->accepted) - base;
    if (got < more)
        loader_stop(l);
    assert_true(got >= more);
}

static void create_customer(h_env *env, const char *body, char *id_out, size_t outsz)
{
    assert_int_equal(h_customer_create(env, body, id_out, outsz), 0);
}

/* ---- what the stream must hold ---------------------------------------------- */

static long long db_count(h_env *env, const char *sql)
{
    long long v = h_db_count(env, sql);
    assert_true(v >= 0);
    return v;
}

static long long cursor_seq(h_env *env)
{
    return db_count(env, "SELECT seq FROM cursors WHERE name = 'publisher'");
}

static long long max_seq(h_env *env)
{
    return db_count(env, "SELECT coalesce(max(seq), 0) FROM event_log");
}

/* event_log as (seq, event_id, event_type, subject), ordered by seq; row i
 * is seq i+1 (asserted). Caller PQclear-s. */
static PGresult *read_event_log(h_env *env)
{
    PGconn *db = h_db(env);
    assert_non_null(db);
    PGresult *r =
        PQexec(db, "SELECT seq, event_id, event_type, subject FROM event_log ORDER BY seq");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    int gaps = 0;
    for (int i = 0; i < PQntuples(r); i++)
        gaps += atoll(PQgetvalue(r, i, 0)) != i + 1;
    assert_int_equal(gaps, 0);
    return r;
}

static jsCtx *js_connect(h_env *env, natsConnection **nc)
{
    jsCtx *js = NULL;
    *nc = h_nats_connect(env);
    assert_non_null(*nc);
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = 5000;
    assert_int_equal(natsConnection_JetStream(&js, *nc, &o), NATS_OK);
    return js;
}

static const char *header(natsMsg *m, const char *name)
{
    const char *v = NULL;
    return natsMsgHeader_Get(m, name, &v) == NATS_OK && v ? v : "";
}

/* Checks one stream message against event_log row `seq` (1-based); returns 0
 * when it matches, else describes the mismatch into why. */
static int check_msg(natsMsg *m, PGresult *log, long long seq, char *why, size_t whysz)
{
    const char *vseq = header(m, "Vigil-Seq"), *msg_id = header(m, "Nats-Msg-Id");
    const char *subject = natsMsg_GetSubject(m);
    if (seq < 1 || seq > PQntuples(log)) {
        snprintf(why, whysz, "Vigil-Seq %s, but event_log has %d events", vseq, PQntuples(log));
        return -1;
    }
    int row = (int)(seq - 1);
    if (atoll(vseq) != seq || strcmp(msg_id, PQgetvalue(log, row, 1)) != 0 ||
        strcmp(subject, PQgetvalue(log, row, 2)) != 0) {
        snprintf(why, whysz,
                 "expected seq %lld (id %s, %s), got Vigil-Seq %s, Nats-Msg-Id %s, subject %s", seq,
                 PQgetvalue(log, row, 1), PQgetvalue(log, row, 2), vseq, msg_id, subject);
        return -1;
    }
    return 0;
}

/* `{id1,id2,...}` of every transaction the loaders had accepted. */
static char *accepted_ids(loader *const *loads, int nloads, size_t *n)
{
    size_t cap = 3;
    for (int i = 0; i < nloads; i++)
        cap += loads[i]->nids * 40;
    char *s = malloc(cap), *p = s;
    assert_non_null(s);
    *p++ = '{';
    *n = 0;
    for (int i = 0; i < nloads; i++)
        for (size_t j = 0; j < loads[i]->nids; j++)
            p += sprintf(p, "%s%s", (*n)++ ? "," : "", loads[i]->ids[j]);
    *p++ = '}';
    *p = '\0';
    return s;
}

/* ---- logs --------------------------------------------------------------------- */

/* Lines of the file containing any of the NULL-terminated needles (printed
 * to stderr when print is set), or -1 when it cannot be read. */
static int log_lines(const char *path, const char *const *needles, int print)
{
    char *text = h_read_file(path);
    if (!text)
        return -1;
    int n = 0;
    for (char *line = text, *nl; line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        for (int i = 0; needles[i]; i++)
            if (strstr(line, needles[i])) {
                n++;
                if (print)
                    fprintf(stderr, "%s: %s\n", path, line);
                break;
            }
    }
    free(text);
    return n;
}

static int log_count(const char *path, const char *needle)
{
    const char *const needles[] = {needle, NULL};
    return log_lines(path, needles, 0);
}

/* With VIGIL_TEST_VERBOSE, the pipeline's state changes from a vigil log
 * (the harness prints only a log's tail). */
static void show_pipeline_log(const char *path)
{
    const char *const roles[] = {"publisher:", "sequencer:", NULL};
    if (getenv("VIGIL_TEST_VERBOSE"))
        log_lines(path, roles, 1);
}

/* Polls until the log has at least `want` lines containing needle; returns
 * the milliseconds it took, or -1 after timeout_ms. */
static long long wait_log(const char *path, const char *needle, int want, int timeout_ms)
{
    long long t0 = h_now_ms();
    do {
        if (log_count(path, needle) >= want)
            return h_now_ms() - t0;
        h_sleep_ms(50);
    } while (h_now_ms() - t0 < timeout_ms);
    return -1;
}

/*
 * The pipeline's promise, checked end to end:
 *   - the publisher catches up (cursor = max(event_log.seq), outbox empty)
 *     within CAUGHT_UP_MS;
 *   - the stream holds exactly as many messages as event_log holds events,
 *     and read in stream order their Vigil-Seq headers are 1..n: no gap, no
 *     duplicate, no reordering;
 *   - message k has Nats-Msg-Id = event_log.event_id and subject =
 *     event_type of seq k;
 *   - every transaction a loader got a 2xx for has exactly one
 *     aml.transaction.ingested event (subject = its id).
 */
static void verify_stream(h_env *env, loader *const *loads, int nloads)
{
    long long t0 = h_now_ms(), caught = 0;
    while ((caught = h_db_count(env, "SELECT ((SELECT seq FROM cursors WHERE name = 'publisher')"
                                     " = (SELECT coalesce(max(seq), 0) FROM event_log)"
                                     " AND NOT EXISTS (SELECT 1 FROM outbox))::int")) != 1 &&
           h_now_ms() - t0 < CAUGHT_UP_MS)
        h_sleep_ms(100);
    if (caught != 1)
        fprintf(stderr,
                "publisher did not catch up in %d ms: cursor %lld, max seq %lld, outbox %lld\n",
                CAUGHT_UP_MS, cursor_seq(env), max_seq(env),
                db_count(env, "SELECT count(*) FROM outbox"));
    show_pipeline_log(env->vigil_log);
    assert_int_equal(caught, 1);
    fprintf(stderr, "publisher caught up %lld ms after the load ended\n", h_now_ms() - t0);

    PGresult *log = read_event_log(env);
    int n = PQntuples(log);
    assert_true(n > 0);

    natsConnection *nc = NULL;
    jsCtx *js = js_connect(env, &nc);
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    assert_int_equal(js_GetStreamInfo(&si, js, STREAM, NULL, &jerr), NATS_OK);
    uint64_t first = si->State.FirstSeq, last = si->State.LastSeq, msgs = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    fprintf(stderr, "event_log %d events; stream %s: %llu messages (stream seq %llu..%llu)\n", n,
            STREAM, (unsigned long long)msgs, (unsigned long long)first, (unsigned long long)last);
    assert_int_equal(msgs, (uint64_t)n);

    /* Read the whole stream, slot by slot, in stream order. */
    long long found = 0;
    int bad = 0;
    for (uint64_t sseq = first; msgs > 0 && sseq <= last; sseq++) {
        natsMsg *m = NULL;
        jerr = 0;
        natsStatus s = js_GetMsg(&m, js, STREAM, sseq, NULL, &jerr);
        if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
            continue; /* a deleted slot; the count below catches what is missing */
        assert_int_equal(s, NATS_OK);
        char why[400];
        if (check_msg(m, log, ++found, why, sizeof why) != 0 && bad++ < 5)
            fprintf(stderr, "stream seq %llu: %s\n", (unsigned long long)sseq, why);
        natsMsg_Destroy(m);
    }
    if (bad)
        fprintf(stderr, "%d of %lld stream messages do not match event_log\n", bad, found);
    assert_int_equal(found, n);
    assert_int_equal(bad, 0);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    PQclear(log);

    size_t nids;
    char *ids = accepted_ids(loads, nloads, &nids);
    fprintf(stderr, "%zu accepted transactions to find in event_log\n", nids);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM unnest($1::uuid[]) AS a(id) WHERE"
                                " (SELECT count(*) FROM event_log e WHERE e.event_type ="
                                " 'aml.transaction.ingested' AND e.subject = a.id::text) <> 1",
                                ids),
                     0);
    assert_int_equal(
        h_db_count(env, "SELECT count(DISTINCT id) FROM unnest($1::uuid[]) AS a(id)", ids),
        (long long)nids);
    free(ids);
}

static void teardown_ok(h_env *env)
{
    int failed = env->failed;
    h_teardown(env);
    assert_int_equal(failed, 0);
}

/* Restarts the env's vigil without its built-in consumers, so that no event
 * appears but those the test causes, and nobody reads the stream. Their
 * durable JetStream consumers, if the first start got to create any, go
 * with the stream, which is still empty and which the publisher creates
 * again. */
static void restart_without_consumers(h_env *env)
{
    const char *roles[] = {"VIGIL_ROLES=api,sequencer,publisher", NULL};
    assert_int_equal(h_vigil_stop(env, SIGTERM), 0);
    assert_int_equal(max_seq(env), 0);
    natsConnection *nc = NULL;
    jsCtx *js = js_connect(env, &nc);
    natsStatus s = js_DeleteStream(js, STREAM, NULL, NULL);
    assert_true(s == NATS_OK || s == NATS_NOT_FOUND);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    assert_int_equal(h_vigil_start(env, roles), 0);
}

/* ---- 1. NATS server restart ------------------------------------------------------ */

/* Kills (or stops) nats-server while transactions are ingested and keeps it
 * down for down_ms: the API keeps accepting, events wait in PostgreSQL, and
 * after the restart the stream holds all of them exactly once, from the
 * same vigil process. */
static void nats_restart_under_load(int sig, int down_ms)
{
    h_env *env = h_setup(1);
    assert_non_null(env);
    char customer[40];
    create_customer(env, "{\"full_name\": \"Restart Load\", \"country\": \"DE\"}", customer,
                    sizeof customer);
    pid_t vigil = env->vigil_pid;
    loader l;
    loader_start(&l, env, env->base_url, customer);
    expect_accepted(&l, 50);

    assert_int_equal(h_nats_stop(env, sig), 0);
    int before = atomic_load(&l.accepted);
    h_sleep_ms(down_ms);
    int during = atomic_load(&l.accepted) - before;
    long long behind = max_seq(env) - cursor_seq(env);
    assert_int_equal(h_nats_start(env), 0);
    expect_accepted(&l, 50);
    loader_stop(&l);
    fprintf(stderr, "%d transactions accepted while NATS was down; cursor %lld events behind\n",
            during, behind);

    assert_all_accepted(&l);
    assert_true(during > 0); /* ingest went on while NATS was down */
    assert_true(behind > 0); /* and its events waited in PostgreSQL */
    verify_stream(env, (loader *const[]){&l}, 1);
    assert_int_equal(env->vigil_pid, vigil);
    assert_int_equal(kill(vigil, 0), 0);
    loader_free(&l);
    teardown_ok(env);
}

static void nats_killed_under_load(void **state)
{
    (void)state;
    nats_restart_under_load(SIGKILL, 1000);
}

static void nats_stopped_under_load(void **state)
{
    (void)state;
    nats_restart_under_load(SIGTERM, 2000);
}

/* Removes a directory tree (nftw callback). */
static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* nats-server loses its store (the fsync-less power loss Jepsen found,
 * taken to the extreme: everything): the restarted stream is empty although
 * every event had been acknowledged. The publisher must notice and publish
 * all of event_log again. */
static void nats_store_lost(void **state)
{
    (void)state;
    h_env *env = h_setup(1);
    assert_non_null(env);
    char customer[40];
    create_customer(env, "{\"full_name\": \"Lost Store\", \"country\": \"DE\"}", customer,
                    sizeof customer);
    loader l;
    loader_start(&l, env, env->base_url, customer);
    expect_accepted(&l, 50);
    assert_true(cursor_seq(env) > 0);
    assert_int_equal(h_nats_stop(env, SIGKILL), 0);
    char store[H_PATH_SIZE + 8];
    snprintf(store, sizeof store, "%s/js", env->dir);
    assert_int_equal(nftw(store, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
    assert_int_equal(h_nats_start(env), 0);
    expect_accepted(&l, 50);
    loader_stop(&l);
    assert_all_accepted(&l);
    verify_stream(env, (loader *const[]){&l}, 1);
    assert_int_equal(log_count(env->vigil_log, "JetStream lost"), 1);
    loader_free(&l);
    teardown_ok(env);
}

/* The stream is purged while vigil is down (JetStream keeps the purged ids
 * in its duplicate window, and answers a re-send with a Duplicate ack for a
 * message it no longer holds). The publisher must not take those acks as
 * "stored": every event is back in the stream, once, in order, after the
 * window (2 s here) has passed. A purge while vigil runs, followed by new
 * events, leaves a hole at the head that only `vigil reconcile` can fill;
 * the publisher reports it (test_reconcile covers the repair). */
static void stream_purged(void **state)
{
    (void)state;
    h_env *env = h_setup(1);
    assert_non_null(env);
    const char *cfg[] = {"VIGIL_ROLES=api,sequencer,publisher", "VIGIL_STREAM_DUPLICATE_WINDOW=2",
                         NULL};
    assert_int_equal(h_vigil_stop(env, SIGTERM), 0);
    natsConnection *nc = NULL;
    jsCtx *js = js_connect(env, &nc);
    natsStatus s = js_DeleteStream(js, STREAM, NULL, NULL);
    assert_true(s == NATS_OK || s == NATS_NOT_FOUND);
    assert_int_equal(h_vigil_start(env, cfg), 0);
    char customer[40];
    create_customer(env, "{\"full_name\": \"Purged Stream\", \"country\": \"DE\"}", customer,
                    sizeof customer);
    loader l;
    loader_start(&l, env, env->base_url, customer);
    expect_accepted(&l, 50);
    loader_stop(&l);
    for (long long t0 = h_now_ms(); cursor_seq(env) < max_seq(env) && h_now_ms() - t0 < 10000;)
        h_sleep_ms(50);
    assert_int_equal(cursor_seq(env), max_seq(env));
    assert_int_equal(h_vigil_stop(env, SIGTERM), 0);
    assert_int_equal(js_PurgeStream(js, STREAM, NULL, NULL), NATS_OK);
    assert_int_equal(h_js_stream_msgs(env, STREAM), 0);
    assert_int_equal(h_vigil_start(env, cfg), 0);
    /* the cursor says "all published" until the publisher looks: wait for the stream */
    for (long long t0 = h_now_ms();
         h_js_stream_msgs(env, STREAM) < max_seq(env) && h_now_ms() - t0 < CAUGHT_UP_MS;)
        h_sleep_ms(100);
    verify_stream(env, (loader *const[]){&l}, 1);
    assert_int_equal(log_count(env->vigil_log, "JetStream lost"), 1);
    assert_true(log_count(env->vigil_log, "duplicate window") >= 1);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    loader_free(&l);
    teardown_ok(env);
}

/* ---- 2. nobody subscribed (and the seed's "subscriber crashes") ------------------ */

typedef struct fetched {
    long long seq[4096]; /* Vigil-Seq of each message, in delivery order */
    int n;
    int mismatched;  /* messages that do not match their event_log row */
    int redelivered; /* messages with NumDelivered > 1 */
} fetched;

/* Fetches until `want` messages arrived or none came for 2 s, checking each
 * against event_log; acks those with seq <= ack_through. */
static void fetch_all(natsSubscription *sub, PGresult *log, int want, long long ack_through,
                      fetched *f)
{
    memset(f, 0, sizeof *f);
    while (f->n < want) {
        natsMsgList list = {0};
        natsStatus s = natsSubscription_Fetch(&list, sub, 256, 2000, NULL);
        if (s == NATS_TIMEOUT)
            break;
        assert_int_equal(s, NATS_OK);
        for (int i = 0; i < list.Count; i++) {
            natsMsg *m = list.Msgs[i];
            long long seq = atoll(header(m, "Vigil-Seq"));
            char why[400];
            if (check_msg(m, log, seq, why, sizeof why) != 0 && f->mismatched++ < 5)
                fprintf(stderr, "consumer: %s\n", why);
            jsMsgMetaData *meta = NULL;
            if (natsMsg_GetMetaData(&meta, m) == NATS_OK && meta->NumDelivered > 1)
                f->redelivered++;
            jsMsgMetaData_Destroy(meta);
            if (f->n < (int)(sizeof f->seq / sizeof f->seq[0]))
                f->seq[f->n] = seq;
            f->n++;
            if (seq <= ack_through)
                assert_int_equal(natsMsg_AckSync(m, NULL, NULL), NATS_OK);
        }
        natsMsgList_Destroy(&list);
    }
}

/* f's messages carry seqs first, first+1, ...: in order, no gap, no repeat,
 * and each matches its event_log row. */
static void assert_consecutive(const fetched *f, long long first)
{
    int out_of_order = 0;
    for (int i = 0; i < f->n && i < (int)(sizeof f->seq / sizeof f->seq[0]); i++)
        out_of_order += f->seq[i] != first + i;
    assert_int_equal(out_of_order, 0);
    assert_int_equal(f->mismatched, 0);
}

/* A pull subscription bound to the existing durable consumer. */
static natsSubscription *bind_consumer(jsCtx *js, const char *durable)
{
    natsSubscription *sub = NULL;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = STREAM;
    so.Consumer = durable;
    jsErrCode jerr = 0;
    natsStatus s = js_PullSubscribe(&sub, js, "aml.>", durable, NULL, &so, &jerr);
    if (s != NATS_OK)
        fprintf(stderr, "js_PullSubscribe: %s (JetStream error %d)\n", natsStatus_GetText(s),
                (int)jerr);
    assert_int_equal(s, NATS_OK);
    return sub;
}

/* Events published while nobody listens stay in the stream: a durable pull
 * consumer created afterwards receives all of them in seq order, and when it
 * crashes with messages unacked, those are delivered again. */
static void nobody_subscribed(void **state)
{
    (void)state;
    h_env *env = h_setup(1);
    assert_non_null(env);
    restart_without_consumers(env);
    natsConnection *nc = NULL;
    jsCtx *js = js_connect(env, &nc);
    char customer[40];
    create_customer(env, "{\"full_name\": \"Nobody Listens\", \"country\": \"FR\"}", customer,
                    sizeof customer);
    loader l;
    loader_start(&l, env, env->base_url, customer);
    expect_accepted(&l, 100);
    loader_stop(&l);
    assert_all_accepted(&l);
    verify_stream(env, (loader *const[]){&l}, 1);

    jsStreamInfo *si = NULL;
    assert_int_equal(js_GetStreamInfo(&si, js, STREAM, NULL, NULL), NATS_OK);
    int64_t consumers = si->State.Consumers;
    jsStreamInfo_Destroy(si);
    assert_int_equal(consumers, 0); /* everything was published with no one listening */

    /* A consumer that arrives afterwards: durable, pull, from the start,
     * explicit acks with a short ack wait so that the crash below is
     * redelivered quickly. */
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = "it-audit";
    cc.DeliverPolicy = js_DeliverAll;
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = 1000LL * 1000 * 1000;
    assert_int_equal(js_AddConsumer(NULL, js, STREAM, &cc, NULL, NULL), NATS_OK);
    PGresult *log = read_event_log(env);
    int n = PQntuples(log);
    assert_true(n >= 100 && n < 4096);
    long long half = n / 2;

    /* It receives every event in seq order, acks the first half, and
     * crashes: the subscription vanishes without acking the rest. */
    static fetched f;
    natsSubscription *sub = bind_consumer(js, "it-audit");
    fetch_all(sub, log, n, half, &f);
    fprintf(stderr, "late consumer received %d of %d events\n", f.n, n);
    assert_int_equal(f.n, n);
    assert_consecutive(&f, 1);
    assert_int_equal(f.redelivered, 0);
    natsSubscription_Destroy(sub);

    /* Restarted after the ack wait, it gets exactly the unacked half again,
     * in order, marked as redeliveries; then nothing more. */
    h_sleep_ms(1500);
    sub = bind_consumer(js, "it-audit");
    fetch_all(sub, log, (int)(n - half), n, &f);
    fprintf(stderr, "after the crash: %d redelivered of %d received\n", f.redelivered, f.n);
    assert_int_equal(f.n, n - half);
    assert_consecutive(&f, half + 1);
    assert_int_equal(f.redelivered, n - half);
    fetch_all(sub, log, 1, n, &f);
    assert_int_equal(f.n, 0);
    jsConsumerInfo *ci = NULL;
    assert_int_equal(js_GetConsumerInfo(&ci, js, STREAM, "it-audit", NULL, NULL), NATS_OK);
    int64_t ack_pending = ci->NumAckPending;
    uint64_t pending = ci->NumPending;
    jsConsumerInfo_Destroy(ci);
    assert_int_equal(ack_pending, 0);
    assert_int_equal(pending, 0);
    natsSubscription_Destroy(sub);

    PQclear(log);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    loader_free(&l);
    teardown_ok(env);
}

/* ---- 3. network faults between vigil and NATS --------------------------------- */

/* vigil reaches NATS only through a proxy that turns slow, then silent
 * (longer than the ack timeout), then resets every connection, then heals,
 * while transactions are ingested. */
static void network_faults(void **state)
{
    (void)state;
    h_env *env = h_setup(1);
    assert_non_null(env);
    h_proxy *px = h_proxy_start(env->nats_port);
    assert_non_null(px);
    assert_int_equal(h_vigil_stop(env, SIGTERM), 0);
    char nats_url[96];
    snprintf(nats_url, sizeof nats_url, "VIGIL_NATS_URL=nats://127.0.0.1:%d", h_proxy_port(px));
    const char *extra[] = {nats_url, "VIGIL_PUBLISH_ACK_TIMEOUT_MS=1000", NULL};
    assert_int_equal(h_vigil_start(env, extra), 0);
    char customer[40];
    create_customer(env, "{\"full_name\": \"Flaky Network\", \"country\": \"NL\"}", customer,
                    sizeof customer);

    loader l;
    loader_start(&l, env, env->base_url, customer);
    expect_accepted(&l, 50);
    long long pass_cursor = cursor_seq(env);

    h_proxy_set_mode(px, H_PROXY_DELAY, 200);
    h_sleep_ms(2000);
    long long delay_cursor = cursor_seq(env);

    h_proxy_set_mode(px, H_PROXY_BLACKHOLE, 0);
    h_sleep_ms(1000);
    long long hole_cursor1 = cursor_seq(env);
    h_sleep_ms(2000); /* twice the ack timeout more */
    long long hole_cursor2 = cursor_seq(env), hole_max = max_seq(env);

    h_proxy_set_mode(px, H_PROXY_RESET, 0);
    h_sleep_ms(1500);
    long long reset_cursor = cursor_seq(env), reset_max = max_seq(env);

    h_proxy_set_mode(px, H_PROXY_PASS, 0);
    expect_accepted(&l, 50);
    loader_stop(&l);
    fprintf(stderr,
            "cursor: %lld after pass, %lld after delay, %lld/%lld in the blackhole (max seq "
            "%lld), %lld in reset (max seq %lld); %ld proxy connections\n",
            pass_cursor, delay_cursor, hole_cursor1, hole_cursor2, hole_max, reset_cursor,
            reset_max, h_proxy_accepted(px));

    assert_all_accepted(&l);
    assert_true(pass_cursor > 0);                 /* published through the proxy */
    assert_true(delay_cursor > pass_cursor);      /* and through a slow link */
    assert_int_equal(hole_cursor2, hole_cursor1); /* nothing acked by a silent peer */
    assert_true(hole_max > hole_cursor2);         /* events waited in PostgreSQL */
    assert_true(reset_max > reset_cursor);
    assert_true(h_proxy_accepted(px) >= 2); /* the reset forced a reconnect */
    verify_stream(env, (loader *const[]){&l}, 1);

    /* The outage is visible to an operator, once per state change rather
     * than once per event. */
    const char *const outage[] = {"unreachable", "no acknowledgment", NULL};
    int outage_lines = log_lines(env->vigil_log, outage, 0);
    int timeouts = log_count(env->vigil_log, "no acknowledgment");
    int healthy = log_count(env->vigil_log, "publisher: healthy again");
    fprintf(stderr, "vigil log: %d outage lines (%d ack timeouts), %d recoveries\n", outage_lines,
            timeouts, healthy);
    assert_true(timeouts >= 1);
    assert_in_range(outage_lines, 1, 10);
    assert_true(healthy >= 1);

    loader_free(&l);
    teardown_ok(env);
    h_proxy_stop(px);
}

/* vigil starts while NATS is down behind something that accepts TCP and
 * then hangs up (a proxy, a load balancer, a Kubernetes Service): the
 * publisher's first connect fails after the TCP handshake, which libnats 3.4
 * answers by closing the connection for good. Once NATS is up, everything
 * ingested meanwhile must still reach the stream. */
static void nats_down_at_start(void **state)
{
    (void)state;
    h_env *env = h_setup(1);
    assert_non_null(env);
    h_proxy *px = h_proxy_start(env->nats_port);
    assert_non_null(px);
    assert_int_equal(h_vigil_stop(env, SIGTERM), 0);
    assert_int_equal(h_nats_stop(env, SIGTERM), 0);
    char nats_url[96];
    snprintf(nats_url, sizeof nats_url, "VIGIL_NATS_URL=nats://127.0.0.1:%d", h_proxy_port(px));
    const char *extra[] = {nats_url, NULL};
    assert_int_equal(h_vigil_start(env, extra), 0);
    char customer[40];
    create_customer(env, "{\"full_name\": \"Early Bird\", \"country\": \"PL\"}", customer,
                    sizeof customer);
    loader l;
    loader_start(&l, env, env->base_url, customer);
    expect_accepted(&l, 50);
    long long cursor = cursor_seq(env), waiting = max_seq(env);
    assert_true(h_proxy_accepted(px) >= 1); /* it did reach the front */
    assert_int_equal(h_nats_start(env), 0);
    expect_accepted(&l, 50);
    loader_stop(&l);
    fprintf(stderr, "while NATS was down: cursor %lld, %lld events waiting\n", cursor, waiting);
    assert_int_equal(cursor, 0);
    assert_true(waiting > 0);
    assert_all_accepted(&l);
    verify_stream(env, (loader *const[]){&l}, 1);
    loader_free(&l);
    teardown_ok(env);
    h_proxy_stop(px);
}

/* ---- 4. the seed's demonstration ------------------------------------------------ */

/* "Stop NATS, create a customer: customer created, but the event never
 * published, no error shown." Here the event is published once NATS is back,
 * and a subscriber on aml.customer.created receives it. */
static void seed_demonstration(void **state)
{
    (void)state;
    h_env *env = h_setup(1);
    assert_non_null(env);
    assert_int_equal(h_nats_stop(env, SIGTERM), 0);
    char id[40];
    create_customer(env, "{\"full_name\": \"Test User\", \"email\": \"test@example.com\"}", id,
                    sizeof id);

    /* Recorded and sequenced, not published. */
    long long seq = 0, t0 = h_now_ms();
    while ((seq = h_db_count(env,
                             "SELECT coalesce(max(seq), 0) FROM event_log WHERE event_type ="
                             " 'aml.customer.created' AND subject = $1",
                             id)) == 0 &&
           h_now_ms() - t0 < 5000)
        h_sleep_ms(50);
    assert_true(seq > 0);
    assert_true(cursor_seq(env) < seq);
    char seqtxt[32];
    snprintf(seqtxt, sizeof seqtxt, "%lld", seq);
    char *event_id =
        h_db_text(env, "SELECT event_id::text FROM event_log WHERE seq = $1::bigint", seqtxt);
    assert_non_null(event_id);

    assert_int_equal(h_nats_start(env), 0);
    t0 = h_now_ms();
    natsConnection *nc = NULL;
    jsCtx *js = js_connect(env, &nc);
    natsSubscription *sub = NULL;
    int found = 0, others = 0;
    char msg_id[64] = "", vigil_seq[32] = "", subject[64] = "";
    while (!found && h_now_ms() - t0 < 10000) {
        if (!sub) {
            jsSubOptions so;
            jsSubOptions_Init(&so);
            so.Stream = STREAM;
            so.Config.DeliverPolicy = js_DeliverAll;
            so.Config.AckPolicy = js_AckExplicit;
            if (js_PullSubscribe(&sub, js, "aml.customer.created", "it-customers", NULL, &so,
                                 NULL) != NATS_OK) {
                sub = NULL; /* JetStream still starting */
                h_sleep_ms(100);
                continue;
            }
        }
        natsMsgList list = {0};
        if (natsSubscription_Fetch(&list, sub, 16, 1000, NULL) != NATS_OK)
            continue;
        for (int i = 0; i < list.Count; i++) {
            natsMsg *m = list.Msgs[i];
            json_t *ce = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
            if (json_is_string(json_object_get(ce, "subject")) &&
                strcmp(json_string_value(json_object_get(ce, "subject")), id) == 0) {
                found = 1;
                snprintf(msg_id, sizeof msg_id, "%s", header(m, "Nats-Msg-Id"));
                snprintf(vigil_seq, sizeof vigil_seq, "%s", header(m, "Vigil-Seq"));
                snprintf(subject, sizeof subject, "%s", natsMsg_GetSubject(m));
            } else {
                others++;
            }
            json_decref(ce);
            natsMsg_AckSync(m, NULL, NULL);
        }
        natsMsgList_Destroy(&list);
    }
    long long took = h_now_ms() - t0;
    fprintf(stderr, "aml.customer.created for %s received %lld ms after NATS came back\n", id,
            took);
    assert_true(found);
    assert_true(took <= 10000);
    assert_int_equal(others, 0); /* h_setup creates no customers: this is the only one */
    assert_string_equal(subject, "aml.customer.created");
    assert_string_equal(msg_id, event_id);
    assert_int_equal(atoll(vigil_seq), seq);
    free(event_id);
    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);

    verify_stream(env, NULL, 0);
    teardown_ok(env);
}

/* ---- 5. vigil dies between a PubAck and the cursor commit ----------------------- */

/* Waits (up to 15 s) until vigil `pid` listens on port and answers /healthz with 200. */
static void wait_healthy(h_env *env, pid_t pid, const char *base_url, int port)
{
    assert_int_equal(h_wait_listener(pid, port, 15000), 0);
    long long t0 = h_now_ms();
    long status = -1;
    while (status != 200 && h_now_ms() - t0 < 15000) {
        h_resp r;
        char url[192];
        snprintf(url, sizeof url, "%s/healthz", base_url);
        status = h_http(env, "GET", url, NULL, NULL, 0, NULL, &r) == 0 ? r.status : -1;
        h_resp_free(&r);
        if (status != 200)
            h_sleep_ms(50);
    }
    assert_int_equal(status, 200);
}

/* One POST of n transactions for customer: one commit, so their events
 * reach the publisher together. Returns the HTTP status, or -1 without an
 * answer; on 201 the ids answered go to *into. */
static long post_batch(h_env *env, const char *customer, const char *prefix, int n, loader *into)
{
    char body[16384], *p = body;
    p += sprintf(p, "{\"transactions\": [");
    for (int i = 0; i < n; i++)
        p += sprintf(p,
                     "%s{\"external_id\": \"%s-%d\", \"customer_id\": \"%s\", \"amount\":"
                     " \"99.00\", \"currency\": \"EUR\", \"direction\": \"in\", \"channel\":"
                     " \"wire\", \"occurred_at\": \"2024-03-01T12:00:00Z\"}",
                     i ? ", " : "", prefix, i, customer);
    sprintf(p, "]}");
    h_resp r;
    long status = h_post(env, env->admin_key, body, &r, "/transactions") == 0 ? r.status : -1;
    if (status == 201) {
        size_t i;
        json_t *item;
        json_array_foreach(json_object_get(r.json, "items"), i, item)
            loader_record(into, json_string_value(json_object_get(item, "id")));
    }
    h_resp_free(&r);
    return status;
}

/* An env whose vigil runs without consumers (restart_without_consumers),
 * so that only the test's own requests make events, and one customer
 * (`name`) for them. */
static h_env *setup_own_events(const char *name, char *customer, size_t customer_sz)
{
    h_env *env = h_setup(1);
    assert_non_null(env);
    restart_without_consumers(env);
    char body[200];
    snprintf(body, sizeof body, "{\"full_name\": \"%s\", \"country\": \"AT\"}", name);
    create_customer(env, body, customer, customer_sz);
    return env;
}

/* Stops env's vigil and starts, in its place (same address, without
 * consumers), one with the fault `fault` (VIGIL_FAULT=...); its log path
 * goes to log_out. Returns its pid once it is healthy. */
static pid_t fault_vigil(h_env *env, const char *fault, char *log_out, size_t log_outsz)
{
    assert_int_equal(h_vigil_stop(env, SIGTERM), 0);
    const char *extra[] = {fault, "VIGIL_ROLES=api,sequencer,publisher", NULL};
    const char *serve[] = {"serve", NULL};
    pid_t pid = h_vigil_spawn(env, extra, serve, log_out, log_outsz);
    assert_true(pid > 0);
    wait_healthy(env, pid, env->base_url, env->http_port);
    return pid;
}

static void crash_between_puback_and_cursor(void **state)
{
    (void)state;
    /* The fault vigil's first window is the batch below. */
    char customer[40];
    h_env *env = setup_own_events("Crash Window", customer, sizeof customer);
    const char *roles[] = {"VIGIL_ROLES=api,sequencer,publisher", NULL};
    loader l1, l2, batch = {0};
    loader_start(&l1, env, env->base_url, customer);
    expect_accepted(&l1, 20);
    loader_stop(&l1);
    assert_all_accepted(&l1);
    verify_stream(env, (loader *const[]){&l1}, 1); /* all published: the next window is new */
    long long before = cursor_seq(env);

    /* A vigil that exits right after JetStream acknowledges a window. */
    char fault_log[H_PATH_SIZE];
    pid_t pid =
        fault_vigil(env, "VIGIL_FAULT=publisher_crash_before_cursor", fault_log, sizeof fault_log);

    /* One request, one commit: 20 transactions whose events form a window.
     * The crash races the response; only an answered request counts as
     * accepted, the DB check below covers the rest. */
    long status = post_batch(env, customer, "crash", 20, &batch);
    fprintf(stderr, "batch POST: status %ld, %zu ids\n", status, batch.nids);
    int code = h_proc_stop(pid, 0, 15000);
    long long after = cursor_seq(env), in_log = max_seq(env);
    long long in_stream = h_js_stream_msgs(env, STREAM);
    fprintf(stderr, "fault vigil exited %d: cursor %lld -> %lld, event_log %lld, stream %lld\n",
            code, before, after, in_log, in_stream);
    assert_int_equal(code, 99);
    assert_int_equal(log_count(fault_log, "fault injection"), 1);
    assert_int_equal(db_count(env, "SELECT count(*) FROM transactions"
                                   " WHERE external_id LIKE 'crash-%'"),
                     20);
    /* The crash window: JetStream holds events the cursor does not cover. */
    assert_int_equal(after, before);
    assert_true(in_stream > after);
    assert_true(in_log >= in_stream);

    /* A normal vigil takes over from the cursor: it must notice the
     * acknowledged tail and not publish it a second time. */
    assert_int_equal(h_vigil_start(env, roles), 0);
    loader_start(&l2, env, env->base_url, customer);
    expect_accepted(&l2, 20);
    loader_stop(&l2);
    assert_all_accepted(&l2);
    verify_stream(env, (loader *const[]){&l1, &batch, &l2}, 3);
    assert_int_equal(log_count(env->vigil_log, "publishing them again"), 0);

    loader_free(&l1);
    loader_free(&l2);
    loader_free(&batch);
    teardown_ok(env);
}

/* The publisher's windows by acknowledgment, from one /metrics answer. */
static void window_counts(h_env *env, double *chained, double *each, double *errors)
{
    h_resp r;
    assert_int_equal(h_get(env, env->admin_key, &r, "/metrics"), 0);
    assert_int_equal(r.status, 200);
    *chained = h_metric_in(r.body, "vigil_publish_windows_total{acks=\"window\"}");
    *each = h_metric_in(r.body, "vigil_publish_windows_total{acks=\"each\"}");
    *errors = h_metric_in(r.body, "vigil_publish_errors_total");
    h_resp_free(&r);
}

/* ---- 5b. a message of a window lost on the way --------------------------------- */

/* By default JetStream acknowledges only a window's last message; the
 * others go without a reply subject and the chained expectations make that
 * one ack stand for all. A vigil that loses one message in the middle of a
 * window (VIGIL_FAULT=publisher_skip_one: it is never sent) must not take
 * the window's last ack, or its refusal, for more than it is: it finds from
 * the stream's tail how far the window got and publishes the rest, each
 * event once and in order, acknowledging each event until a window goes
 * through. Then, with VIGIL_PUBLISH_ACK_EACH=1, every window is
 * acknowledged per event. */
static void window_message_lost(void **state)
{
    (void)state;
    char customer[40];
    h_env *env = setup_own_events("Lost Message", customer, sizeof customer);
    const char *roles[] = {"VIGIL_ROLES=api,sequencer,publisher", NULL};
    loader first = {0}, lost = {0}, after = {0}, each = {0};
    assert_int_equal(post_batch(env, customer, "chain-a", 20, &first), 201);
    verify_stream(env, (loader *const[]){&first}, 1);
    double chained, acked_each, errors;
    window_counts(env, &chained, &acked_each, &errors);
    fprintf(stderr, "windows: %.0f with one ack, %.0f acked per event, %.0f errors\n", chained,
            acked_each, errors);
    assert_true(chained >= 1);
    assert_true(acked_each == 0);
    assert_true(errors == 0);

    /* A vigil that drops the middle message of its first window of 3 or more. */
    char fault_log[H_PATH_SIZE];
    pid_t pid = fault_vigil(env, "VIGIL_FAULT=publisher_skip_one", fault_log, sizeof fault_log);
    assert_int_equal(post_batch(env, customer, "chain-b", 20, &lost), 201);
    verify_stream(env, (loader *const[]){&first, &lost}, 2);
    window_counts(env, &chained, &acked_each, &errors);
    fprintf(stderr, "fault vigil: windows %.0f with one ack, %.0f acked per event, %.0f errors\n",
            chained, acked_each, errors);
    show_pipeline_log(fault_log);
    assert_int_equal(log_count(fault_log, "fault injection"), 1);
    /* JetStream refused the messages after the gap, the window's last among
     * them; the window failed, and the next was acknowledged per event. */
    assert_true(log_count(fault_log, "JetStream refused seq") >= 1);
    assert_true(errors >= 1);
    assert_true(acked_each >= 1);
    assert_int_equal(log_count(fault_log, "publishing them again"), 0);
    /* Later windows have one ack again. */
    double chained_before = chained;
    assert_int_equal(post_batch(env, customer, "chain-c", 20, &after), 201);
    verify_stream(env, (loader *const[]){&first, &lost, &after}, 3);
    window_counts(env, &chained, &acked_each, &errors);
    assert_true(chained > chained_before);
    assert_int_equal(h_proc_stop(pid, SIGTERM, 15000), 0);

    /* VIGIL_PUBLISH_ACK_EACH=1: an ack per event, no window with one ack. */
    const char *each_env[] = {"VIGIL_PUBLISH_ACK_EACH=1", roles[0], NULL};
    assert_int_equal(h_vigil_start(env, each_env), 0);
    assert_int_equal(post_batch(env, customer, "chain-d", 20, &each), 201);
    verify_stream(env, (loader *const[]){&first, &lost, &after, &each}, 4);
    window_counts(env, &chained, &acked_each, &errors);
    fprintf(stderr, "VIGIL_PUBLISH_ACK_EACH=1: windows %.0f with one ack, %.0f per event\n",
            chained, acked_each);
    assert_true(chained == 0);
    assert_true(acked_each >= 1);
    assert_true(errors == 0);

    loader_free(&first);
    loader_free(&lost);
    loader_free(&after);
    loader_free(&each);
    teardown_ok(env);
}

/* ---- 6. two instances, one leader, failover ------------------------------------- */

/* Backends holding the session advisory lock `key` (bigint keys appear in
 * pg_locks split into classid = high and objid = low 32 bits). */
#define LOCK_HOLDERS                                                                               \
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"       \
    " AND ((classid::bigint << 32) | objid::bigint) = $1::bigint"
#define LOCK_HOLDER_PID                                                                            \
    "SELECT coalesce(min(pid), 0) FROM pg_locks WHERE locktype = 'advisory' AND granted"           \
    " AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = $1::bigint"

static void two_instances_failover(void **state)
{
    (void)state;
    h_env *env = h_setup(1);
    assert_non_null(env);
    const char *retry[] = {"VIGIL_LEADER_RETRY_MS=200", NULL};
    assert_int_equal(h_vigil_stop(env, SIGTERM), 0);
    assert_int_equal(h_vigil_start(env, retry), 0);
    char a_log[H_PATH_SIZE];
    snprintf(a_log, sizeof a_log, "%s", env->vigil_log);
    assert_true(wait_log(a_log, "sequencer: leading", 1, 5000) >= 0);
    assert_true(wait_log(a_log, "publisher: leading", 1, 5000) >= 0);

    int b_port = h_free_port();
    assert_true(b_port > 0);
    char b_addr[64], b_url[64], b_log[H_PATH_SIZE];
    snprintf(b_addr, sizeof b_addr, "VIGIL_HTTP_ADDR=127.0.0.1:%d", b_port);
    snprintf(b_url, sizeof b_url, "http://127.0.0.1:%d", b_port);
    const char *b_env[] = {"VIGIL_LEADER_RETRY_MS=200", b_addr, NULL};
    const char *serve[] = {"serve", NULL};
    pid_t b = h_vigil_spawn(env, b_env, serve, b_log, sizeof b_log);
    assert_true(b > 0);
    wait_healthy(env, b, b_url, b_port);
    assert_true(wait_log(b_log, "sequencer: another instance leads", 1, 5000) >= 0);
    assert_true(wait_log(b_log, "publisher: another instance leads", 1, 5000) >= 0);

    /* One leader per role: one backend holds each lock, and it is A's. */
    assert_int_equal(h_db_count(env, LOCK_HOLDERS, LOCK_SEQUENCER), 1);
    assert_int_equal(h_db_count(env, LOCK_HOLDERS, LOCK_PUBLISHER), 1);
    long long seq_holder = h_db_count(env, LOCK_HOLDER_PID, LOCK_SEQUENCER);
    long long pub_holder = h_db_count(env, LOCK_HOLDER_PID, LOCK_PUBLISHER);
    assert_int_equal(log_count(b_log, "sequencer: leading"), 0);
    assert_int_equal(log_count(b_log, "publisher: leading"), 0);

    char customer[40];
    create_customer(env, "{\"full_name\": \"Two Doors\", \"country\": \"BE\"}", customer,
                    sizeof customer);
    loader la, lb;
    loader_start(&la, env, env->base_url, customer);
    loader_start(&lb, env, b_url, customer);
    expect_accepted(&la, 50);
    expect_accepted(&lb, 50);
    /* Stop sending to A (a load balancer would), then kill it mid-stream. */
    loader_stop(&la);
    long long killed = h_now_ms();
    assert_int_equal(h_vigil_stop(env, SIGKILL), 137);
    int seq_took_over = wait_log(b_log, "sequencer: leading", 1, 5000) >= 0;
    long long seq_ms = h_now_ms() - killed;
    int pub_took_over = wait_log(b_log, "publisher: leading", 1, 5000) >= 0;
    long long pub_ms = h_now_ms() - killed;
    fprintf(stderr,
            "B leads the sequencer within %lld ms and the publisher within %lld ms of A's death\n",
            seq_ms, pub_ms);
    assert_true(seq_took_over);
    assert_true(pub_took_over);
    assert_int_equal(h_db_count(env, LOCK_HOLDERS, LOCK_SEQUENCER), 1);
    assert_int_equal(h_db_count(env, LOCK_HOLDERS, LOCK_PUBLISHER), 1);
    assert_int_not_equal(h_db_count(env, LOCK_HOLDER_PID, LOCK_SEQUENCER), seq_holder);
    assert_int_not_equal(h_db_count(env, LOCK_HOLDER_PID, LOCK_PUBLISHER), pub_holder);

    expect_accepted(&lb, 50);
    loader_stop(&lb);
    assert_all_accepted(&la);
    assert_all_accepted(&lb);
    verify_stream(env, (loader *const[]){&la, &lb}, 2);
    assert_int_equal(h_db_count(env, "SELECT (count(*) = max(seq))::int FROM event_log"), 1);
    assert_int_equal(log_count(b_log, "sequencer: leading"), 1);
    assert_int_equal(log_count(b_log, "publisher: leading"), 1);

    assert_int_equal(h_proc_stop(b, SIGTERM, 15000), 0);
    loader_free(&la);
    loader_free(&lb);
    teardown_ok(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nats_killed_under_load), cmocka_unit_test(nats_stopped_under_load),
        cmocka_unit_test(nats_store_lost),        cmocka_unit_test(nobody_subscribed),
        cmocka_unit_test(network_faults),         cmocka_unit_test(nats_down_at_start),
        cmocka_unit_test(seed_demonstration),     cmocka_unit_test(crash_between_puback_and_cursor),
        cmocka_unit_test(two_instances_failover), cmocka_unit_test(stream_purged),
        cmocka_unit_test(window_message_lost),
    };
    if (getenv("PIPELINE_TEST"))
        cmocka_set_test_filter(getenv("PIPELINE_TEST"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
