/*
 * harness_sse.c — a Server-Sent Events client for tests of /events/stream.
 *
 * A background thread runs one libcurl transfer and parses the stream as the
 * HTML spec's EventSource does (fields id/event/data, blank line dispatches,
 * ':' comments, the last id persists); the test thread pops parsed events
 * from a queue with a timeout. Closing shuts the socket down so the reader
 * thread returns at once instead of waiting for the next byte.
 */
#include "harness_internal.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct queued {
    h_sse_event ev;
    struct queued *next;
} queued;

struct h_sse {
    CURL *curl;
    struct curl_slist *headers;
    pthread_t thread;
    int thread_started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    atomic_int stop;
    int sock; /* the transfer's socket or -1; guarded by lock */
    long status;
    int headers_done, ended;
    queued *head, *tail;

    /* Parser state, used only by the reader thread. */
    char *line;
    size_t line_len, line_cap;
    char last_id[128], event[128];
    char *data;
    size_t data_len, data_cap;
};

static int grow(char **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    char *n = realloc(*p, c);
    if (!n)
        return -1;
    *p = n;
    *cap = c;
    return 0;
}

/* Blank line: hand the pending event to the queue (if it has data). */
static void dispatch(h_sse *s)
{
    if (s->data_len == 0) {
        s->event[0] = '\0';
        return;
    }
    queued *q = calloc(1, sizeof *q);
    if (!q)
        return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    q->ev.at = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
    s->data[--s->data_len] = '\0'; /* drop the last data line's '\n' */
    q->ev.data = s->data;
    q->ev.json = json_loadb(s->data, s->data_len, JSON_DECODE_ANY, NULL);
    snprintf(q->ev.id, sizeof q->ev.id, "%s", s->last_id);
    snprintf(q->ev.event, sizeof q->ev.event, "%s", s->event);
    s->data = NULL;
    s->data_len = s->data_cap = 0;
    s->event[0] = '\0';
    pthread_mutex_lock(&s->lock);
    if (s->tail)
        s->tail->next = q;
    else
        s->head = q;
    s->tail = q;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void field(h_sse *s, const char *line)
{
    if (line[0] == '\0') {
        dispatch(s);
        return;
    }
    if (line[0] == ':')
        return;
    size_t n = strcspn(line, ":");
    const char *value = line[n] ? line + n + 1 : "";
    if (*value == ' ')
        value++;
    if (n == 4 && strncmp(line, "data", 4) == 0) {
        size_t len = strlen(value);
        if (grow(&s->data, &s->data_cap, s->data_len + len + 2) == 0) {
            memcpy(s->data + s->data_len, value, len);
            s->data_len += len;
            s->data[s->data_len++] = '\n';
            s->data[s->data_len] = '\0';
        }
    } else if (n == 5 && strncmp(line, "event", 5) == 0) {
        snprintf(s->event, sizeof s->event, "%s", value);
    } else if (n == 2 && strncmp(line, "id", 2) == 0) {
        snprintf(s->last_id, sizeof s->last_id, "%s", value);
    }
}

static size_t on_data(char *p, size_t size, size_t n, void *userdata)
{
    h_sse *s = userdata;
    size_t len = size * n;
    if (atomic_load(&s->stop))
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = p[i];
        if (ch == '\n') {
            if (s->line_len && s->line[s->line_len - 1] == '\r')
                s->line_len--;
            if (grow(&s->line, &s->line_cap, s->line_len + 1) != 0)
                return 0;
            s->line[s->line_len] = '\0';
            field(s, s->line);
            s->line_len = 0;
        } else {
            if (grow(&s->line, &s->line_cap, s->line_len + 2) != 0)
                return 0;
            s->line[s->line_len++] = ch;
        }
    }
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *userdata)
{
    h_sse *s = userdata;
    size_t len = size * n;
    /* The blank line ends a header block; 1xx blocks are followed by more. */
    if (len <= 2 && (p[0] == '\r' || p[0] == '\n')) {
        long status = 0;
        curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200) {
            pthread_mutex_lock(&s->lock);
            s->status = status;
            s->headers_done = 1;
            pthread_cond_broadcast(&s->cond);
            pthread_mutex_unlock(&s->lock);
        }
    }
    return len;
}

static int on_progress(void *userdata, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    h_sse *s = userdata;
    return atomic_load(&s->stop) ? 1 : 0;
}

