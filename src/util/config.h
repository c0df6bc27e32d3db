/*
 * config.h — Vigil's configuration, from environment variables only.
 *
 * One table (VG_CONFIG_TABLE) declares every variable, its default and what
 * it means; `vigil --help` prints it and the README mirrors it.
 */
#ifndef VIGIL_UTIL_CONFIG_H
#define VIGIL_UTIL_CONFIG_H

#include <stddef.h>

#include "util/status.h"

/*  field               env name                      default                         help */
#define VG_CONFIG_STRINGS(X)                                                                       \
    X(database_url, "VIGIL_DATABASE_URL", "postgresql:///vigil",                                   \
      "libpq connection URI of the Vigil database, as a vigil_service member")                     \
    X(migrate_database_url, "VIGIL_MIGRATE_DATABASE_URL", "",                                      \
      "libpq URI of the schema owner, used only by `vigil migrate` (empty: VIGIL_DATABASE_URL)")   \
    X(nats_url, "VIGIL_NATS_URL", "nats://127.0.0.1:4222", "NATS server URL (JetStream enabled)")  \
    X(nats_user, "VIGIL_NATS_USER", "", "NATS user name (with VIGIL_NATS_PASSWORD_FILE)")          \
    X(nats_password_file, "VIGIL_NATS_PASSWORD_FILE", "",                                          \
      "file holding the NATS password (first line)")                                               \
    X(nats_token_file, "VIGIL_NATS_TOKEN_FILE", "", "file holding a NATS token (first line)")      \
    X(nats_creds, "VIGIL_NATS_CREDS", "", "NATS credentials file (user JWT and nkey seed)")        \
    X(nats_nkey, "VIGIL_NATS_NKEY", "", "NATS nkey public key (U...), with VIGIL_NATS_NKEY_SEED")  \
    X(nats_nkey_seed, "VIGIL_NATS_NKEY_SEED", "", "file holding the nkey seed (SU...)")            \
    X(nats_tls_ca, "VIGIL_NATS_TLS_CA", "",                                                        \
      "CA certificate(s) to verify the NATS server with; set: TLS is required")                    \
    X(nats_tls_cert, "VIGIL_NATS_TLS_CERT", "", "client certificate chain for NATS (PEM)")         \
    X(nats_tls_key, "VIGIL_NATS_TLS_KEY", "", "private key of VIGIL_NATS_TLS_CERT (PEM)")          \
    X(http_addr, "VIGIL_HTTP_ADDR", "127.0.0.1:8000", "address:port the HTTP API listens on")      \
    X(log_level, "VIGIL_LOG_LEVEL", "info", "debug | info | warn | error")                         \
    X(roles, "VIGIL_ROLES", "api,sequencer,publisher,consumers",                                   \
      "what `vigil serve` runs: any of api, sequencer, publisher, consumers")                      \
    X(stream, "VIGIL_STREAM", "AML_EVENTS",                                                        \
      "JetStream stream that receives every event (subjects aml.>)")                               \
    X(event_pii, "VIGIL_EVENT_PII", "full",                                                        \
      "full | minimal: minimal leaves email and date_of_birth out of customer events")

