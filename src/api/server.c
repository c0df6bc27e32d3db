/*
 * server.c — request life cycle on top of libmicrohttpd.
 *
 * For each request: read the body (bounded by VIGIL_MAX_BODY_BYTES), match
 * the routing table, authenticate the bearer key, check the route admits the
 * key's role, run the handler, queue its reply with X-Request-Id, and write
 * one JSON access-log line when the response is done.
 *
 * Handlers run on MHD's worker threads and block on PostgreSQL; the thread
 * pool size is the concurrency limit, and the DB pool holds one connection
 * per worker so a request never waits for a connection.
 */
#include "api/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "api/api_ingest.h"
#include "api/api_limits.h"
#include "store/store_list.h"
#include "domain/bodies.h"
#include "domain/timeparse.h"
#include "domain/validate.h"
#include "events/sse.h"
#include "events/wake.h"
#include "util/hex.h"
#include "util/log.h"
#include "util/metrics.h"

static atomic_int in_flight;
/* Set at SIGTERM/SIGINT. A request that starts after it (on a keep-alive
 * connection: the listening socket no longer accepts) is refused with 503
 * and "Connection: close" instead of being served. Serving them kept
 * in_flight above zero for as long as clients kept sending, so under a
 * steady load the drain always ran to VIGIL_SHUTDOWN_GRACE and a restart
 * took longer than a supervisor's stop timeout (the chaos test's 15 s,
 * under ASan). */
static atomic_int draining;

/* ---- request context ---------------------------------------------------- */

/* Our request ids: 12 random bytes as 24 hex digits. One RAND_bytes call
 * per request cost more than the rest of the id (OpenSSL 3 looks its
 * generator up on every call: about 2.7 % of `vigil serve`'s CPU in
 * benchmark 2), so each HTTP thread draws a block of ids at once and hands
 * them out; they stay unpredictable. Should the generator fail, the id is
 * made unique from the time and a counter instead, and the failure logged
 * (the first time and every 1024th after). */
#define RID_BYTES 12
static _Thread_local unsigned char rid_block[RID_BYTES * 256];
static _Thread_local size_t rid_next = sizeof rid_block;
static atomic_ullong rid_fallbacks;

static void random_request_id(char out[2 * RID_BYTES + 1])
{
    if (rid_next == sizeof rid_block) {
        if (RAND_bytes(rid_block, sizeof rid_block) != 1) {
            unsigned long long k = atomic_fetch_add(&rid_fallbacks, 1);
            if (k % 1024 == 0)
                log_error("request ids: RAND_bytes failed (%llu times); using time-and-counter "
                          "ids",
                          k + 1);
            snprintf(out, 2 * RID_BYTES + 1, "%012llx%012llx",
                     (unsigned long long)now_epoch_us() & 0xffffffffffffULL, k & 0xffffffffffffULL);
            return;
        }
        rid_next = 0;
    }
    hex_encode(rid_block + rid_next, RID_BYTES, out);
    rid_next += RID_BYTES;
}

static void new_request_id(api_ctx *ctx)
{
    const char *given = MHD_lookup_connection_value(ctx->conn, MHD_HEADER_KIND, "X-Request-Id");
    /* Accept a caller's id only if it is short and plain, to keep logs safe. */
    if (given && strlen(given) > 0 && strlen(given) < sizeof ctx->request_id &&
        strspn(given, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:") ==
            strlen(given)) {
        snprintf(ctx->request_id, sizeof ctx->request_id, "%s", given);
        return;
    }
    random_request_id(ctx->request_id);
}

PGconn *api_db(api_ctx *ctx, vg_error *err)
{
    if (!ctx->db)
        ctx->db = db_acquire(ctx->state->pool, err);
    return ctx->db;
}

const char *api_query(api_ctx *ctx, const char *name)
{
    return MHD_lookup_connection_value(ctx->conn, MHD_GET_ARGUMENT_KIND, name);
}

vg_status api_query_limit(api_ctx *ctx, int def, int *limit, vg_error *err)
{
    const char *s = api_query(ctx, "limit");
    long max = ctx->state->cfg->page_limit_max;
    if (!s) {
        *limit = def < max ? def : (int)max;
        return VG_OK;
    }
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > max)
        return vg_fail(err, VG_E_INVALID, "limit", "must be an integer from 1 to %ld", max);
    *limit = (int)v;
    return VG_OK;
}

