/*
 * bench.c — Vigil against this machine's limits (issue 5).
 *
 * Every benchmark starts its own PostgreSQL 15 (with fsync, synchronous_commit
 * and full_page_writes ON: default durability, unlike the test harness),
 * nats-server with JetStream and the real `vigil` binary through the
 * integration harness, measures Vigil and, in the same run against the same
 * servers, a reference that does the bare minimum of the same work. Each is
 * measured BENCH_RUNS times (default 3) and the median is reported:
 *
 *   1  batch ingest: 1,000 tx per POST /transactions, 2 client threads, all
 *      rules active, every role running; vs. 1,000-row INSERTs into a bare
 *      table of the same column types (2 libpq threads).
 *   2  single ingest: 1 tx per POST, 32 keep-alive connections; tx/s and p99
 *      vs. pgbench single-row INSERT (autocommit), 8 clients.
 *   3  publisher: drain N sequenced events from event_log to JetStream vs. a
 *      raw js_PublishMsgAsync of the same bodies with Nats-Msg-Id.
 *   4  end-to-end latency at a steady 1,000 tx/s: HTTP commit -> event received
 *      by a JetStream consumer; p50 and p99.
 *   5  SSE fan-out: 1,000 `/events/stream` clients (raw sockets, epoll threads
 *      in this process) while single POSTs arrive at 100/s; p50/p99/max from
 *      the POST's 2xx to each client, and every client gets every event once,
 *      in order, with the same bytes.
 *   6  the seed's publish_event (connect, fire-and-forget publish, drain per
 *      event) in C vs. Vigil's publisher, with NATS stopped for a while: events
 *      each loses and the throughput ratio.
 *   7  peak RSS (VmHWM) of `vigil serve` after benchmark 1.
 *   8  cost per event as event_log grows: a fixed batch-ingest workload
 *      (ingest + sequence + publish until the publish lag is 0) and the
 *      sequencer's time per event, on the log as it starts, then grown to 1M
 *      and 10M rows (hash-chained history written by COPY); pg_stat_statements
 *      per statement and EXPLAIN (ANALYZE, BUFFERS) of the hot queries at each
 *      size go into the report.
 *
 * Usage: bench [--only N] [--out FILE]. BENCH_RUNS, BENCH_SECONDS (per timed
 * load run, default 10), BENCH_EVENTS (benchmark 3, default 500000),
 * BENCH_HISTORY (benchmark 8's sizes, default "0,1000000,10000000"),
 * BENCH_HISTORY_TX (its transactions per run, default 10000), BENCH_SSE_RATE
 * (benchmark 5's POSTs per second, default 100), BENCH_E2E_RATE (benchmark
 * 4's transactions per second, default 1000; any other rate is a labelled
 * variant that never meets the target), BENCH_E2E_SENDERS (its open-loop
 * sender threads, default 64) and BENCH_SYNC_COMMIT=off (a
 * labelled variant) tune it. Prints one table and
 * writes it, with the machine and the command, to FILE.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strcasestr, timegm */
#endif
#include "harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define MAX_RUNS     9
#define MAX_RESULTS  32
#define N_CUSTOMERS  1000
#define BATCH        1000
#define BATCH_CLIENT 2
#define SINGLE_CONNS 32
#define PGBENCH      "/usr/lib/postgresql/15/bin/pgbench"

typedef struct result {
    char id[8];
    char name[64];
    double value; /* median of the runs */
    char unit[16];
    double reference; /* median reference, or < 0 when none */
    char ref_name[64];
    char target[48];
    int pass; /* 1 met, 0 missed */
    char note[2048];
} result;

static result results[MAX_RESULTS];
static int nresults;
static int runs = 3;
static int seconds = 10;
static long n_events = 500000; /* the issue: "drain 500,000 sequenced events" */
static const char *sync_commit = "on";

/* ---- small helpers ------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static result *add_result(const char *id, const char *name, const char *unit)
{
    result *r = &results[nresults++];
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", id);
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->unit, sizeof r->unit, "%s", unit);
    r->reference = -1;
    return r;
}

/* A result whose target is a bound on its value, op "<=" or ">=": the target
 * reads "OP BOUND UNIT" and pass says whether value meets it. */
static result *add_bounded(const char *id, const char *name, const char *unit, double value,
                           const char *op, double bound)
{
    result *r = add_result(id, name, unit);
    r->value = value;
    snprintf(r->target, sizeof r->target, "%s %g %s", op, bound, unit);
    r->pass = op[0] == '<' ? value <= bound : value >= bound;
    return r;
}

static void runs_str(char *out, size_t outsz, const double *v, int n, const char *fmt)
{
    size_t off = 0;
    out[0] = '\0';
    for (int i = 0; i < n && off < outsz; i++) {
        off += (size_t)snprintf(out + off, outsz - off, i ? ", " : "");
        off += (size_t)snprintf(out + off, outsz - off, fmt, v[i]);
    }
}

/* A fresh env with default durability (the harness turns it off for speed),
 * plus the server settings in `extra` (NULL-terminated; may be NULL). */
static h_env *bench_env(const char *const *extra)
{
    h_env *env = h_env_new();
    if (!env)
        return NULL;
    char sc[64];
    snprintf(sc, sizeof sc, "synchronous_commit=%s", sync_commit);
    if (h_pg_set(env, "fsync=on") || h_pg_set(env, sc) || h_pg_set(env, "full_page_writes=on") ||
        h_pg_set(env, "max_connections=200") ||
        (getenv("BENCH_PROFILE") && (h_pg_set(env, "track_functions=all") ||
                                     h_pg_set(env, "shared_preload_libraries=pg_stat_statements") ||
                                     h_pg_set(env, "pg_stat_statements.track=all") ||
                                     h_pg_set(env, "pg_stat_statements.track_planning=on")))) {
        h_mark_failed(env);
        h_teardown(env);
        return NULL;
    }
    for (int i = 0; extra && extra[i]; i++)
        if (h_pg_set(env, extra[i])) {
            h_teardown(env);
            return NULL;
        }
    /* BENCH_PG="name=value;name=value": extra server settings for a
     * diagnostic run (the report prints them with the machine). */
    const char *more = getenv("BENCH_PG");
    if (more && *more) {
        char *copy = strdup(more), *save = NULL;
        int bad = !copy;
        for (char *t = copy ? strtok_r(copy, ";", &save) : NULL; t && !bad;
             t = strtok_r(NULL, ";", &save))
            bad = h_pg_set(env, t) != 0;
        free(copy);
        if (bad) {
            h_teardown(env);
            return NULL;
        }
    }
    if (h_pg_start(env) || h_nats_start(env) || h_migrate(env) ||
        h_key_create(env, "admin", env->admin_key, sizeof env->admin_key)) {
        h_mark_failed(env);
        h_teardown(env);
        return NULL;
    }
    return env;
}

/* bench_env, then `vigil serve` with vigil_env (may be NULL) and, when sql is
 * not NULL, that statement. NULL (said on stderr as "bench ID: setup
 * failed") when a step fails. */
static h_env *bench_start(const char *id, const char *const *vigil_env, const char *sql)
{
    h_env *env = bench_env(NULL);
    if (!env || h_vigil_start(env, vigil_env) || (sql && h_db_exec(env, sql))) {
        fprintf(stderr, "bench %s: setup failed\n", id);
        h_teardown(env);
        return NULL;
    }
    return env;
}

/* A transaction object; the same generator feeds Vigil and the references. */
static void tx_fields(long i, const char **customers, char *ext, size_t extsz, const char **cust,
                      char *amount, size_t amsz, const char **dir, const char **chan)
{
    static const char *chans[] = {"wire", "card", "ach", "cash", "crypto", "other"};
    unsigned long h = (unsigned long)i * 2654435761UL;
    snprintf(ext, extsz, "b-%ld", i);
    *cust = customers[h % N_CUSTOMERS];
    snprintf(amount, amsz, "%lu.%02lu", 10 + (h >> 8) % 12000, (h >> 4) % 100);
    *dir = (h >> 3) & 1 ? "in" : "out";
    *chan = chans[(h >> 5) % 6];
}

/* When transaction i happened: 10 s after transaction i-1, from 2026-01-01.
 * With 1,000 customers each sees one about every 2.8 hours, so the rules'
 * windows hold a realistic history. (The first runs gave every transaction
 * the same time, so every window held the customer's whole history and the
 * velocity rule fired on every customer in every batch.) */
static void tx_time(long i, char *out, size_t n)
{
    time_t t = (time_t)1767225600 + (time_t)i * 10; /* 2026-01-01T00:00:00Z */
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int tx_json(char *buf, size_t bufsz, long i, const char **customers, const char *tag)
{
    char ext[48], amount[32], when[32];
    const char *cust, *dir, *chan;
    tx_fields(i, customers, ext, sizeof ext, &cust, amount, sizeof amount, &dir, &chan);
    tx_time(i, when, sizeof when);
    return snprintf(
        buf, bufsz,
        "{\"external_id\":\"%s-%s\",\"customer_id\":\"%s\",\"amount\":\"%s\","
        "\"currency\":\"USD\",\"direction\":\"%s\",\"channel\":\"%s\","
        "\"counterparty\":{\"name\":\"ACME\",\"account\":\"DE0012\",\"country\":\"DE\"},"
        "\"occurred_at\":\"%s\"}",
        tag, ext, cust, amount, dir, chan, when);
}

/* The bench customers' history before the measured load: HISTORY_TX
 * transactions, 10 s apart, ending where tx_time() starts, with the same
 * mix of amounts, directions and channels, then VACUUM ANALYZE. Written
 * straight into the table (session_replication_role = replica: no
 * triggers, so no events and no rules), as if imported before Vigil ran.
 *
 * Why: a deployment has history, and the rules read it. Without it every
 * benchmark measured Vigil's first minute on an empty database, which is
 * unrepresentative twice over. The rule windows are empty. Worse, each
 * backend caches a generic plan for the rule and ingest queries after five
 * executions, costed against a table of a few pages (a sequential scan);
 * the plan is only replaced when autovacuum's ANALYZE invalidates it, a
 * minute or more later, and until then every query scans every row
 * ingested so far (measured: 1.2 -> 4.5 ms per 3-transaction call after
 * 4,566 rows). */
#define HISTORY_TX 200000

static int seed_history(h_env *env)
{
    char sql[1600];
    snprintf(
        sql, sizeof sql,
        "SET session_replication_role = replica;"
        "WITH c AS (SELECT array_agg(id ORDER BY external_id) AS ids FROM customers"
        "           WHERE starts_with(external_id, 'bench-c'))"
        " INSERT INTO transactions (external_id, customer_id, amount, currency, amount_base,"
        "  direction, channel, counterparty_name, counterparty_account, counterparty_country,"
        "  occurred_at)"
        " SELECT 'hist-' || g, c.ids[1 + (g * 2654435761) %% %d], a.v, 'USD', a.v,"
        "  CASE WHEN (g * 2654435761 >> 3) & 1 = 1 THEN 'in' ELSE 'out' END,"
        "  (ARRAY['wire','card','ach','cash','crypto','other'])[1 + (g * 2654435761 >> 5) %% 6],"
        "  'ACME', 'DE0012', 'DE', timestamptz '2026-01-01T00:00:00Z' - g * interval '10 s'"
        " FROM c, generate_series(1::bigint, %d) g,"
        "  LATERAL (SELECT round(10 + (g * 2654435761 >> 8) %% 12000"
        "                   + ((g * 2654435761 >> 4) %% 100) / 100.0, 2) AS v) a;"
        "RESET session_replication_role",
        N_CUSTOMERS, HISTORY_TX);
    return h_db_exec(env, sql) || h_db_exec(env, "VACUUM ANALYZE transactions, customers");
}

static const char **make_customers(h_env *env)
{
    if (h_db_exec(env, "INSERT INTO customers (full_name, country, external_id)"
                       " SELECT 'Bench ' || g, 'DE', 'bench-c' || g"
                       " FROM generate_series(1, 1000) g") ||
        seed_history(env))
        return NULL;
    PGresult *r = PQexec(h_db(env), "SELECT id::text FROM customers WHERE external_id LIKE "
                                    "'bench-c%' ORDER BY external_id LIMIT 1000");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != N_CUSTOMERS) {
        fprintf(stderr, "bench: customers: %s\n", PQerrorMessage(h_db(env)));
        PQclear(r);
        return NULL;
    }
    const char **c = calloc(N_CUSTOMERS, sizeof *c);
    for (int i = 0; i < N_CUSTOMERS; i++)
        c[i] = strdup(PQgetvalue(r, i, 0));
    PQclear(r);
    return c;
}

/* Frees what make_customers returned (NULL is fine). */
static void free_customers(const char **cust)
{
    for (int i = 0; cust && i < N_CUSTOMERS; i++)
        free((void *)cust[i]);
    free(cust);
}

static const char *BARE_TABLE =
    "CREATE TABLE IF NOT EXISTS bench_tx (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),"
    " external_id text NOT NULL, customer_id uuid NOT NULL, amount numeric NOT NULL,"
    " currency char(3) NOT NULL, amount_base numeric(26,4) NOT NULL, direction text NOT NULL,"
    " channel text NOT NULL, counterparty_name text, counterparty_account text,"
    " counterparty_country char(2), occurred_at timestamptz NOT NULL,"
    " ingested_at timestamptz NOT NULL DEFAULT now())";

/* ---- load generators ------------------------------------------------------- */

typedef struct worker {
    h_env *env;
    const char **customers;
    int idx, per_request; /* transactions per request */
    long max_requests;    /* stop after this many requests (0: only the deadline) */
    double deadline;
    const char *tag;
    long ok, failed;
    double *lat; /* seconds per request (single ingest) */
    long nlat, caplat;
    pthread_t th;
} worker;

static atomic_long next_id;

static size_t sink(char *p, size_t s, size_t n, void *u)
{
    return s * n;
}

static void *http_worker(void *arg)
{
    worker *w = arg;
    CURL *c = curl_easy_init();
    char url[192], auth[300];
    snprintf(url, sizeof url, "%s/transactions", w->env->base_url);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", w->env->admin_key);
    struct curl_slist *hd = curl_slist_append(NULL, auth);
    hd = curl_slist_append(hd, "Content-Type: application/json");
    size_t cap = (size_t)w->per_request * 512 + 64;
    char *body = malloc(cap);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    for (long nreq = 0; now_s() < w->deadline && (!w->max_requests || nreq < w->max_requests);
         nreq++) {
        size_t off = 0;
        long base = atomic_fetch_add(&next_id, w->per_request);
        if (w->per_request > 1)
            off += (size_t)snprintf(body, cap, "{\"transactions\":[");
        for (int i = 0; i < w->per_request; i++) {
            if (i)
                body[off++] = ',';
            off += (size_t)tx_json(body + off, cap - off, base + i, w->customers, w->tag);
        }
        if (w->per_request > 1)
            off += (size_t)snprintf(body + off, cap - off, "]}");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)off);
        double t0 = now_s();
        CURLcode rc = curl_easy_perform(c);
        double dt = now_s() - t0;
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (rc == CURLE_OK && status >= 200 && status < 300) {
            w->ok += w->per_request;
            if (w->lat && w->nlat < w->caplat)
                w->lat[w->nlat++] = dt;
        } else {
            if (w->failed++ < 3)
                fprintf(stderr, "bench: POST /transactions: curl %d status %ld\n", rc, status);
        }
    }
    free(body);
    curl_slist_free_all(hd);
    curl_easy_cleanup(c);
    return NULL;
}

static void *sql_worker(void *arg)
{
    worker *w = arg;
    PGconn *db = h_db_connect(w->env);
    size_t cap = (size_t)w->per_request * 400 + 512;
    char *sql = malloc(cap);
    while (db && now_s() < w->deadline) {
        long base = atomic_fetch_add(&next_id, w->per_request);
        size_t off = (size_t)snprintf(
            sql, cap,
            "INSERT INTO bench_tx (external_id, customer_id, amount, currency, amount_base,"
            " direction, channel, counterparty_name, counterparty_account, counterparty_country,"
            " occurred_at) VALUES ");
        for (int i = 0; i < w->per_request; i++) {
            char ext[48], amount[32], when[32];
            const char *cust, *dir, *chan;
            tx_fields(base + i, w->customers, ext, sizeof ext, &cust, amount, sizeof amount, &dir,
                      &chan);
            tx_time(base + i, when, sizeof when);
            off +=
                (size_t)snprintf(sql + off, cap - off,
                                 "%s('%s-%s','%s','%s','USD','%s','%s','%s','ACME','DE0012',"
                                 "'DE','%s')",
                                 i ? "," : "", w->tag, ext, cust, amount, amount, dir, chan, when);
        }
        PGresult *r = PQexec(db, sql);
        if (PQresultStatus(r) == PGRES_COMMAND_OK)
            w->ok += w->per_request;
        else if (w->failed++ < 3)
            fprintf(stderr, "bench: bare INSERT: %s\n", PQerrorMessage(db));
        PQclear(r);
    }
    free(sql);
    PQfinish(db);
    return NULL;
}

/* Runs nthreads of fn for `seconds`; returns tx/s. Latencies are collected
 * into *lat_out (malloc'ed, caller frees) when lat_out is not NULL. */
static double run_load(h_env *env, const char **customers, void *(*fn)(void *), int nthreads,
                       int per_request, const char *tag, double **lat_out, long *nlat_out)
{
    worker w[64];
    double t0 = now_s();
    for (int i = 0; i < nthreads; i++) {
        w[i] = (worker){.env = env,
                        .customers = customers,
                        .idx = i,
                        .per_request = per_request,
                        .deadline = t0 + seconds,
                        .tag = tag};
        if (lat_out) {
            w[i].caplat = 200000;
            w[i].lat = malloc((size_t)w[i].caplat * sizeof(double));
        }
        pthread_create(&w[i].th, NULL, fn, &w[i]);
    }
    long ok = 0, failed = 0, nlat = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(w[i].th, NULL);
        ok += w[i].ok;
        failed += w[i].failed;
        nlat += w[i].nlat;
    }
    double el = now_s() - t0;
    if (lat_out) {
        double *all = malloc((size_t)(nlat + 1) * sizeof(double));
        long k = 0;
        for (int i = 0; i < nthreads; i++) {
            memcpy(all + k, w[i].lat, (size_t)w[i].nlat * sizeof(double));
            k += w[i].nlat;
            free(w[i].lat);
        }
        *lat_out = all;
        *nlat_out = nlat;
    }
    if (failed)
        fprintf(stderr, "bench: %s: %ld requests failed\n", tag, failed);
    return (double)ok / el;
}

