/*
 * leader.h — one leader per role across every `vigil serve`, elected with a
 * PostgreSQL session advisory lock.
 *
 * The lock lives on the leader's own connection, and the leader does all its
 * work on that connection: if the process dies or the connection breaks,
 * PostgreSQL releases the lock and another instance takes over within
 * `retry_ms`, and the old leader cannot write anything more.
 */
#ifndef VIGIL_EVENTS_LEADER_H
#define VIGIL_EVENTS_LEADER_H

#include <libpq-fe.h>
#include <stdatomic.h>

typedef struct leader_role {
    const char *name;   /* "sequencer", "publisher" (for logs) */
    long long lock_key; /* advisory lock key, unique per role */
    const char *db_url;
    int connect_timeout; /* seconds */
    int retry_ms;        /* how often a follower tries to take over */
    /* Does the leader's work until an error or *stop; returns to step down. */
    void (*run)(void *arg, PGconn *conn);
    void *arg;
    atomic_int *stop;     /* set to ask the loop to end */
    atomic_int is_leader; /* 1 while this process leads the role */
} leader_role;

/* Runs forever (until *stop): connect, try the lock, lead, step down on
 * error, back off, repeat. Every state change is logged once. Thread body. */
void *leader_main(void *role);

/* Waits up to `timeout_ms` for a NOTIFY on `conn` (which must LISTEN) or
 * for `extra_fd` (-1: none; the caller reads it) to become readable.
 * Returns 1 if something arrived, 0 on timeout, -1 if the connection broke. */
int leader_wait_notify(PGconn *conn, int extra_fd, int timeout_ms);

/* Sleeps up to `ms`, waking early when *stop becomes set. */
void leader_sleep(atomic_int *stop, int ms);

#endif