vg_status api_page_args(api_ctx *ctx, const char **after, int *limit, vg_error *err)
{
    *after = api_query(ctx, "after");
    vg_status st = api_query_limit(ctx, 50, limit, err);
    if (st == VG_OK && *after && !uuid_parse(*after, NULL))
        st = vg_fail(err, VG_E_INVALID, "after", "must be the 'next' value of a previous page");
    return st;
}

vg_status api_query_uuid(api_ctx *ctx, const char *name, char buf[37], const char **value,
                         vg_error *err)
{
    const char *v = api_query(ctx, name);
    *value = NULL;
    if (!v)
        return VG_OK;
    if (!uuid_parse(v, buf))
        return vg_fail(err, VG_E_INVALID, name, "must be a UUID");
    *value = buf;
    return VG_OK;
}

void api_reply_fetch(api_ctx *ctx, const char *what, api_fetch_fn fetch)
{
    const char *id = api_param_uuid(ctx, 0, what);
    if (!id)
        return;
    vg_error err = {0};
    char *out = NULL;
    PGconn *db = api_db(ctx, &err);
    vg_status st = db ? fetch(db, id, &out, &err) : err.code;
    api_reply_result(ctx, st, 200, out, &err);
}

void api_reply_list(api_ctx *ctx, const list_spec *spec, const char *const *values, vg_error *err)
{
    const char *after;
    int limit;
    char *out = NULL;
    vg_status st = err->code;
    if (st == VG_OK)
        st = api_page_args(ctx, &after, &limit, err);
    PGconn *db = st == VG_OK ? api_db(ctx, err) : NULL;
    if (st == VG_OK)
        st = db ? store_list(db, spec, values, after, limit, &out, err) : err->code;
    api_reply_result(ctx, st, 200, out, err);
}

void api_actor(const api_ctx *ctx, char out[160])
{
    snprintf(out, 160, "key:%s", ctx->key.name);
}

/* ---- replies ------------------------------------------------------------ */

static void set_reply(api_ctx *ctx, int status, char *body, const char *type)
{
    free(ctx->reply_body);
    if (ctx->stream) { /* a later reply replaces a stream not yet queued */
        MHD_destroy_response(ctx->stream);
        ctx->stream = NULL;
    }
    ctx->status = status;
    ctx->reply_body = body;
    ctx->reply_len = body ? strlen(body) : 0;
    ctx->reply_type = type;
}

void api_reply_json(api_ctx *ctx, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(body);
    if (body && !text) {
        api_reply_fail(ctx, VG_E_INTERNAL, NULL, "could not encode the reply");
        return;
    }
    set_reply(ctx, status, text, "application/json");
}

void api_reply_text(api_ctx *ctx, int status, const char *json_text)
{
    char *copy = strdup(json_text);
    if (!copy)
        abort();
    set_reply(ctx, status, copy, "application/json");
}

void api_reply_error(api_ctx *ctx, const vg_error *err)
{
    vg_status code = err->code == VG_OK ? VG_E_INTERNAL : err->code;
    json_t *p = json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", "about:blank", "title",
                          vg_status_title(code), "status", vg_status_http(code), "detail",
                          err->detail[0] ? err->detail : vg_status_title(code), "request_id",
                          ctx->request_id);
    char type[128];
    snprintf(type, sizeof type, "https://vigil.dev/problems/%s", vg_status_slug(code));
    json_object_set_new(p, "type", json_string(type));
    if (err->field[0])
        json_object_set_new(p, "field", json_string(err->field));
    if (err->items)
        json_object_set(p, "errors", err->items);
    if (code == VG_E_UNAVAILABLE)
        ctx->retry_after = 1;
    char *text = json_dumps(p, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(p);
    set_reply(ctx, vg_status_http(code), text, "application/problem+json");
}

