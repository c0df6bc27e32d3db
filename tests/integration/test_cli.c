/*
 * test_cli.c — the operators' commands, run as an operator runs them: the
 * real `vigil` binary against a real PostgreSQL and nats-server.
 *
 *   import   CSV (quotes, CRLF, a multi-line field) and JSON Lines; every bad
 *            line reported with its line number and field and written to the
 *            rejects file, good lines imported even when the database refuses
 *            rows of their batch; a re-run inserts nothing twice and reports
 *            duplicates; plain progress lines when stderr is not a terminal.
 *   status   --json compared with what PostgreSQL and JetStream say; NATS
 *            down is shown, PostgreSQL down is exit 3.
 *   events tail  --after / --type / --last, and --follow seeing new events.
 *   demo seed    every built-in rule fires; a re-run of the seed adds nothing.
 */
#include "harness.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static h_env *env;
static char cust[64];

static int setup(void **state)
{
    env = h_setup(1);
    if (!env)
        return -1;
    h_resp r;
    if (h_post(env, env->admin_key, "{\"full_name\": \"Import Target\", \"country\": \"DE\"}", &r,
               "/customers") != 0 ||
        r.status != 201) {
        h_resp_free(&r);
        return -1;
    }
    snprintf(cust, sizeof cust, "%s", json_string_value(json_object_get(r.json, "id")));
    h_resp_free(&r);
    return 0;
}

static int teardown(void **state)
{
    h_teardown(env);
    return 0;
}

/* Waits until the outbox is empty and the publisher has acked the head;
 * returns the head seq. */
