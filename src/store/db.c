/*
 * db.c — connection pool and libpq error mapping.
 *
 * The pool is a fixed array guarded by one mutex: HTTP worker threads borrow
 * a connection for the length of one request. A connection found broken (or
 * whose socket turned readable while idle, which is how PostgreSQL announces
 * "terminating connection due to administrator command") is reset before it
 * is handed out, so a database restart costs the requests in flight a 503
 * and nothing more.
 */
#include "store/db.h"

#include <libpq-events.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

struct db_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *url;
    int connect_timeout;
    int size;
    PGconn **conns; /* NULL = not yet connected */
    int *busy;
};

static void notice_to_log(void *arg, const char *message)
{
    (void)arg;
    log_debug("postgres notice: %.*s", (int)strcspn(message, "\n"), message);
}

PGconn *db_connect(const char *url, int connect_timeout, vg_error *err)
{
    return db_connect_as(url, connect_timeout, "vigil", err);
}

/* ---- prepared statements ---------------------------------------------------
 * Which db_stmt a connection has prepared lives with the connection itself,
 * as libpq "instance data" of this event procedure: created when the
 * procedure is registered, cleared when the connection is reset (the server
 * session, and its prepared statements, are gone) and freed by PQfinish. */
typedef struct conn_state {
    unsigned char prepared[DB_MAX_STMTS + 1];
} conn_state;

static int conn_event(PGEventId id, void *info, void *pass)
{
    (void)pass;
    switch (id) {
    case PGEVT_REGISTER: {
        PGconn *c = ((PGEventRegister *)info)->conn;
        conn_state *s = calloc(1, sizeof *s);
        return s && PQsetInstanceData(c, conn_event, s);
    }
    case PGEVT_CONNRESET: {
        conn_state *s = PQinstanceData(((PGEventConnReset *)info)->conn, conn_event);
        if (s)
            memset(s, 0, sizeof *s);
        return 1;
    }
    case PGEVT_CONNDESTROY:
        free(PQinstanceData(((PGEventConnDestroy *)info)->conn, conn_event));
        return 1;
    default:
        return 1;
    }
}

static PGresult *kept(PGconn *c, PGresult *res, vg_error *err);
static vg_status done(PGresult *res, const vg_error *used, vg_error *local);

static _Atomic int stmt_ids;

/* The statement's slot, assigning one on first use (0: none left). */
static int stmt_slot(db_stmt *s)
{
    int id = atomic_load(&s->id);
    if (id)
        return id;
    int mine = atomic_fetch_add(&stmt_ids, 1) + 1, none = 0;
    if (!atomic_compare_exchange_strong(&s->id, &none, mine))
        return none; /* another thread assigned it first */
    if (mine > DB_MAX_STMTS)
        log_warn("more than %d prepared statements: \"%.60s\" runs unprepared", DB_MAX_STMTS,
                 s->sql);
    return mine;
}

/* Prepares `s` on `c` unless done. 1: run it by `name`; 0: run it unprepared
 * (a connection without state, or no slot left); -1: preparing failed
 * (err set). */
static int ensure_prepared(PGconn *c, db_stmt *s, char *name, size_t namesz, vg_error *err)
{
    conn_state *st = PQinstanceData(c, conn_event);
    int id = stmt_slot(s);
    if (!st || id > DB_MAX_STMTS)
        return 0;
    snprintf(name, namesz, "vg%d", id);
    if (st->prepared[id])
        return 1;
    PGresult *r = PQprepare(c, name, s->sql, s->nparams, NULL);
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
        db_map_error(c, r, err);
        PQclear(r);
        return -1;
    }
    PQclear(r);
    st->prepared[id] = 1;
    return 1;
}

PGresult *db_exec_stmt(PGconn *c, db_stmt *s, const char *const *params, vg_error *err)
{
    char name[16];
    int how = ensure_prepared(c, s, name, sizeof name, err);
    if (how < 0)
        return NULL;
    if (how == 0)
        return db_exec(c, s->sql, s->nparams, params, err);
    return kept(c, PQexecPrepared(c, name, s->nparams, params, NULL, NULL, 0), err);
}

vg_status db_run_stmt(PGconn *c, db_stmt *s, const char *const *params, vg_error *err)
{
    vg_error local = {0}, *e = err ? err : &local;
    return done(db_exec_stmt(c, s, params, e), e, &local);
}

int db_send_stmt(PGconn *c, db_stmt *s, const char *const *params, vg_error *err)
{
    char name[16];
    int how = ensure_prepared(c, s, name, sizeof name, err);
    if (how < 0)
        return 0;
    int sent = how ? PQsendQueryPrepared(c, name, s->nparams, params, NULL, NULL, 0)
                   : PQsendQueryParams(c, s->sql, s->nparams, NULL, params, NULL, NULL, 0);
    if (!sent)
        db_map_error(c, NULL, err);
    return sent;
}

