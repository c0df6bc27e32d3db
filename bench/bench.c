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
 *   6  the seed's publish_event (connect, fire-and-forget publish, drain per
 *      event) in C vs. Vigil's publisher, with NATS stopped for a while: events
 *      each loses and the throughput ratio.
 *   7  peak RSS (VmHWM) of `vigil serve` after benchmark 1.
 *
 * Usage: bench [--only N] [--out FILE]. BENCH_RUNS, BENCH_SECONDS (per timed
 * load run, default 10), BENCH_EVENTS (benchmark 3, default 200000) and
 * BENCH_SYNC_COMMIT=off (a labelled variant) tune it. Prints one table and
 * writes it, with the machine and the command, to FILE.
 */
#include "harness.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define MAX_RUNS     9
#define MAX_RESULTS  16
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
    char note[1024];
} result;

static result results[MAX_RESULTS];
static int nresults;
static int runs = 3;
static int seconds = 10;
static long n_events = 200000;
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

static void runs_str(char *out, size_t outsz, const double *v, int n, const char *fmt)
{
    size_t off = 0;
    out[0] = '\0';
    for (int i = 0; i < n && off < outsz; i++) {
        off += (size_t)snprintf(out + off, outsz - off, i ? ", " : "");
        off += (size_t)snprintf(out + off, outsz - off, fmt, v[i]);
    }
}