/* ---- publish lag ------------------------------------------------------------- */

/* Unpublished events: outbox rows plus event_log beyond the publisher cursor. */
static long long publish_lag(h_env *env)
{
    return h_db_count(env, "SELECT (SELECT count(*) FROM outbox) + (SELECT coalesce(max(seq), 0)"
                           " FROM event_log) - (SELECT seq FROM cursors WHERE name = 'publisher')");
}

/* Samples, every 250 ms while a load runs, the publish lag (its maximum) and
 * what each active PostgreSQL client backend is waiting for: the profile that
 * explains a missed target ("CPU" = running, "Lock:object" = the
 * database-wide lock NOTIFY takes at commit, "Lock:tuple"/"Lock:transactionid"
 * = row locks, "IO:WALSync" = commit fsync). */
#define WAIT_KINDS 32

typedef struct lag_sampler {
    h_env *env;
    atomic_int stop;
    long long max;
    long samples;
    int nkinds;
    char kind[WAIT_KINDS][48];
    long count[WAIT_KINDS];
    pthread_t th;
} lag_sampler;

static void sample_waits(lag_sampler *s, PGconn *db)
{
    PGresult *r = PQexec(db, "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU'),"
                             " count(*) FROM pg_stat_activity WHERE datname = 'vigil' AND"
                             " state = 'active' AND backend_type = 'client backend' AND"
                             " pid <> pg_backend_pid() GROUP BY 1");
    for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r); i++) {
        const char *k = PQgetvalue(r, i, 0);
        int j = 0;
        while (j < s->nkinds && strcmp(s->kind[j], k) != 0)
            j++;
        if (j == s->nkinds && s->nkinds < WAIT_KINDS)
            snprintf(s->kind[s->nkinds++], sizeof s->kind[0], "%s", k);
        if (j < s->nkinds)
            s->count[j] += atol(PQgetvalue(r, i, 1));
    }
    PQclear(r);
    s->samples++;
}

static void *lag_thread(void *arg)
{
    lag_sampler *s = arg;
    PGconn *db = h_db_connect(s->env);
    while (db && !atomic_load(&s->stop)) {
        PGresult *r = PQexec(db, "SELECT (SELECT count(*) FROM outbox) + (SELECT coalesce(max(seq),"
                                 " 0) FROM event_log) - (SELECT seq FROM cursors WHERE name ="
                                 " 'publisher')");
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            long long v = atoll(PQgetvalue(r, 0, 0));
            if (v > s->max)
                s->max = v;
        }
        PQclear(r);
        sample_waits(s, db);
        h_sleep_ms(250);
    }
    PQfinish(db);
    return NULL;
}

static void sampler_start(lag_sampler *s, h_env *env)
{
    memset(s, 0, sizeof *s);
    s->env = env;
    pthread_create(&s->th, NULL, lag_thread, s);
}

static void sampler_stop(lag_sampler *s)
{
    atomic_store(&s->stop, 1);
    pthread_join(s->th, NULL);
}

/* "average active backends per sample: CPU 3.1, Lock:object 2.0, ..." (top 6). */
static void sampler_waits(const lag_sampler *s, char *out, size_t outsz)
{
    int used[WAIT_KINDS] = {0};
    size_t off = (size_t)snprintf(out, outsz,
                                  "PostgreSQL client backends by wait event, "
                                  "average per sample over %ld samples:",
                                  s->samples);
    for (int n = 0; n < 6 && off < outsz; n++) {
        int best = -1;
        for (int j = 0; j < s->nkinds; j++)
            if (!used[j] && (best < 0 || s->count[j] > s->count[best]))
                best = j;
        if (best < 0)
            break;
        used[best] = 1;
        off += (size_t)snprintf(out + off, outsz - off, "%s %s %.2f", n ? "," : "", s->kind[best],
                                s->samples ? (double)s->count[best] / (double)s->samples : 0.0);
    }
}

/* Seconds until the lag is 0, or -1 after timeout_s. */
static double drain_time(h_env *env, int timeout_s)
{
    double t0 = now_s();
    while (now_s() - t0 < timeout_s) {
        if (publish_lag(env) == 0)
            return now_s() - t0;
        h_sleep_ms(50);
    }
    return -1;
}

static long vm_hwm_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            v = atol(line + 6);
    if (f)
        fclose(f);
    return v;
}

/* What a run cost the machine, whatever share of it the run got: busy CPU
 * time of every process (from /proc/stat: user, nice, system, irq, softirq;
 * steal and idle excluded) and the context switches of `vigil serve`'s
 * threads. Divided by the transactions of the run these are the efficiency
 * figures, steadier between runs than rates on a shared machine. The load
 * generator (this process) is included in the CPU. */
typedef struct cpu_meter {
    double busy_s;
    long long vol, nonvol;
} cpu_meter;

/* Busy CPU seconds of the whole machine so far (0 if unreadable). */
static double machine_busy_s(void)
{
    double busy = 0;
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long u = 0, n = 0, sy = 0, id = 0, io = 0, irq = 0, sirq = 0;
    if (f && fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu", &u, &n, &sy, &id, &io, &irq,
                    &sirq) == 7)
        busy = (double)(u + n + sy + irq + sirq) / (double)sysconf(_SC_CLK_TCK);
    if (f)
        fclose(f);
    return busy;
}

static void cpu_read(pid_t pid, cpu_meter *m)
{
    *m = (cpu_meter){0};
    m->busy_s = machine_busy_s();
    char dir[64], path[384], line[256];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s/status", dir, e->d_name);
        FILE *t = fopen(path, "r");
        while (t && fgets(line, sizeof line, t)) {
            if (strncmp(line, "voluntary_ctxt_switches:", 24) == 0)
                m->vol += atoll(line + 24);
            else if (strncmp(line, "nonvoluntary_ctxt_switches:", 27) == 0)
                m->nonvol += atoll(line + 27);
        }
        if (t)
            fclose(t);
    }
    if (d)
        closedir(d);
}

/* Per transaction since `a`: CPU ms into *cpu_ms, vigil serve's context
 * switches (voluntary + not) into *switches. */
static void cpu_per_tx(pid_t pid, const cpu_meter *a, double tx, double *cpu_ms, double *switches)
{
    cpu_meter b;
    cpu_read(pid, &b);
    *cpu_ms = tx > 0 ? (b.busy_s - a->busy_s) * 1000.0 / tx : -1;
    *switches = tx > 0 ? (double)(b.vol - a->vol + b.nonvol - a->nonvol) / tx : -1;
}

/* CPU seconds (user + system) of the process or thread whose stat file is
 * `path`, and its name into comm[64] when comm is not NULL; -1 if
 * unreadable. */
static double stat_cpu_s(const char *path, char *comm)
{
    char buf[1024];
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    char *open = strchr(buf, '('), *close = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    /* after ") ": state(3) ... utime is field 14, stime 15 */
    if (!open || !close || close < open ||
        sscanf(close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    if (comm)
        snprintf(comm, 64, "%.*s", (int)(close - open - 1), open + 1);
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds (user + system) pid has used so far; -1 if unreadable. */
static double proc_cpu_s(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    return stat_cpu_s(path, NULL);
}

/* Where a run's CPU went, by role: `vigil serve`'s threads by name (the HTTP
 * workers, the publisher, each consumer...), PostgreSQL's processes by
 * application_name (every Vigil session names its role: "vigil api", "vigil
 * sequencer"...; the others by backend type), nats-server and this load
 * generator. What the machine spent besides (kernel threads, other
 * processes, and any process that exited during the run) is the rest. The
 * profile behind "CPU per transaction" in benchmarks 1 and 2: which part of
 * the pipeline a missed target would have to make cheaper. */
#define ROLE_PROCS 512

typedef struct role_snap {
    int n;
    struct {
        int id; /* pid, or tid for a `vigil serve` thread */
        char role[96];
        double s; /* CPU seconds so far */
    } p[ROLE_PROCS];
    double busy_s; /* the whole machine, from /proc/stat */
} role_snap;

static void role_put(role_snap *r, int id, const char *role, double s)
{
    if (s < 0 || r->n == ROLE_PROCS)
        return; /* gone, or too many: its CPU lands in the rest */
    r->p[r->n].id = id;
    snprintf(r->p[r->n].role, sizeof r->p[0].role, "%s", role);
    r->p[r->n].s = s;
    r->n++;
}

static void role_read(h_env *env, role_snap *r)
{
    r->n = 0;
    r->busy_s = machine_busy_s();
    role_put(r, (int)getpid(), "the load generator (this benchmark)", proc_cpu_s(getpid()));
    role_put(r, (int)env->nats_pid, "nats-server", proc_cpu_s(env->nats_pid));
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)env->vigil_pid);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char comm[64], role[96];
        if (e->d_name[0] == '.')
            continue;
        char path[320];
        snprintf(path, sizeof path, "/proc/%d/task/%s/stat", (int)env->vigil_pid, e->d_name);
        double s = stat_cpu_s(path, comm);
        if (s < 0)
            continue; /* the thread is gone */
        snprintf(role, sizeof role, "vigil serve: %s", comm);
        role_put(r, atoi(e->d_name), role, s);
    }
    if (d)
        closedir(d);
    /* Unnamed client sessions are this benchmark's own (its samplers and
     * checks); Vigil names all of its sessions. */
    PGresult *q = PQexec(h_db(env), "SELECT pid, CASE WHEN application_name <> '' THEN"
                                    " application_name WHEN backend_type = 'client backend'"
                                    " THEN 'the benchmark''s own sessions' ELSE backend_type END"
                                    " FROM pg_stat_activity");
    for (int i = 0; PQresultStatus(q) == PGRES_TUPLES_OK && i < PQntuples(q); i++) {
        char role[96];
        snprintf(role, sizeof role, "postgres: %s", PQgetvalue(q, i, 1));
        int pid = atoi(PQgetvalue(q, i, 0));
        role_put(r, pid, role, proc_cpu_s(pid));
    }
    PQclear(q);
}

static int role_cmp(const void *a, const void *b)
{
    double x = ((const double *)a)[0], y = ((const double *)b)[0];
    return (x < y) - (x > y); /* descending */
}

/* "role ms, role ms, ..., the rest ms" per transaction between a and b,
 * largest first: each process's CPU in b minus its CPU in a (all of it for
 * one that started during the run), summed by role. */
static void role_report(const role_snap *a, const role_snap *b, double tx, char *out, size_t outsz)
{
    struct {
        double ms; /* first: role_cmp sorts on it */
        char role[96];
    } sum[ROLE_PROCS];
    int n = 0;
    double listed = 0;
    for (int i = 0; i < b->n; i++) {
        double d = b->p[i].s;
        for (int j = 0; j < a->n; j++)
            if (a->p[j].id == b->p[i].id && strcmp(a->p[j].role, b->p[i].role) == 0) {
                d -= a->p[j].s;
                break;
            }
        if (d <= 0)
            continue;
        listed += d;
        int k = 0;
        while (k < n && strcmp(sum[k].role, b->p[i].role) != 0)
            k++;
        if (k == n) {
            sum[n].ms = 0;
            snprintf(sum[n++].role, sizeof sum[0].role, "%s", b->p[i].role);
        }
        sum[k].ms += d;
    }
    qsort(sum, (size_t)n, sizeof sum[0], role_cmp);
    size_t off = 0;
    out[0] = '\0';
    for (int k = 0; k < n && off < outsz; k++) {
        if (sum[k].ms * 1000.0 / tx < 0.0005)
            break;
        off += (size_t)snprintf(out + off, outsz - off, "%s%s %.3f", k ? ", " : "", sum[k].role,
                                sum[k].ms * 1000.0 / tx);
    }
    double rest = (b->busy_s - a->busy_s) - listed;
    if (off < outsz)
        snprintf(out + off, outsz - off, "%sthe rest of the machine %.3f", off ? ", " : "",
                 (rest > 0 ? rest : 0) * 1000.0 / tx);
}

/* With BENCH_PROFILE set (a diagnostic run, numbers not for the table): where
 * PostgreSQL spent its time, per SQL/PL function. */
