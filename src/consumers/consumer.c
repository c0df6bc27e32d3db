/*
 * consumer.c — the consumer runner: pull, apply exactly once, then ack.
 *
 * Order of operations for one message, and why:
 *   1. BEGIN; INSERT processed_events (consumer, event id) ON CONFLICT DO
 *      NOTHING. No row inserted → applied before (a redelivery whose ack was
 *      lost): ROLLBACK, ack, done.
 *   2. Run the handler in the same transaction; COMMIT.
 *   3. Ack. If the process dies between 2 and 3 the event is redelivered
 *      and step 1 absorbs it: the effect happened exactly once.
 * A handler error rolls back and NAKs with an exponential delay (a plain
 * NAK would burn every delivery within milliseconds); on the last allowed
 * delivery the event is stored as a dead letter and Term'd so JetStream
 * stops redelivering it, while later events keep flowing.
 *
 * A consumer whose work is one statement (apply_stmt) takes the messages
 * that have already arrived, up to CONSUMER_BATCH, and applies them in one
 * statement and one commit, then acks each: the same steps for many events
 * at once. One with a batch handler (handle_many) does the same in one
 * transaction of a few statements: the batch's processed_events rows, the
 * handler with the new events, COMMIT. If a batch fails it is applied again
 * one event at a time through the steps above, so a bad event is retried,
 * NAK'd and dead-lettered alone.
 */
#include "consumers/consumer.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "domain/timeparse.h"
#include "domain/validate.h"
#include "events/leader.h"
#include "events/stream.h"
#include "events/wake.h"
#include "store/db.h"
#include "util/log.h"

static consumer_stats stats[16];

consumer_stats *consumer_stats_of(const consumer_def *def)
{
    for (int i = 0; consumer_registry[i] && i < 16; i++)
        if (consumer_registry[i] == def)
            return &stats[i];
    return &stats[15];
}

const consumer_def *consumer_find(const char *name)
{
    for (int i = 0; consumer_registry[i]; i++)
        if (strcmp(consumer_registry[i]->name, name) == 0)
            return consumer_registry[i];
    return NULL;
}

/* The batch's event ids, seqs and (when narr is 3) types as array
 * literals, in order, in arr[0..narr); the caller frees them. */
static void batch_arrays(const consumer_event *evs, int n, db_array *arr, int narr)
{
    for (int k = 0; k < narr; k++)
        db_array_init(&arr[k]);
    for (int i = 0; i < n; i++) {
        char seq[32];
        snprintf(seq, sizeof seq, "%lld", evs[i].seq);
        db_array_add(&arr[0], evs[i].id);
        db_array_add(&arr[1], seq);
        if (narr > 2)
            db_array_add(&arr[2], evs[i].type ? evs[i].type : "");
    }
}

/* Applies evs[0..n) with def->apply_stmt in one statement: duplicate[i] = 1
 * for an event processed before. */
static vg_status apply_many(PGconn *c, const consumer_def *def, const consumer_event *evs, int n,
                            int *duplicate, vg_error *err)
{
    db_array arr[3];
    batch_arrays(evs, n, arr, 3);
    const char *p[] = {def->name, arr[0].text, arr[1].text, arr[2].text};
    PGresult *r = db_exec_stmt(c, def->apply_stmt, p, err);
    for (int k = 0; k < 3; k++)
        db_array_free(&arr[k]);
    if (!r)
        return err->code;
    /* "{t,f,t}": one flag per event, in order. */
    const char *v = PQgetvalue(r, 0, 0);
    int got = 0, fresh = 0;
    for (const char *q = v; *q; q++)
        if (*q == 't' || *q == 'f') {
            if (got < n)
                duplicate[got] = *q == 'f';
            fresh += *q == 't';
            got++;
        }
    PQclear(r);
    if (got != n)
        return vg_fail(err, VG_E_INTERNAL, NULL, "%s: %d results for %d events", def->name, got, n);
    if (fresh && def->emits_events)
        wake_kick();
    return VG_OK;
}

