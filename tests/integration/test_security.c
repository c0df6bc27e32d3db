/*
 * test_security.c — least privilege in PostgreSQL, TLS to PostgreSQL, and
 * authenticated / TLS connections to NATS, against the real servers.
 *
 * Every vigil the harness starts connects as the service role vigil_app (a
 * member of vigil_service, see 0012_least_privilege.sql), so the whole suite
 * runs with least privilege; here that role is shown unable to rewrite
 * history or change the schema. Certificates are made by the test with the
 * openssl command (a CA, a server certificate for 127.0.0.1/localhost, a
 * client certificate, and a second, unrelated CA); nkeys are made with
 * OpenSSL's Ed25519 and encoded as nkeys do (base32 with a CRC-16), and the
 * creds test signs its operator, account and user JWTs itself (what `nsc`
 * would do; Debian ships neither `nsc` nor `nk`).
 *
 * NATS: with the right credentials events reach the stream; with a wrong one
 * vigil says so at start-up (a log line naming the authorization failure)
 * and in /readyz (nats_connected false, the reason), events wait in
 * event_log, and a restart with the right credentials publishes every one.
 */
#include "harness.h"

#include <openssl/evp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define WAIT_MS 20000

/* ---- helpers --------------------------------------------------------------- */

/* Runs a shell command (output appended to DIR/tls.log); its exit code. */
static int sh(h_env *env, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int sh(h_env *env, const char *fmt, ...)
{
    char cmd[4096], full[4400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "(%s) >>%s/tls.log 2>&1", cmd, env->dir);
    int rc = system(full);
    if (rc != 0)
        fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
    return rc;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

/* DIR/tls/NAME.{key,crt}: a CA when ca is NULL, else a certificate signed by
 * CA `ca` for 127.0.0.1 and localhost, usable by a server and a client. */
static void make_cert_for(h_env *env, const char *name, const char *ca, const char *san);
static void make_cert(h_env *env, const char *name, const char *ca)
{
    make_cert_for(env, name, ca, "DNS:localhost,IP:127.0.0.1");
}

/* The same with the subjectAltName `san`. */
static void make_cert_for(h_env *env, const char *name, const char *ca, const char *san)
{
    char d[H_PATH_SIZE + 8];
    snprintf(d, sizeof d, "%s/tls", env->dir);
    mkdir(d, 0755);
    const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    if (!ca) {
        assert_int_equal(sh(env,
                            "openssl req -x509 %s -keyout %s/%s.key -out %s/%s.crt -days 2 "
                            "-subj /CN=%s -addext basicConstraints=critical,CA:TRUE "
                            "-addext keyUsage=critical,keyCertSign,cRLSign",
                            ec, d, name, d, name, name),
                         0);
        return;
    }
    char ext[H_PATH_SIZE + 32], text[512];
    snprintf(ext, sizeof ext, "%s/%s.ext", d, name);
    snprintf(text, sizeof text,
             "basicConstraints=critical,CA:FALSE\n"
             "keyUsage=critical,digitalSignature,keyEncipherment\n"
             "extendedKeyUsage=serverAuth,clientAuth\n"
             "subjectAltName=%s\n",
             san);
    write_text(ext, text);
    assert_int_equal(sh(env,
                        "openssl req -new %s -keyout %s/%s.key -out %s/%s.csr -subj /CN=%s && "
                        "openssl x509 -req -in %s/%s.csr -CA %s/%s.crt -CAkey %s/%s.key "
                        "-CAcreateserial -out %s/%s.crt -days 2 -extfile %s",
                        ec, d, name, d, name, name, d, name, d, ca, d, ca, d, name, ext),
                     0);
}

/* Polls GET /readyz until its events check matches: nats_connected equal to
 * `connected` and, when reason is not NULL, last_error containing it. The
 * last reply is left in *out. */
static int wait_readyz_nats(h_env *env, int connected, const char *reason, h_resp *out)
{
    for (long long end = h_now_ms() + WAIT_MS; h_now_ms() < end; h_sleep_ms(200)) {
        h_resp_free(out);
        if (h_get(env, NULL, out, "/readyz") != 0 || !out->json)
            continue;
        json_t *ev = json_object_get(json_object_get(out->json, "checks"), "events");
        json_t *nc = json_object_get(ev, "nats_connected");
        const char *le = json_string_value(json_object_get(ev, "last_error"));
        if (json_is_boolean(nc) && json_is_true(nc) == connected &&
            (!reason || (le && strcasestr(le, reason))))
            return 0;
    }
    fprintf(stderr, "readyz never showed nats_connected=%d (%s); last: %s\n", connected,
            reason ? reason : "", out->body ? out->body : "");
    return -1;
}

/* Polls until the vigil log holds `needle` (case-insensitive). */
static int wait_log(h_env *env, const char *needle)
{
    for (long long end = h_now_ms() + WAIT_MS; h_now_ms() < end; h_sleep_ms(200)) {
        char *log = h_read_file(env->vigil_log);
        int found = log && strcasestr(log, needle);
        free(log);
        if (found)
            return 0;
    }
    fprintf(stderr, "vigil log never said \"%s\"\n", needle);
    h_print_log_tail(env->vigil_log, 30);
    return -1;
}

static void post_customer(h_env *env, const char *name)
{
    char body[256];
    h_resp r = {0};
    snprintf(body, sizeof body, "{\"full_name\": \"%s\"}", name);
    assert_int_equal(h_post(env, env->admin_key, body, &r, "/customers"), 0);
    assert_int_equal(r.status, 201);
    h_resp_free(&r);
}

/* How a test client authenticates to NATS (fields may be NULL). */
typedef struct nats_auth {
    const char *url, *user, *password, *token, *nkey, *seed_file, *creds, *ca, *cert, *key;
} nats_auth;

/* Messages in AML_EVENTS, read through a connection made with `a`; -1 when
 * the connection or the read fails (said on stderr). */
static long long stream_msgs_once(const nats_auth *a)
{
    natsOptions *o = NULL;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    long long n = -1;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, a->url);
    if (s == NATS_OK && a->user)
        s = natsOptions_SetUserInfo(o, a->user, a->password);
    if (s == NATS_OK && a->token)
        s = natsOptions_SetToken(o, a->token);
    if (s == NATS_OK && a->nkey)
        s = natsOptions_SetNKeyFromSeed(o, a->nkey, a->seed_file);
    if (s == NATS_OK && a->creds)
        s = natsOptions_SetUserCredentialsFromFiles(o, a->creds, NULL);
    if (s == NATS_OK && a->ca)
        s = natsOptions_SetSecure(o, true);
    if (s == NATS_OK && a->ca)
        s = natsOptions_LoadCATrustedCertificates(o, a->ca);
    if (s == NATS_OK && a->cert)
        s = natsOptions_LoadCertificatesChain(o, a->cert, a->key);
    if (s == NATS_OK)
        s = natsConnection_Connect(&nc, o);
    if (s == NATS_OK)
        s = natsConnection_JetStream(&js, nc, NULL);
    if (s == NATS_OK)
        s = js_GetStreamInfo(&si, js, "AML_EVENTS", NULL, NULL);
    if (s == NATS_OK)
        n = (long long)si->State.Msgs;
    else
        fprintf(stderr, "test client: reading the stream failed: %s (%s)\n", natsStatus_GetText(s),
                nats_GetLastError(NULL));
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    natsOptions_Destroy(o);
    return n;
}

/* The test's own read of the stream can fail on a loaded machine (the
 * connect or the JetStream request times out); that says nothing about
 * vigil, so it is tried again for up to WAIT_MS. -1 only if it never
 * succeeds. */
static long long stream_msgs(const nats_auth *a)
{
    long long n = stream_msgs_once(a);
    for (long long end = h_now_ms() + WAIT_MS; n < 0 && h_now_ms() < end; h_sleep_ms(200))
        n = stream_msgs_once(a);
    return n;
}

/* Waits until the stream holds exactly as many messages as event_log has
 * rows, and at least `min`. */
static void wait_all_published(h_env *env, const nats_auth *a, long long min)
{
    long long logged = -1, streamed = -1;
    for (long long end = h_now_ms() + WAIT_MS; h_now_ms() < end; h_sleep_ms(200)) {
        logged = h_db_count(env, "SELECT count(*) FROM event_log");
        streamed = stream_msgs_once(a);
        if (logged >= min && streamed == logged)
            return;
    }
    fprintf(stderr, "event_log %lld rows, stream %lld messages (want >= %lld, equal)\n", logged,
            streamed, min);
    fail();
}

/* Starts PostgreSQL and nats-server (configured with nats_conf when not
 * NULL), migrates and makes the admin key; vigil is not started. */
static h_env *env_with_nats(const char *nats_conf)
{
    h_env *env = h_env_new();
    assert_non_null(env);
    if (nats_conf)
        assert_int_equal(h_nats_config(env, nats_conf), 0);
    assert_int_equal(h_pg_start(env), 0);
    assert_int_equal(h_nats_start(env), 0);
    assert_int_equal(h_migrate(env), 0);
    assert_int_equal(h_key_create(env, "admin", env->admin_key, sizeof env->admin_key), 0);
    return env;
}

/* ---- PostgreSQL: least privilege --------------------------------------- */

/* Runs sql on c; it must fail with SQLSTATE 42501 and a message holding
 * `want` (so it is the privilege check that refused, not the trigger). */
static void refused(PGconn *c, const char *sql, const char *want)
{
    PGresult *r = PQexec(c, sql);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    if (!state || strcmp(state, "42501") != 0 || !msg || !strstr(msg, want)) {
        fprintf(stderr, "%s\n  -> %s %s (expected 42501 \"%s\")\n", sql,
                PQresStatus(PQresultStatus(r)), msg ? msg : "", want);
        PQclear(r);
        fail();
    }
    PQclear(r);
}

static void service_role_cannot_alter_history(void **state)
{
    h_env *env = h_setup(0);
    assert_non_null(env);
    /* The service works as vigil_app: a customer and its events are
     * sequenced into event_log (through vigil_sequence, as its owner). */
    post_customer(env, "Least Privilege");
    long long rows = -1;
    for (long long end = h_now_ms() + WAIT_MS; h_now_ms() < end && rows < 1; h_sleep_ms(100))
        rows = h_db_count(env, "SELECT count(*) FROM event_log");
    assert_true(rows >= 1);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM pg_stat_activity WHERE usename = $1"
                                " AND starts_with(application_name, 'vigil')",
                                "vigil_app") > 0,
                     1);

    PGconn *c = PQconnectdb(env->svc_db_url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    /* Not privileged: no superuser, not the owner, but a vigil_service member. */
    PGresult *r = PQexec(c, "SELECT current_user, rolsuper, pg_has_role('vigil_service', 'USAGE')"
                            " FROM pg_roles WHERE rolname = current_user");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "vigil_app");
    assert_string_equal(PQgetvalue(r, 0, 1), "f");
    assert_string_equal(PQgetvalue(r, 0, 2), "t");
    PQclear(r);

    /* History cannot be rewritten, removed or forged... */
    refused(c, "UPDATE event_log SET subject = 'forged' WHERE seq = 1",
            "permission denied for table event_log");
    refused(c, "DELETE FROM event_log WHERE seq = 1", "permission denied for table event_log");
    refused(c, "TRUNCATE event_log", "permission denied for table event_log");
    refused(c,
            "INSERT INTO event_log (seq, event_id, event_type, subject, payload, prev_hash, hash)"
            " VALUES (1000000, gen_random_uuid(), 'aml.x', 's', '{}', '', '')",
            "permission denied for table event_log");
    refused(c, "DELETE FROM outbox", "permission denied for table outbox");
    refused(c, "UPDATE transactions SET amount = 0", "permission denied for table transactions");
    refused(c, "DELETE FROM risk_assessments", "permission denied for table risk_assessments");
    refused(c, "DELETE FROM processed_events", "permission denied for table processed_events");
    refused(c, "DELETE FROM customers", "permission denied for table customers");
    /* ...and its guard cannot be switched off or the schema changed. */
    refused(c, "ALTER TABLE event_log DISABLE TRIGGER event_log_append_only",
            "must be owner of table event_log");
    refused(c, "ALTER TABLE event_log DISABLE TRIGGER ALL", "must be owner of table event_log");
    refused(c, "DROP TRIGGER event_log_append_only ON event_log",
            "must be owner of relation event_log");
    refused(c, "SET session_replication_role = replica",
            "permission denied to set parameter \"session_replication_role\"");
    refused(c, "CREATE TABLE evil (x int)", "permission denied for schema public");
    refused(c, "CREATE TEMP TABLE evil (x int)",
            "permission denied to create temporary tables in database \"vigil\"");
    refused(c, "ALTER TABLE customers ADD COLUMN evil int", "must be owner of table customers");
    refused(c, "DROP TABLE event_log", "must be owner of table event_log");
    refused(c,
            "CREATE OR REPLACE FUNCTION vigil_event_log_append_only() RETURNS trigger"
            " LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$",
            "permission denied for schema public");
    refused(c, "CREATE ROLE evil", "permission denied to create role");
    PQfinish(c);

    /* The owner is stopped only by the trigger: the refusals above came from
     * the privilege system, and the trigger still guards the owner. */
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM event_log WHERE subject = 'forged'"), 0);
    assert_int_not_equal(h_db_exec(env, "UPDATE event_log SET subject = 'forged' WHERE seq = 1"),
                         0);

    /* A superuser cannot be made the service role; a new name is created. */
    char *err = NULL;
    const char *const super[] = {"migrate", "--service-role", "postgres", NULL};
    assert_int_equal(h_vigil_runv(env, NULL, NULL, NULL, &err, super), 1);
    assert_non_null(strstr(err, "superuser or owns the schema"));
    free(err);
    char *out = NULL;
    const char *const fresh[] = {"migrate", "--service-role", "vigil_reader", NULL};
    assert_int_equal(h_vigil_runv(env, NULL, NULL, &out, NULL, fresh), 0);
    assert_non_null(strstr(out, "created login role vigil_reader"));
    free(out);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM pg_auth_members m"
                                     " JOIN pg_roles g ON g.oid = m.roleid"
                                     " JOIN pg_roles u ON u.oid = m.member"
                                     " WHERE g.rolname = 'vigil_service'"
                                     " AND u.rolname = 'vigil_reader'"),
                     1);

    /* vigil serve warns when it runs as the owner, and not otherwise. */
    char *log = h_read_file(env->vigil_log);
    assert_non_null(log);
    assert_null(strstr(log, "superuser or the schema owner"));
    free(log);
    assert_int_equal(h_vigil_stop(env, SIGTERM), 0);
    char owner_url[H_PATH_SIZE + 32];
    snprintf(owner_url, sizeof owner_url, "VIGIL_DATABASE_URL=%s", env->db_url);
    const char *const as_owner[] = {owner_url, NULL};
    assert_int_equal(h_vigil_start(env, as_owner), 0);
    assert_int_equal(wait_log(env, "superuser or the schema owner"), 0);
    h_teardown(env);
}

