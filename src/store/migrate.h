/*
 * migrate.h — numbered SQL migrations, embedded in the binary at build time.
 */
#ifndef VIGIL_STORE_MIGRATE_H
#define VIGIL_STORE_MIGRATE_H

#include <libpq-fe.h>

#include "util/status.h"

typedef struct migration_file {
    const char *name; /* "0001_core.sql" */
    const char *sql;
} migration_file;

/* Generated: every sql/migrations/NNNN_*.sql in order, ending with {0, 0}. */
extern const migration_file migration_files[];

/* Applies, each in its own transaction, every migration not yet recorded in
 * schema_migrations, then the service role's grants, under an advisory lock
 * so concurrent runs serialise.
 * Sets *applied to the number applied (may be NULL). */
vg_status migrate_run(PGconn *conn, int *applied, vg_error *err);

/* Makes `role` (created as a LOGIN role without password when missing) a
 * member of vigil_service; *created (may be NULL) tells whether it was
 * created. Refuses a superuser or the schema owner. Run as the owner. */
vg_status migrate_service_member(PGconn *conn, const char *role, int *created, vg_error *err);

/* 1 when the connection's role is a superuser or owns the schema (can run
 * DDL and rewrite history), 0 when not, -1 with err. */
int migrate_is_privileged(PGconn *conn, vg_error *err);

/* Number of embedded migrations not yet applied, or -1 with err. */
int migrate_pending(PGconn *conn, vg_error *err);

#endif
