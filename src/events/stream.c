/*
 * stream.c — JetStream plumbing shared by the publisher, reconcile and
 * replay.
 */
#include "events/stream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

/* Why the last libnats call on this thread failed with s: the server's or
 * TLS layer's own words ("Authorization Violation", "SSL handshake error:
 * ... unable to get local issuer certificate") without libnats' source
 * location, else the status text. */
static void failure_text(natsStatus s, char *out, size_t outsz)
{
    const char *text = nats_GetLastError(NULL);
    if (text && text[0] == '(') { /* "(conn.c:733): SSL handshake error..." */
        const char *end = strstr(text, "): ");
        text = end ? end + 3 : text;
    }
    snprintf(out, outsz, "%s", text && text[0] ? text : natsStatus_GetText(s));
}

/* Reads the first line of `path` (a secret: password or token) into out,
 * without its line end. The caller wipes out after use. */
static vg_status read_secret(const char *path, const char *field, char *out, size_t outsz,
                             vg_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return vg_fail(err, VG_E_CONFIG, field, "%s: cannot read %s: %s", field, path,
                       strerror(errno));
    int ok = fgets(out, (int)outsz, f) != NULL;
    fclose(f);
    out[ok ? strcspn(out, "\r\n") : 0] = '\0';
    if (!out[0])
        return vg_fail(err, VG_E_CONFIG, field, "%s: %s is empty", field, path);
    return VG_OK;
}

/* The host name of a single-server URL ("tls://user:pw@nats.example:4222"
 * → "nats.example"); 0 for a list of servers and for an IP address, whose
 * certificates OpenSSL's host-name check cannot match. */
static int url_host(const char *url, char *out, size_t outsz)
{
    if (strchr(url, ','))
        return 0;
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    const char *at = strchr(p, '@');
    if (at)
        p = at + 1;
    size_t n = strcspn(p, ":/");
    if (n == 0 || n >= outsz || *p == '[')
        return 0;
    memcpy(out, p, n);
    out[n] = '\0';
    unsigned char addr[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, out, addr) != 1;
}

/* Applies the authentication and TLS settings (VIGIL_NATS_*) to o. Which
 * combinations are allowed was checked by config_load. */
static vg_status apply_security(natsOptions *o, const vg_config *cfg, vg_error *err)
{
    char secret[1024];
    natsStatus s = NATS_OK;
    const char *field = NULL;
    vg_status st = VG_OK;
    if (cfg->nats_user[0]) {
        field = "VIGIL_NATS_PASSWORD_FILE";
        st = read_secret(cfg->nats_password_file, field, secret, sizeof secret, err);
        if (st == VG_OK)
            s = natsOptions_SetUserInfo(o, cfg->nats_user, secret);
        explicit_bzero(secret, sizeof secret);
    } else if (cfg->nats_token_file[0]) {
        field = "VIGIL_NATS_TOKEN_FILE";
        st = read_secret(cfg->nats_token_file, field, secret, sizeof secret, err);
        if (st == VG_OK)
            s = natsOptions_SetToken(o, secret);
        explicit_bzero(secret, sizeof secret);
    } else if (cfg->nats_creds[0]) {
        field = "VIGIL_NATS_CREDS";
        s = natsOptions_SetUserCredentialsFromFiles(o, cfg->nats_creds, NULL);
    } else if (cfg->nats_nkey[0]) {
        field = "VIGIL_NATS_NKEY_SEED";
        s = natsOptions_SetNKeyFromSeed(o, cfg->nats_nkey, cfg->nats_nkey_seed);
    }
    if (st == VG_OK && s == NATS_OK && cfg->nats_tls_ca[0]) {
        char host[256];
        field = "VIGIL_NATS_TLS_CA";
        s = natsOptions_SetSecure(o, true);
        if (s == NATS_OK)
            s = natsOptions_LoadCATrustedCertificates(o, cfg->nats_tls_ca);
        /* libnats checks only the chain unless told which name to expect. */
        if (s == NATS_OK && url_host(cfg->nats_url, host, sizeof host))
            s = natsOptions_SetExpectedHostname(o, host);
    }
    if (st == VG_OK && s == NATS_OK && cfg->nats_tls_cert[0]) {
        field = "VIGIL_NATS_TLS_CERT";
        s = natsOptions_SetSecure(o, true);
        if (s == NATS_OK)
            s = natsOptions_LoadCertificatesChain(o, cfg->nats_tls_cert, cfg->nats_tls_key);
    }
    if (st == VG_OK && s != NATS_OK) {
        char why[200];
        failure_text(s, why, sizeof why);
        st = vg_fail(err, VG_E_CONFIG, field, "%s: %s", field, why);
    }
    return st;
}

natsStatus stream_conn_error(natsConnection *nc, char *out, size_t outsz)
{
    const char *text = NULL;
    natsStatus s = nc ? natsConnection_GetLastError(nc, &text) : NATS_OK;
    if (s == NATS_OK || !text || !text[0])
        text = s == NATS_OK ? "" : natsStatus_GetText(s);
    snprintf(out, outsz, "%s", text);
    return s;
}

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

int stream_probe(const vg_config *cfg, char *why, size_t whysz)
{
    natsOptions *o = NULL;
    natsConnection *nc = NULL;
    vg_error err = {0};
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, cfg->nats_url);
    if (s == NATS_OK)
        s = natsOptions_SetName(o, "vigil-probe");
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, 1000);
    if (s == NATS_OK)
        s = natsOptions_SetAllowReconnect(o, false);
    if (s == NATS_OK && apply_security(o, cfg, &err) != VG_OK) {
        snprintf(why, whysz, "%s", err.detail);
        vg_error_clear(&err);
        natsOptions_Destroy(o);
        return 1;
    }
    if (s == NATS_OK)
        s = natsConnection_Connect(&nc, o);
    failure_text(s, why, whysz);
    natsConnection_Destroy(nc);
    natsOptions_Destroy(o);
    /* Down, stopped or unreachable is not a refusal: those say nothing new. */
    int refused = s == NATS_CONNECTION_AUTH_FAILED || s == NATS_NOT_PERMITTED ||
                  s == NATS_SSL_ERROR || s == NATS_SECURE_CONNECTION_WANTED ||
                  s == NATS_SECURE_CONNECTION_REQUIRED || s == NATS_ERR;
    if (!refused)
        why[0] = '\0';
    return refused;
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
    if (s == NATS_OK && apply_security(o, cfg, err) != VG_OK) {
        natsOptions_Destroy(o);
        return err ? err->code : VG_E_CONFIG;
    }
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
        char why[200];
        failure_text(s, why, sizeof why);
        jsCtx_Destroy(*js);
        natsConnection_Destroy(*nc);
        *js = NULL;
        *nc = NULL;
        return vg_fail(err, VG_E_UNAVAILABLE, "VIGIL_NATS_URL", "cannot connect to NATS at %s: %s",
                       cfg->nats_url, why);
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
    uint64_t first = 0, last = 0, msgs = 0; /* set by stream_state on VG_OK */
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
    uint64_t last = 0, msgs = 0;
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