void api_reply_bytes(api_ctx *ctx, int status, const void *data, size_t len,
                     const char *content_type)
{
    char *copy = malloc(len + 1);
    if (!copy)
        abort();
    memcpy(copy, data, len);
    copy[len] = '\0';
    set_reply(ctx, status, copy, content_type);
    ctx->reply_len = len; /* may hold NUL bytes (images) */
}

void api_reply_stream(api_ctx *ctx, struct MHD_Response *resp, const char *content_type)
{
    set_reply(ctx, 200, NULL, content_type);
    ctx->stream = resp;
}

void api_reply_fail(api_ctx *ctx, vg_status code, const char *field, const char *fmt, ...)
{
    vg_error err = {.code = code};
    snprintf(err.field, sizeof err.field, "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err.detail, sizeof err.detail, fmt, ap);
    va_end(ap);
    api_reply_error(ctx, &err);
}

void api_reply_result(api_ctx *ctx, vg_status st, int status, char *out, vg_error *err)
{
    if (st == VG_OK)
        api_reply_text(ctx, status, out ? out : "null");
    else
        api_reply_error(ctx, err);
    free(out);
    vg_error_clear(err);
}

const char *api_param_uuid(api_ctx *ctx, int i, const char *what)
{
    char canon[37];
    if (i >= ctx->nparams || !uuid_parse(ctx->params[i], canon)) {
        api_reply_fail(ctx, VG_E_NOT_FOUND, NULL, "%s %s not found", what,
                       i < ctx->nparams ? ctx->params[i] : "");
        return NULL;
    }
    memcpy(ctx->params[i], canon, sizeof canon);
    return ctx->params[i];
}

/* ---- body --------------------------------------------------------------- */

json_t *api_body_json(api_ctx *ctx, vg_error *err)
{
    if (ctx->body_too_large)
        return vg_fail(err, VG_E_TOO_LARGE, NULL, "request body exceeds %ld bytes",
                       ctx->state->cfg->max_body_bytes),
               NULL;
    const char *type =
        MHD_lookup_connection_value(ctx->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!type || (strncasecmp(type, "application/json", 16) != 0 && !strstr(type, "+json")))
        return vg_fail(err, VG_E_MEDIA_TYPE, "Content-Type", "send the body as application/json"),
               NULL;
    return body_parse(ctx->body, ctx->body_len, ctx->state->cfg->max_json_depth, err);
}

/* ---- routing ------------------------------------------------------------ */

/* Matches `path` against `pattern`, capturing {x} segments. */
static int route_match(const char *pattern, const char *path, api_ctx *ctx)
{
    int n = 0;
    while (*pattern && *path) {
        if (*pattern != '/' || *path != '/')
            return 0;
        pattern++, path++;
        size_t plen = strcspn(pattern, "/"), slen = strcspn(path, "/");
        if (pattern[0] == '{') {
            if (slen == 0 || slen >= sizeof ctx->params[0] || n >= API_MAX_PARAMS)
                return 0;
            memcpy(ctx->params[n], path, slen);
            ctx->params[n][slen] = '\0';
            n++;
        } else if (plen != slen || strncmp(pattern, path, plen) != 0) {
            return 0;
        }
        pattern += plen, path += slen;
    }
    if (*pattern || *path)
        return 0;
    ctx->nparams = n;
    return 1;
}

/* Finds the route; on a path match with another method, builds Allow. */
static const api_route *route_find(api_ctx *ctx, char *allow, size_t allow_sz)
{
    allow[0] = '\0';
    for (const api_route *r = api_routes; r->method; r++) {
        if (!route_match(r->pattern, ctx->path, ctx))
            continue;
        if (strcmp(r->method, ctx->method) == 0)
            return r;
        size_t used = strlen(allow);
        snprintf(allow + used, allow_sz - used, "%s%s", used ? ", " : "", r->method);
    }
    return NULL;
}

/* The caller's API key, or NULL when none is usable. Normally it comes
 * only from "Authorization: Bearer KEY". Exception: GET /events/stream, when
 * no Authorization header is present, also takes ?access_token=KEY, because
 * a browser's EventSource cannot send headers. It stays that narrow because
 * a key in a URL can end up in proxy logs and browser history (our access
 * log records the path without the query string). */
static const char *request_key(api_ctx *ctx)
{
    const char *auth =
        MHD_lookup_connection_value(ctx->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    const char *secret = NULL;
    if (auth)
        /* RFC 7235: the scheme name is case-insensitive. */
        secret = strncasecmp(auth, "Bearer ", 7) == 0 ? auth + 7 : NULL;
    else if (ctx->route->handler == api_events_stream)
        secret = api_query(ctx, "access_token");
    if (!secret || !*secret || strlen(secret) >= API_KEY_SECRET_MAX)
        return NULL;
    return secret;
}

vg_status api_key_recheck(api_ctx *ctx, vg_error *err)
{
    if (!ctx->key_cached)
        return VG_OK;
    const char *secret = request_key(ctx);
    PGconn *db = api_db(ctx, err);
    if (!db)
        return err->code;
    vg_status st = secret ? keys_authenticate(db, secret, &ctx->key, err)
                          : vg_fail(err, VG_E_UNAUTHORIZED, "Authorization", "unknown API key");
    if (st == VG_OK)
        ctx->key_cached = 0;
    else if (st == VG_E_UNAUTHORIZED)
        keys_cache_forget(ctx->key.id);
    return st;
}

static void authenticate_and_run(api_ctx *ctx)
{
    const api_route *r = ctx->route;
    if (r->roles) {
        const char *secret = request_key(ctx);
        if (!secret) {
            api_reply_fail(ctx, VG_E_UNAUTHORIZED, "Authorization",
                           "send 'Authorization: Bearer <API key>'%s",
                           r->handler == api_events_stream ? " (or ?access_token=<API key>)" : "");
            return;
        }
        vg_error err = {0};
        PGconn *db = api_db(ctx, &err);
        /* POST /transactions alone authenticates from the cache: its
         * writes check the key again in their transaction (migration
         * 0024), or it calls api_key_recheck. */
        vg_status st = !db ? err.code
                       : r->handler == api_transactions_post
                           ? keys_authenticate_cached(db, secret, &ctx->key, &ctx->key_cached, &err)
                           : keys_authenticate(db, secret, &ctx->key, &err);
        if (st != VG_OK) {
            api_reply_error(ctx, &err);
            vg_error_clear(&err);
            return;
        }
        int retry_after = 0;
        if (!api_limits_take(&ctx->key, &retry_after)) {
            api_reply_fail(ctx, VG_E_RATE_LIMITED, NULL,
                           "key '%s' is over its rate limit (%ld requests/s, bursts of %ld); "
                           "retry after %d s",
                           ctx->key.name,
                           ctx->key.role == ROLE_INGEST ? ctx->state->cfg->rate_limit_ingest
                                                        : ctx->state->cfg->rate_limit,
                           ctx->key.role == ROLE_INGEST ? ctx->state->cfg->rate_burst_ingest
                                                        : ctx->state->cfg->rate_burst,
                           retry_after);
            ctx->retry_after = retry_after;
            return;
        }
        if (!(r->roles & ctx->key.role)) {
            api_reply_fail(ctx, VG_E_FORBIDDEN, NULL, "role '%s' may not %s %s",
                           role_name(ctx->key.role), r->method, r->pattern);
            return;
        }
    }
    r->handler(ctx);
    if (!ctx->status)
        api_reply_fail(ctx, VG_E_INTERNAL, NULL, "handler produced no reply");
}

static void dispatch(api_ctx *ctx)
{
    char allow[128];
    ctx->route = route_find(ctx, allow, sizeof allow);
    if (!ctx->route) {
        if (allow[0])
            api_reply_fail(ctx, VG_E_METHOD, NULL, "%s is not allowed here; allowed: %s",
                           ctx->method, allow);
        else
            api_reply_fail(ctx, VG_E_NOT_FOUND, NULL, "no such endpoint: %s", ctx->path);
        return;
    }
    authenticate_and_run(ctx);
}

static enum MHD_Result queue_reply(api_ctx *ctx)
{
    struct MHD_Response *resp = ctx->stream;
    ctx->stream = NULL;
    if (resp)
        /* Tells nginx-like proxies not to hold the stream back. */
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    else
        resp = MHD_create_response_from_buffer(
            ctx->reply_len, ctx->reply_body ? ctx->reply_body : (char *)"", MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    if (ctx->reply_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctx->reply_type);
    MHD_add_response_header(resp, "X-Request-Id", ctx->request_id);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
                            ctx->cache_control ? ctx->cache_control : "no-store");
    /* Every body is exactly its declared type; never let a browser guess. */
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (ctx->etag)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, ctx->etag);
    if (ctx->csp) {
        MHD_add_response_header(resp, "Content-Security-Policy", ctx->csp);
        /* The event stream takes the key in its URL: send it to no one. */
        MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
        MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    }
    if (ctx->location[0])
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, ctx->location);
    if (ctx->retry_after) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", ctx->retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    if (ctx->draining) /* shutting down: no next request on this connection */
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    if (ctx->status == 405) {
        char allow[128];
        route_find(ctx, allow, sizeof allow);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    }
    enum MHD_Result ret = MHD_queue_response(ctx->conn, (unsigned)ctx->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* After the handler: wake the sequencer after a successful write (it
 * committed events) unless the write's committer already did, return the
 * database connection, queue the reply. */
static enum MHD_Result finish_request(api_ctx *ctx)
{
    if (strcmp(ctx->method, "GET") != 0 && ctx->status < 300 && !ctx->kicked)
        wake_kick();
    if (ctx->db) {
        db_release(ctx->state->pool, ctx->db);
        ctx->db = NULL;
    }
    return queue_reply(ctx);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    const api_server_state *state = cls;
    api_ctx *ctx = *con_cls;
    if (!ctx) {
        ctx = calloc(1, sizeof *ctx);
        if (!ctx)
            return MHD_NO;
        ctx->conn = conn;
        ctx->state = state;
        ctx->method = method;
        ctx->path = url;
        ctx->start_us = now_epoch_us();
        new_request_id(ctx);
        atomic_fetch_add(&in_flight, 1);
        ctx->draining = atomic_load(&draining);
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > (unsigned long long)state->cfg->max_body_bytes)
            ctx->body_too_large = 1;
        *con_cls = ctx;
        return MHD_YES;
    }
    if (ctx->resume) { /* a parked request, resumed: its handler replies now */
        api_handler fn = ctx->resume;
        ctx->resume = NULL;
        fn(ctx);
        return finish_request(ctx);
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (ctx->body_too_large || ctx->body_len + n > (size_t)state->cfg->max_body_bytes) {
            ctx->body_too_large = 1; /* keep draining, reply 413 at the end */
            return MHD_YES;
        }
        if (ctx->body_len + n + 1 > ctx->body_cap) {
            size_t cap = ctx->body_cap ? ctx->body_cap : 4096;
            while (cap < ctx->body_len + n + 1)
                cap *= 2;
            char *b = realloc(ctx->body, cap);
            if (!b)
                return MHD_NO;
            ctx->body = b;
            ctx->body_cap = cap;
        }
        memcpy(ctx->body + ctx->body_len, upload_data, n);
        ctx->body_len += n;
        ctx->body[ctx->body_len] = '\0';
        return MHD_YES;
    }
    api_limits_request_received(conn);
    if (ctx->body_too_large)
        api_reply_fail(ctx, VG_E_TOO_LARGE, "body", "request body exceeds %ld bytes",
                       state->cfg->max_body_bytes);
    else if (ctx->draining)
        api_reply_fail(ctx, VG_E_UNAVAILABLE, NULL,
                       "this instance is shutting down; send the request again (to another "
                       "instance, or to this one once it has restarted)");
    else
        dispatch(ctx);
    if (ctx->resume) { /* parked: the connection is suspended, no reply yet */
        if (ctx->db) {
            db_release(state->pool, ctx->db);
            ctx->db = NULL;
        }
        return MHD_YES;
    }
    return finish_request(ctx);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    const api_server_state *state = cls;
    api_ctx *ctx = *con_cls;
    if (!ctx)
        return;
    if (ctx->db) /* only when MHD aborted the request before the handler ran */
        db_release(state->pool, ctx->db);
    if (ctx->parked && ctx->parked_free) /* ended while parked or before collecting */
        ctx->parked_free(ctx->parked);
    if (ctx->sse_slot)
        api_limits_sse_release(&ctx->key);
    api_limits_request_done(conn);
    double ms = (double)(now_epoch_us() - ctx->start_us) / 1000.0;
    metrics_http_observe(ctx->method, ctx->route ? ctx->route->pattern : "", ctx->status,
                         ms / 1000.0);
    log_json(ctx->status >= 500 ? LOG_WARN : LOG_INFO,
             json_pack("{s:s, s:s, s:s, s:s, s:i, s:f, s:I, s:s, s:s, s:b}", "msg", "request",
                       "request_id", ctx->request_id, "method", ctx->method, "path", ctx->path,
                       "status", ctx->status, "duration_ms", ms, "bytes_in",
                       (json_int_t)ctx->body_len, "route", ctx->route ? ctx->route->pattern : "",
                       "key", ctx->key.name, "completed",
                       toe == MHD_REQUEST_TERMINATED_COMPLETED_OK));
    free(ctx->body);
    free(ctx->reply_body);
    free(ctx);
    *con_cls = NULL;
    atomic_fetch_sub(&in_flight, 1);
}

static void on_mhd_error(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    /* A client that goes away mid-response (every closed event stream does)
     * is not a server problem; keep those lines out of the warnings. */
    if (strstr(msg, "application error generating response") ||
        strstr(msg, "no longer available for sending"))
        log_debug("http: %s", msg);
    else
        log_warn("http: %s", msg);
}

/* ---- start / stop ------------------------------------------------------- */

static vg_status parse_addr(const char *addr, struct sockaddr_in *sa, vg_error *err)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof host)
        return vg_fail(err, VG_E_CONFIG, "VIGIL_HTTP_ADDR", "expected host:port, got '%s'", addr);
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (*end || port < 1 || port > 65535 || inet_pton(AF_INET, host, &sa->sin_addr) != 1)
        return vg_fail(err, VG_E_CONFIG, "VIGIL_HTTP_ADDR",
                       "expected IPv4-address:port (e.g. 127.0.0.1:8000), got '%s'", addr);
    return VG_OK;
}

