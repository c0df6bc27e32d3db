/*
 * stream.c — JetStream plumbing shared by the publisher, reconcile and
 * replay.
 */
#include "events/stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

static void on_disconnected(natsConnection *nc, void *closure)
{
    const stream_callbacks *cb = closure;
    if (cb && cb->disconnected)
        cb->disconnected(cb->closure);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    const stream_callbacks *cb = closure;
    if (cb && cb->reconnected)
        cb->reconnected(cb->closure);
}

vg_status stream_connect(const vg_config *cfg, const char *name, int retry_first,
                         const stream_callbacks *cb, jsOptions *js_opts, natsConnection **nc,
                         jsCtx **js, vg_error *err)
{
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, cfg->nats_url);
    if (s == NATS_OK)
        s = natsOptions_SetName(o, name);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(o, -1); /* forever */
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(o, 250);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, 2000);
    /* With a connected callback the first connect returns at once
     * (NATS_NOT_YET_CONNECTED) and retries in the background; without one
     * it would block until NATS answers, and shutdown with it. */
    if (s == NATS_OK && retry_first)
        s = natsOptions_SetRetryOnFailedConnect(o, true, on_reconnected, (void *)cb);
    if (s == NATS_OK && cb) {
        s = natsOptions_SetDisconnectedCB(o, on_disconnected, (void *)cb);
        if (s == NATS_OK)
            s = natsOptions_SetReconnectedCB(o, on_reconnected, (void *)cb);
    }
    *nc = NULL;
    *js = NULL;
    if (s == NATS_OK) {
        s = natsConnection_Connect(nc, o);
        if (s == NATS_NOT_YET_CONNECTED && retry_first)
            s = NATS_OK;
    }
    if (s == NATS_OK)
        s = natsConnection_JetStream(js, *nc, js_opts);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        jsCtx_Destroy(*js);
        natsConnection_Destroy(*nc);
        *js = NULL;
        *nc = NULL;
        return vg_fail(err, VG_E_UNAVAILABLE, "VIGIL_NATS_URL", "cannot connect to NATS at %s: %s",
                       cfg->nats_url, natsStatus_GetText(s));
    }
    return VG_OK;
}

vg_status stream_ensure(jsCtx *js, const vg_config *cfg, vg_error *err)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    int64_t dup_ns = cfg->stream_duplicate_window * 1000000000LL;
    natsStatus s = js_GetStreamInfo(&si, js, cfg->stream, NULL, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
        jsStreamConfig sc;
        const char *subjects[] = {STREAM_SUBJECTS};
        jsStreamConfig_Init(&sc);
        sc.Name = cfg->stream;
        sc.Subjects = subjects;
        sc.SubjectsLen = 1;
        sc.Storage = js_FileStorage;
        sc.Duplicates = dup_ns;
        sc.Replicas = cfg->stream_replicas;
        s = js_AddStream(&si, js, &sc, NULL, &jerr);
        if (s != NATS_OK)
            return vg_fail(err, VG_E_UNAVAILABLE, "VIGIL_STREAM",
                           "cannot create stream %s: %s (JetStream error %d)", cfg->stream,
                           natsStatus_GetText(s), (int)jerr);
        log_info("created JetStream stream %s (subjects %s, file storage, duplicate window %lds, "
                 "replicas %ld)",
                 cfg->stream, STREAM_SUBJECTS, cfg->stream_duplicate_window, cfg->stream_replicas);
        jsStreamInfo_Destroy(si);
        return VG_OK;
    }
    if (s != NATS_OK)
        return vg_fail(err, VG_E_UNAVAILABLE, "VIGIL_STREAM", "cannot read stream %s: %s",
                       cfg->stream, natsStatus_GetText(s));
    const jsStreamConfig *c = si->Config;
    vg_status st = VG_OK;
    if (c->SubjectsLen != 1 || strcmp(c->Subjects[0], STREAM_SUBJECTS) != 0)
        st = vg_fail(err, VG_E_CONFIG, "VIGIL_STREAM",
                     "stream %s exists with other subjects (expected exactly %s)", cfg->stream,
                     STREAM_SUBJECTS);
    else if (c->Storage != js_FileStorage)
        st = vg_fail(err, VG_E_CONFIG, "VIGIL_STREAM",
                     "stream %s uses memory storage; Vigil requires file storage", cfg->stream);
    else if (c->Duplicates != dup_ns)
        st = vg_fail(err, VG_E_CONFIG, "VIGIL_STREAM_DUPLICATE_WINDOW",
                     "stream %s has a duplicate window of %llds, configuration says %lds; "
                     "change one of them deliberately",
                     cfg->stream, (long long)(c->Duplicates / 1000000000LL),
                     cfg->stream_duplicate_window);
    else if (c->Replicas != cfg->stream_replicas)
        st = vg_fail(err, VG_E_CONFIG, "VIGIL_STREAM_REPLICAS",
                     "stream %s has %lld replicas, configuration says %ld", cfg->stream,
                     (long long)c->Replicas, cfg->stream_replicas);
    jsStreamInfo_Destroy(si);
    return st;
}

