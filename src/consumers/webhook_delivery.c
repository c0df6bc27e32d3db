/*
 * webhook_delivery.c — the webhook delivery worker (see webhooks.h).
 *
 * One thread drives a libcurl multi handle with up to WH_SLOTS requests in
 * flight, and one PostgreSQL connection that LISTENs on vigil_webhooks. Each
 * turn of the loop records finished attempts, claims due deliveries into
 * free slots, lets curl make progress, then sleeps in curl_multi_poll on the
 * sockets of every transfer and of PostgreSQL (so a NOTIFY from a fresh
 * enqueue wakes it at once) until the next retry is due or at most
 * WH_POLL_MS (which also picks up other workers' expired leases).
 *
 * A slot's life: claimed (lease taken and attempt counted in the database)
 * → sending → done → recorded → free. When the database is down, finished
 * outcomes stay in their slots and are recorded once it is back; the lease
 * (timeout + 30 s) fences a worker that stayed away too long: its late
 * outcome comes back "stale" and is dropped, since another worker has
 * already sent again (receivers deduplicate: at least once).
 *
 * Fairness: a claim takes at most 4 deliveries per webhook and none for a
 * webhook that still has requests in flight here, so one slow endpoint holds
 * at most 4 of the 32 slots.
 */
#include "consumers/webhooks.h"

#include <curl/curl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "domain/timeparse.h"
#include "domain/webhook.h"
#include "store/db.h"
#include "store/store_webhooks.h"
#include "util/log.h"

#define WH_SLOTS          32
#define WH_POLL_MS        1000
#define WH_CONNECT_MS     5000L
#define WH_LEASE_EXTRA_MS 30000L
#define WH_RESP_KEEP      200 /* bytes of a failing response kept as its error */

typedef enum { SLOT_FREE, SLOT_SENDING, SLOT_DONE } slot_state;

typedef struct slot {
    slot_state state;
    webhook_job job;
    CURL *easy; /* kept across uses; the multi handle keeps the connections */
    struct curl_slist *headers;
    char errbuf[CURL_ERROR_SIZE];
    char resp[WH_RESP_KEEP + 1];
    size_t resp_len;
    int64_t started_us;
    long http_status; /* 0: no HTTP response */
    long duration_ms;
    char error[512]; /* "" on a 2xx */
} slot;

typedef struct worker {
    const vg_config *cfg;
    atomic_int *stop;
    CURLM *multi;
    PGconn *db;
    int64_t next_claim_us;   /* look for due deliveries at this time */
    int64_t next_connect_us; /* earliest database reconnect */
    int db_said;             /* "waiting for the database" logged */
    slot s[WH_SLOTS];
} worker;

static webhook_stats stats;

webhook_stats *webhooks_stats(void)
{
    return &stats;
}

/* ---- the database side ------------------------------------------------- */

static void db_error(const char *what, vg_error *err)
{
    atomic_fetch_add(&stats.errors, 1);
    log_error("webhooks: %s failed: %s", what, err->detail[0] ? err->detail : "database error");
    vg_error_clear(err);
}

/* 1 when w->db is usable; (re)connects and LISTENs, at most once a second. */
static int db_ready(worker *w)
{
    if (w->db && PQstatus(w->db) == CONNECTION_OK)
        return 1;
    int64_t now = mono_us();
    if (now < w->next_connect_us)
        return 0;
    w->next_connect_us = now + 1000000;
    PQfinish(w->db);
    vg_error err = {0};
    w->db = db_connect_as(w->cfg->database_url, (int)w->cfg->db_connect_timeout,
                          "vigil webhook delivery", &err);
    if (w->db && db_run(w->db, "LISTEN vigil_webhooks", 0, NULL, &err) == VG_OK) {
        if (w->db_said)
            log_info("webhooks: delivery worker reconnected to the database");
        w->db_said = 0;
        w->next_claim_us = 0;
        return 1;
    }
    atomic_fetch_add(&stats.errors, 1);
    if (!w->db_said)
        log_warn("webhooks: delivery worker waiting for the database: %s",
                 err.detail[0] ? err.detail : "cannot connect");
    w->db_said = 1;
    vg_error_clear(&err);
    PQfinish(w->db);
    w->db = NULL;
    return 0;
}

/* ---- one request --------------------------------------------------------- */

static size_t keep_response(char *data, size_t size, size_t n, void *arg)
{
    slot *s = arg;
    size_t len = size * n, room = WH_RESP_KEEP - s->resp_len;
    size_t take = len < room ? len : room;
    memcpy(s->resp + s->resp_len, data, take);
    s->resp_len += take;
    s->resp[s->resp_len] = '\0';
    return len; /* the rest is read and dropped */
}

