/*
 * sse.c — the /events/stream hub: one reader of event_log, a ring of recent
 * frames, and libmicrohttpd streams that suspend while they wait.
 *
 * Workload: a few writers' worth of events per second to hundreds of idle
 * browser tabs, with bursts of thousands, and now and then a client resuming
 * from an old Last-Event-ID. So the database is read once per event (by the
 * hub) for everyone who is live, each frame is formatted once, and a waiting
 * client costs a suspended connection and a struct, not a thread.
 *
 * Positions. A stream's `pos` is the last seq it has sent or skipped (the
 * type filter skips). seq is gap-free and committed in order, so everything
 * at or below the ring's head is readable, and a reader that resumes at
 * pos + 1 neither misses nor repeats an event.
 *
 * Locks. `hub.rw` guards the ring (the hub writes, readers copy frames under
 * the read lock). `hub.mu` guards the published head, the waiting list and
 * the stopping flag; a reader decides to suspend under `hub.mu` after
 * comparing its pos with the published head, and the hub publishes a new
 * head under `hub.mu` before it resumes waiters, so no wake-up is lost. The
 * hub calls MHD_resume_connection outside `hub.mu`: a connection taken off
 * the waiting list is still suspended and so cannot be freed meanwhile.
 */
#include "events/sse.h"

#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "domain/timeparse.h"
#include "store/db.h"
#include "store/store_event_log.h"
#include "util/log.h"

#define SSE_LOAD_BATCH 1000         /* rows the hub reads per query */
#define SSE_PAGE_ROWS  500          /* rows a lagging stream reads per query */
#define SSE_PAGE_BYTES (256 * 1024) /* ... and at most about this many bytes */
#define SSE_FILL_BYTES (64 * 1024)  /* bytes a stream copies from the ring per fill */
#define SSE_BLOCK_SIZE (32 * 1024)  /* MHD's read size for the callback */
#define SSE_POLL_MS    1000         /* fallback poll of event_log without NOTIFY */
#define SSE_LAG_LOG_US 60000000LL   /* at most one "fell behind" line per stream per minute */
/* Pacing. A wake-up with news costs each resumed stream a send (about 8.5 us
 * of CPU per stream on the development machine, mostly the kernel's TCP):
 * with a thousand dashboards open, waking them for every sequencer commit
 * (hundreds a second) would take more than the cores have, and the queue
 * that builds up is what clients wait in. So the next wake-up with news
 * comes at the earliest SSE_PACE_US_PER_STREAM per stream resumed by the
 * last one later (at most SSE_PACE_MAX_US): fan-out takes at most about
 * half a core, events that commit meanwhile go out in the same send, and
 * a handful of streams (at most a few dozen microseconds) never waits. */
#define SSE_PACE_US_PER_STREAM 20
#define SSE_PACE_MAX_US        25000
#define SSE_RETRY              "retry: 2000\n\n"
#define SSE_KEEPALIVE          ": keep-alive\n\n"

/* One ring slot: the frame and, after its NUL, the event type. */
typedef struct sse_entry {
    int64_t seq;
    char *frame; /* malloc'd; owns `type` */
    size_t len;
    const char *type;
} sse_entry;

typedef struct sse_client sse_client;
struct sse_client {
    struct MHD_Connection *conn;
    int fd;          /* the connection's socket, -1 if unknown */
    atomic_int gone; /* the peer closed while we were suspended */
    char request_id[64];
    char *type; /* prefix filter or NULL */
    size_t type_len;
    int64_t pos;           /* last seq sent or skipped */
    int64_t last_write_us; /* monotonic; for the heartbeat */
    int live;              /* has read from the ring */
    int lagging;           /* reading from the database after being live */
    int falls;             /* times it fell out of the ring since the last log line */
    int64_t lag_logged_us; /* monotonic time of that line, 0 = never */
    char *buf;             /* whole frames not yet handed to MHD */
    size_t len, off, cap;
    sse_client *next_waiting; /* hub.mu */
};

static struct {
    /* Fixed between start and free. */
    const vg_config *cfg;
    db_pool *pool;
    int64_t heartbeat_us;
    size_t cap;
    pthread_t thread;
    int started;
    int wake_fd;

    pthread_rwlock_t rw; /* the ring */
    sse_entry *ring;
    size_t count;
    int64_t ring_head; /* last seq in the ring, -1 before the first load */