static void print_profile(h_env *env, const char *what)
{
    if (!getenv("BENCH_PROFILE"))
        return;
    PGresult *r =
        PQexec(h_db(env), "SELECT funcname, calls, round(total_time), round(self_time)"
                          " FROM pg_stat_user_functions ORDER BY total_time DESC LIMIT 15");
    fprintf(stderr, "profile %s: function | calls | total ms | self ms\n", what);
    for (int i = 0; i < PQntuples(r); i++)
        fprintf(stderr, "  %s | %s | %s | %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                PQgetvalue(r, i, 2), PQgetvalue(r, i, 3));
    PQclear(r);
    /* Top-level statements, by the time they took (parse/plan included). */
    PQclear(PQexec(h_db(env), "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"));
    r = PQexec(h_db(env), "SELECT calls, round(total_exec_time), round(total_plan_time),"
                          " left(regexp_replace(query, '\\s+', ' ', 'g'), 100)"
                          " FROM pg_stat_statements WHERE toplevel"
                          " ORDER BY total_exec_time + total_plan_time DESC LIMIT 25");
    fprintf(stderr, "profile %s: calls | exec ms | plan ms | statement\n", what);
    for (int i = 0; i < PQntuples(r); i++)
        fprintf(stderr, "  %s | %s | %s | %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                PQgetvalue(r, i, 2), PQgetvalue(r, i, 3));
    PQclear(r);
    /* Every statement, nested ones (inside functions and triggers) too, by
     * the time they took; plans < calls means a cached plan was reused. */
    r = PQexec(h_db(env), "SELECT calls, plans, round(total_exec_time), round(total_plan_time),"
                          " round((total_exec_time / greatest(calls, 1))::numeric, 3),"
                          " left(regexp_replace(query, '\\s+', ' ', 'g'), 90)"
                          " FROM pg_stat_statements WHERE NOT toplevel"
                          " ORDER BY total_exec_time + total_plan_time DESC LIMIT 25");
    fprintf(stderr,
            "profile %s: nested: calls | plans | exec ms | plan ms | exec ms/call | statement\n",
            what);
    for (int i = 0; i < PQntuples(r); i++)
        fprintf(stderr, "  %s | %s | %s | %s | %s | %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), PQgetvalue(r, i, 4), PQgetvalue(r, i, 5));
    PQclear(r);
}

/* The value of `name` on vigil's /metrics, or -1. */
static double metric_value(h_env *env, const char *name)
{
    double v;
    return h_metric(env, env->admin_key, name, &v) == 0 ? v : -1;
}

/* vigil_sse_clients (streams the server holds open), or -1. */
static long sse_open_streams(h_env *env)
{
    return (long)metric_value(env, "vigil_sse_clients");
}

/* ---- benchmark 1 (and 7): batch ingest ----------------------------------------- */

static void bench_batch(int with_rss)
{
    h_env *env = bench_start("1", NULL, BARE_TABLE);
    if (!env)
        return;
    const char **cust = make_customers(env);
    double v[MAX_RUNS], ref[MAX_RUNS], lagmax[MAX_RUNS], drain[MAX_RUNS], cpu[MAX_RUNS],
        sw[MAX_RUNS];
    lag_sampler ls;
    char waits[400] = "", roles[900] = "";
    role_snap *rs = calloc(2, sizeof *rs);
    if (!rs)
        abort();
    long long alerts0 = h_db_count(env, "SELECT count(*) FROM alerts");
    for (int i = 0; i < runs && cust; i++) {
        char tag[16];
        drain_time(env, 60);
        snprintf(tag, sizeof tag, "v%d", i);
        sampler_start(&ls, env);
        if (i == runs / 2)
            role_read(env, &rs[0]);
        cpu_meter cm;
        cpu_read(env->vigil_pid, &cm);
        double t0 = now_s();
        v[i] = run_load(env, cust, http_worker, BATCH_CLIENT, BATCH, tag, NULL, NULL);
        double tx = v[i] * (now_s() - t0);
        sampler_stop(&ls);
        if (i == runs / 2)
            sampler_waits(&ls, waits, sizeof waits);
        lagmax[i] = (double)ls.max;
        drain[i] = drain_time(env, 120);
        cpu_per_tx(env->vigil_pid, &cm, tx, &cpu[i], &sw[i]);
        if (i == runs / 2) {
            role_read(env, &rs[1]);
            role_report(&rs[0], &rs[1], tx, roles, sizeof roles);
        }
        snprintf(tag, sizeof tag, "r%d", i);
        ref[i] = run_load(env, cust, sql_worker, BATCH_CLIENT, BATCH, tag, NULL, NULL);
        fprintf(stderr,
                "bench 1 run %d: vigil %.0f tx/s (max lag %.0f, drained in %.2f s), bare "
                "INSERT %.0f rows/s\n",
                i + 1, v[i], lagmax[i], drain[i], ref[i]);
    }
    long long alerts = h_db_count(env, "SELECT count(*) FROM alerts") - alerts0;
    print_profile(env, "benchmark 1");
    char rv[128], rr[128], rl[128], rd[128], rc[128], rsw[128];
    runs_str(rv, sizeof rv, v, runs, "%.0f");
    runs_str(rr, sizeof rr, ref, runs, "%.0f");
    runs_str(rl, sizeof rl, lagmax, runs, "%.0f");
    runs_str(rd, sizeof rd, drain, runs, "%.2f");
    runs_str(rc, sizeof rc, cpu, runs, "%.3f");
    runs_str(rsw, sizeof rsw, sw, runs, "%.2f");
    free(rs);
    result *r = add_bounded("1", "batch ingest (1000/POST, 2 clients)", "tx/s", median(v, runs),
                            ">=", 30000);
    r->reference = median(ref, runs);
    snprintf(r->ref_name, sizeof r->ref_name, "1000-row INSERT, bare table");
    double maxdrain = 0;
    for (int i = 0; i < runs; i++)
        maxdrain = drain[i] < 0 || drain[i] > maxdrain ? (drain[i] < 0 ? 1e9 : drain[i]) : maxdrain;
    snprintf(r->note, sizeof r->note,
             "runs: %s tx/s; reference runs: %s rows/s; %lld alerts raised; publish lag (outbox + "
             "unpublished event_log) max per run: %s events, drained to 0 after the load in %s s "
             "(%s); CPU per transaction (every process, load to drained): %s ms; vigil serve "
             "context switches per transaction: %s. Run %d: %s; CPU per transaction by role "
             "(ms): %s",
             rv, rr, alerts, rl, rd, maxdrain < 1e9 ? "bounded" : "NOT drained within 120 s", rc,
             rsw, runs / 2 + 1, waits, roles);
    if (with_rss) {
        long kib = vm_hwm_kib(env->vigil_pid);
        result *m = add_bounded("7", "peak RSS of vigil serve (VmHWM) in 1", "MiB",
                                (double)kib / 1024.0, "<=", 64);
        snprintf(m->note, sizeof m->note,
                 "one value: VmHWM of the one `vigil serve` across all %d runs of benchmark 1",
                 runs);
    }
    free_customers(cust);
    h_teardown(env);
}

/* ---- benchmark 2: single ingest ---------------------------------------------------- */

static double pgbench_tps(h_env *env)
{
    char script[H_PATH_SIZE + 32], cmd[1024];
    snprintf(script, sizeof script, "%s/pgbench.sql", env->dir);
    FILE *f = fopen(script, "w");
    if (!f)
        return -1;
    fprintf(f, "\\set n random(1, 1000000000)\n"
               "INSERT INTO bench_tx (external_id, customer_id, amount, currency, amount_base,"
               " direction, channel, counterparty_name, counterparty_account,"
               " counterparty_country, occurred_at) VALUES ('pgb-' || :client_id || '-' || :n,"
               " gen_random_uuid(), 125.50, 'USD', 125.50, 'in', 'wire', 'ACME', 'DE0012', 'DE',"
               " '2026-01-15T10:00:00Z');\n");
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "%s -n -c 8 -j 2 -T %d -f %s -h 127.0.0.1 -p %d -U postgres vigil 2>/dev/null",
             PGBENCH, seconds, script, env->pg_port);
    FILE *p = popen(cmd, "r");
    char line[512];
    double tps = -1;
    while (p && fgets(line, sizeof line, p))
        if (strncmp(line, "tps = ", 6) == 0)
            tps = atof(line + 6);
    if (p)
        pclose(p);
    return tps;
}

static void bench_single(void)
{
    h_env *env = bench_start("2", NULL, BARE_TABLE);
    if (!env)
        return;
    const char **cust = make_customers(env);
    double v[MAX_RUNS], p99[MAX_RUNS], p50[MAX_RUNS], ref[MAX_RUNS], cpu[MAX_RUNS], sw[MAX_RUNS];
    lag_sampler ls;
    char waits[400] = "", roles[900] = "";
    role_snap *rs = calloc(2, sizeof *rs);
    if (!rs)
        abort();
    /* Counters read before and after all runs: ingest commits, sequencer
     * rounds (and the empty ones), the risk consumer's events and
     * transactions. */
    static const char *const counters[] = {"vigil_ingest_flushes_total",
                                           "vigil_ingest_flushed_items_total",
                                           "vigil_sequencer_calls_total",
                                           "vigil_sequencer_empty_calls_total",
                                           "vigil_consumer_processed_total{consumer=\"risk\"}",
                                           "vigil_consumer_batches_total{consumer=\"risk\"}"};
    enum { N_COUNTERS = sizeof counters / sizeof counters[0] };
    double c0[N_COUNTERS], c[N_COUNTERS];
    for (int k = 0; k < N_COUNTERS; k++)
        c0[k] = metric_value(env, counters[k]);
    for (int i = 0; i < runs && cust; i++) {
        char tag[16];
        double *lat = NULL;
        long nlat = 0;
        snprintf(tag, sizeof tag, "s%d", i);
        drain_time(env, 60);
        sampler_start(&ls, env);
        if (i == runs / 2)
            role_read(env, &rs[0]);
        cpu_meter cm;
        cpu_read(env->vigil_pid, &cm);
        double t0 = now_s();
        v[i] = run_load(env, cust, http_worker, SINGLE_CONNS, 1, tag, &lat, &nlat);
        double tx = v[i] * (now_s() - t0);
        sampler_stop(&ls);
        drain_time(env, 60);
        cpu_per_tx(env->vigil_pid, &cm, tx, &cpu[i], &sw[i]);
        if (i == runs / 2) {
            role_read(env, &rs[1]);
            role_report(&rs[0], &rs[1], tx, roles, sizeof roles);
        }
        if (i == runs / 2)
            sampler_waits(&ls, waits, sizeof waits);
        qsort(lat, (size_t)nlat, sizeof *lat, cmp_double);
        p50[i] = nlat ? lat[nlat / 2] * 1000 : -1;
        p99[i] = nlat ? lat[(long)((double)nlat * 0.99)] * 1000 : -1;
        free(lat);
        ref[i] = pgbench_tps(env);
        fprintf(stderr,
                "bench 2 run %d: vigil %.0f tx/s p50 %.2f ms p99 %.2f ms (%.3f CPU ms and %.1f "
                "vigil serve context switches per tx), pgbench %.0f tps\n",
                i + 1, v[i], p50[i], p99[i], cpu[i], sw[i], ref[i]);
    }
    for (int k = 0; k < N_COUNTERS; k++)
        c[k] = metric_value(env, counters[k]) - c0[k];
    double flushes = c[0], items = c[1];
    print_profile(env, "benchmark 2");
    char rv[128], rp[128], rr[128], rc[128], rsw[128];
    runs_str(rv, sizeof rv, v, runs, "%.0f");
    runs_str(rp, sizeof rp, p99, runs, "%.2f");
    runs_str(rr, sizeof rr, ref, runs, "%.0f");
    runs_str(rc, sizeof rc, cpu, runs, "%.3f");
    runs_str(rsw, sizeof rsw, sw, runs, "%.1f");
    double mp50 = median(p50, runs);
    result *r =
        add_bounded("2", "single ingest (1/POST, 32 conns)", "tx/s", median(v, runs), ">=", 6000);
    r->reference = median(ref, runs);
    snprintf(r->ref_name, sizeof r->ref_name, "pgbench 1-row INSERT, 8 clients");
    snprintf(
        r->note, sizeof r->note,
        "runs: %s tx/s; pgbench runs: %s tps; p50 median %.2f ms; VIGIL_HTTP_THREADS "
        "%s, VIGIL_INGEST_FLUSHES %s; transactions per commit (vigil_ingest call) %.1f "
        "(%.0f calls, largest %.0f); CPU per transaction (every process, load to drained): "
        "%s ms; vigil serve context switches per transaction: %s; sequencer rounds per "
        "ingest commit %.2f (%.0f rounds, %.0f of them empty); risk consumer %.1f events "
        "per transaction (%.0f events). Run %d: %s; CPU per transaction by role (ms): %s",
        rv, rr, mp50, getenv("VIGIL_HTTP_THREADS") ? getenv("VIGIL_HTTP_THREADS") : "default (32)",
        getenv("VIGIL_INGEST_FLUSHES") ? getenv("VIGIL_INGEST_FLUSHES") : "default (1)",
        flushes > 0 ? items / flushes : 0, flushes, metric_value(env, "vigil_ingest_largest_flush"),
        rc, rsw, flushes > 0 ? c[2] / flushes : 0, c[2], c[3], c[5] > 0 ? c[4] / c[5] : 0, c[4],
        runs / 2 + 1, waits, roles);
    free(rs);
    result *l = add_bounded("2", "single ingest p99 latency", "ms", median(p99, runs), "<=", 20);
    snprintf(l->note, sizeof l->note, "p99 per run: %s ms", rp);
    free_customers(cust);
    h_teardown(env);
}

typedef struct ev {
    char id[40];
    char subject[64];
    char *body;
    int len;
} ev;

/* Deletes stream `name` if it exists; 0 on success. */
static int js_drop(jsCtx *js, const char *name)
{
    jsErrCode jerr = 0;
    natsStatus s = js_DeleteStream(js, name, NULL, &jerr);
    return s == NATS_OK || s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr ? 0 : -1;
}

/* ---- benchmark 6: the seed's publish_event vs. Vigil, with a NATS outage ------------------ */

#define SEED_EVENTS 3000

/* The seed's publish_event in C: connect, fire-and-forget core publish, drain,
 * for every event. Publishes evs[from..to) and returns the seconds spent; an
 * event whose connect or publish fails is gone (counted in *failed). */
static double seed_publish(const char *url, const ev *evs, long from, long to, long *failed)
{
    double t0 = now_s();
    for (long i = from; i < to; i++) {
        natsConnection *nc = NULL;
        char subject[96];
        snprintf(subject, sizeof subject, "seed.%s", evs[i].subject);
        if (natsConnection_ConnectTo(&nc, url) != NATS_OK ||
            natsConnection_Publish(nc, subject, evs[i].body, evs[i].len) != NATS_OK)
            (*failed)++;
        if (nc) {
            /* The seed awaited drain(): everything sent is flushed, then the
             * connection closes. Flush + close is the same in nats.c, where
             * Drain only starts an asynchronous drain. */
            natsConnection_Flush(nc);
            natsConnection_Close(nc);
            natsConnection_Destroy(nc);
        }
    }
    return now_s() - t0;
}

/* An empty stream BENCH_SEED capturing the seed's subjects, as the seed's
 * deployment stored them (file storage). */
static void seed_stream_reset(h_env *env)
{
    natsConnection *nc = h_nats_connect(env);
    jsCtx *js = NULL;
    natsConnection_JetStream(&js, nc, NULL);
    js_drop(js, "BENCH_SEED");
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char *subj[] = {"seed.>"};
    sc.Name = "BENCH_SEED";
    sc.Subjects = subj;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    js_AddStream(NULL, js, &sc, NULL, NULL);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

#define SEED_RUNS 3

static void bench_seed(h_env *env, const ev *evs, long n, double vigil_rate)
{
    const char *pub_only[] = {"VIGIL_ROLES=api,publisher", NULL};
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    long m = n < SEED_EVENTS ? n : SEED_EVENTS, failed = 0, clean_failed = 0;

    /* The seed's rate while NATS is up, like every other figure a median:
     * SEED_RUNS - 1 runs over the first third of the events into an empty
     * stream, and the up phases of the outage run below. */
    double seed_rates[SEED_RUNS];
    for (int k = 0; k < SEED_RUNS - 1; k++) {
        seed_stream_reset(env);
        seed_rates[k] = (double)(m / 3) / seed_publish(env->nats_url, evs, 0, m / 3, &clean_failed);
    }

    /* Seed: a third before, a third during and a third after the outage. */
    seed_stream_reset(env);
    double up = seed_publish(env->nats_url, evs, 0, m / 3, &failed);
    h_nats_stop(env, SIGTERM);
    seed_publish(env->nats_url, evs, m / 3, 2 * m / 3, &failed);
    h_nats_start(env);
    up += seed_publish(env->nats_url, evs, 2 * m / 3, m, &failed);
    long long seed_stored = h_js_stream_msgs(env, "BENCH_SEED");
    double up_events = (double)(m - (2 * m / 3 - m / 3));
    seed_rates[SEED_RUNS - 1] = up_events / up;
    char seed_runs[128];
    runs_str(seed_runs, sizeof seed_runs, seed_rates, SEED_RUNS, "%.0f");
    double seed_rate = median(seed_rates, SEED_RUNS);

    /* Vigil: the whole event_log, NATS stopped for 2 s once a third is out. */
    nc = h_nats_connect(env);
    natsConnection_JetStream(&js, nc, NULL);
    js_drop(js, "AML_EVENTS");
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    h_db_exec(env, "UPDATE cursors SET seq = 0 WHERE name = 'publisher'");
    double t0 = now_s();
    long long stored = -1;
    if (h_vigil_start(env, pub_only) == 0) {
        while (h_db_count(env, "SELECT seq FROM cursors WHERE name = 'publisher'") < n / 3 &&
               now_s() - t0 < 300)
            h_sleep_ms(5);
        h_nats_stop(env, SIGTERM);
        h_sleep_ms(2000);
        h_nats_start(env);
        while (h_db_count(env, "SELECT seq FROM cursors WHERE name = 'publisher'") < n &&
               now_s() - t0 < 600)
            h_sleep_ms(10);
        h_vigil_stop(env, SIGTERM);
        stored = h_js_stream_msgs(env, "AML_EVENTS");
    }
    fprintf(stderr,
            "bench 6: seed %ld events, %ld failed at connect/publish, %lld stored, %.0f ev/s "
            "while NATS was up (runs %s; %ld failed in the runs without outage); vigil %ld "
            "events, %lld stored after the outage\n",
            m, failed, seed_stored, seed_rate, seed_runs, clean_failed, n, stored);
    result *r = add_result("6", "Vigil vs. seed publish_event throughput", "x");
    r->value = vigil_rate / seed_rate;
    snprintf(r->target, sizeof r->target, ">= 50x");
    r->pass = r->value >= 50;
    snprintf(r->note, sizeof r->note,
             "seed's connect/publish/drain per event (C, core NATS): %.0f ev/s while NATS was up "
             "(median of %d runs: %s ev/s, the last the up phases of the outage run); Vigil: the "
             "median publisher rate of benchmark 3 (%.0f ev/s). NATS "
             "stopped (SIGTERM) for the middle third of the seed's %ld events: it lost %lld "
             "(%ld failed outright); Vigil, NATS stopped for 2 s after a third of %ld events: "
             "stream holds %lld, i.e. %lld lost",
             seed_rate, SEED_RUNS, seed_runs, vigil_rate, m, m - seed_stored, failed, n, stored,
             n - stored);
    result *l = add_result("6", "events lost across a NATS outage", "events");
    l->value = (double)(n - stored);
    l->reference = (double)(m - seed_stored);
    snprintf(l->ref_name, sizeof l->ref_name, "seed publish_event, of %ld", m);
    snprintf(l->target, sizeof l->target, "Vigil 0");
    l->pass = stored == n;
    snprintf(l->note, sizeof l->note, "see the line above; ratio is meaningless here");
}

/* ---- benchmark 3: publisher drain vs. raw async publish ------------------------------ */

/* The publisher's window: VIGIL_PUBLISH_WINDOW as `vigil serve` will read it
 * (the default is config.h's). The raw reference gets as many messages in
 * flight, so the two are compared at the same depth. */
static long publish_window(void)
{
    const char *w = getenv("VIGIL_PUBLISH_WINDOW");
    return w && atol(w) > 0 ? atol(w) : 4000;
}

/* Publishes evs into a fresh stream BENCH_RAW and returns the seconds until the
 * last ack. mode 0: pipelined (at most publish_window() in flight, the
 * reference); mode 1: stop-and-wait windows of that size like the publisher;
 * mode 2: those windows plus the publisher's Nats-Expected-Last-Sequence/-Msg-Id
 * headers. Modes 1 and 2 attribute the publisher's gap to the reference. */
static double raw_publish(natsConnection *nc, const ev *evs, long n, int mode)
{
    long win = publish_window();
    jsCtx *js = NULL;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = (int64_t)win;
    natsConnection_JetStream(&js, nc, &jo);
    js_drop(js, "BENCH_RAW");
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char *subj[] = {"bench.>"};
    sc.Name = "BENCH_RAW";
    sc.Subjects = subj;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Duplicates = 120LL * 1000000000LL;
    jsErrCode jerr = 0;
    if (js_AddStream(NULL, js, &sc, NULL, &jerr) != NATS_OK) {
        fprintf(stderr, "bench 3: add BENCH_RAW failed (%d)\n", (int)jerr);
        jsCtx_Destroy(js);
        return -1;
    }
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        char subject[96];
        snprintf(subject, sizeof subject, "bench.%s", evs[i].subject);
        natsMsg *m = NULL;
        natsMsg_Create(&m, subject, NULL, evs[i].body, evs[i].len);
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = evs[i].id;
        if (mode == 2 && i % win == 0)
            po.ExpectLastSeq = (uint64_t)i;
        else if (mode == 2)
            po.ExpectLastMsgId = evs[i - 1].id;
        if (js_PublishMsgAsync(js, &m, &po) != NATS_OK)
            fprintf(stderr, "bench 3: raw publish %ld failed\n", i);
        natsMsg_Destroy(m);
        if (mode && (i % win == win - 1 || i == n - 1)) {
            jsPubOptions ww;
            jsPubOptions_Init(&ww);
            ww.MaxWait = 60000;
            js_PublishAsyncComplete(js, &ww);
        }
    }
    jsPubOptions w;
    jsPubOptions_Init(&w);
    w.MaxWait = 60000;
    js_PublishAsyncComplete(js, &w);
    double el = now_s() - t0;
    jsCtx_Destroy(js);
    return el;
}

static void bench_publisher(int with_seed)
{
    const char *seq_only[] = {"VIGIL_ROLES=api,sequencer", NULL};
    const char *pub_only[] = {"VIGIL_ROLES=api,publisher", NULL};
    h_env *env = bench_start("3", seq_only, NULL);
    if (!env)
        return;
    char nstr[32];
    snprintf(nstr, sizeof nstr, "%ld", n_events);
    /* Events shaped like aml.transaction.created, written straight into the
     * outbox (what the triggers do), then sequenced by the running sequencer. */
    double t0 = now_s();
    if (h_db_exec(env,
                  "INSERT INTO outbox (event_id, event_type, subject, payload)"
                  " SELECT e, 'aml.transaction.created', 'transactions/' || e,"
                  " vigil_cloudevent(e, 'aml.transaction.created', 'transactions/' || e,"
                  "  jsonb_build_object('id', e, 'external_id', 'b-' || g, 'customer_id', "
                  "  gen_random_uuid(), 'amount', '125.50', 'currency', 'USD', 'amount_base', "
                  "  '125.5000', 'direction', 'in', 'channel', 'wire', 'counterparty', "
                  "  jsonb_build_object('name', 'ACME', 'account', 'DE0012', 'country', 'DE'),"
                  "  'occurred_at', '2026-01-15T10:00:00Z', 'ingested_at', now()))"
                  " FROM (SELECT g, gen_random_uuid() AS e FROM generate_series(1, $1::int) g) x",
                  nstr)) {
        h_teardown(env);
        return;
    }
    double t_ins = now_s() - t0;
    while (h_db_count(env, "SELECT coalesce(max(seq), 0) FROM event_log") < n_events &&
           now_s() - t0 < 900)
        h_sleep_ms(100);
    double t_seq = now_s() - t0 - t_ins;
    h_vigil_stop(env, SIGTERM);
    fprintf(stderr, "bench 3: %ld events inserted in %.1f s, sequenced in %.1f s\n", n_events,
            t_ins, t_seq);

    PGresult *res = PQexec(h_db(env), "SELECT event_id::text, event_type, payload::text FROM"
                                      " event_log ORDER BY seq");
    long n = PQntuples(res);
    ev *evs = calloc((size_t)n, sizeof *evs);
    for (long i = 0; i < n; i++) {
        snprintf(evs[i].id, sizeof evs[i].id, "%s", PQgetvalue(res, (int)i, 0));
        snprintf(evs[i].subject, sizeof evs[i].subject, "%s", PQgetvalue(res, (int)i, 1));
        evs[i].body = PQgetvalue(res, (int)i, 2);
        evs[i].len = PQgetlength(res, (int)i, 2);
    }
    /* What the publisher's reads alone cost: its window query over the log. */
    double read_s = now_s();
    for (long after = 0; after < n; after += 1000) {
        char a[32];
        snprintf(a, sizeof a, "%ld", after);
        const char *pp[] = {a, "1000"};
        PQclear(PQexecParams(h_db(env),
                             "SELECT seq, event_id, event_type, payload::text FROM event_log"
                             " WHERE seq > $1::bigint AND seq <= $1::bigint + $2::int ORDER BY seq",
                             2, NULL, pp, NULL, NULL, 0));
    }
    read_s = now_s() - read_s;
    natsConnection *nc = h_nats_connect(env);
    jsCtx *js = NULL;
    natsConnection_JetStream(&js, nc, NULL);
    double v[MAX_RUNS], ref[MAX_RUNS], win[MAX_RUNS], winx[MAX_RUNS], startup[MAX_RUNS];
    /* CPU per event (us) of the machine, nats-server, and vigil serve or this
     * process: where the publisher's rate goes on 2 shared cores. */
    double v_cpu[MAX_RUNS], v_nats[MAX_RUNS], v_vigil[MAX_RUNS];
    double x_cpu[MAX_RUNS], x_nats[MAX_RUNS], x_self[MAX_RUNS];
    int short_runs = 0; /* runs after which the stream did not hold every event */
    for (int i = 0; i < runs; i++) {
        double raw = raw_publish(nc, evs, n, 0);
        ref[i] = raw > 0 ? (double)n / raw : -1;
        double t = raw_publish(nc, evs, n, 1);
        win[i] = t > 0 ? (double)n / t : -1;
        cpu_meter m0, m1;
        cpu_read(getpid(), &m0);
        double nats0 = proc_cpu_s(env->nats_pid), self0 = proc_cpu_s(getpid());
        t = raw_publish(nc, evs, n, 2);
        cpu_read(getpid(), &m1);
        winx[i] = t > 0 ? (double)n / t : -1;
        x_cpu[i] = (m1.busy_s - m0.busy_s) * 1e6 / (double)n;
        x_nats[i] = (proc_cpu_s(env->nats_pid) - nats0) * 1e6 / (double)n;
        x_self[i] = (proc_cpu_s(getpid()) - self0) * 1e6 / (double)n;
        js_drop(js, "BENCH_RAW");
        js_drop(js, "AML_EVENTS");
        h_db_exec(env, "UPDATE cursors SET seq = 0 WHERE name = 'publisher'");
        double s0 = now_s();
        cpu_read(getpid(), &m0);
        nats0 = proc_cpu_s(env->nats_pid);
        if (h_vigil_start(env, pub_only))
            break;
        startup[i] = now_s() - s0;
        while (h_db_count(env, "SELECT seq FROM cursors WHERE name = 'publisher'") < n &&
               now_s() - s0 < 600)
            h_sleep_ms(10);
        double el = now_s() - s0;
        cpu_read(getpid(), &m1);
        v_cpu[i] = (m1.busy_s - m0.busy_s) * 1e6 / (double)n;
        v_nats[i] = (proc_cpu_s(env->nats_pid) - nats0) * 1e6 / (double)n;
        v_vigil[i] = proc_cpu_s(env->vigil_pid) * 1e6 / (double)n;
        h_vigil_stop(env, SIGTERM);
        long long stored = h_js_stream_msgs(env, "AML_EVENTS");
        if (stored != n)
            short_runs++;
        v[i] = (double)n / el;
        fprintf(stderr,
                "bench 3 run %d: publisher %.0f ev/s (%.2f s, stream holds %lld), raw %.0f "
                "msg/s (%.2f s); raw stop-and-wait %.0f msg/s, + expect headers %.0f msg/s; "
                "CPU us/event: publisher run %.1f (nats %.1f, vigil %.1f), raw+expect %.1f "
                "(nats %.1f, client %.1f)\n",
                i + 1, v[i], el, stored, ref[i], raw, win[i], winx[i], v_cpu[i], v_nats[i],
                v_vigil[i], x_cpu[i], x_nats[i], x_self[i]);
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    char rv[128], rr[128], rratio[128];
    runs_str(rv, sizeof rv, v, runs, "%.0f");
    runs_str(rr, sizeof rr, ref, runs, "%.0f");
    double ratio[MAX_RUNS];
    for (int i = 0; i < runs; i++)
        ratio[i] = ref[i] > 0 ? v[i] / ref[i] : 0;
    runs_str(rratio, sizeof rratio, ratio, runs, "%.2f");
    result *r = add_result("3", "publisher drain event_log->JetStream", "ev/s");
    r->value = median(v, runs);
    r->reference = median(ref, runs);
    snprintf(r->ref_name, sizeof r->ref_name, "raw js_PublishMsgAsync + Msg-Id");
    snprintf(r->target, sizeof r->target, ">= 80%% of reference");
    /* A rate counts only if the stream holds every event afterwards (the
     * publisher's cursor at N says JetStream acknowledged them; this is
     * JetStream's own count). Order and content are the tests' concern
     * (test_pipeline reads every message back). */
    r->pass = r->reference > 0 && r->value >= 0.8 * r->reference && short_runs == 0;
    snprintf(r->note, sizeof r->note,
             "%ld events; stream AML_EVENTS held all of them after %d of %d runs; runs: %s "
             "ev/s (from `vigil serve` start, roles api+publisher, to cursor = N, "
             "VIGIL_PUBLISH_WINDOW %ld); raw runs: %s msg/s (at most %ld in flight, same bodies "
             "and Msg-Ids, stream BENCH_RAW). Same raw publish in stop-and-wait windows of %ld "
             "(the publisher's window, but an ack per message): %.0f msg/s; plus the "
             "publisher's expected-last-seq/msg-id headers: %.0f msg/s (medians). Time to "
             "/healthz of `vigil serve` (included above): %.2f s (median). The publisher's "
             "per-window read (SELECT of a window, payload::text) alone, replayed over the "
             "whole log by this client: %.2f s. Per-run ratios (publisher / raw of the same "
             "run): %s, median %.2f. CPU per event (machine, us, medians): publisher run %.1f "
             "(nats-server %.1f, vigil serve %.1f, the rest, mostly PostgreSQL, %.1f); raw with "
             "expect headers %.1f (nats-server %.1f, this client %.1f)",
             n, runs - short_runs, runs, rv, publish_window(), rr, publish_window(),
             publish_window(), median(win, runs), median(winx, runs), median(startup, runs), read_s,
             rratio, median(ratio, runs), median(v_cpu, runs), median(v_nats, runs),
             median(v_vigil, runs),
             median(v_cpu, runs) - median(v_nats, runs) - median(v_vigil, runs),
             median(x_cpu, runs), median(x_nats, runs), median(x_self, runs));
    if (with_seed)
        bench_seed(env, evs, n, r->value);
    PQclear(res);
    free(evs);
    h_teardown(env);
}

/* ---- benchmark 4: end-to-end latency at a steady rate ---------------------------------- */

#define E2E_RATE 1000 /* the issue's rate; BENCH_E2E_RATE sets another (a variant) */
/* Open-loop senders; BENCH_E2E_SENDERS sets another count. 64: each sends
 * one request at a time, so 16 (until 2026-11-29) could keep 1,000 req/s
 * only while a request took under 16 ms, and reached 750-880 req/s. */
#define E2E_THREADS     64
#define E2E_MAX_THREADS 256

typedef struct e2e {
    h_env *env;
    const char **customers;
    long n;
    int rate;    /* requests per second, open loop */
    int senders; /* threads sending them (e2e_senders) */
    double t0;
    double *sent, *resp;    /* per index: request sent / 2xx response received */
    _Atomic double *recv;   /* per index: event delivered by the JetStream consumer */
    _Atomic double *stored; /* per index: stored by JetStream (its metadata; wall clock) */
    _Atomic double *sse;    /* per index: its frame read by the SSE client */
    double rt_off;          /* wall clock minus now_s(), read at the run's start */
    atomic_long failed;
    char tag[16], prefix[24]; /* external_id = TAG-b-INDEX, unique per run */
} e2e;

typedef struct e2e_worker {
    e2e *e;
    int k;
    pthread_t th;
} e2e_worker;

/* The run's index of an event (CloudEvent JSON) whose data.external_id is
 * TAG-b-INDEX of this run; -1 for any other event. */
static long e2e_index(const e2e *e, const json_t *event)
{
    const char *ext =
        json_string_value(json_object_get(json_object_get(event, "data"), "external_id"));
    size_t plen = strlen(e->prefix);
    if (!ext || strncmp(ext, e->prefix, plen) != 0)
        return -1;
    long i = atol(ext + plen);
    return i >= 0 && i < e->n ? i : -1;
}

static void e2e_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    e2e *e = closure;
    double t = now_s();
    json_t *j = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
    long i = e2e_index(e, j);
    if (i >= 0 && atomic_load(&e->recv[i]) == 0) {
        atomic_store(&e->recv[i], t);
        jsMsgMetaData *meta = NULL;
        if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
            atomic_store(&e->stored[i], (double)meta->Timestamp / 1e9);
            jsMsgMetaData_Destroy(meta);
        }
    }
    json_decref(j);
    natsMsg_Destroy(m);
}

/* benchmark 4's rate: E2E_RATE unless BENCH_E2E_RATE says otherwise. */
static int e2e_rate(void)
{
    const char *v = getenv("BENCH_E2E_RATE");
    return v && atoi(v) > 0 ? atoi(v) : E2E_RATE;
}

/* benchmark 4's sender threads: E2E_THREADS unless BENCH_E2E_SENDERS says
 * otherwise. Each sends one request at a time, so together they can keep
 * the schedule only while senders / rate exceeds a request's latency. */
static int e2e_senders(void)
{
    const char *v = getenv("BENCH_E2E_SENDERS");
    int n = v ? atoi(v) : 0;
    return n > 0 && n <= E2E_MAX_THREADS ? n : E2E_THREADS;
}

/* Open loop: request i is due at t0 + i / rate whatever happened before. */
static void *e2e_thread(void *arg)
{
    e2e_worker *w = arg;
    e2e *e = w->e;
    CURL *c = curl_easy_init();
    char url[192], auth[300], body[1024];
    snprintf(url, sizeof url, "%s/transactions", e->env->base_url);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", e->env->admin_key);
    struct curl_slist *hd = curl_slist_append(NULL, auth);
    hd = curl_slist_append(hd, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    for (long i = w->k; i < e->n; i += e->senders) {
        double due = e->t0 + (double)i / e->rate, wait = due - now_s();
        if (now_s() > e->t0 + 2.0 * seconds) /* far behind schedule: Vigil is saturated */
            break;
        if (wait > 0)
            usleep((useconds_t)(wait * 1e6));
        int len = tx_json(body, sizeof body, i, e->customers, e->tag);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
        e->sent[i] = now_s();
        long status = 0;
        CURLcode rc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (rc == CURLE_OK && status >= 200 && status < 300)
            e->resp[i] = now_s();
        else
            atomic_fetch_add(&e->failed, 1);
    }
    curl_slist_free_all(hd);
    curl_easy_cleanup(c);
    return NULL;
}

/* A run of n = rate * seconds requests tagged KIND+RUN, with its per-request
 * timestamps allocated; e2e_free releases them. */
static void e2e_init(e2e *e, h_env *env, const char **cust, int rate, const char *kind, int run)
{
    *e = (e2e){.env = env,
               .customers = cust,
               .n = (long)rate * seconds,
               .rate = rate,
               .senders = e2e_senders()};
    e->sent = calloc((size_t)e->n, sizeof(double));
    e->resp = calloc((size_t)e->n, sizeof(double));
    e->recv = calloc((size_t)e->n, sizeof(_Atomic double));
    e->stored = calloc((size_t)e->n, sizeof(_Atomic double));
    e->sse = calloc((size_t)e->n, sizeof(_Atomic double));
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    e->rt_off = (double)rt.tv_sec + (double)rt.tv_nsec / 1e9 - now_s();
    snprintf(e->tag, sizeof e->tag, "%.8s%d", kind, run);
    snprintf(e->prefix, sizeof e->prefix, "%s-b-", e->tag);
}

/* Sends the run's requests from e->senders open-loop senders, starting in
 * 0.1 s; returns when they are done. */
static void e2e_send(e2e *e)
{
    e->t0 = now_s() + 0.1;
    e2e_worker w[E2E_MAX_THREADS];
    for (int k = 0; k < e->senders; k++) {
        w[k] = (e2e_worker){.e = e, .k = k};
        pthread_create(&w[k].th, NULL, e2e_thread, &w[k]);
    }
    for (int k = 0; k < e->senders; k++)
        pthread_join(w[k].th, NULL);
}

static void e2e_free(e2e *e)
{
    free(e->sent);
    free(e->resp);
    free((void *)e->recv);
    free((void *)e->stored);
    free((void *)e->sse);
}

/* One /events/stream client beside the JetStream consumer: records when each
 * of the run's aml.transaction.ingested frames arrives (the harness's reader
 * thread stamps it as it parses the frame). */
typedef struct e2e_sse {
    e2e *e;
    h_sse *s;
    atomic_int stop;
    pthread_t th;
} e2e_sse;

static void *e2e_sse_thread(void *arg)
{
    e2e_sse *x = arg;
    while (!atomic_load(&x->stop)) {
        h_sse_event fr;
        int r = h_sse_next(x->s, &fr, 100);
        if (r < 0)
            break;
        if (r == 0)
            continue;
        long i = e2e_index(x->e, fr.json);
        if (i >= 0 && atomic_load(&x->e->sse[i]) == 0)
            atomic_store(&x->e->sse[i], fr.at);
        h_sse_event_free(&fr);
    }
    return NULL;
}

static double pct(double *v, long n, double q)
{
    return n ? v[(long)((double)(n - 1) * q)] : -1;
}

/* Where commit -> event goes, per event of a run (PostgreSQL's commit
 * timestamps, track_commit_timestamp=on in this benchmark's server, and
 * JetStream's stored time; all on this machine's wall clock): the ingest
 * commit -> its HTTP answer at the client; -> the sequencer's commit that
 * put the event in event_log; -> stored in the stream by the publisher;
 * -> delivered to the consumer. p50s in st50, p99s in st99 (ms). */
enum { ST_ANSWER, ST_SEQUENCE, ST_PUBLISH, ST_DELIVER, ST_SSE, N_STAGES };
static const char *const stage_name[N_STAGES] = {
    "ingest commit -> HTTP answer", "ingest commit -> sequencer commit",
    "sequencer commit -> stored in JetStream", "stored -> delivered to the consumer",
    "sequencer commit -> read by the SSE client"};

static int e2e_stages(e2e *e, double st50[N_STAGES], double st99[N_STAGES])
{
    char like[40];
    snprintf(like, sizeof like, "%s%%", e->prefix);
    const char *p[] = {like};
    PGresult *res =
        PQexecParams(h_db(e->env),
                     "SELECT t.external_id, extract(epoch FROM pg_xact_commit_timestamp(t.xmin)),"
                     " extract(epoch FROM pg_xact_commit_timestamp(l.xmin))"
                     " FROM transactions t JOIN event_log l ON l.subject = t.id::text"
                     "  AND l.event_type = 'aml.transaction.ingested'"
                     " WHERE t.external_id LIKE $1",
                     1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(stderr, "bench 4: stage breakdown: %s", PQerrorMessage(h_db(e->env)));
        PQclear(res);
        return -1;
    }
    long rows = PQntuples(res), m = 0;
    double *v[N_STAGES];
    for (int k = 0; k < N_STAGES; k++)
        v[k] = malloc((size_t)(rows ? rows : 1) * sizeof(double));
    size_t plen = strlen(e->prefix);
    for (long r = 0; r < rows; r++) {
        long i = atol(PQgetvalue(res, r, 0) + plen);
        if (PQgetisnull(res, r, 1) || PQgetisnull(res, r, 2) || i < 0 || i >= e->n ||
            e->resp[i] <= 0 || atomic_load(&e->recv[i]) <= 0 || atomic_load(&e->stored[i]) <= 0 ||
            atomic_load(&e->sse[i]) <= 0)
            continue;
        double commit = atof(PQgetvalue(res, r, 1)), seq = atof(PQgetvalue(res, r, 2));
        double stored = atomic_load(&e->stored[i]);
        v[ST_ANSWER][m] = (e->resp[i] + e->rt_off - commit) * 1000;
        v[ST_SEQUENCE][m] = (seq - commit) * 1000;
        v[ST_PUBLISH][m] = (stored - seq) * 1000;
        v[ST_DELIVER][m] = (atomic_load(&e->recv[i]) + e->rt_off - stored) * 1000;
        v[ST_SSE][m] = (atomic_load(&e->sse[i]) + e->rt_off - seq) * 1000;
        m++;
    }
    PQclear(res);
    for (int k = 0; k < N_STAGES; k++) {
        qsort(v[k], (size_t)m, sizeof(double), cmp_double);
        st50[k] = pct(v[k], m, 0.5);
        st99[k] = pct(v[k], m, 0.99);
        free(v[k]);
    }
    return m > 0 ? 0 : -1;
}

/* The last seq once the log has stopped growing (outbox empty, head unchanged
 * for 1 s; at most 30 s). */
static long long quiet_head(h_env *env)
{
    long long head = -1;
    double t0 = now_s(), since = now_s();
    while (now_s() - t0 < 30) {
        long long h = h_db_count(env, "SELECT coalesce(max(seq), 0) FROM event_log");
        long long ob = h_db_count(env, "SELECT count(*) FROM outbox");
        if (h != head || ob != 0) {
            head = h;
            since = now_s();
        } else if (now_s() - since >= 1.0) {
            break;
        }
        h_sleep_ms(100);
    }
    return head;
}

/* One untimed run of the same requests (same transactions, same times)
 * before the timed runs of a latency benchmark. The first run otherwise
 * measured another load: its transactions are the first in each customer's
 * rule windows, so they open alerts (later runs add to the open ones) and
 * the risk consumer re-scores those customers. Benchmark 5 on 2026-11-29:
 * 2,216 events in run 1 against 1,076 and 1,062 in runs 2 and 3. */
static void warm_run(h_env *env, const char **cust, int rate)
{
    e2e e;
    e2e_init(&e, env, cust, rate, "warm", 0);
    e2e_send(&e);
    if (atomic_load(&e.failed))
        fprintf(stderr, "bench: warm-up: %ld requests failed\n", (long)atomic_load(&e.failed));
    e2e_free(&e);
    quiet_head(env);
}

static void bench_e2e(void)
{
    const char *pg_extra[] = {"track_commit_timestamp=on", NULL};
    h_env *env = bench_env(pg_extra);
    if (env && h_vigil_start(env, NULL)) {
        fprintf(stderr, "bench 4: setup failed\n");
        h_teardown(env);
        env = NULL;
    }
    if (!env)
        return;
    const char **cust = make_customers(env);
    if (cust)
        warm_run(env, cust, e2e_rate());
    natsConnection *nc = h_nats_connect(env);
    jsCtx *js = NULL;
    natsConnection_JetStream(&js, nc, NULL);
    double p50[MAX_RUNS], p99[MAX_RUNS], rate[MAX_RUNS], s50[MAX_RUNS], s99[MAX_RUNS];
    double x50[MAX_RUNS], x99[MAX_RUNS]; /* commit -> the SSE client */
    long sse_lost_total = 0;
    double st50[N_STAGES][MAX_RUNS], st99[N_STAGES][MAX_RUNS];
    int staged = 0;
    long lost_total = 0;
    long long unseen_lag = 0, unseen_drop = 0;
    int done = 0;
    for (int r = 0; r < runs && cust; r++) {
        drain_time(env, 60);
        e2e e;
        e2e_init(&e, env, cust, e2e_rate(), "e2e", r);
        /* A fresh ephemeral push consumer per run: only new events. */
        natsSubscription *sub = NULL;
        jsSubOptions so;
        jsSubOptions_Init(&so);
        so.Stream = "AML_EVENTS";
        so.Config.DeliverPolicy = js_DeliverNew;
        so.Config.AckPolicy = js_AckNone;
        jsErrCode jerr = 0;
        if (js_Subscribe(&sub, js, "aml.transaction.ingested", e2e_on_msg, &e, NULL, &so, &jerr) !=
            NATS_OK) {
            fprintf(stderr, "bench 4: subscribe failed (%d)\n", (int)jerr);
            e2e_free(&e);
            break;
        }
        char path[128];
        snprintf(path, sizeof path, "/events/stream?type=aml.transaction.ingested&after=%lld",
                 h_db_count(env, "SELECT coalesce(max(seq), 0) FROM event_log"));
        long sse_status = 0;
        e2e_sse sx = {.e = &e};
        sx.s = h_sse_open(env, env->admin_key, path, NULL, &sse_status);
        if (!sx.s || pthread_create(&sx.th, NULL, e2e_sse_thread, &sx) != 0) {
            fprintf(stderr, "bench 4: /events/stream did not open (%ld)\n", sse_status);
            h_sse_close(sx.s);
            natsSubscription_Destroy(sub);
            e2e_free(&e);
            break;
        }
        e2e_send(&e);
        double last_sent = now_s();
        long nsent = 0;
        for (long i = 0; i < e.n; i++)
            nsent += e.sent[i] > 0;
        rate[r] = (double)nsent / (last_sent - e.t0);
        /* Wait (at most 30 s) for the events of every accepted request. */
        for (long i = 0; i < e.n && now_s() - last_sent < 30; i++)
            while (e.resp[i] > 0 && (atomic_load(&e.recv[i]) == 0 || atomic_load(&e.sse[i]) == 0) &&
                   now_s() - last_sent < 30)
                h_sleep_ms(5);
        atomic_store(&sx.stop, 1);
        pthread_join(sx.th, NULL);
        h_sse_close(sx.s);
        long long lag_end = publish_lag(env);
        int dropped = 0;
        {
            int64_t d = 0;
            natsSubscription_GetDropped(sub, &d);
            dropped = (int)d;
        }
        natsSubscription_Unsubscribe(sub);
        natsSubscription_Destroy(sub);
        double *lc = malloc((size_t)e.n * sizeof(double)),
               *ls = malloc((size_t)e.n * sizeof(double)),
               *lx = malloc((size_t)e.n * sizeof(double));
        long m = 0, lost = 0, mx = 0, sse_lost = 0;
        for (long i = 0; i < e.n; i++) {
            double rv = atomic_load(&e.recv[i]), sv = atomic_load(&e.sse[i]);
            if (e.resp[i] > 0 && rv > 0) {
                lc[m] = (rv - e.resp[i]) * 1000;
                ls[m++] = (rv - e.sent[i]) * 1000;
            } else if (e.resp[i] > 0)
                lost++;
            if (e.resp[i] > 0 && sv > 0)
                lx[mx++] = (sv - e.resp[i]) * 1000;
            else if (e.resp[i] > 0)
                sse_lost++;
        }
        qsort(lx, (size_t)mx, sizeof(double), cmp_double);
        x50[r] = pct(lx, mx, 0.5);
        x99[r] = pct(lx, mx, 0.99);
        sse_lost_total += sse_lost;
        qsort(lc, (size_t)m, sizeof(double), cmp_double);
        qsort(ls, (size_t)m, sizeof(double), cmp_double);
        p50[r] = pct(lc, m, 0.5);
        p99[r] = pct(lc, m, 0.99);
        s50[r] = pct(ls, m, 0.5);
        s99[r] = pct(ls, m, 0.99);
        lost_total += lost;
        fprintf(stderr,
                "bench 4 run %d: %.0f req/s offered, %ld failed, %ld events not seen in 30 s; "
                "commit->event p50 %.2f ms p99 %.2f ms; send->event p50 %.2f p99 %.2f ms; then: "
                "publish lag %lld, consumer-side drops %d\n",
                r + 1, rate[r], atomic_load(&e.failed), lost, p50[r], p99[r], s50[r], s99[r],
                lag_end, dropped);
        fprintf(stderr,
                "bench 4 run %d: commit->SSE client p50 %.2f ms p99 %.2f ms, %ld events not "
                "seen on the stream in 30 s\n",
                r + 1, x50[r], x99[r], sse_lost);
        unseen_lag += lag_end;
        unseen_drop += dropped;
        double a50[N_STAGES], a99[N_STAGES];
        if (e2e_stages(&e, a50, a99) == 0) {
            for (int k = 0; k < N_STAGES; k++) {
                st50[k][staged] = a50[k];
                st99[k][staged] = a99[k];
                fprintf(stderr, "bench 4 run %d: %s p50 %.2f ms p99 %.2f ms\n", r + 1,
                        stage_name[k], a50[k], a99[k]);
            }
            staged++;
        }
        free(lc);
        free(ls);
        free(lx);
        e2e_free(&e);
        done++;
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    if (done == runs) {
        char r50[128], r99[128], rr[128];
        runs_str(r50, sizeof r50, p50, runs, "%.2f");
        runs_str(r99, sizeof r99, p99, runs, "%.2f");
        runs_str(rr, sizeof rr, rate, runs, "%.0f");
        /* The target is stated at E2E_RATE: another rate is reported, labelled,
         * and never counted as met. */
        int rate_now = e2e_rate(), variant = rate_now != E2E_RATE;
        static const char *const what[4] = {"p50", "p99", "p50 to an SSE client",
                                            "p99 to an SSE client"};
        char nm[4][96];
        for (int k = 0; k < 4; k++)
            snprintf(nm[k], sizeof nm[k], "end-to-end %s at %d tx/s%s", what[k], rate_now,
                     variant ? " (VARIANT)" : "");
        result *a = add_bounded("4", nm[0], "ms", median(p50, runs), "<=", 3);
        snprintf(a->note, sizeof a->note,
                 "HTTP 2xx response (the commit is visible to the client) -> event delivered to "
                 "an ephemeral JetStream push consumer on aml.transaction.ingested; %d "
                 "open-loop senders at %d req/s scheduled (stopped after 2x the run time when "
                 "behind), achieved %s req/s; p50 per run %s ms; "
                 "from request sent instead: p50 %.2f ms, p99 %.2f ms (medians); %ld accepted "
                 "transactions' events not seen within 30 s (summed over runs; at that moment the "
                 "publish lag was %lld in total and the client library had dropped %lld "
                 "deliveries)",
                 e2e_senders(), rate_now, rr, r50, median(s50, runs), median(s99, runs), lost_total,
                 unseen_lag, unseen_drop);
        result *b = add_bounded("4", nm[1], "ms", median(p99, runs), "<=", 15);
        int at = snprintf(b->note, sizeof b->note, "p99 per run %s ms", r99);
        if (staged == runs) {
            at += snprintf(b->note + at, sizeof b->note - (size_t)at,
                           ". Where it goes (p50 / p99 per event, medians of runs; PostgreSQL "
                           "commit timestamps and JetStream's stored time):");
            for (int k = 0; k < N_STAGES && at < (int)sizeof b->note; k++)
                at += snprintf(b->note + at, sizeof b->note - (size_t)at, " %s %.2f / %.2f ms;",
                               stage_name[k], median(st50[k], runs), median(st99[k], runs));
        }
        char x50s[128], x99s[128];
        runs_str(x50s, sizeof x50s, x50, runs, "%.2f");
        runs_str(x99s, sizeof x99s, x99, runs, "%.2f");
        result *c = add_bounded("4", nm[2], "ms", median(x50, runs), "<=", 3);
        snprintf(c->note, sizeof c->note,
                 "the same runs and requests: HTTP 2xx response -> the aml.transaction.ingested "
                 "frame read by one /events/stream client (type filter, opened at the log's head "
                 "before each run; libcurl in the harness, stamped as each frame is parsed); p50 "
                 "per run %s ms; %ld accepted transactions' frames not seen within 30 s (summed "
                 "over runs)",
                 x50s, sse_lost_total);
        result *d = add_bounded("4", nm[3], "ms", median(x99, runs), "<=", 15);
        snprintf(d->note, sizeof d->note, "p99 per run %s ms", x99s);
        if (variant)
            a->pass = b->pass = c->pass = d->pass = 0;
    }
    free_customers(cust);
    h_teardown(env);
}

/* ---- benchmark 5: SSE fan-out to 1,000 clients ---------------------------------------- */

#define SSE_CLIENTS 1000
#define SSE_READERS 2   /* epoll threads in this process, each owning half of the clients */
#define SSE_RATE    100 /* single-transaction POSTs per second (BENCH_SSE_RATE) */
#define SSE_BUF     (256 * 1024)

enum { SSE_HDR, SSE_CHUNK_SIZE, SSE_CHUNK_DATA, SSE_CHUNK_CRLF, SSE_RAW, SSE_DONE };

/* What the first client of a reader to see an event learned from its data. */
typedef struct sse_info {
    double created; /* the CloudEvent's "time", on this process's monotonic clock */
    long tx;        /* index of the POST that caused it (aml.transaction.ingested), or -1 */
    uint64_t hash;  /* FNV-1a of the data line: every client must get the same bytes */
    int seen;
} sse_info;

typedef struct sse_bench sse_bench;

typedef struct sse_conn {
    int fd, state, chunked, status, ready, closed;
    long chunk_left, crlf_left;
    char hdr[4096];
    size_t hlen;
    char *line;
    size_t llen, lcap;
    long ev_seq;
    int ev_ingested;
    uint64_t ev_hash;
    atomic_long last; /* last seq received in order */
    long dup, gaps, badhash, nrecv;
    double *arr; /* arrival time by seq - base - 1 (0 = not received) */
    long cap;
} sse_conn;

typedef struct sse_reader {
    sse_bench *b;
    int ep;
    sse_info *info;
    long icap;
    double cpu_s;
    pthread_t th;
} sse_reader;

struct sse_bench {
    long base;        /* every client starts after this seq */
    char prefix[32];  /* "\"TAG-b-": this run's external ids */
    double real2mono; /* monotonic = realtime + real2mono */
    atomic_int ready, refused, stop;
    sse_conn *conns;
    int nconns;
    sse_reader rd[SSE_READERS];
};

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

/* Grows a zero-filled array of `size`-byte elements to hold index i. */
static void *grow_zero(void *a, long *cap, long i, size_t size)
{
    if (i < *cap)
        return a;
    long c = *cap ? *cap : 1024;
    while (c <= i)
        c *= 2;
    char *n = realloc(a, (size_t)c * size);
    if (!n)
        abort();
    memset(n + (size_t)*cap * size, 0, (size_t)(c - *cap) * size);
    *cap = c;
    return n;
}

/* "2026-11-27T23:44:56.709807Z" -> seconds since the epoch; -1 when malformed. */
static double parse_ts(const char *s)
{
    struct tm tm = {0};
    int us = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%6dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &us) != 7)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (double)timegm(&tm) + us / 1e6;
}

static void sse_line(sse_reader *r, sse_conn *c, char *l, size_t n, double t)
{
    sse_bench *b = r->b;
    if (n == 0) { /* end of an event */
        if (c->ev_seq > 0) {
            long seq = c->ev_seq, last = atomic_load_explicit(&c->last, memory_order_relaxed);
            if (seq <= last) {
                c->dup++;
            } else {
                if (seq != last + 1)
                    c->gaps += seq - last - 1;
                atomic_store_explicit(&c->last, seq, memory_order_relaxed);
                long k = seq - b->base - 1;
                if (k >= 0) {
                    c->arr = grow_zero(c->arr, &c->cap, k, sizeof *c->arr);
                    c->arr[k] = t;
                    c->nrecv++;
                    r->info = grow_zero(r->info, &r->icap, k, sizeof *r->info);
                    if (r->info[k].seen && r->info[k].hash != c->ev_hash)
                        c->badhash++;
                }
            }
        }
        c->ev_seq = 0;
        c->ev_ingested = 0;
        return;
    }
    l[n] = '\0';
    if (strncmp(l, "id: ", 4) == 0) {
        c->ev_seq = atol(l + 4);
    } else if (strncmp(l, "event: ", 7) == 0) {
        c->ev_ingested = strcmp(l + 7, "aml.transaction.ingested") == 0;
    } else if (strncmp(l, "data: ", 6) == 0) {
        c->ev_hash = fnv1a(l + 6, n - 6);
        long k = c->ev_seq - b->base - 1;
        if (k < 0)
            return;
        r->info = grow_zero(r->info, &r->icap, k, sizeof *r->info);
        sse_info *in = &r->info[k];
        if (in->seen)
            return;
        in->seen = 1;
        in->hash = c->ev_hash;
        in->tx = -1;
        /* The envelope's "time" is its last such key: "data" sorts before it. */
        const char *tm = NULL;
        for (const char *p = l; (p = strstr(p, "\"time\": \"")); p++)
            tm = p + 9;
        double real = tm ? parse_ts(tm) : -1;
        in->created = real > 0 ? real + b->real2mono : 0;
        const char *x = c->ev_ingested ? strstr(l, b->prefix) : NULL;
        if (x)
            in->tx = atol(x + strlen(b->prefix));
    } else if (strncmp(l, "retry:", 6) == 0 && !c->ready) {
        c->ready = 1;
        atomic_fetch_add(&b->ready, 1);
    }
}

/* Body bytes: SSE lines. */
static void sse_bytes(sse_reader *r, sse_conn *c, const char *p, size_t n, double t)
{
    while (n) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        if (c->llen + take + 1 > c->lcap) {
            c->lcap = (c->llen + take + 1) * 2;
            if (!(c->line = realloc(c->line, c->lcap)))
                abort();
        }
        memcpy(c->line + c->llen, p, take);
        c->llen += take;
        if (!nl)
            return;
        size_t ln = c->llen;
        if (ln && c->line[ln - 1] == '\r')
            ln--;
        sse_line(r, c, c->line, ln, t);
        c->llen = 0;
        p += take + 1;
        n -= take + 1;
    }
}

