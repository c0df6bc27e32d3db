/*
 * chaos.c — the chaos suite: the whole pipeline under load while the things
 * it depends on fail, one at a time, at random moments; then the invariants.
 *
 *   chaos [--duration S] [--seed N] [--soak] [--faults KIND,...]
 *
 * (default 60 s; --soak 1800 s; --faults limits the kinds below, to chase one)
 *
 * Setup: PostgreSQL with fsync and synchronous_commit on (so a commit the API
 * acknowledged survives an immediate restart), nats-server, and `vigil serve`
 * reaching NATS through the harness's fault-injecting TCP proxy; short
 * consumer backoff / ack wait / publish ack timeout so that recovery fits in
 * a bounded run. When the build has webhooks, one webhook (every event) points
 * at a receiver inside this process.
 *
 * Load: two threads POST transactions (small card and wire payments, large
 * cash deposits that raise alerts and so work for the risk consumer, some
 * counterparties in high-risk countries). A request that fails with 5xx or
 * no response is retried with the SAME external_id until it is accepted, and
 * the accepted (external_id, id) pairs are recorded.
 *
 * Faults (seeded RNG; the seed is printed; one fault at a time, each healed
 * before the next; a shuffled deck so that every kind comes up):
 *   nats_kill       SIGKILL nats-server, start it again
 *   nats_stop       SIGSTOP nats-server for 2-5 s, SIGCONT
 *   proxy           the NATS proxy blackholes, delays or resets for 2-5 s
 *   vigil_kill      SIGKILL vigil, start it again
 *   consumer_crash  vigil restarted with VIGIL_FAULT=consumer_crash_before_ack:
 *                   it dies after a consumer's commit, before the ack; then a
 *                   normal start
 *   pg_fast         PostgreSQL fast restart
 *   pg_immediate    PostgreSQL immediate restart (crash recovery)
 *
 * Then: stop the load, wait (at most 120 s) until the pipeline has drained,
 * and check that nothing was lost and no effect happened twice: every
 * accepted transaction once in `transactions`, its event once in event_log;
 * event_log gap-free; the stream holds Vigil-Seq 1..n once each, in order,
 * matching event_log; the risk consumer processed every alert event once
 * (and re-scored once per event), no dead letters; every event delivered to
 * the webhook (one webhook_deliveries row each, all delivered, the receiver
 * saw each at least once); `vigil audit verify` passes. Exit 0 only when
 * every invariant held.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <glob.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STREAM      "AML_EVENTS"
#define N_CUSTOMERS 12
#define N_LOADERS   2
#define LOAD_PAUSE  5      /* ms between a loader's requests */
#define RETRY_PAUSE 200    /* ms between retries of one request */
#define GIVE_UP_MS  120000 /* a request still not accepted after this is a violation */
#define DRAIN_MS    120000
#define SOAK_S      1800
#define WH_SECRET   "chaos-secret-0123456789abcdef"

/* ---- reporting -------------------------------------------------------------- */

static int violations;

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void violation(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "chaos: VIOLATION: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    violations++;
}

static long long t_start; /* h_now_ms() when the chaos phase began */

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "chaos: [%6.1f s] ", t_start ? (h_now_ms() - t_start) / 1000.0 : 0.0);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- seeded randomness (splitmix64: small, and the same on every libc) -------- */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. */
static int rng_range(uint64_t *s, int lo, int hi)
{
    return lo + (int)(rng_next(s) % (uint64_t)(hi - lo + 1));
}

/* ---- growable string lists (ids as text) ------------------------------------- */

typedef struct strlist {
    char (*v)[48];
    size_t n, cap;
} strlist;

static void strlist_add(strlist *l, const char *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 1024;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        if (!l->v)
            abort();
    }
    snprintf(l->v[l->n++], sizeof l->v[0], "%s", s);
}

