/*
 * test_malformed.c — bad input never costs data (DESIGN invariant 9).
 *
 * A table of malformed requests, each with the status it must get, the
 * problem+json "field" it must name where one applies, and the promise that
 * nothing was written: the row counts of customers, transactions, alerts,
 * outbox (and the risk and KYC rows a customer brings) are the same after
 * every case as before it.
 *
 * Most bodies are a valid customer or transaction with one defect applied
 * (a member replaced or removed), so the case tests that defect alone; the
 * last test sends the same templates without a defect and expects them to be
 * accepted, which proves the refusals came from the defects.
 *
 * vigil is started with VIGIL_MAX_BODY_BYTES=4096 and VIGIL_MAX_BATCH=5 so
 * that the limits can be crossed with small requests.
 */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#define MAX_BODY  4096
#define MAX_BATCH 5
#define STR_(x)   #x
#define STR(x)    STR_(x)

/* An unknown customer: a well-formed UUID no row has. */
#define NO_SUCH_CUSTOMER "7d3f9a52-1c4e-4b8a-9f0d-2e6b5c8a1f34"

typedef enum {
    B_NONE,   /* no body */
    B_RAW,    /* raw bytes */
    B_TX,     /* the valid transaction template, edited */
    B_CUST,   /* the valid customer template, edited */
    B_BATCH,  /* {"transactions": [n valid items]}, the last one edited */
    B_NESTED, /* n nested arrays */
    B_PADDED, /* the valid customer template followed by spaces up to n bytes */
} body_kind;

typedef struct mcase {
    const char *name;
    const char *method, *path; /* "{cid}" in path: the fixture's customer */
    body_kind kind;
    const char *set;    /* B_TX/B_CUST/B_BATCH: JSON object merged into the template */
    const char *drop;   /* ... member removed from it */
    const char *raw;    /* B_RAW */
    long raw_len;       /* B_RAW: -1 = strlen */
    int n;              /* B_BATCH items, B_NESTED depth, B_PADDED bytes */
    const char *header; /* one extra request header line */
    long status;
    const char *field; /* expected problem "field"; NULL = none applies */
    const char *item;  /* a field one of the problem's "errors" must name */
    const char *allow; /* 405: methods the Allow header must list */
} mcase;

#define TX "/transactions"
#define CU "/customers"

