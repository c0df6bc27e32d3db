/*
 * test_events_http.c — reading the event log over HTTP: GET /events pages
 * and the /events/stream Server-Sent Events, against the real binary.
 *
 * Events are made by writing outbox rows (through the API, or in bulk in SQL)
 * and calling vigil_sequence(), the sequencer's own function, so a test knows
 * when they are in event_log whether or not the background sequencer got
 * there first (if it did, the rows are the same).
 *
 * What must hold: a reader gets exactly the events after its position, in
 * seq order, each once, with id = the real seq; a reconnect with
 * Last-Event-ID gets exactly what it missed; a client further back than the
 * in-memory ring (VIGIL_SSE_RING=16) and a live client that falls out of it
 * both get every event from the database; idle streams get heartbeats; a
 * SIGTERM ends open streams promptly; keys work as ?access_token= on the
 * stream only.
 *
 * One environment for the group; the last tests restart vigil with a small
 * ring, a 1 s heartbeat and a low client limit.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#define NCLIENTS 200

typedef struct fixture {
    h_env *env;
    char auditor[256], analyst[256], ingest[256];
} fixture;

/* One event_log row as the database has it. */
typedef struct ev_row {
    long long seq;
    char type[128];
    char id[40];
} ev_row;

static int group_setup(void **state)
{
    /* NCLIENTS streams share two keys here; the per-key cap has its own
     * test (test_abuse.c). */
    setenv("VIGIL_SSE_MAX_PER_KEY", "1000", 1);
    fixture *f = calloc(1, sizeof *f);
    if (!f || !(f->env = h_setup(0))) {
        free(f);
        return -1;
    }
    if (h_key_create(f->env, "auditor", f->auditor, sizeof f->auditor) != 0 ||
        h_key_create(f->env, "analyst", f->analyst, sizeof f->analyst) != 0 ||
        h_key_create(f->env, "ingest", f->ingest, sizeof f->ingest) != 0) {
        h_teardown(f->env);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    h_teardown(f->env);
    free(f);
    return 0;
}

/* ---- helpers -------------------------------------------------------------- */

static long long log_head(h_env *env)
{
    return h_db_count(env, "SELECT coalesce(max(seq), 0) FROM event_log");
}

/* Moves every committed outbox row into event_log; returns the new head. */
static long long sequence_all(h_env *env)
{
    for (int i = 0; i < 10000; i++) {
        long long moved = h_db_count(env, "SELECT moved FROM vigil_sequence(1000)");
        if (moved < 0)
            return -1;
        if (moved == 0)
            break;
    }
    if (h_db_count(env, "SELECT count(*) FROM outbox") != 0)
        return -1;
    return log_head(env);
}

/* Writes n events of `type` to the outbox and sequences them; the new head. */
static long long emit(h_env *env, const char *type, int n)
{
    char num[16];
    snprintf(num, sizeof num, "%d", n);
    if (h_db_exec(env,
                  "WITH s AS (SELECT i, gen_random_uuid() AS e FROM generate_series(1, $2::int) i)"
                  " INSERT INTO outbox (event_id, event_type, subject, payload)"
                  " SELECT e, $1, 'it-' || i, vigil_cloudevent(e, $1, 'it-' || i,"
                  " jsonb_build_object('i', i)) FROM s ORDER BY i",
                  type, num) != 0)
        return -1;
    return sequence_all(env);
}

/* The rows with after < seq <= upto (and type prefix when not NULL). */
static ev_row *fetch_rows(h_env *env, long long after, long long upto, const char *prefix, int *n)
{
    char a[24], u[24];
    snprintf(a, sizeof a, "%lld", after);
    snprintf(u, sizeof u, "%lld", upto);
    const char *params[] = {a, u, prefix};
    PGresult *r = PQexecParams(h_db(env),
                               "SELECT seq, event_type, event_id::text FROM event_log"
                               " WHERE seq > $1::bigint AND seq <= $2::bigint"
                               " AND ($3::text IS NULL OR starts_with(event_type, $3))"
                               " ORDER BY seq",
                               3, NULL, params, NULL, NULL, 0);
    *n = -1;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "fetch_rows: %s", PQerrorMessage(h_db(env)));
        PQclear(r);
        return NULL;
    }
    *n = PQntuples(r);
    ev_row *rows = calloc((size_t)*n + 1, sizeof *rows);
    for (int i = 0; rows && i < *n; i++) {
        rows[i].seq = strtoll(PQgetvalue(r, i, 0), NULL, 10);
        snprintf(rows[i].type, sizeof rows[i].type, "%s", PQgetvalue(r, i, 1));
        snprintf(rows[i].id, sizeof rows[i].id, "%s", PQgetvalue(r, i, 2));
    }
    PQclear(r);
    return rows;
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* 1 when the SSE event is exactly `row`: id, event, and a data CloudEvent
 * with the same seq, id and type. */