/* ---- PostgreSQL: TLS ----------------------------------------------------- */

static void pg_tls_verify_full(void **state)
{
    h_env *env = h_env_new();
    assert_non_null(env);
    make_cert(env, "ca", NULL);
    make_cert(env, "server", "ca");
    make_cert(env, "other-ca", NULL);
    /* PostgreSQL (running as postgres when the test is root) wants its key
     * private and its own. */
    assert_int_equal(sh(env,
                        "chmod 600 %s/tls/server.key && "
                        "if [ \"$(id -u)\" = 0 ]; then chown postgres %s/tls/server.key; fi",
                        env->dir, env->dir),
                     0);
    char cert[H_PATH_SIZE + 64], key[H_PATH_SIZE + 64];
    snprintf(cert, sizeof cert, "ssl_cert_file=%s/tls/server.crt", env->dir);
    snprintf(key, sizeof key, "ssl_key_file=%s/tls/server.key", env->dir);
    assert_int_equal(h_pg_set(env, "ssl=on"), 0);
    assert_int_equal(h_pg_set(env, cert), 0);
    assert_int_equal(h_pg_set(env, key), 0);
    assert_int_equal(h_pg_start(env), 0);
    assert_int_equal(h_migrate(env), 0);
    assert_int_equal(h_key_create(env, "admin", env->admin_key, sizeof env->admin_key), 0);

    /* Verified against the right CA, host name checked: works, over TLS. */
    char url[H_PATH_SIZE * 2];
    snprintf(url, sizeof url,
             "VIGIL_DATABASE_URL=postgresql://vigil_app@127.0.0.1:%d/vigil"
             "?sslmode=verify-full&sslrootcert=%s/tls/ca.crt",
             env->pg_port, env->dir);
    const char *const good[] = {url, NULL};
    assert_int_equal(h_vigil_start(env, good), 0);
    h_resp r = {0};
    assert_int_equal(h_get(env, NULL, &r, "/readyz"), 0);
    assert_int_equal(r.status, 200);
    h_resp_free(&r);
    post_customer(env, "Over TLS");
    assert_true(h_db_count(env, "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a"
                                " USING (pid) WHERE a.usename = 'vigil_app' AND s.ssl") > 0);
    assert_int_equal(h_vigil_stop(env, SIGTERM), 0);

    /* A root certificate that did not sign the server's: refused, and said. */
    snprintf(url, sizeof url,
             "VIGIL_DATABASE_URL=postgresql://vigil_app@127.0.0.1:%d/vigil"
             "?sslmode=verify-full&sslrootcert=%s/tls/other-ca.crt",
             env->pg_port, env->dir);
    const char *const bad[] = {url, NULL};
    char *err = NULL;
    const char *const list[] = {"keys", "list", NULL};
    assert_int_equal(h_vigil_runv(env, bad, NULL, NULL, &err, list), 3);
    assert_non_null(strstr(err, "certificate verify failed"));
    free(err);
    assert_int_equal(h_vigil_start(env, bad), 0);
    assert_int_equal(wait_log(env, "certificate verify failed"), 0);
    assert_int_equal(h_get(env, NULL, &r, "/readyz"), 0);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "certificate verify failed"));
    h_resp_free(&r);
    h_teardown(env);
}