static const mcase cases[] = {
    /* wrong JSON types */
    {"amount as a JSON integer", "POST", TX, B_TX, .set = "{\"amount\": 100}", .status = 422,
     .field = "amount"},
    {"amount as a JSON fraction", "POST", TX, B_TX, .set = "{\"amount\": 100.5}", .status = 422,
     .field = "amount"},
    {"pep as a string", "POST", CU, B_CUST, .set = "{\"pep\": \"yes\"}", .status = 422,
     .field = "pep"},
    {"full_name as a number", "POST", CU, B_CUST, .set = "{\"full_name\": 5}", .status = 422,
     .field = "full_name"},

    /* missing required members */
    {"no external_id", "POST", TX, B_TX, .drop = "external_id", .status = 422,
     .field = "external_id"},
    {"no customer_id", "POST", TX, B_TX, .drop = "customer_id", .status = 422,
     .field = "customer_id"},
    {"no amount", "POST", TX, B_TX, .drop = "amount", .status = 422, .field = "amount"},
    {"no currency", "POST", TX, B_TX, .drop = "currency", .status = 422, .field = "currency"},
    {"no direction", "POST", TX, B_TX, .drop = "direction", .status = 422, .field = "direction"},
    {"no channel", "POST", TX, B_TX, .drop = "channel", .status = 422, .field = "channel"},
    {"no occurred_at", "POST", TX, B_TX, .drop = "occurred_at", .status = 422,
     .field = "occurred_at"},
    {"no full_name", "POST", CU, B_CUST, .drop = "full_name", .status = 422, .field = "full_name"},

    /* amounts */
    {"three decimals in USD", "POST", TX, B_TX, .set = "{\"amount\": \"10.123\"}", .status = 422,
     .field = "amount"},
    {"decimals in JPY", "POST", TX, B_TX, .set = "{\"amount\": \"1.5\", \"currency\": \"JPY\"}",
     .status = 422, .field = "amount"},
    {"negative amount", "POST", TX, B_TX, .set = "{\"amount\": \"-5\"}", .status = 422,
     .field = "amount"},
    {"zero amount", "POST", TX, B_TX, .set = "{\"amount\": \"0.00\"}", .status = 422,
     .field = "amount"},
    {"exponent notation", "POST", TX, B_TX, .set = "{\"amount\": \"1e5\"}", .status = 422,
     .field = "amount"},
    {"absurd amount", "POST", TX, B_TX, .set = "{\"amount\": \"99999999999999999999\"}",
     .status = 422, .field = "amount"},
    {"empty amount", "POST", TX, B_TX, .set = "{\"amount\": \"\"}", .status = 422,
     .field = "amount"},

    /* codes */
    {"lower-case currency", "POST", TX, B_TX, .set = "{\"currency\": \"usd\"}", .status = 422,
     .field = "currency"},
    {"unknown currency", "POST", TX, B_TX, .set = "{\"currency\": \"XXZ\"}", .status = 422,
     .field = "currency"},
    {"currency without an FX rate", "POST", TX, B_TX,
     .set = "{\"currency\": \"ARS\", \"amount\": \"10.00\"}", .status = 422, .field = "currency"},
    {"user-assigned country", "POST", CU, B_CUST, .set = "{\"country\": \"XX\"}", .status = 422,
     .field = "country"},
    {"lower-case country", "POST", CU, B_CUST, .set = "{\"country\": \"gb\"}", .status = 422,
     .field = "country"},
    {"bad counterparty country", "POST", TX, B_TX,
     .set = "{\"counterparty\": {\"name\": \"Bob\", \"country\": \"XX\"}}", .status = 422,
     .field = "counterparty.country"},
    {"unknown direction", "POST", TX, B_TX, .set = "{\"direction\": \"sideways\"}", .status = 422,
     .field = "direction"},
    {"unknown channel", "POST", TX, B_TX, .set = "{\"channel\": \"pigeon\"}", .status = 422,
     .field = "channel"},
    {"external_id with a space", "POST", TX, B_TX, .set = "{\"external_id\": \"a b\"}",
     .status = 422, .field = "external_id"},
    {"email without a domain", "POST", CU, B_CUST, .set = "{\"email\": \"ada@\"}", .status = 422,
     .field = "email"},

    /* dates */
    {"February 30th", "POST", TX, B_TX, .set = "{\"occurred_at\": \"2024-02-30T10:00:00Z\"}",
     .status = 422, .field = "occurred_at"},
    {"month 13", "POST", TX, B_TX, .set = "{\"occurred_at\": \"2024-13-01T00:00:00Z\"}",
     .status = 422, .field = "occurred_at"},
    {"\"yesterday\"", "POST", TX, B_TX, .set = "{\"occurred_at\": \"yesterday\"}", .status = 422,
     .field = "occurred_at"},
    {"timestamp without offset", "POST", TX, B_TX,
     .set = "{\"occurred_at\": \"2024-01-01T10:00:00\"}", .status = 422, .field = "occurred_at"},
    {"occurred_at centuries ahead", "POST", TX, B_TX,
     .set = "{\"occurred_at\": \"2999-01-01T00:00:00Z\"}", .status = 422, .field = "occurred_at"},
    {"date_of_birth in the future", "POST", CU, B_CUST,
     .set = "{\"date_of_birth\": \"2999-01-01\"}", .status = 422, .field = "date_of_birth"},
    {"date_of_birth before 1900", "POST", CU, B_CUST, .set = "{\"date_of_birth\": \"1899-12-31\"}",
     .status = 422, .field = "date_of_birth"},

    /* text */
    {"invalid UTF-8 bytes", "POST", CU, B_RAW, .raw = "{\"full_name\": \"\xff\xfe\"}",
     .raw_len = 19, .status = 400, .field = "body"},
    {"escaped control character", "POST", CU, B_CUST, .set = "{\"full_name\": \"A\\u0001B\"}",
     .status = 422, .field = "full_name"},
    {"raw control character", "POST", CU, B_RAW,
     .raw = "{\"full_name\": \"A\x01"
            "B\"}",
     .raw_len = -1, .status = 400, .field = "body"},
    {"blank full_name", "POST", CU, B_CUST, .set = "{\"full_name\": \"   \"}", .status = 422,
     .field = "full_name"},

    /* shape */
    {"100 nested arrays", "POST", TX, B_NESTED, .n = 100, .status = 400, .field = "body"},
    {"deep value inside a transaction", "POST", TX, B_TX,
     .set = "{\"counterparty\": {\"name\": [[[[[[[[[[[[[[[[[[[[\"x\"]]]]]]]]]]]]]]]]]]]]}}",
     .status = 400, .field = "body"},
    {"body over VIGIL_MAX_BODY_BYTES", "POST", CU, B_PADDED, .n = MAX_BODY + 904, .status = 413,
     .field = "body"},
    {"chunked body over the limit", "POST", CU, B_PADDED, .n = MAX_BODY + 904,
     .header = "Transfer-Encoding: chunked", .status = 413, .field = "body"},
    {"batch over VIGIL_MAX_BATCH", "POST", TX, B_BATCH, .n = MAX_BATCH + 1, .status = 413,
     .field = "transactions"},
    {"empty batch", "POST", TX, B_RAW, .raw = "{\"transactions\": []}", .raw_len = -1,
     .status = 422, .field = "transactions"},
    {"batch with one bad item", "POST", TX, B_BATCH, .n = 3, .set = "{\"amount\": \"-1\"}",
     .status = 422, .field = "transactions", .item = "transactions[2].amount"},
    {"batch with one unknown customer", "POST", TX, B_BATCH, .n = 3,
     .set = "{\"customer_id\": \"" NO_SUCH_CUSTOMER "\"}", .status = 422, .field = "transactions",
     .item = "transactions[2].customer_id"},
    {"batch with a member beside transactions", "POST", TX, B_RAW,
     .raw = "{\"transactions\": [], \"extra\": 1}", .raw_len = -1, .status = 422, .field = "body"},
    {"not JSON", "POST", TX, B_RAW, .raw = "hello", .raw_len = -1, .status = 400, .field = "body"},
    {"truncated JSON", "POST", CU, B_RAW, .raw = "{\"full_name\": \"Ada\"", .raw_len = -1,
     .status = 400, .field = "body"},
    {"top-level array for /customers", "POST", CU, B_RAW, .raw = "[]", .raw_len = -1,
     .status = 422},
    {"duplicate keys", "POST", CU, B_RAW, .raw = "{\"full_name\": \"Ada\", \"full_name\": \"Bob\"}",
     .raw_len = -1, .status = 400, .field = "body"},
    {"unknown member \"amout\"", "POST", TX, B_TX, .set = "{\"amout\": \"5.00\"}", .status = 422,
     .field = "amout"},
    {"unknown customer", "POST", TX, B_TX, .set = "{\"customer_id\": \"" NO_SUCH_CUSTOMER "\"}",
     .status = 422, .field = "customer_id"},
    {"customer_id not a UUID", "POST", TX, B_TX, .set = "{\"customer_id\": \"cust-42\"}",
     .status = 422, .field = "customer_id"},
    {"patch changing external_id", "PATCH", CU "/{cid}", B_RAW,
     .raw = "{\"external_id\": \"other\"}", .raw_len = -1, .status = 422, .field = "external_id"},
    {"patch with nothing to change", "PATCH", CU "/{cid}", B_RAW, .raw = "{}", .raw_len = -1,
     .status = 422},

    /* HTTP level */
    {"Content-Type text/plain", "POST", TX, B_TX, .header = "Content-Type: text/plain",
     .status = 415, .field = "Content-Type"},
    {"no Content-Type", "POST", CU, B_CUST, .header = "Content-Type:", .status = 415,
     .field = "Content-Type"},
    {"empty body", "POST", CU, B_RAW, .raw = "", .raw_len = 0, .status = 400, .field = "body"},
    {"unknown path", "GET", "/nope", B_NONE, .status = 404},
    {"trailing slash", "GET", CU "/", B_NONE, .status = 404},
    {"id that is not a UUID", "GET", CU "/not-a-uuid", B_NONE, .status = 404},
    {"DELETE /customers", "DELETE", CU, B_NONE, .status = 405, .allow = "GET POST"},
    {"PUT /transactions", "PUT", TX, B_TX, .status = 405, .allow = "GET POST"},
    {"limit=0", "GET", CU "?limit=0", B_NONE, .status = 422, .field = "limit"},
    {"limit=abc", "GET", CU "?limit=abc", B_NONE, .status = 422, .field = "limit"},
    {"limit above the maximum", "GET", TX "?limit=100000", B_NONE, .status = 422, .field = "limit"},
    {"customer_id filter not a UUID", "GET", TX "?customer_id=abc", B_NONE, .status = 422,
     .field = "customer_id"},
};
#define NCASES (sizeof cases / sizeof cases[0])