static int event_is(const h_sse_event *ev, const ev_row *row)
{
    char want[24];
    snprintf(want, sizeof want, "%lld", row->seq);
    return strcmp(ev->id, want) == 0 && strcmp(ev->event, row->type) == 0 &&
           json_is_object(ev->json) &&
           json_integer_value(json_object_get(ev->json, "seq")) == row->seq &&
           strcmp(jstr(ev->json, "id"), row->id) == 0 &&
           strcmp(jstr(ev->json, "type"), row->type) == 0 &&
           strcmp(jstr(ev->json, "specversion"), "1.0") == 0;
}

/* Reads n events from s and compares them with rows, in order; then, when
 * quiet_ms > 0, expects no further event for that long. Returns the number
 * of problems (the first few printed). */
static int check_stream(h_sse *s, const ev_row *rows, int n, int quiet_ms, const char *who)
{
    int bad = 0;
    for (int i = 0; i < n; i++) {
        h_sse_event ev;
        int rc = h_sse_next(s, &ev, 15000);
        if (rc != 1) {
            fprintf(stderr, "%s: event %d of %d (seq %lld): %s\n", who, i + 1, n, rows[i].seq,
                    rc == 0 ? "timed out" : "the stream ended");
            return bad + n - i;
        }
        if (!event_is(&ev, &rows[i]) && bad++ < 3)
            fprintf(stderr, "%s: expected seq %lld (%s %s), got id=%s event=%s data=%.160s\n", who,
                    rows[i].seq, rows[i].type, rows[i].id, ev.id, ev.event, ev.data ? ev.data : "");
        h_sse_event_free(&ev);
    }
    if (quiet_ms > 0) {
        h_sse_event ev;
        if (h_sse_next(s, &ev, quiet_ms) == 1) {
            fprintf(stderr, "%s: unexpected extra event id=%s event=%s\n", who, ev.id, ev.event);
            bad++;
            h_sse_event_free(&ev);
        }
    }
    return bad;
}

/* Opens a stream on `path` (printf-style) with `key` and compares what it
 * sends with the rows in (after, upto] matching prefix. */
static int expect_rows(h_env *env, h_sse *s, long long after, long long upto, const char *prefix,
                       int quiet_ms, const char *who)
{
    int n;
    ev_row *rows = fetch_rows(env, after, upto, prefix, &n);
    if (!rows)
        return -1;
    int bad = check_stream(s, rows, n, quiet_ms, who);
    free(rows);
    return bad;
}

/* h_sse_open until it succeeds or ms pass. */
static h_sse *open_retrying(h_env *env, const char *key, const char *path, int ms)
{
    h_sse *s = NULL;
    for (long long end = h_now_ms() + ms; !s && h_now_ms() < end;)
        if (!(s = h_sse_open(env, key, path, NULL, NULL)))
            h_sleep_ms(200);
    return s;
}

static long get_status(h_env *env, const char *key, const char *const *headers, const char *path,
                       h_resp *r)
{
    if (h_http(env, "GET", path, key, NULL, -1, headers, r) != 0)
        return -1;
    return r->status;
}

/* Status of a refused request, checking it is problem+json naming `field`
 * (when not NULL). */
static long refused(h_env *env, const char *key, const char *const *headers, const char *path,
                    const char *field)
{
    h_resp r;
    long st = get_status(env, key, headers, path, &r);
    int ok = strncmp(r.content_type, "application/problem+json", 24) == 0 &&
             json_integer_value(json_object_get(r.json, "status")) == st &&
             (!field || strcmp(jstr(r.json, "field"), field) == 0);
    if (!ok) {
        fprintf(stderr, "GET %s: %ld %s %s (expected a problem naming %s)\n", path, st,
                r.content_type, r.body, field ? field : "-");
        st = -2;
    }
    h_resp_free(&r);
    return st;
}

