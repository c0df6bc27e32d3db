/*
 * api_limits.h — abuse limits of the HTTP API: per-key request rate, open
 * event streams per key, and a deadline for receiving each request (against
 * slow-loris clients that trickle headers to hold connections forever).
 *
 * Process-wide state, started and stopped by api_server_run. All calls are
 * thread-safe (MHD worker threads).
 */
#ifndef VIGIL_API_LIMITS_H
#define VIGIL_API_LIMITS_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <microhttpd.h>

#include "store/store_keys.h"
#include "util/config.h"
#include "util/status.h"

/* Reads the limits from `cfg` (borrowed until api_limits_stop) and starts
 * the request-deadline watchdog thread. VG_E_INTERNAL when it cannot. */
vg_status api_limits_start(const vg_config *cfg, vg_error *err);

/* Stops the watchdog and frees every bucket. Call after MHD_stop_daemon. */
void api_limits_stop(void);

/* Takes one token from the key's bucket (VIGIL_RATE_LIMIT/BURST, or the
 * _INGEST pair for ingest keys). 1 when the request may run; 0 when the key
 * is over its rate, with *retry_after = whole seconds until a token is
 * available (at least 1). */
int api_limits_take(const api_key_info *key, int *retry_after);

/* Reserves one of the key's VIGIL_SSE_MAX_PER_KEY event streams: 1 on
 * success (release it with api_limits_sse_release when the stream ends),
 * 0 when the key already has that many open. */
int api_limits_sse_acquire(const api_key_info *key);
void api_limits_sse_release(const api_key_info *key);

/* MHD_OPTION_NOTIFY_CONNECTION callback: tracks each connection for the
 * request deadline. */
void api_limits_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                              enum MHD_ConnectionNotificationCode toe);

/* The request on `conn` has fully arrived (headers and body): the deadline
 * no longer applies (a long response, an event stream, is not slow input). */
void api_limits_request_received(struct MHD_Connection *conn);
/* The response on `conn` is done: the deadline starts again for the next
 * request on a kept-alive connection. */
void api_limits_request_done(struct MHD_Connection *conn);

/* Prometheus lines: requests refused by rate, streams refused per key,
 * connections cut for arriving too slowly. */
void api_limits_render(FILE *f);

#endif