/* ---- NATS -------------------------------------------------------------------- */

/* The common script: vigil with `right` publishes; restarted with `wrong`
 * it reports `reason` in its log and /readyz while events wait in
 * event_log; restarted with `right` it publishes every one of them. */
static void nats_right_then_wrong(h_env *env, const char *const *right, const char *const *wrong,
                                  const char *reason, const nats_auth *test_auth)
{
    assert_int_equal(h_vigil_start(env, right), 0);
    post_customer(env, "Right Credentials");
    h_resp r = {0};
    assert_int_equal(wait_readyz_nats(env, 1, NULL, &r), 0);
    h_resp_free(&r);
    wait_all_published(env, test_auth, 1);
    assert_int_equal(h_vigil_stop(env, SIGTERM), 0);

    long long before = stream_msgs(test_auth);
    assert_true(before >= 0);
    assert_int_equal(h_vigil_start(env, wrong), 0);
    assert_int_equal(wait_log(env, reason), 0);
    post_customer(env, "Wrong Credentials");
    assert_int_equal(wait_readyz_nats(env, 0, reason, &r), 0);
    h_resp_free(&r);
    /* Nothing was published, nothing was lost: the events wait in event_log. */
    long long logged = 0;
    for (long long end = h_now_ms() + WAIT_MS; h_now_ms() < end; h_sleep_ms(100))
        if ((logged = h_db_count(env, "SELECT count(*) FROM event_log")) > before)
            break;
    assert_true(logged > before);
    assert_int_equal(stream_msgs(test_auth), before);
    assert_int_equal(h_vigil_stop(env, SIGTERM), 0);

    assert_int_equal(h_vigil_start(env, right), 0);
    wait_all_published(env, test_auth, logged);
    assert_int_equal(wait_readyz_nats(env, 1, NULL, &r), 0);
    h_resp_free(&r);
}