    pthread_mutex_t mu;
    int64_t head; /* ring_head as published to waiters */
    sse_client *waiting;
    atomic_int stopping;

    atomic_int clients;
} hub = {
    .rw = PTHREAD_RWLOCK_INITIALIZER,
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .ring_head = -1,
    .head = -1,
    .wake_fd = -1,
};

/* ---- frames --------------------------------------------------------------- */

/* Grows *buf to hold `need` bytes. Out of memory aborts, as elsewhere. */
static void reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    /* The first allocation is exactly what is asked: a ring slot holds one
     * frame for as long as it stays in the ring (a 4 KiB minimum made the
     * 8,192-event ring take 32 MiB for 6 MiB of frames). */
    size_t c = *cap ? *cap : need;
    while (c < need)
        c *= 2;
    char *b = realloc(*buf, c);
    if (!b)
        abort();
    *buf = b;
    *cap = c;
}

/* The room frame_append asks for: its fixed text and the seq fit in 64. */
static size_t frame_room(const char *type, size_t json_len)
{
    return strlen(type) + json_len + 64;
}

/* Appends "id: SEQ\nevent: TYPE\ndata: JSON\n\n" at *len. `json` is
 * PostgreSQL's jsonb text, which never holds a raw line break. Returns the
 * frame's length. */
static size_t frame_append(char **buf, size_t *len, size_t *cap, int64_t seq, const char *type,
                           const char *json)
{
    if (strpbrk(type, "\r\n")) {
        /* Types are our own constants; a line break would split the frame. */
        log_error("sse: event %" PRId64 " has a line break in its type; sent as 'invalid'", seq);
        type = "invalid";
    }
    size_t room = frame_room(type, strlen(json));
    reserve(buf, cap, *len + room);
    int n =
        snprintf(*buf + *len, room, "id: %" PRId64 "\nevent: %s\ndata: %s\n\n", seq, type, json);
    *len += (size_t)n;
    return (size_t)n;
}

/* ---- the ring (hub thread only writes) ------------------------------------ */

static void ring_clear(void)
{
    for (size_t i = 0; i < hub.cap; i++) {
        free(hub.ring[i].frame);
        memset(&hub.ring[i], 0, sizeof hub.ring[i]);
    }
    hub.count = 0;
}

/* Under the write lock. Takes ownership of e->frame. */
static void ring_push(const sse_entry *e)
{
    if (hub.ring_head >= 0 && e->seq != hub.ring_head + 1) {
        /* Invariant 3 says this cannot happen; keep the ring contiguous so
         * readers below the gap go to the database. */
        log_error("sse: event_log jumped from seq %" PRId64 " to %" PRId64 "; ring restarted",
                  hub.ring_head, e->seq);
        ring_clear();
    }
    sse_entry *slot = &hub.ring[(size_t)(e->seq % (int64_t)hub.cap)];
    if (hub.count == hub.cap)
        free(slot->frame); /* the oldest event leaves the ring */
    else
        hub.count++;
    *slot = *e;
    hub.ring_head = e->seq;
}

/* ---- waking streams -------------------------------------------------------- */

/* 1 when the peer has closed the connection. A suspended connection is not
 * polled by MHD, so without this a closed stream would hold its slot until
 * its next heartbeat write failed. */
