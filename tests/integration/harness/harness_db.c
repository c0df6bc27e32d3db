/*
 * harness_db.c — direct SQL against the env's database, for tests that check
 * what vigil wrote (or tamper with it on purpose).
 *
 * Values go as text parameters ($1..$n), never spliced into the SQL. The
 * cached connection is dropped by h_pg_stop and reopened on next use; a read
 * that fails because the connection died is retried once on a new one.
 */
#include "harness_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PARAMS 32

/* libpq prints NOTICEs to stderr by default; tests only want them verbose. */
static void notice(void *arg, const char *message)
{
    if (h__verbose())
        fprintf(stderr, "harness: postgres: %s", message);
}

PGconn *h_db_connect(const h_env *env)
{
    PGconn *c = PQconnectdb(env->db_url);
    if (PQstatus(c) != CONNECTION_OK) {
        h__err("connecting to %s: %s", env->db_url, PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, notice, NULL);
    return c;
}

PGconn *h_db(h_env *env)
{
    if (env->db && PQstatus(env->db) == CONNECTION_OK)
        return env->db;
    PQfinish(env->db);
    env->db = h_db_connect(env);
    return env->db;
}

/* Runs sql with the NULL-terminated parameters in ap. Returns the result
 * when its status is expected, else NULL after printing the error. */
static PGresult *query(h_env *env, const char *sql, va_list ap, ExecStatusType expect,
                       int may_retry)
{
    const char *params[MAX_PARAMS];
    int n = 0;
    for (const char *p = va_arg(ap, const char *); p; p = va_arg(ap, const char *)) {
        if (n == MAX_PARAMS) {
            h__err("more than %d SQL parameters", MAX_PARAMS);
            return NULL;
        }
        params[n++] = p;
    }
    for (int attempt = 0;; attempt++) {
        PGconn *c = h_db(env);
        if (!c)
            return NULL;
        /* PQexec allows several statements; PQexecParams only one. */
        PGresult *r = n == 0 && expect == PGRES_COMMAND_OK
                          ? PQexec(c, sql)
                          : PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
        ExecStatusType st = PQresultStatus(r);
        if (st == expect || (expect == PGRES_COMMAND_OK && st == PGRES_TUPLES_OK))
            return r;
        if (PQstatus(c) == CONNECTION_BAD && may_retry && attempt == 0) {
            PQclear(r);
            continue;
        }
        h__err("SQL failed: %s  in: %s", PQerrorMessage(c), sql);
        PQclear(r);
        return NULL;
    }
}

/* Row 1, column 1 of a successful single-value query, or NULL. */
static const char *first_value(PGresult *r)
{
    if (!r || PQntuples(r) < 1 || PQnfields(r) < 1 || PQgetisnull(r, 0, 0))
        return NULL;
    return PQgetvalue(r, 0, 0);
}

long long h_db_count_(h_env *env, const char *sql, ...)
{
    va_list ap;
    va_start(ap, sql);
    PGresult *r = query(env, sql, ap, PGRES_TUPLES_OK, 1);
    va_end(ap);
    const char *v = first_value(r);
    long long n = -1;
    char *end;
    if (v) {
        n = strtoll(v, &end, 10);
        if (end == v || *end)
            n = -1;
    }
    PQclear(r);
    return n;
}

char *h_db_text_(h_env *env, const char *sql, ...)
{
    va_list ap;
    va_start(ap, sql);
    PGresult *r = query(env, sql, ap, PGRES_TUPLES_OK, 1);
    va_end(ap);
    const char *v = first_value(r);
    char *s = v ? strdup(v) : NULL;
    PQclear(r);
    return s;
}

int h_db_exec_(h_env *env, const char *sql, ...)
{
    va_list ap;
    va_start(ap, sql);
    PGresult *r = query(env, sql, ap, PGRES_COMMAND_OK, 0);
    va_end(ap);
    int rc = r ? 0 : -1;
    PQclear(r);
    return rc;
}