#define VG_CONFIG_INTS(X)                                                                          \
    X(http_threads, "VIGIL_HTTP_THREADS", 32, 1, 256,                                              \
      "HTTP worker threads (each holds one DB connection)")                                        \
    X(max_body_bytes, "VIGIL_MAX_BODY_BYTES", 16777216, 1024, 1073741824,                          \
      "largest accepted request body")                                                             \
    X(max_batch, "VIGIL_MAX_BATCH", 10000, 1, 100000,                                              \
      "most transactions in one POST /transactions")                                               \
    X(max_json_depth, "VIGIL_MAX_JSON_DEPTH", 16, 2, 1000, "deepest accepted JSON nesting")        \
    X(ingest_flushes, "VIGIL_INGEST_FLUSHES", 1, 0, 256,                                           \
      "concurrent commits that single-transaction POSTs share (0: each request commits alone)")    \
    X(ingest_sequence, "VIGIL_INGEST_SEQUENCE", 1, 0, 1,                                           \
      "1: the commit of single-transaction POSTs (and of batches of up to 100) also sequences "    \
      "their events when the sequencer leads in this process; 0: the sequencer does it after the " \
      "commit")                                                                                    \
    X(page_limit_max, "VIGIL_PAGE_LIMIT_MAX", 500, 1, 10000, "largest ?limit= on list endpoints")  \
    X(risk_medium, "VIGIL_RISK_MEDIUM", 30, 1, 100,                                                \
      "risk score at or above which a customer is medium risk")                                    \
    X(risk_high, "VIGIL_RISK_HIGH", 60, 1, 100,                                                    \
      "risk score at or above which a customer is high risk")                                      \
    X(db_connect_timeout, "VIGIL_DB_CONNECT_TIMEOUT", 3, 1, 60,                                    \
      "seconds to wait when (re)connecting to PostgreSQL")                                         \
    X(stream_duplicate_window, "VIGIL_STREAM_DUPLICATE_WINDOW", 120, 1, 86400,                     \
      "JetStream duplicate window in seconds (Nats-Msg-Id = event id)")                            \
    X(stream_replicas, "VIGIL_STREAM_REPLICAS", 1, 1, 5,                                           \
      "replicas of the stream (JetStream cluster)")                                                \
    X(publish_window, "VIGIL_PUBLISH_WINDOW", 4000, 1, 100000,                                     \
      "events in flight to JetStream before waiting for their acks")                               \
    X(publish_ack_timeout_ms, "VIGIL_PUBLISH_ACK_TIMEOUT_MS", 5000, 100, 600000,                   \
      "how long the publisher waits for JetStream acks")                                           \
    X(publish_ack_each, "VIGIL_PUBLISH_ACK_EACH", 0, 0, 1,                                         \
      "1: JetStream acknowledges every event; 0: one ack confirms a whole window (chained)")       \
    X(sequencer_batch, "VIGIL_SEQUENCER_BATCH", 1000, 1, 100000,                                   \
      "outbox rows sequenced per transaction")                                                     \
    X(sequencer_poll_ms, "VIGIL_SEQUENCER_POLL_MS", 250, 10, 600000,                               \
      "how often the sequencer looks for events nobody woke it for (writes by plain SQL)")         \
    X(leader_retry_ms, "VIGIL_LEADER_RETRY_MS", 1000, 50, 60000,                                   \
      "how often a standby instance tries to take over the sequencer/publisher")                   \
    X(sse_heartbeat, "VIGIL_SSE_HEARTBEAT", 15, 1, 300,                                            \
      "seconds between keep-alive comments on an idle /events/stream")                             \
    X(sse_ring, "VIGIL_SSE_RING", 8192, 16, 1048576,                                               \
      "recent events /events/stream serves from memory (older ones come from the database)")       \
    X(sse_max_clients, "VIGIL_SSE_MAX_CLIENTS", 1000, 1, 100000,                                   \
      "most open /events/stream connections (beyond: 503)")                                        \
    X(sse_max_per_key, "VIGIL_SSE_MAX_PER_KEY", 32, 1, 100000,                                     \
      "most open /events/stream connections of one API key (beyond: 429)")                         \
    X(rate_limit, "VIGIL_RATE_LIMIT", 1000, 0, 1000000,                                            \
      "requests per second one admin, analyst or auditor key may make (0: no limit; beyond: 429)") \
    X(rate_burst, "VIGIL_RATE_BURST", 2000, 1, 10000000,                                           \
      "most requests such a key may make at once (token bucket size)")                             \
    X(rate_limit_ingest, "VIGIL_RATE_LIMIT_INGEST", 10000, 0, 1000000,                             \
      "requests per second one ingest key may make (0: no limit)")                                 \
    X(rate_burst_ingest, "VIGIL_RATE_BURST_INGEST", 20000, 1, 10000000,                            \
      "token bucket size of an ingest key")                                                        \
    X(http_timeout, "VIGIL_HTTP_TIMEOUT", 30, 1, 3600,                                             \
      "seconds a request (headers and body) may take to arrive, and an idle connection to live")   \
    X(http_max_per_ip, "VIGIL_HTTP_MAX_PER_IP", 0, 0, 100000,                                      \
      "most open connections from one client address (0: no limit; keep 0 behind a proxy)")        \
    X(consumer_ack_wait_ms, "VIGIL_CONSUMER_ACK_WAIT_MS", 30000, 1000, 3600000,                    \
      "JetStream AckWait of the built-in consumers")                                               \
    X(consumer_max_deliver, "VIGIL_CONSUMER_MAX_DELIVER", 5, 1, 1000,                              \
      "deliveries before an event becomes a dead letter")                                          \
    X(consumer_backoff_ms, "VIGIL_CONSUMER_BACKOFF_MS", 1000, 10, 3600000,                         \
      "first redelivery delay after a failure; doubles each attempt (NakWithDelay)")               \
    X(consumer_max_ack_pending, "VIGIL_CONSUMER_MAX_ACK_PENDING", 1000, 1, 100000,                 \
      "JetStream MaxAckPending of the built-in consumers")                                         \
    X(webhook_timeout_ms, "VIGIL_WEBHOOK_TIMEOUT_MS", 10000, 100, 600000,                          \
      "total time one webhook POST may take (connecting: at most 5 s of it)")                      \
    X(webhook_backoff_ms, "VIGIL_WEBHOOK_BACKOFF_MS", 1000, 10, 3600000,                           \
      "first webhook retry delay; doubles with each failed attempt")                               \
    X(webhook_horizon_s, "VIGIL_WEBHOOK_HORIZON_S", 86400, 1, 2592000,                             \
      "how long a webhook delivery is retried before it is dead (and a dead letter)")              \
    X(shutdown_grace, "VIGIL_SHUTDOWN_GRACE", 10, 0, 600,                                          \
      "seconds in-flight requests get to finish on SIGTERM")

typedef struct vg_config {
#define VG_CFG_S(field, env, def, help)         char field[1024];
#define VG_CFG_I(field, env, def, lo, hi, help) long field;
    VG_CONFIG_STRINGS(VG_CFG_S) VG_CONFIG_INTS(VG_CFG_I)
#undef VG_CFG_S
#undef VG_CFG_I
} vg_config;

/* Fills `cfg` with defaults overridden by the environment. An integer out of
 * range or not a number is VG_E_CONFIG naming the variable. */
vg_status config_load(vg_config *cfg, vg_error *err);

/* Prints the table of variables, defaults and meaning (for --help). */
void config_print_help(void *stream);

#endif