/* `{a,b,...}`: a PostgreSQL array literal of the lists' elements, caller frees. */
static char *pg_array(const strlist *const *lists, int nlists)
{
    size_t cap = 3;
    for (int i = 0; i < nlists; i++)
        cap += lists[i]->n * 49;
    char *s = malloc(cap), *p = s;
    if (!s)
        abort();
    *p++ = '{';
    size_t k = 0;
    for (int i = 0; i < nlists; i++)
        for (size_t j = 0; j < lists[i]->n; j++)
            p += sprintf(p, "%s%s", k++ ? "," : "", lists[i]->v[j]);
    *p++ = '}';
    *p = '\0';
    return s;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* ---- the webhook receiver ----------------------------------------------------- */

/* Answers 200 to every POST and records its Vigil-Event-Id. */
static struct {
    struct MHD_Daemon *daemon;
    int port;
    pthread_mutex_t mu;
    strlist ids;     /* one entry per request, duplicates included */
    long without_id; /* requests without a Vigil-Event-Id */
} rx = {.mu = PTHREAD_MUTEX_INITIALIZER};

static enum MHD_Result rx_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **con_cls)
{
    static int started;
    (void)cls, (void)url, (void)method, (void)version, (void)data;
    if (!*con_cls) {
        *con_cls = &started;
        return MHD_YES;
    }
    if (*size) {
        *size = 0; /* the body is event_log's payload; only the id matters here */
        return MHD_YES;
    }
    const char *id = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Vigil-Event-Id");
    pthread_mutex_lock(&rx.mu);
    if (id && strlen(id) < sizeof rx.ids.v[0])
        strlist_add(&rx.ids, id);
    else
        rx.without_id++;
    pthread_mutex_unlock(&rx.mu);
    static char ok[] = "ok";
    struct MHD_Response *resp = MHD_create_response_from_buffer(2, ok, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

static int rx_start(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    rx.daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                                 rx_request, NULL, MHD_OPTION_SOCK_ADDR, &sin,
                                 MHD_OPTION_THREAD_POOL_SIZE, 2u, MHD_OPTION_END);
    if (!rx.daemon)
        return -1;
    rx.port = MHD_get_daemon_info(rx.daemon, MHD_DAEMON_INFO_BIND_PORT)->port;
    return rx.port > 0 ? 0 : -1;
}

/* ---- requests that must eventually be accepted ----------------------------------- */

/* POSTs body to path until a 2xx with an "id" arrives (copied to id_out): 5xx,
 * 408, 429 and transport errors are retried unchanged (the external_id makes
 * that safe). Returns 0, or -1 for another status or after GIVE_UP_MS, with
 * the reason in problem. *retries counts the repeats. */
static int post_until_accepted(h_env *env, const char *path, const char *body, char id_out[48],
                               long *retries, char *problem, size_t problemsz)
{
    long long t0 = h_now_ms();
    for (;;) {
        h_resp r;
        int rc = h_http(env, "POST", path, env->admin_key, body, -1, NULL, &r);
        const char *id = rc == 0 ? json_string_value(json_object_get(r.json, "id")) : NULL;
        if (rc == 0 && r.status >= 200 && r.status < 300 && id) {
            snprintf(id_out, 48, "%s", id);
            h_resp_free(&r);
            return 0;
        }
        int retry = rc != 0 || r.status >= 500 || r.status == 408 || r.status == 429;
        if (!retry || h_now_ms() - t0 > GIVE_UP_MS) {
            snprintf(problem, problemsz, "%s %s: %s %ld %.200s", retry ? "gave up on" : "refused",
                     path, rc ? "no response" : "status", rc ? 0L : r.status, rc ? "" : r.body);
            h_resp_free(&r);
            return -1;
        }
        h_resp_free(&r);
        (*retries)++;
        h_sleep_ms(RETRY_PAUSE);
    }
}

/* ---- load ------------------------------------------------------------------------ */

static char customers[N_CUSTOMERS][48];

typedef struct loader {
    h_env *env;
    int index;
    uint64_t rng;
    pthread_t thread;
    atomic_int *stop;
    atomic_long accepted;
    /* Read after the join only. */
    strlist ext_ids, tx_ids; /* accepted pairs, same index */
    long retries, failed;
    char first_problem[400];
} loader;

/* One transaction body: 8 % large cash (an alert), 3 % a counterparty in a
 * high-risk country (an alert), otherwise card and wire payments. */
static void tx_body(loader *l, const char *ext, char *body, size_t bodysz)
{
    int kind = rng_range(&l->rng, 0, 99);
    char amount[32], counterparty[128] = "";
    const char *channel = "card", *direction = "out";
    if (kind < 8) {
        snprintf(amount, sizeof amount, "%d.00", rng_range(&l->rng, 10000, 40000));
        channel = "cash";
        direction = "in";
    } else if (kind < 11) {
        snprintf(amount, sizeof amount, "%d.50", rng_range(&l->rng, 100, 3000));
        channel = "wire";
        snprintf(counterparty, sizeof counterparty,
                 ", \"counterparty\": {\"name\": \"Shell Co\", \"account\": \"X1\","
                 " \"country\": \"IR\"}");
    } else if (kind < 20) {
        snprintf(amount, sizeof amount, "%d.%02d", rng_range(&l->rng, 500, 5000),
                 rng_range(&l->rng, 0, 99));
        channel = "wire";
    } else {
        snprintf(amount, sizeof amount, "%d.%02d", rng_range(&l->rng, 1, 999),
                 rng_range(&l->rng, 0, 99));
    }
    snprintf(body, bodysz,
             "{\"external_id\": \"%s\", \"customer_id\": \"%s\", \"amount\": \"%s\","
             " \"currency\": \"USD\", \"direction\": \"%s\", \"channel\": \"%s\","
             " \"occurred_at\": \"2026-11-%02dT%02d:%02d:%02dZ\"%s}",
             ext, customers[rng_range(&l->rng, 0, N_CUSTOMERS - 1)], amount, direction, channel,
             rng_range(&l->rng, 1, 26), rng_range(&l->rng, 0, 23), rng_range(&l->rng, 0, 59),
             rng_range(&l->rng, 0, 59), counterparty);
}

static void *loader_main(void *arg)
{
    loader *l = arg;
    char ext[48], body[768], id[48], problem[300];
    for (long k = 1; !atomic_load(l->stop); k++) {
        snprintf(ext, sizeof ext, "chaos-%d-%ld", l->index, k);
        tx_body(l, ext, body, sizeof body);
        /* Not interrupted by stop: a request is retried until accepted. */
        if (post_until_accepted(l->env, "/transactions", body, id, &l->retries, problem,
                                sizeof problem) == 0) {
            strlist_add(&l->ext_ids, ext);
            strlist_add(&l->tx_ids, id);
            atomic_fetch_add(&l->accepted, 1);
        } else {
            l->failed++;
            if (!l->first_problem[0])
                snprintf(l->first_problem, sizeof l->first_problem, "%s: %s", ext, problem);
        }
        h_sleep_ms(LOAD_PAUSE);
    }
    return NULL;
}

/* ---- faults ------------------------------------------------------------------------ */

enum {
    F_NATS_KILL,
    F_NATS_STOP,
    F_PROXY,
    F_VIGIL_KILL,
    F_CONSUMER_CRASH,
    F_PG_FAST,
    F_PG_IMMEDIATE,
    F_COUNT
};
static const char *const fault_names[F_COUNT] = {
    "nats_kill", "nats_stop", "proxy", "vigil_kill", "consumer_crash", "pg_fast", "pg_immediate"};

typedef struct chaos {
    h_env *env;
    h_proxy *proxy;
    uint64_t rng;
    char nats_url_env[160];      /* VIGIL_NATS_URL=<the proxy> */
    const char *vigil_env[12];   /* what every normal vigil start gets */
    const char *crash_env[13];   /* the same plus VIGIL_FAULT=consumer_crash_before_ack */
    int faults[F_COUNT];         /* injected so far, per kind */
    int harness_errors;          /* a fault that could not be injected or healed */
    int deck[F_COUNT], deck_pos; /* a shuffled round of every kind */
    unsigned kinds;              /* bit f set: kind f may be injected (--faults) */
} chaos;

static void harness_error(chaos *c, const char *what)
{
    c->harness_errors++;
    note("harness error: %s", what);
}

/* Makes sure a vigil is running: one that died by itself is a finding (and
 * is restarted so the run can go on). */
static void vigil_ensure(chaos *c)
{
    h_env *env = c->env;
    if (env->vigil_pid) {
        h_resp r;
        int rc = h_get(env, NULL, &r, "/healthz");
        long status = r.status;
        h_resp_free(&r);
        if (rc == 0 && status == 200)
            return;
        int code = h_vigil_stop(env, SIGKILL);
        if (code != 137)
            violation("vigil died by itself (exit %d); see %s", code, env->vigil_log);
    }
    if (h_vigil_start(env, c->vigil_env) != 0)
        harness_error(c, "vigil did not start");
}

static void fault_vigil_crash_consumer(chaos *c)
{
    h_env *env = c->env;
    int code = h_vigil_stop(env, SIGTERM);
    if (code != 0)
        violation("vigil exited %d on SIGTERM under load", code);
    static const char *const serve[] = {"serve", NULL};
    char log[H_PATH_SIZE];
    pid_t pid = h_vigil_spawn(env, c->crash_env, serve, log, sizeof log);
    if (pid < 0) {
        harness_error(c, "could not spawn the crashing vigil");
    } else {
        /* It dies at the first event a consumer applies (the load makes one
         * within a second); give it 20 s. */
        code = h_proc_stop(pid, 0, 20000);
        if (code == -2) {
            h_proc_stop(pid, SIGKILL, 5000);
            note("consumer_crash: no event consumed within 20 s; killed (%s)", log);
        } else if (code != 98) {
            violation("the vigil with VIGIL_FAULT=consumer_crash_before_ack exited %d, not 98 (%s)",
                      code, log);
        }
    }
    if (h_vigil_start(env, c->vigil_env) != 0)
        harness_error(c, "vigil did not start after the consumer crash");
}

static void fault_proxy(chaos *c, int hold)
{
    static const char *const modes[] = {"blackhole", "delay", "reset"};
    int m = rng_range(&c->rng, 0, 2);
    int delay = rng_range(&c->rng, 100, 800);
    h_proxy_mode mode = m == 0 ? H_PROXY_BLACKHOLE : m == 1 ? H_PROXY_DELAY : H_PROXY_RESET;
    note("proxy: %s%s for %d ms", modes[m], m == 1 ? " (per chunk)" : "", hold);
    h_proxy_set_mode(c->proxy, mode, delay);
    h_sleep_ms(hold);
    h_proxy_set_mode(c->proxy, H_PROXY_PASS, 0);
}

/* Injects one fault of kind f and heals it. */
static void inject(chaos *c, int f)
{
    h_env *env = c->env;
    vigil_ensure(c); /* a vigil that died since the last fault is reported now */
    long long t0 = h_now_ms();
    /* How long a killed server stays down, or a stopped/cut one stays so. */
    int down = rng_range(&c->rng, 0, 3000), hold = rng_range(&c->rng, 2000, 5000);
    if (f == F_NATS_KILL || f == F_VIGIL_KILL || f == F_PG_FAST || f == F_PG_IMMEDIATE)
        note("%s, down for %d ms", fault_names[f], down);
    else if (f == F_NATS_STOP)
        note("%s for %d ms", fault_names[f], hold);
    else if (f == F_CONSUMER_CRASH)
        note("%s", fault_names[f]);
    switch (f) {
    case F_NATS_KILL:
        if (h_nats_stop(env, SIGKILL) != 0)
            harness_error(c, "nats-server did not stop");
        h_sleep_ms(down);
        if (h_nats_start(env) != 0)
            harness_error(c, "nats-server did not restart");
        break;
    case F_NATS_STOP:
        kill(env->nats_pid, SIGSTOP);
        h_sleep_ms(hold);
        kill(env->nats_pid, SIGCONT);
        break;
    case F_PROXY:
        fault_proxy(c, hold);
        break;
    case F_VIGIL_KILL:
        h_vigil_stop(env, SIGKILL);
        h_sleep_ms(down);
        if (h_vigil_start(env, c->vigil_env) != 0)
            harness_error(c, "vigil did not restart");
        break;
    case F_CONSUMER_CRASH:
        fault_vigil_crash_consumer(c);
        break;
    case F_PG_FAST:
    case F_PG_IMMEDIATE:
        if (h_pg_stop(env, f == F_PG_FAST ? "fast" : "immediate") != 0)
            harness_error(c, "PostgreSQL did not stop");
        h_sleep_ms(down);
        if (h_pg_start(env) != 0)
            harness_error(c, "PostgreSQL did not restart");
        break;
    }
    c->faults[f]++;
    vigil_ensure(c);
    note("%s healed in %.1f s", fault_names[f], (h_now_ms() - t0) / 1000.0);
}

static int next_fault(chaos *c)
{
    for (;;) {
        if (c->deck_pos == 0) /* reshuffle (Fisher-Yates) */
            for (int i = F_COUNT - 1; i > 0; i--) {
                int j = rng_range(&c->rng, 0, i), t = c->deck[i];
                c->deck[i] = c->deck[j];
                c->deck[j] = t;
            }
        int f = c->deck[c->deck_pos];
        c->deck_pos = (c->deck_pos + 1) % F_COUNT;
        if (c->kinds & (1u << f))
            return f;
    }
}

/* "nats_kill,proxy" → a bit per kind; 0 when a name is unknown. */
static unsigned parse_kinds(const char *list)
{
    unsigned kinds = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *name = strtok_r(buf, ",", &save); name;
         name = strtok_r(NULL, ",", &save)) {
        int f = 0;
        while (f < F_COUNT && strcmp(name, fault_names[f]) != 0)
            f++;
        if (f == F_COUNT)
            return 0;
        kinds |= 1u << f;
    }
    return kinds;
}

