/*
 * cli_status.c — `vigil status`: the event pipeline at a glance, for a
 * person (default) or a script (--json).
 *
 * PostgreSQL is the source of truth and answers most of it in one query:
 * who holds the sequencer and publisher advisory locks (pg_locks joined with
 * pg_stat_activity: backend pid, client address, since when), the outbox
 * backlog and its oldest row's age, event_log's head, the publisher cursor
 * and the lag between them, what each consumer processed, dead letters and
 * pending webhook deliveries. JetStream adds the stream's state and each
 * durable consumer's delivery and ack position. PostgreSQL unreachable is
 * exit 3; NATS unreachable is shown ("stream": {"ok": false, "error"}) and
 * is not fatal: the database still tells most of the story.
 */
#include "cli/cli.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumers/consumer.h"
#include "events/pipeline.h"
#include "events/stream.h"
#include "store/db.h"

#define STATUS_CMD "status"

/* Advisory lock keys (bigint) are split by PostgreSQL into classid (high
 * 32 bits) and objid (low 32 bits), objsubid 1. */
static const char status_sql[] =
    "SELECT jsonb_build_object("
    " 'leaders', (SELECT jsonb_object_agg(k.role, CASE WHEN l.pid IS NULL THEN"
    "   jsonb_build_object('held', false) ELSE jsonb_build_object('held', true, 'pid', l.pid,"
    "   'client_addr', host(a.client_addr), 'application_name', a.application_name,"
    "   'backend_start', vigil_ts(a.backend_start)) END)"
    "  FROM (VALUES ('sequencer', $1::bigint), ('publisher', $2::bigint)) k (role, key)"
    "  LEFT JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
    "   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    "   AND l.classid::text::bigint = k.key >> 32 AND l.objid::text::bigint = k.key & 4294967295"
    "  LEFT JOIN pg_stat_activity a ON a.pid = l.pid),"
    " 'outbox', (SELECT jsonb_build_object('pending', count(*), 'oldest_age_seconds',"
    "   coalesce(round(extract(epoch FROM now() - min(created_at))::numeric, 3), 0))"
    "  FROM outbox),"
    " 'event_log', (SELECT jsonb_build_object('last_seq', coalesce(max(seq), 0),"
    "   'last_recorded_at', vigil_ts(max(recorded_at))) FROM event_log"
    "   WHERE seq = (SELECT max(seq) FROM event_log)),"
    " 'publisher', (SELECT jsonb_build_object('cursor', c.seq, 'updated_at', "
    "vigil_ts(c.updated_at),"
    "   'lag', coalesce((SELECT max(seq) FROM event_log), 0) - c.seq)"
    "  FROM cursors c WHERE c.name = 'publisher'),"
    " 'processed', (SELECT coalesce(jsonb_object_agg(consumer, jsonb_build_object("
    "   'processed', n, 'last_seq', s)), '{}') FROM (SELECT consumer, count(*) AS n,"
    "   max(seq) AS s FROM processed_events GROUP BY consumer) p),"
    " 'dead_letters', (SELECT jsonb_build_object("
    "   'dead', count(*) FILTER (WHERE status = 'dead'),"
    "   'redriven', count(*) FILTER (WHERE status = 'redriven'),"
    "   'by_consumer', coalesce(jsonb_object_agg(consumer, n) FILTER (WHERE status = 'dead'), "
    "'{}'))"
    "  FROM (SELECT consumer, status, count(*) AS n FROM dead_letters GROUP BY 1, 2) d),"
    " 'webhook_deliveries_pending', (SELECT count(*) FROM webhook_deliveries"
    "   WHERE status IN ('pending', 'failed')))::text";

/* The stream and its durable consumers, into out["stream"] and each of
 * out["consumers"][i]["jetstream"]. Never fails: errors are reported in
 * the JSON. */
