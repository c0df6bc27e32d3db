/*
 * api.h — what every HTTP endpoint sees: the request context, the reply
 * helpers and the routing table entry.
 *
 * One file per resource (api_customers.c → api_customers_post, ...). A
 * handler reads the request through api_ctx, does its work through the store
 * layer, and finishes with exactly one api_reply_* call.
 */
#ifndef VIGIL_API_API_H
#define VIGIL_API_API_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "store/db.h"
#include "store/store_keys.h"
#include "util/config.h"
#include "util/status.h"

struct MHD_Connection;
struct MHD_Response;
typedef struct api_ctx api_ctx;
typedef void (*api_handler)(api_ctx *ctx);

#define API_MAX_PARAMS 4

typedef struct api_route {
    const char *method;
    const char *pattern; /* "/customers/{id}/risk": {x} matches one segment */
    api_handler handler;
    unsigned roles; /* vg_role bits allowed; 0 = public (no key needed) */
} api_route;

/* The routing table (api_routes.c), terminated by a NULL method. */
extern const api_route api_routes[];

/* Process-wide state shared by handlers (read-only after start-up). */
typedef struct api_server_state {
    const vg_config *cfg;
    db_pool *pool;
} api_server_state;

struct api_ctx {
    struct MHD_Connection *conn;
    const api_server_state *state;
    const api_route *route;
    const char *method;
    const char *path;
    char request_id[64];
    int64_t start_us;

    char *body; /* NUL-terminated, body_len bytes */
    size_t body_len, body_cap;
    int body_too_large;
    int draining; /* arrived after SIGTERM: refused with 503, its connection closed */

    char params[API_MAX_PARAMS][128]; /* path parameters in pattern order */
    int nparams;

    api_key_info key; /* authenticated caller (role 0 on public routes) */
    int key_cached;   /* key came from keys_authenticate_cached: not checked against the DB */
    PGconn *db;       /* borrowed by api_db(), returned after the handler */
    int kicked;       /* the write's committer already woke the sequencer (api_ingest.c) */

    /* the reply, set by api_reply_* */
    int status;
    char *reply_body;
    size_t reply_len;
    const char *reply_type;
    char location[256];
    int retry_after;             /* seconds; 0 = none */
    struct MHD_Response *stream; /* set by api_reply_stream instead of reply_body */
    int sse_slot;                /* holds one of the key's VIGIL_SSE_MAX_PER_KEY streams */
    const char *cache_control;   /* NULL: "no-store" (API data is never cached) */
    const char *etag;            /* quoted ETag, or NULL */
    const char *csp;             /* Content-Security-Policy, or NULL (dashboard pages) */

    /* A handler that parked the request (suspended its connection) sets
     * `resume`; libmicrohttpd calls on_request again once the connection is
     * resumed and server.c then runs resume(ctx), which replies. `parked`
     * is the handler's state meanwhile, freed by `parked_free` if the
     * request ends without resuming. */
    api_handler resume;
    void *parked;
    void (*parked_free)(void *parked);
};

/* Borrows a database connection for this request (released automatically
 * after the handler). NULL with VG_E_UNAVAILABLE in err. */
PGconn *api_db(api_ctx *ctx, vg_error *err);

/* For a handler whose key came from the cache (ctx->key_cached) and that
 * will not have the database check it in its write (vigil_ingest_rows_keyed):
 * looks the key up now, as every other route does. VG_OK, or the refusal
 * (401) to reply with. */
vg_status api_key_recheck(api_ctx *ctx, vg_error *err);

/* Parses the body as a JSON object or array: checks Content-Type, size,
 * nesting depth (VIGIL_MAX_JSON_DEPTH) and UTF-8. NULL with err (400/413/415). */
json_t *api_body_json(api_ctx *ctx, vg_error *err);

/* Query-string argument or NULL. */
const char *api_query(api_ctx *ctx, const char *name);

/* ?limit= within 1..VIGIL_PAGE_LIMIT_MAX (default `def`); VG_E_INVALID otherwise. */
vg_status api_query_limit(api_ctx *ctx, int def, int *limit, vg_error *err);

/* Reads the keyset page arguments: ?limit= (default 50) and ?after= (the
 * previous page's "next", a UUID). VG_E_INVALID naming the field. */
vg_status api_page_args(api_ctx *ctx, const char **after, int *limit, vg_error *err);

/* Reads an optional UUID query argument `name`: *value is NULL when absent,
 * else points at its canonical form in `buf`. VG_E_INVALID when malformed. */