static void nats_user_password(void **state)
{
    h_env *env = env_with_nats("authorization {\n"
                               "  users = [ { user: vigil, password: \"right-8d1f\" } ]\n"
                               "}\n");
    char right_f[H_PATH_SIZE + 32], wrong_f[H_PATH_SIZE + 32];
    snprintf(right_f, sizeof right_f, "%s/nats.pw", env->dir);
    snprintf(wrong_f, sizeof wrong_f, "%s/nats-wrong.pw", env->dir);
    write_text(right_f, "right-8d1f\n");
    write_text(wrong_f, "wrong-0000\n");
    char pw_right[H_PATH_SIZE + 64], pw_wrong[H_PATH_SIZE + 64];
    snprintf(pw_right, sizeof pw_right, "VIGIL_NATS_PASSWORD_FILE=%s", right_f);
    snprintf(pw_wrong, sizeof pw_wrong, "VIGIL_NATS_PASSWORD_FILE=%s", wrong_f);
    const char *const right[] = {"VIGIL_NATS_USER=vigil", pw_right, NULL};
    const char *const wrong[] = {"VIGIL_NATS_USER=vigil", pw_wrong, NULL};
    nats_auth a = {.url = env->nats_url, .user = "vigil", .password = "right-8d1f"};
    nats_right_then_wrong(env, right, wrong, "authorization violation", &a);

    /* A user without its password file is a configuration error. */
    char *err = NULL;
    const char *const half[] = {"VIGIL_NATS_USER=vigil", NULL};
    const char *const list[] = {"keys", "list", NULL};
    assert_int_equal(h_vigil_runv(env, half, NULL, NULL, &err, list), 1);
    assert_non_null(strstr(err, "VIGIL_NATS_PASSWORD_FILE"));
    free(err);
    h_teardown(env);
}