/* ---- GET /events ---------------------------------------------------------- */

static void list_pages_in_seq_order_and_filters_by_type_prefix(void **state)
{
    fixture *f = *state;
    h_env *env = f->env;
    long long base = log_head(env);
    assert_true(base >= 0);

    /* One real write through the API (customer + its own events) ... */
    h_resp r;
    assert_int_equal(h_post(env, env->admin_key,
                            "{\"full_name\": \"Eve Reader\", \"country\": \"DE\"}", &r,
                            "/customers"),
                     0);
    assert_int_equal(r.status, 201);
    h_resp_free(&r);
    assert_true(sequence_all(env) > base);
    /* ... and synthetic ones whose types probe the prefix match. */
    assert_true(emit(env, "it.list.alpha", 5) > 0);
    assert_true(emit(env, "it.list.beta", 3) > 0);
    assert_true(emit(env, "it.listXgamma", 1) > 0);
    long long top = emit(env, "it.list_gamma", 1);
    assert_true(top > base + 10);

    /* Paging with limit=4 walks base+1..top, gap-free, each seq once. */
    long long after = base, expect = base + 1;
    int pages = 0;
    char path[512];
    for (;;) {
        snprintf(path, sizeof path, "/events?after=%lld&limit=4", after);
        assert_int_equal(get_status(env, f->auditor, NULL, path, &r), 200);
        json_t *items = json_object_get(r.json, "items");
        assert_true(json_is_array(items));
        assert_true(json_array_size(items) <= 4);
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it)
        {
            assert_int_equal(json_integer_value(json_object_get(it, "seq")), expect);
            assert_string_equal(jstr(it, "specversion"), "1.0");
            assert_true(strlen(jstr(it, "id")) == 36);
            expect++;
        }
        long long next = json_integer_value(json_object_get(r.json, "next_after"));
        size_t n = json_array_size(items);
        h_resp_free(&r);
        if (n == 0) {
            assert_int_equal(next, after); /* an empty page stays where it was */
            break;
        }
        assert_int_equal(next, expect - 1);
        after = next;
        pages++;
    }
    assert_int_equal(expect - 1, top);
    assert_int_equal(pages, (int)((top - base + 3) / 4));

    /* Items are the stored CloudEvents. */
    snprintf(path, sizeof path, "/events?after=%lld&limit=1", base);
    assert_int_equal(get_status(env, f->analyst, NULL, path, &r), 200);
    json_t *first = json_array_get(json_object_get(r.json, "items"), 0);
    char seq1[24];
    snprintf(seq1, sizeof seq1, "%lld", base + 1);
    char *stored =
        h_db_text(env, "SELECT payload::text FROM event_log WHERE seq = $1::bigint", seq1);
    assert_non_null(stored);
    json_t *want = json_loads(stored, 0, NULL);
    assert_true(json_equal(first, want));
    json_decref(want);
    free(stored);
    h_resp_free(&r);

    /* Type prefixes: a whole type, a dotted prefix, and '_' / '%' as plain
     * characters (a LIKE would let '_' match the 'X'). */
    static const struct {
        const char *type;
        int count;
    } filters[] = {
        {"it.list.alpha", 5}, {"it.list.", 8},   {"it.list", 10},
        {"it.list_", 1},      {"it.list%25", 0}, {"it.nothing", 0},
    };
    for (size_t k = 0; k < sizeof filters / sizeof filters[0]; k++) {
        snprintf(path, sizeof path, "/events?after=%lld&type=%s", base, filters[k].type);
        assert_int_equal(get_status(env, f->auditor, NULL, path, &r), 200);
        json_t *items = json_object_get(r.json, "items");
        if ((int)json_array_size(items) != filters[k].count)
            fprintf(stderr, "type=%s: %zu items, expected %d\n", filters[k].type,
                    json_array_size(items), filters[k].count);
        assert_int_equal(json_array_size(items), filters[k].count);
        long long prev = base;
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it)
        {
            long long seq = json_integer_value(json_object_get(it, "seq"));
            assert_true(seq > prev);
            prev = seq;
            assert_true(strncmp(jstr(it, "type"), "it.list", 7) == 0);
        }
        long long next = json_integer_value(json_object_get(r.json, "next_after"));
        assert_int_equal(next, filters[k].count ? prev : base);
        h_resp_free(&r);
    }

    /* limit: default 100, at most VIGIL_PAGE_LIMIT_MAX (500). */
    assert_true(emit(env, "it.list.bulk", 150) > 0);
    snprintf(path, sizeof path, "/events?after=%lld", base);
    assert_int_equal(get_status(env, f->auditor, NULL, path, &r), 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 100);
    h_resp_free(&r);
    snprintf(path, sizeof path, "/events?after=%lld&limit=500", base);
    assert_int_equal(get_status(env, f->auditor, NULL, path, &r), 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), log_head(env) - base);
    h_resp_free(&r);

    /* Bad input names the field; roles. */
    assert_int_equal(refused(env, f->auditor, NULL, "/events?after=x", "after"), 422);
    assert_int_equal(refused(env, f->auditor, NULL, "/events?after=-1", "after"), 422);
    assert_int_equal(refused(env, f->auditor, NULL, "/events?after=%2B5", "after"), 422);
    assert_int_equal(refused(env, f->auditor, NULL, "/events?after=99999999999999999999", "after"),
                     422);
    assert_int_equal(refused(env, f->auditor, NULL, "/events?limit=0", "limit"), 422);
    assert_int_equal(refused(env, f->auditor, NULL, "/events?limit=501", "limit"), 422);
    assert_int_equal(refused(env, f->auditor, NULL, "/events?type=%01", "type"), 422);
    assert_int_equal(refused(env, NULL, NULL, "/events", "Authorization"), 401);
    assert_int_equal(refused(env, f->ingest, NULL, "/events", NULL), 403);
    /* ?access_token= is for the stream only. */
    snprintf(path, sizeof path, "/events?access_token=%s", f->auditor);
    assert_int_equal(refused(env, NULL, NULL, path, "Authorization"), 401);
}