/* A fresh env with default durability (the harness turns it off for speed). */
static h_env *bench_env(void)
{
    h_env *env = h_env_new();
    if (!env)
        return NULL;
    char sc[64];
    snprintf(sc, sizeof sc, "synchronous_commit=%s", sync_commit);
    if (h_pg_set(env, "fsync=on") || h_pg_set(env, sc) || h_pg_set(env, "full_page_writes=on") ||
        h_pg_set(env, "max_connections=200") ||
        (getenv("BENCH_PROFILE") && h_pg_set(env, "track_functions=all")) || h_pg_start(env) ||
        h_nats_start(env) || h_migrate(env) ||
        h_key_create(env, "admin", env->admin_key, sizeof env->admin_key)) {
        h_mark_failed(env);
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

static int tx_json(char *buf, size_t bufsz, long i, const char **customers, const char *tag)
{
    char ext[48], amount[32];
    const char *cust, *dir, *chan;
    tx_fields(i, customers, ext, sizeof ext, &cust, amount, sizeof amount, &dir, &chan);
    return snprintf(
        buf, bufsz,
        "{\"external_id\":\"%s-%s\",\"customer_id\":\"%s\",\"amount\":\"%s\","
        "\"currency\":\"USD\",\"direction\":\"%s\",\"channel\":\"%s\","
        "\"counterparty\":{\"name\":\"ACME\",\"account\":\"DE0012\",\"country\":\"DE\"},"
        "\"occurred_at\":\"2026-01-15T10:00:00Z\"}",
        tag, ext, cust, amount, dir, chan);
}

static const char **make_customers(h_env *env)
{
    if (h_db_exec(env, "INSERT INTO customers (full_name, country, external_id)"
                       " SELECT 'Bench ' || g, 'DE', 'bench-c' || g"
                       " FROM generate_series(1, 1000) g"))
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
    while (now_s() < w->deadline) {
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
            char ext[48], amount[32];
            const char *cust, *dir, *chan;
            tx_fields(base + i, w->customers, ext, sizeof ext, &cust, amount, sizeof amount, &dir,
                      &chan);
            off += (size_t)snprintf(sql + off, cap - off,
                                    "%s('%s-%s','%s','%s','USD','%s','%s','%s','ACME','DE0012',"
                                    "'DE','2026-01-15T10:00:00Z')",
                                    i ? "," : "", w->tag, ext, cust, amount, amount, dir, chan);
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
}

/* ---- benchmark 1 (and 7): batch ingest ----------------------------------------- */

static void bench_batch(int with_rss)
{
    h_env *env = bench_env();
    if (!env || h_vigil_start(env, NULL) || h_db_exec(env, BARE_TABLE)) {
        fprintf(stderr, "bench 1: setup failed\n");
        h_teardown(env);
        return;
    }
    const char **cust = make_customers(env);
    double v[MAX_RUNS], ref[MAX_RUNS], lagmax[MAX_RUNS], drain[MAX_RUNS];
    lag_sampler ls;
    char waits[400] = "";
    long long alerts0 = h_db_count(env, "SELECT count(*) FROM alerts");
    for (int i = 0; i < runs && cust; i++) {
        char tag[16];
        drain_time(env, 60);
        snprintf(tag, sizeof tag, "v%d", i);
        sampler_start(&ls, env);
        v[i] = run_load(env, cust, http_worker, BATCH_CLIENT, BATCH, tag, NULL, NULL);
        sampler_stop(&ls);
        if (i == runs / 2)
            sampler_waits(&ls, waits, sizeof waits);
        lagmax[i] = (double)ls.max;
        drain[i] = drain_time(env, 120);
        snprintf(tag, sizeof tag, "r%d", i);
        ref[i] = run_load(env, cust, sql_worker, BATCH_CLIENT, BATCH, tag, NULL, NULL);
        fprintf(stderr,
                "bench 1 run %d: vigil %.0f tx/s (max lag %.0f, drained in %.2f s), bare "
                "INSERT %.0f rows/s\n",
                i + 1, v[i], lagmax[i], drain[i], ref[i]);
    }
    long long alerts = h_db_count(env, "SELECT count(*) FROM alerts") - alerts0;
    print_profile(env, "benchmark 1");
    char rv[128], rr[128], rl[128], rd[128];
    runs_str(rv, sizeof rv, v, runs, "%.0f");
    runs_str(rr, sizeof rr, ref, runs, "%.0f");
    runs_str(rl, sizeof rl, lagmax, runs, "%.0f");
    runs_str(rd, sizeof rd, drain, runs, "%.2f");
    result *r = add_result("1", "batch ingest (1000/POST, 2 clients)", "tx/s");
    r->value = median(v, runs);
    r->reference = median(ref, runs);
    snprintf(r->ref_name, sizeof r->ref_name, "1000-row INSERT, bare table");
    snprintf(r->target, sizeof r->target, ">= 30000 tx/s");
    r->pass = r->value >= 30000;
    double maxdrain = 0;
    for (int i = 0; i < runs; i++)
        maxdrain = drain[i] < 0 || drain[i] > maxdrain ? (drain[i] < 0 ? 1e9 : drain[i]) : maxdrain;
    snprintf(r->note, sizeof r->note,
             "runs: %s tx/s; reference runs: %s rows/s; %lld alerts raised; publish lag (outbox + "
             "unpublished event_log) max per run: %s events, drained to 0 after the load in %s s "
             "(%s). Run %d: %s",
             rv, rr, alerts, rl, rd, maxdrain < 1e9 ? "bounded" : "NOT drained within 120 s",
             runs / 2 + 1, waits);
    if (with_rss) {
        long kib = vm_hwm_kib(env->vigil_pid);
        result *m = add_result("7", "peak RSS of vigil serve (VmHWM) in 1", "MiB");
        m->value = (double)kib / 1024.0;
        snprintf(m->target, sizeof m->target, "<= 64 MiB");
        m->pass = m->value <= 64;
        snprintf(m->note, sizeof m->note,
                 "one value: VmHWM of the one `vigil serve` across all %d runs of benchmark 1",
                 runs);
    }
    for (int i = 0; cust && i < N_CUSTOMERS; i++)
        free((void *)cust[i]);
    free(cust);
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
    h_env *env = bench_env();
    if (!env || h_vigil_start(env, NULL) || h_db_exec(env, BARE_TABLE)) {
        fprintf(stderr, "bench 2: setup failed\n");
        h_teardown(env);
        return;
    }
    const char **cust = make_customers(env);
    double v[MAX_RUNS], p99[MAX_RUNS], p50[MAX_RUNS], ref[MAX_RUNS];
    lag_sampler ls;
    char waits[400] = "";
    for (int i = 0; i < runs && cust; i++) {
        char tag[16];
        double *lat = NULL;
        long nlat = 0;
        snprintf(tag, sizeof tag, "s%d", i);
        drain_time(env, 60);
        sampler_start(&ls, env);
        v[i] = run_load(env, cust, http_worker, SINGLE_CONNS, 1, tag, &lat, &nlat);
        sampler_stop(&ls);
        if (i == runs / 2)
            sampler_waits(&ls, waits, sizeof waits);
        qsort(lat, (size_t)nlat, sizeof *lat, cmp_double);
        p50[i] = nlat ? lat[nlat / 2] * 1000 : -1;
        p99[i] = nlat ? lat[(long)((double)nlat * 0.99)] * 1000 : -1;
        free(lat);
        ref[i] = pgbench_tps(env);
        fprintf(stderr,
                "bench 2 run %d: vigil %.0f tx/s p50 %.2f ms p99 %.2f ms, pgbench %.0f tps\n",
                i + 1, v[i], p50[i], p99[i], ref[i]);
    }
    print_profile(env, "benchmark 2");
    char rv[128], rp[128], rr[128];
    runs_str(rv, sizeof rv, v, runs, "%.0f");
    runs_str(rp, sizeof rp, p99, runs, "%.2f");
    runs_str(rr, sizeof rr, ref, runs, "%.0f");
    double mp50 = median(p50, runs);
    result *r = add_result("2", "single ingest (1/POST, 32 conns)", "tx/s");
    r->value = median(v, runs);
    r->reference = median(ref, runs);
    snprintf(r->ref_name, sizeof r->ref_name, "pgbench 1-row INSERT, 8 clients");
    snprintf(r->target, sizeof r->target, ">= 6000 tx/s");
    r->pass = r->value >= 6000;
    snprintf(r->note, sizeof r->note,
             "runs: %s tx/s; pgbench runs: %s tps; p50 median %.2f ms; VIGIL_HTTP_THREADS "
             "default (4). Run %d: %s",
             rv, rr, mp50, runs / 2 + 1, waits);
    result *l = add_result("2", "single ingest p99 latency", "ms");
    l->value = median(p99, runs);
    snprintf(l->target, sizeof l->target, "<= 20 ms");
    l->pass = l->value <= 20;
    snprintf(l->note, sizeof l->note, "p99 per run: %s ms", rp);
    for (int i = 0; cust && i < N_CUSTOMERS; i++)
        free((void *)cust[i]);
    free(cust);
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

static void bench_seed(h_env *env, const ev *evs, long n, double vigil_rate)
{
    const char *pub_only[] = {"VIGIL_ROLES=api,publisher", NULL};
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

    /* Seed: a third before, a third during and a third after the outage. */
    long m = n < SEED_EVENTS ? n : SEED_EVENTS, failed = 0;
    double up = seed_publish(env->nats_url, evs, 0, m / 3, &failed);
    h_nats_stop(env, SIGTERM);
    seed_publish(env->nats_url, evs, m / 3, 2 * m / 3, &failed);
    h_nats_start(env);
    up += seed_publish(env->nats_url, evs, 2 * m / 3, m, &failed);
    long long seed_stored = h_js_stream_msgs(env, "BENCH_SEED");
    double up_events = (double)(m - (2 * m / 3 - m / 3));
    double seed_rate = up_events / up;

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
            "while NATS was up; vigil %ld events, %lld stored after the outage\n",
            m, failed, seed_stored, seed_rate, n, stored);
    result *r = add_result("6", "Vigil vs. seed publish_event throughput", "x");
    r->value = vigil_rate / seed_rate;
    snprintf(r->target, sizeof r->target, ">= 50x");
    r->pass = r->value >= 50;
    snprintf(r->note, sizeof r->note,
             "seed's connect/publish/drain per event (C, core NATS): %.0f ev/s while NATS was up "
             "(one run); Vigil: the median publisher rate of benchmark 3 (%.0f ev/s). NATS "
             "stopped (SIGTERM) for the middle third of the seed's %ld events: it lost %lld "
             "(%ld failed outright); Vigil, NATS stopped for 2 s after a third of %ld events: "
             "stream holds %lld, i.e. %lld lost",
             seed_rate, vigil_rate, m, m - seed_stored, failed, n, stored, n - stored);
    result *l = add_result("6", "events lost across a NATS outage", "events");
    l->value = (double)(n - stored);
    l->reference = (double)(m - seed_stored);
    snprintf(l->ref_name, sizeof l->ref_name, "seed publish_event, of %ld", m);
    snprintf(l->target, sizeof l->target, "Vigil 0");
    l->pass = stored == n;
    snprintf(l->note, sizeof l->note, "see the line above; ratio is meaningless here");
}

/* ---- benchmark 3: publisher drain vs. raw async publish ------------------------------ */

/* Publishes evs into a fresh stream BENCH_RAW and returns the seconds until the
 * last ack. mode 0: pipelined (at most 1000 in flight, the reference); mode 1:
 * stop-and-wait windows of 1000 like the publisher; mode 2: those windows plus
 * the publisher's Nats-Expected-Last-Sequence/-Msg-Id headers. Modes 1 and 2
 * attribute the publisher's gap to the reference. */
static double raw_publish(natsConnection *nc, const ev *evs, long n, int mode)
{
    jsCtx *js = NULL;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 1000; /* = VIGIL_PUBLISH_WINDOW */
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
        if (mode == 2 && i % 1000 == 0)
            po.ExpectLastSeq = (uint64_t)i;
        else if (mode == 2)
            po.ExpectLastMsgId = evs[i - 1].id;
        if (js_PublishMsgAsync(js, &m, &po) != NATS_OK)
            fprintf(stderr, "bench 3: raw publish %ld failed\n", i);
        natsMsg_Destroy(m);
        if (mode && (i % 1000 == 999 || i == n - 1)) {
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
    h_env *env = bench_env();
    const char *seq_only[] = {"VIGIL_ROLES=api,sequencer", NULL};
    const char *pub_only[] = {"VIGIL_ROLES=api,publisher", NULL};
    if (!env || h_vigil_start(env, seq_only)) {
        fprintf(stderr, "bench 3: setup failed\n");
        h_teardown(env);
        return;
    }
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
    for (int i = 0; i < runs; i++) {
        double raw = raw_publish(nc, evs, n, 0);
        ref[i] = raw > 0 ? (double)n / raw : -1;
        double t = raw_publish(nc, evs, n, 1);
        win[i] = t > 0 ? (double)n / t : -1;
        t = raw_publish(nc, evs, n, 2);
        winx[i] = t > 0 ? (double)n / t : -1;
        js_drop(js, "BENCH_RAW");
        js_drop(js, "AML_EVENTS");
        h_db_exec(env, "UPDATE cursors SET seq = 0 WHERE name = 'publisher'");
        double s0 = now_s();
        if (h_vigil_start(env, pub_only))
            break;
        startup[i] = now_s() - s0;
        while (h_db_count(env, "SELECT seq FROM cursors WHERE name = 'publisher'") < n &&
               now_s() - s0 < 600)
            h_sleep_ms(10);
        double el = now_s() - s0;
        h_vigil_stop(env, SIGTERM);
        long long stored = h_js_stream_msgs(env, "AML_EVENTS");
        v[i] = (double)n / el;
        fprintf(stderr,
                "bench 3 run %d: publisher %.0f ev/s (%.2f s, stream holds %lld), raw %.0f "
                "msg/s (%.2f s); raw stop-and-wait %.0f msg/s, + expect headers %.0f msg/s\n",
                i + 1, v[i], el, stored, ref[i], raw, win[i], winx[i]);
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    char rv[128], rr[128];
    runs_str(rv, sizeof rv, v, runs, "%.0f");
    runs_str(rr, sizeof rr, ref, runs, "%.0f");
    result *r = add_result("3", "publisher drain event_log->JetStream", "ev/s");
    r->value = median(v, runs);
    r->reference = median(ref, runs);
    snprintf(r->ref_name, sizeof r->ref_name, "raw js_PublishMsgAsync + Msg-Id");
    snprintf(r->target, sizeof r->target, ">= 80%% of reference");
    r->pass = r->reference > 0 && r->value >= 0.8 * r->reference;
    snprintf(r->note, sizeof r->note,
             "%ld events; runs: %s ev/s (from `vigil serve` start, roles api+publisher, to cursor "
             "= N); raw runs: %s msg/s (at most 1000 in flight, same bodies and Msg-Ids, stream "
             "BENCH_RAW). Same raw publish in stop-and-wait windows of 1000 (what the publisher "
             "does): %.0f msg/s; plus the publisher's expected-last-seq/msg-id headers: %.0f msg/s "
             "(medians). Time to /healthz of `vigil serve` (included above): %.2f s (median). "
             "The publisher's per-window read (SELECT of 1000 rows, payload::text) alone, "
             "replayed over the whole log by this client: %.2f s",
             n, rv, rr, median(win, runs), median(winx, runs), median(startup, runs), read_s);
    if (with_seed)
        bench_seed(env, evs, n, r->value);
    PQclear(res);
    free(evs);
    h_teardown(env);
}

/* ---- benchmark 4: end-to-end latency at a steady rate ---------------------------------- */

#define E2E_RATE    1000
#define E2E_THREADS 16

typedef struct e2e {
    h_env *env;
    const char **customers;
    long n;
    double t0;
    double *sent, *resp;  /* per index: request sent / 2xx response received */
    _Atomic double *recv; /* per index: event delivered by the JetStream consumer */
    atomic_long failed;
    char tag[16], prefix[24]; /* external_id = TAG-b-INDEX, unique per run */
} e2e;

typedef struct e2e_worker {
    e2e *e;
    int k;
    pthread_t th;
} e2e_worker;

static void e2e_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    e2e *e = closure;
    double t = now_s();
    json_t *j = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
    const char *ext = json_string_value(json_object_get(json_object_get(j, "data"), "external_id"));
    size_t plen = strlen(e->prefix);
    if (ext && strncmp(ext, e->prefix, plen) == 0) {
        long i = atol(ext + plen);
        if (i >= 0 && i < e->n && atomic_load(&e->recv[i]) == 0)
            atomic_store(&e->recv[i], t);
    }
    json_decref(j);
    natsMsg_Destroy(m);
}

/* Open loop: request i is due at t0 + i / E2E_RATE whatever happened before. */
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
    for (long i = w->k; i < e->n; i += E2E_THREADS) {
        double due = e->t0 + (double)i / E2E_RATE, wait = due - now_s();
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

static double pct(double *v, long n, double q)
{
    return n ? v[(long)((double)(n - 1) * q)] : -1;
}

static void bench_e2e(void)
{
    h_env *env = bench_env();
    if (!env || h_vigil_start(env, NULL)) {
        fprintf(stderr, "bench 4: setup failed\n");
        h_teardown(env);
        return;
    }
    const char **cust = make_customers(env);
    natsConnection *nc = h_nats_connect(env);
    jsCtx *js = NULL;
    natsConnection_JetStream(&js, nc, NULL);
    double p50[MAX_RUNS], p99[MAX_RUNS], rate[MAX_RUNS], s50[MAX_RUNS], s99[MAX_RUNS];
    long lost_total = 0;
    long long unseen_lag = 0, unseen_drop = 0;
    int done = 0;
    for (int r = 0; r < runs && cust; r++) {
        drain_time(env, 60);
        e2e e = {.env = env, .customers = cust, .n = (long)E2E_RATE * seconds};
        e.sent = calloc((size_t)e.n, sizeof(double));
        e.resp = calloc((size_t)e.n, sizeof(double));
        e.recv = calloc((size_t)e.n, sizeof(_Atomic double));
        snprintf(e.tag, sizeof e.tag, "e2e%d", r);
        snprintf(e.prefix, sizeof e.prefix, "%s-b-", e.tag);
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
            break;
        }
        e.t0 = now_s() + 0.1;
        e2e_worker w[E2E_THREADS];
        for (int k = 0; k < E2E_THREADS; k++) {
            w[k] = (e2e_worker){.e = &e, .k = k};
            pthread_create(&w[k].th, NULL, e2e_thread, &w[k]);
        }
        for (int k = 0; k < E2E_THREADS; k++)
            pthread_join(w[k].th, NULL);
        double last_sent = now_s();
        long nsent = 0;
        for (long i = 0; i < e.n; i++)
            nsent += e.sent[i] > 0;
        rate[r] = (double)nsent / (last_sent - e.t0);
        /* Wait (at most 30 s) for the events of every accepted request. */
        for (long i = 0; i < e.n && now_s() - last_sent < 30; i++)
            while (e.resp[i] > 0 && atomic_load(&e.recv[i]) == 0 && now_s() - last_sent < 30)
                h_sleep_ms(5);
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
               *ls = malloc((size_t)e.n * sizeof(double));
        long m = 0, lost = 0;
        for (long i = 0; i < e.n; i++) {
            double rv = atomic_load(&e.recv[i]);
            if (e.resp[i] > 0 && rv > 0) {
                lc[m] = (rv - e.resp[i]) * 1000;
                ls[m++] = (rv - e.sent[i]) * 1000;
            } else if (e.resp[i] > 0)
                lost++;
        }
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
        unseen_lag += lag_end;
        unseen_drop += dropped;
        free(lc);
        free(ls);
        free(e.sent);
        free(e.resp);
        free((void *)e.recv);
        done++;
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    if (done == runs) {
        char r50[128], r99[128], rr[128];
        runs_str(r50, sizeof r50, p50, runs, "%.2f");
        runs_str(r99, sizeof r99, p99, runs, "%.2f");
        runs_str(rr, sizeof rr, rate, runs, "%.0f");
        result *a = add_result("4", "end-to-end p50 at 1000 tx/s", "ms");
        a->value = median(p50, runs);
        snprintf(a->target, sizeof a->target, "<= 3 ms");
        a->pass = a->value <= 3;
        snprintf(a->note, sizeof a->note,
                 "HTTP 2xx response (the commit is visible to the client) -> event delivered to "
                 "an ephemeral JetStream push consumer on aml.transaction.ingested; %d "
                 "open-loop senders at %d req/s scheduled (stopped after 2x the run time when "
                 "behind), achieved %s req/s; p50 per run %s ms; "
                 "from request sent instead: p50 %.2f ms, p99 %.2f ms (medians); %ld accepted "
                 "transactions' events not seen within 30 s (summed over runs; at that moment the "
                 "publish lag was %lld in total and the client library had dropped %lld "
                 "deliveries)",
                 E2E_THREADS, E2E_RATE, rr, r50, median(s50, runs), median(s99, runs), lost_total,
                 unseen_lag, unseen_drop);
        result *b = add_result("4", "end-to-end p99 at 1000 tx/s", "ms");
        b->value = median(p99, runs);
        snprintf(b->target, sizeof b->target, "<= 15 ms");
        b->pass = b->value <= 15;
        snprintf(b->note, sizeof b->note, "p99 per run %s ms", r99);
    }
    for (int i = 0; cust && i < N_CUSTOMERS; i++)
        free((void *)cust[i]);
    free(cust);
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
        fprintf(o, "| # | benchmark | measured | reference (same run) | ratio | target | met |\n");
        fprintf(o, "| --- | --- | --- | --- | --- | --- | --- |\n");
        for (int i = 0; i < nresults; i++) {
            result *r = &results[i];
            char ref[128] = "-", ratio[32] = "-";
            if (r->reference >= 0) {
                snprintf(ref, sizeof ref, "%.0f (%s)", r->reference, r->ref_name);
                snprintf(ratio, sizeof ratio, "%.2f", r->value / r->reference);
            }
            fprintf(o, "| %s | %s | %.*f %s | %s | %s | %s | %s |\n", r->id, r->name,
                    r->value < 100 ? 2 : 0, r->value, r->unit, ref, ratio, r->target,
                    r->pass ? "yes" : "**NO**");
        }
        fprintf(o, "\nDetails:\n\n");
        for (int i = 0; i < nresults; i++)
            fprintf(o, "- %s %s: %s\n", results[i].id, results[i].name, results[i].note);
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
            fprintf(stderr, "usage: %s [--only 1|2|3|4|6|7] [--out FILE]\n", argv[0]);
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

    char cmdline[128];
    if (only)
        snprintf(cmdline, sizeof cmdline, "make bench ONLY=%d", only);
    else
        snprintf(cmdline, sizeof cmdline, "make bench");
    write_report(out, cmdline, fsyncs, load0);
    curl_global_cleanup();
    return 0;
}