/* Raw socket bytes: HTTP/1.1 response head, then chunked (or plain) body. */
static void sse_feed(sse_reader *r, sse_conn *c, const char *p, size_t n, double t)
{
    while (n && c->state != SSE_DONE) {
        if (c->state == SSE_HDR || c->state == SSE_CHUNK_SIZE) {
            const char *nl = memchr(p, '\n', n);
            size_t take = nl ? (size_t)(nl - p) + 1 : n;
            if (c->hlen + take >= sizeof c->hdr) {
                c->state = SSE_DONE;
                return;
            }
            memcpy(c->hdr + c->hlen, p, take);
            c->hlen += take;
            c->hdr[c->hlen] = '\0';
            p += take;
            n -= take;
            if (!nl)
                continue;
            if (c->state == SSE_HDR) {
                if (c->hlen >= 4 && strcmp(c->hdr + c->hlen - 4, "\r\n\r\n") == 0) {
                    c->status = atoi(c->hdr + 9);
                    c->chunked = strcasestr(c->hdr, "transfer-encoding: chunked") != NULL;
                    if (c->status == 200)
                        c->hlen = 0;
                    if (c->status != 200) {
                        if (atomic_fetch_add(&r->b->refused, 1) < 3)
                            fprintf(stderr, "bench 5: stream refused: %.300s\n", c->hdr);
                        c->state = SSE_DONE;
                    } else {
                        c->state = c->chunked ? SSE_CHUNK_SIZE : SSE_RAW;
                    }
                }
            } else {
                c->chunk_left = strtol(c->hdr, NULL, 16);
                c->hlen = 0;
                c->state = c->chunk_left > 0 ? SSE_CHUNK_DATA : SSE_DONE;
            }
        } else if (c->state == SSE_CHUNK_DATA) {
            size_t take = (size_t)c->chunk_left < n ? (size_t)c->chunk_left : n;
            sse_bytes(r, c, p, take, t);
            c->chunk_left -= (long)take;
            p += take;
            n -= take;
            if (!c->chunk_left) {
                c->state = SSE_CHUNK_CRLF;
                c->crlf_left = 2;
            }
        } else if (c->state == SSE_CHUNK_CRLF) {
            size_t take = (size_t)c->crlf_left < n ? (size_t)c->crlf_left : n;
            c->crlf_left -= (long)take;
            p += take;
            n -= take;
            if (!c->crlf_left)
                c->state = SSE_CHUNK_SIZE;
        } else { /* SSE_RAW */
            sse_bytes(r, c, p, n, t);
            n = 0;
        }
    }
}