/* ---- GET /events/stream --------------------------------------------------- */

static void stream_sends_every_event_in_seq_order(void **state)
{
    fixture *f = *state;
    h_env *env = f->env;
    long long base = log_head(env);
    char path[128];
    snprintf(path, sizeof path, "/events/stream?after=%lld", base);
    h_sse *s = h_sse_open(env, f->auditor, path, NULL, NULL);
    assert_non_null(s);

    h_resp r;
    assert_int_equal(h_post(env, env->admin_key,
                            "{\"full_name\": \"Stream Watcher\", \"country\": \"FR\"}", &r,
                            "/customers"),
                     0);
    assert_int_equal(r.status, 201);
    h_resp_free(&r);
    assert_true(sequence_all(env) > base);
    long long top = emit(env, "it.order", 20);
    assert_true(top > base + 20);
    assert_int_equal(expect_rows(env, s, base, top, NULL, 500, "in-order stream"), 0);

    /* Live: later events arrive on the same open stream. */
    long long more = emit(env, "it.order.later", 5);
    assert_int_equal(expect_rows(env, s, top, more, NULL, 300, "live stream"), 0);
    h_sse_close(s);
}

static void reconnect_with_last_event_id_gets_exactly_the_missed_events(void **state)
{
    fixture *f = *state;
    h_env *env = f->env;
    long long base = log_head(env);
    long long top = emit(env, "it.resume", 10);
    assert_true(top == base + 10);
    char path[128], last[32];
    snprintf(path, sizeof path, "/events/stream?after=%lld", base);
    h_sse *s = h_sse_open(env, f->auditor, path, NULL, NULL);
    assert_non_null(s);
    assert_int_equal(expect_rows(env, s, base, base + 4, NULL, 0, "before disconnect"), 0);
    h_sse_close(s); /* mid-stream: six events were sent or queued after these */

    long long top2 = emit(env, "it.resume.while-away", 10);
    /* Last-Event-ID wins over ?after= (here 0, which would replay everything). */
    snprintf(last, sizeof last, "%lld", base + 4);
    s = h_sse_open(env, f->auditor, "/events/stream?after=0", last, NULL);
    assert_non_null(s);
    assert_int_equal(expect_rows(env, s, base + 4, top2, NULL, 500, "after reconnect"), 0);
    h_sse_close(s);

    /* Bad positions are refused, naming the field. */
    const char *bad_id[] = {"Last-Event-ID: abc", NULL};
    assert_int_equal(refused(env, f->auditor, bad_id, "/events/stream", "Last-Event-ID"), 422);
    assert_int_equal(refused(env, f->auditor, NULL, "/events/stream?after=-3", "after"), 422);
    assert_int_equal(refused(env, f->auditor, NULL, "/events/stream?type=%0A", "type"), 422);
}