/* Every connection is a descriptor, and event streams stay open: lift the
 * soft open-file limit (often 1024) towards what `conns` needs, up to the
 * hard limit, and say so when that is not enough. */
static void fd_limit_ensure(rlim_t conns)
{
    rlim_t want = conns + 128; /* database connections, logs, epoll, ... */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        log_warn("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
        return;
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ? rl.rlim_max : want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            log_warn("setrlimit(RLIMIT_NOFILE, %llu): %s", (unsigned long long)rl.rlim_cur,
                     strerror(errno));
        else if (rl.rlim_cur < want)
            log_warn("open-file limit %llu is below the %llu that VIGIL_SSE_MAX_CLIENTS needs; "
                     "connections beyond it are refused (raise the hard limit, ulimit -Hn)",
                     (unsigned long long)rl.rlim_cur, (unsigned long long)want);
    }
}

vg_status api_server_run(const vg_config *cfg, db_pool *pool, vg_error *err)
{
    struct sockaddr_in sa;
    if (parse_addr(cfg->http_addr, &sa, err) != VG_OK)
        return VG_E_CONFIG;
    api_server_state state = {.cfg = cfg, .pool = pool};
    /* The event-stream hub first: streams may be opened as soon as we listen. */
    if (sse_hub_start(cfg, pool, err) != VG_OK)
        return err->code;
    if (api_ingest_start(cfg, pool, err) != VG_OK) {
        sse_hub_shutdown();
        sse_hub_free();
        return err->code;
    }
    if (api_limits_start(cfg, err) != VG_OK) {
        api_ingest_stop();
        sse_hub_shutdown();
        sse_hub_free();
        return err->code;
    }
    /* Room for every event stream besides ordinary requests; doubled because
     * MHD splits the limit evenly between worker threads and the kernel does
     * not spread connections evenly. */
    unsigned max_conns = 2u * ((unsigned)cfg->sse_max_clients + 512u);
    /* Each connection's memory pool holds its request line and headers and
     * MHD's read buffer (bodies are copied into ctx->body as they arrive).
     * libmicrohttpd zeroes the whole pool between the requests of a
     * keep-alive connection, so its size is paid on every request: 32 KiB
     * (MHD's default) rather than 128 (a 128 KiB memset per request was
     * about 3 % of `vigil serve`'s CPU in benchmark 2). Headers that do not
     * fit are answered 431 by MHD. */
    const size_t conn_pool_bytes = 32768;
    fd_limit_ensure((rlim_t)cfg->sse_max_clients + 1024u);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
        0, NULL, NULL, on_request, &state, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_error, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)cfg->http_threads, MHD_OPTION_NOTIFY_COMPLETED, on_completed, &state,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->http_timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, conn_pool_bytes, MHD_OPTION_CONNECTION_LIMIT, max_conns,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)cfg->http_max_per_ip,
        MHD_OPTION_NOTIFY_CONNECTION, api_limits_on_connection, NULL, MHD_OPTION_END);
    if (!d) {
        int e = errno;
        api_limits_stop();
        api_ingest_stop();
        sse_hub_shutdown();
        sse_hub_free();
        return vg_fail(err, VG_E_IO, "VIGIL_HTTP_ADDR", "cannot listen on %s: %s", cfg->http_addr,
                       strerror(e));
    }
    log_json(LOG_INFO, json_pack("{s:s, s:s, s:I}", "msg", "listening", "addr", cfg->http_addr,
                                 "threads", (json_int_t)cfg->http_threads));

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int sig = 0;
    sigwait(&set, &sig);
    log_info("signal %d: draining in-flight requests (up to %lds)", sig, cfg->shutdown_grace);

    /* Stop accepting, refuse what starts from now on (draining), tell
     * event streams to end (they would otherwise run forever), then give
     * requests already running time to finish. */
    atomic_store(&draining, 1);
    MHD_quiesce_daemon(d);
    sse_hub_shutdown();
    int64_t deadline = now_epoch_us() + cfg->shutdown_grace * 1000000LL;
    while (atomic_load(&in_flight) > 0 && now_epoch_us() < deadline)
        usleep(10000);
    if (atomic_load(&in_flight) > 0)
        log_warn("shutdown grace elapsed with %d requests still in flight",
                 atomic_load(&in_flight));
    /* Parked requests are answered and resumed before the daemon stops. */
    api_ingest_stop();
    MHD_stop_daemon(d);
    api_limits_stop();
    sse_hub_free();
    log_info("HTTP API stopped");
    return VG_OK;
}
