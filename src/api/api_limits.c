/*
 * api_limits.c — per-key token buckets, per-key stream counts and the
 * request deadline watchdog.
 *
 * Buckets live in memory, one per key that has authenticated (an unknown
 * key never gets one, so memory is bounded by the keys in the database).
 * Several instances behind a load balancer each enforce the limit: the
 * effective limit is the per-instance limit times the instances a key's
 * requests are spread over (documented in README "Abuse limits").
 *
 * Why a watchdog: libmicrohttpd's connection timeout is an idle timeout,
 * reset by every byte received, so a client sending one header byte per
 * second holds a connection (and, in numbers, the connection limit) forever.
 * Every connection is tracked from its start; a request that has not fully
 * arrived VIGIL_HTTP_TIMEOUT seconds after the connection opened (or after
 * the previous response on a kept-alive connection) has its socket shut
 * down, which libmicrohttpd sees as the client going away. The entry is
 * removed under the same lock in the "closed" notification, which
 * libmicrohttpd sends before it closes the descriptor, so the watchdog never
 * shuts down a descriptor that has been reused.
 */
#include "api/api_limits.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "domain/timeparse.h"
#include "util/log.h"

#define NBUCKETS 256

typedef struct bucket {
    char key[37];
    double tokens;
    int64_t last_us;
    int streams;
    struct bucket *next;
} bucket;

typedef struct watched {
    struct MHD_Connection *conn;
    int fd;
    atomic_llong since_us; /* when the current request began to be awaited */
    atomic_int receiving;  /* 1 until the request has fully arrived */
    int cut;
    struct watched *prev, *next;
} watched;

static struct {
    const vg_config *cfg;
    pthread_mutex_t mu; /* buckets */
    bucket *tab[NBUCKETS];
    pthread_mutex_t wmu; /* watched connections */
    watched *conns;
    pthread_t thread;
    int running;
    pthread_mutex_t stop_mu;
    pthread_cond_t stop_cv;
    int stopping;
    atomic_llong refused_rate, refused_streams, cut_slow;
} lim = {.mu = PTHREAD_MUTEX_INITIALIZER,
         .wmu = PTHREAD_MUTEX_INITIALIZER,
         .stop_mu = PTHREAD_MUTEX_INITIALIZER,
         .stop_cv = PTHREAD_COND_INITIALIZER};

/* FNV-1a of the key id. */
static unsigned slot_of(const char *key)
{
    uint32_t h = 2166136261u;
    for (; *key; key++)
        h = (h ^ (unsigned char)*key) * 16777619u;
    return h % NBUCKETS;
}

/* The key's bucket, created full. Called with lim.mu held. */
static bucket *bucket_of(const api_key_info *key, double burst, int64_t now)
{
    unsigned s = slot_of(key->id);
    for (bucket *b = lim.tab[s]; b; b = b->next)
        if (strcmp(b->key, key->id) == 0)
            return b;
    bucket *b = calloc(1, sizeof *b);
    if (!b)
        abort();
    snprintf(b->key, sizeof b->key, "%s", key->id);
    b->tokens = burst;
    b->last_us = now;
    b->next = lim.tab[s];
    lim.tab[s] = b;
    return b;
}

int api_limits_take(const api_key_info *key, int *retry_after)
{
    int ingest = key->role == ROLE_INGEST;
    double rate = (double)(ingest ? lim.cfg->rate_limit_ingest : lim.cfg->rate_limit);
    double burst = (double)(ingest ? lim.cfg->rate_burst_ingest : lim.cfg->rate_burst);
    if (rate <= 0)
        return 1;
    int64_t now = mono_us();
    pthread_mutex_lock(&lim.mu);
    bucket *b = bucket_of(key, burst, now);
    double refill = b->tokens + (double)(now - b->last_us) / 1e6 * rate;
    b->tokens = refill < burst ? refill : burst;
    b->last_us = now;
    int ok = b->tokens >= 1.0;
    if (ok)
        b->tokens -= 1.0;
    else {
        double wait = (1.0 - b->tokens) / rate; /* seconds until one token */
        *retry_after = (int)wait + ((double)(int)wait < wait);
    }
    pthread_mutex_unlock(&lim.mu);
    if (!ok) {
        if (*retry_after < 1)
            *retry_after = 1;
        atomic_fetch_add(&lim.refused_rate, 1);
    }
    return ok;
}

int api_limits_sse_acquire(const api_key_info *key)
{
    pthread_mutex_lock(&lim.mu);
    bucket *b = bucket_of(key, (double)lim.cfg->rate_burst, mono_us());
    int ok = b->streams < lim.cfg->sse_max_per_key;
    b->streams += ok;
    pthread_mutex_unlock(&lim.mu);
    if (!ok)
        atomic_fetch_add(&lim.refused_streams, 1);
    return ok;
}

void api_limits_sse_release(const api_key_info *key)
{
    pthread_mutex_lock(&lim.mu);
    bucket *b = bucket_of(key, (double)lim.cfg->rate_burst, mono_us());
    if (b->streams > 0)
        b->streams--;
    pthread_mutex_unlock(&lim.mu);
}

