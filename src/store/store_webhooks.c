/*
 * store_webhooks.c — webhook registrations and the delivery outbox.
 *
 * Multi-step work (claim, record) is done by PL/pgSQL functions so each is
 * one round trip and one transaction; this file only binds parameters and
 * copies results out.
 */
#include "store/store_webhooks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/db.h"

static char *dup_or_die(const char *s)
{
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

/* A uuid[] literal of ids[0..n) (malloc'd). The ids are UUIDs (hex and
 * '-'), so it needs no quoting. */
static char *uuid_array(const char *const *ids, int n)
{
    char *arr = malloc((size_t)n * 38 + 3);
    if (!arr)
        abort();
    size_t o = 0;
    arr[o++] = '{';
    for (int i = 0; i < n; i++)
        o += (size_t)sprintf(arr + o, "%s%.36s", i ? "," : "", ids[i]);
    arr[o++] = '}';
    arr[o] = '\0';
    return arr;
}

vg_status store_webhooks_create(PGconn *c, const webhook_input *in, const char *secret,
                                const char *actor, char **out, vg_error *err)
{
    /* event types go as a JSON array: no text[] literal quoting to get wrong */
    json_t *types = json_array();
    for (int i = 0; i < in->ntypes; i++)
        json_array_append_new(types, json_string(in->types[i]));
    char *types_text = json_dumps(types, JSON_COMPACT);
    json_decref(types);
    if (!types_text)
        return vg_fail(err, VG_E_INTERNAL, NULL, "out of memory");
    const char *p[] = {in->url, types_text, secret, actor};
    vg_status st =
        db_json(c,
                "INSERT INTO webhooks (url, event_types, secret, created_by, updated_by)"
                " VALUES ($1, ARRAY(SELECT jsonb_array_elements_text($2::jsonb)), $3, $4, $4)"
                " RETURNING vigil_webhook_json(webhooks)::text",
                4, p, "webhook", out, err);
    free(types_text);
    return st;
}

vg_status store_webhooks_get(PGconn *c, const char *id, char **out, vg_error *err)
{
    const char *p[] = {id};
    return db_json(c, "SELECT vigil_webhook_json(w)::text FROM webhooks w WHERE w.id = $1", 1, p,
                   "webhook", out, err);
}

vg_status store_webhooks_set_active(PGconn *c, const char *id, int active, const char *actor,
                                    char **out, vg_error *err)
{
    const char *p[] = {id, active ? "true" : "false", actor};
    return db_json(c,
                   "UPDATE webhooks SET active = $2::boolean, updated_at = now(), updated_by = $3"
                   " WHERE id = $1 RETURNING vigil_webhook_json(webhooks)::text",
                   3, p, "webhook", out, err);
}

vg_status store_webhooks_next_due(PGconn *c, const char *const *busy, int nbusy, int *any,
                                  long long *ms, vg_error *err)
{
    char *arr = uuid_array(busy, nbusy);
    const char *p[] = {arr};
    PGresult *r =
        db_exec(c,
                "SELECT ceil(extract(epoch FROM min(d.next_attempt_at) - clock_timestamp())"
                " * 1000)::bigint FROM webhook_deliveries d JOIN webhooks w"
                " ON w.id = d.webhook_id WHERE d.status IN ('pending', 'failed')"
                " AND w.active AND NOT (d.webhook_id = ANY ($1::uuid[]))",
                1, p, err);
    free(arr);
    if (!r)
        return err ? err->code : VG_E_INTERNAL;
    *any = !PQgetisnull(r, 0, 0);
    *ms = *any ? atoll(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    return VG_OK;
}

/* Runs a query returning one integer into *n. */
static vg_status one_int(PGconn *c, const char *sql, int np, const char *const *p, int *n,
                         vg_error *err)
{
    PGresult *r = db_exec(c, sql, np, p, err);
    if (!r)
        return err ? err->code : VG_E_INTERNAL;
    *n = PQntuples(r) == 1 ? atoi(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    return VG_OK;
}

vg_status store_webhooks_requeue(PGconn *c, const char *event_id, int *n, vg_error *err)
{
    const char *p[] = {event_id};
    return one_int(c, "SELECT vigil_webhook_requeue($1)", 1, p, n, err);
}

void webhook_job_clear(webhook_job *j)
{
    free(j->url);
    free(j->secret);
    free(j->body);
    memset(j, 0, sizeof *j);
}

vg_status store_webhooks_claim(PGconn *c, int limit, long lease_ms, const char *const *busy,
                               int nbusy, webhook_job *jobs, int *n, vg_error *err)
{
    char lim[16], lease[32], *arr = uuid_array(busy, nbusy);
    snprintf(lim, sizeof lim, "%d", limit);
    snprintf(lease, sizeof lease, "%ld", lease_ms);
    const char *p[] = {lim, lease, arr};
    *n = 0;
    PGresult *r = db_exec(c,
                          "SELECT delivery_id, webhook_id, url, secret, event_id, attempt, body"
                          " FROM vigil_webhook_claim($1, $2, $3::uuid[])",
                          3, p, err);
    free(arr);
    if (!r)
        return err ? err->code : VG_E_INTERNAL;
    for (int i = 0; i < PQntuples(r) && i < limit; i++) {
        webhook_job *j = &jobs[i];
        memset(j, 0, sizeof *j);
        snprintf(j->delivery_id, sizeof j->delivery_id, "%s", PQgetvalue(r, i, 0));
        snprintf(j->webhook_id, sizeof j->webhook_id, "%s", PQgetvalue(r, i, 1));
        j->url = dup_or_die(PQgetvalue(r, i, 2));
        j->secret = dup_or_die(PQgetvalue(r, i, 3));
        snprintf(j->event_id, sizeof j->event_id, "%s", PQgetvalue(r, i, 4));
        j->attempt = atoi(PQgetvalue(r, i, 5));
        j->body = dup_or_die(PQgetvalue(r, i, 6));
        j->body_len = (size_t)PQgetlength(r, i, 6);
        (*n)++;
    }
    PQclear(r);
    return VG_OK;
}

vg_status store_webhooks_record(PGconn *c, const webhook_job *job, const webhook_result *res,
                                long backoff_ms, long horizon_s, char outcome[16],
                                long long *next_in_ms, vg_error *err)
{
    char attempt[16], status[16], dur[32], backoff[32], horizon[32];
    snprintf(attempt, sizeof attempt, "%d", job->attempt);
    snprintf(status, sizeof status, "%ld", res->http_status);
    snprintf(dur, sizeof dur, "%ld", res->duration_ms);
    snprintf(backoff, sizeof backoff, "%ld", backoff_ms);
    snprintf(horizon, sizeof horizon, "%ld", horizon_s);
    const char *p[] = {job->delivery_id, attempt, res->http_status ? status : NULL, res->error, dur,
                       backoff,          horizon};
    PGresult *r = db_exec(c,
                          "SELECT outcome, next_in_ms FROM vigil_webhook_record($1, $2, $3, $4,"
                          " $5, $6, $7)",
                          7, p, err);
    if (!r)
        return err ? err->code : VG_E_INTERNAL;
    snprintf(outcome, 16, "%s", PQgetvalue(r, 0, 0));
    *next_in_ms = atoll(PQgetvalue(r, 0, 1));
    PQclear(r);
    return VG_OK;
}

vg_status store_webhooks_abandon(PGconn *c, const webhook_job *job, vg_error *err)
{
    char attempt[16];
    snprintf(attempt, sizeof attempt, "%d", job->attempt);
    const char *p[] = {job->delivery_id, attempt};
    return db_run(c, "SELECT vigil_webhook_abandon($1, $2)", 2, p, err);
}
