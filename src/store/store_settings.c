/*
 * store_settings.c — writes the settings SQL reads (store_settings.h).
 *
 * The row is locked and replaced in one statement, so two instances starting
 * together each see the value they replaced and can say so in their logs.
 */
#include "store/store_settings.h"

#include <stdio.h>

#include "store/db.h"

vg_status settings_apply_event_pii(PGconn *c, const char *mode, char previous[16], vg_error *err)
{
    const char *p[] = {mode};
    PGresult *r = db_exec(c,
                          "WITH old AS (SELECT event_pii FROM vigil_settings FOR UPDATE)"
                          " UPDATE vigil_settings s SET event_pii = $1, updated_at = now()"
                          " FROM old RETURNING old.event_pii",
                          1, p, err);
    if (!r)
        return err->code;
    vg_status st = VG_OK;
    if (PQntuples(r) != 1)
        st = vg_fail(err, VG_E_INTERNAL, NULL, "vigil_settings holds %d rows, not 1", PQntuples(r));
    else
        snprintf(previous, 16, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return st;
}