static void add_header(slot *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_header(slot *s, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    struct curl_slist *l = curl_slist_append(s->headers, line);
    if (!l)
        abort();
    s->headers = l;
}

/* A slot that failed before reaching the network: done, with `why`. */
static void fail_local(slot *s, const char *why)
{
    snprintf(s->error, sizeof s->error, "%s", why);
    s->http_status = 0;
    s->duration_ms = 0;
    s->state = SLOT_DONE;
}

/* Takes over `job` into the free slot `s` and starts sending it. */
static void start(worker *w, slot *s, webhook_job *job)
{
    s->job = *job;
    memset(job, 0, sizeof *job);
    curl_slist_free_all(s->headers); /* left by a start that failed locally */
    s->headers = NULL;
    s->resp_len = 0;
    s->resp[0] = s->errbuf[0] = s->error[0] = '\0';
    s->http_status = 0;
    s->started_us = mono_us();
    /* Signed at sending time: each retry carries a fresh timestamp, so a
     * receiver's replay window never rejects a legitimate retry. */
    long long ts = (long long)time(NULL);
    char sig[WEBHOOK_SIG_SIZE];
    if (webhook_sign(s->job.secret, ts, s->job.body, s->job.body_len, sig) != 0) {
        fail_local(s, "cannot compute the HMAC signature (OpenSSL)");
        return;
    }
    if (!s->easy && !(s->easy = curl_easy_init())) {
        fail_local(s, "cannot create a libcurl handle");
        return;
    }
    curl_easy_reset(s->easy);
    add_header(s, "Content-Type: application/cloudevents+json");
    add_header(s, "Vigil-Webhook-Id: %s", s->job.webhook_id);
    add_header(s, "Vigil-Event-Id: %s", s->job.event_id);
    add_header(s, "Vigil-Delivery-Attempt: %d", s->job.attempt);
    add_header(s, "Vigil-Timestamp: %lld", ts);
    add_header(s, "Vigil-Signature: %s", sig);
    add_header(s, "Expect:"); /* no 100-continue round trip */
    long timeout = w->cfg->webhook_timeout_ms;
    CURL *e = s->easy;
    curl_easy_setopt(e, CURLOPT_URL, s->job.url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     timeout < WH_CONNECT_MS ? timeout : WH_CONNECT_MS);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, s->job.body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->job.body_len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, s->headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "vigil-webhooks/" VIGIL_VERSION);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, keep_response);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, s->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, s);
    CURLMcode mc = curl_multi_add_handle(w->multi, e);
    if (mc != CURLM_OK) {
        fail_local(s, curl_multi_strerror(mc));
        return;
    }
    s->state = SLOT_SENDING;
    atomic_fetch_add(&stats.in_flight, 1);
}

/* Replaces bytes a receiver sent that are not printable ASCII: its reply
 * goes into a text column and into logs. */