static void nats_token(void **state)
{
    h_env *env = env_with_nats("authorization { token: \"tok-5b7e93\" }\n");
    char right_f[H_PATH_SIZE + 32], wrong_f[H_PATH_SIZE + 32];
    snprintf(right_f, sizeof right_f, "%s/nats.token", env->dir);
    snprintf(wrong_f, sizeof wrong_f, "%s/nats-wrong.token", env->dir);
    write_text(right_f, "tok-5b7e93\n");
    write_text(wrong_f, "tok-000000\n");
    char t_right[H_PATH_SIZE + 64], t_wrong[H_PATH_SIZE + 64];
    snprintf(t_right, sizeof t_right, "VIGIL_NATS_TOKEN_FILE=%s", right_f);
    snprintf(t_wrong, sizeof t_wrong, "VIGIL_NATS_TOKEN_FILE=%s", wrong_f);
    const char *const right[] = {t_right, NULL};
    const char *const wrong[] = {t_wrong, NULL};
    nats_auth a = {.url = env->nats_url, .token = "tok-5b7e93"};
    nats_right_then_wrong(env, right, wrong, "authorization violation", &a);
    h_teardown(env);
}

/* nkeys: base32 (RFC 4648, no padding) of prefix || key || CRC-16/XMODEM
 * (little-endian). */
static uint16_t crc16(const unsigned char *p, size_t n)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

static void nkey_encode(const unsigned char *prefix, size_t plen, const unsigned char key[32],
                        char *out)
{
    unsigned char raw[40];
    memcpy(raw, prefix, plen);
    memcpy(raw + plen, key, 32);
    uint16_t crc = crc16(raw, plen + 32);
    raw[plen + 32] = (unsigned char)(crc & 0xff);
    raw[plen + 33] = (unsigned char)(crc >> 8);
    size_t n = plen + 34, bits = 0, o = 0;
    unsigned buf = 0;
    for (size_t i = 0; i < n; i++) {
        buf = (buf << 8) | raw[i];
        for (bits += 8; bits >= 5; bits -= 5)
            out[o++] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"[(buf >> (bits - 5)) & 31];
    }
    if (bits)
        out[o++] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"[(buf << (5 - bits)) & 31];
    out[o] = '\0';
}