static curl_socket_t on_open_socket(void *userdata, curlsocktype purpose,
                                    struct curl_sockaddr *addr)
{
    h_sse *s = userdata;
    int fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    pthread_mutex_lock(&s->lock);
    s->sock = fd;
    pthread_mutex_unlock(&s->lock);
    return fd < 0 ? CURL_SOCKET_BAD : fd;
}

/* Under the lock, so h_sse_close never shuts down a reused descriptor. */
static int on_close_socket(void *userdata, curl_socket_t fd)
{
    h_sse *s = userdata;
    pthread_mutex_lock(&s->lock);
    if (s->sock == fd)
        s->sock = -1;
    int rc = close(fd);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static void *reader(void *arg)
{
    h_sse *s = arg;
    CURLcode cc = curl_easy_perform(s->curl);
    if (cc != CURLE_OK && !atomic_load(&s->stop))
        h__log("SSE stream ended: %s", curl_easy_strerror(cc));
    pthread_mutex_lock(&s->lock);
    if (!s->headers_done)
        curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &s->status);
    s->ended = 1;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static void deadline_in(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

h_sse *h_sse_open(h_env *env, const char *key, const char *path, const char *last_event_id,
                  long *status_out)
{
    h__init_once();
    if (status_out)
        *status_out = 0;
    h_sse *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->sock = -1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);

    char url[4096], line[1024];
    if (h__fmt(url, sizeof url, "%s%s", env->base_url, path) != 0 || !(s->curl = curl_easy_init()))
        goto fail;
    s->headers = curl_slist_append(NULL, "Accept: text/event-stream");
    if (key) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", key);
        s->headers = curl_slist_append(s->headers, line);
    }
    if (last_event_id) {
        snprintf(line, sizeof line, "Last-Event-ID: %s", last_event_id);
        s->headers = curl_slist_append(s->headers, line);
    }
    CURL *c = s->curl;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, s->headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, s);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, s);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, s);
    curl_easy_setopt(c, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(c, CURLOPT_CLOSESOCKETDATA, s);
    if (pthread_create(&s->thread, NULL, reader, s) != 0)
        goto fail;
    s->thread_started = 1;

    struct timespec ts;
    deadline_in(&ts, 10000);
    pthread_mutex_lock(&s->lock);
    while (!s->headers_done && !s->ended)
        if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) == ETIMEDOUT)
            break;
    long status = s->status;
    int ok = s->headers_done && status == 200;
    pthread_mutex_unlock(&s->lock);
    if (status_out)
        *status_out = status;
    if (ok)
        return s;
    h__err("SSE GET %s: %s %ld", path, status ? "status" : "no response headers", status);
fail:
    h_sse_close(s);
    return NULL;
}

int h_sse_next(h_sse *s, h_sse_event *ev, int timeout_ms)
{
    memset(ev, 0, sizeof *ev);
    struct timespec ts;
    deadline_in(&ts, timeout_ms);
    pthread_mutex_lock(&s->lock);
    while (!s->head && !s->ended)
        if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) == ETIMEDOUT)
            break;
    queued *q = s->head;
    if (q) {
        s->head = q->next;
        if (!s->head)
            s->tail = NULL;
    }
    int ended = s->ended;
    pthread_mutex_unlock(&s->lock);
    if (!q)
        return ended ? -1 : 0;
    *ev = q->ev;
    free(q);
    return 1;
}

void h_sse_event_free(h_sse_event *ev)
{
    if (!ev)
        return;
    free(ev->data);
    json_decref(ev->json);
    memset(ev, 0, sizeof *ev);
}

void h_sse_close(h_sse *s)
{
    if (!s)
        return;
    atomic_store(&s->stop, 1);
    pthread_mutex_lock(&s->lock);
    if (s->sock >= 0)
        shutdown(s->sock, SHUT_RDWR); /* wakes the reader now; curl closes the fd */
    pthread_mutex_unlock(&s->lock);
    if (s->thread_started)
        pthread_join(s->thread, NULL);
    for (queued *q = s->head, *next; q; q = next) {
        next = q->next;
        h_sse_event_free(&q->ev);
        free(q);
    }
    curl_easy_cleanup(s->curl);
    curl_slist_free_all(s->headers);
    free(s->line);
    free(s->data);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
