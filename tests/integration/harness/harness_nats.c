/*
 * harness_nats.c — a client view of the env's nats-server, for tests that
 * check what reached JetStream (e.g. that the stream holds each event once).
 */
#include "harness_internal.h"

#include <stdlib.h>

natsConnection *h_nats_connect(const h_env *env)
{
    natsOptions *o = NULL;
    natsConnection *nc = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, env->nats_url);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, 5000);
    /* Tests restart the server; come back quickly when they do. */
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(o, 100);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK)
        s = natsConnection_Connect(&nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        h__err("connecting to %s: %s", env->nats_url, natsStatus_GetText(s));
        return NULL;
    }
    return nc;
}

long long h_js_stream_msgs(h_env *env, const char *stream)
{
    natsConnection *nc = h_nats_connect(env);
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    long long n = -1;
    if (!nc)
        return -1;
    natsStatus s = natsConnection_JetStream(&js, nc, NULL);
    if (s == NATS_OK)
        s = js_GetStreamInfo(&si, js, stream, NULL, &jerr);
    if (s == NATS_OK)
        n = (long long)si->State.Msgs;
    else
        h__err("stream info for %s: %s (JetStream error %d)", stream, natsStatus_GetText(s),
               (int)jerr);
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return n;
}