/* An nkey: its Ed25519 key, public key ("U..." for a user, "A..." an
 * account, "O..." an operator) and seed ("SU...", "SA...", "SO..."). */
typedef struct nkey {
    EVP_PKEY *k;
    char pub[64], seed[64];
} nkey;

enum { NKEY_OPERATOR = 14 << 3, NKEY_ACCOUNT = 0, NKEY_USER = 20 << 3, NKEY_SEED = 18 << 3 };

static void nkey_make(nkey *n, unsigned char type)
{
    n->k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(n->k);
    unsigned char priv[32], pk[32];
    size_t l1 = sizeof priv, l2 = sizeof pk;
    assert_int_equal(EVP_PKEY_get_raw_private_key(n->k, priv, &l1), 1);
    assert_int_equal(EVP_PKEY_get_raw_public_key(n->k, pk, &l2), 1);
    const unsigned char pp[1] = {type};
    const unsigned char sp[2] = {NKEY_SEED | (type >> 5), (unsigned char)((type & 31) << 3)};
    nkey_encode(pp, 1, pk, n->pub);
    nkey_encode(sp, 2, priv, n->seed);
}

/* A fresh user nkey: public key ("U...") and seed ("SU..."). */
static void nkey_new(char pub[64], char seed[64])
{
    nkey n;
    nkey_make(&n, NKEY_USER);
    memcpy(pub, n.pub, 64);
    memcpy(seed, n.seed, 64);
    EVP_PKEY_free(n.k);
}

/* base64url without padding, as JWTs use it; caller frees. */
static char *b64url(const unsigned char *in, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    assert_non_null(out);
    int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    for (int i = 0; i < len; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    while (len > 0 && out[len - 1] == '=')
        out[--len] = '\0';
    return out;
}

/* A NATS JWT: the `nats` claims (the reference is stolen) with jti, iat,
 * iss, sub and name, signed by `issuer`; caller frees. */
static char *nats_jwt(const nkey *issuer, const char *subject, json_t *nats_claims)
{
    static int jti;
    char id[32];
    snprintf(id, sizeof id, "VIGILTEST%08d", ++jti);
    json_t *c =
        json_pack("{s:s, s:I, s:s, s:s, s:s, s:o}", "jti", id, "iat", (json_int_t)time(NULL), "iss",
                  issuer->pub, "name", "vigil-test", "sub", subject, "nats", nats_claims);
    char *claims = json_dumps(c, JSON_COMPACT);
    json_decref(c);
    const char *hdr = "{\"typ\":\"JWT\",\"alg\":\"ed25519-nkey\"}";
    char *h64 = b64url((const unsigned char *)hdr, strlen(hdr));
    char *c64 = b64url((const unsigned char *)claims, strlen(claims));
    size_t sz = strlen(h64) + strlen(c64) + 200;
    char *jwt = malloc(sz);
    assert_non_null(jwt);
    snprintf(jwt, sz, "%s.%s", h64, c64);
    unsigned char sig[64];
    size_t siglen = sizeof sig;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(md, NULL, NULL, NULL, issuer->k), 1);
    assert_int_equal(EVP_DigestSign(md, sig, &siglen, (const unsigned char *)jwt, strlen(jwt)), 1);
    EVP_MD_CTX_free(md);
    char *s64 = b64url(sig, siglen);
    snprintf(jwt + strlen(jwt), sz - strlen(jwt), ".%s", s64);
    free(h64);
    free(c64);
    free(s64);
    free(claims);
    return jwt;
}

/* A creds file at path for a new user of `account`. */
static void write_creds(const char *path, const nkey *account)
{
    nkey user;
    nkey_make(&user, NKEY_USER);
    char *jwt = nats_jwt(account, user.pub,
                         json_pack("{s:{}, s:{}, s:i, s:i, s:i, s:s, s:i}", "pub", "sub", "subs",
                                   -1, "data", -1, "payload", -1, "type", "user", "version", 2));
    char text[4096];
    snprintf(text, sizeof text,
             "-----BEGIN NATS USER JWT-----\n%s\n------END NATS USER JWT------\n\n"
             "-----BEGIN USER NKEY SEED-----\n%s\n------END USER NKEY SEED------\n",
             jwt, user.seed);
    write_text(path, text);
    free(jwt);
    EVP_PKEY_free(user.k);
}