static int peer_closed(const sse_client *c)
{
    char b;
    return c->fd >= 0 && recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* Publishes the ring's head and resumes every waiting stream that has news,
 * a heartbeat due, or must end, and, with `check_peers` (once per tick, not
 * per batch: it costs a syscall per stream), a closed peer. Returns how many
 * streams it resumed. */
static int hub_wake(int check_peers)
{
    pthread_rwlock_rdlock(&hub.rw);
    int64_t head = hub.ring_head;
    pthread_rwlock_unlock(&hub.rw);
    int64_t now = mono_us();
    int stopping = atomic_load(&hub.stopping);

    sse_client *resume = NULL;
    pthread_mutex_lock(&hub.mu);
    hub.head = head;
    for (sse_client **p = &hub.waiting; *p;) {
        sse_client *c = *p;
        int closed = check_peers && peer_closed(c);
        if (closed)
            atomic_store(&c->gone, 1);
        if (stopping || closed || c->pos < head || now - c->last_write_us >= hub.heartbeat_us) {
            *p = c->next_waiting;
            c->next_waiting = resume;
            resume = c;
        } else {
            p = &c->next_waiting;
        }
    }
    pthread_mutex_unlock(&hub.mu);
    int n = 0;
    while (resume) {
        sse_client *c = resume;
        resume = c->next_waiting; /* read before the resumed reader may run */
        c->next_waiting = NULL;
        MHD_resume_connection(c->conn);
        n++;
    }
    return n;
}

/* ---- the hub thread ------------------------------------------------------- */

/* Reads every event after the ring's head into the ring, waking streams
 * after each full batch but the last (the caller wakes them after it). On
 * the first call, starts VIGIL_SSE_RING events before the end of the log so
 * that recent history is served from memory. */
static vg_status hub_load(PGconn *c, vg_error *err)
{
    if (hub.ring_head < 0) {
        int64_t max;
        if (event_log_head(c, &max, err) != VG_OK)
            return err->code;
        pthread_rwlock_wrlock(&hub.rw);
        hub.ring_head = max > (int64_t)hub.cap ? max - (int64_t)hub.cap : 0;
        pthread_rwlock_unlock(&hub.rw);
    }
    for (;;) {
        PGresult *r = event_log_scan(c, hub.ring_head, 0, NULL, SSE_LOAD_BATCH, err);
        if (!r)
            return err->code;
        int n = PQntuples(r);
        sse_entry *batch = n ? calloc((size_t)n, sizeof *batch) : NULL;
        if (n && !batch)
            abort();
        /* Format outside the lock; readers keep copying meanwhile. */
        for (int i = 0; i < n; i++) {
            const char *type = PQgetvalue(r, i, 1);
            size_t cap = 0, len = 0, tlen = strlen(type);
            batch[i].seq = strtoll(PQgetvalue(r, i, 0), NULL, 10);
            /* One exact allocation: the frame and the type after it. */
            reserve(&batch[i].frame, &cap,
                    frame_room(type, (size_t)PQgetlength(r, i, 2)) + tlen + 2);
            batch[i].len =
                frame_append(&batch[i].frame, &len, &cap, batch[i].seq, type, PQgetvalue(r, i, 2));
            reserve(&batch[i].frame, &cap, len + tlen + 2);
            memcpy(batch[i].frame + len + 1, type, tlen + 1);
            batch[i].type = batch[i].frame + len + 1;
        }
        PQclear(r);
        pthread_rwlock_wrlock(&hub.rw);
        for (int i = 0; i < n; i++)
            ring_push(&batch[i]);
        pthread_rwlock_unlock(&hub.rw);
        free(batch);
        if (n < SSE_LOAD_BATCH || atomic_load(&hub.stopping))
            return VG_OK; /* the caller wakes the streams (paced) */
        hub_wake(0);      /* a long catch-up: serve what is loaded so far */
    }
}

/* Connects and LISTENs; NULL with err on failure. */
static PGconn *hub_connect(vg_error *err)
{
    PGconn *c =
        db_connect_as(hub.cfg->database_url, (int)hub.cfg->db_connect_timeout, "vigil sse", err);
    if (c && db_run(c, "LISTEN vigil_events", 0, NULL, err) != VG_OK) {
        PQfinish(c);
        c = NULL;
    }
    return c;
}

/* Waits up to `ms` for the database socket (fd >= 0) or the wake fd.
 * Returns 1 when the database socket is readable. */
static int hub_wait(int fd, int ms)
{
    struct pollfd p[2] = {{.fd = hub.wake_fd, .events = POLLIN}, {.fd = fd, .events = POLLIN}};
    int n = poll(p, fd >= 0 ? 2 : 1, ms);
    if (n > 0 && (p[0].revents & POLLIN)) {
        uint64_t v;
        if (read(hub.wake_fd, &v, sizeof v) < 0)
            log_debug("sse: wake fd read: %m"); /* only the stopping flag matters */
    }
    return n > 0 && fd >= 0 && (p[1].revents & (POLLIN | POLLERR | POLLHUP));
}

/* Sleeps `us` microseconds unless the hub is told to stop. */
static void hub_pause(int64_t us)
{
    struct pollfd p = {.fd = hub.wake_fd, .events = POLLIN};
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    if (ppoll(&p, 1, &ts, NULL) > 0)
        hub_wait(-1, 0); /* drains the wake fd; the loop sees the flag */
}

/* How long after a wake-up that resumed `resumed` streams the next one with
 * news may come (see SSE_PACE_US_PER_STREAM). */
static int64_t pace_us(int resumed)
{
    int64_t us = (int64_t)resumed * SSE_PACE_US_PER_STREAM;
    return us < SSE_PACE_MAX_US ? us : SSE_PACE_MAX_US;
}

static void *hub_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "sse hub");
    PGconn *c = NULL;
    int down = 0;
    int64_t last_load = 0, last_try = 0, last_peers = 0;
    int64_t woken_head = -1, woken_at = 0; /* the last wake-up with news */
    int woken_n = 0;                       /* ... and how many streams it resumed */
    /* Wake often enough that a heartbeat is at most a quarter late. */
    int tick = (int)(hub.heartbeat_us / 4000);
    if (tick > SSE_POLL_MS)
        tick = SSE_POLL_MS;
    int due = 1;
    while (!atomic_load(&hub.stopping)) {
        vg_error err = {0};
        if (!c && mono_us() - last_try >= SSE_POLL_MS * 1000LL) {
            last_try = mono_us();
            if (!(c = hub_connect(&err)) && !down++)
                log_warn("sse: cannot read the event log, retrying every second: %s", err.detail);
            vg_error_clear(&err);
        }
        if (!c) {
            hub_wake(1); /* heartbeats go on */
            hub_wait(-1, tick);
            continue;
        }
        if (down) {
            log_info("sse: reading the event log again");
            down = 0;
            due = 1;
        }
        if (due || mono_us() - last_load >= SSE_POLL_MS * 1000LL) {
            if (hub_load(c, &err) != VG_OK) {
                log_warn("sse: reading event_log failed: %s", err.detail);
                vg_error_clear(&err);
                PQfinish(c);
                c = NULL;
                down = 1;
                continue;
            }
            last_load = mono_us();
            due = 0;
        }
        /* News waits for the pace of the last wake-up (SSE_PACE_US_PER_STREAM). */
        int news = hub.ring_head > woken_head; /* only this thread writes ring_head */
        int64_t wait = woken_at + pace_us(woken_n) - mono_us();
        if (news && wait > 0 && !atomic_load(&hub.stopping)) {
            hub_pause(wait);
            due = 1; /* take what committed meanwhile into the same wake-up */
            continue;
        }
        /* Closed peers are looked for once a tick, not after every NOTIFY:
         * the check is a syscall per waiting stream, and under load the loop
         * turns once per sequencer commit (hundreds a second). */
        int peers = mono_us() - last_peers >= tick * 1000LL;
        if (peers)
            last_peers = mono_us();
        int resumed = hub_wake(peers);
        if (news) {
            woken_head = hub.ring_head;
            woken_at = mono_us();
            woken_n = resumed;
        }
        /* A NOTIFY that arrived while hub_load's query ran was read, and
         * queued, by libpq then: the socket has nothing more to say, and
         * waiting on it would leave that commit's events until the next
         * NOTIFY or the fallback poll, up to SSE_POLL_MS later (test_wake
         * shows the queueing). */
        if (db_take_notifies(c)) {
            due = 1;
            continue;
        }
        if (hub_wait(PQsocket(c), tick)) {
            if (!PQconsumeInput(c)) {
                log_warn("sse: lost the database connection: %.*s",
                         (int)strcspn(PQerrorMessage(c), "\n"), PQerrorMessage(c));
                PQfinish(c);
                c = NULL;
                down = 1;
                continue;
            }
            if (db_take_notifies(c))
                due = 1;
        }
    }
    PQfinish(c);
    return NULL;
}

