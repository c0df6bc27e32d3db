/*
 * sse.h — the Server-Sent Events hub behind GET /events/stream.
 *
 * One hub per process. Its thread holds its own PostgreSQL connection,
 * LISTENs on 'vigil_events' (polling every second as a fallback), reads each
 * new event_log row once into a ring of the most recent VIGIL_SSE_RING
 * events, preformatted as SSE frames, and wakes the streams waiting for them.
 *
 * A stream is a libmicrohttpd callback response, not a thread: its reader
 * copies frames from the ring, or, when the client is further behind than
 * the ring reaches, pages them from event_log through the HTTP pool; with
 * nothing to send it suspends its connection until the hub resumes it (new
 * events, a heartbeat due, or shutdown). Memory per stream is bounded by one
 * fill (about 64 KiB from the ring, 256 KiB plus one event from the
 * database), however slow the client: a reader only runs when the socket can
 * take more, and a client that falls out of the ring continues from the
 * database without a gap or a duplicate, the path a reconnect with
 * Last-Event-ID would take.
 *
 * Life cycle, driven by api_server_run: sse_hub_start before the daemon
 * starts (the daemon needs MHD_ALLOW_SUSPEND_RESUME), sse_hub_shutdown when
 * it stops accepting, sse_hub_free after MHD_stop_daemon.
 */
#ifndef VIGIL_EVENTS_SSE_H
#define VIGIL_EVENTS_SSE_H

#include <stdint.h>

#include "store/db.h"
#include "util/config.h"
#include "util/status.h"

struct MHD_Connection;
struct MHD_Response;

/* Starts the hub thread. `cfg` (VIGIL_SSE_*, database URL) and `pool` (used
 * by lagging streams) are borrowed and must outlive sse_hub_free(). The
 * database may be down: the hub retries every second and logs the outage.
 * VG_E_INTERNAL when the thread cannot be started or the hub already runs. */
vg_status sse_hub_start(const vg_config *cfg, db_pool *pool, vg_error *err);

/* Ends every stream: refuses new ones, stops and joins the hub thread, then
 * resumes every suspended connection so that its reader flushes what it has
 * buffered (whole frames only) and returns end-of-stream. Idempotent; a
 * no-op when the hub was never started. */
void sse_hub_shutdown(void);

/* Frees the ring. Only after MHD_stop_daemon: no reader may run any more. */
void sse_hub_free(void);

/* Number of open streams (for metrics). */
int sse_client_count(void);

/* A streaming response for `conn` (called from its access handler) that
 * starts after seq `after` and, when `type_prefix` is not NULL, sends only
 * events whose type starts with it (ids stay the real seqs). It begins with
 * "retry: 2000". Copies `type_prefix` and `request_id` (for log lines).
 * The caller queues the response and destroys its reference; the stream's
 * state is freed with the response. NULL with err: VG_E_UNAVAILABLE beyond
 * VIGIL_SSE_MAX_CLIENTS or while shutting down, VG_E_INTERNAL otherwise. */
struct MHD_Response *sse_stream_open(struct MHD_Connection *conn, int64_t after,
                                     const char *type_prefix, const char *request_id,
                                     vg_error *err);

#endif