static void stream_type_filter_skips_other_events_keeping_real_ids(void **state)
{
    fixture *f = *state;
    h_env *env = f->env;
    long long base = log_head(env);
    char path[160];
    snprintf(path, sizeof path, "/events/stream?after=%lld&type=it.filter.b", base);
    h_sse *only_b = h_sse_open(env, f->auditor, path, NULL, NULL);
    snprintf(path, sizeof path, "/events/stream?after=%lld&type=it.filter.", base);
    h_sse *both = h_sse_open(env, f->analyst, path, NULL, NULL);
    assert_non_null(only_b);
    assert_non_null(both);
    emit(env, "it.filter.a", 3);
    emit(env, "it.filter.b", 2);
    emit(env, "it.other", 2);
    emit(env, "it.filter.a", 2);
    long long top = emit(env, "it.filter.b", 3);
    assert_int_equal(top, base + 12);
    int n;
    ev_row *rows = fetch_rows(env, base, top, "it.filter.b", &n);
    assert_int_equal(n, 5);
    assert_int_equal(rows[2].seq, base + 10); /* ids are the real, non-contiguous seqs */
    free(rows);
    assert_int_equal(expect_rows(env, only_b, base, top, "it.filter.b", 800, "type=it.filter.b"),
                     0);
    assert_int_equal(expect_rows(env, both, base, top, "it.filter.", 300, "type=it.filter."), 0);
    h_sse_close(only_b);
    h_sse_close(both);
}

/* NCLIENTS streams after `base`, alternating the auditor's and the analyst's
 * keys; all must open. */
static h_sse **open_streams(fixture *f, long long base)
{
    char path[128];
    snprintf(path, sizeof path, "/events/stream?after=%lld", base);
    h_sse **s = calloc(NCLIENTS, sizeof *s);
    assert_non_null(s);
    int opened = 0;
    for (int i = 0; i < NCLIENTS; i++)
        opened +=
            (s[i] = h_sse_open(f->env, i % 2 ? f->auditor : f->analyst, path, NULL, NULL)) != NULL;
    assert_int_equal(opened, NCLIENTS);
    return s;
}

/* Every stream of open_streams(f, base) sends exactly the rows in
 * (base, top], in order (every 50th is also watched 200 ms for extras);
 * then closes them. The number of rows. */
static int check_and_close_streams(h_env *env, h_sse **s, long long base, long long top)
{
    int n;
    ev_row *rows = fetch_rows(env, base, top, NULL, &n);
    assert_int_equal(n, top - base);
    int bad = 0;
    char who[32];
    for (int i = 0; i < NCLIENTS; i++) {
        snprintf(who, sizeof who, "client %d", i);
        bad += check_stream(s[i], rows, n, i % 50 == 0 ? 200 : 0, who);
    }
    assert_int_equal(bad, 0);
    free(rows);
    for (int i = 0; i < NCLIENTS; i++)
        h_sse_close(s[i]);
    free(s);
    return n;
}

static void many_concurrent_streams_each_get_the_whole_burst(void **state)
{
    fixture *f = *state;
    long long base = log_head(f->env);
    h_sse **s = open_streams(f, base);
    long long t0 = h_now_ms();
    long long top = emit(f->env, "it.burst", 500);
    assert_int_equal(top, base + 500);
    int n = check_and_close_streams(f->env, s, base, top);
    fprintf(stderr, "%d streams x %d events checked in %lld ms\n", NCLIENTS, n, h_now_ms() - t0);
}

/* Events committed one at a time while many streams are open: the hub
 * paces its wake-ups by the number of streams (sse.c, SSE_PACE_US_PER_STREAM)
 * and folds what commits meanwhile into the next one. Every stream still gets
 * every event once, in order, and promptly after the last commit. */
