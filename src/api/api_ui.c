/*
 * api_ui.c — the analysts' dashboard: GET / (index.html) and GET /ui/{file}
 * (its scripts and styles), served from the copy of web/ embedded in the
 * binary (web_assets.h), so `vigil serve` reads no files at runtime.
 *
 * These routes are public: they carry no data. The page asks the analyst
 * for an API key and every piece of data then comes from the authenticated
 * API, exactly as for any other client.
 *
 * Caching: "no-cache" with a strong ETag, so a browser revalidates each file
 * (a 304 with no body when unchanged) and an upgraded binary is picked up at
 * the next load, without hashed file names. The Content-Security-Policy
 * admits only this origin's scripts, styles and connections: no inline
 * script, no framing, no plug-ins.
 */
#include <microhttpd.h>
#include <string.h>

#include "api/api.h"
#include "api/web_assets.h"

#define UI_CSP                                                                                     \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "                 \
    "frame-ancestors 'none'"

static const web_asset *asset_find(const char *name)
{
    for (const web_asset *a = web_assets; a->name; a++)
        if (strcmp(a->name, name) == 0)
            return a;
    return NULL;
}

/* 1 when the request's If-None-Match lists `etag` (or is "*"). */
static int etag_matches(api_ctx *ctx, const char *etag)
{
    const char *inm =
        MHD_lookup_connection_value(ctx->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    if (!inm)
        return 0;
    if (strcmp(inm, "*") == 0)
        return 1;
    size_t n = strlen(etag);
    for (const char *p = strstr(inm, etag); p; p = strstr(p + 1, etag))
        if ((p == inm || p[-1] == ' ' || p[-1] == ',' || p[-1] == '/') &&
            (p[n] == '\0' || p[n] == ',' || p[n] == ' '))
            return 1; /* W/"x" also matches: If-None-Match compares weakly */
    return 0;
}

static void reply_asset(api_ctx *ctx, const char *name)
{
    const web_asset *a = asset_find(name);
    if (!a) {
        api_reply_fail(ctx, VG_E_NOT_FOUND, NULL, "no such dashboard file: %s", name);
        return;
    }
    if (etag_matches(ctx, a->etag))
        api_reply_bytes(ctx, 304, "", 0, NULL);
    else
        api_reply_bytes(ctx, 200, a->data, a->len, a->content_type);
    ctx->cache_control = "no-cache";
    ctx->etag = a->etag;
    ctx->csp = UI_CSP;
}

void api_ui_index_get(api_ctx *ctx)
{
    reply_asset(ctx, "index.html");
}

void api_ui_asset_get(api_ctx *ctx)
{
    reply_asset(ctx, ctx->params[0]);
}