/* ---- request deadline ---------------------------------------------------- */

void api_limits_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                              enum MHD_ConnectionNotificationCode toe)
{
    (void)cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        watched *w = calloc(1, sizeof *w);
        if (!w)
            abort();
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        w->conn = conn;
        w->fd = ci ? ci->connect_fd : -1;
        atomic_store(&w->since_us, mono_us());
        atomic_store(&w->receiving, 1);
        pthread_mutex_lock(&lim.wmu);
        w->next = lim.conns;
        if (lim.conns)
            lim.conns->prev = w;
        lim.conns = w;
        pthread_mutex_unlock(&lim.wmu);
        *socket_context = w;
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
        watched *w = *socket_context;
        pthread_mutex_lock(&lim.wmu);
        if (w->prev)
            w->prev->next = w->next;
        else
            lim.conns = w->next;
        if (w->next)
            w->next->prev = w->prev;
        pthread_mutex_unlock(&lim.wmu);
        free(w);
        *socket_context = NULL;
    }
}

static watched *watched_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

void api_limits_request_received(struct MHD_Connection *conn)
{
    watched *w = watched_of(conn);
    if (w)
        atomic_store(&w->receiving, 0);
}

void api_limits_request_done(struct MHD_Connection *conn)
{
    watched *w = watched_of(conn);
    if (w) {
        atomic_store(&w->since_us, mono_us());
        atomic_store(&w->receiving, 1);
    }
}

static void *watchdog(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "http watchdog");
    int64_t limit_us = lim.cfg->http_timeout * 1000000LL;
    pthread_mutex_lock(&lim.stop_mu);
    while (!lim.stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 250 * 1000000L; /* 4 checks a second: cut within 0.25 s */
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&lim.stop_cv, &lim.stop_mu, &until);
        if (lim.stopping)
            break;
        int64_t now = mono_us();
        int cut = 0;
        pthread_mutex_lock(&lim.wmu);
        for (watched *w = lim.conns; w; w = w->next) {
            if (w->cut || w->fd < 0 || !atomic_load(&w->receiving) ||
                now - atomic_load(&w->since_us) < limit_us)
                continue;
            /* shutdown, not close: the descriptor stays libmicrohttpd's. */
            shutdown(w->fd, SHUT_RDWR);
            w->cut = 1;
            cut++;
        }
        pthread_mutex_unlock(&lim.wmu);
        if (cut) {
            atomic_fetch_add(&lim.cut_slow, cut);
            log_debug("http: cut %d connections whose request took over %lds to arrive", cut,
                      lim.cfg->http_timeout);
        }
    }
    pthread_mutex_unlock(&lim.stop_mu);
    return NULL;
}

vg_status api_limits_start(const vg_config *cfg, vg_error *err)
{
    lim.cfg = cfg;
    lim.stopping = 0;
    if (pthread_create(&lim.thread, NULL, watchdog, NULL) != 0)
        return vg_fail(err, VG_E_INTERNAL, NULL, "cannot start the request-deadline watchdog");
    lim.running = 1;
    return VG_OK;
}

void api_limits_stop(void)
{
    if (lim.running) {
        pthread_mutex_lock(&lim.stop_mu);
        lim.stopping = 1;
        pthread_cond_signal(&lim.stop_cv);
        pthread_mutex_unlock(&lim.stop_mu);
        pthread_join(lim.thread, NULL);
        lim.running = 0;
    }
    pthread_mutex_lock(&lim.mu);
    for (int i = 0; i < NBUCKETS; i++) {
        while (lim.tab[i]) {
            bucket *b = lim.tab[i];
            lim.tab[i] = b->next;
            free(b);
        }
    }
    pthread_mutex_unlock(&lim.mu);
}

void api_limits_render(FILE *f)
{
    fprintf(f,
            "# HELP vigil_http_rate_limited_total Requests refused with 429: the key was over "
            "its rate (VIGIL_RATE_LIMIT).\n# TYPE vigil_http_rate_limited_total counter\n"
            "vigil_http_rate_limited_total %lld\n",
            (long long)atomic_load(&lim.refused_rate));
    fprintf(f,
            "# HELP vigil_sse_refused_per_key_total Event streams refused with 429: the key had "
            "VIGIL_SSE_MAX_PER_KEY open.\n# TYPE vigil_sse_refused_per_key_total counter\n"
            "vigil_sse_refused_per_key_total %lld\n",
            (long long)atomic_load(&lim.refused_streams));
    fprintf(f,
            "# HELP vigil_http_slow_requests_cut_total Connections closed because a request "
            "took longer than VIGIL_HTTP_TIMEOUT to arrive (slow-loris).\n"
            "# TYPE vigil_http_slow_requests_cut_total counter\n"
            "vigil_http_slow_requests_cut_total %lld\n",
            (long long)atomic_load(&lim.cut_slow));
}