static void *sse_reader_main(void *arg)
{
    sse_reader *r = arg;
    char *buf = malloc(SSE_BUF);
    struct epoll_event evs[64];
    while (buf && !atomic_load(&r->b->stop)) {
        int n = epoll_wait(r->ep, evs, 64, 100);
        for (int i = 0; i < n; i++) {
            sse_conn *c = evs[i].data.ptr;
            ssize_t k = read(c->fd, buf, SSE_BUF);
            if (k > 0) {
                sse_feed(r, c, buf, (size_t)k, now_s());
            } else if (k == 0 || (errno != EAGAIN && errno != EINTR)) {
                epoll_ctl(r->ep, EPOLL_CTL_DEL, c->fd, NULL);
                c->closed = 1;
            }
        }
    }
    free(buf);
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    r->cpu_s = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    return NULL;
}

/* Opens one stream: blocking connect and request, then non-blocking reads by
 * reader `rd`. 0 on success. */
static int sse_connect(h_env *env, sse_bench *b, sse_conn *c, sse_reader *rd)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)env->http_port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    atomic_store(&c->last, b->base);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        return -1;
    char req[512];
    int len = snprintf(req, sizeof req,
                       "GET /events/stream?after=%ld HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                       "Authorization: Bearer %s\r\nAccept: text/event-stream\r\n\r\n",
                       b->base, env->http_port, env->admin_key);
    if (write(c->fd, req, (size_t)len) != len)
        return -1;
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    struct epoll_event pev = {.events = EPOLLIN, .data.ptr = c};
    return epoll_ctl(rd->ep, EPOLL_CTL_ADD, c->fd, &pev);
}

