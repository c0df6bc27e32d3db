/*
 * test_reconcile.c — the stream loses events; `vigil reconcile` (and the
 * publisher itself) put them back. Plus `vigil replay`.
 *
 * One environment; the cases run in order on the same history:
 *   1. purge     js_PurgeStream → reconcile re-sends everything, in order,
 *                although JetStream 2.9 still remembers the purged ids in
 *                its duplicate window; then new events follow in order.
 *   2. delete    js_DeleteStream → reconcile recreates and refills it.
 *   3. wipe      nats-server stopped, its storage dir deleted, restarted:
 *                (a) with vigil stopped, reconcile repairs it (and exits 3
 *                while NATS is down); (b) with vigil running, the publisher
 *                alone repairs it within seconds.
 *   4. holes     two messages deleted from the middle, a duplicate added →
 *                re-sent as repairs; counts reported; the publisher's next
 *                window still lands whole, in order, after the repairs.
 *   5. replay    stdout (range, type filter) and NATS (own subjects, never
 *                the stream).
 *
 * "Exact" below means: the stream's messages, in stream order, carry
 * Vigil-Seq 1..n, each once, none a repair. It is read with js_GetMsg per
 * stream sequence, independently of how reconcile reads it.
 *
 * VIGIL_TEST_RECONCILE_TX (default 120, at most 30000) sets how many
 * transactions are made, for timing reconcile on a larger history.
 */
#include "harness.h"

#include <ftw.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture_events.h"

#define STREAM "AML_EVENTS"

static h_env *env;
static long long n; /* events in event_log */

/* What the stream holds, in stream order (count -1: there is no stream). */
typedef struct held {
    long long count, repairs;
    long long *seq; /* Vigil-Seq of each message */
    uint64_t *sseq; /* its stream sequence */
} held;

static void held_free(held *h)
{
    free(h->seq);
    free(h->sseq);
    memset(h, 0, sizeof *h);
}