static void many_streams_get_a_trickle_of_single_commits(void **state)
{
    fixture *f = *state;
    long long base = log_head(f->env);
    h_sse **s = open_streams(f, base);
    enum { NTRICKLE = 60 };
    long long top = base;
    for (int i = 0; i < NTRICKLE; i++) {
        top = emit(f->env, "it.trickle", 1);
        assert_int_equal(top, base + i + 1);
        h_sleep_ms(3);
    }
    long long t_last = h_now_ms();
    int n = check_and_close_streams(f->env, s, base, top);
    long long took = h_now_ms() - t_last;
    fprintf(stderr,
            "%d streams x %d single commits: checked %lld ms after the last"
            " (quiet checks included)\n",
            NCLIENTS, n, took);
    assert_true(took < 5000);
}

static void stream_auth_accepts_access_token_only_without_a_header(void **state)
{
    fixture *f = *state;
    h_env *env = f->env;
    char path[512];
    assert_int_equal(refused(env, NULL, NULL, "/events/stream", "Authorization"), 401);
    assert_int_equal(refused(env, "vgl_not-a-key", NULL, "/events/stream", NULL), 401);
    assert_int_equal(refused(env, f->ingest, NULL, "/events/stream", NULL), 403);
    snprintf(path, sizeof path, "/events/stream?access_token=%s", "vgl_not-a-key");
    assert_int_equal(refused(env, NULL, NULL, path, NULL), 401);
    snprintf(path, sizeof path, "/events/stream?access_token=%s", f->ingest);
    assert_int_equal(refused(env, NULL, NULL, path, NULL), 403);
    /* A header, even a bad one, wins over the query parameter. */
    snprintf(path, sizeof path, "/events/stream?access_token=%s", f->auditor);
    assert_int_equal(refused(env, "vgl_not-a-key", NULL, path, NULL), 401);

    /* The EventSource way: no header, key in the URL. */
    long long base = log_head(env);
    snprintf(path, sizeof path, "/events/stream?access_token=%s&after=%lld", f->auditor, base);
    h_sse *s = h_sse_open(env, NULL, path, NULL, NULL);
    assert_non_null(s);
    long long top = emit(env, "it.token", 2);
    assert_int_equal(expect_rows(env, s, base, top, NULL, 300, "access_token stream"), 0);
    h_sse_close(s);
}

static void sigterm_ends_open_streams_promptly(void **state)
{
    fixture *f = *state;
    h_env *env = f->env;
    long long base = log_head(env);
    char path[160];
    h_sse *s[3];
    snprintf(path, sizeof path, "/events/stream?after=%lld", base);
    s[0] = h_sse_open(env, f->auditor, path, NULL, NULL);
    snprintf(path, sizeof path, "/events/stream?after=%lld&type=it.never", base);
    s[1] = h_sse_open(env, f->auditor, path, NULL, NULL);
    s[2] = h_sse_open(env, f->auditor, "/events/stream?after=0", NULL, NULL);
    for (int i = 0; i < 3; i++)
        assert_non_null(s[i]);
    h_sleep_ms(300); /* all three caught up and suspended */

    long long t0 = h_now_ms();
    assert_int_equal(h_vigil_stop(env, SIGTERM), 0);
    long long took = h_now_ms() - t0;
    fprintf(stderr, "SIGTERM with 3 open streams: stopped in %lld ms\n", took);
    assert_true(took < 5000); /* VIGIL_SHUTDOWN_GRACE is 10 s */
    for (int i = 0; i < 3; i++) {
        h_sse_event ev;
        int rc;
        while ((rc = h_sse_next(s[i], &ev, 3000)) == 1) /* s[2] may still hold events */
            h_sse_event_free(&ev);
        assert_int_equal(rc, -1);
        h_sse_close(s[i]);
    }
}

/* ---- a small ring, a 1 s heartbeat, a low client limit ---------------------- */

#define RING_LIMIT 8

static void restart_with_small_ring(void **state)
{
    fixture *f = *state;
    if (f->env->vigil_pid)
        assert_int_equal(h_vigil_stop(f->env, SIGTERM), 0);
    const char *extra[] = {"VIGIL_SSE_RING=16", "VIGIL_SSE_HEARTBEAT=1", "VIGIL_SSE_MAX_CLIENTS=8",
                           NULL};
    assert_int_equal(h_vigil_start(f->env, extra), 0);
}

