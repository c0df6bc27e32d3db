/*
 * metrics.c — a small fixed table of HTTP request series under one mutex.
 * The table is bounded (routes × methods × statuses seen); a series that
 * does not fit is counted under an overflow series instead of growing.
 */
#include "util/metrics.h"

#include <pthread.h>
#include <string.h>

#define MAX_SERIES 256
#define MAX_TIMERS 64

static const double buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,   0.25,   0.5,   1,    2.5,   5};
#define NBUCKETS (sizeof buckets / sizeof buckets[0])

typedef struct {
    char method[8], route[64];
    int status;
    unsigned long long count;
} series;

typedef struct {
    char method[8], route[64];
    unsigned long long bucket[NBUCKETS], count;
    double sum;
} timer;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static series req[MAX_SERIES];
static int nreq;
static timer tim[MAX_TIMERS];
static int ntim;
static unsigned long long overflow;

static int same(const char *a_method, const char *a_route, const char *method, const char *route)
{
    return strcmp(a_method, method) == 0 && strcmp(a_route, route) == 0;
}

void metrics_http_observe(const char *method, const char *route, int status, double seconds)
{
    char m[8], r[64];
    snprintf(m, sizeof m, "%s", method);
    snprintf(r, sizeof r, "%s", route && *route ? route : "unmatched");
    pthread_mutex_lock(&mu);
    int i;
    for (i = 0; i < nreq; i++)
        if (req[i].status == status && same(req[i].method, req[i].route, m, r))
            break;
    if (i == nreq && nreq < MAX_SERIES) {
        memcpy(req[i].method, m, sizeof m);
        memcpy(req[i].route, r, sizeof r);
        req[i].status = status;
        nreq++;
    }
    if (i < nreq)
        req[i].count++;
    else
        overflow++;
    for (i = 0; i < ntim; i++)
        if (same(tim[i].method, tim[i].route, m, r))
            break;
    if (i == ntim && ntim < MAX_TIMERS) {
        memcpy(tim[i].method, m, sizeof m);
        memcpy(tim[i].route, r, sizeof r);
        ntim++;
    }
    if (i < ntim) {
        for (size_t b = 0; b < NBUCKETS; b++)
            if (seconds <= buckets[b])
                tim[i].bucket[b]++;
        tim[i].count++;
        tim[i].sum += seconds;
    }
    pthread_mutex_unlock(&mu);
}

void metrics_http_render(FILE *f)
{
    pthread_mutex_lock(&mu);
    fprintf(f, "# HELP vigil_http_requests_total HTTP requests by method, route and status.\n"
               "# TYPE vigil_http_requests_total counter\n");
    for (int i = 0; i < nreq; i++)
        fprintf(f, "vigil_http_requests_total{method=\"%s\",route=\"%s\",status=\"%d\"} %llu\n",
                req[i].method, req[i].route, req[i].status, req[i].count);
    fprintf(f,
            "# HELP vigil_http_requests_unlabelled_total Requests beyond the series limit.\n"
            "# TYPE vigil_http_requests_unlabelled_total counter\n"
            "vigil_http_requests_unlabelled_total %llu\n",
            overflow);
    fprintf(f, "# HELP vigil_http_request_duration_seconds Time from first byte to reply.\n"
               "# TYPE vigil_http_request_duration_seconds histogram\n");
    for (int i = 0; i < ntim; i++) {
        for (size_t b = 0; b < NBUCKETS; b++)
            fprintf(f,
                    "vigil_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\","
                    "le=\"%g\"} %llu\n",
                    tim[i].method, tim[i].route, buckets[b], tim[i].bucket[b]);
        fprintf(f,
                "vigil_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\",le=\"+Inf\"}"
                " %llu\n"
                "vigil_http_request_duration_seconds_sum{method=\"%s\",route=\"%s\"} %.6f\n"
                "vigil_http_request_duration_seconds_count{method=\"%s\",route=\"%s\"} %llu\n",
                tim[i].method, tim[i].route, tim[i].count, tim[i].method, tim[i].route, tim[i].sum,
                tim[i].method, tim[i].route, tim[i].count);
    }
    pthread_mutex_unlock(&mu);
}
