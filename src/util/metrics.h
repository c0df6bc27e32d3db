/*
 * metrics.h — in-process counters for the Prometheus /metrics page.
 *
 * HTTP requests are counted by (method, route pattern, status) and timed in
 * a histogram per (method, route). Route patterns, not raw paths, keep the
 * label set bounded whatever clients send.
 */
#ifndef VIGIL_UTIL_METRICS_H
#define VIGIL_UTIL_METRICS_H

#include <stdio.h>

/* Records one finished request. `route` is the matched pattern or "" for
 * unmatched paths (reported as "unmatched"). Thread-safe. */
void metrics_http_observe(const char *method, const char *route, int status, double seconds);

/* Appends the HTTP metrics in Prometheus text format to `f`. */
void metrics_http_render(FILE *f);

#endif