static long long wait_published(void)
{
    long long deadline = h_now_ms() + 30000, head = -1;
    while (h_now_ms() < deadline) {
        head = h_db_count(env, "SELECT coalesce(max(seq), 0) FROM event_log");
        if (h_db_count(env, "SELECT count(*) FROM outbox") == 0 &&
            h_db_count(env, "SELECT seq FROM cursors WHERE name = 'publisher'") == head)
            return head;
        h_sleep_ms(100);
    }
    fail_msg("events not published within 30 s (head %lld)", head);
    return -1;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* Runs vigil with argv; returns the exit code, stdout and stderr. */
static int run(char **out, char **err, const char *const *argv)
{
    return h_vigil_runv(env, NULL, NULL, out, err, argv);
}

static int count_substr(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* The rejects file as an array of its JSON lines. */
static json_t *read_rejects(const char *path)
{
    char *text = h_read_file(path);
    assert_non_null(text);
    json_t *a = json_array();
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t e;
        json_t *j = json_loads(line, 0, &e);
        if (!j)
            fail_msg("rejects line is not JSON (%s): %s", e.text, line);
        json_array_append_new(a, j);
    }
    free(text);
    return a;
}

static void expect_reject(const json_t *rejects, size_t i, long line, const char *field,
                          const char *reason_part)
{
    const json_t *r = json_array_get(rejects, i);
    assert_non_null(r);
    if (json_integer_value(json_object_get(r, "line")) != line ||
        strcmp(json_string_value(json_object_get(r, "field")), field) != 0 ||
        !strstr(json_string_value(json_object_get(r, "reason")), reason_part))
        fail_msg("reject %zu: want line %ld field %s (%s), got %s", i, line, field, reason_part,
                 json_dumps(r, JSON_COMPACT));
}

static long long tx_count(const char *prefix)
{
    return h_db_count(env, "SELECT count(*) FROM transactions WHERE starts_with(external_id, $1)",
                      prefix);
}

static void import_csv(void **state)
{
    char path[512], rejects[600], text[4096];
    snprintf(path, sizeof path, "%s/tx.csv", env->dir);
    snprintf(rejects, sizeof rejects, "%s.rejects", path);
    const char *nobody = "00000000-0000-4000-8000-000000000001";
    /* Line numbers are physical lines: line 4's quoted name spans 4-5. */
    snprintf(text, sizeof text,
             "external_id,customer_id,amount,currency,direction,channel,occurred_at,"
             "counterparty_name,counterparty_country\r\n"
             /* 2 */ "csv-1,%s,100.00,USD,in,wire,2026-01-05T10:00:00Z,\"Acme \"\"Best\"\", "
             "Inc.\",US\r\n"
             /* 3 */ "csv-2,%s,12.345,USD,in,wire,2026-01-05T10:00:00Z,,\r\n"
             /* 4 */ "csv-3,%s,250.50,EUR,out,card,2026-01-05T11:00:00Z,\"Two\r\nLines\",DE\r\n"
             /* 6 */ "csv-4,%s,10.00,USD,in,wire,2026-01-05T12:00:00Z,,\r\n"
             /* 7 */ "csv-5,%s,20.00,USD,sideways,wire,2026-01-05T12:00:00Z,,\r\n"
             /* 8 */ "csv-6,%s,30.00,USD,in,wire,2026-01-05T12:00:00Z,Bad\"Quote,\r\n"
             /* 9 */ "csv-7,%s,40.00,USD,in,wire,2026-01-05T12:00:00Z\r\n"
             /* 10 */ "\r\n"
             /* 11 */ "csv-8,%s,50.00,USD,out,ach,2026-01-05T13:00:00Z,,ZZ\r\n"
             /* 12 */ "csv-9,%s,60.00,USD,out,ach,2026-01-05T13:30:00Z,,FR\r\n",
             cust, cust, cust, nobody, cust, cust, cust, cust, cust);
    write_file(path, text);

    char *out = NULL, *err = NULL;
    const char *const argv[] = {"import", "transactions", path, "--batch",
                                "2",      "--progress",   "0",  NULL};
    assert_int_equal(run(&out, &err, argv), 1); /* lines were rejected */
    fprintf(stderr, "first run:\n%s%s", out, err);
    assert_non_null(strstr(out, "9 records: 2 imported, 0 duplicates, 7 rejected"));
    /* Each rejected line on stderr with its number and field. */
    assert_non_null(strstr(err, "line 3: amount: "));
    assert_non_null(strstr(err, "line 4: counterparty_name: ")); /* a CR LF in a name */
    assert_non_null(strstr(err, "line 6: customer_id: unknown customer"));
    assert_non_null(strstr(err, "line 7: direction: "));
    assert_non_null(strstr(err, "line 8: record: quote inside an unquoted field"));
    assert_non_null(strstr(err, "line 9: record: has 7 fields, the header has 9"));
    assert_non_null(strstr(err, "line 11: counterparty_country: "));
    /* Not a terminal: plain progress lines, no carriage returns. */
    assert_true(count_substr(err, "progress: ") >= 2);
    assert_null(strchr(err, '\r'));
    json_t *rj = read_rejects(rejects);
    assert_int_equal(json_array_size(rj), 7);
    /* In the order found: line 6 is refused by the database when the batch
     * of lines 2 and 6 (--batch 2 counts valid lines) is sent. */
    expect_reject(rj, 0, 3, "amount", "");
    expect_reject(rj, 1, 4, "counterparty_name", "control characters");
    expect_reject(rj, 2, 6, "customer_id", "unknown customer");
    expect_reject(rj, 3, 7, "direction", "");
    expect_reject(rj, 4, 8, "record", "quote");
    expect_reject(rj, 5, 9, "record", "fields");
    expect_reject(rj, 6, 11, "counterparty_country", "");
    /* The original line is kept for fixing and re-importing. */
    const char *raw = json_string_value(json_object_get(json_array_get(rj, 0), "record"));
    assert_non_null(raw);
    assert_int_equal(strncmp(raw, "csv-2,", 6), 0);
    assert_non_null(strstr(raw, ",12.345,USD,"));
    assert_null(strchr(raw, '\n'));
    json_decref(rj);
    free(out);
    free(err);
    /* The good lines landed, with their quoted values intact. */
    assert_int_equal(tx_count("csv-"), 2);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM transactions WHERE external_id IN"
                                     " ('csv-1', 'csv-9')"),
                     2);
    char *name =
        h_db_text(env, "SELECT counterparty_name FROM transactions WHERE external_id = 'csv-1'");
    assert_non_null(name);
    assert_string_equal(name, "Acme \"Best\", Inc.");
    free(name);

    /* An unknown column stops the import before anything is written (a
     * typo must not silently drop a field). */
    char bad_path[600];
    snprintf(bad_path, sizeof bad_path, "%s/typo.csv", env->dir);
    snprintf(text, sizeof text,
             "external_id,customer_id,amout,currency,direction,channel,occurred_at\n"
             "typo-1,%s,1.00,USD,in,wire,2026-01-05T10:00:00Z\n",
             cust);
    write_file(bad_path, text);
    const char *const typo[] = {"import", "transactions", bad_path, NULL};
    assert_int_equal(run(&out, &err, typo), 1);
    assert_non_null(strstr(err, "line 1: unknown column 'amout'"));
    assert_int_equal(tx_count("typo-"), 0);
    free(out);
    free(err);

    /* Resume: the same file again inserts nothing and says why. */
    assert_int_equal(run(&out, &err, argv), 1);
    assert_non_null(strstr(out, "9 records: 0 imported, 2 duplicates, 7 rejected"));
    assert_int_equal(tx_count("csv-"), 2);
    free(out);
    free(err);
}

