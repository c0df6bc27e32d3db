/*
 * api_metrics.c — GET /metrics in the Prometheus text format.
 *
 * Database gauges (outbox backlog, sequenced and published seqs, lag) are
 * read at scrape time, so every instance reports the same truth whichever
 * one leads; process counters (publish errors, reconnects, leadership,
 * HTTP) are this instance's.
 */
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/api_ingest.h"
#include "api/api_limits.h"
#include "consumers/consumer.h"
#include "consumers/webhooks.h"
#include "events/pipeline.h"
#include "events/sse.h"
#include "store/store_keys.h"
#include "util/log.h"
#include "util/metrics.h"

static void gauge(FILE *f, const char *name, const char *help, const char *type, double v)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

/* Per consumer: this process's counters, and dead letters from the database
 * (the same for every instance). */
static void consumer_metrics(FILE *f, PGconn *db)
{
    static const struct {
        const char *name, *help, *type;
        size_t offset;
    } series[] = {
        {"vigil_consumer_processed_total", "Events applied.", "counter",
         offsetof(consumer_stats, processed)},
        {"vigil_consumer_duplicates_total", "Redelivered events found already applied.", "counter",
         offsetof(consumer_stats, duplicates)},
        {"vigil_consumer_failures_total", "Failed deliveries that will be retried.", "counter",
         offsetof(consumer_stats, failures)},
        {"vigil_consumer_redeliveries_total", "Deliveries after the first.", "counter",
         offsetof(consumer_stats, redeliveries)},
        {"vigil_consumer_processing_seconds_total", "Time spent applying events.", "counter",
         offsetof(consumer_stats, busy_us)},
        {"vigil_consumer_pending", "Events JetStream has not yet delivered to the consumer.",
         "gauge", offsetof(consumer_stats, pending)},
        {"vigil_consumer_batches_total",
         "Transactions that applied a batch of events (consumers that batch; processed / "
         "batches = events per transaction).",
         "counter", offsetof(consumer_stats, batches)},
    };
    for (size_t k = 0; k < sizeof series / sizeof series[0]; k++) {
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", series[k].name, series[k].help, series[k].name,
                series[k].type);
        for (int i = 0; consumer_registry[i]; i++) {
            consumer_stats *s = consumer_stats_of(consumer_registry[i]);
            long long v = atomic_load((atomic_llong *)((char *)s + series[k].offset));
            double value = series[k].offset == offsetof(consumer_stats, busy_us) ? v / 1e6 : v;
            fprintf(f, "%s{consumer=\"%s\"} %.17g\n", series[k].name, consumer_registry[i]->name,
                    value);
        }
    }
    PGresult *r = db_exec(db,
                          "SELECT consumer, count(*) FROM dead_letters WHERE status = 'dead'"
                          " GROUP BY consumer",
                          0, NULL, NULL);
    fprintf(f, "# HELP vigil_dead_letters Events a consumer gave up on, not yet redriven.\n"
               "# TYPE vigil_dead_letters gauge\n");
    for (int i = 0; consumer_registry[i]; i++) {
        long long n = 0;
        for (int row = 0; r && row < PQntuples(r); row++)
            if (strcmp(PQgetvalue(r, row, 0), consumer_registry[i]->name) == 0)
                n = atoll(PQgetvalue(r, row, 1));
        fprintf(f, "vigil_dead_letters{consumer=\"%s\"} %lld\n", consumer_registry[i]->name, n);
    }
    PQclear(r);
}

/* Webhook deliveries: the backlog from the database (every instance reports
 * the same), this process's attempts by outcome. */
static void webhook_metrics(FILE *f, PGconn *db)
{
    vg_error err = {0};
    PGresult *r = db_exec(db,
                          "SELECT count(*), coalesce(extract(epoch FROM now() - min(d.created_at)),"
                          " 0), (SELECT count(*) FROM webhook_deliveries WHERE status = 'dead')"
                          " FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id"
                          " WHERE d.status IN ('pending', 'failed') AND w.active",
                          0, NULL, &err);
    if (r) {
        gauge(f, "vigil_webhook_deliveries_pending",
              "Webhook deliveries not yet delivered (active webhooks).", "gauge",
              atof(PQgetvalue(r, 0, 0)));
        gauge(f, "vigil_webhook_oldest_pending_age_seconds",
              "Age of the oldest undelivered webhook delivery (active webhooks).", "gauge",
              atof(PQgetvalue(r, 0, 1)));
        gauge(f, "vigil_webhook_deliveries_dead",
              "Webhook deliveries given up after the horizon (dead letters).", "gauge",
              atof(PQgetvalue(r, 0, 2)));
        PQclear(r);
    } else {
        log_warn("metrics: webhook gauges unavailable: %s", err.detail);
        vg_error_clear(&err);
    }
    webhook_stats *w = webhooks_stats();
    fprintf(f,
            "# HELP vigil_webhook_attempts_total Webhook POSTs finished, by recorded outcome.\n"
            "# TYPE vigil_webhook_attempts_total counter\n"
            "vigil_webhook_attempts_total{outcome=\"delivered\"} %lld\n"
            "vigil_webhook_attempts_total{outcome=\"retry\"} %lld\n"
            "vigil_webhook_attempts_total{outcome=\"dead\"} %lld\n"
            "vigil_webhook_attempts_total{outcome=\"stale\"} %lld\n",
            (long long)atomic_load(&w->delivered), (long long)atomic_load(&w->retried),
            (long long)atomic_load(&w->dead), (long long)atomic_load(&w->stale));
    gauge(f, "vigil_webhook_in_flight", "Webhook POSTs open now.", "gauge",
          (double)atomic_load(&w->in_flight));
    gauge(f, "vigil_webhook_worker_errors_total", "Database errors of the webhook worker.",
          "counter", (double)atomic_load(&w->errors));
}

