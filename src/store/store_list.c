/*
 * store_list.c — one implementation of keyset pagination.
 *
 * Keyset (not OFFSET) so a page costs the same however deep the client
 * pages, and rows inserted meanwhile neither repeat nor vanish.
 */
#include "store/store_list.h"

#include <stdio.h>

#include "store/db.h"

vg_status store_list(PGconn *c, const list_spec *spec, const char *const *values, const char *after,
                     int limit, char **out, vg_error *err)
{
    char sql[2048], where[512] = "", lim[16];
    const char *params[2 + LIST_MAX_FILTERS];
    int n = 0;
    params[n++] = after;
    snprintf(lim, sizeof lim, "%d", limit);
    params[n++] = lim;
    size_t used = 0;
    for (int i = 0; i < LIST_MAX_FILTERS && spec->filters[i]; i++) {
        if (!values[i])
            continue;
        params[n++] = values[i];
        used += (size_t)snprintf(where + used, sizeof where - used, " AND t.%s = $%d",
                                 spec->filters[i], n);
    }
    snprintf(sql, sizeof sql,
             "WITH page AS (SELECT * FROM %1$s t WHERE ($1::uuid IS NULL OR (t.%3$s, t.id) >"
             " (SELECT %3$s, id FROM %1$s WHERE id = $1::uuid))%4$s"
             " ORDER BY t.%3$s, t.id LIMIT $2::int) "
             "SELECT jsonb_build_object('items', coalesce(jsonb_agg(%2$s(p) ORDER BY p.%3$s, p.id),"
             " '[]'), 'next', CASE WHEN count(*) = $2::int THEN"
             " (array_agg(p.id ORDER BY p.%3$s DESC, p.id DESC))[1] END)::text FROM page p",
             spec->table, spec->json_fn, spec->time_col, where);
    return db_json(c, sql, n, params, spec->table, out, err);
}