static void import_jsonl(void **state)
{
    char path[512], rejects[600], text[4096];
    snprintf(path, sizeof path, "%s/tx.data", env->dir);
    snprintf(rejects, sizeof rejects, "%s/bad.jsonl", env->dir);
    snprintf(text, sizeof text,
             /* 1 */
             "{\"external_id\":\"jl-1\",\"customer_id\":\"%s\",\"amount\":\"5.00\","
             "\"currency\":\"USD\",\"direction\":\"in\",\"channel\":\"card\","
             "\"occurred_at\":\"2026-01-06T10:00:00Z\"}\n"
             /* 2 */ "{\"external_id\":\"jl-2\",\"customer_id\":\"%s\",\"amount\":5,"
             "\"currency\":\"USD\",\"direction\":\"in\",\"channel\":\"card\","
             "\"occurred_at\":\"2026-01-06T10:00:00Z\"}\n"
             /* 3 */ "{not json\n"
             /* 4 */ "\n"
             /* 5 */ "{\"external_id\":\"jl-1\",\"customer_id\":\"%s\",\"amount\":\"5.00\","
             "\"currency\":\"USD\",\"direction\":\"in\",\"channel\":\"card\","
             "\"occurred_at\":\"2026-01-06T10:00:00Z\"}\r\n"
             /* 6 */ "{\"external_id\":\"jl-3\",\"customer_id\":\"%s\",\"amount\":\"7.25\","
             "\"currency\":\"USD\",\"direction\":\"out\",\"channel\":\"card\","
             "\"occurred_at\":\"2026-01-06T11:00:00Z\",\"amout\":\"1\"}\n"
             /* 7 */ "{\"external_id\":\"jl-4\",\"customer_id\":\"%s\",\"amount\":\"8.00\","
             "\"currency\":\"USD\",\"direction\":\"out\",\"channel\":\"card\","
             "\"occurred_at\":\"2026-01-06T12:00:00Z\",\"counterparty\":{\"name\":\"Shop\"}}",
             cust, cust, cust, cust, cust);
    write_file(path, text);
    char *out = NULL, *err = NULL;
    const char *const argv[] = {"import", "transactions", path,    "--format",
                                "jsonl",  "--rejects",    rejects, NULL};
    assert_int_equal(run(&out, &err, argv), 1);
    fprintf(stderr, "%s%s", out, err);
    /* jl-1 twice in the file: the second is a duplicate, not a new row. */
    assert_non_null(strstr(out, "6 records: 2 imported, 1 duplicates, 3 rejected"));
    assert_non_null(strstr(err, "line 2: amount: "));
    assert_non_null(strstr(err, "line 3: record: not valid JSON"));
    assert_non_null(strstr(err, "line 6: amout: "));
    json_t *rj = read_rejects(rejects);
    assert_int_equal(json_array_size(rj), 3);
    json_decref(rj);
    assert_int_equal(tx_count("jl-"), 2);
    free(out);
    free(err);

    /* A clean file: exit 0, and a stale rejects file from an earlier run
     * of the same name is removed. */
    snprintf(path, sizeof path, "%s/clean.jsonl", env->dir);
    snprintf(rejects, sizeof rejects, "%s.rejects", path);
    write_file(rejects, "stale\n");
    snprintf(text, sizeof text,
             "{\"external_id\":\"jl-5\",\"customer_id\":\"%s\",\"amount\":\"9.00\","
             "\"currency\":\"USD\",\"direction\":\"in\",\"channel\":\"ach\","
             "\"occurred_at\":\"2026-01-06T13:00:00Z\"}\n",
             cust);
    write_file(path, text);
    const char *const argv2[] = {"import", "transactions", path, NULL};
    assert_int_equal(run(&out, &err, argv2), 0);
    assert_non_null(strstr(out, "1 records: 1 imported, 0 duplicates, 0 rejected"));
    assert_null(h_read_file(rejects));
    free(out);
    free(err);

    /* Usage errors are exit 2 and touch nothing. */
    const char *const bad[] = {"import", "transactions", "/nonexistent.txt", NULL};
    assert_int_equal(run(NULL, NULL, bad), 2);
}