typedef struct fixture {
    h_env *env;
    char cid[40]; /* a customer that exists */
} fixture;

/* h_setup's steps, with vigil started under the small limits. */
static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    h_env *env = f ? h_env_new() : NULL;
    const char *limits[] = {"VIGIL_MAX_BODY_BYTES=" STR(MAX_BODY),
                            "VIGIL_MAX_BATCH=" STR(MAX_BATCH), NULL};
    h_resp r = {0};
    if (!env || h_pg_start(env) != 0 || h_migrate(env) != 0 ||
        h_key_create(env, "admin", env->admin_key, sizeof env->admin_key) != 0 ||
        h_vigil_start(env, limits) != 0 ||
        h_post(env, env->admin_key, "{\"full_name\": \"Ada Lovelace\"}", &r, CU) != 0 ||
        r.status != 201 || !json_is_string(json_object_get(r.json, "id"))) {
        fprintf(stderr, "setup failed (customer create: %ld %s)\n", r.status, r.body ? r.body : "");
        h_resp_free(&r);
        if (env)
            h_mark_failed(env);
        h_teardown(env);
        free(f);
        return -1;
    }
    f->env = env;
    snprintf(f->cid, sizeof f->cid, "%s", json_string_value(json_object_get(r.json, "id")));
    h_resp_free(&r);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f)
        h_teardown(f->env);
    free(f);
    return 0;
}