/* ---- drain ------------------------------------------------------------------------- */

static int has_webhooks;

/* 1 when every event has gone everywhere it goes. */
static long long drained(h_env *env)
{
    return h_db_count(
        env,
        has_webhooks
            ? "SELECT (NOT EXISTS (SELECT 1 FROM outbox)"
              " AND (SELECT seq FROM cursors WHERE name = 'publisher')"
              "   = (SELECT coalesce(max(seq), 0) FROM event_log)"
              " AND NOT EXISTS (SELECT 1 FROM event_log e WHERE e.event_type LIKE 'aml.alert.%'"
              "   AND NOT EXISTS (SELECT 1 FROM processed_events p WHERE p.consumer = 'risk'"
              "   AND p.event_id = e.event_id))"
              " AND NOT EXISTS (SELECT 1 FROM event_log e WHERE NOT EXISTS"
              "   (SELECT 1 FROM processed_events p WHERE p.consumer = 'webhooks'"
              "   AND p.event_id = e.event_id))"
              " AND NOT EXISTS (SELECT 1 FROM webhook_deliveries WHERE status <> 'delivered')"
              ")::int"
            : "SELECT (NOT EXISTS (SELECT 1 FROM outbox)"
              " AND (SELECT seq FROM cursors WHERE name = 'publisher')"
              "   = (SELECT coalesce(max(seq), 0) FROM event_log)"
              " AND NOT EXISTS (SELECT 1 FROM event_log e WHERE e.event_type LIKE 'aml.alert.%'"
              "   AND NOT EXISTS (SELECT 1 FROM processed_events p WHERE p.consumer = 'risk'"
              "   AND p.event_id = e.event_id))"
              ")::int");
}