/* Applies evs[0..n) with def->handle_many in one transaction: the
 * processed_events rows of all of them in one statement, the handler with
 * those not processed before, one commit. duplicate[i] as apply_many. */
static vg_status handle_many_tx(PGconn *c, const vg_config *cfg, const consumer_def *def,
                                const consumer_event *evs, int n, int *duplicate, vg_error *err)
{
    vg_status st = db_begin(c, err);
    if (st != VG_OK)
        return st;
    db_array arr[2];
    batch_arrays(evs, n, arr, 2);
    for (int i = 0; i < n; i++)
        duplicate[i] = 1;
    /* An event twice in one batch: the second row conflicts with the first
     * and is skipped, so only the first comes back. */
    static db_stmt seen_many =
        DB_STMT("INSERT INTO processed_events (consumer, event_id, seq)"
                " SELECT $1, u.id, u.seq FROM unnest($2::uuid[], $3::bigint[]) AS u (id, seq)"
                " ON CONFLICT DO NOTHING RETURNING event_id::text",
                3);
    const char *p[] = {def->name, arr[0].text, arr[1].text};
    PGresult *r = db_exec_stmt(c, &seen_many, p, err);
    for (int k = 0; k < 2; k++)
        db_array_free(&arr[k]);
    if (!r) {
        st = err->code;
        goto fail;
    }
    consumer_event *fresh = malloc((size_t)n * sizeof *fresh);
    if (!fresh)
        abort();
    int nf = 0;
    for (int row = 0; row < PQntuples(r); row++) {
        int i = 0;
        while (i < n && !(duplicate[i] && strcasecmp(evs[i].id, PQgetvalue(r, row, 0)) == 0))
            i++;
        if (i == n) {
            st = vg_fail(err, VG_E_INTERNAL, NULL,
                         "%s: processed_events returned %s, not in the batch", def->name,
                         PQgetvalue(r, row, 0));
            break;
        }
        duplicate[i] = 0;
    }
    PQclear(r);
    for (int i = 0; i < n && st == VG_OK; i++)
        if (!duplicate[i])
            fresh[nf++] = evs[i];
    if (st == VG_OK && nf)
        st = def->handle_many(c, cfg, fresh, nf, err);
    free(fresh);
    if (st == VG_OK)
        st = db_commit(c, err);
    if (st != VG_OK)
        goto fail;
    if (nf && def->emits_events)
        wake_kick(); /* the handler may have written events */
    return VG_OK;
fail:
    db_rollback(c);
    return st;
}