static json_t *tx_template(const fixture *f, const char *external_id)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:{s:s, s:s}}", "external_id",
                     external_id, "customer_id", f->cid, "amount", "100.00", "currency", "USD",
                     "direction", "in", "channel", "wire", "occurred_at", "2024-01-01T10:00:00Z",
                     "counterparty", "name", "Bob", "country", "DE");
}

static json_t *customer_template(void)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:b}", "full_name", "Ada Lovelace", "email",
                     "ada@example.com", "country", "GB", "date_of_birth", "1990-05-01", "pep", 0);
}

/* Applies the case's defect to a template object. */
static void edit(json_t *obj, const mcase *c)
{
    if (c->set) {
        json_error_t e;
        json_t *set = json_loads(c->set, 0, &e);
        assert_non_null(set); /* a typo in the table, not in the server */
        json_object_update(obj, set);
        json_decref(set);
    }
    if (c->drop)
        assert_int_equal(json_object_del(obj, c->drop), 0);
}

static char *dump(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    assert_non_null(s);
    return s;
}

/* The request body of case `idx` (malloc'ed; NULL for none); length in *len. */
static char *case_body(const fixture *f, const mcase *c, size_t idx, long *len)
{
    char ext[64];
    snprintf(ext, sizeof ext, "mal-%zu", idx);
    char *s = NULL;
    switch (c->kind) {
    case B_NONE:
        return NULL;
    case B_RAW:
        *len = c->raw_len >= 0 ? c->raw_len : (long)strlen(c->raw);
        s = malloc((size_t)*len + 1);
        assert_non_null(s);
        memcpy(s, c->raw, (size_t)*len + 1);
        return s;
    case B_TX: {
        json_t *t = tx_template(f, ext);
        edit(t, c);
        s = dump(t);
        break;
    }
    case B_CUST: {
        json_t *t = customer_template();
        edit(t, c);
        s = dump(t);
        break;
    }
    case B_BATCH: {
        json_t *items = json_array();
        for (int i = 0; i < c->n; i++) {
            snprintf(ext, sizeof ext, "mal-%zu-%d", idx, i);
            json_t *t = tx_template(f, ext);
            if (i == c->n - 1)
                edit(t, c);
            json_array_append_new(items, t);
        }
        s = dump(json_pack("{s:o}", "transactions", items));
        break;
    }
    case B_NESTED:
        s = malloc(2 * (size_t)c->n + 1);
        assert_non_null(s);
        memset(s, '[', (size_t)c->n);
        memset(s + c->n, ']', (size_t)c->n);
        s[2 * c->n] = '\0';
        break;
    case B_PADDED: {
        char *t = dump(customer_template());
        size_t tl = strlen(t);
        assert_true(tl < (size_t)c->n);
        s = malloc((size_t)c->n + 1);
        assert_non_null(s);
        memcpy(s, t, tl);
        memset(s + tl, ' ', (size_t)c->n - tl); /* trailing whitespace is valid JSON */
        s[c->n] = '\0';
        free(t);
        break;
    }
    }
    *len = (long)strlen(s);
    return s;
}

/* The rows a refused request must not have touched, as one comparable line.
 * Events are counted in outbox plus event_log where that exists: the
 * sequencer moves them from one to the other in one transaction, so their
 * sum, read in one snapshot, changes only when an event is written. */
