/*
 * stream.h — Vigil's JetStream stream: connecting, creating or checking it,
 * and reading where its tail is.
 *
 * Each message carries: subject = event type, Nats-Msg-Id = event id (so
 * JetStream drops re-sends inside the duplicate window), header Vigil-Seq =
 * the event's seq, body = the CloudEvent. Messages that `vigil reconcile`
 * appends to fill a hole also carry Vigil-Repair: 1.
 */
#ifndef VIGIL_EVENTS_STREAM_H
#define VIGIL_EVENTS_STREAM_H

#include <nats/nats.h>
#include <stdint.h>

#include "util/config.h"
#include "util/status.h"

#define STREAM_SUBJECTS "aml.>"
#define HDR_SEQ         "Vigil-Seq"
#define HDR_MSG_ID      "Nats-Msg-Id"
#define HDR_REPAIR      "Vigil-Repair"
/* JetStream's own headers, set by hand on messages published without a
 * reply subject (libnats sets them only through jsPubOptions). */
#define HDR_EXPECT_LAST_SEQ "Nats-Expected-Last-Sequence"
#define HDR_EXPECT_LAST_ID  "Nats-Expected-Last-Msg-Id"

/* Connection-state callbacks (may be NULL); `closure` is passed back. */
typedef struct stream_callbacks {
    void (*disconnected)(void *closure);
    void (*reconnected)(void *closure);
    void *closure;
} stream_callbacks;

/* Connects to cfg->nats_url with the configured authentication (user and
 * password, token, creds file or nkey) and TLS (CA, client certificate),
 * reconnecting forever in the background. A setting that cannot be applied
 * (unreadable file, bad certificate) is VG_E_CONFIG naming it. With
 * `retry_first` the first connect also retries in the background
 * (NATS_NOT_YET_CONNECTED is success). On success *nc and *js are set;
 * `js_opts` (may be NULL) configures async publishing. */
vg_status stream_connect(const vg_config *cfg, const char *name, int retry_first,
                         const stream_callbacks *cb, jsOptions *js_opts, natsConnection **nc,
                         jsCtx **js, vg_error *err);

/* The connection's last error as the server or TLS layer put it
 * ("Authorization Violation", a certificate failure), or "" when none;
 * returns its status (NATS_OK when none). */
natsStatus stream_conn_error(natsConnection *nc, char *out, size_t outsz);

/* One connection attempt with the configured authentication and TLS, at
 * most 1 s, closed at once: tells a publisher whose background reconnects
 * only say "no server available" why NATS refuses it. Returns 1 when NATS
 * answered and refused (authentication, permissions, TLS), with the reason in
 * why; 0 otherwise (connected, down, unreachable), with why "". */
int stream_probe(const vg_config *cfg, char *why, size_t whysz);

/* Creates the stream when missing; when it exists, checks that its subjects,
 * storage, duplicate window and replicas are what the configuration says.
 * A mismatch is VG_E_CONFIG naming the difference: never changed silently. */
vg_status stream_ensure(jsCtx *js, const vg_config *cfg, vg_error *err);

/* The stream's last sequence and the event seq of its newest message that is
 * not a repair (0 when the stream holds none). */
vg_status stream_tail(jsCtx *js, const vg_config *cfg, uint64_t *last_stream_seq,
                      int64_t *tail_event_seq, vg_error *err);

/* The lowest stream sequence still stored (LastSeq + 1 when the stream is
 * empty, e.g. after a purge). */
vg_status stream_first_seq(jsCtx *js, const vg_config *cfg, uint64_t *first, vg_error *err);

/* The event seq of the stream's message at stream sequence `first` (its
 * oldest, from stream_first_seq; 0 when empty). A
 * value above 1 means older events are missing from the stream (purged):
 * only `vigil reconcile` can put them back, as repairs. */
vg_status stream_head(jsCtx *js, const vg_config *cfg, uint64_t first, int64_t *head_event_seq,
                      vg_error *err);

/* Builds the message for one event (caller destroys it). */
natsStatus stream_event_msg(natsMsg **msg, const char *type, const char *seq, const char *payload,
                            int payload_len, int repair);

#endif