vg_status consumer_apply(PGconn *c, const vg_config *cfg, const consumer_def *def,
                         const consumer_event *ev, int *duplicate, vg_error *err)
{
    char seq[32];
    snprintf(seq, sizeof seq, "%lld", ev->seq);
    const char *p[] = {def->name, ev->id, seq};
    *duplicate = 0;
    if (def->apply_stmt)
        return apply_many(c, def, ev, 1, duplicate, err);
    vg_status st = db_begin(c, err);
    if (st != VG_OK)
        return st;
    static db_stmt seen = DB_STMT("INSERT INTO processed_events (consumer, event_id, seq)"
                                  " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                                  3);
    PGresult *r = db_exec_stmt(c, &seen, p, err);
    if (!r) {
        st = err->code;
        goto fail;
    }
    *duplicate = atoi(PQcmdTuples(r)) == 0;
    PQclear(r);
    if (*duplicate) {
        db_rollback(c);
        return VG_OK;
    }
    if ((st = def->handler(c, cfg, ev, err)) != VG_OK)
        goto fail;
    if ((st = db_commit(c, err)) != VG_OK)
        goto fail;
    if (def->emits_events)
        wake_kick(); /* the handler may have written events */
    return VG_OK;
fail:
    db_rollback(c);
    return st;
}

/* Stores a dead letter (idempotent per consumer and event). */
static vg_status dead_letter(PGconn *c, const consumer_def *def, const consumer_event *ev,
                             const char *payload, int deliveries, const char *why, vg_error *err)
{
    char seq[32], n[16];
    snprintf(seq, sizeof seq, "%lld", ev->seq);
    snprintf(n, sizeof n, "%d", deliveries);
    const char *p[] = {def->name, ev->id, seq, ev->type, payload, n, why};
    return db_run(
        c,
        "INSERT INTO dead_letters (consumer, event_id, seq, event_type, payload,"
        " deliveries, last_error) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (consumer, event_id) DO UPDATE SET deliveries = EXCLUDED.deliveries,"
        " last_error = EXCLUDED.last_error, status = 'dead', created_at = now()",
        7, p, err);
}

static int64_t backoff_ms(const vg_config *cfg, uint64_t delivered)
{
    int64_t d = cfg->consumer_backoff_ms;
    for (uint64_t i = 1; i < delivered && d < 3600000; i++)
        d *= 2;
    return d;
}

/* The Vigil-Seq header's value, or 0 unless it is all digits and in range:
 * atoll would read "12abc" as 12, and its result on overflow is undefined. */
static long long seq_header(const char *v)
{
    if (!v || !isdigit((unsigned char)v[0]))
        return 0;
    char *end;
    errno = 0;
    long long seq = strtoll(v, &end, 10);
    return errno || *end ? 0 : seq;
}

vg_status consumer_event_from_headers(const char *msg_id, const char *seq_hdr, const char *subject,
                                      consumer_event *ev, vg_error *err)
{
    *ev = (consumer_event){.id = msg_id, .seq = seq_header(seq_hdr), .type = subject};
    if (!msg_id || !uuid_parse(msg_id, NULL) || ev->seq <= 0 || !subject || !subject[0])
        return vg_fail(err, VG_E_MALFORMED, NULL, "no event id and seq in the headers");
    return VG_OK;
}

vg_status consumer_event_decode(const char *body, size_t len, const char *seq_hdr,
                                const char *subject, json_t **event, consumer_event *ev,
                                vg_error *err)
{
    json_error_t jerr;
    json_t *j = json_loadb(body, len, 0, &jerr);
    long long hdr_seq = seq_header(seq_hdr);
    *ev = (consumer_event){
        .id = json_string_value(json_object_get(j, "id")),
        .seq = seq_hdr ? hdr_seq : json_integer_value(json_object_get(j, "seq")),
        .type = subject,
        .event = j,
        .data = json_object_get(j, "data"),
    };
    *event = j;
    if (!j || !ev->id || !uuid_parse(ev->id, NULL) || ev->seq <= 0)
        return vg_fail(err, VG_E_MALFORMED, NULL, "not a Vigil CloudEvent (no id or seq)");
    return VG_OK;
}

/* Decodes message `m` (body, Vigil-Seq header, subject) as
 * consumer_event_decode does, or with headers_only from its headers alone
 * when they suffice (*event = NULL then); *delivered = how many times
 * JetStream has delivered it (1 if it does not say). Keeps the consumer's
 * pending gauge. */
static vg_status decode_msg(consumer_stats *s, natsMsg *m, int headers_only, uint64_t *delivered,
                            json_t **event, consumer_event *ev, vg_error *err)
{
    jsMsgMetaData *meta = NULL;
    *delivered = 1;
    if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
        *delivered = meta->NumDelivered;
        atomic_store(&s->pending, (long long)meta->NumPending);
        jsMsgMetaData_Destroy(meta);
    }
    const char *seq_hdr = NULL, *msg_id = NULL;
    natsMsgHeader_Get(m, HDR_SEQ, &seq_hdr);
    *event = NULL;
    if (headers_only && natsMsgHeader_Get(m, HDR_MSG_ID, &msg_id) == NATS_OK &&
        consumer_event_from_headers(msg_id, seq_hdr, natsMsg_GetSubject(m), ev, NULL) == VG_OK)
        return VG_OK;
    return consumer_event_decode(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), seq_hdr,
                                 natsMsg_GetSubject(m), event, ev, err);
}