static void bench_sse(void)
{
    int sse_rate = getenv("BENCH_SSE_RATE") ? atoi(getenv("BENCH_SSE_RATE")) : SSE_RATE;
    if (sse_rate < 1)
        sse_rate = SSE_RATE;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < SSE_CLIENTS + 512) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* All streams use the admin key: lift the per-key cap (a deployment's
     * 1,000 dashboards would hold many keys) and the total cap. */
    char maxc[64], maxk[64];
    snprintf(maxc, sizeof maxc, "VIGIL_SSE_MAX_CLIENTS=%d", 3 * SSE_CLIENTS);
    snprintf(maxk, sizeof maxk, "VIGIL_SSE_MAX_PER_KEY=%d", 3 * SSE_CLIENTS);
    const char *extra[] = {maxc, maxk, NULL};
    h_env *env = bench_start("5", extra, NULL);
    if (!env)
        return;
    const char **cust = make_customers(env);
    if (cust)
        warm_run(env, cust, sse_rate);
    double p50[MAX_RUNS], p99[MAX_RUNS], pmax[MAX_RUNS], c99[MAX_RUNS], spread99[MAX_RUNS],
        first99[MAX_RUNS], rate[MAX_RUNS], conn_s[MAX_RUNS];
    long bad_total = 0, events_total = 0, clients_ok_min = SSE_CLIENTS, deliveries = 0;
    double rd_cpu = 0, vg_cpu = 0, run_wall = 0;
    int done = 0;
    for (int run = 0; run < runs && cust; run++) {
        sse_bench *b = calloc(1, sizeof *b);
        b->nconns = SSE_CLIENTS;
        b->conns = calloc(SSE_CLIENTS, sizeof *b->conns);
        b->base = quiet_head(env);
        long stale = sse_open_streams(env); /* the previous run's, if not yet closed */
        struct timespec rt;
        clock_gettime(CLOCK_REALTIME, &rt);
        b->real2mono = now_s() - ((double)rt.tv_sec + (double)rt.tv_nsec / 1e9);
        e2e e;
        e2e_init(&e, env, cust, sse_rate, "sse", run);
        snprintf(b->prefix, sizeof b->prefix, "\"%s", e.prefix);
        for (int k = 0; k < SSE_READERS; k++) {
            b->rd[k].b = b;
            b->rd[k].ep = epoll_create1(EPOLL_CLOEXEC);
            pthread_create(&b->rd[k].th, NULL, sse_reader_main, &b->rd[k]);
        }
        double t_conn = now_s();
        int opened = 0;
        for (int i = 0; i < SSE_CLIENTS; i++) {
            b->conns[i].fd = -1;
            if (sse_connect(env, b, &b->conns[i], &b->rd[i % SSE_READERS]) == 0)
                opened++;
        }
        while (atomic_load(&b->ready) + atomic_load(&b->refused) < opened && now_s() - t_conn < 60)
            h_sleep_ms(10);
        conn_s[run] = now_s() - t_conn;
        int ready = atomic_load(&b->ready);
        h_sleep_ms(500);
        double cpu0 = proc_cpu_s(env->vigil_pid);
        e2e_send(&e);
        double t_end = now_s();
        long nsent = 0;
        for (long i = 0; i < e.n; i++)
            nsent += e.resp[i] > 0;
        rate[run] = (double)nsent / (t_end - e.t0);
        long long final = quiet_head(env);
        /* Every client must reach the final head (at most 30 s more). */
        double tw = now_s();
        for (int i = 0; i < SSE_CLIENTS && now_s() - tw < 30; i++)
            while (b->conns[i].ready && !b->conns[i].closed &&
                   atomic_load(&b->conns[i].last) < final && now_s() - tw < 30)
                h_sleep_ms(10);
        double cpu1 = proc_cpu_s(env->vigil_pid);
        atomic_store(&b->stop, 1);
        double rcpu = 0;
        for (int k = 0; k < SSE_READERS; k++) {
            pthread_join(b->rd[k].th, NULL);
            rcpu += b->rd[k].cpu_s;
        }
        long nev = final - b->base;
        /* Merge what the readers learned about each event. */
        sse_info *info = calloc((size_t)(nev > 0 ? nev : 1), sizeof *info);
        for (long k = 0; k < nev; k++)
            for (int j = 0; j < SSE_READERS; j++)
                if (k < b->rd[j].icap && b->rd[j].info[k].seen) {
                    if (info[k].seen && info[k].hash != b->rd[j].info[k].hash)
                        bad_total++; /* two clients got different bytes for one event */
                    if (!info[k].seen)
                        info[k] = b->rd[j].info[k];
                }
        size_t cap = (size_t)SSE_CLIENTS * (size_t)(nev > 0 ? nev : 1);
        double *lc = malloc(cap * sizeof *lc), *lt = malloc(cap * sizeof *lt);
        double *sp = malloc((size_t)(nev > 0 ? nev : 1) * sizeof *sp),
               *fst = malloc((size_t)(nev > 0 ? nev : 1) * sizeof *fst);
        long mc = 0, mt = 0, ms = 0, mf = 0, missing = 0, dups = 0, badhash = 0, gaps = 0;
        int clients_ok = 0;
        for (int i = 0; i < SSE_CLIENTS; i++) {
            sse_conn *c = &b->conns[i];
            long miss = 0;
            for (long k = 0; c->ready && k < nev; k++)
                miss += !(k < c->cap && c->arr[k] > 0);
            missing += miss;
            dups += c->dup;
            gaps += c->gaps;
            badhash += c->badhash;
            clients_ok += c->ready && !miss && !c->dup && !c->gaps && !c->badhash;
        }
        for (long k = 0; k < nev; k++) {
            double lo = 1e300, hi = 0;
            long tx = info[k].tx;
            double resp = tx >= 0 && tx < e.n ? e.resp[tx] : 0;
            for (int i = 0; i < SSE_CLIENTS; i++) {
                sse_conn *c = &b->conns[i];
                double t = k < c->cap ? c->arr[k] : 0;
                if (t <= 0)
                    continue;
                lo = t < lo ? t : lo;
                hi = t > hi ? t : hi;
                if (resp > 0)
                    lc[mc++] = (t - resp) * 1000;
                if (info[k].created > 0)
                    lt[mt++] = (t - info[k].created) * 1000;
            }
            if (hi > 0) {
                sp[ms++] = (hi - lo) * 1000;
                if (resp > 0)
                    fst[mf++] = (lo - resp) * 1000;
            }
        }
        qsort(lc, (size_t)mc, sizeof *lc, cmp_double);
        qsort(lt, (size_t)mt, sizeof *lt, cmp_double);
        qsort(sp, (size_t)ms, sizeof *sp, cmp_double);
        qsort(fst, (size_t)mf, sizeof *fst, cmp_double);
        p50[run] = pct(lc, mc, 0.5);
        p99[run] = pct(lc, mc, 0.99);
        pmax[run] = mc ? lc[mc - 1] : -1;
        c99[run] = pct(lt, mt, 0.99);
        spread99[run] = pct(sp, ms, 0.99);
        first99[run] = pct(fst, mf, 0.99);
        long bad = missing + dups + badhash + (SSE_CLIENTS - ready);
        bad_total += bad;
        events_total += nev;
        deliveries += mt;
        clients_ok_min = clients_ok < clients_ok_min ? clients_ok : clients_ok_min;
        rd_cpu += rcpu;
        vg_cpu += cpu1 - cpu0;
        run_wall += now_s() - e.t0;
        fprintf(stderr,
                "bench 5 run %d: %d/%d streams open in %.2f s (%d refused, %ld open before); "
                "%.0f tx/s sent; "
                "%ld events (seq %ld..%lld), %ld deliveries timed; commit->client p50 %.2f p99 "
                "%.2f max %.2f ms; created->client p99 %.2f ms; commit->first client p99 %.2f "
                "ms; spread first->last client p99 %.2f ms; %d clients complete, %ld missing, "
                "%ld duplicate/out of order, %ld gaps, %ld content mismatches; CPU s: readers "
                "%.2f, vigil %.2f\n",
                run + 1, ready, SSE_CLIENTS, conn_s[run], atomic_load(&b->refused), stale,
                rate[run], nev, b->base + 1, final, mt, p50[run], p99[run], pmax[run], c99[run],
                first99[run], spread99[run], clients_ok, missing, dups, gaps, badhash, rcpu,
                cpu1 - cpu0);
        free(lc);
        free(lt);
        free(sp);
        free(fst);
        free(info);
        for (int i = 0; i < SSE_CLIENTS; i++) {
            if (b->conns[i].fd >= 0)
                close(b->conns[i].fd);
            free(b->conns[i].arr);
            free(b->conns[i].line);
        }
        for (int k = 0; k < SSE_READERS; k++) {
            close(b->rd[k].ep);
            free(b->rd[k].info);
        }
        free(b->conns);
        free(b);
        e2e_free(&e);
        done++;
        h_sleep_ms(2000); /* the hub notices the closed streams within a tick */
    }
    if (done == runs) {
        char r50[128], r99[128], rmax[128], rr[128], rc[128];
        runs_str(r50, sizeof r50, p50, runs, "%.2f");
        runs_str(r99, sizeof r99, p99, runs, "%.2f");
        runs_str(rmax, sizeof rmax, pmax, runs, "%.2f");
        runs_str(rr, sizeof rr, rate, runs, "%.0f");
        runs_str(rc, sizeof rc, conn_s, runs, "%.2f");
        result *a =
            add_bounded("5", "SSE fan-out p99, 1000 clients", "ms", median(p99, runs), "<=", 100);
        snprintf(a->note, sizeof a->note,
                 "%d `/events/stream` clients (raw HTTP/1.1, chunked, 2 epoll threads in the "
                 "bench), %d tx/s offered by single POSTs for %d s (achieved %s tx/s); latency = "
                 "HTTP 2xx of the POST -> the aml.transaction.ingested frame parsed at each "
                 "client, over every (client, event) pair: p99 per run %s ms, p50 %s ms, max %s "
                 "ms; from the event's CloudEvent time (every event): p99 %.2f ms; commit -> "
                 "first client p99 %.2f ms, first -> last client p99 %.2f ms (medians); streams "
                 "open in %s s; CPU over the runs: bench readers %.1f s, vigil serve %.1f s of "
                 "%.1f s wall; VIGIL_SSE_MAX_CLIENTS and VIGIL_SSE_MAX_PER_KEY=%d (one key)",
                 SSE_CLIENTS, sse_rate, seconds, rr, r99, r50, rmax, median(c99, runs),
                 median(first99, runs), median(spread99, runs), rc, rd_cpu, vg_cpu, run_wall,
                 3 * SSE_CLIENTS);
        result *m = add_result("5", "SSE clients missing/dup/reordered events", "events");
        m->value = (double)bad_total;
        snprintf(m->target, sizeof m->target, "0: all, once, in order");
        m->pass = bad_total == 0;
        snprintf(m->note, sizeof m->note,
                 "summed over %d runs of %d clients: events not received + received twice or out "
                 "of order + data differing between clients + clients that never connected; "
                 "%ld events (%ld client deliveries) checked; fewest complete clients in a run: "
                 "%ld of %d",
                 runs, SSE_CLIENTS, events_total, deliveries, clients_ok_min, SSE_CLIENTS);
    }
    free_customers(cust);
    h_teardown(env);
}

/* ---- benchmark 8: cost per event as the history grows ----------------------------------- */

#define HIST_CHUNK 500000 /* rows per COPY transaction while generating history */
#define HIST_STMTS 64     /* statements remembered per size */
#define HIST_SIZES 4

/* Markdown appended to the report after the details (benchmark 8's plans). */
static char *appendix;
static size_t app_len, app_cap;

static void appendf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void appendf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (app_len + (size_t)n + 1 > app_cap) {
        app_cap = (app_len + (size_t)n + 1) * 2;
        if (!(appendix = realloc(appendix, app_cap)))
            abort();
    }
    va_start(ap, fmt);
    vsnprintf(appendix + app_len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    app_len += (size_t)n;
}

static uint64_t rng_s = 0x5eed0f1a57c0ffeeULL;

static uint64_t rng64(void) /* splitmix64 */
{
    uint64_t z = (rng_s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void uuid_text(char out[37], uint64_t a, uint64_t b)
{
    b = (b & 0x3FFFFFFFFFFFFFFFULL) | 0x8000000000000000ULL; /* variant 10 */
    snprintf(out, 37, "%08llx-%04llx-%04llx-%04llx-%012llx", (unsigned long long)(a >> 32),
             (unsigned long long)((a >> 16) & 0xFFFF), (unsigned long long)(a & 0xFFFF),
             (unsigned long long)(b >> 48), (unsigned long long)(b & 0xFFFFFFFFFFFFULL));
}

static void uuid4(char out[37])
{
    uint64_t a = rng64(), b = rng64();
    uuid_text(out, (a & ~0xF000ULL) | 0x4000ULL, b); /* version 4 */
}

/* A UUID version 7 made at Unix time `ms`, as vigil_uuid7() makes event and
 * row ids since 0013_time_ordered_ids.sql: 48-bit big-endian ms, version 7,
 * variant 10, the rest random. */
static void uuid7(char out[37], uint64_t ms)
{
    uint64_t a = rng64(), b = rng64();
    uuid_text(out, (ms & 0xFFFFFFFFFFFFULL) << 16 | 0x7000ULL | (a & 0x0FFFULL), b);
}

static void hex32(char out[65], const unsigned char *h)
{
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hx[h[i] >> 4];
        out[2 * i + 1] = hx[h[i] & 15];
    }
    out[64] = '\0';
}

static int copy_end(PGconn *db, const char *what)
{
    int ok = PQputCopyEnd(db, NULL) == 1;
    PGresult *r;
    while ((r = PQgetResult(db))) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            ok = 0;
        PQclear(r);
    }
    if (!ok)
        fprintf(stderr, "bench 8: COPY %s: %s\n", what, PQerrorMessage(db));
    return ok ? 0 : -1;
}

static int copy_begin(PGconn *db, const char *sql)
{
    PGresult *r = PQexec(db, sql);
    int ok = PQresultStatus(r) == PGRES_COPY_IN;
    if (!ok)
        fprintf(stderr, "bench 8: %s: %s\n", sql, PQerrorMessage(db));
    PQclear(r);
    return ok ? 0 : -1;
}

/* Appends `count` events to event_log after its current head, chained
 * exactly as vigil_sequence() chains them (0006_event_log.sql: sha256 of the
 * predecessor's hash and "seq\nid\ntype\nsubject\npayload::text"; the payload
 * is written in jsonb's own text form, keys ordered by length then bytes, so
 * payload::text gives back these bytes), through COPY with the append-only
 * triggers in place; plus the processed_events row the webhooks consumer
 * (subject aml.>) writes for every event. Events are shaped like
 * aml.transaction.ingested, with version 7 ids of their own time (2026-01-01
 * on, 50 a second), so the history is older than every event the run writes.
 * 0 on success. */
