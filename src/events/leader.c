/*
 * leader.c — advisory-lock leader election and the loop around a role.
 */
#include "events/leader.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "store/db.h"
#include "util/log.h"

void leader_sleep(atomic_int *stop, int ms)
{
    while (ms > 0 && !atomic_load(stop)) {
        int step = ms < 50 ? ms : 50;
        struct timespec ts = {0, step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

int leader_wait_notify(PGconn *conn, int extra_fd, int timeout_ms)
{
    if (!PQconsumeInput(conn))
        return -1;
    if (db_take_notifies(conn))
        return 1;
    struct pollfd pfd[2] = {{.fd = PQsocket(conn), .events = POLLIN},
                            {.fd = extra_fd, .events = POLLIN}};
    if (pfd[0].fd < 0)
        return -1;
    int r = poll(pfd, extra_fd >= 0 ? 2 : 1, timeout_ms);
    if (r <= 0)
        return 0;
    int got = 0;
    if (extra_fd >= 0 && (pfd[1].revents & POLLIN))
        got = 1; /* the caller drains extra_fd */
    if (!PQconsumeInput(conn))
        return -1;
    if (db_take_notifies(conn))
        got = 1;
    return PQstatus(conn) == CONNECTION_OK ? got : -1;
}

static int try_lock(PGconn *c, long long key)
{
    char k[32];
    snprintf(k, sizeof k, "%lld", key);
    const char *p[] = {k};
    vg_error err = {0};
    PGresult *r = db_exec(c, "SELECT pg_try_advisory_lock($1::bigint)", 1, p, &err);
    if (!r) {
        vg_error_clear(&err);
        return -1;
    }
    int got = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return got;
}

void *leader_main(void *arg)
{
    leader_role *role = arg;
    char name[16];
    snprintf(name, sizeof name, "%s", role->name);
    pthread_setname_np(pthread_self(), name);
    int backoff = 100, said_waiting = 0, said_down = 0;
    while (!atomic_load(role->stop)) {
        vg_error err = {0};
        char app[64];
        snprintf(app, sizeof app, "vigil %s", role->name);
        PGconn *c = db_connect_as(role->db_url, role->connect_timeout, app, &err);
        if (!c) {
            if (!said_down)
                log_warn("%s: database unavailable, retrying: %s", role->name, err.detail);
            said_down = 1;
            vg_error_clear(&err);
            leader_sleep(role->stop, backoff);
            backoff = backoff < 5000 ? backoff * 2 : 5000;
            continue;
        }
        if (said_down)
            log_info("%s: database reachable again", role->name);
        said_down = 0;
        backoff = 100;
        int got = 0;
        while (!atomic_load(role->stop) && (got = try_lock(c, role->lock_key)) == 0) {
            if (!said_waiting)
                log_info("%s: another instance leads; standing by", role->name);
            said_waiting = 1;
            leader_sleep(role->stop, role->retry_ms);
        }
        if (!atomic_load(role->stop) && got == 1) {
            said_waiting = 0;
            atomic_store(&role->is_leader, 1);
            log_info("%s: leading", role->name);
            role->run(role->arg, c);
            atomic_store(&role->is_leader, 0);
            if (!atomic_load(role->stop))
                log_warn("%s: stepped down (connection lost or error); will re-elect", role->name);
        }
        PQfinish(c); /* releases the lock */
        leader_sleep(role->stop, 200);
    }
    return NULL;
}