static void print_pipeline_state(h_env *env)
{
    char *undelivered = NULL;
    fprintf(stderr,
            "chaos: outbox %lld, publisher cursor %lld, max seq %lld, alert events %lld,"
            " risk processed %lld",
            h_db_count(env, "SELECT count(*) FROM outbox"),
            h_db_count(env, "SELECT seq FROM cursors WHERE name = 'publisher'"),
            h_db_count(env, "SELECT coalesce(max(seq), 0) FROM event_log"),
            h_db_count(env, "SELECT count(*) FROM event_log WHERE event_type LIKE 'aml.alert.%'"),
            h_db_count(env, "SELECT count(*) FROM processed_events WHERE consumer = 'risk'"));
    if (has_webhooks) {
        undelivered = h_db_text(env, "SELECT coalesce(string_agg(format('seq %s %s, %s attempts,"
                                     " next in %s ms', seq, status, attempts,"
                                     " (extract(epoch FROM next_attempt_at - now()) * 1000)::int),"
                                     " '; '), '') FROM (SELECT * FROM webhook_deliveries"
                                     " WHERE status <> 'delivered' ORDER BY seq LIMIT 3) d");
        fprintf(
            stderr, ", webhooks processed %lld, deliveries not delivered %lld (%s)",
            h_db_count(env, "SELECT count(*) FROM processed_events WHERE consumer = 'webhooks'"),
            h_db_count(env, "SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered'"),
            undelivered ? undelivered : "");
    }
    fprintf(stderr, "; stream %lld messages\n", h_js_stream_msgs(env, STREAM));
    free(undelivered);
}

/* ---- the invariants ------------------------------------------------------------------ */

typedef struct tally {
    long long transactions, events, lost, duplicates, receiver_dups;
} tally;

/* A count that must be zero; adds it to *into and reports it when not. */
static void expect_zero(h_env *env, long long *into, const char *what, const char *sql,
                        const char *p1, const char *p2)
{
    long long v = p2   ? h_db_count(env, sql, p1, p2)
                  : p1 ? h_db_count(env, sql, p1)
                       : h_db_count(env, sql);
    if (v < 0) {
        violation("%s: query failed", what);
        return;
    }
    if (v > 0) {
        violation("%s: %lld", what, v);
        *into += v;
    }
}

/* Prints up to 5 events of event_log that `where` (a condition on e)
 * selects, to make a violation concrete. */
static void show_events(h_env *env, const char *where, const char *p1)
{
    char sql[1024];
    snprintf(sql, sizeof sql,
             "SELECT string_agg(format('seq %%s %%s %%s at %%s', seq, event_type, event_id,"
             " recorded_at), '; ') FROM (SELECT * FROM event_log e WHERE %s ORDER BY seq"
             " LIMIT 5) e",
             where);
    char *text = p1 ? h_db_text(env, sql, p1) : h_db_text(env, sql);
    if (text)
        fprintf(stderr, "chaos:   e.g. %s\n", text);
    free(text);
}

