/*
 * store_list.h — keyset pagination shared by every list endpoint.
 *
 * A list_spec names (as compile-time constants, never user input) a table,
 * its JSON function, its ordering column and the columns a client may filter
 * on. Values are always bound as parameters.
 */
#ifndef VIGIL_STORE_LIST_H
#define VIGIL_STORE_LIST_H

#include <libpq-fe.h>

#include "util/status.h"

#define LIST_MAX_FILTERS 4

typedef struct list_spec {
    const char *table;                     /* "alerts" */
    const char *json_fn;                   /* "vigil_alert_json" */
    const char *time_col;                  /* "created_at": pages walk (time_col, id) */
    const char *filters[LIST_MAX_FILTERS]; /* filterable columns, NULL-terminated */
} list_spec;

/* Writes {"items": [...], "next": cursor|null} into *out (malloc'd).
 * `values[i]` is the filter value for spec->filters[i] or NULL (no filter).
 * `after` is the previous page's "next" (an id) or NULL. */
vg_status store_list(PGconn *c, const list_spec *spec, const char *const *values, const char *after,
                     int limit, char **out, vg_error *err);

#endif