natsStatus stream_event_msg(natsMsg **msg, const char *type, const char *seq, const char *payload,
                            int payload_len, int repair)
{
    natsStatus s = natsMsg_Create(msg, type, NULL, payload, payload_len);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(*msg, HDR_SEQ, seq);
    if (s == NATS_OK && repair)
        s = natsMsgHeader_Set(*msg, HDR_REPAIR, "1");
    return s;
}

/* The stream's first and last sequence and message count. */
static vg_status stream_state(jsCtx *js, const vg_config *cfg, uint64_t *first, uint64_t *last,
                              uint64_t *msgs, vg_error *err)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, js, cfg->stream, NULL, &jerr);
    if (s != NATS_OK)
        return vg_fail(err, VG_E_UNAVAILABLE, "VIGIL_STREAM", "cannot read stream %s: %s",
                       cfg->stream, natsStatus_GetText(s));
    *first = si->State.FirstSeq;
    *last = si->State.LastSeq;
    *msgs = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    return VG_OK;
}

vg_status stream_tail(jsCtx *js, const vg_config *cfg, uint64_t *last_stream_seq,
                      int64_t *tail_event_seq, vg_error *err)
{
    uint64_t first, last, msgs;
    jsErrCode jerr = 0;
    natsStatus s;
    vg_status st = stream_state(js, cfg, &first, &last, &msgs, err);
    if (st != VG_OK)
        return st;
    *last_stream_seq = last;
    *tail_event_seq = 0;
    /* Walk back over repair messages (and deleted slots) to the newest
     * message the publisher wrote in order. Bounded: repairs are rare. */
    for (uint64_t sseq = last; msgs > 0 && sseq >= first && sseq > 0 && last - sseq < 100000;
         sseq--) {
        natsMsg *m = NULL;
        s = js_GetMsg(&m, js, cfg->stream, sseq, NULL, &jerr);
        if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
            continue;
        if (s != NATS_OK)
            return vg_fail(err, VG_E_UNAVAILABLE, "VIGIL_STREAM",
                           "cannot read message %llu of %s: %s", (unsigned long long)sseq,
                           cfg->stream, natsStatus_GetText(s));
        const char *seq = NULL, *repair = NULL;
        natsMsgHeader_Get(m, HDR_SEQ, &seq);
        natsMsgHeader_Get(m, HDR_REPAIR, &repair);
        long long v = seq ? atoll(seq) : -1;
        natsMsg_Destroy(m);
        if (repair)
            continue;
        if (v <= 0)
            return vg_fail(err, VG_E_CONFIG, "VIGIL_STREAM",
                           "stream %s holds message %llu that Vigil did not write (no %s header)",
                           cfg->stream, (unsigned long long)sseq, HDR_SEQ);
        *tail_event_seq = v;
        break;
    }
    return VG_OK;
}

vg_status stream_first_seq(jsCtx *js, const vg_config *cfg, uint64_t *first, vg_error *err)
{
    uint64_t last, msgs;
    vg_status st = stream_state(js, cfg, first, &last, &msgs, err);
    if (st == VG_OK && msgs == 0)
        *first = last + 1;
    return st;
}

vg_status stream_head(jsCtx *js, const vg_config *cfg, uint64_t first, int64_t *head_event_seq,
                      vg_error *err)
{
    *head_event_seq = 0;
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetMsg(&m, js, cfg->stream, first, NULL, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
        return VG_OK; /* empty */
    if (s != NATS_OK)
        return vg_fail(err, VG_E_UNAVAILABLE, "VIGIL_STREAM", "cannot read message %llu of %s: %s",
                       (unsigned long long)first, cfg->stream, natsStatus_GetText(s));
    const char *seq = NULL;
    natsMsgHeader_Get(m, HDR_SEQ, &seq);
    *head_event_seq = seq ? atoll(seq) : 0;
    natsMsg_Destroy(m);
    return VG_OK;
}