static int gen_history(h_env *env, long count)
{
    PGconn *db = h_db(env);
    PGresult *r = PQexec(db, "SELECT seq, encode(hash, 'hex') FROM event_log ORDER BY seq DESC"
                             " LIMIT 1");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        return -1;
    }
    long seq = 0;
    unsigned char hin[2048];
    memset(hin, 0, 32); /* hin[0..31] = the predecessor's hash */
    if (PQntuples(r)) {
        seq = atol(PQgetvalue(r, 0, 0));
        const char *h = PQgetvalue(r, 0, 1);
        for (int i = 0; i < 32; i++)
            sscanf(h + 2 * i, "%2hhx", &hin[i]);
    }
    PQclear(r);
    static const char *chans[] = {"wire", "card", "ach", "cash", "crypto", "other"};
    size_t cap = 1 << 20;
    char *buf = malloc(cap + 4096), (*ids)[37] = malloc((size_t)HIST_CHUNK * 37);
    int rc = buf && ids ? 0 : -1;
    for (long done = 0; rc == 0 && done < count;) {
        long n = count - done < HIST_CHUNK ? count - done : HIST_CHUNK, first = seq + 1;
        if (h_db_exec(env, "BEGIN; SET LOCAL synchronous_commit = off") ||
            copy_begin(db, "COPY event_log (seq, event_id, event_type, subject, payload,"
                           " prev_hash, hash) FROM STDIN")) {
            rc = -1;
            break;
        }
        size_t len = 0;
        for (long i = 0; i < n && rc == 0; i++) {
            char tx[37], cu[37], when[40], pl[1024], ph[65], hh[65];
            unsigned char hash[32];
            seq++;
            time_t t = 1767225600 + seq / 50; /* 2026-01-01, 50 events a second */
            /* Event and transaction ids are made when the event is (version
             * 7, as the system writes them now); the customers predate the
             * history and their ids are in no index of it. */
            uint64_t ms = (uint64_t)t * 1000 + (uint64_t)(seq % 50) * 20;
            uuid7(ids[i], ms);
            uuid7(tx, ms);
            uuid4(cu);
            struct tm tm;
            gmtime_r(&t, &tm);
            int wl = (int)strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
            snprintf(when + wl, sizeof when - (size_t)wl, ".%06ldZ", (seq % 50) * 20000);
            uint64_t x = rng64();
            char amount[24];
            snprintf(amount, sizeof amount, "%llu.%02llu", 10 + (unsigned long long)(x % 12000),
                     (unsigned long long)((x >> 20) % 100));
            int pn = snprintf(
                pl, sizeof pl,
                "{\"id\": \"%s\", \"seq\": %ld, \"data\": {\"id\": \"%s\", \"amount\": \"%s\", "
                "\"channel\": \"%s\", \"currency\": \"USD\", \"direction\": \"%s\", "
                "\"amount_base\": \"%s00\", \"customer_id\": \"%s\", \"external_id\": \"h-%ld\", "
                "\"ingested_at\": \"%s\", \"occurred_at\": \"%s\", \"counterparty\": {\"name\": "
                "\"ACME\", \"account\": \"DE0012\", \"country\": \"DE\"}}, \"time\": \"%s\", "
                "\"type\": \"aml.transaction.ingested\", \"source\": \"/vigil\", \"subject\": "
                "\"%s\", \"specversion\": \"1.0\", \"datacontenttype\": \"application/json\"}",
                ids[i], seq, tx, amount, chans[(x >> 30) % 6], (x >> 40) & 1 ? "in" : "out", amount,
                cu, seq, when, when, when, tx);
            int hn = snprintf((char *)hin + 32, sizeof hin - 32,
                              "%ld\n%s\naml.transaction.ingested\n%s\n%s", seq, ids[i], tx, pl);
            SHA256(hin, 32 + (size_t)hn, hash);
            hex32(ph, hin);
            hex32(hh, hash);
            memcpy(hin, hash, 32);
            len +=
                (size_t)snprintf(buf + len, cap + 4096 - len,
                                 "%ld\t%s\taml.transaction.ingested\t%s\t%.*s\t\\\\x%s\t\\\\x%s\n",
                                 seq, ids[i], tx, pn, pl, ph, hh);
            if (len >= cap) {
                rc = PQputCopyData(db, buf, (int)len) == 1 ? 0 : -1;
                len = 0;
            }
        }
        if (rc == 0 && len)
            rc = PQputCopyData(db, buf, (int)len) == 1 ? 0 : -1;
        if (copy_end(db, "event_log") || rc)
            rc = -1;
        if (rc == 0 && copy_begin(db, "COPY processed_events (consumer, event_id, seq) FROM STDIN"))
            rc = -1;
        len = 0;
        for (long i = 0; rc == 0 && i < n; i++) {
            len += (size_t)snprintf(buf + len, cap + 4096 - len, "webhooks\t%s\t%ld\n", ids[i],
                                    first + i);
            if (len >= cap || i == n - 1) {
                rc = PQputCopyData(db, buf, (int)len) == 1 ? 0 : -1;
                len = 0;
            }
        }
        if (rc == 0 && copy_end(db, "processed_events"))
            rc = -1;
        if (rc == 0 && h_db_exec(env, "COMMIT"))
            rc = -1;
        if (rc)
            h_db_exec(env, "ROLLBACK");
        done += n;
    }
    free(buf);
    free(ids);
    return rc;
}

/* Recomputes, with the database's own vigil_event_hash, the junction with the
 * old head, the new head and 2,000 random rows of [from, to]; returns the
 * number that do not chain (0 = the generated history is a valid chain). */
static long long check_chain(h_env *env, long from, long to)
{
    size_t cap = 64 * 2100;
    char *arr = malloc(cap);
    size_t off = (size_t)snprintf(arr, cap, "{%ld,%ld", from, to);
    for (int i = 0; i < 2000; i++)
        off += (size_t)snprintf(arr + off, cap - off, ",%ld",
                                from + (long)(rng64() % (uint64_t)(to - from + 1)));
    snprintf(arr + off, cap - off, "}");
    long long bad = h_db_count(
        env,
        "SELECT count(*) FILTER (WHERE e.hash IS DISTINCT FROM vigil_event_hash(e.prev_hash,"
        " e.seq, e.event_id, e.event_type, e.subject, e.payload) OR e.prev_hash IS DISTINCT FROM"
        " coalesce(p.hash, decode(repeat('00', 32), 'hex'))) + (SELECT count(*) FROM"
        " unnest($1::bigint[]) s WHERE NOT EXISTS (SELECT 1 FROM event_log WHERE seq = s))"
        " FROM event_log e LEFT JOIN event_log p ON p.seq = e.seq - 1"
        " WHERE e.seq = ANY($1::bigint[])",
        arr);
    free(arr);
    return bad;
}

/* The publisher's cursor and the stream's tail at the new head, as after a
 * history that was published long ago and has left the stream (retention):
 * the head event itself is stored, with its Vigil-Seq header, so the
 * publisher's tail check finds the stream and the cursor in agreement. */
static int mark_published(h_env *env)
{
    PGresult *r = PQexec(h_db(env), "SELECT seq, event_id::text, event_type, payload::text FROM"
                                    " event_log ORDER BY seq DESC LIMIT 1");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        PQclear(r);
        return -1;
    }
    natsConnection *nc = h_nats_connect(env);
    jsCtx *js = NULL;
    natsMsg *m = NULL;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = PQgetvalue(r, 0, 1);
    jsErrCode jerr = 0;
    natsStatus s = nc ? natsConnection_JetStream(&js, nc, NULL) : NATS_ERR;
    if (s == NATS_OK)
        s = natsMsg_Create(&m, PQgetvalue(r, 0, 2), NULL, PQgetvalue(r, 0, 3),
                           PQgetlength(r, 0, 3));
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Vigil-Seq", PQgetvalue(r, 0, 0));
    if (s == NATS_OK)
        s = js_PublishMsg(NULL, js, m, &po, &jerr);
    natsMsg_Destroy(m);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    int rc = s == NATS_OK ? h_db_exec(env,
                                      "UPDATE cursors SET seq = $1::bigint WHERE name ="
                                      " 'publisher'",
                                      PQgetvalue(r, 0, 0))
                          : -1;
    if (s != NATS_OK)
        fprintf(stderr, "bench 8: stream tail marker: %s (%d)\n", natsStatus_GetText(s), (int)jerr);
    PQclear(r);
    return rc;
}

/* Total execution time (ms) and shared buffers of the statements matching
 * the regular expression `re`. */
static void stmt_stat(h_env *env, const char *re, double *ms, double *blocks)
{
    char *v = h_db_text(env,
                        "SELECT coalesce(sum(total_exec_time), 0) || ' ' ||"
                        " coalesce(sum(shared_blks_hit + shared_blks_read), 0)"
                        " FROM pg_stat_statements WHERE query ~ $1",
                        re);
    *ms = v ? atof(v) : 0;
    *blocks = v && strchr(v, ' ') ? atof(strchr(v, ' ') + 1) : 0;
    free(v);
}

/* The sequencer's work on event_log (nested in vigil_sequence): its head
 * lookup and the append. Its other part, the DELETE from the outbox, does
 * not see the history (the outbox is a queue; its cost is in the statement
 * table). */
#define SEQ_STMT "^(INSERT INTO event_log \\(seq|SELECT e\\.seq, e\\.hash FROM event_log)"
#define SEQ_ALL  "^SELECT moved, last_seq.* FROM vigil_sequence\\("
#define PUB_STMT                                                                                   \
    "^(WITH saved AS \\(UPDATE cursors .*\\) )?SELECT seq, event_id, event_type, payload::text "   \
    "FROM event_log"

typedef struct hist_stmt {
    char id[32];
    double us, blocks, reads; /* per event of the workload; reads: not in shared buffers */
    long calls;
    char text[112];
} hist_stmt;

typedef struct hist_size {
    long rows;
    double evps, seq_us, seq_blk, seq_all_us, pub_us, gen_s, vac_s;
    long events; /* of the workload runs, summed */
    char runs_ev[96], runs_seq[96];
    int nst;
    hist_stmt st[HIST_STMTS];
} hist_size;

/* 1,000 customers of their own for one run: the rule engine's windows look
 * at each customer's earlier transactions (all with the same occurred_at
 * here), so reusing customers would make every run costlier than the one
 * before, whatever the size of event_log. Returns the ids, or NULL. */
static const char **hist_customers(h_env *env, const char *tag)
{
    if (h_db_exec(env,
                  "INSERT INTO customers (full_name, country, external_id)"
                  " SELECT 'Bench ' || g, 'DE', $1 || '-c' || g FROM generate_series(1, 1000) g",
                  tag))
        return NULL;
    PGresult *r;
    const char *p[] = {tag};
    r = PQexecParams(h_db(env),
                     "SELECT id::text FROM customers WHERE starts_with(external_id, $1 || '-c')"
                     " ORDER BY external_id",
                     1, NULL, p, NULL, NULL, 0);
    const char **c = NULL;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == N_CUSTOMERS) {
        c = calloc(N_CUSTOMERS, sizeof *c);
        for (int i = 0; i < N_CUSTOMERS; i++)
            c[i] = strdup(PQgetvalue(r, i, 0));
    } else {
        fprintf(stderr, "bench 8: customers: %s\n", PQerrorMessage(h_db(env)));
    }
    PQclear(r);
    return c;
}

/* One run of the fixed workload; 0 on success. */
static int hist_run(h_env *env, const char *tag, long ntx, double *evps, double *seq_us,
                    double *seq_blk, double *seq_all_us, double *pub_us, long *events)
{
    const char **cust = hist_customers(env, tag);
    if (!cust)
        return -1;
    drain_time(env, 120);
    long long s0 = h_db_count(env, "SELECT coalesce(max(seq), 0) FROM event_log");
    double q0, qb0, p0, pb0, q1, qb1, p1, pb1, a0, ab0, a1, ab1;
    stmt_stat(env, SEQ_STMT, &q0, &qb0);
    stmt_stat(env, SEQ_ALL, &a0, &ab0);
    stmt_stat(env, PUB_STMT, &p0, &pb0);
    worker w[BATCH_CLIENT];
    double t0 = now_s();
    for (int i = 0; i < BATCH_CLIENT; i++) {
        w[i] = (worker){.env = env,
                        .customers = cust,
                        .idx = i,
                        .per_request = BATCH,
                        .max_requests = ntx / BATCH / BATCH_CLIENT,
                        .deadline = t0 + 600,
                        .tag = tag};
        pthread_create(&w[i].th, NULL, http_worker, &w[i]);
    }
    long failed = 0;
    for (int i = 0; i < BATCH_CLIENT; i++) {
        pthread_join(w[i].th, NULL);
        failed += w[i].failed;
    }
    double d = drain_time(env, 300);
    double el = now_s() - t0;
    long long nev = h_db_count(env, "SELECT coalesce(max(seq), 0) FROM event_log") - s0;
    free_customers(cust);
    if (failed || d < 0 || nev <= 0) {
        fprintf(stderr, "bench 8: run %s: %ld requests failed, drained %s\n", tag, failed,
                d < 0 ? "NOT within 300 s" : "yes");
        return -1;
    }
    stmt_stat(env, SEQ_STMT, &q1, &qb1);
    stmt_stat(env, SEQ_ALL, &a1, &ab1);
    stmt_stat(env, PUB_STMT, &p1, &pb1);
    *seq_all_us = (a1 - a0) * 1000 / (double)nev;
    *evps = (double)nev / el;
    *events += (long)nev;
    *seq_us = (q1 - q0) * 1000 / (double)nev;
    *seq_blk = (qb1 - qb0) / (double)nev;
    *pub_us = (p1 - p0) * 1000 / (double)nev;
    return 0;
}

static void hist_stmts(h_env *env, hist_size *hs)
{
    /* A statement is its queryid *and* its level: the risk consumer's
     * top-level INSERT INTO processed_events and the same INSERT nested in
     * the webhooks consumer's function (vigil_consume_webhooks, since 0016
     * vigil_consume_webhooks_many; PL/pgSQL variables become parameters)
     * share a queryid, and matching them across sizes by queryid alone compared one
     * with the other (a false "grew with the log", 0.08 -> 1.0 calls per
     * event, in three runs). */
    PGresult *r = PQexec(h_db(env), "SELECT queryid::text || CASE WHEN toplevel THEN 't' ELSE"
                                    " 'n' END, calls, total_exec_time,"
                                    " (shared_blks_hit + shared_blks_read)::float8,"
                                    " left(regexp_replace(query, '\\s+', ' ', 'g'), 100),"
                                    " shared_blks_read::float8"
                                    " FROM pg_stat_statements WHERE calls >= 10 AND query NOT LIKE"
                                    " '%pg_stat_statements%' AND query NOT LIKE 'EXPLAIN%'"
                                    " ORDER BY total_exec_time DESC LIMIT 64");
    for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r); i++) {
        hist_stmt *s = &hs->st[hs->nst++];
        snprintf(s->id, sizeof s->id, "%s", PQgetvalue(r, i, 0));
        s->calls = atol(PQgetvalue(r, i, 1));
        s->us = atof(PQgetvalue(r, i, 2)) * 1000 / (double)(hs->events ? hs->events : 1);
        s->blocks = atof(PQgetvalue(r, i, 3)) / (double)(hs->events ? hs->events : 1);
        snprintf(s->text, sizeof s->text, "%s", PQgetvalue(r, i, 4));
        s->reads = atof(PQgetvalue(r, i, 5)) / (double)(hs->events ? hs->events : 1);
        for (char *p = s->text; *p; p++)
            if (*p == '|')
                *p = '/'; /* keeps the markdown table intact */
    }
    PQclear(r);
}

/* EXPLAIN (ANALYZE, BUFFERS) of the queries every event passes through, at
 * the current size, into the appendix. */
static void hist_explain(h_env *env, long rows)
{
    long long head = h_db_count(env, "SELECT coalesce(max(seq), 0) FROM event_log");
    char w[32];
    snprintf(w, sizeof w, "%lld", head - 1000 > 0 ? head - 1000 : 0);
    struct {
        const char *name, *sql;
    } q[] = {
        {"sequencer: head of the chain (inside vigil_sequence)",
         "SELECT e.seq, e.hash FROM event_log e ORDER BY e.seq DESC LIMIT 1"},
        {"health, metrics, publisher tail check, SSE start: last seq",
         "SELECT coalesce(max(seq), 0) FROM event_log"},
        {"publisher: one window of 1,000 events after its cursor",
         "SELECT seq, event_id, event_type, payload::text FROM event_log WHERE seq > $1::bigint"
         " AND seq <= $1::bigint + 1000 ORDER BY seq"},
        {"SSE hub / replay: event_log_scan of 1,000 after a seq",
         "SELECT seq, event_type, payload::text FROM event_log WHERE seq > $1::bigint AND"
         " (NULL::bigint IS NULL OR seq < NULL::bigint) AND (NULL::text IS NULL OR"
         " starts_with(event_type, NULL::text)) ORDER BY seq LIMIT 1000"},
        {"metrics: age of the oldest unpublished event",
         "SELECT e.recorded_at FROM event_log e, cursors c WHERE c.name = 'publisher' AND e.seq"
         " = c.seq + 1"},
        /* No EXPLAIN ANALYZE of an append to event_log: even rolled back it
         * would leave dead entries at the right edge of its indexes (VACUUM
         * may skip index cleanup), costing every later head lookup and append
         * extra pages. The append's buffers per event are in the table. */
        /* Event ids as events get them (0013_time_ordered_ids.sql). */
        {"consumer: processed_events row per event (rolled back)",
         "INSERT INTO processed_events (consumer, event_id, seq) SELECT 'webhooks',"
         " vigil_uuid7(), g FROM generate_series(1, 100) g ON CONFLICT DO NOTHING"},
    };
    appendf("\n#### event_log with %ld rows (%lld rows at the time of the plans)\n\n", rows, head);
    PGconn *db = h_db(env);
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        char sql[1024];
        snprintf(sql, sizeof sql, "EXPLAIN (ANALYZE, BUFFERS) %s", q[i].sql);
        const char *p[] = {w};
        PQclear(PQexec(db, "BEGIN"));
        PGresult *r = PQexecParams(db, sql, strstr(sql, "$1") ? 1 : 0, NULL, p, NULL, NULL, 0);
        appendf("%s:\n\n```\n", q[i].name);
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            for (int k = 0; k < PQntuples(r); k++)
                appendf("%s\n", PQgetvalue(r, k, 0));
        else
            appendf("EXPLAIN failed: %s", PQerrorMessage(db));
        appendf("```\n\n");
        PQclear(r);
        PQclear(PQexec(db, "ROLLBACK"));
    }
}