static void check_transactions(h_env *env, loader *loads, tally *t)
{
    const strlist *exts[N_LOADERS], *ids[N_LOADERS];
    size_t n = 0;
    for (int i = 0; i < N_LOADERS; i++) {
        exts[i] = &loads[i].ext_ids;
        ids[i] = &loads[i].tx_ids;
        n += loads[i].tx_ids.n;
    }
    char *ext_arr = pg_array(exts, N_LOADERS), *id_arr = pg_array(ids, N_LOADERS);
    t->transactions = (long long)n;
    expect_zero(env, &t->lost, "accepted transactions missing from `transactions`",
                "SELECT count(*) FROM unnest($1::text[], $2::uuid[]) AS a(ext, id)"
                " WHERE NOT EXISTS (SELECT 1 FROM transactions x"
                " WHERE x.external_id = a.ext AND x.id = a.id)",
                ext_arr, id_arr);
    long long rows = h_db_count(env, "SELECT count(*) FROM transactions");
    if (rows != (long long)n) /* UNIQUE(external_id): more rows = a commit nobody was told of */
        violation("`transactions` has %lld rows for %zu accepted requests", rows, n);
    expect_zero(env, &t->lost, "accepted transactions without an aml.transaction.ingested event",
                "SELECT count(*) FROM unnest($1::uuid[]) AS a(id) WHERE NOT EXISTS"
                " (SELECT 1 FROM event_log e WHERE e.event_type = 'aml.transaction.ingested'"
                " AND e.subject = a.id::text)",
                id_arr, NULL);
    expect_zero(env, &t->duplicates, "transactions with more than one ingested event",
                "SELECT count(*) FROM (SELECT subject FROM event_log"
                " WHERE event_type = 'aml.transaction.ingested'"
                " GROUP BY subject HAVING count(*) > 1) d",
                NULL, NULL);
    long long ingested = h_db_count(
        env, "SELECT count(*) FROM event_log WHERE event_type = 'aml.transaction.ingested'");
    if (ingested != rows)
        violation("%lld aml.transaction.ingested events for %lld transactions", ingested, rows);
    free(ext_arr);
    free(id_arr);
}

static const char *msg_header(natsMsg *m, const char *name)
{
    const char *v = NULL;
    return natsMsgHeader_Get(m, name, &v) == NATS_OK && v ? v : "";
}

/* event_log is 1..n without gaps; the stream holds each seq once, in order,
 * with the event's id and type. */
static void check_stream(h_env *env, tally *t)
{
    PGresult *log =
        PQexec(h_db(env), "SELECT seq, event_id, event_type FROM event_log ORDER BY seq");
    if (PQresultStatus(log) != PGRES_TUPLES_OK) {
        violation("cannot read event_log: %s", PQresultErrorMessage(log));
        PQclear(log);
        return;
    }
    int n = PQntuples(log);
    t->events = n;
    for (int i = 0; i < n; i++)
        if (atoll(PQgetvalue(log, i, 0)) != i + 1) {
            violation("event_log is not gap-free: row %d has seq %s", i + 1, PQgetvalue(log, i, 0));
            t->lost++;
            break;
        }

    natsConnection *nc = h_nats_connect(env);
    jsCtx *js = NULL;
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = 5000;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    if (!nc || natsConnection_JetStream(&js, nc, &o) != NATS_OK ||
        js_GetStreamInfo(&si, js, STREAM, NULL, &jerr) != NATS_OK) {
        violation("cannot read stream %s (%d)", STREAM, (int)jerr);
        goto end;
    }
    uint64_t first = si->State.FirstSeq, last = si->State.LastSeq, msgs = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    unsigned char *seen = calloc((size_t)n + 1, 1);
    long long found = 0, prev = 0, out_of_order = 0, mismatched = 0, dups = 0, foreign = 0;
    for (uint64_t sseq = first; msgs > 0 && sseq <= last; sseq++) {
        natsMsg *m = NULL;
        jerr = 0;
        natsStatus s = js_GetMsg(&m, js, STREAM, sseq, NULL, &jerr);
        if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
            continue; /* a deleted slot: what it held is counted missing below */
        if (s != NATS_OK) {
            violation("stream seq %llu unreadable: %s", (unsigned long long)sseq,
                      natsStatus_GetText(s));
            break;
        }
        found++;
        long long vseq = atoll(msg_header(m, "Vigil-Seq"));
        if (vseq < 1 || vseq > n) {
            if (foreign++ < 3)
                note("stream seq %llu: Vigil-Seq '%s' is not in event_log (1..%d)",
                     (unsigned long long)sseq, msg_header(m, "Vigil-Seq"), n);
        } else {
            if (seen[vseq]++)
                dups++;
            if (vseq <= prev && out_of_order++ < 3)
                note("stream seq %llu: Vigil-Seq %lld after %lld", (unsigned long long)sseq, vseq,
                     prev);
            prev = vseq;
            int row = (int)(vseq - 1);
            if ((strcmp(msg_header(m, "Nats-Msg-Id"), PQgetvalue(log, row, 1)) != 0 ||
                 strcmp(natsMsg_GetSubject(m), PQgetvalue(log, row, 2)) != 0) &&
                mismatched++ < 3)
                note("stream seq %llu (Vigil-Seq %lld): id %s subject %s, event_log has %s %s",
                     (unsigned long long)sseq, vseq, msg_header(m, "Nats-Msg-Id"),
                     natsMsg_GetSubject(m), PQgetvalue(log, row, 1), PQgetvalue(log, row, 2));
        }
        natsMsg_Destroy(m);
    }
    long long missing = 0;
    for (int i = 1; i <= n; i++)
        missing += !seen[i];
    free(seen);
    fprintf(stderr, "chaos: stream %s: %lld messages read (stream seq %llu..%llu), event_log %d\n",
            STREAM, found, (unsigned long long)first, (unsigned long long)last, n);
    if (missing)
        violation("%lld events of event_log are not in the stream", missing);
    if (dups)
        violation("%lld events are in the stream more than once", dups);
    if (out_of_order)
        violation("%lld stream messages out of Vigil-Seq order", out_of_order);
    if (mismatched)
        violation("%lld stream messages differ from event_log (id or type)", mismatched);
    if (foreign)
        violation("%lld stream messages with a Vigil-Seq outside event_log", foreign);
    t->lost += missing;
    t->duplicates += dups + foreign;
end:
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    PQclear(log);
}

