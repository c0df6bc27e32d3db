/*
 * migrate.c — applies the embedded migrations in order, once each.
 *
 * The advisory lock makes `vigil migrate` safe to run from several
 * instances at once (e.g. every replica at deploy time): one applies, the
 * others wait and then find nothing left to do. After the migrations it
 * re-applies the service role's grants (0012_least_privilege.sql), so it must
 * run as the schema owner.
 */
#include "store/migrate.h"

#include <stdlib.h>

#include "store/db.h"
#include "util/log.h"

#define MIGRATE_LOCK_KEY "7307100101" /* arbitrary, fixed: "Vigil migrate" */

static vg_status ensure_table(PGconn *c, vg_error *err)
{
    return db_run(c,
                  "CREATE TABLE IF NOT EXISTS schema_migrations ("
                  " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                  0, NULL, err);
}

static int is_applied(PGconn *c, const char *name, vg_error *err)
{
    const char *p[] = {name};
    PGresult *r = db_exec(c, "SELECT 1 FROM schema_migrations WHERE name = $1", 1, p, err);
    if (!r)
        return -1;
    int n = PQntuples(r);
    PQclear(r);
    return n > 0;
}

static vg_status apply_one(PGconn *c, const migration_file *m, vg_error *err)
{
    vg_status st = db_begin(c, err);
    if (st != VG_OK)
        return st;
    /* Simple-query protocol: a migration file holds many statements. */
    PGresult *r = PQexec(c, m->sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *msg = PQresultErrorMessage(r);
        st = vg_fail(err, VG_E_INTERNAL, m->name, "migration %s failed: %s", m->name, msg);
        PQclear(r);
        db_rollback(c);
        return st;
    }
    PQclear(r);
    const char *p[] = {m->name};
    st = db_run(c, "INSERT INTO schema_migrations (name) VALUES ($1)", 1, p, err);
    if (st == VG_OK)
        st = db_commit(c, err);
    if (st != VG_OK)
        db_rollback(c);
    return st;
}

/* Re-derives the service role's grants (0012) so that tables added by any
 * migration are covered; a no-op before 0012 exists. */
static vg_status apply_grants(PGconn *c, vg_error *err)
{
    PGresult *r = db_exec(c, "SELECT to_regprocedure('public.vigil_apply_grants()') IS NOT NULL", 0,
                          NULL, err);
    if (!r)
        return err ? err->code : VG_E_INTERNAL;
    int present = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return present ? db_run(c, "SELECT vigil_apply_grants()", 0, NULL, err) : VG_OK;
}

vg_status migrate_service_member(PGconn *c, const char *role, int *created, vg_error *err)
{
    const char *p[] = {role};
    PGresult *r = db_exec(c, "SELECT vigil_service_member($1)", 1, p, err);
    if (!r)
        return err ? err->code : VG_E_INTERNAL;
    if (created)
        *created = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return VG_OK;
}

int migrate_is_privileged(PGconn *c, vg_error *err)
{
    PGresult *r = db_exec(c,
                          "SELECT rolsuper OR coalesce(pg_has_role(current_user,"
                          " (SELECT relowner FROM pg_class"
                          "  WHERE oid = to_regclass('public.event_log')), 'USAGE'), false)"
                          " FROM pg_roles WHERE rolname = current_user",
                          0, NULL, err);
    if (!r)
        return -1;
    int priv = PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return priv;
}

vg_status migrate_run(PGconn *c, int *applied, vg_error *err)
{
    int n = 0;
    vg_status st = db_run(c, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", 0, NULL, err);
    if (st != VG_OK)
        return st;
    st = ensure_table(c, err);
    for (const migration_file *m = migration_files; st == VG_OK && m->name; m++) {
        int done = is_applied(c, m->name, err);
        if (done < 0) {
            st = err ? err->code : VG_E_INTERNAL;
            break;
        }
        if (done)
            continue;
        st = apply_one(c, m, err);
        if (st == VG_OK) {
            log_info("migration applied: %s", m->name);
            n++;
        }
    }
    if (st == VG_OK)
        st = apply_grants(c, err);
    db_run(c, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", 0, NULL, NULL);
    if (applied)
        *applied = n;
    return st;
}

int migrate_pending(PGconn *c, vg_error *err)
{
    PGresult *r = db_exec(c, "SELECT to_regclass('schema_migrations') IS NOT NULL", 0, NULL, err);
    if (!r)
        return -1;
    int has_table = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    int pending = 0;
    for (const migration_file *m = migration_files; m->name; m++) {
        int done = has_table ? is_applied(c, m->name, err) : 0;
        if (done < 0)
            return -1;
        pending += !done;
    }
    return pending;
}