PGconn *db_connect_as(const char *url, int connect_timeout, const char *name, vg_error *err)
{
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d", connect_timeout);
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *vals[] = {url, timeout, name, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1 /* expand dbname as a URI */);
    if (PQstatus(c) != CONNECTION_OK) {
        vg_fail(err, VG_E_UNAVAILABLE, NULL, "database unavailable: %s",
                c ? PQerrorMessage(c) : "out of memory");
        /* strip the trailing newline libpq adds */
        if (err)
            err->detail[strcspn(err->detail, "\n")] = '\0';
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, notice_to_log, NULL);
    if (!PQregisterEventProc(c, conn_event, "vigil", NULL))
        log_warn("database: cannot track prepared statements on this connection; its "
                 "statements run unprepared");
    return c;
}

db_pool *db_pool_new(const char *url, int size, int connect_timeout)
{
    db_pool *p = calloc(1, sizeof *p);
    if (!p)
        abort();
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->url = strdup(url);
    p->size = size;
    p->connect_timeout = connect_timeout;
    p->conns = calloc((size_t)size, sizeof *p->conns);
    p->busy = calloc((size_t)size, sizeof *p->busy);
    if (!p->url || !p->conns || !p->busy)
        abort();
    return p;
}

void db_pool_free(db_pool *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->size; i++)
        PQfinish(p->conns[i]);
    free(p->conns);
    free(p->busy);
    free(p->url);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

int db_take_notifies(PGconn *c)
{
    int n = 0;
    PGnotify *note;
    while ((note = PQnotifies(c))) {
        n++;
        PQfreemem(note);
    }
    return n;
}

/* An idle connection has nothing to read but notifications. If its socket
 * is readable and what it held was not a notification, the server sent
 * something unasked: almost always the FATAL of a shutdown or restart, which
 * libpq reads as a notice while its status stays CONNECTION_OK until a later
 * read meets the closed socket (CI, test_pg_restart under ASan: a request
 * right after a restart got 503 on such a connection). Such a connection is
 * dropped; a healthy one dropped by mistake costs a reconnect, a dead one
 * kept would cost a request. */
static int conn_healthy(PGconn *c)
{
    if (PQstatus(c) != CONNECTION_OK)
        return 0;
    struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
    if (pfd.fd < 0)
        return 0;
    if (poll(&pfd, 1, 0) > 0) {
        if (!PQconsumeInput(c))
            return 0;
        if (!db_take_notifies(c))
            return 0;
    }
    return PQstatus(c) == CONNECTION_OK;
}

PGconn *db_acquire(db_pool *p, vg_error *err)
{
    int slot = -1;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        for (int i = 0; i < p->size; i++)
            if (!p->busy[i] && (slot < 0 || (p->conns[i] && !p->conns[slot])))
                slot = i; /* prefer an already connected slot */
        if (slot >= 0)
            break;
        pthread_cond_wait(&p->cv, &p->mu);
    }
    p->busy[slot] = 1;
    PGconn *c = p->conns[slot];
    p->conns[slot] = NULL;
    pthread_mutex_unlock(&p->mu);

    /* Connect or repair outside the lock: it may take connect_timeout. */
    if (c && !conn_healthy(c)) {
        PQfinish(c);
        c = NULL;
    }
    if (!c)
        c = db_connect_as(p->url, p->connect_timeout, "vigil api", err);

    pthread_mutex_lock(&p->mu);
    if (!c) {
        p->busy[slot] = 0;
        pthread_cond_signal(&p->cv);
    } else {
        p->conns[slot] = c;
    }
    pthread_mutex_unlock(&p->mu);
    return c;
}