static void printable(char *p)
{
    for (; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '?';
}

/* Moves every finished transfer to SLOT_DONE; returns how many. */
static int collect(worker *w)
{
    int left, n = 0;
    CURLMsg *m;
    while ((m = curl_multi_info_read(w->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURLcode rc = m->data.result;
        char *priv = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        slot *s = (slot *)priv;
        curl_multi_remove_handle(w->multi, s->easy); /* m is invalid from here */
        s->duration_ms = (long)((mono_us() - s->started_us) / 1000);
        if (rc != CURLE_OK) {
            snprintf(s->error, sizeof s->error, "%s",
                     s->errbuf[0] ? s->errbuf : curl_easy_strerror(rc));
        } else {
            curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &s->http_status);
            printable(s->resp);
            if (s->http_status < 200 || s->http_status > 299)
                snprintf(s->error, sizeof s->error, "HTTP %ld%s%s%s", s->http_status,
                         s->http_status >= 300 && s->http_status < 400
                             ? " (redirects are not followed)"
                             : "",
                         s->resp_len ? ": " : "", s->resp);
        }
        printable(s->error);
        curl_slist_free_all(s->headers);
        s->headers = NULL;
        s->state = SLOT_DONE;
        atomic_fetch_sub(&stats.in_flight, 1);
        n++;
    }
    return n;
}

static void slot_free(slot *s)
{
    webhook_job_clear(&s->job);
    s->state = SLOT_FREE;
}

/* Records every finished attempt; keeps them when the database is gone. */
static void record_done(worker *w)
{
    for (int i = 0; i < WH_SLOTS; i++) {
        slot *s = &w->s[i];
        if (s->state != SLOT_DONE)
            continue;
        webhook_result res = {s->http_status, s->error[0] ? s->error : NULL, s->duration_ms};
        char outcome[16];
        long long next_in = 0;
        vg_error err = {0};
        vg_status st = store_webhooks_record(w->db, &s->job, &res, w->cfg->webhook_backoff_ms,
                                             w->cfg->webhook_horizon_s, outcome, &next_in, &err);
        if (st != VG_OK && (st == VG_E_UNAVAILABLE || PQstatus(w->db) != CONNECTION_OK)) {
            db_error("recording a delivery attempt (kept for later)", &err);
            return;
        }
        if (st != VG_OK) {
            log_error("webhooks: attempt %d of delivery %s (event %s) could not be recorded;"
                      " it is sent again when its lease ends",
                      s->job.attempt, s->job.delivery_id, s->job.event_id);
            db_error("recording a delivery attempt", &err);
        } else if (strcmp(outcome, "delivered") == 0) {
            atomic_fetch_add(&stats.delivered, 1);
            log_debug("webhooks: event %s delivered to webhook %s (attempt %d, HTTP %ld, %ld ms)",
                      s->job.event_id, s->job.webhook_id, s->job.attempt, s->http_status,
                      s->duration_ms);
        } else if (strcmp(outcome, "retry") == 0) {
            atomic_fetch_add(&stats.retried, 1);
            log_warn("webhooks: event %s to webhook %s failed (attempt %d): %s; retry in %lld ms",
                     s->job.event_id, s->job.webhook_id, s->job.attempt, s->error, next_in);
        } else if (strcmp(outcome, "dead") == 0) {
            atomic_fetch_add(&stats.dead, 1);
            log_error("webhooks: event %s to webhook %s dead after %d attempts (horizon %lds): %s;"
                      " dead letter written",
                      s->job.event_id, s->job.webhook_id, s->job.attempt, w->cfg->webhook_horizon_s,
                      s->error);
        } else {
            atomic_fetch_add(&stats.stale, 1);
            log_warn("webhooks: outcome of attempt %d of delivery %s dropped: another worker"
                     " claimed it after the lease ran out",
                     s->job.attempt, s->job.delivery_id);
        }
        slot_free(s);
        w->next_claim_us = 0; /* a slot is free: claim, and learn when the next retry is due */
    }
}

/* Lists the webhooks with a request in this worker (each once) into busy;
 * returns how many. */
static int busy_webhooks(const worker *w, const char *busy[WH_SLOTS])
{
    int n = 0;
    for (int i = 0; i < WH_SLOTS; i++) {
        if (w->s[i].state == SLOT_FREE)
            continue;
        int seen = 0;
        for (int k = 0; k < n && !seen; k++)
            seen = strcmp(busy[k], w->s[i].job.webhook_id) == 0;
        if (!seen)
            busy[n++] = w->s[i].job.webhook_id;
    }
    return n;
}

/* Fills free slots with due deliveries, then schedules the next look: when
 * the earliest delivery it may take becomes due, at most WH_POLL_MS away. */
static void claim(worker *w)
{
    const char *busy[WH_SLOTS];
    int free_idx[WH_SLOTS], nfree = 0;
    for (int i = 0; i < WH_SLOTS; i++)
        if (w->s[i].state == SLOT_FREE)
            free_idx[nfree++] = i;
    w->next_claim_us = mono_us() + WH_POLL_MS * 1000LL;
    if (nfree == 0)
        return; /* a slot freeing up brings the next claim forward */
    webhook_job jobs[WH_SLOTS];
    int n = 0, any = 0, nbusy = busy_webhooks(w, busy);
    long long due_ms = 0;
    vg_error err = {0};
    vg_status st = store_webhooks_claim(
        w->db, nfree, w->cfg->webhook_timeout_ms + WH_LEASE_EXTRA_MS, busy, nbusy, jobs, &n, &err);
    if (st != VG_OK) {
        db_error("claiming deliveries", &err);
        return;
    }
    for (int i = 0; i < n; i++)
        start(w, &w->s[free_idx[i]], &jobs[i]);
    nbusy = busy_webhooks(w, busy);
    if (store_webhooks_next_due(w->db, busy, nbusy, &any, &due_ms, &err) != VG_OK) {
        db_error("reading the next due delivery", &err);
        return;
    }
    int64_t now = mono_us();
    if (any && due_ms <= 0) /* became due meanwhile, or another worker is claiming it */
        w->next_claim_us = now + 20000;
    else if (any && due_ms < WH_POLL_MS)
        w->next_claim_us = now + due_ms * 1000;
}

/* Sleeps in curl until a socket (a transfer's or PostgreSQL's) is ready or
 * the next claim is due; a NOTIFY brings the claim forward to now. */
static void wait_for_work(worker *w, int db_ok)
{
    int has_free = 0, has_done = 0;
    for (int i = 0; i < WH_SLOTS; i++) {
        has_free |= w->s[i].state == SLOT_FREE;
        has_done |= w->s[i].state == SLOT_DONE;
    }
    int64_t now = mono_us(), until = now + WH_POLL_MS * 1000LL;
    if (db_ok && has_free && w->next_claim_us < until)
        until = w->next_claim_us > now ? w->next_claim_us : now;
    /* A NOTIFY that came in during the last claim's query was queued by
     * libpq then, leaving the socket quiet: claim now rather than after
     * WH_POLL_MS. */
    if (db_ok && db_take_notifies(w->db)) {
        w->next_claim_us = 0;
        until = now;
    }
    int timeout = (int)((until - now + 999) / 1000);
    if (has_done && timeout < 200)
        timeout = 200; /* outcomes waiting on a failing database: do not spin */
    struct curl_waitfd fd = {.fd = db_ok ? PQsocket(w->db) : -1, .events = CURL_WAIT_POLLIN};
    curl_multi_poll(w->multi, fd.fd >= 0 ? &fd : NULL, fd.fd >= 0 ? 1 : 0, timeout, NULL);
    if (fd.fd < 0)
        return;
    if (!PQconsumeInput(w->db)) {
        log_warn("webhooks: delivery worker lost the database: %s", PQerrorMessage(w->db));
        atomic_fetch_add(&stats.errors, 1);
        PQfinish(w->db);
        w->db = NULL;
        w->db_said = 1;
        return;
    }
    if (db_take_notifies(w->db))
        w->next_claim_us = 0;
}

/* Stopping: records what finished, gives back what is still in flight. */
static void shut_down(worker *w)
{
    int db_ok = w->db && PQstatus(w->db) == CONNECTION_OK;
    collect(w);
    if (db_ok)
        record_done(w);
    for (int i = 0; i < WH_SLOTS; i++) {
        slot *s = &w->s[i];
        if (s->state == SLOT_SENDING) {
            curl_multi_remove_handle(w->multi, s->easy);
            atomic_fetch_sub(&stats.in_flight, 1);
        }
        if (s->state != SLOT_FREE) {
            vg_error err = {0};
            if (!db_ok || store_webhooks_abandon(w->db, &s->job, &err) != VG_OK) {
                log_warn("webhooks: attempt %d of delivery %s left unfinished; it is sent again"
                         " when its lease ends",
                         s->job.attempt, s->job.delivery_id);
                vg_error_clear(&err);
            }
            slot_free(s);
        }
        curl_slist_free_all(s->headers);
        curl_easy_cleanup(s->easy);
    }
    curl_multi_cleanup(w->multi);
    PQfinish(w->db);
}

void webhooks_deliver(const vg_config *cfg, atomic_int *stop)
{
    static worker zero;
    worker *w = malloc(sizeof *w);
    if (!w)
        abort();
    *w = zero;
    w->cfg = cfg;
    w->stop = stop;
    CURLcode gc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (gc != CURLE_OK || !(w->multi = curl_multi_init())) {
        /* Deliveries pile up where operators see them: /metrics pending. */
        atomic_fetch_add(&stats.errors, 1);
        log_error("webhooks: delivery worker cannot start libcurl: %s; no webhook is sent",
                  curl_easy_strerror(gc));
        if (gc == CURLE_OK)
            curl_global_cleanup();
        free(w);
        return;
    }
    log_info("webhooks: delivery worker running (%d requests in flight at most, timeout %ld ms,"
             " backoff %ld ms, horizon %ld s)",
             WH_SLOTS, cfg->webhook_timeout_ms, cfg->webhook_backoff_ms, cfg->webhook_horizon_s);
    while (!atomic_load(stop)) {
        int db_ok = db_ready(w);
        if (db_ok) {
            record_done(w);
            if (mono_us() >= w->next_claim_us)
                claim(w);
        }
        int running;
        curl_multi_perform(w->multi, &running);
        if (collect(w) > 0 && db_ok)
            continue; /* record at once */
        wait_for_work(w, db_ok && w->db && PQstatus(w->db) == CONNECTION_OK);
    }
    shut_down(w);
    free(w);
    curl_global_cleanup();
}