static void nats_nkey(void **state)
{
    char pub[64], seed[64], other_pub[64], other_seed[64];
    nkey_new(pub, seed);
    nkey_new(other_pub, other_seed);
    assert_int_equal(pub[0], 'U');
    assert_int_equal(strncmp(seed, "SU", 2), 0);
    char conf[256];
    snprintf(conf, sizeof conf, "authorization {\n  users = [ { nkey: %s } ]\n}\n", pub);
    h_env *env = env_with_nats(conf);
    char seed_f[H_PATH_SIZE + 16], other_f[H_PATH_SIZE + 16];
    snprintf(seed_f, sizeof seed_f, "%s/user.nk", env->dir);
    snprintf(other_f, sizeof other_f, "%s/other.nk", env->dir);
    write_text(seed_f, seed);
    write_text(other_f, other_seed);
    char k_right[96], s_right[H_PATH_SIZE + 48], k_wrong[96], s_wrong[H_PATH_SIZE + 48];
    snprintf(k_right, sizeof k_right, "VIGIL_NATS_NKEY=%s", pub);
    snprintf(s_right, sizeof s_right, "VIGIL_NATS_NKEY_SEED=%s", seed_f);
    snprintf(k_wrong, sizeof k_wrong, "VIGIL_NATS_NKEY=%s", other_pub);
    snprintf(s_wrong, sizeof s_wrong, "VIGIL_NATS_NKEY_SEED=%s", other_f);
    const char *const right[] = {k_right, s_right, NULL};
    const char *const wrong[] = {k_wrong, s_wrong, NULL};
    nats_auth a = {.url = env->nats_url, .nkey = pub, .seed_file = seed_f};
    nats_right_then_wrong(env, right, wrong, "authorization violation", &a);
    h_teardown(env);
}

/* Decentralised authentication: an operator, an account with JetStream
 * (preloaded in the server's memory resolver) and a user creds file, all
 * signed by the test; the wrong creds belong to an account the server does
 * not know. */
static void nats_creds(void **state)
{
    nkey op, acct, sys, stranger;
    nkey_make(&op, NKEY_OPERATOR);
    nkey_make(&acct, NKEY_ACCOUNT);
    nkey_make(&sys, NKEY_ACCOUNT); /* JetStream needs a system account */
    nkey_make(&stranger, NKEY_ACCOUNT);
    assert_int_equal(op.pub[0], 'O');
    assert_int_equal(acct.pub[0], 'A');
    char *op_jwt = nats_jwt(&op, op.pub, json_pack("{s:s, s:i}", "type", "operator", "version", 2));
    char *acct_jwt =
        nats_jwt(&op, acct.pub,
                 json_pack("{s:{s:i, s:i, s:i, s:i, s:i, s:i, s:b, s:i, s:i, s:i, s:i, s:i, s:i}, "
                           "s:{s:{}, s:{}}, s:s, s:i}",
                           "limits", "subs", -1, "data", -1, "payload", -1, "imports", -1,
                           "exports", -1, "conn", -1, "wildcards", 1, "leaf", -1, "mem_storage", -1,
                           "disk_storage", -1, "streams", -1, "consumer", -1, "max_ack_pending", -1,
                           "default_permissions", "pub", "sub", "type", "account", "version", 2));
    char *sys_jwt =
        nats_jwt(&op, sys.pub, json_pack("{s:s, s:i}", "type", "account", "version", 2));
    char conf[8192];
    snprintf(conf, sizeof conf,
             "operator: %s\nsystem_account: %s\nresolver: MEMORY\n"
             "resolver_preload: {\n  %s: %s\n  %s: %s\n}\n",
             op_jwt, sys.pub, acct.pub, acct_jwt, sys.pub, sys_jwt);
    free(op_jwt);
    free(acct_jwt);
    free(sys_jwt);
    h_env *env = env_with_nats(conf);
    char right_f[H_PATH_SIZE + 32], wrong_f[H_PATH_SIZE + 32];
    snprintf(right_f, sizeof right_f, "%s/vigil.creds", env->dir);
    snprintf(wrong_f, sizeof wrong_f, "%s/stranger.creds", env->dir);
    write_creds(right_f, &acct);
    write_creds(wrong_f, &stranger);
    char c_right[H_PATH_SIZE + 64], c_wrong[H_PATH_SIZE + 64];
    snprintf(c_right, sizeof c_right, "VIGIL_NATS_CREDS=%s", right_f);
    snprintf(c_wrong, sizeof c_wrong, "VIGIL_NATS_CREDS=%s", wrong_f);
    const char *const right[] = {c_right, NULL};
    const char *const wrong[] = {c_wrong, NULL};
    nats_auth a = {.url = env->nats_url, .creds = right_f};
    nats_right_then_wrong(env, right, wrong, "authorization violation", &a);
    EVP_PKEY_free(op.k);
    EVP_PKEY_free(acct.k);
    EVP_PKEY_free(stranger.k);
    EVP_PKEY_free(sys.k);
    h_teardown(env);
}

/* nats-server requires TLS with certificate DIR/tls/NAME.crt and a client
 * certificate signed by DIR/tls/ca.crt. */