static void check_risk(h_env *env, tally *t)
{
    long long alerts =
        h_db_count(env, "SELECT count(*) FROM event_log WHERE event_type LIKE 'aml.alert.%'");
    long long processed =
        h_db_count(env, "SELECT count(*) FROM processed_events WHERE consumer = 'risk'");
    fprintf(stderr, "chaos: risk: %lld alert events, %lld processed\n", alerts, processed);
    if (alerts <= 0)
        violation("no alert events: the load did not exercise the risk consumer");
    expect_zero(env, &t->lost, "alert events the risk consumer never applied",
                "SELECT count(*) FROM event_log e WHERE e.event_type LIKE 'aml.alert.%'"
                " AND NOT EXISTS (SELECT 1 FROM processed_events p"
                " WHERE p.consumer = 'risk' AND p.event_id = e.event_id)",
                NULL, NULL);
    expect_zero(env, &t->duplicates, "risk processed_events rows for events not in its subjects",
                "SELECT count(*) FROM processed_events p WHERE p.consumer = 'risk'"
                " AND NOT EXISTS (SELECT 1 FROM event_log e WHERE e.event_id = p.event_id"
                " AND e.event_type LIKE 'aml.alert.%')",
                NULL, NULL);
    /* The effect itself: one re-scoring per alert event at most (the reason
     * names the event type and alert; each is emitted once here). */
    expect_zero(env, &t->duplicates, "alert events that re-scored a customer twice",
                "SELECT count(*) FROM (SELECT reason FROM risk_assessments"
                " WHERE actor = 'consumer:risk' GROUP BY reason HAVING count(*) > 1) d",
                NULL, NULL);
    expect_zero(env, &t->lost, "dead letters", "SELECT count(*) FROM dead_letters", NULL, NULL);
}

static void check_webhooks(h_env *env, const char *webhook_id, tally *t)
{
    long long events = h_db_count(env, "SELECT count(*) FROM event_log");
    long long processed =
        h_db_count(env, "SELECT count(*) FROM processed_events WHERE consumer = 'webhooks'");
    long long rows = h_db_count(
        env, "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = $1", webhook_id);
    expect_zero(env, &t->lost, "events the webhooks consumer never applied",
                "SELECT count(*) FROM event_log e WHERE NOT EXISTS (SELECT 1 FROM"
                " processed_events p WHERE p.consumer = 'webhooks' AND p.event_id = e.event_id)",
                NULL, NULL);
    long long before = t->lost;
    expect_zero(env, &t->lost, "events without a webhook delivery",
                "SELECT count(*) FROM event_log e WHERE NOT EXISTS (SELECT 1 FROM"
                " webhook_deliveries d WHERE d.webhook_id = $1 AND d.event_id = e.event_id)",
                webhook_id, NULL);
    if (t->lost > before)
        show_events(env,
                    "NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.webhook_id = $1"
                    " AND d.event_id = e.event_id)",
                    webhook_id);
    expect_zero(env, &t->duplicates, "events with more than one webhook delivery row",
                "SELECT count(*) FROM (SELECT event_id FROM webhook_deliveries"
                " WHERE webhook_id = $1 GROUP BY event_id HAVING count(*) > 1) d",
                webhook_id, NULL);
    expect_zero(env, &t->lost, "webhook deliveries not delivered",
                "SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered'", NULL, NULL);

    /* What the receiver saw: each event at least once; repeats are the
     * documented at-least-once of HTTP, counted apart. */
    pthread_mutex_lock(&rx.mu);
    strlist got = rx.ids;
    got.v = malloc((got.n ? got.n : 1) * sizeof *got.v);
    if (!got.v)
        abort();
    memcpy(got.v, rx.ids.v, got.n * sizeof *got.v);
    long without_id = rx.without_id;
    pthread_mutex_unlock(&rx.mu);
    qsort(got.v, got.n, sizeof *got.v, cmp_str);
    strlist uniq = {0};
    for (size_t i = 0; i < got.n; i++)
        if (i == 0 || strcmp(got.v[i], got.v[i - 1]) != 0)
            strlist_add(&uniq, got.v[i]);
    t->receiver_dups = (long long)(got.n - uniq.n);
    const strlist *lists[] = {&uniq};
    char *arr = pg_array(lists, 1);
    expect_zero(env, &t->lost, "events the receiver never got",
                "SELECT count(*) FROM event_log e LEFT JOIN unnest($1::uuid[]) AS r(id)"
                " ON r.id = e.event_id WHERE r.id IS NULL",
                arr, NULL);
    expect_zero(env, &t->duplicates, "receiver got event ids that are not in event_log",
                "SELECT count(*) FROM unnest($1::uuid[]) AS r(id)"
                " WHERE NOT EXISTS (SELECT 1 FROM event_log e WHERE e.event_id = r.id)",
                arr, NULL);
    if (without_id)
        violation("%ld webhook requests without Vigil-Event-Id", without_id);
    fprintf(stderr,
            "chaos: webhooks: %lld events, %lld processed, %lld delivery rows; receiver got %zu"
            " requests for %zu events (%lld repeats: at-least-once HTTP, not an effect)\n",
            events, processed, rows, got.n, uniq.n, t->receiver_dups);
    free(arr);
    free(got.v);
    free(uniq.v);
}