void api_metrics_get(api_ctx *ctx)
{
    vg_error err = {0};
    PGconn *db = api_db(ctx, &err);
    PGresult *r = db ? db_exec(db,
                               "SELECT (SELECT count(*) FROM outbox),"
                               " coalesce(extract(epoch FROM now() - (SELECT min(created_at)"
                               "  FROM outbox)), 0),"
                               " (SELECT coalesce(max(seq), 0) FROM event_log),"
                               " (SELECT seq FROM cursors WHERE name = 'publisher'),"
                               " coalesce(extract(epoch FROM now() - (SELECT e.recorded_at"
                               "  FROM event_log e, cursors c WHERE c.name = 'publisher'"
                               "  AND e.seq = c.seq + 1)), 0)",
                               0, NULL, &err)
                     : NULL;
    if (!r) {
        api_reply_error(ctx, &err);
        vg_error_clear(&err);
        return;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        abort();
    double last = atof(PQgetvalue(r, 0, 2)), published = atof(PQgetvalue(r, 0, 3));
    gauge(f, "vigil_outbox_pending", "Events committed but not yet sequenced.", "gauge",
          atof(PQgetvalue(r, 0, 0)));
    gauge(f, "vigil_outbox_oldest_age_seconds", "Age of the oldest unsequenced event.", "gauge",
          atof(PQgetvalue(r, 0, 1)));
    gauge(f, "vigil_event_log_last_seq", "Highest sequenced event.", "gauge", last);
    gauge(f, "vigil_published_seq", "Every event up to this seq is acknowledged by JetStream.",
          "gauge", published);
    gauge(f, "vigil_publish_lag_events", "Sequenced events not yet acknowledged by JetStream.",
          "gauge", last - published);
    gauge(f, "vigil_publish_lag_seconds", "Age of the oldest event not yet published.", "gauge",
          atof(PQgetvalue(r, 0, 4)));
    PQclear(r);

    pipeline *p = pipeline_current();
    if (p) {
        gauge(f, "vigil_sequencer_leader", "1 when this instance runs the sequencer.", "gauge",
              atomic_load(&p->seq_role.is_leader));
        gauge(f, "vigil_publisher_leader", "1 when this instance runs the publisher.", "gauge",
              atomic_load(&p->pub_role.is_leader));
        gauge(f, "vigil_nats_connected", "1 when the publisher is connected to NATS.", "gauge",
              atomic_load(&p->pub.nats_connected));
        gauge(f, "vigil_stream_ok", "1 when the stream exists with the configured settings.",
              "gauge", atomic_load(&p->pub.stream_ok));
        gauge(f, "vigil_publish_errors_total", "Publish windows not fully acknowledged.", "counter",
              (double)atomic_load(&p->pub.publish_errors));
        fprintf(f,
                "# HELP vigil_publish_windows_total Windows published, by how JetStream "
                "acknowledged them: window (one ack for the whole window, chained "
                "expectations) or each (an ack per event: VIGIL_PUBLISH_ACK_EACH=1, and after a "
                "failed window).\n# TYPE vigil_publish_windows_total counter\n"
                "vigil_publish_windows_total{acks=\"window\"} %lld\n"
                "vigil_publish_windows_total{acks=\"each\"} %lld\n",
                atomic_load(&p->pub.windows_chained), atomic_load(&p->pub.windows_each));
        gauge(f, "vigil_nats_reconnects_total", "Reconnections to NATS.", "counter",
              (double)atomic_load(&p->pub.reconnects));
        gauge(f, "vigil_events_republished_total",
              "Events published again after JetStream was found to have lost them.", "counter",
              (double)atomic_load(&p->pub.republished));
        gauge(f, "vigil_stream_missing_head_events",
              "Events missing below the stream's oldest message (run vigil reconcile).", "gauge",
              (double)atomic_load(&p->pub.missing_head));
        gauge(f, "vigil_sequencer_errors_total", "Sequencer database errors.", "counter",
              (double)atomic_load(&p->seq.errors));
        gauge(f, "vigil_sequencer_strays_total",
              "Outbox rows found below the sequencer's watermark (should stay 0).", "counter",
              (double)atomic_load(&p->seq.strays));
        gauge(f, "vigil_sequencer_calls_total",
              "Sequencer rounds (one vigil_sequence() call and commit each).", "counter",
              (double)atomic_load(&p->seq.calls));
        gauge(f, "vigil_sequencer_empty_calls_total",
              "Sequencer rounds that found nothing to sequence.", "counter",
              (double)atomic_load(&p->seq.empty));
        gauge(f, "vigil_sequencer_outbox_low",
              "The sequencer's outbox watermark: every outbox id below it is sequenced.", "gauge",
              (double)atomic_load(&p->seq.outbox_low));
    }
    long long key_hits, key_misses;
    keys_cache_stats(&key_hits, &key_misses);
    gauge(f, "vigil_api_key_cache_hits_total",
          "POST /transactions authenticated from the key cache (the key is checked again in the "
          "write's transaction).",
          "counter", (double)key_hits);
    gauge(f, "vigil_api_key_cache_misses_total",
          "POST /transactions whose key was looked up in the database (then cached).", "counter",
          (double)key_misses);
    consumer_metrics(f, db);
    webhook_metrics(f, db);
    gauge(f, "vigil_sse_clients", "Open /events/stream connections.", "gauge",
          (double)sse_client_count());
    metrics_http_render(f);
    api_limits_render(f);
    api_ingest_render(f);
    fclose(f);
    api_reply_text(ctx, 200, text);
    ctx->reply_type = "text/plain; version=0.0.4";
    free(text);
}
