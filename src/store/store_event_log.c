/*
 * store_event_log.c — the event_log queries behind GET /events and the
 * /events/stream hub.
 *
 * All of them walk the primary key (seq) upwards. The type filter is
 * starts_with(), not LIKE, so a client's '%' or '_' is an ordinary character.
 */
#include "store/store_event_log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "store/db.h"

vg_status event_log_page(PGconn *c, int64_t after, const char *type_prefix, int limit, char **out,
                         vg_error *err)
{
    char a[24], l[16];
    snprintf(a, sizeof a, "%" PRId64, after);
    snprintf(l, sizeof l, "%d", limit);
    const char *params[] = {a, type_prefix, l};
    return db_json(c,
                   "WITH page AS (SELECT seq, payload FROM event_log"
                   " WHERE seq > $1::bigint AND ($2::text IS NULL OR starts_with(event_type, $2))"
                   " ORDER BY seq LIMIT $3::int) "
                   "SELECT jsonb_build_object('items', coalesce(jsonb_agg(payload ORDER BY seq),"
                   " '[]'::jsonb), 'next_after', coalesce(max(seq), $1::bigint))::text FROM page",
                   3, params, "events", out, err);
}

PGresult *event_log_scan(PGconn *c, int64_t after, int64_t before, const char *type_prefix,
                         int limit, vg_error *err)
{
    char a[24], b[24], l[16];
    snprintf(a, sizeof a, "%" PRId64, after);
    snprintf(b, sizeof b, "%" PRId64, before);
    snprintf(l, sizeof l, "%d", limit);
    const char *params[] = {a, before > 0 ? b : NULL, type_prefix, l};
    /* Prepared: every plan is the same index range scan on seq. */
    static db_stmt scan =
        DB_STMT("SELECT seq, event_type, payload::text FROM event_log"
                " WHERE seq > $1::bigint AND ($2::bigint IS NULL OR seq < $2::bigint)"
                " AND ($3::text IS NULL OR starts_with(event_type, $3))"
                " ORDER BY seq LIMIT $4::int",
                4);
    return db_exec_stmt(c, &scan, params, err);
}

vg_status event_log_head(PGconn *c, int64_t *head, vg_error *err)
{
    PGresult *res = db_exec(c, "SELECT coalesce(max(seq), 0) FROM event_log", 0, NULL, err);
    if (!res)
        return err ? err->code : VG_E_UNAVAILABLE;
    *head = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return VG_OK;
}