static void nats_part(const vg_config *cfg, json_t *out)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    vg_error err = {0};
    json_t *stream = json_object();
    json_object_set_new(out, "stream", stream);
    json_object_set_new(stream, "name", json_string(cfg->stream));
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = NATS_CONNECTION_CLOSED;
    if (stream_connect(cfg, "vigil-status", 0, NULL, NULL, &nc, &js, &err) != VG_OK) {
        json_object_set_new(stream, "ok", json_false());
        json_object_set_new(stream, "error", json_string(err.detail));
        vg_error_clear(&err);
    } else if ((s = js_GetStreamInfo(&si, js, cfg->stream, NULL, &jerr)) != NATS_OK) {
        char why[1200];
        snprintf(why, sizeof why, "stream %s: %s", cfg->stream,
                 s == NATS_NOT_FOUND ? "does not exist" : natsStatus_GetText(s));
        json_object_set_new(stream, "ok", json_false());
        json_object_set_new(stream, "error", json_string(why));
    } else {
        json_object_set_new(stream, "ok", json_true());
        json_object_set_new(stream, "messages", json_integer((json_int_t)si->State.Msgs));
        json_object_set_new(stream, "bytes", json_integer((json_int_t)si->State.Bytes));
        json_object_set_new(stream, "first_seq", json_integer((json_int_t)si->State.FirstSeq));
        json_object_set_new(stream, "last_seq", json_integer((json_int_t)si->State.LastSeq));
        json_object_set_new(stream, "consumers", json_integer((json_int_t)si->State.Consumers));
        jsStreamInfo_Destroy(si);
    }
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(out, "consumers"), i, c)
    {
        const char *durable = json_string_value(json_object_get(c, "durable"));
        jsConsumerInfo *ci = NULL;
        json_t *j = json_object();
        json_object_set_new(c, "jetstream", j);
        if (s != NATS_OK) {
            json_object_set_new(j, "ok", json_false());
            json_object_set_new(j, "error",
                                json_string(nc ? "stream unavailable" : "NATS unavailable"));
            continue;
        }
        natsStatus cs = js_GetConsumerInfo(&ci, js, cfg->stream, durable, NULL, &jerr);
        if (cs != NATS_OK) {
            json_object_set_new(j, "ok", json_false());
            json_object_set_new(j, "error",
                                json_string(cs == NATS_NOT_FOUND ? "durable consumer does not exist"
                                                                 : natsStatus_GetText(cs)));
            continue;
        }
        json_object_set_new(j, "ok", json_true());
        json_object_set_new(j, "delivered_stream_seq",
                            json_integer((json_int_t)ci->Delivered.Stream));
        json_object_set_new(j, "ack_floor_stream_seq",
                            json_integer((json_int_t)ci->AckFloor.Stream));
        json_object_set_new(j, "ack_pending", json_integer((json_int_t)ci->NumAckPending));
        json_object_set_new(j, "pending", json_integer((json_int_t)ci->NumPending));
        json_object_set_new(j, "redelivered", json_integer((json_int_t)ci->NumRedelivered));
        json_object_set_new(j, "waiting", json_integer((json_int_t)ci->NumWaiting));
        jsConsumerInfo_Destroy(ci);
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

static json_int_t num(const json_t *o, const char *path1, const char *path2)
{
    const json_t *v = json_object_get(o, path1);
    if (path2)
        v = json_object_get(v, path2);
    return json_integer_value(v);
}

static void print_leader(const char *role, const json_t *l)
{
    if (!json_is_true(json_object_get(l, "held"))) {
        printf("  %-10s NONE (no process holds the lock: events are not %s)\n", role,
               strcmp(role, "sequencer") == 0 ? "being sequenced" : "being published");
        return;
    }
    const char *addr = json_string_value(json_object_get(l, "client_addr"));
    printf("  %-10s backend pid %lld, %s, connected since %s\n", role,
           (long long)num(l, "pid", NULL), addr ? addr : "local socket",
           json_string_value(json_object_get(l, "backend_start")));
}

static void print_human(const json_t *o)
{
    const json_t *st = json_object_get(o, "stream");
    printf("leaders\n");
    print_leader("sequencer", json_object_get(json_object_get(o, "leaders"), "sequencer"));
    print_leader("publisher", json_object_get(json_object_get(o, "leaders"), "publisher"));
    printf("outbox      %lld pending, oldest %.1f s\n", (long long)num(o, "outbox", "pending"),
           json_number_value(json_object_get(json_object_get(o, "outbox"), "oldest_age_seconds")));
    printf("event_log   last seq %lld\n", (long long)num(o, "event_log", "last_seq"));
    printf("publisher   cursor %lld, lag %lld events\n", (long long)num(o, "publisher", "cursor"),
           (long long)num(o, "publisher", "lag"));
    if (json_is_true(json_object_get(st, "ok")))
        printf("stream      %s: %lld messages, seq %lld..%lld, %lld consumers\n",
               json_string_value(json_object_get(st, "name")), (long long)num(st, "messages", NULL),
               (long long)num(st, "first_seq", NULL), (long long)num(st, "last_seq", NULL),
               (long long)num(st, "consumers", NULL));
    else
        printf("stream      %s: UNAVAILABLE (%s)\n", json_string_value(json_object_get(st, "name")),
               json_string_value(json_object_get(st, "error")));
    printf("consumers\n");
    size_t i;
    const json_t *c;
    json_array_foreach(json_object_get(o, "consumers"), i, c)
    {
        const json_t *j = json_object_get(c, "jetstream");
        printf("  %-10s processed %lld (last seq %lld)",
               json_string_value(json_object_get(c, "name")), (long long)num(c, "processed", NULL),
               (long long)num(c, "last_seq", NULL));
        if (json_is_true(json_object_get(j, "ok")))
            printf(", delivered stream seq %lld, acked to %lld, %lld ack pending, %lld not yet "
                   "delivered, %lld redelivered\n",
                   (long long)num(j, "delivered_stream_seq", NULL),
                   (long long)num(j, "ack_floor_stream_seq", NULL),
                   (long long)num(j, "ack_pending", NULL), (long long)num(j, "pending", NULL),
                   (long long)num(j, "redelivered", NULL));
        else
            printf(", JetStream: %s\n", json_string_value(json_object_get(j, "error")));
    }
    printf("dead letters %lld dead, %lld redriven\n", (long long)num(o, "dead_letters", "dead"),
           (long long)num(o, "dead_letters", "redriven"));
    printf("webhooks    %lld deliveries pending\n",
           (long long)num(o, "webhook_deliveries_pending", NULL));
}

int cli_status(const vg_config *cfg, int argc, char **argv)
{
    int as_json = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            as_json = 1;
        } else {
            fprintf(stderr,
                    "vigil status: unexpected argument '%s'\nusage: vigil status [--json]\n",
                    argv[i]);
            return CLI_USAGE;
        }
    }
    vg_error err = {0};
    PGconn *db = db_connect(cfg->database_url, (int)cfg->db_connect_timeout, &err);
    char *text = NULL;
    char k1[24], k2[24];
    snprintf(k1, sizeof k1, "%lld", LOCK_SEQUENCER);
    snprintf(k2, sizeof k2, "%lld", LOCK_PUBLISHER);
    const char *p[] = {k1, k2};
    if (!db || db_json(db, status_sql, 2, p, "status", &text, &err) != VG_OK) {
        PQfinish(db);
        int rc = cli_fail(STATUS_CMD, &err);
        vg_error_clear(&err);
        return rc;
    }
    PQfinish(db);
    json_t *o = json_loads(text, 0, NULL);
    free(text);
    if (!o) {
        fprintf(stderr, "vigil status: the database returned unreadable JSON\n");
        return CLI_FAILED;
    }
    /* One entry per built-in consumer, processed or not. */
    json_t *list = json_array(), *processed = json_object_get(o, "processed");
    for (int i = 0; consumer_registry[i]; i++) {
        const char *name = consumer_registry[i]->name;
        char durable[128];
        snprintf(durable, sizeof durable, "vigil-%s", name);
        json_t *pr = json_object_get(processed, name);
        json_array_append_new(list, json_pack("{s:s, s:s, s:I, s:I}", "name", name, "durable",
                                              durable, "processed", num(pr, "processed", NULL),
                                              "last_seq", num(pr, "last_seq", NULL)));
    }
    json_object_set_new(o, "consumers", list);
    json_object_del(o, "processed");
    nats_part(cfg, o);
    if (as_json) {
        json_dumpf(o, stdout, JSON_INDENT(2));
        printf("\n");
    } else {
        print_human(o);
    }
    json_decref(o);
    return CLI_OK;
}