static void events_tail(void **state)
{
    long long head = wait_published();
    char *out = NULL;
    const char *const all[] = {"events", "tail", "--after", "0", NULL};
    assert_int_equal(run(&out, NULL, all), 0);
    assert_int_equal(count_substr(out, "\"specversion\""), head);
    json_t *first = json_loadb(out, strcspn(out, "\n"), 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(first, "seq")), 1);
    json_decref(first);
    free(out);

    const char *const typed[] = {"events",           "tail", "--after", "0", "--type",
                                 "aml.transaction.", NULL};
    assert_int_equal(run(&out, NULL, typed), 0);
    assert_int_equal(count_substr(out, "\"specversion\""),
                     h_db_count(env, "SELECT count(*) FROM event_log WHERE"
                                     " event_type LIKE 'aml.transaction.%'"));
    assert_int_equal(count_substr(out, "\"type\": \"aml.transaction.ingested\"") +
                         count_substr(out, "\"type\":\"aml.transaction.ingested\""),
                     count_substr(out, "\"specversion\""));
    free(out);

    const char *const last2[] = {"events", "tail", "--last", "2", NULL};
    assert_int_equal(run(&out, NULL, last2), 0);
    assert_int_equal(count_substr(out, "\"specversion\""), 2);
    free(out);

    /* --follow: started at the head, it prints the events that come next. */
    char after[32], log[H_PATH_SIZE];
    head = h_db_count(env, "SELECT max(seq) FROM event_log");
    snprintf(after, sizeof after, "%lld", head);
    const char *const follow[] = {"events", "tail",    "--follow", "--after",
                                  after,    "--limit", "3",        NULL};
    pid_t pid = h_vigil_spawn(env, NULL, follow, log, sizeof log);
    assert_true(pid > 0);
    h_sleep_ms(700);
    h_resp r;
    /* A new customer: aml.customer.created, its risk and its KYC tasks. */
    assert_int_equal(h_post(env, env->admin_key, "{\"full_name\": \"Followed\"}", &r, "/customers"),
                     0);
    assert_int_equal(r.status, 201);
    h_resp_free(&r);
    assert_int_equal(h_proc_stop(pid, 0, 20000), 0);
    char *text = h_read_file(log);
    assert_non_null(text);
    assert_int_equal(count_substr(text, "\"specversion\""), 3);
    char want[64];
    snprintf(want, sizeof want, "\"seq\": %lld", head + 1);
    if (!strstr(text, want)) {
        snprintf(want, sizeof want, "\"seq\":%lld", head + 1);
        assert_non_null(strstr(text, want));
    }
    free(text);
}