/* What the vigil logs say happened (recoveries the checks above cannot see). */
static void scan_logs(h_env *env)
{
    static const char *const needles[][2] = {
        {"JetStream lost", "stream losses republished"},
        {"fault injection", "injected crashes"},
        {"failed (delivery", "consumer handler failures"},
        {"\"level\":\"error\"", "error lines"},
    };
    enum { N = sizeof needles / sizeof needles[0] };
    long counts[N] = {0};
    char pattern[H_PATH_SIZE + 16];
    snprintf(pattern, sizeof pattern, "%s/vigil-*.log", env->dir);
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0)
        return;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        char *text = h_read_file(g.gl_pathv[i]);
        for (char *line = text; line && *line;) {
            char *nl = strchr(line, '\n');
            if (nl)
                *nl = '\0';
            for (int k = 0; k < N; k++)
                counts[k] += strstr(line, needles[k][0]) != NULL;
            line = nl ? nl + 1 : NULL;
        }
        free(text);
    }
    fprintf(stderr, "chaos: from %zu vigil logs:", g.gl_pathc);
    for (int k = 0; k < N; k++)
        fprintf(stderr, "%s %s %ld", k ? "," : "", needles[k][1], counts[k]);
    fputc('\n', stderr);
    globfree(&g);
}

/* ---- setup ------------------------------------------------------------------------- */

static int create_customers(h_env *env)
{
    static const char *const countries[] = {"GB", "US", "DE", "FR", "NL", "ES"};
    for (int i = 0; i < N_CUSTOMERS; i++) {
        char body[256], problem[300];
        long retries = 0;
        snprintf(body, sizeof body,
                 "{\"full_name\": \"Chaos Customer %d\", \"country\": \"%s\","
                 " \"external_id\": \"chaos-customer-%d\"}",
                 i, countries[i % 6], i);
        if (post_until_accepted(env, "/customers", body, customers[i], &retries, problem,
                                sizeof problem) != 0) {
            fprintf(stderr, "chaos: cannot create a customer: %s\n", problem);
            return -1;
        }
    }
    return 0;
}

/* Registers the webhook (every event) on the receiver; its id into id_out. */
static int register_webhook(h_env *env, char id_out[48])
{
    char body[256], problem[300];
    long retries = 0;
    snprintf(body, sizeof body,
             "{\"url\": \"http://127.0.0.1:%d/hook\", \"event_types\": [], \"secret\": \"%s\"}",
             rx.port, WH_SECRET);
    if (post_until_accepted(env, "/webhooks", body, id_out, &retries, problem, sizeof problem)) {
        fprintf(stderr, "chaos: cannot register the webhook: %s\n", problem);
        return -1;
    }
    return 0;
}

static int start_env(chaos *c)
{
    h_env *env = c->env = h_env_new();
    if (!env)
        return -1;
    if (h_pg_set(env, "synchronous_commit=on") != 0 || h_pg_set(env, "fsync=on") != 0 ||
        h_pg_start(env) != 0 || h_nats_start(env) != 0 || h_migrate(env) != 0 ||
        h_key_create(env, "admin", env->admin_key, sizeof env->admin_key) != 0)
        return -1;
    c->proxy = h_proxy_start(env->nats_port);
    if (!c->proxy)
        return -1;
    snprintf(c->nats_url_env, sizeof c->nats_url_env, "VIGIL_NATS_URL=nats://127.0.0.1:%d",
             h_proxy_port(c->proxy));
    const char *const common[] = {c->nats_url_env,
                                  "VIGIL_CONSUMER_BACKOFF_MS=200",
                                  "VIGIL_CONSUMER_ACK_WAIT_MS=3000",
                                  "VIGIL_PUBLISH_ACK_TIMEOUT_MS=1000",
                                  "VIGIL_WEBHOOK_BACKOFF_MS=200",
                                  "VIGIL_WEBHOOK_TIMEOUT_MS=3000",
                                  "VIGIL_FAULT",
                                  NULL};
    int n = 0;
    for (; common[n]; n++)
        c->vigil_env[n] = c->crash_env[n] = common[n];
    c->vigil_env[n] = NULL;
    c->crash_env[n - 1] = "VIGIL_FAULT=consumer_crash_before_ack";
    c->crash_env[n] = NULL;
    return h_vigil_start(env, c->vigil_env);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: chaos [--duration SECONDS] [--seed N] [--soak]\n"
            "  --soak  a long run (%d s unless --duration says otherwise)\n",
            SOAK_S);
}