static void bench_history(void)
{
    const char *settings[] = {"shared_preload_libraries=pg_stat_statements",
                              "pg_stat_statements.track=all", "max_wal_size=8GB", NULL};
    h_env *env = bench_env(settings);
    const char *env_sizes = getenv("BENCH_HISTORY");
    long ntx = getenv("BENCH_HISTORY_TX") ? atol(getenv("BENCH_HISTORY_TX")) : 10000;
    if (ntx < BATCH * BATCH_CLIENT)
        ntx = BATCH * BATCH_CLIENT;
    long sizes[HIST_SIZES];
    int nsizes = 0;
    char sz[128];
    snprintf(sz, sizeof sz, "%s", env_sizes ? env_sizes : "0,1000000,10000000");
    for (char *t = strtok(sz, ","); t && nsizes < HIST_SIZES; t = strtok(NULL, ","))
        sizes[nsizes++] = atol(t);
    if (!env || h_db_exec(env, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements") ||
        h_vigil_start(env, NULL)) {
        fprintf(stderr, "bench 8: setup failed\n");
        h_teardown(env);
        return;
    }
    const char **cust = make_customers(env);
    static hist_size hs[HIST_SIZES];
    memset(hs, 0, sizeof hs);
    int ok = cust != NULL, done = 0;
    long long chain_bad = 0;
    appendf("\n### 8: EXPLAIN (ANALYZE, BUFFERS) of the per-event queries at each size\n\n"
            "Written by `make bench` (benchmark 8) from the run above. Buffers that grow with "
            "the log's size would show a query whose cost grows with history.\n");
    for (int si = 0; ok && si < nsizes; si++) {
        hist_size *h = &hs[si];
        h->rows = sizes[si];
        drain_time(env, 120);
        long long have = h_db_count(env, "SELECT count(*) FROM event_log");
        /* "0" means the log as it is before any history (the customers' events). */
        if (sizes[si] > have) {
            h_vigil_stop(env, SIGTERM);
            double t0 = now_s();
            long from = (long)have + 1;
            if (gen_history(env, sizes[si] - have) || mark_published(env)) {
                ok = 0;
                break;
            }
            h->gen_s = now_s() - t0;
            chain_bad += check_chain(env, from, sizes[si]);
            t0 = now_s();
            h_db_exec(env, "VACUUM (ANALYZE) event_log");
            h_db_exec(env, "VACUUM (ANALYZE) processed_events");
            h_db_exec(env, "CHECKPOINT");
            h->vac_s = now_s() - t0;
            fprintf(stderr,
                    "bench 8: event_log grown to %ld rows in %.1f s (COPY, chained), vacuum + "
                    "checkpoint %.1f s\n",
                    sizes[si], h->gen_s, h->vac_s);
            if (h_vigil_start(env, NULL)) {
                ok = 0;
                break;
            }
        }
        h->rows = (long)h_db_count(env, "SELECT count(*) FROM event_log");
        /* Past start-up (the SSE hub's first load of its ring, the
         * publisher's tail check), then count only the workload. */
        h_sleep_ms(3000);
        h_db_exec(env, "SELECT pg_stat_statements_reset()");
        double evr[MAX_RUNS], sq[MAX_RUNS], sb[MAX_RUNS], sa[MAX_RUNS], pb[MAX_RUNS];
        /* What the consumers did meanwhile: a redelivery storm would show
         * as calls of the processed_events insert, not as its cost. */
        static const char *const cm[] = {
            "vigil_consumer_processed_total{consumer=\"risk\"}",
            "vigil_consumer_duplicates_total{consumer=\"risk\"}",
            "vigil_consumer_redeliveries_total{consumer=\"risk\"}",
            "vigil_consumer_processed_total{consumer=\"webhooks\"}",
            "vigil_consumer_duplicates_total{consumer=\"webhooks\"}",
            "vigil_consumer_redeliveries_total{consumer=\"webhooks\"}"};
        double cm0[6];
        for (int k = 0; k < 6; k++)
            cm0[k] = metric_value(env, cm[k]);
        for (int i = 0; i < runs && ok; i++) {
            char tag[32];
            snprintf(tag, sizeof tag, "h%d-%d", si, i);
            if (hist_run(env, tag, ntx, &evr[i], &sq[i], &sb[i], &sa[i], &pb[i], &h->events)) {
                ok = 0;
                break;
            }
            fprintf(stderr,
                    "bench 8 at %ld rows, run %d: %.0f events/s through ingest+sequence+publish; "
                    "sequencer %.1f us/event in all, on event_log %.1f us/event (%.2f "
                    "buffers/event), publisher read %.1f us/event\n",
                    h->rows, i + 1, evr[i], sa[i], sq[i], sb[i], pb[i]);
        }
        if (!ok)
            break;
        fprintf(stderr, "bench 8 at %ld rows: consumers during the runs:", h->rows);
        for (int k = 0; k < 6; k++)
            fprintf(stderr, " %s +%.0f", cm[k] + strlen("vigil_consumer_"),
                    metric_value(env, cm[k]) - cm0[k]);
        fprintf(stderr, "\n");
        runs_str(h->runs_ev, sizeof h->runs_ev, evr, runs, "%.0f");
        runs_str(h->runs_seq, sizeof h->runs_seq, sq, runs, "%.1f");
        h->evps = median(evr, runs);
        h->seq_us = median(sq, runs);
        h->seq_blk = median(sb, runs);
        h->seq_all_us = median(sa, runs);
        h->pub_us = median(pb, runs);
        hist_stmts(env, h);
        hist_explain(env, h->rows);
        done++;
    }
    if (done == nsizes && nsizes >= 2) {
        hist_size *e0 = &hs[0];
        /* Statements whose buffers per call or mean time grew with the log. */
        char grew[1200] = "";
        size_t goff = 0;
        int ngrew = 0;
        appendf("\n#### Statements by total time at %ld rows: time and shared buffers per "
                "event of the workload at each size (pg_stat_statements, track=all, calls >= "
                "10)\n\n| statement |",
                hs[nsizes - 1].rows);
        for (int si = 0; si < nsizes; si++)
            appendf(" %ld rows: us / buffers / read |", hs[si].rows);
        appendf("\n| --- |");
        for (int si = 0; si < nsizes; si++)
            appendf(" --- |");
        appendf("\n");
        hist_size *hl = &hs[nsizes - 1];
        for (int k = 0; k < hl->nst; k++) {
            hist_stmt *s = &hl->st[k];
            if (k < 20) {
                appendf("| `%s` |", s->text);
                for (int si = 0; si < nsizes; si++) {
                    hist_stmt *m = NULL;
                    for (int j = 0; j < hs[si].nst; j++)
                        if (strcmp(hs[si].st[j].id, s->id) == 0)
                            m = &hs[si].st[j];
                    if (m)
                        appendf(" %.2f / %.3f / %.3f |", m->us, m->blocks, m->reads);
                    else
                        appendf(" - |");
                }
                appendf("\n");
            }
            /* Only the tables that differ between the sizes: a change in
             * another statement comes from other state (queue bloat) or load. */
            if ((!strstr(s->text, "event_log") && !strstr(s->text, "processed_events")) ||
                strstr(s->text, "count(*) FROM outbox")) /* this benchmark's own drain poll */
                continue;
            /* Growth with history is judged between the two largest sizes
             * (1M -> 10M by default): a statement whose cost grows with the
             * log (a scan) grows with the rows there, 10x; an index descent
             * grows by at most one level (one buffer per descent), which is
             * the logarithm a B-tree costs and not a cost of history. And
             * any rise in blocks read from outside shared buffers per event
             * (random pages of an index no longer cached) is flagged. */
            hist_size *hp = nsizes >= 3 ? &hs[nsizes - 2] : e0;
            for (int j = 0; j < hp->nst; j++) {
                hist_stmt *b = &hp->st[j];
                if (strcmp(b->id, s->id) != 0)
                    continue;
                int more_buf = s->blocks > 1.5 * b->blocks && s->blocks - b->blocks > 2.0;
                int more_reads = s->reads - b->reads > 0.2;
                if (more_buf || more_reads) {
                    ngrew++;
                    if (goff < sizeof grew)
                        goff += (size_t)snprintf(
                            grew + goff, sizeof grew - goff,
                            "%s`%.60s` %.2f -> %.2f buffers/event (%.3f -> %.3f read), %.1f -> "
                            "%.1f us/event, %.3f -> %.3f calls/event (more calls, e.g. "
                            "redeliveries, or dearer calls)",
                            ngrew > 1 ? "; " : "", s->text, b->blocks, s->blocks, b->reads,
                            s->reads, b->us, s->us,
                            hp->events ? (double)b->calls / (double)hp->events : 0,
                            hl->events ? (double)s->calls / (double)hl->events : 0);
                }
            }
        }
        for (int si = 1; si < nsizes; si++) {
            hist_size *h = &hs[si];
            char name[64], lbl[16];
            if (h->rows >= 1000000)
                snprintf(lbl, sizeof lbl, "%.0fM", (double)h->rows / 1e6);
            else
                snprintf(lbl, sizeof lbl, "%.0fk", (double)h->rows / 1e3);
            snprintf(name, sizeof name, "events/s with a %s-row event_log", lbl);
            result *r = add_result("8", name, "ev/s");
            r->value = h->evps;
            r->reference = e0->evps;
            snprintf(r->ref_name, sizeof r->ref_name, "same workload, %ld-row log", e0->rows);
            snprintf(r->target, sizeof r->target, "flat: >= 0.8x reference");
            r->pass = h->evps >= 0.8 * e0->evps;
            snprintf(r->note, sizeof r->note,
                     "%ld transactions per run (%d clients x %d per POST, all roles, rules "
                     "active) from the first POST until every event is sequenced and published "
                     "(publish lag 0); runs: %s ev/s (reference runs: %s). History made by COPY "
                     "in %.0f s (chained like vigil_sequence, 2,000 random rows and the "
                     "junction re-hashed by vigil_event_hash: %lld bad), VACUUM ANALYZE + "
                     "CHECKPOINT %.0f s",
                     ntx, BATCH_CLIENT, BATCH, h->runs_ev, e0->runs_ev, h->gen_s, chain_bad,
                     h->vac_s);
            result *q = add_result("8", "", "us/event");
            snprintf(q->name, sizeof q->name, "sequencer on event_log, us/event, %s rows", lbl);
            q->value = h->seq_us;
            q->reference = e0->seq_us;
            snprintf(q->ref_name, sizeof q->ref_name, "%ld-row log", e0->rows);
            snprintf(q->target, sizeof q->target, "flat: <= 1.25x reference");
            q->pass = h->seq_us <= 1.25 * e0->seq_us;
            snprintf(q->note, sizeof q->note,
                     "execution time, per event sequenced, of what vigil_sequence does on "
                     "event_log (its head lookup and the append, nested statements in "
                     "pg_stat_statements); runs: %s us (reference runs: %s). Whole "
                     "vigil_sequence call: %.1f us/event (reference %.1f; the rest is the "
                     "outbox DELETE and the hashing loop). The publisher's window read: %.1f "
                     "us/event (reference %.1f). Times move with the machine's load; the "
                     "buffers below do not",
                     h->runs_seq, e0->runs_seq, h->seq_all_us, e0->seq_all_us, h->pub_us,
                     e0->pub_us);
            result *qb = add_result("8", "", "buf/event");
            snprintf(qb->name, sizeof qb->name, "sequencer on event_log, buffers/event, %s rows",
                     lbl);
            qb->value = h->seq_blk;
            qb->reference = e0->seq_blk;
            snprintf(qb->ref_name, sizeof qb->ref_name, "%ld-row log", e0->rows);
            snprintf(qb->target, sizeof qb->target, "flat: <= 1.25x reference");
            qb->pass = h->seq_blk <= 1.25 * e0->seq_blk;
            snprintf(qb->note, sizeof qb->note,
                     "shared buffers (hit + read) of the same two statements per event sequenced "
                     "(median of the runs)");
        }
        result *g = add_result("8", "statements whose cost grew with the log", "stmts");
        g->value = ngrew;
        snprintf(g->target, sizeof g->target, "0");
        g->pass = ngrew == 0 && chain_bad == 0;
        snprintf(g->note, sizeof g->note,
                 "every statement on event_log or processed_events (the tables grown) with >= "
                 "10 calls at %ld and %ld rows (pg_stat_statements, nested statements "
                 "included), flagged when, per event of the workload, its shared buffers grew "
                 "more than 1.5x and by > 2 (more than one B-tree level per descent: cost "
                 "growing with the rows, not with their logarithm) or its blocks read from "
                 "outside shared buffers grew by > 0.2 (buffers, unlike times, do not depend "
                 "on the machine's load): %s. Per-statement table (us / buffers / read per "
                 "event at every size) and EXPLAIN (ANALYZE, BUFFERS) of the hot queries "
                 "after the table",
                 nsizes >= 3 ? hs[nsizes - 2].rows : e0->rows, hl->rows, ngrew ? grew : "none");
    } else {
        fprintf(stderr, "bench 8: incomplete (%d of %d sizes)\n", done, nsizes);
    }
    free_customers(cust);
    h_teardown(env);
}

/* ---- machine --------------------------------------------------------------------------- */

static double fsync_rate(const char *dir)
{
    char path[H_PATH_SIZE + 16], buf[8192];
    snprintf(path, sizeof path, "%s/fsync.tmp", dir);
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    memset(buf, 'x', sizeof buf);
    long n = 0;
    double t0 = now_s();
    while (now_s() - t0 < 2.0) {
        if (pwrite(fd, buf, sizeof buf, 0) != (ssize_t)sizeof buf || fdatasync(fd) != 0)
            break;
        n++;
    }
    double el = now_s() - t0;
    close(fd);
    unlink(path);
    return (double)n / el;
}

static void loadavg(char *out, size_t outsz)
{
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f || !fgets(out, (int)outsz, f))
        snprintf(out, outsz, "?");
    out[strcspn(out, "\n")] = '\0';
    if (f)
        fclose(f);
}

static void write_report(const char *out, const char *cmdline, double fsyncs, const char *load0)
{
    char load1[128];
    loadavg(load1, sizeof load1);
    char cpu[256] = "?", line[512];
    long memkib = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            snprintf(cpu, sizeof cpu, "%s", strchr(line, ':') + 2);
            cpu[strcspn(cpu, "\n")] = '\0';
            break;
        }
    if (f)
        fclose(f);
    f = fopen("/proc/meminfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "MemTotal:", 9) == 0)
            memkib = atol(line + 9);
    if (f)
        fclose(f);
    struct utsname u;
    uname(&u);
    time_t t = time(NULL);
    char when[64];
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime(&t));

    FILE *outs[2] = {stdout, out ? fopen(out, "w") : NULL};
    for (int k = 0; k < 2; k++) {
        FILE *o = outs[k];
        if (!o)
            continue;
        fprintf(o, "# Vigil benchmark results\n\n");
        fprintf(o, "Generated by `%s` on %s. Every number below comes from this run.\n\n", cmdline,
                when);
        fprintf(o,
                "Machine: %ld cores (%s), %.1f GiB RAM, %s %s; fdatasync rate of 8 KiB writes "
                "in the PostgreSQL data filesystem: %.0f/s.\n\n",
                sysconf(_SC_NPROCESSORS_ONLN), cpu, (double)memkib / 1048576.0, u.sysname,
                u.release, fsyncs);
        fprintf(o,
                "Load average (/proc/loadavg) before: %s; after: %s. The machine is shared: "
                "anything else running during the benchmark (other builds, test suites) "
                "lowers these numbers.\n\n",
                load0, load1);
        fprintf(o,
                "PostgreSQL 15 with fsync=on, full_page_writes=on, synchronous_commit=%s%s; "
                "nats-server with JetStream file storage; all on this machine (loopback). "
                "Value and reference are medians of %d runs (%d s per timed load run).\n\n",
                sync_commit, strcmp(sync_commit, "on") ? " (LABELLED VARIANT, not default)" : "",
                runs, seconds);
        const char *more = getenv("BENCH_PG");
        if (more && *more)
            fprintf(o, "LABELLED VARIANT: extra PostgreSQL settings from BENCH_PG: `%s`.\n\n",
                    more);
        if (e2e_rate() != E2E_RATE)
            fprintf(o,
                    "LABELLED VARIANT: benchmark 4 ran at %d transactions/s (BENCH_E2E_RATE); "
                    "its target is stated at %d, so its rows do not count as met.\n\n",
                    e2e_rate(), E2E_RATE);
        fprintf(o, "| # | benchmark | measured | reference (same run) | ratio | target | met |\n");
        fprintf(o, "| --- | --- | --- | --- | --- | --- | --- |\n");
        for (int i = 0; i < nresults; i++) {
            result *r = &results[i];
            char ref[128] = "-", ratio[32] = "-";
            if (r->reference >= 0) {
                snprintf(ref, sizeof ref, "%.*f (%s)", r->reference < 100 ? 2 : 0, r->reference,
                         r->ref_name);
                snprintf(ratio, sizeof ratio, "%.2f", r->value / r->reference);
            }
            fprintf(o, "| %s | %s | %.*f %s | %s | %s | %s | %s |\n", r->id, r->name,
                    r->value < 100 ? 2 : 0, r->value, r->unit, ref, ratio, r->target,
                    r->pass ? "yes" : "**NO**");
        }
        fprintf(o, "\nDetails:\n\n");
        for (int i = 0; i < nresults; i++)
            fprintf(o, "- %s %s: %s\n", results[i].id, results[i].name, results[i].note);
        if (appendix)
            fputs(appendix, o);
        if (o != stdout)
            fclose(o);
    }
}

int main(int argc, char **argv)
{
    int only = 0;
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = atoi(argv[++i]);
        else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
            out = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--only 1|2|3|4|5|6|7|8] [--out FILE]\n", argv[0]);
            return 2;
        }
    }
    if (getenv("BENCH_RUNS"))
        runs = atoi(getenv("BENCH_RUNS"));
    if (runs < 1 || runs > MAX_RUNS)
        runs = 3;
    if (getenv("BENCH_SECONDS"))
        seconds = atoi(getenv("BENCH_SECONDS"));
    if (getenv("BENCH_EVENTS"))
        n_events = atol(getenv("BENCH_EVENTS"));
    if (getenv("BENCH_SYNC_COMMIT"))
        sync_commit = getenv("BENCH_SYNC_COMMIT");
    curl_global_init(CURL_GLOBAL_ALL);
    /* The benchmarks drive vigil at full speed with one admin key: the
     * per-key rate limit (VIGIL_RATE_LIMIT) would measure itself instead. */
    setenv("VIGIL_RATE_LIMIT", "0", 0);

    char load0[128];
    loadavg(load0, sizeof load0);
    h_env *probe = h_env_new();
    double fsyncs = probe ? fsync_rate(probe->dir) : -1;
    h_teardown(probe);

    if (!only || only == 3 || only == 6)
        bench_publisher(!only || only == 6);
    if (!only || only == 1 || only == 7)
        bench_batch(!only || only == 7 || only == 1);
    if (!only || only == 2)
        bench_single();
    if (!only || only == 4)
        bench_e2e();
    if (!only || only == 5)
        bench_sse();
    if (!only || only == 8)
        bench_history();

    char cmdline[128];
    if (only)
        snprintf(cmdline, sizeof cmdline, "make bench ONLY=%d", only);
    else
        snprintf(cmdline, sizeof cmdline, "make bench");
    write_report(out, cmdline, fsyncs, load0);
    curl_global_cleanup();
    return 0;
}