static held read_stream(void)
{
    held h = {0};
    natsConnection *nc = h_nats_connect(env);
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    assert_non_null(nc);
    assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    if (js_GetStreamInfo(&si, js, STREAM, NULL, &jerr) != NATS_OK) {
        h.count = -1; /* no stream */
        jsCtx_Destroy(js);
        natsConnection_Destroy(nc);
        return h;
    }
    uint64_t first = si->State.FirstSeq, last = si->State.LastSeq, msgs = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    h.seq = calloc(msgs + 1, sizeof *h.seq);
    h.sseq = calloc(msgs + 1, sizeof *h.sseq);
    assert_true(h.seq && h.sseq);
    for (uint64_t s = first; msgs && s <= last; s++) {
        natsMsg *m = NULL;
        natsStatus st = js_GetMsg(&m, js, STREAM, s, NULL, &jerr);
        if (st == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
            continue;
        assert_int_equal(st, NATS_OK);
        const char *v = NULL, *rep = NULL;
        assert_int_equal(natsMsgHeader_Get(m, "Vigil-Seq", &v), NATS_OK);
        h.repairs += natsMsgHeader_Get(m, "Vigil-Repair", &rep) == NATS_OK;
        assert_true((uint64_t)h.count < msgs);
        h.sseq[h.count] = s;
        h.seq[h.count++] = atoll(v);
        natsMsg_Destroy(m);
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return h;
}

/* 1 when the stream holds Vigil-Seq 1..want in order, each once, no repairs. */
static int stream_exact(long long want, int quiet)
{
    held h = read_stream();
    int ok = h.count == want && h.repairs == 0;
    for (long long i = 0; ok && i < h.count; i++)
        ok = h.seq[i] == i + 1;
    if (!ok && !quiet)
        fprintf(stderr, "stream holds %lld messages (%lld repairs), want seqs 1..%lld in order\n",
                h.count, h.repairs, want);
    held_free(&h);
    return ok;
}

/* Asserts every seq 1..want is in the stream, each exactly once. */
static void assert_stream_complete(long long want, long long extra_copies)
{
    held h = read_stream();
    assert_true(h.count >= 0);
    unsigned char *seen = calloc((size_t)want + 1, 1);
    long long dup = 0;
    for (long long i = 0; i < h.count; i++) {
        assert_true(h.seq[i] >= 1 && h.seq[i] <= want);
        dup += seen[h.seq[i]]++ > 0;
    }
    for (long long s = 1; s <= want; s++)
        if (!seen[s])
            fail_msg("seq %lld missing from the stream", s);
    assert_int_equal(dup, extra_copies);
    free(seen);
    held_free(&h);
}

static int reconcile(char **out)
{
    static const char *const argv[] = {"reconcile", NULL};
    return fx_run(env, out, argv);
}

/* Asserts reconcile exits 0 and reports these counts. */
static void expect_reconcile(long long missing, long long republished)
{
    char *out = NULL, want[160];
    long long t0 = h_now_ms();
    assert_int_equal(reconcile(&out), 0);
    fprintf(stderr, "reconcile of %lld events took %lld ms\n", n, h_now_ms() - t0);
    snprintf(want, sizeof want, "checked=%lld present=%lld missing=%lld republished=%lld", n,
             n - missing, missing, republished);
    if (!strstr(out, want))
        fail_msg("expected '%s' in:\n%s", want, out);
    assert_non_null(strstr(out, "verified: stream " STREAM " holds all"));
    free(out);
}

static jsCtx *js_open(natsConnection **nc)
{
    jsCtx *js = NULL;
    *nc = h_nats_connect(env);
    assert_non_null(*nc);
    assert_int_equal(natsConnection_JetStream(&js, *nc, NULL), NATS_OK);
    return js;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int group_setup(void **state)
{
    env = h_setup(1);
    if (!env)
        return -1;
    const char *ntx = getenv("VIGIL_TEST_RECONCILE_TX");
    int per = ntx ? atoi(ntx) / 3 : 40;
    fx_produce(env, "rec", 3, per > 10000 ? 10000 : per < 10 ? 10 : per);
    n = fx_wait_published(env, 60000);
    fprintf(stderr, "%lld events published\n", n);
    return stream_exact(n, 0) ? 0 : -1;
}

static int group_teardown(void **state)
{
    int failed = env->failed;
    h_teardown(env);
    return failed ? -1 : 0;
}

static void purge_then_reconcile(void **state)
{
    natsConnection *nc;
    jsCtx *js = js_open(&nc);
    jsErrCode jerr = 0;
    assert_int_equal(js_PurgeStream(js, STREAM, NULL, &jerr), NATS_OK);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    assert_int_equal(h_js_stream_msgs(env, STREAM), 0);

    expect_reconcile(n, n);
    assert_true(stream_exact(n, 0));
    /* The publisher takes over where the stream now ends, in order. */
    fx_produce(env, "rec-after-purge", 1, 3);
    n = fx_wait_published(env, 30000);
    assert_true(stream_exact(n, 0));
    /* And a second run finds nothing to do. */
    expect_reconcile(0, 0);
}

static void delete_then_reconcile(void **state)
{
    natsConnection *nc;
    jsCtx *js = js_open(&nc);
    jsErrCode jerr = 0;
    assert_int_equal(js_DeleteStream(js, STREAM, NULL, &jerr), NATS_OK);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);

    expect_reconcile(n, n);
    assert_true(stream_exact(n, 0));
}

/* Stops nats-server, deletes its storage, starts it again. */
static void wipe_nats(void)
{
    char dir[H_PATH_SIZE + 8];
    snprintf(dir, sizeof dir, "%s/js", env->dir);
    assert_int_equal(h_nats_stop(env, SIGTERM), 0);
    assert_int_equal(nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
    assert_int_not_equal(access(dir, F_OK), 0);
    assert_int_equal(h_nats_start(env), 0);
}

static void wipe_then_reconcile(void **state)
{
    assert_int_equal(h_vigil_stop(env, SIGTERM), 0);

    /* NATS down: reconcile says so, exit 3. */
    char *out = NULL;
    assert_int_equal(h_nats_stop(env, SIGTERM), 0);
    assert_int_equal(reconcile(&out), 3);
    free(out);
    assert_int_equal(h_nats_start(env), 0);

    wipe_nats();
    expect_reconcile(n, n);
    assert_true(stream_exact(n, 0));
    /* A publisher starting now agrees with the stream and re-sends nothing. */
    assert_int_equal(h_vigil_start(env, NULL), 0);
    fx_produce(env, "rec-after-wipe", 1, 2);
    n = fx_wait_published(env, 30000);
    assert_true(stream_exact(n, 0));
}

static void wipe_then_publisher_repairs(void **state)
{
    wipe_nats();
    /* Count first (cheap), then check the order once. 10 s, plus time for
     * the re-send itself when VIGIL_TEST_RECONCILE_TX makes n large. */
    long long t0 = h_now_ms(), limit = 10000 + n / 10;
    while (h_js_stream_msgs(env, STREAM) != n && h_now_ms() - t0 < limit)
        h_sleep_ms(100);
    fprintf(stderr, "publisher alone repaired the wiped stream in %lld ms\n", h_now_ms() - t0);
    assert_true(stream_exact(n, 0));
}

static void holes_then_reconcile(void **state)
{
    held h = read_stream();
    assert_int_equal(h.count, n);
    natsConnection *nc;
    jsCtx *js = js_open(&nc);
    jsErrCode jerr = 0;
    /* Two holes, and a stray copy of seq 3 (as a second repair would leave). */
    assert_int_equal(js_DeleteMsg(js, STREAM, h.sseq[4], NULL, &jerr), NATS_OK);
    assert_int_equal(js_DeleteMsg(js, STREAM, h.sseq[8], NULL, &jerr), NATS_OK);
    held_free(&h);
    natsMsg *m = NULL;
    char *payload = h_db_text(env, "SELECT payload::text FROM event_log WHERE seq = 3");
    char *type = h_db_text(env, "SELECT event_type FROM event_log WHERE seq = 3");
    assert_int_equal(natsMsg_Create(&m, type, NULL, payload, (int)strlen(payload)), NATS_OK);
    natsMsgHeader_Set(m, "Vigil-Seq", "3");
    natsMsgHeader_Set(m, "Vigil-Repair", "1");
    assert_int_equal(js_PublishMsg(NULL, js, m, NULL, &jerr), NATS_OK);
    natsMsg_Destroy(m);
    free(payload);
    free(type);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);

    char *out = NULL;
    static const char *const dry[] = {"reconcile", "--dry-run", NULL};
    assert_int_equal(fx_run(env, &out, dry), 1);
    assert_non_null(strstr(out, "missing=2 republished=0 duplicates=1 out_of_order=0"));
    free(out);

    expect_reconcile(2, 2);
    assert_stream_complete(n, 1);
    h = read_stream();
    assert_int_equal(h.repairs, 3); /* the stray copy and the two re-sent holes */
    assert_int_equal(h.seq[h.count - 2], 5);
    assert_int_equal(h.seq[h.count - 1], 9);
    held_free(&h);
    /* The publisher still appends after the repairs, none skipped: its
     * next window holds 20 events, more than the 3 messages appended behind
     * its back (a chain of expected sequence numbers would match at the
     * 4th and store it ahead of the first three). */
    char *customer = h_db_text(env, "SELECT id::text FROM customers LIMIT 1");
    assert_non_null(customer);
    fx_post_transactions(env, customer, "rec-after-holes", 20);
    free(customer);
    long long before = n;
    n = fx_wait_published(env, 30000);
    assert_true(n > before);
    assert_stream_complete(n, 1);
}

/* Lines of out, each a CloudEvent; asserts seqs run from `from` upwards
 * (contiguously when `contiguous`) and types start with `prefix`. */
static long long check_lines(char *out, long long from, int contiguous, const char *prefix)
{
    long long lines = 0, prev = from - 1;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *e = json_loads(line, 0, NULL);
        assert_non_null(e);
        long long seq = json_integer_value(json_object_get(e, "seq"));
        assert_true(contiguous ? seq == prev + 1 : seq > prev);
        assert_string_equal(json_string_value(json_object_get(e, "specversion")), "1.0");
        if (prefix)
            assert_int_equal(
                strncmp(json_string_value(json_object_get(e, "type")), prefix, strlen(prefix)), 0);
        prev = seq;
        lines++;
        json_decref(e);
    }
    return lines;
}

static void replay_stdout_and_nats(void **state)
{
    char *out = NULL;
    static const char *const range[] = {"replay", "--from-seq", "3", "--to-seq", "12", NULL};
    assert_int_equal(fx_run(env, &out, range), 0);
    assert_int_equal(check_lines(out, 3, 1, NULL), 10);
    free(out);

    static const char *const typed[] = {"replay", "--from-seq",       "1",
                                        "--type", "aml.transaction.", NULL};
    assert_int_equal(fx_run(env, &out, typed), 0);
    long long want = h_db_count(env, "SELECT count(*) FROM event_log"
                                     " WHERE event_type LIKE 'aml.transaction.%'");
    assert_true(want > 0);
    assert_int_equal(check_lines(out, 1, 0, "aml.transaction."), want);
    free(out);

    static const char *const no_from[] = {"replay", "--to", "stdout", NULL};
    assert_int_equal(fx_run(env, &out, no_from), 2);
    free(out);
    static const char *const into_stream[] = {"replay", "--from-seq",       "1",    "--to",
                                              "nats",   "--subject-prefix", "aml.", NULL};
    assert_int_equal(fx_run(env, &out, into_stream), 2);
    free(out);

    /* NATS: every event on vigil.replay.<type>, in order, none in the stream. */
    long long in_stream = h_js_stream_msgs(env, STREAM);
    natsConnection *nc = h_nats_connect(env);
    natsSubscription *sub = NULL;
    assert_non_null(nc);
    assert_int_equal(natsConnection_SubscribeSync(&sub, nc, "vigil.replay.>"), NATS_OK);
    assert_int_equal(natsSubscription_SetPendingLimits(sub, -1, -1), NATS_OK);
    assert_int_equal(natsConnection_FlushTimeout(nc, 5000), NATS_OK);
    static const char *const to_nats[] = {"replay", "--from-seq", "1", "--to", "nats", NULL};
    assert_int_equal(fx_run(env, &out, to_nats), 0);
    free(out);
    for (long long s = 1; s <= n; s++) {
        natsMsg *m = NULL;
        assert_int_equal(natsSubscription_NextMsg(&m, sub, 5000), NATS_OK);
        const char *v = NULL, *id = NULL;
        assert_int_equal(natsMsgHeader_Get(m, "Vigil-Seq", &v), NATS_OK);
        assert_int_equal(atoll(v), s);
        assert_int_equal(natsMsgHeader_Get(m, "Nats-Msg-Id", &id), NATS_OK);
        json_t *e = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
        assert_non_null(e);
        assert_string_equal(json_string_value(json_object_get(e, "id")), id);
        char subject[256];
        snprintf(subject, sizeof subject, "vigil.replay.%s",
                 json_string_value(json_object_get(e, "type")));
        assert_string_equal(natsMsg_GetSubject(m), subject);
        json_decref(e);
        natsMsg_Destroy(m);
    }
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);
    assert_int_equal(h_js_stream_msgs(env, STREAM), in_stream);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(purge_then_reconcile), cmocka_unit_test(delete_then_reconcile),
        cmocka_unit_test(wipe_then_reconcile),  cmocka_unit_test(wipe_then_publisher_repairs),
        cmocka_unit_test(holes_then_reconcile), cmocka_unit_test(replay_stdout_and_nats),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