/* Fault injection for tests (VIGIL_FAULT=consumer_crash_before_ack): die
 * after the effect committed and before the ack, so JetStream redelivers an
 * event that was already applied. */
static void crash_if_asked(const consumer_def *def, int crash_before_ack)
{
    if (!crash_before_ack)
        return;
    log_warn("consumer %s: fault injection: exiting after commit, before ack", def->name);
    _exit(98);
}

/* Handles one message; returns 0 when done with it, -1 to hold and retry
 * (database unavailable). crash_before_ack: fault injection, see
 * consumer_run. */
static int handle(PGconn *c, const vg_config *cfg, const consumer_def *def, consumer_stats *s,
                  natsMsg *m, int crash_before_ack)
{
    uint64_t delivered;
    json_t *event = NULL;
    consumer_event ev;
    vg_error err = {0};
    int dup = 0;
    int64_t t0 = now_epoch_us();
    vg_status st = decode_msg(s, m, 0, &delivered, &event, &ev, &err);
    if (delivered > 1)
        atomic_fetch_add(&s->redeliveries, 1);
    if (st == VG_OK)
        st = consumer_apply(c, cfg, def, &ev, &dup, &err);
    atomic_fetch_add(&s->busy_us, now_epoch_us() - t0);
    int rc = 0;
    if (st == VG_OK) {
        atomic_fetch_add(dup ? &s->duplicates : &s->processed, 1);
        if (def->apply_stmt || def->handle_many)
            atomic_fetch_add(&s->batches, 1);
        crash_if_asked(def, crash_before_ack);
        natsMsg_Ack(m, NULL);
    } else if (st == VG_E_UNAVAILABLE || PQstatus(c) != CONNECTION_OK) {
        natsMsg_InProgress(m, NULL); /* keep it; not the event's fault */
        rc = -1;
    } else if (delivered >= (uint64_t)cfg->consumer_max_deliver) {
        char *payload = event ? json_dumps(event, JSON_COMPACT) : NULL;
        vg_error derr = {0};
        if (ev.id && dead_letter(c, def, &ev, payload ? payload : "{}", (int)delivered, err.detail,
                                 &derr) == VG_OK) {
            atomic_fetch_add(&s->dead_letters, 1);
            log_error("consumer %s: event seq %lld (%s) dead-lettered after %llu deliveries: %s",
                      def->name, ev.seq, ev.id, (unsigned long long)delivered, err.detail);
            natsMsg_Term(m, NULL);
        } else {
            log_error("consumer %s: cannot store dead letter for seq %lld: %s", def->name, ev.seq,
                      derr.detail[0] ? derr.detail : "not a Vigil event");
            natsMsg_NakWithDelay(m, backoff_ms(cfg, delivered), NULL);
        }
        free(payload);
        vg_error_clear(&derr);
    } else {
        atomic_fetch_add(&s->failures, 1);
        log_warn("consumer %s: event seq %lld failed (delivery %llu of %ld), retry in %lldms: %s",
                 def->name, ev.seq, (unsigned long long)delivered, cfg->consumer_max_deliver,
                 (long long)backoff_ms(cfg, delivered), err.detail);
        natsMsg_NakWithDelay(m, backoff_ms(cfg, delivered), NULL);
    }
    vg_error_clear(&err);
    json_decref(event);
    return rc;
}

/* Handles msgs[0..n) in order; returns how many (a prefix) are done with,
 * the rest to be held and retried (database unavailable). With apply_stmt
 * and more than one message, one statement applies them all; any failure
 * but an outage sends them through handle() one by one. */