static void resume_from_far_behind_the_ring_gets_every_event_once(void **state)
{
    fixture *f = *state;
    h_env *env = f->env;
    long long top = emit(env, "it.ring", 300);
    assert_true(top > 300); /* far more than the 16 the ring holds */

    h_sse *s = h_sse_open(env, f->auditor, "/events/stream?after=0", NULL, NULL);
    assert_non_null(s);
    assert_int_equal(expect_rows(env, s, 0, top, NULL, 500, "after=0"), 0);
    h_sse_close(s);

    char last[32];
    snprintf(last, sizeof last, "%lld", top - 100);
    s = h_sse_open(env, f->auditor, "/events/stream", last, NULL);
    assert_non_null(s);
    assert_int_equal(expect_rows(env, s, top - 100, top, NULL, 300, "Last-Event-ID near the end"),
                     0);
    h_sse_close(s);

    /* Filtered, from the start: the database pages skip what does not match. */
    s = h_sse_open(env, f->auditor, "/events/stream?type=it.filter.b", NULL, NULL);
    assert_non_null(s);
    assert_int_equal(expect_rows(env, s, 0, top, "it.filter.b", 500, "filtered after=0"), 0);
    h_sse_close(s);
}

static void live_client_that_falls_out_of_the_ring_loses_nothing(void **state)
{
    fixture *f = *state;
    h_env *env = f->env;
    long long base = log_head(env);
    char path[128];
    snprintf(path, sizeof path, "/events/stream?after=%lld", base);
    h_sse *s = h_sse_open(env, f->auditor, path, NULL, NULL);
    assert_non_null(s);
    /* One event from the ring makes the client live ... */
    long long one = emit(env, "it.lag", 1);
    assert_int_equal(expect_rows(env, s, base, one, NULL, 0, "live"), 0);
    /* ... then batches of 50 each push the whole 16-slot ring past it. */
    long long top = one;
    for (int i = 0; i < 10; i++)
        top = emit(env, "it.lag", 50);
    assert_int_equal(top, one + 500);
    assert_int_equal(expect_rows(env, s, one, top, NULL, 500, "lagging"), 0);
    h_sse_close(s);

    char *log = h_read_file(env->vigil_log);
    assert_non_null(log);
    assert_non_null(strstr(log, "fell behind the ring"));
    free(log);
}

static void stream_survives_a_database_restart(void **state)
{
    fixture *f = *state;
    h_env *env = f->env;
    long long base = log_head(env);
    char path[128];
    snprintf(path, sizeof path, "/events/stream?after=%lld", base);
    h_sse *s = open_retrying(env, f->auditor, path, 5000); /* slots of closed streams */
    assert_non_null(s);
    long long mid = emit(env, "it.pg.before", 5);
    assert_int_equal(expect_rows(env, s, base, mid, NULL, 0, "before the restart"), 0);

    /* The hub loses its connection and LISTEN; the stream stays open (its
     * heartbeats go on) and resumes when the hub is back. */
    assert_int_equal(h_pg_restart(env, "fast"), 0);
    long long top = emit(env, "it.pg.after", 5);
    assert_int_equal(top, mid + 5);
    assert_int_equal(expect_rows(env, s, mid, top, NULL, 500, "after the restart"), 0);
    h_sse_close(s);
}

/* A raw HTTP/1.1 GET; the connected socket, or -1. */
static int raw_get(h_env *env, const char *path, const char *key)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)env->http_port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("raw_get: connect");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                     "Accept: text/event-stream\r\n\r\n",
                     path, key);
    if (write(fd, req, (size_t)n) != n) {
        perror("raw_get: write");
        close(fd);
        return -1;
    }
    return fd;
}