vg_status sse_hub_start(const vg_config *cfg, db_pool *pool, vg_error *err)
{
    if (hub.started)
        return vg_fail(err, VG_E_INTERNAL, NULL, "the SSE hub is already running");
    hub.cfg = cfg;
    hub.pool = pool;
    hub.heartbeat_us = cfg->sse_heartbeat * 1000000LL;
    hub.cap = (size_t)cfg->sse_ring;
    hub.ring = calloc(hub.cap, sizeof *hub.ring);
    if (!hub.ring)
        abort();
    hub.count = 0;
    hub.ring_head = hub.head = -1;
    atomic_store(&hub.stopping, 0);
    hub.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int rc = hub.wake_fd < 0 ? -1 : pthread_create(&hub.thread, NULL, hub_main, NULL);
    if (rc != 0) {
        vg_fail(err, VG_E_INTERNAL, NULL, "sse: cannot start the hub: %s",
                strerror(rc < 0 ? errno : rc));
        if (hub.wake_fd >= 0)
            close(hub.wake_fd);
        hub.wake_fd = -1;
        free(hub.ring);
        hub.ring = NULL;
        return VG_E_INTERNAL;
    }
    hub.started = 1;
    return VG_OK;
}

void sse_hub_shutdown(void)
{
    if (!hub.started || atomic_load(&hub.stopping))
        return;
    pthread_mutex_lock(&hub.mu);
    atomic_store(&hub.stopping, 1);
    pthread_mutex_unlock(&hub.mu);
    uint64_t one = 1;
    if (write(hub.wake_fd, &one, sizeof one) < 0)
        log_warn("sse: cannot wake the hub thread: %m"); /* it sees the flag within a tick */
    pthread_join(hub.thread, NULL);
    hub_wake(0); /* stopping: resumes every waiter */
    log_info("sse: %d streams told to end", atomic_load(&hub.clients));
}

