/*
 * harness_http.c — HTTP requests to vigil (and nats' monitoring port) with
 * libcurl.
 *
 * Each thread keeps one easy handle, so consecutive requests from a thread
 * reuse their keep-alive connection as a real client would; handles are not
 * shared between threads (libcurl's shared connection cache is not safe for
 * concurrent threads). The handles hang off a global list so that they stay
 * reachable for LeakSanitizer and are freed when their thread exits.
 */
#include "harness_internal.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct handle {
    CURL *curl;
    struct handle *prev, *next;
} handle;

static pthread_key_t handle_key;
static pthread_mutex_t handles_lock = PTHREAD_MUTEX_INITIALIZER;
static handle *handles;

static void handle_free(void *p)
{
    handle *h = p;
    pthread_mutex_lock(&handles_lock);
    if (h->prev)
        h->prev->next = h->next;
    else
        handles = h->next;
    if (h->next)
        h->next->prev = h->prev;
    pthread_mutex_unlock(&handles_lock);
    curl_easy_cleanup(h->curl);
    free(h);
}

void h__curl_init(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
    pthread_key_create(&handle_key, handle_free);
}

/* This thread's easy handle with its options reset (connections kept). */
static CURL *thread_curl(void)
{
    h__init_once();
    handle *h = pthread_getspecific(handle_key);
    if (!h) {
        h = calloc(1, sizeof *h);
        if (!h || !(h->curl = curl_easy_init())) {
            free(h);
            return NULL;
        }
        pthread_mutex_lock(&handles_lock);
        h->next = handles;
        if (handles)
            handles->prev = h;
        handles = h;
        pthread_mutex_unlock(&handles_lock);
        pthread_setspecific(handle_key, h);
    }
    curl_easy_reset(h->curl);
    return h->curl;
}

/* Options every harness request shares. */
static void base_options(CURL *c, const char *url, long timeout_ms)
{
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY, ""); /* ignore http_proxy: loopback only */
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 5000 ? timeout_ms : 5000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
}

typedef struct sink {
    char *data;
    size_t len, cap;
    int failed;
} sink;

static size_t sink_write(char *p, size_t size, size_t n, void *userdata)
{
    sink *s = userdata;
    size_t add = size * n;
    if (s->len + add + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 1024;
        while (cap < s->len + add + 1)
            cap *= 2;
        char *d = realloc(s->data, cap);
        if (!d) {
            s->failed = 1;
            return 0;
        }
        s->data = d;
        s->cap = cap;
    }
    memcpy(s->data + s->len, p, add);
    s->len += add;
    s->data[s->len] = '\0';
    return add;
}

/* Keeps only the header block of the last response (after 1xx or redirects). */
static size_t header_write(char *p, size_t size, size_t n, void *userdata)
{
    sink *s = userdata;
    if (size * n >= 5 && strncmp(p, "HTTP/", 5) == 0)
        s->len = 0;
    return sink_write(p, size, n, userdata);
}

static size_t discard(char *p, size_t size, size_t n, void *userdata)
{
    return size * n;
}

int h__http_status(const char *url, long timeout_ms)
{
    CURL *c = thread_curl();
    if (!c)
        return -1;
    base_options(c, url, timeout_ms);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    long status = -1;
    if (curl_easy_perform(c) != CURLE_OK ||
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
        return -1;
    return (int)status;
}

static int has_header(const char *const *headers, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; headers && headers[i]; i++)
        if (strncasecmp(headers[i], name, n) == 0 && headers[i][n] == ':')
            return 1;
    return 0;
}

int h_http(h_env *env, const char *method, const char *path, const char *key, const char *body,
           long body_len, const char *const *headers, h_resp *out)
{
    memset(out, 0, sizeof *out);
    char url[4096];
    if (strncmp(path, "http://", 7) == 0 ? h__fmt(url, sizeof url, "%s", path)
                                         : h__fmt(url, sizeof url, "%s%s", env->base_url, path))
        return -1;
    CURL *c = thread_curl();
    if (!c) {
        h__err("curl_easy_init failed");
        return -1;
    }
    long timeout = env && env->http_timeout_ms > 0 ? env->http_timeout_ms : 30000;
    base_options(c, url, timeout);

    struct curl_slist *hl = curl_slist_append(NULL, "Expect:"); /* no 100-continue round */
    char line[1024];
    if (key) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", key);
        hl = curl_slist_append(hl, line);
    }
    if (body && !has_header(headers, "Content-Type"))
        hl = curl_slist_append(hl, "Content-Type: application/json");
    for (size_t i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);

    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0 || body)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body || strcmp(method, "POST") == 0) {
        curl_off_t len = !body ? 0 : body_len < 0 ? (curl_off_t)strlen(body) : body_len;
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
    }

    sink bs = {0}, hs = {0};
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &bs);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_write);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &hs);
    CURLcode cc = curl_easy_perform(c);
    curl_slist_free_all(hl);
    if (cc != CURLE_OK || bs.failed || hs.failed) {
        h__err("%s %s: %s", method, url, bs.failed ? "out of memory" : curl_easy_strerror(cc));
        free(bs.data);
        free(hs.data);
        return -1;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    if (!bs.data)
        sink_write("", 1, 0, &bs);
    if (!hs.data)
        sink_write("", 1, 0, &hs);
    out->body = bs.data;
    out->len = bs.len;
    out->headers = hs.data;
    if (out->len > 0)
        out->json = json_loadb(out->body, out->len, JSON_DECODE_ANY, NULL);
    h_resp_header(out, "Content-Type", out->content_type, sizeof out->content_type);
    h_resp_header(out, "X-Request-Id", out->request_id, sizeof out->request_id);
    h_resp_header(out, "Retry-After", out->retry_after, sizeof out->retry_after);
    return 0;
}