static void nats_tls_conf(h_env *env, const char *name)
{
    char conf[H_PATH_SIZE * 4];
    snprintf(conf, sizeof conf,
             "tls {\n  cert_file: \"%s/tls/%s.crt\"\n  key_file: \"%s/tls/%s.key\"\n"
             "  ca_file: \"%s/tls/ca.crt\"\n  verify: true\n  timeout: 2\n}\n",
             env->dir, name, env->dir, name, env->dir);
    assert_int_equal(h_nats_config(env, conf), 0);
}

static void nats_tls_client_cert(void **state)
{
    h_env *env = h_env_new();
    assert_non_null(env);
    make_cert(env, "ca", NULL);
    make_cert(env, "server", "ca");
    make_cert(env, "client", "ca");
    make_cert(env, "other-ca", NULL);
    nats_tls_conf(env, "server");
    assert_int_equal(h_pg_start(env), 0);
    assert_int_equal(h_nats_start(env), 0);
    assert_int_equal(h_migrate(env), 0);
    assert_int_equal(h_key_create(env, "admin", env->admin_key, sizeof env->admin_key), 0);

    char url[128], ca[H_PATH_SIZE + 40], cert[H_PATH_SIZE + 40], key[H_PATH_SIZE + 40],
        other[H_PATH_SIZE + 40], ca_f[H_PATH_SIZE + 16], cert_f[H_PATH_SIZE + 16],
        key_f[H_PATH_SIZE + 16];
    snprintf(url, sizeof url, "VIGIL_NATS_URL=nats://localhost:%d", env->nats_port);
    snprintf(ca_f, sizeof ca_f, "%s/tls/ca.crt", env->dir);
    snprintf(cert_f, sizeof cert_f, "%s/tls/client.crt", env->dir);
    snprintf(key_f, sizeof key_f, "%s/tls/client.key", env->dir);
    snprintf(ca, sizeof ca, "VIGIL_NATS_TLS_CA=%s", ca_f);
    snprintf(cert, sizeof cert, "VIGIL_NATS_TLS_CERT=%s", cert_f);
    snprintf(key, sizeof key, "VIGIL_NATS_TLS_KEY=%s", key_f);
    snprintf(other, sizeof other, "VIGIL_NATS_TLS_CA=%s/tls/other-ca.crt", env->dir);
    const char *const right[] = {url, ca, cert, key, NULL};
    const char *const no_client_cert[] = {url, ca, NULL};
    const char *const wrong_ca[] = {url, other, cert, key, NULL};
    char test_url[64];
    snprintf(test_url, sizeof test_url, "nats://localhost:%d", env->nats_port);
    nats_auth a = {.url = test_url, .ca = ca_f, .cert = cert_f, .key = key_f};

    /* The server's certificate does not verify against another CA. */
    nats_right_then_wrong(env, right, wrong_ca, "unable to get local issuer certificate", &a);
    assert_int_equal(h_vigil_stop(env, SIGTERM), 0);

    /* The server requires a client certificate (verify: true). */
    assert_int_equal(h_vigil_start(env, no_client_cert), 0);
    h_resp r = {0};
    assert_int_equal(wait_readyz_nats(env, 0, NULL, &r), 0);
    h_resp_free(&r);
    long long before = stream_msgs(&a);
    assert_true(before >= 0);
    post_customer(env, "No Client Certificate");
    h_sleep_ms(1000);
    assert_int_equal(stream_msgs(&a), before);
    /* Plain TCP to a TLS server is refused too: TLS is not optional. */
    nats_auth plain = {.url = test_url};
    assert_int_equal(stream_msgs_once(&plain), -1);
    assert_int_equal(h_vigil_stop(env, SIGTERM), 0);

    /* A certificate from the right CA but for another name is refused:
     * the host name of VIGIL_NATS_URL is checked, not only the chain. */
    make_cert_for(env, "server-other", "ca", "DNS:nats.other.example");
    nats_tls_conf(env, "server-other");
    assert_int_equal(h_nats_restart(env, SIGTERM), 0);
    assert_int_equal(h_vigil_start(env, right), 0);
    assert_int_equal(wait_log(env, "hostname mismatch"), 0);
    assert_int_equal(wait_readyz_nats(env, 0, "hostname mismatch", &r), 0);
    h_resp_free(&r);
    h_teardown(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(service_role_cannot_alter_history),
        cmocka_unit_test(pg_tls_verify_full),
        cmocka_unit_test(nats_user_password),
        cmocka_unit_test(nats_token),
        cmocka_unit_test(nats_nkey),
        cmocka_unit_test(nats_creds),
        cmocka_unit_test(nats_tls_client_cert),
    };
    if (getenv("VIGIL_TEST_FILTER")) /* e.g. VIGIL_TEST_FILTER='nats_*' */
        cmocka_set_test_filter(getenv("VIGIL_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