/* Compares one `status --json` snapshot with PostgreSQL and JetStream read
 * right after it. Returns NULL when they agree, else what differs. The
 * consumers keep working between the two reads, so callers retry. */
static const char *status_disagreement(json_t *s, char *why, size_t whysz)
{
    long long head = h_db_count(env, "SELECT coalesce(max(seq), 0) FROM event_log");
    json_t *el = json_object_get(s, "event_log"), *pub = json_object_get(s, "publisher");
    json_t *seq = json_object_get(json_object_get(s, "leaders"), "sequencer");
    json_t *pl = json_object_get(json_object_get(s, "leaders"), "publisher");
    json_t *st = json_object_get(s, "stream");
    char pid[32];
    snprintf(pid, sizeof pid, "%lld", (long long)json_integer_value(json_object_get(seq, "pid")));
#define DIFF(cond, ...)                                                                            \
    if (cond) {                                                                                    \
        snprintf(why, whysz, __VA_ARGS__);                                                         \
        return why;                                                                                \
    }
    DIFF(json_integer_value(json_object_get(el, "last_seq")) != head, "last_seq vs %lld", head);
    DIFF(json_integer_value(json_object_get(pub, "cursor")) !=
             h_db_count(env, "SELECT seq FROM cursors WHERE name = 'publisher'"),
         "publisher cursor");
    DIFF(json_integer_value(json_object_get(pub, "lag")) != 0, "publisher lag");
    DIFF(json_integer_value(json_object_get(json_object_get(s, "outbox"), "pending")) != 0,
         "outbox pending");
    /* The leaders are the backends holding the advisory locks. */
    DIFF(!json_is_true(json_object_get(seq, "held")) || !json_is_true(json_object_get(pl, "held")),
         "a leader is missing");
    DIFF(h_db_count(env,
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND pid = $1::int",
                    pid) != 1,
         "sequencer pid %s holds no advisory lock", pid);
    /* The stream as JetStream reports it. */
    DIFF(!json_is_true(json_object_get(st, "ok")), "stream not ok");
    DIFF(json_integer_value(json_object_get(st, "messages")) != h_js_stream_msgs(env, "AML_EVENTS"),
         "stream messages");
    DIFF(json_integer_value(json_object_get(st, "last_seq")) != head, "stream last_seq");
    /* Consumers: processed counts from processed_events, JetStream info. */
    json_t *cs = json_object_get(s, "consumers");
    DIFF(json_array_size(cs) < 1, "no consumers");
    size_t i;
    json_t *c;
    json_array_foreach(cs, i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));
        json_t *j = json_object_get(c, "jetstream");
        DIFF(json_integer_value(json_object_get(c, "processed")) !=
                 h_db_count(env, "SELECT count(*) FROM processed_events WHERE consumer = $1", name),
             "consumer %s: processed", name);
        DIFF(!json_is_true(json_object_get(j, "ok")), "consumer %s: JetStream info missing", name);
        DIFF(json_integer_value(json_object_get(j, "delivered_stream_seq")) > head,
             "consumer %s: delivered beyond the head", name);
    }
    DIFF(json_integer_value(json_object_get(json_object_get(s, "dead_letters"), "dead")) !=
             h_db_count(env, "SELECT count(*) FROM dead_letters WHERE status = 'dead'"),
         "dead letters");
#undef DIFF
    return NULL;
}