vg_status api_query_uuid(api_ctx *ctx, const char *name, char buf[37], const char **value,
                         vg_error *err);

/* GET /things/{id}: checks path parameter 0 is a UUID (else 404 naming
 * `what`), runs fetch(db, id, &out, err) and replies 200 with its JSON. */
typedef vg_status (*api_fetch_fn)(PGconn *c, const char *id, char **out, vg_error *err);
void api_reply_fetch(api_ctx *ctx, const char *what, api_fetch_fn fetch);

/* Replies one keyset page (?after=, ?limit=) of `spec` filtered by `values`
 * (see store_list), unless `err` already holds a validation failure of the
 * caller's filters, which is then the reply. Clears err. */
struct list_spec;
void api_reply_list(api_ctx *ctx, const struct list_spec *spec, const char *const *values,
                    vg_error *err);

/* Actor string for audit columns: "key:<name>". */
void api_actor(const api_ctx *ctx, char out[160]);

/* Replies: each sets the response exactly once. `body` is stolen. */
void api_reply_json(api_ctx *ctx, int status, json_t *body);
/* Reply with a JSON text produced by PostgreSQL (copied). */
void api_reply_text(api_ctx *ctx, int status, const char *json_text);
/* Finishes a handler after a store call: on VG_OK replies `out` (a JSON
 * text) with `status`, otherwise replies the error. Frees `out`, clears err. */
void api_reply_result(api_ctx *ctx, vg_status st, int status, char *out, vg_error *err);
/* Path parameter `i` as a UUID (lower-cased in place); replies 404 and
 * returns NULL when it is not one (no such resource can exist). */
const char *api_param_uuid(api_ctx *ctx, int i, const char *what);
/* application/problem+json from `err` (type, title, status, detail, field,
 * errors[], request_id). */
void api_reply_error(api_ctx *ctx, const vg_error *err);
/* Replies 200 with a streaming response (owned by ctx from now on, also on
 * failure) of `content_type`; the usual headers are added. */
void api_reply_stream(api_ctx *ctx, struct MHD_Response *resp, const char *content_type);
/* Replies `len` bytes of `data` (copied) as `content_type`, e.g. a file of
 * the dashboard. Set ctx->cache_control/etag/csp before or after. */
void api_reply_bytes(api_ctx *ctx, int status, const void *data, size_t len,
                     const char *content_type);
/* Shortcut: api_reply_error for a fresh error. */
void api_reply_fail(api_ctx *ctx, vg_status code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Endpoints */
void api_healthz_get(api_ctx *ctx);
void api_readyz_get(api_ctx *ctx);
void api_customers_post(api_ctx *ctx);
void api_customers_list(api_ctx *ctx);
void api_customer_get(api_ctx *ctx);
void api_customer_patch(api_ctx *ctx);
void api_customer_risk_get(api_ctx *ctx);
void api_transactions_post(api_ctx *ctx);
void api_transactions_list(api_ctx *ctx);
void api_transaction_get(api_ctx *ctx);
void api_alerts_list(api_ctx *ctx);
void api_alert_get(api_ctx *ctx);
void api_alert_patch(api_ctx *ctx);
void api_kyc_tasks_list(api_ctx *ctx);
void api_kyc_task_patch(api_ctx *ctx);
void api_rules_list(api_ctx *ctx);
void api_rule_patch(api_ctx *ctx);
void api_events_list(api_ctx *ctx);
void api_events_stream(api_ctx *ctx);
void api_dead_letters_list(api_ctx *ctx);
void api_dead_letter_redrive(api_ctx *ctx);
void api_webhooks_post(api_ctx *ctx);
void api_webhooks_list(api_ctx *ctx);
void api_webhook_patch(api_ctx *ctx);
void api_webhook_deliveries_list(api_ctx *ctx);
void api_metrics_get(api_ctx *ctx);
void api_openapi_get(api_ctx *ctx);
void api_approvals_list(api_ctx *ctx);
void api_approval_get(api_ctx *ctx);
void api_approval_approve(api_ctx *ctx);
void api_approval_reject(api_ctx *ctx);

/* Replies 202 with a four-eyes proposal (`out`, stolen) and Location:
 * /approvals/{id}, or the error. Clears err. */
void api_reply_proposal(api_ctx *ctx, vg_status st, char *out, vg_error *err);
void api_ui_index_get(api_ctx *ctx);
void api_ui_asset_get(api_ctx *ctx);

#endif