static char *row_counts(h_env *env)
{
    long long has_log =
        h_db_count(env, "SELECT count(*) FROM pg_class WHERE relname = 'event_log'");
    assert_true(has_log >= 0);
    char sql[1024];
    snprintf(sql, sizeof sql,
             "SELECT format('customers=%%s transactions=%%s alerts=%%s events=%%s"
             " risk_assessments=%%s kyc_tasks=%%s',"
             " (SELECT count(*) FROM customers), (SELECT count(*) FROM transactions),"
             " (SELECT count(*) FROM alerts), (SELECT count(*) FROM outbox)%s,"
             " (SELECT count(*) FROM risk_assessments), (SELECT count(*) FROM kyc_tasks))",
             has_log ? " + (SELECT count(*) FROM event_log)" : "");
    char *s = h_db_text(env, sql);
    assert_non_null(s);
    return s;
}

/* 1 when the comma-separated header value lists `method`. */
static int lists_method(const char *value, const char *method, size_t mlen)
{
    for (const char *p = value; *p;) {
        p += strspn(p, ", ");
        size_t n = strcspn(p, ", ");
        if (n == mlen && strncmp(p, method, mlen) == 0)
            return 1;
        p += n;
    }
    return 0;
}

/* Why the response does not fit the case, or NULL when it does. */
static const char *mismatch(const mcase *c, const h_resp *r)
{
    if (r->status != c->status)
        return "wrong status";
    if (strncmp(r->content_type, "application/problem+json", 24) != 0 || !json_is_object(r->json))
        return "not application/problem+json";
    if (json_integer_value(json_object_get(r->json, "status")) != c->status)
        return "problem \"status\" differs from the HTTP status";
    const char *field = json_string_value(json_object_get(r->json, "field"));
    if (c->field && (!field || strcmp(field, c->field) != 0))
        return "wrong or missing \"field\"";
    if (c->item) {
        size_t i;
        json_t *e;
        int found = 0;
        json_array_foreach(json_object_get(r->json, "errors"), i, e)
        {
            const char *ef = json_string_value(json_object_get(e, "field"));
            found |= ef && strcmp(ef, c->item) == 0;
        }
        if (!found)
            return "\"errors\" does not name the bad item";
    }
    if (c->allow) {
        char allow[128];
        if (h_resp_header(r, "Allow", allow, sizeof allow) != 0)
            return "405 without an Allow header";
        for (const char *m = c->allow; *m;) {
            size_t n = strcspn(m, " ");
            if (!lists_method(allow, m, n))
                return "Allow lacks a method the path serves";
            m += n + strspn(m + n, " ");
        }
        if (lists_method(allow, c->method, strlen(c->method)))
            return "Allow lists the refused method";
    }
    return NULL;
}

static void substitute_cid(const char *path, const char *cid, char *out, size_t outsz)
{
    const char *at = strstr(path, "{cid}");
    if (at)
        snprintf(out, outsz, "%.*s%s%s", (int)(at - path), path, cid, at + 5);
    else
        snprintf(out, outsz, "%s", path);
}

static void malformed_requests_are_refused_without_writes(void **state)
{
    fixture *f = *state;
    int wrong = 0, run = 0;
    char *before = row_counts(f->env);
    for (size_t i = 0; i < NCASES; i++) {
        const mcase *c = &cases[i];
        long len = -1;
        char *body = case_body(f, c, i, &len), path[256];
        substitute_cid(c->path, f->cid, path, sizeof path);
        const char *headers[] = {c->header, NULL};
        h_resp r;
        int rc = h_http(f->env, c->method, path, f->env->admin_key, body, len, headers, &r);
        const char *why = rc != 0 ? "no response" : mismatch(c, &r);
        char *after = row_counts(f->env);
        if (!why && strcmp(before, after) != 0)
            why = "the database changed";
        if (why) {
            wrong++;
            fprintf(stderr,
                    "case %zu (%s): %s\n  sent %s %s %.300s\n  expected %ld field=%s\n"
                    "  got %ld %s %.500s\n  rows before: %s\n  rows after:  %s\n",
                    i, c->name, why, c->method, path, body ? body : "(no body)", c->status,
                    c->field ? c->field : "-", r.status, r.content_type, r.body ? r.body : "",
                    before, after);
            free(before);
            before = after; /* report each write once */
        } else {
            free(after);
        }
        run++;
        h_resp_free(&r);
        free(body);
    }
    free(before);
    fprintf(stderr, "malformed: %d cases, %d wrong\n", run, wrong);
    assert_true(run >= 35);
    assert_int_equal(wrong, 0);
}