static int handle_batch(PGconn *c, const vg_config *cfg, const consumer_def *def, consumer_stats *s,
                        natsMsg **msgs, int n, int crash_before_ack)
{
    json_t *events[CONSUMER_BATCH];
    consumer_event evs[CONSUMER_BATCH];
    uint64_t delivered[CONSUMER_BATCH];
    int dup[CONSUMER_BATCH], decoded = 0;
    vg_error err = {0};
    if ((def->apply_stmt || def->handle_many) && n > 1 && n <= CONSUMER_BATCH) {
        for (; decoded < n; decoded++) {
            if (decode_msg(s, msgs[decoded], def->headers_suffice, &delivered[decoded],
                           &events[decoded], &evs[decoded], &err) != VG_OK) {
                json_decref(events[decoded]);
                break; /* handle() says what is wrong with it */
            }
        }
    }
    vg_status st = VG_E_INVALID;
    if (decoded == n) {
        int64_t t0 = now_epoch_us();
        st = def->apply_stmt ? apply_many(c, def, evs, n, dup, &err)
                             : handle_many_tx(c, cfg, def, evs, n, dup, &err);
        atomic_fetch_add(&s->busy_us, now_epoch_us() - t0);
    }
    for (int i = 0; i < decoded; i++)
        json_decref(events[i]);
    if (decoded == n && st == VG_OK) {
        atomic_fetch_add(&s->batches, 1);
        crash_if_asked(def, crash_before_ack);
        for (int i = 0; i < n; i++) {
            if (delivered[i] > 1)
                atomic_fetch_add(&s->redeliveries, 1);
            atomic_fetch_add(dup[i] ? &s->duplicates : &s->processed, 1);
            natsMsg_Ack(msgs[i], NULL);
        }
        return n;
    }
    if (decoded == n && (st == VG_E_UNAVAILABLE || PQstatus(c) != CONNECTION_OK)) {
        vg_error_clear(&err);
        return 0; /* not the events' fault: hold them all */
    }
    if (decoded == n)
        log_debug("consumer %s: a batch of %d failed (%s); applying them one by one", def->name, n,
                  err.detail);
    vg_error_clear(&err);
    for (int i = 0; i < n; i++)
        if (handle(c, cfg, def, s, msgs[i], crash_before_ack) != 0)
            return i;
    return n;
}

/* 1 when *c is usable, reconnecting when it is not. */
static int db_ok(const vg_config *cfg, const consumer_def *def, PGconn **c)
{
    if (*c && PQstatus(*c) == CONNECTION_OK)
        return 1;
    PQfinish(*c);
    char app[64];
    snprintf(app, sizeof app, "vigil consumer %s", def->name);
    *c = db_connect_as(cfg->database_url, (int)cfg->db_connect_timeout, app, NULL);
    return *c != NULL;
}

/* Creates the durable consumer, or brings an existing one to the configured
 * AckWait / MaxDeliver / MaxAckPending (Vigil owns it: an operator changing
 * VIGIL_CONSUMER_* expects it to take effect), then binds a subscription.
 *
 * Push, not pull: libnats 3.4.1's natsSubscription_Fetch can return more
 * messages than the batch it allocated for after reconnects (the chaos suite
 * caught the heap overflow under ASan), so Vigil uses a push consumer with a
 * deliver group instead: explicit acks, MaxAckPending as the flow limit,
 * and several instances of one consumer share the work through the group.
 * A consumer that cannot be updated in place (e.g. an older pull consumer)
 * is recreated: redelivery from the start is harmless, processed_events
 * absorbs it. */