void sse_hub_free(void)
{
    if (!hub.started)
        return;
    ring_clear();
    free(hub.ring);
    hub.ring = NULL;
    close(hub.wake_fd);
    hub.wake_fd = -1;
    hub.started = 0;
}

int sse_client_count(void)
{
    return atomic_load(&hub.clients);
}

/* ---- one stream ----------------------------------------------------------- */

static void client_append(sse_client *cl, const char *bytes, size_t n)
{
    reserve(&cl->buf, &cl->cap, cl->len + n);
    memcpy(cl->buf + cl->len, bytes, n);
    cl->len += n;
}

static int client_wants(const sse_client *cl, const char *type)
{
    return !cl->type || strncmp(type, cl->type, cl->type_len) == 0;
}

/* Reads the next page below `before` (the ring's first seq) from the
 * database. Returns 1 when pos advanced, -1 on a database error (logged). */
static int client_fill_db(sse_client *cl, int64_t before)
{
    vg_error err = {0};
    PGconn *c = db_acquire(hub.pool, &err);
    PGresult *r = c ? event_log_scan(c, cl->pos, before, cl->type, SSE_PAGE_ROWS, &err) : NULL;
    db_release(hub.pool, c);
    if (!r) {
        log_json(LOG_WARN, json_pack("{s:s, s:s, s:I, s:s}", "msg",
                                     "sse: cannot read event_log; closing the stream (the client "
                                     "resumes from its Last-Event-ID)",
                                     "request_id", cl->request_id, "pos", (json_int_t)cl->pos,
                                     "error", err.detail));
        vg_error_clear(&err);
        return -1;
    }
    int n = PQntuples(r), i = 0;
    int64_t pos = cl->pos;
    for (; i < n && cl->len < SSE_PAGE_BYTES; i++) {
        pos = strtoll(PQgetvalue(r, i, 0), NULL, 10);
        frame_append(&cl->buf, &cl->len, &cl->cap, pos, PQgetvalue(r, i, 1), PQgetvalue(r, i, 2));
    }
    if (i == n && n < SSE_PAGE_ROWS)
        pos = before - 1; /* every event below the ring has been seen */
    PQclear(r);
    int advanced = pos > cl->pos;
    cl->pos = pos;
    return advanced;
}

/* Moves pos forward, buffering the frames the client wants. Returns 1 when
 * pos advanced, 0 when there is nothing new, -1 on a database error. */
static int client_fill(sse_client *cl)
{
    pthread_rwlock_rdlock(&hub.rw);
    int64_t head = hub.ring_head, first = head - (int64_t)hub.count + 1;
    if (head < 0 || cl->pos >= head) {
        pthread_rwlock_unlock(&hub.rw);
        return 0;
    }
    if (cl->pos + 1 >= first) {
        for (int64_t s = cl->pos + 1; s <= head && cl->len < SSE_FILL_BYTES; s++) {
            const sse_entry *e = &hub.ring[(size_t)(s % (int64_t)hub.cap)];
            if (client_wants(cl, e->type))
                client_append(cl, e->frame, e->len);
            cl->pos = s;
        }
        pthread_rwlock_unlock(&hub.rw);
        cl->live = 1;
        cl->lagging = 0;
        return 1;
    }
    pthread_rwlock_unlock(&hub.rw);
    if (cl->live && !cl->lagging) {
        /* Lossless either way, but an operator should know that clients
         * cannot keep up (a bigger VIGIL_SSE_RING, or slower producers). */
        cl->lagging = 1;
        cl->falls++;
        int64_t now = mono_us();
        if (!cl->lag_logged_us || now - cl->lag_logged_us >= SSE_LAG_LOG_US) {
            log_json(LOG_WARN, json_pack("{s:s, s:s, s:I, s:I, s:i}", "msg",
                                         "sse: client fell behind the ring; continuing from the "
                                         "database",
                                         "request_id", cl->request_id, "pos", (json_int_t)cl->pos,
                                         "ring_first", (json_int_t)first, "times", cl->falls));
            cl->lag_logged_us = now;
            cl->falls = 0;
        }
    }
    return client_fill_db(cl, first);
}