void db_release(db_pool *p, PGconn *c)
{
    if (!c)
        return;
    if (PQtransactionStatus(c) != PQTRANS_IDLE)
        db_rollback(c);
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->size; i++) {
        if (p->conns[i] == c) {
            p->busy[i] = 0;
            break;
        }
    }
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static int starts_with(const char *s, const char *prefix)
{
    return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

vg_status db_map_error(PGconn *conn, const PGresult *res, vg_error *err)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorMessage(res) : NULL;
    if (!msg || !*msg)
        msg = PQerrorMessage(conn);

    if (PQstatus(conn) != CONNECTION_OK || !state || starts_with(state, "08") ||
        starts_with(state, "57P") || strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
        strcmp(state, "53300") == 0) {
        log_warn("database unavailable: %.*s", (int)strcspn(msg, "\n"), msg);
        return vg_fail(err, VG_E_UNAVAILABLE, NULL,
                       "the database is unavailable or restarting; retry the request");
    }
    if (strcmp(state, "VG422") == 0) {
        const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
        json_t *items = detail ? json_loads(detail, 0, NULL) : NULL;
        if (err) {
            vg_error_clear(err);
            err->items = json_is_array(items) ? json_incref(items) : NULL;
        }
        json_decref(items);
        return vg_fail(err, VG_E_INVALID, NULL, "%s",
                       PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
    }
    if (strcmp(state, "VG401") == 0) {
        /* vigil_keys_usable (migration 0024): the key's id, when it names
         * one, goes to err->items[0] for the ingest flush; the message is
         * keys_authenticate's. */
        const char *key = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
        if (err) {
            vg_error_clear(err);
            err->items = key ? json_pack("[s]", key) : NULL;
        }
        return vg_fail(err, VG_E_UNAUTHORIZED, "Authorization", "%s",
                       PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
    }
    if (strcmp(state, "23505") == 0)
        return vg_fail(err, VG_E_CONFLICT, NULL, "a record with this key already exists");
    log_error("database error %s: %.*s", state, (int)strcspn(msg, "\n"), msg);
    /* Messages raised by PL/pgSQL (class P0) are ours and safe to show; other
     * server messages may describe internals, so they stay in the log. */
    if (starts_with(state, "P0"))
        return vg_fail(err, VG_E_INTERNAL, NULL, "database error (SQLSTATE %s): %s", state,
                       PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
    return vg_fail(err, VG_E_INTERNAL, NULL, "database error (SQLSTATE %s)", state);
}

/* `res` when it succeeded, else NULL with err set (and `res` freed). */
static PGresult *kept(PGconn *c, PGresult *res, vg_error *err)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return res;
    db_map_error(c, res, err);
    PQclear(res);
    return NULL;
}

/* A db_run's answer from a db_exec's result: VG_OK (the result freed) or the
 * code in `used`, the error the exec filled (`local`, the caller's stand-in
 * when it passed none, is cleared). */
static vg_status done(PGresult *res, const vg_error *used, vg_error *local)
{
    vg_status st = res ? VG_OK : used->code;
    PQclear(res);
    vg_error_clear(local);
    return st;
}

PGresult *db_exec(PGconn *conn, const char *sql, int nparams, const char *const *params,
                  vg_error *err)
{
    return kept(conn, PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0), err);
}

vg_status db_run(PGconn *conn, const char *sql, int nparams, const char *const *params,
                 vg_error *err)
{
    vg_error local = {0}, *e = err ? err : &local;
    return done(db_exec(conn, sql, nparams, params, e), e, &local);
}

vg_status db_begin(PGconn *conn, vg_error *err)
{
    return db_run(conn, "BEGIN", 0, NULL, err);
}

vg_status db_commit(PGconn *conn, vg_error *err)
{
    return db_run(conn, "COMMIT", 0, NULL, err);
}

void db_rollback(PGconn *conn)
{
    PGresult *res = PQexec(conn, "ROLLBACK");
    PQclear(res);
}

int db_ping(db_pool *p, vg_error *err)
{
    PGconn *c = db_acquire(p, err);
    if (!c)
        return 0;
    vg_status st = db_run(c, "SELECT 1", 0, NULL, err);
    db_release(p, c);
    return st == VG_OK;
}

vg_status db_json(PGconn *conn, const char *sql, int nparams, const char *const *params,
                  const char *what, char **out, vg_error *err)
{
    *out = NULL;
    vg_error local = {0}, *e = err ? err : &local;
    PGresult *r = db_exec(conn, sql, nparams, params, e);
    if (!r)
        return done(NULL, e, &local);
    vg_status st = VG_OK;
    if (PQntuples(r) < 1 || PQgetisnull(r, 0, 0))
        st = vg_fail(err, VG_E_NOT_FOUND, NULL, "%s not found", what);
    else if (!(*out = strdup(PQgetvalue(r, 0, 0))))
        abort();
    PQclear(r);
    return st;
}

void db_array_init(db_array *a)
{
    a->cap = 64;
    if (!(a->text = malloc(a->cap)))
        abort();
    memcpy(a->text, "{}", 3);
    a->len = 2;
    a->n = 0;
}

void db_array_add(db_array *a, const char *s)
{
    size_t need = a->len + (s ? 2 * strlen(s) : 4) + 6; /* , " " } NUL */
    if (need > a->cap) {
        a->cap = need * 2;
        if (!(a->text = realloc(a->text, a->cap)))
            abort();
    }
    char *o = a->text + a->len - 1; /* over the closing brace */
    if (a->n++)
        *o++ = ',';
    if (!s) {
        memcpy(o, "NULL", 4);
        o += 4;
    } else {
        *o++ = '"';
        for (; *s; s++) {
            if (*s == '"' || *s == '\\')
                *o++ = '\\';
            *o++ = *s;
        }
        *o++ = '"';
    }
    *o++ = '}';
    *o = '\0';
    a->len = (size_t)(o - a->text);
}

void db_array_free(db_array *a)
{
    free(a->text);
    a->text = NULL;
}