int main(int argc, char **argv)
{
    long duration = -1;
    uint64_t seed = ((uint64_t)time(NULL) << 16) ^ (uint64_t)getpid();
    int soak = 0;
    unsigned kinds = (1u << F_COUNT) - 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--duration") == 0 && i + 1 < argc)
            duration = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--soak") == 0)
            soak = 1;
        else if (strcmp(argv[i], "--faults") == 0 && i + 1 < argc && parse_kinds(argv[i + 1]))
            kinds = parse_kinds(argv[++i]);
        else {
            usage();
            return 2;
        }
    }
    if (duration < 0)
        duration = soak ? SOAK_S : 60;
    if (duration < 1) {
        usage();
        return 2;
    }
    fprintf(stderr, "chaos: seed %llu, duration %ld s (rerun: chaos --duration %ld --seed %llu)\n",
            (unsigned long long)seed, duration, duration, (unsigned long long)seed);

    chaos c = {.rng = seed, .kinds = kinds};
    for (int i = 0; i < F_COUNT; i++)
        c.deck[i] = i;
    char webhook_id[48] = "";
    if (start_env(&c) != 0) {
        fprintf(stderr, "chaos: setup failed\n");
        h_mark_failed(c.env);
        h_teardown(c.env);
        h_proxy_stop(c.proxy);
        return 1;
    }
    h_env *env = c.env;
    env->http_timeout_ms = 10000;
    /* The webhook first: events from before it was registered are not
     * delivered to it, and the customers' events count too. */
    has_webhooks =
        h_db_count(env, "SELECT (to_regclass('webhook_deliveries') IS NOT NULL)::int") == 1;
    if ((has_webhooks && (rx_start() != 0 || register_webhook(env, webhook_id) != 0)) ||
        create_customers(env) != 0) {
        fprintf(stderr, "chaos: setup failed\n");
        h_mark_failed(env);
        h_teardown(env);
        h_proxy_stop(c.proxy);
        return 1;
    }
    if (!has_webhooks)
        fprintf(stderr, "chaos: this build has no webhooks; checking the risk consumer only\n");

    /* Chaos: load all along, faults one at a time with calm in between. */
    atomic_int stop = 0;
    loader loads[N_LOADERS];
    memset(loads, 0, sizeof loads);
    t_start = h_now_ms();
    for (int i = 0; i < N_LOADERS; i++) {
        loads[i].env = env;
        loads[i].index = i;
        loads[i].rng = seed ^ (0x5851f42d4c957f2dULL * (uint64_t)(i + 1));
        loads[i].stop = &stop;
        if (pthread_create(&loads[i].thread, NULL, loader_main, &loads[i]) != 0)
            abort();
    }
    long long end = t_start + duration * 1000LL;
    while (h_now_ms() < end) {
        long long calm = rng_range(&c.rng, 1000, 4000);
        h_sleep_ms((int)(calm < end - h_now_ms() ? calm : end - h_now_ms()));
        if (h_now_ms() >= end)
            break;
        inject(&c, next_fault(&c));
    }
    long long t_last = h_now_ms();
    atomic_store(&stop, 1);
    long accepted = 0, retries = 0, failed = 0;
    for (int i = 0; i < N_LOADERS; i++) {
        pthread_join(loads[i].thread, NULL);
        accepted += atomic_load(&loads[i].accepted);
        retries += loads[i].retries;
        failed += loads[i].failed;
        if (loads[i].first_problem[0])
            violation("loader %d: a transaction was never accepted: %s", i, loads[i].first_problem);
    }
    note("load stopped: %ld accepted, %ld retries, %ld never accepted", accepted, retries, failed);

    /* Drain. */
    long long v = 0;
    for (long long shown = t_last; (v = drained(env)) != 1 && h_now_ms() - t_last < DRAIN_MS;
         h_sleep_ms(200))
        if (h_now_ms() - shown >= 5000) { /* what is still on its way */
            shown = h_now_ms();
            print_pipeline_state(env);
        }
    double drain_s = (h_now_ms() - t_last) / 1000.0;
    if (v != 1) {
        violation("the pipeline did not drain within %d s", DRAIN_MS / 1000);
        print_pipeline_state(env);
    } else {
        note("drained in %.1f s", drain_s);
    }

    /* The invariants. */
    tally t = {0};
    check_transactions(env, loads, &t);
    check_stream(env, &t);
    check_risk(env, &t);
    if (has_webhooks)
        check_webhooks(env, webhook_id, &t);
    char *out = NULL;
    int audit = h_vigil_run(env, &out, "audit", "verify", NULL);
    if (audit != 0)
        violation("vigil audit verify exited %d: %s", audit, out ? out : "");
    free(out);
    scan_logs(env);
    if (c.harness_errors)
        violation("%d faults could not be injected or healed", c.harness_errors);
    if (env->failed)
        violation("the harness marked the run failed (see the logs above)");

    char faults[256];
    int len = snprintf(faults, sizeof faults, "{");
    for (int i = 0; i < F_COUNT; i++)
        len += snprintf(faults + len, sizeof faults - (size_t)len, "%s%s: %d", i ? ", " : "",
                        fault_names[i], c.faults[i]);
    snprintf(faults + len, sizeof faults - (size_t)len, "}");
    printf("chaos: seed %llu, %ld s, transactions %lld, events %lld, faults %s, lost %lld,"
           " duplicate effects %lld, drained in %.1f s after the last fault%s\n",
           (unsigned long long)seed, duration, t.transactions, t.events, faults, t.lost,
           t.duplicates, drain_s, v == 1 ? "" : " (NOT drained)");
    if (has_webhooks)
        printf("chaos: webhook receiver repeats (at-least-once HTTP): %lld\n", t.receiver_dups);
    printf("chaos: %s (%d violations)\n", violations ? "FAILED" : "ok", violations);
    fflush(stdout);

    if (violations)
        h_mark_failed(env);
    h_teardown(env);
    h_proxy_stop(c.proxy);
    if (rx.daemon)
        MHD_stop_daemon(rx.daemon);
    free(rx.ids.v);
    for (int i = 0; i < N_LOADERS; i++) {
        free(loads[i].ext_ids.v);
        free(loads[i].tx_ids.v);
    }
    return violations ? 1 : 0;
}
