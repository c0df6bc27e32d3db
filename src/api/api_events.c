/*
 * api_events.c — the event log over HTTP: GET /events (pages of CloudEvents
 * after a seq) and GET /events/stream (Server-Sent Events, served by the hub
 * in events/sse.c).
 *
 * Both take a position as a seq and return events strictly after it, in seq
 * order, so "the last seq I saw" is all a client keeps to resume without a
 * gap or a duplicate.
 */
#include <errno.h>
#include <microhttpd.h>
#include <stdlib.h>

#include "api/api.h"
#include "api/api_limits.h"
#include "domain/validate.h"
#include "events/sse.h"
#include "store/store_event_log.h"

#define EVENTS_TYPE_MAX 200 /* bytes of a ?type= prefix */

/* A seq position from `field`: NULL or "" is 0 (the beginning). */
static vg_status seq_arg(const char *s, const char *field, int64_t *out, vg_error *err)
{
    *out = 0;
    if (!s || !*s)
        return VG_OK;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    /* Digits only: strtoll alone would take " 5", "+5" and "-0". */
    if (s[0] < '0' || s[0] > '9' || errno || *end || v < 0)
        return vg_fail(err, VG_E_INVALID, field,
                       "must be an event seq (an integer >= 0); got '%.40s'", s);
    *out = v;
    return VG_OK;
}

/* ?type=: an event type or a prefix of one; absent or "" is no filter. */
static vg_status type_arg(api_ctx *ctx, const char **type, vg_error *err)
{
    *type = api_query(ctx, "type");
    if (*type && !**type)
        *type = NULL;
    if (*type && !text_ok(*type, EVENTS_TYPE_MAX))
        return vg_fail(err, VG_E_INVALID, "type",
                       "must be an event type or a prefix of one (at most %d bytes of text)",
                       EVENTS_TYPE_MAX);
    return VG_OK;
}

void api_events_list(api_ctx *ctx)
{
    vg_error err = {0};
    int limit = 0;
    int64_t after = 0;
    const char *type = NULL;
    char *out = NULL;
    vg_status st = api_query_limit(ctx, 100, &limit, &err);
    if (st == VG_OK)
        st = seq_arg(api_query(ctx, "after"), "after", &after, &err);
    if (st == VG_OK)
        st = type_arg(ctx, &type, &err);
    PGconn *db = st == VG_OK ? api_db(ctx, &err) : NULL;
    if (db)
        st = event_log_page(db, after, type, limit, &out, &err);
    else if (st == VG_OK)
        st = err.code;
    api_reply_result(ctx, st, 200, out, &err);
}

void api_events_stream(api_ctx *ctx)
{
    vg_error err = {0};
    int64_t after = 0;
    const char *type = NULL;
    /* A reconnecting EventSource sends Last-Event-ID; it wins over ?after=,
     * which only says where a fresh page load starts. */
    const char *last = MHD_lookup_connection_value(ctx->conn, MHD_HEADER_KIND, "Last-Event-ID");
    vg_status st = last && *last ? seq_arg(last, "Last-Event-ID", &after, &err)
                                 : seq_arg(api_query(ctx, "after"), "after", &after, &err);
    if (st == VG_OK)
        st = type_arg(ctx, &type, &err);
    if (st == VG_OK && !(ctx->sse_slot = api_limits_sse_acquire(&ctx->key)))
        st = vg_fail(&err, VG_E_RATE_LIMITED, NULL,
                     "key '%s' already has %ld open event streams (VIGIL_SSE_MAX_PER_KEY)",
                     ctx->key.name, ctx->state->cfg->sse_max_per_key);
    struct MHD_Response *resp =
        st == VG_OK ? sse_stream_open(ctx->conn, after, type, ctx->request_id, &err) : NULL;
    if (!resp) {
        if (ctx->sse_slot)
            api_limits_sse_release(&ctx->key);
        ctx->sse_slot = 0;
        if (err.code == VG_E_RATE_LIMITED)
            ctx->retry_after = 5;
        api_reply_error(ctx, &err);
        vg_error_clear(&err);
        return;
    }
    api_reply_stream(ctx, resp, "text/event-stream");
}