static natsStatus subscribe(jsCtx *js, const vg_config *cfg, const consumer_def *def,
                            natsSubscription **sub)
{
    char durable[128], deliver[160];
    snprintf(durable, sizeof durable, "vigil-%s", def->name);
    snprintf(deliver, sizeof deliver, "_vigil.deliver.%s", def->name);
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = durable;
    cc.FilterSubject = def->filter_subject;
    cc.DeliverSubject = deliver;
    cc.DeliverGroup = durable;
    cc.AckPolicy = js_AckExplicit;
    cc.DeliverPolicy = js_DeliverAll;
    cc.AckWait = cfg->consumer_ack_wait_ms * 1000000LL;
    cc.MaxDeliver = cfg->consumer_max_deliver;
    cc.MaxAckPending = cfg->consumer_max_ack_pending;
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetConsumerInfo(&ci, js, cfg->stream, durable, NULL, &jerr);
    if (s == NATS_OK) {
        jsConsumerInfo_Destroy(ci);
        ci = NULL;
        s = js_UpdateConsumer(&ci, js, cfg->stream, &cc, NULL, &jerr);
        if (s != NATS_OK) {
            log_warn("consumer %s: cannot update durable %s in place (%s); recreating it",
                     def->name, durable, nats_GetLastError(NULL));
            js_DeleteConsumer(js, cfg->stream, durable, NULL, NULL);
            s = NATS_NOT_FOUND;
        }
    }
    if (s == NATS_NOT_FOUND)
        s = js_AddConsumer(&ci, js, cfg->stream, &cc, NULL, &jerr);
    jsConsumerInfo_Destroy(ci);
    if (s != NATS_OK)
        return s;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = cfg->stream;
    so.Consumer = durable;
    so.Queue = durable;
    so.ManualAck = true;
    return js_SubscribeSync(sub, js, def->filter_subject, NULL, &so, &jerr);
}

void consumer_run(const vg_config *cfg, const consumer_def *def, atomic_int *stop)
{
    consumer_stats *s = consumer_stats_of(def);
    const char *fault = getenv("VIGIL_FAULT");
    int crash_before_ack = fault && strcmp(fault, "consumer_crash_before_ack") == 0;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsSubscription *sub = NULL;
    PGconn *c = NULL;
    int said = 0;
    atomic_store(&s->running, 1);
    while (!atomic_load(stop)) {
        vg_error err = {0};
        if (!db_ok(cfg, def, &c))
            vg_fail(&err, VG_E_UNAVAILABLE, NULL, "database unavailable");
        if (c && !nc)
            stream_connect(cfg, def->name, 0, NULL, NULL, &nc, &js, &err);
        natsStatus ns = NATS_OK;
        if (c && nc && !sub)
            ns = subscribe(js, cfg, def, &sub);
        if (!c || !nc || !sub) {
            if (said != 1)
                log_warn("consumer %s: not running yet: %s", def->name,
                         err.detail[0] ? err.detail : nats_GetLastError(NULL));
            said = 1;
            vg_error_clear(&err);
            leader_sleep(stop, 1000);
            continue;
        }
        if (said != 2)
            log_info("consumer %s: consuming %s", def->name, def->filter_subject);
        said = 2;
        natsMsg *msgs[CONSUMER_BATCH];
        int n = 0;
        ns = natsSubscription_NextMsg(&msgs[0], sub, 1000);
        if (ns == NATS_OK) {
            n = 1;
            /* What has arrived meanwhile joins the batch (never waits). */
            int queued = 0;
            if ((def->apply_stmt || def->handle_many) &&
                natsSubscription_GetPending(sub, &queued, NULL) == NATS_OK)
                while (n < CONSUMER_BATCH && queued-- > 0 &&
                       natsSubscription_NextMsg(&msgs[n], sub, 1) == NATS_OK)
                    n++;
        } else if (ns != NATS_TIMEOUT) {
            log_warn("consumer %s: receive failed: %s; resubscribing", def->name,
                     natsStatus_GetText(ns));
            natsSubscription_Destroy(sub);
            sub = NULL;
            leader_sleep(stop, 500);
        }
        /* Hold the messages through a database outage (InProgress keeps
         * JetStream from redelivering them meanwhile). */
        int done = 0;
        while (done < n && !atomic_load(stop)) {
            if (db_ok(cfg, def, &c))
                done += handle_batch(c, cfg, def, s, msgs + done, n - done, crash_before_ack);
            if (done == n)
                break;
            for (int i = done; i < n; i++)
                natsMsg_InProgress(msgs[i], NULL);
            leader_sleep(stop, 1000);
        }
        for (int i = 0; i < n; i++)
            natsMsg_Destroy(msgs[i]);
    }
    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    PQfinish(c);
    atomic_store(&s->running, 0);
}