/* Suspends the connection unless something arrived or the hub is stopping.
 * Returns 1 when suspended. */
static int client_suspend(sse_client *cl)
{
    pthread_mutex_lock(&hub.mu);
    int wait = !atomic_load(&hub.stopping) && cl->pos >= hub.head;
    if (wait) {
        cl->next_waiting = hub.waiting;
        hub.waiting = cl;
        MHD_suspend_connection(cl->conn);
    }
    pthread_mutex_unlock(&hub.mu);
    return wait;
}

/* MHD's content reader: whole frames out of the buffer; refill it; with
 * nothing to send, a heartbeat when due, else suspend and return 0 (0
 * without suspending would make MHD call again at once, a busy loop). */
static ssize_t client_read(void *cls, uint64_t offset, char *out, size_t max)
{
    (void)offset;
    sse_client *cl = cls;
    for (;;) {
        if (cl->off < cl->len) {
            size_t n = cl->len - cl->off < max ? cl->len - cl->off : max;
            memcpy(out, cl->buf + cl->off, n);
            cl->off += n;
            if (cl->off == cl->len)
                cl->off = cl->len = 0;
            cl->last_write_us = mono_us();
            return (ssize_t)n;
        }
        if (atomic_load(&hub.stopping))
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (atomic_load(&cl->gone))
            return MHD_CONTENT_READER_END_WITH_ERROR; /* nobody to send to */
        int got = client_fill(cl);
        if (got < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (got > 0)
            continue;
        if (mono_us() - cl->last_write_us >= hub.heartbeat_us) {
            client_append(cl, SSE_KEEPALIVE, sizeof SSE_KEEPALIVE - 1);
            continue;
        }
        if (client_suspend(cl))
            return 0;
    }
}

static void client_free(void *cls)
{
    sse_client *cl = cls;
    free(cl->type);
    free(cl->buf);
    free(cl);
    atomic_fetch_sub(&hub.clients, 1);
}

struct MHD_Response *sse_stream_open(struct MHD_Connection *conn, int64_t after,
                                     const char *type_prefix, const char *request_id, vg_error *err)
{
    if (!hub.started || atomic_load(&hub.stopping))
        return vg_fail(err, VG_E_UNAVAILABLE, NULL, "the event stream is shutting down"), NULL;
    int n = atomic_fetch_add(&hub.clients, 1);
    if (n >= hub.cfg->sse_max_clients) {
        atomic_fetch_sub(&hub.clients, 1);
        log_warn("sse: refusing a stream: %d open (VIGIL_SSE_MAX_CLIENTS)", n);
        return vg_fail(err, VG_E_UNAVAILABLE, NULL,
                       "too many open event streams (%ld); retry later", hub.cfg->sse_max_clients),
               NULL;
    }
    sse_client *cl = calloc(1, sizeof *cl);
    if (!cl || (type_prefix && !(cl->type = strdup(type_prefix))))
        abort();
    cl->conn = conn;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    cl->fd = ci ? ci->connect_fd : -1;
    snprintf(cl->request_id, sizeof cl->request_id, "%s", request_id);
    cl->type_len = type_prefix ? strlen(type_prefix) : 0;
    cl->pos = after;
    cl->last_write_us = mono_us();
    client_append(cl, SSE_RETRY, sizeof SSE_RETRY - 1);
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SSE_BLOCK_SIZE,
                                                                  client_read, cl, client_free);
    if (!resp) {
        client_free(cl);
        return vg_fail(err, VG_E_INTERNAL, NULL, "cannot create the stream response"), NULL;
    }
    /* Idle streams get a heartbeat every VIGIL_SSE_HEARTBEAT seconds, so only
     * a client that stopped reading outlives this. */
    MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
                              (unsigned)(2 * hub.cfg->sse_heartbeat + 30));
    return resp;
}