/* An escaped NUL (\u0000) is valid JSON that C strings cannot hold: refused
 * as malformed or invalid, never truncated into a shorter name. */
static void escaped_nul_is_refused(void **state)
{
    fixture *f = *state;
    char *before = row_counts(f->env), *after;
    h_resp r;
    assert_int_equal(
        h_post(f->env, f->env->admin_key, "{\"full_name\": \"Ada\\u0000Evil\"}", &r, CU), 0);
    assert_true(r.status == 400 || r.status == 422);
    assert_non_null(strstr(r.content_type, "application/problem+json"));
    h_resp_free(&r);
    after = row_counts(f->env);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

static long post_status(fixture *f, const char *path, const char *body, long len)
{
    h_resp r;
    long status =
        h_http(f->env, "POST", path, f->env->admin_key, body, len, NULL, &r) == 0 ? r.status : -1;
    if (status != 201)
        fprintf(stderr, "POST %s: %ld %s\n", path, status, r.body ? r.body : "");
    h_resp_free(&r);
    return status;
}

static long long count(fixture *f, const char *table)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    return h_db_count(f->env, sql);
}

/* The templates without their defects are accepted, right up to the limits:
 * so each refusal above was caused by its defect. */
static void templates_are_accepted(void **state)
{
    fixture *f = *state;
    long long customers = count(f, "customers"), txs = count(f, "transactions");
    long len = -1;
    char *body;

    mcase c = {.kind = B_CUST};
    body = case_body(f, &c, 1000, &len);
    assert_int_equal(post_status(f, CU, body, len), 201);
    free(body);

    c = (mcase){.kind = B_PADDED, .n = MAX_BODY};
    body = case_body(f, &c, 1001, &len);
    assert_int_equal(len, MAX_BODY);
    assert_int_equal(post_status(f, CU, body, len), 201);
    free(body);

    c = (mcase){.kind = B_TX};
    body = case_body(f, &c, 1002, &len);
    assert_int_equal(post_status(f, TX, body, len), 201);
    free(body);

    c = (mcase){.kind = B_BATCH, .n = MAX_BATCH};
    body = case_body(f, &c, 1003, &len);
    assert_int_equal(post_status(f, TX, body, len), 201);
    free(body);

    assert_int_equal(count(f, "customers"), customers + 2);
    assert_int_equal(count(f, "transactions"), txs + 1 + MAX_BATCH);
}

/* Request headers live in libmicrohttpd's per-connection pool (32 KiB,
 * src/api/server.c): a request whose headers fill a good part of it is
 * served, again and again on one kept-alive connection (the pool is reset
 * between requests); headers larger than the pool are refused with a 4xx
 * and nothing is written; the server serves on. */
static void header_sizes_within_and_beyond_the_pool(void **state)
{
    fixture *f = *state;
    char *before = row_counts(f->env), *after;
    size_t big = 16 * 1024, huge = 48 * 1024;
    char *hdr = malloc(huge + 32);
    assert_non_null(hdr);
    memcpy(hdr, "X-Padding: ", 11);
    memset(hdr + 11, 'a', big);
    hdr[11 + big] = '\0';
    const char *const headers[] = {hdr, NULL};
    for (int i = 0; i < 5; i++) {
        h_resp r;
        assert_int_equal(
            h_http(f->env, "GET", "/customers?limit=1", f->env->admin_key, NULL, 0, headers, &r),
            0);
        assert_int_equal(r.status, 200);
        h_resp_free(&r);
    }
    memset(hdr + 11, 'a', huge);
    hdr[11 + huge] = '\0';
    h_resp r;
    assert_int_equal(
        h_http(f->env, "POST", CU, f->env->admin_key, "{\"full_name\": \"Ada\"}", -1, headers, &r),
        0);
    assert_int_equal(r.status, 431); /* libmicrohttpd's own answer, before any handler */
    h_resp_free(&r);
    free(hdr);
    after = row_counts(f->env);
    assert_string_equal(before, after);
    free(before);
    free(after);
    assert_int_equal(h_get(f->env, f->env->admin_key, &r, "/customers?limit=1"), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(malformed_requests_are_refused_without_writes),
        cmocka_unit_test(escaped_nul_is_refused),
        cmocka_unit_test(templates_are_accepted),
        cmocka_unit_test(header_sizes_within_and_beyond_the_pool),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