static void status_json(void **state)
{
    wait_published();
    char *out = NULL, why[200] = "";
    const char *const argv[] = {"status", "--json", NULL};
    const char *diff = "never compared";
    json_t *s = NULL;
    for (int tries = 0; tries < 75 && diff; tries++) {
        if (tries)
            h_sleep_ms(200);
        json_decref(s);
        assert_int_equal(run(&out, NULL, argv), 0);
        s = json_loads(out, 0, NULL);
        free(out);
        assert_non_null(s);
        diff = status_disagreement(s, why, sizeof why);
    }
    if (diff)
        fail_msg("vigil status --json disagrees with the database: %s", diff);
    json_decref(s);
    size_t i;
    json_t *c;

    /* The human form names each part. */
    const char *const human[] = {"status", NULL};
    assert_int_equal(run(&out, NULL, human), 0);
    assert_non_null(strstr(out, "sequencer  backend pid"));
    assert_non_null(strstr(out, "stream      AML_EVENTS:"));
    assert_non_null(strstr(out, "dead letters 0 dead"));
    free(out);

    /* NATS down: shown, not fatal. */
    long long head = h_db_count(env, "SELECT max(seq) FROM event_log");
    assert_int_equal(h_nats_stop(env, SIGTERM), 0);
    assert_int_equal(run(&out, NULL, argv), 0);
    s = json_loads(out, 0, NULL);
    free(out);
    assert_non_null(s);
    assert_true(json_is_false(json_object_get(json_object_get(s, "stream"), "ok")));
    assert_non_null(json_string_value(json_object_get(json_object_get(s, "stream"), "error")));
    json_array_foreach(json_object_get(s, "consumers"), i, c)
    {
        json_t *j = json_object_get(c, "jetstream");
        assert_true(json_is_false(json_object_get(j, "ok")));
        assert_string_equal(json_string_value(json_object_get(j, "error")), "NATS unavailable");
    }
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(s, "event_log"), "last_seq")), head);
    json_decref(s);
    assert_int_equal(h_nats_start(env), 0);
}

static void demo_seed(void **state)
{
    char *out = NULL, *err = NULL;
    const char *const argv[] = {"demo", "seed",   "--customers", "12", "--days",
                                "14",   "--seed", "7",           NULL};
    assert_int_equal(run(&out, &err, argv), 0);
    fprintf(stderr, "%s", out);
    assert_non_null(strstr(out, "customers 12 created"));
    assert_non_null(strstr(out, "0 rejected"));
    free(out);
    free(err);
    /* Every built-in rule raised at least one alert on the demo customers. */
    long long rules = h_db_count(env, "SELECT count(*) FROM rules");
    assert_int_equal(rules, 7);
    const char *q = "SELECT count(*) FROM rules r WHERE NOT EXISTS (SELECT 1 FROM alerts a JOIN"
                    " customers c ON c.id = a.customer_id WHERE a.rule_id = r.id AND"
                    " starts_with(c.external_id, 'demo-7-'))";
    if (h_db_count(env, q) != 0) {
        char *missing = h_db_text(env, "SELECT string_agg(id, ', ') FROM rules r WHERE NOT EXISTS"
                                       " (SELECT 1 FROM alerts a WHERE a.rule_id = r.id)");
        fail_msg("rules without a demo alert: %s", missing ? missing : "?");
    }
    long long ntx = h_db_count(env, "SELECT count(*) FROM transactions WHERE"
                                    " starts_with(external_id, 'demo-7-')");
    long long nalerts = h_db_count(env, "SELECT count(*) FROM alerts");
    assert_true(ntx > 100);
    /* The same seed again: everything is already there. */
    assert_int_equal(run(&out, &err, argv), 0);
    char want[160];
    snprintf(want, sizeof want,
             "customers 0 created, 12 already there; transactions 0 imported, "
             "%lld already there, 0 rejected",
             ntx);
    if (!strstr(out, want))
        fail_msg("want '%s' in:\n%s", want, out);
    free(out);
    free(err);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM alerts"), nalerts);
}

/* Last: PostgreSQL down is exit 3 for status. */
static void status_without_database(void **state)
{
    assert_int_equal(h_pg_stop(env, "fast"), 0);
    char *err = NULL;
    const char *const argv[] = {"status", NULL};
    assert_int_equal(run(NULL, &err, argv), 3);
    assert_non_null(strstr(err, "database unavailable"));
    free(err);
    assert_int_equal(h_pg_start(env), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(import_csv),  cmocka_unit_test(import_jsonl),
        cmocka_unit_test(events_tail), cmocka_unit_test(status_json),
        cmocka_unit_test(demo_seed),   cmocka_unit_test(status_without_database),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
