/*
 * wake.c — tells the sequencer that new events are committed.
 *
 * Until 0009 the outbox trigger sent NOTIFY inside every business
 * transaction; PostgreSQL serialises the commits of notifying transactions
 * (a database-wide lock held through the WAL flush), so ingest could not
 * group-commit. Now whoever commits events calls wake_kick() afterwards:
 *
 *  - when this process leads the sequencer, the kick is an eventfd the
 *    sequencer polls next to its connection: no database round trip at all;
 *  - otherwise a notifier thread sends `NOTIFY vigil_outbox` on its own
 *    connection, outside any business transaction, once per burst of kicks
 *    (the eventfd counter coalesces them), which reaches a sequencer leading
 *    in another `vigil serve`.
 *
 * Losing a kick only delays: the sequencer polls every poll_ms. A failing
 * notifier connection is logged once per state change and retried.
 */
#include "events/wake.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "store/db.h"
#include "util/log.h"

static int local_fd = -1;  /* polled by this process's sequencer */
static int notify_fd = -1; /* read by the notifier thread */
static atomic_int local_leader;
static atomic_llong local_low;
static atomic_int notifier_stop;
static pthread_t notifier;
static int notifier_running;
static const char *notifier_url;
static int notifier_timeout;

static void kick_fd(int fd)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is saturated: a wake-up is pending anyway. */
    while (write(fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

/* Reads (and so clears) an eventfd; returns 1 if it was signalled. */
static int drain_fd(int fd)
{
    uint64_t n;
    ssize_t r;
    while ((r = read(fd, &n, sizeof n)) < 0 && errno == EINTR)
        ;
    return r == (ssize_t)sizeof n;
}

static void *notifier_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "wake notify");
    PGconn *c = NULL;
    int failing = 0;
    while (!atomic_load(&notifier_stop)) {
        struct pollfd pfd = {.fd = notify_fd, .events = POLLIN};
        if (poll(&pfd, 1, 200) <= 0 || !drain_fd(notify_fd))
            continue;
        vg_error err = {0};
        if (!c)
            c = db_connect_as(notifier_url, notifier_timeout, "vigil wake", &err);
        if (c && db_run(c, "NOTIFY vigil_outbox", 0, NULL, &err) == VG_OK) {
            if (failing)
                log_info("wake: notifier connection back");
            failing = 0;
            continue;
        }
        /* The sequencer's poll still finds the events: log and go on. */
        if (!failing)
            log_warn("wake: could not notify the sequencer (%s); it polls meanwhile", err.detail);
        failing = 1;
        vg_error_clear(&err);
        if (c) {
            PQfinish(c);
            c = NULL;
        }
    }
    if (c)
        PQfinish(c);
    return NULL;
}

vg_status wake_init(const char *db_url, int connect_timeout, vg_error *err)
{
    local_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (local_fd < 0 || notify_fd < 0)
        return vg_fail(err, VG_E_INTERNAL, NULL, "eventfd: %s", strerror(errno));
    notifier_url = db_url;
    notifier_timeout = connect_timeout;
    atomic_store(&notifier_stop, 0);
    if (pthread_create(&notifier, NULL, notifier_main, NULL) != 0)
        return vg_fail(err, VG_E_INTERNAL, NULL, "could not start the notifier thread");
    notifier_running = 1;
    return VG_OK;
}

void wake_shutdown(void)
{
    if (notifier_running) {
        atomic_store(&notifier_stop, 1);
        pthread_join(notifier, NULL);
        notifier_running = 0;
    }
    if (local_fd >= 0)
        close(local_fd);
    if (notify_fd >= 0)
        close(notify_fd);
    local_fd = notify_fd = -1;
}

void wake_kick(void)
{
    if (atomic_load(&local_leader) && local_fd >= 0)
        kick_fd(local_fd);
    else if (notify_fd >= 0)
        kick_fd(notify_fd);
}

void wake_set_local_leader(int leading)
{
    atomic_store(&local_low, 0);
    atomic_store(&local_leader, leading);
}

void wake_set_local_low(long long low)
{
    atomic_store(&local_low, low);
}

int wake_local_low(long long *low)
{
    *low = atomic_load(&local_low);
    return atomic_load(&local_leader);
}

int wake_local_fd(void)
{
    return local_fd;
}

int wake_local_drain(void)
{
    return local_fd >= 0 && drain_fd(local_fd);
}