int h_resp_header(const h_resp *r, const char *name, char *out, size_t outsz)
{
    size_t n = strlen(name);
    if (outsz)
        out[0] = '\0';
    for (const char *p = r->headers; p && *p;) {
        size_t len = strcspn(p, "\r\n");
        if (len > n && strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1, *end = p + len;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
                end--;
            snprintf(out, outsz, "%.*s", (int)(end - v), v);
            return 0;
        }
        p += len;
        p += strspn(p, "\r\n");
    }
    return -1;
}

void h_resp_free(h_resp *r)
{
    if (!r)
        return;
    free(r->body);
    free(r->headers);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

int h_metric(h_env *env, const char *key, const char *name, double *value)
{
    *value = -1;
    h_resp r;
    if (h_get(env, key, &r, "/metrics") != 0) /* printed */
        return -1;
    if (r.status != 200) {
        h__err("GET /metrics: HTTP %ld", r.status);
        h_resp_free(&r);
        return -1;
    }
    *value = h_metric_in(r.body, name);
    h_resp_free(&r);
    return 0;
}

double h_metric_in(const char *body, const char *name)
{
    char pattern[256];
    snprintf(pattern, sizeof pattern, "\n%s ", name);
    const char *at = strstr(body, pattern);
    return at ? atof(at + strlen(pattern)) : -1;
}

/* Formats the path and sends the request: shared by the verb wrappers. */
static int vrequest(h_env *env, const char *method, const char *key, const char *body, h_resp *out,
                    const char *fmt, va_list ap)
{
    char path[4096];
    int n = vsnprintf(path, sizeof path, fmt, ap);
    if (n < 0 || (size_t)n >= sizeof path) {
        memset(out, 0, sizeof *out);
        h__err("%s: path too long", method);
        return -1;
    }
    return h_http(env, method, path, key, body, -1, NULL, out);
}

int h_get(h_env *env, const char *key, h_resp *out, const char *pathfmt, ...)
{
    va_list ap;
    va_start(ap, pathfmt);
    int rc = vrequest(env, "GET", key, NULL, out, pathfmt, ap);
    va_end(ap);
    return rc;
}

int h_delete(h_env *env, const char *key, h_resp *out, const char *pathfmt, ...)
{
    va_list ap;
    va_start(ap, pathfmt);
    int rc = vrequest(env, "DELETE", key, NULL, out, pathfmt, ap);
    va_end(ap);
    return rc;
}

int h_post(h_env *env, const char *key, const char *body, h_resp *out, const char *pathfmt, ...)
{
    va_list ap;
    va_start(ap, pathfmt);
    int rc = vrequest(env, "POST", key, body, out, pathfmt, ap);
    va_end(ap);
    return rc;
}

int h_put(h_env *env, const char *key, const char *body, h_resp *out, const char *pathfmt, ...)
{
    va_list ap;
    va_start(ap, pathfmt);
    int rc = vrequest(env, "PUT", key, body, out, pathfmt, ap);
    va_end(ap);
    return rc;
}

int h_patch(h_env *env, const char *key, const char *body, h_resp *out, const char *pathfmt, ...)
{
    va_list ap;
    va_start(ap, pathfmt);
    int rc = vrequest(env, "PATCH", key, body, out, pathfmt, ap);
    va_end(ap);
    return rc;
}

int h_customer_create(h_env *env, const char *body, char *id_out, size_t outsz)
{
    h_resp r;
    int rc = h_post(env, env->admin_key, body, &r, "/customers");
    const char *id = json_string_value(json_object_get(r.json, "id"));
    if (rc != 0 || r.status != 201 || !id) {
        fprintf(stderr, "POST /customers: %ld %s\n", r.status, r.body ? r.body : "");
        h_resp_free(&r);
        return -1;
    }
    snprintf(id_out, outsz, "%s", id);
    h_resp_free(&r);
    return 0;
}