/* Everything the socket delivers within ms (NUL-terminated). */
static size_t raw_read_for(int fd, int ms, char *buf, size_t cap)
{
    size_t len = 0;
    long long end = h_now_ms() + ms;
    for (long long left; len + 1 < cap && (left = end - h_now_ms()) > 0;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return len;
}

static void idle_stream_gets_retry_and_heartbeats(void **state)
{
    fixture *f = *state;
    h_env *env = f->env;
    char path[128], buf[8192];
    snprintf(path, sizeof path, "/events/stream?after=%lld", log_head(env));
    int fd = raw_get(env, path, f->auditor);
    assert_true(fd >= 0);
    raw_read_for(fd, 3600, buf, sizeof buf);
    close(fd);
    if (strncmp(buf, "HTTP/1.1 200", 12) != 0)
        fprintf(stderr, "raw stream response: %.500s\n", buf);
    assert_true(strncmp(buf, "HTTP/1.1 200", 12) == 0);
    assert_non_null(strcasestr(buf, "content-type: text/event-stream"));
    assert_non_null(strcasestr(buf, "x-request-id:"));
    assert_non_null(strstr(buf, "\nretry: 2000\n"));
    int beats = 0;
    for (const char *p = buf; (p = strstr(p, "\n: keep-alive\n")); p++)
        beats++;
    fprintf(stderr, "heartbeats in 3.6 s with VIGIL_SSE_HEARTBEAT=1: %d\n", beats);
    assert_true(beats >= 2 && beats <= 5);
    assert_null(strstr(buf, "\nid: "));
}

/* CPU seconds (user + system) the process has used, or -1. */
static double cpu_seconds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    char *stat = h_read_file(path);
    const char *p = stat ? strrchr(stat, ')') : NULL; /* the name may hold spaces */
    unsigned long ut = 0, st = 0;
    int ok =
        p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2;
    free(stat);
    return ok ? (double)(ut + st) / (double)sysconf(_SC_CLK_TCK) : -1;
}

static void streams_beyond_the_limit_get_503(void **state)
{
    fixture *f = *state;
    h_env *env = f->env;
    /* Streams the earlier tests closed hold their slots until the server
     * notices, at the latest on their next heartbeat: retry for a while. */
    h_sse *s[RING_LIMIT];
    for (int i = 0; i < RING_LIMIT; i++) {
        s[i] = open_retrying(env, f->auditor, "/events/stream?type=it.never", 5000);
        assert_non_null(s[i]);
    }
    long saved = env->http_timeout_ms;
    env->http_timeout_ms = 5000; /* a wrongly admitted stream would never end */
    h_resp r;
    assert_int_equal(get_status(env, f->auditor, NULL, "/events/stream", &r), 503);
    assert_true(strncmp(r.content_type, "application/problem+json", 24) == 0);
    assert_true(r.retry_after[0] != '\0');
    h_resp_free(&r);
    env->http_timeout_ms = saved;

    /* Idle suspended streams cost no CPU (a reader that returned 0 without
     * suspending would spin a worker thread at 100%). */
    double cpu0 = cpu_seconds(env->vigil_pid);
    h_sleep_ms(2000);
    double cpu = cpu_seconds(env->vigil_pid) - cpu0;
    fprintf(stderr, "vigil CPU with %d idle streams over 2 s: %.2f s\n", RING_LIMIT, cpu);
    assert_true(cpu0 >= 0 && cpu < 0.5);

    /* A closed stream frees its slot. */
    h_sse_close(s[0]);
    h_sse *again = open_retrying(env, f->auditor, "/events/stream?type=it.never", 5000);
    assert_non_null(again);
    h_sse_close(again);
    for (int i = 1; i < RING_LIMIT; i++)
        h_sse_close(s[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(list_pages_in_seq_order_and_filters_by_type_prefix),
        cmocka_unit_test(stream_sends_every_event_in_seq_order),
        cmocka_unit_test(reconnect_with_last_event_id_gets_exactly_the_missed_events),
        cmocka_unit_test(stream_type_filter_skips_other_events_keeping_real_ids),
        cmocka_unit_test(many_concurrent_streams_each_get_the_whole_burst),
        cmocka_unit_test(many_streams_get_a_trickle_of_single_commits),
        cmocka_unit_test(stream_auth_accepts_access_token_only_without_a_header),
        cmocka_unit_test(sigterm_ends_open_streams_promptly),
        cmocka_unit_test(restart_with_small_ring),
        cmocka_unit_test(resume_from_far_behind_the_ring_gets_every_event_once),
        cmocka_unit_test(live_client_that_falls_out_of_the_ring_loses_nothing),
        cmocka_unit_test(idle_stream_gets_retry_and_heartbeats),
        cmocka_unit_test(streams_beyond_the_limit_get_503),
        cmocka_unit_test(stream_survives_a_database_restart),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
