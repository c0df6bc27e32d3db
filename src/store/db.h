/*
 * db.h — the one interface to PostgreSQL: a small connection pool and
 * helpers that turn libpq results into vg_status.
 *
 * Every SQL statement is parameterized (PQexecParams). Connection failures
 * map to VG_E_UNAVAILABLE (HTTP 503) and the connection is reset on its next
 * use, so the service recovers by itself when the database comes back.
 */
#ifndef VIGIL_STORE_DB_H
#define VIGIL_STORE_DB_H

#include <libpq-fe.h>

#include "util/status.h"

typedef struct db_pool db_pool;

/* Creates a pool of at most `size` connections to `url` (connected lazily).
 * `connect_timeout` seconds bounds each (re)connect. Never NULL. */
db_pool *db_pool_new(const char *url, int size, int connect_timeout);
/* Closes every connection. All connections must have been released. NULL ok. */
void db_pool_free(db_pool *pool);

/* Borrows a healthy connection, waiting for a free one; reconnects a broken
 * one. NULL with VG_E_UNAVAILABLE in `err` when the database is unreachable.
 * Return it with db_release(). */
PGconn *db_acquire(db_pool *pool, vg_error *err);
/* Returns `conn`; if it is inside a transaction it is rolled back first. */
void db_release(db_pool *pool, PGconn *conn);

/* Opens a standalone connection (CLI commands). NULL with err on failure. */
PGconn *db_connect(const char *url, int connect_timeout, vg_error *err);

/* db_connect with application_name `name` ("vigil sequencer", "vigil
 * consumer risk"...), so pg_stat_activity and pg_stat_statements users can
 * tell Vigil's sessions apart. db_connect names them "vigil". */
PGconn *db_connect_as(const char *url, int connect_timeout, const char *name, vg_error *err);

/* A statement run often enough to be worth preparing: each connection
 * parses and plans it once (PQprepare, on first use) instead of on every
 * execution. Declare one per call site, static, with DB_STMT:
 *
 *     static db_stmt read_window = DB_STMT("SELECT ... WHERE seq > $1");
 *
 * Planning was a fifth of PostgreSQL's CPU in benchmark 2 (every API key
 * lookup, publisher read and consumer insert planned anew). Connections
 * from db_connect_as remember what they prepared (a libpq event procedure,
 * forgotten on PQreset / PQfinish); on any other connection, or past
 * DB_MAX_STMTS statements, these run unprepared. Statements with optional
 * filters whose best plan depends on the values stay with db_exec. */
#define DB_MAX_STMTS 64
typedef struct db_stmt {
    const char *sql;
    int nparams;
    _Atomic int id; /* 1..: its slot and the name vg<id>; 0 until first use */
} db_stmt;
#define DB_STMT(text, n)                                                                           \
    {                                                                                              \
        .sql = (text), .nparams = (n)                                                              \
    }

/* db_exec / db_run of a prepared statement (nparams as declared). */
PGresult *db_exec_stmt(PGconn *conn, db_stmt *stmt, const char *const *params, vg_error *err);
vg_status db_run_stmt(PGconn *conn, db_stmt *stmt, const char *const *params, vg_error *err);
/* PQsendQueryPrepared, preparing first when needed (synchronously: nothing
 * may be in flight). 1 when sent, 0 with err. */
int db_send_stmt(PGconn *conn, db_stmt *stmt, const char *const *params, vg_error *err);

/* Runs `sql` with text parameters (NULL entries are SQL NULL). Returns the
 * result on PGRES_COMMAND_OK / PGRES_TUPLES_OK, else NULL with `err` set by
 * db_map_error(). Caller PQclear()s the result. */
PGresult *db_exec(PGconn *conn, const char *sql, int nparams, const char *const *params,
                  vg_error *err);

/* db_exec() for statements whose result is not needed. */
vg_status db_run(PGconn *conn, const char *sql, int nparams, const char *const *params,
                 vg_error *err);

/* Maps a failed result (or a broken connection when res is NULL) to a status:
 * connection loss, shutdown or recovery → VG_E_UNAVAILABLE; unique violation
 * → VG_E_CONFLICT; SQLSTATE VG422 (raised by our PL/pgSQL with a JSON array
 * of {index, field, detail} in DETAIL) → VG_E_INVALID with err->items;
 * serialization failure / deadlock → VG_E_UNAVAILABLE (retryable);
 * anything else → VG_E_INTERNAL, logged with the server's message. */
vg_status db_map_error(PGconn *conn, const PGresult *res, vg_error *err);

/* BEGIN / COMMIT / ROLLBACK. db_rollback never fails visibly (a broken
 * connection is reset on next acquire). */
vg_status db_begin(PGconn *conn, vg_error *err);
vg_status db_commit(PGconn *conn, vg_error *err);
void db_rollback(PGconn *conn);

/* 1 if the database answers "SELECT 1" now. */
int db_ping(db_pool *pool, vg_error *err);

/* Takes (and frees) the notifications libpq has already queued on `conn`;
 * returns how many. A LISTENing loop must call it before it sleeps on the
 * socket: a NOTIFY that arrives while one of its queries runs is read with
 * that query's result and queued, and the socket then stays quiet. Reads
 * nothing from the socket itself (PQconsumeInput does). */
int db_take_notifies(PGconn *conn);

/* A PostgreSQL array literal ({"a","b"}) built element by element, to pass
 * many values as one text parameter ($1::uuid[], $2::text[]...): one
 * statement for a whole batch instead of one per row. Every element is
 * quoted and escaped, so any text is safe; NULL adds a NULL element. */
typedef struct db_array {
    char *text; /* the literal so far, always valid ("{}" when empty) */
    size_t len, cap;
    int n; /* elements */
} db_array;
void db_array_init(db_array *a);
void db_array_add(db_array *a, const char *s);
void db_array_free(db_array *a);

/* Runs a query whose first row's first column is a JSON text and hands it
 * out in *out (malloc'd; caller frees). No row, or a NULL value, is
 * VG_E_NOT_FOUND with `what` in the detail. */
vg_status db_json(PGconn *conn, const char *sql, int nparams, const char *const *params,
                  const char *what, char **out, vg_error *err);
#endif
