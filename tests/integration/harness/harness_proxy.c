/*
 * harness_proxy.c — a fault-injecting TCP proxy inside the test process.
 *
 * Tests point a client (e.g. vigil's VIGIL_NATS_URL) at the proxy's port
 * and switch its mode while traffic flows, to produce the network faults a
 * real deployment sees: slow links, a peer that accepts and then never
 * answers (the half-dead connection behind most timeouts), and connections
 * reset under the client's feet.
 *
 * One listener thread accepts; each accepted connection gets a thread that
 * polls both sockets every POLL_MS and obeys the mode current at that moment,
 * so a mode change reaches existing connections within POLL_MS. Writes use
 * MSG_NOSIGNAL: a peer that vanished must never SIGPIPE the test process.
 */
#include "harness_internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define POLL_MS 50

typedef struct proxy_conn {
    h_proxy *proxy;
    int client_fd;
    int upstream_fd; /* -1 when there is none (accepted while blackholed, or it closed) */
    pthread_t thread;
    struct proxy_conn *next;
} proxy_conn;

struct h_proxy {
    int listen_fd;
    int port;
    int upstream_port;
    atomic_int mode;
    atomic_int delay_ms;
    atomic_int stop;
    atomic_long accepted;
    pthread_t thread;
    pthread_mutex_t mu;
    proxy_conn *conns; /* every connection thread started, joined by h_proxy_stop */
};

/* Closes with an RST instead of a FIN: SO_LINGER with a zero timeout. */
static void close_reset(int fd)
{
    if (fd < 0)
        return;
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

static int connect_upstream(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const char *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

static void *conn_main(void *arg)
{
    proxy_conn *c = arg;
    h_proxy *p = c->proxy;
    char buf[65536];
    while (!atomic_load(&p->stop)) {
        int mode = atomic_load(&p->mode);
        if (mode == H_PROXY_RESET) {
            close_reset(c->client_fd);
            close_reset(c->upstream_fd);
            c->client_fd = c->upstream_fd = -1;
            return NULL;
        }
        if (c->upstream_fd < 0 && mode != H_PROXY_BLACKHOLE)
            break; /* nothing to pass to: let the client reconnect */
        struct pollfd fds[2] = {{.fd = c->client_fd, .events = POLLIN},
                                {.fd = c->upstream_fd, .events = POLLIN}};
        int r = poll(fds, c->upstream_fd >= 0 ? 2 : 1, POLL_MS);
        if (r < 0 && errno != EINTR)
            break;
        for (int i = 0; r > 0 && i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = recv(fds[i].fd, buf, sizeof buf, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0 && i == 1 && mode == H_PROXY_BLACKHOLE) {
                /* The server gave up on a silent client; the client must not
                 * learn of it until the blackhole ends. */
                close(c->upstream_fd);
                c->upstream_fd = -1;
                break;
            }
            if (n <= 0)
                goto end;
            if (mode == H_PROXY_BLACKHOLE)
                continue; /* read and dropped: no forward, no answer */
            int delay = atomic_load(&p->delay_ms);
            if (mode == H_PROXY_DELAY && delay > 0)
                h_sleep_ms(delay);
            if (send_all(i == 0 ? c->upstream_fd : c->client_fd, buf, (size_t)n) != 0)
                goto end;
        }
    }
end:
    if (c->client_fd >= 0)
        close(c->client_fd);
    if (c->upstream_fd >= 0)
        close(c->upstream_fd);
    c->client_fd = c->upstream_fd = -1;
    return NULL;
}

static void *listen_main(void *arg)
{
    h_proxy *p = arg;
    while (!atomic_load(&p->stop)) {
        struct pollfd pfd = {.fd = p->listen_fd, .events = POLLIN};
        if (poll(&pfd, 1, POLL_MS) <= 0)
            continue;
        int fd = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        atomic_fetch_add(&p->accepted, 1);
        int mode = atomic_load(&p->mode);
        if (mode == H_PROXY_RESET) {
            close_reset(fd);
            continue;
        }
        int up = -1;
        if (mode != H_PROXY_BLACKHOLE && (up = connect_upstream(p->upstream_port)) < 0) {
            close(fd); /* upstream down: refuse the way a dead server would, by closing */
            continue;
        }
        proxy_conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            close(up);
            continue;
        }
        c->proxy = p;
        c->client_fd = fd;
        c->upstream_fd = up;
        if (pthread_create(&c->thread, NULL, conn_main, c) != 0) {
            h__err("proxy: cannot start a connection thread");
            close(fd);
            if (up >= 0)
                close(up);
            free(c);
            continue;
        }
        pthread_mutex_lock(&p->mu);
        c->next = p->conns;
        p->conns = c;
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

h_proxy *h_proxy_start(int upstream_port)
{
    h_proxy *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->upstream_port = upstream_port;
    pthread_mutex_init(&p->mu, NULL);
    atomic_store(&p->mode, H_PROXY_PASS);
    p->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (p->listen_fd < 0 ||
        setsockopt(p->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(p->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(p->listen_fd, 64) != 0 ||
        getsockname(p->listen_fd, (struct sockaddr *)&a, &len) != 0) {
        h__err("proxy: cannot listen: %s", strerror(errno));
        goto fail;
    }
    p->port = ntohs(a.sin_port);
    if (pthread_create(&p->thread, NULL, listen_main, p) != 0) {
        h__err("proxy: cannot start the listener thread");
        goto fail;
    }
    h__log("proxy on port %d forwards to %d", p->port, upstream_port);
    return p;
fail:
    if (p->listen_fd >= 0)
        close(p->listen_fd);
    pthread_mutex_destroy(&p->mu);
    free(p);
    return NULL;
}

int h_proxy_port(const h_proxy *p)
{
    return p->port;
}

void h_proxy_set_mode(h_proxy *p, h_proxy_mode mode, int delay_ms)
{
    atomic_store(&p->delay_ms, delay_ms);
    atomic_store(&p->mode, (int)mode);
    h__log("proxy on port %d: mode %d (delay %d ms)", p->port, (int)mode, delay_ms);
}

long h_proxy_accepted(h_proxy *p)
{
    return atomic_load(&p->accepted);
}

void h_proxy_stop(h_proxy *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, 1);
    pthread_join(p->thread, NULL);
    close(p->listen_fd);
    /* The listener is gone, so the list no longer changes. */
    for (proxy_conn *c = p->conns, *next; c; c = next) {
        next = c->next;
        pthread_join(c->thread, NULL);
        if (c->client_fd >= 0)
            close(c->client_fd);
        if (c->upstream_fd >= 0)
            close(c->upstream_fd);
        free(c);
    }
    pthread_mutex_destroy(&p->mu);
    free(p);
}
