/*
 * test_dashboard.c — the analysts' dashboard at / and /ui/{file}.
 *
 * Two parts. First the static files as HTTP serves them: content types, the
 * ETag/304 cycle, the security headers (a strict Content-Security-Policy, no
 * MIME sniffing), no inline script, and every file the page refers to
 * present. Then the dashboard as an analyst uses it: tests/e2e/dashboard.mjs
 * drives Debian's headless Chromium (through playwright-core) against the
 * real vigil, PostgreSQL and nats-server started here; it signs in, sees a
 * structuring alert appear live within 2 s of the deposits, works it to
 * closed from the UI, has a second person approve a SAR filing (four eyes)
 * in another browser context, checks the customer and system pages and the
 * feed's resume after a dropped connection, and saves screenshots under
 * VIGIL_TEST_OUT/dashboard/. This driver then checks the outcome through the
 * database as well.
 *
 * playwright-core comes from npm: when tests/e2e/node_modules lacks it, this
 * test runs `npm ci` there first (under a lock, since both build trees share
 * the source tree). A missing node, npm or chromium fails the test: the
 * browser check is part of `make test`, not optional.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#ifndef VIGIL_E2E_DIR
#error "VIGIL_E2E_DIR (tests/e2e in the source tree) must be defined by CMake"
#endif

#define CHROMIUM      "/usr/bin/chromium"
#define E2E_TIMEOUT_S 300

/* ---- part 1: the files over HTTP ---------------------------------------- */

static int setup(void **state)
{
    h_env *env = h_setup(1);
    *state = env;
    return env ? 0 : -1;
}

static int teardown(void **state)
{
    h_teardown(*state);
    return 0;
}

static void header_is(const h_resp *r, const char *name, const char *want)
{
    char v[512];
    assert_int_equal(h_resp_header(r, name, v, sizeof v), 0);
    assert_string_equal(v, want);
}

static void index_is_served_with_strict_headers(void **state)
{
    h_env *env = *state;
    h_resp r;
    assert_int_equal(h_get(env, NULL, &r, "/"), 0); /* no key: the page asks for one */
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "text/html; charset=utf-8");
    char csp[512], etag[128];
    assert_int_equal(h_resp_header(&r, "Content-Security-Policy", csp, sizeof csp), 0);
    assert_non_null(strstr(csp, "default-src 'self'"));
    assert_non_null(strstr(csp, "script-src 'self'"));
    assert_null(strstr(csp, "unsafe-inline"));
    assert_null(strstr(csp, "unsafe-eval"));
    header_is(&r, "X-Content-Type-Options", "nosniff");
    header_is(&r, "Cache-Control", "no-cache");
    header_is(&r, "Referrer-Policy", "no-referrer");
    assert_int_equal(h_resp_header(&r, "ETag", etag, sizeof etag), 0);
    assert_true(etag[0] == '"' && strlen(etag) > 10);

    /* No inline script: every <script> element loads a file. */
    int scripts = 0;
    for (const char *p = strstr(r.body, "<script"); p; p = strstr(p + 1, "<script")) {
        const char *end = strchr(p, '>');
        assert_non_null(end);
        char tag[256];
        snprintf(tag, sizeof tag, "%.*s", (int)(end - p), p);
        assert_non_null(strstr(tag, " src=\"/ui/"));
        assert_int_equal(strncmp(end, "></script>", 10), 0);
        scripts++;
    }
    assert_true(scripts >= 1);
    assert_null(strstr(r.body, " onclick="));
    assert_null(strstr(r.body, "style=\""));

    /* Every /ui/ file the page names is there, with its content type. */
    int files = 0;
    for (const char *p = strstr(r.body, "\"/ui/"); p; p = strstr(p + 1, "\"/ui/")) {
        char path[128];
        size_t n = strcspn(p + 1, "\"");
        assert_true(n < sizeof path);
        snprintf(path, sizeof path, "%.*s", (int)n, p + 1);
        h_resp a;
        assert_int_equal(h_get(env, NULL, &a, "%s", path), 0);
        if (a.status != 200)
            fprintf(stderr, "%s: %ld\n", path, a.status);
        assert_int_equal(a.status, 200);
        const char *dot = strrchr(path, '.');
        const char *want = strcmp(dot, ".js") == 0    ? "text/javascript; charset=utf-8"
                           : strcmp(dot, ".css") == 0 ? "text/css; charset=utf-8"
                           : strcmp(dot, ".svg") == 0 ? "image/svg+xml"
                                                      : "?";
        assert_string_equal(a.content_type, want);
        header_is(&a, "X-Content-Type-Options", "nosniff");
        h_resp_free(&a);
        files++;
    }
    assert_true(files >= 3);

    /* Revalidation: the same ETag gives 304 with no body. */
    char inm[160];
    snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
    const char *hdrs[] = {inm, NULL};
    h_resp c;
    assert_int_equal(h_http(env, "GET", "/", NULL, NULL, -1, hdrs, &c), 0);
    assert_int_equal(c.status, 304);
    assert_int_equal(c.len, 0);
    const char *stale[] = {"If-None-Match: \"0123456789abcdef\"", NULL};
    h_resp_free(&c);
    assert_int_equal(h_http(env, "GET", "/", NULL, NULL, -1, stale, &c), 0);
    assert_int_equal(c.status, 200);
    assert_int_equal(c.len, r.len);
    h_resp_free(&c);
    h_resp_free(&r);
}

static void modules_import_only_embedded_files(void **state)
{
    h_env *env = *state;
    h_resp r;
    const char *mods[] = {"app.js",    "api.js",       "feed.js",   "dom.js",
                          "alerts.js", "customers.js", "system.js", "charts.js"};
    for (size_t i = 0; i < sizeof mods / sizeof mods[0]; i++) {
        assert_int_equal(h_get(env, NULL, &r, "/ui/%s", mods[i]), 0);
        assert_int_equal(r.status, 200);
        /* import ... from './x.js': x.js must be served too */
        for (const char *p = strstr(r.body, "from './"); p; p = strstr(p + 1, "from './")) {
            char name[64];
            size_t n = strcspn(p + 8, "'");
            assert_true(n < sizeof name);
            snprintf(name, sizeof name, "%.*s", (int)n, p + 8);
            h_resp m;
            assert_int_equal(h_get(env, NULL, &m, "/ui/%s", name), 0);
            if (m.status != 200)
                fprintf(stderr, "%s imports %s: %ld\n", mods[i], name, m.status);
            assert_int_equal(m.status, 200);
            h_resp_free(&m);
        }
        /* nothing from another origin */
        assert_null(strstr(r.body, "http://"));
        assert_null(strstr(r.body, "https://"));
        h_resp_free(&r);
    }
}

static void unknown_files_are_problems(void **state)
{
    h_env *env = *state;
    h_resp r;
    assert_int_equal(h_get(env, NULL, &r, "/ui/nope.js"), 0);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.content_type, "application/problem+json");
    assert_non_null(strstr(r.body, "nope.js"));
    h_resp_free(&r);
    assert_int_equal(h_get(env, NULL, &r, "/ui/..%%2fREADME.md"), 0);
    assert_int_equal(r.status, 404);
    h_resp_free(&r);
    /* The API's own replies stay uncacheable. */
    assert_int_equal(h_get(env, env->admin_key, &r, "/alerts"), 0);
    assert_int_equal(r.status, 200);
    header_is(&r, "Cache-Control", "no-store");
    header_is(&r, "X-Content-Type-Options", "nosniff");
    h_resp_free(&r);
}

/* ---- part 2: the browser ------------------------------------------------- */

/* Runs argv (argv[0] a path) in `dir` with `envp` added to ours, stdout and
 * stderr to `log`, for at most timeout_s. Returns the exit code, 128+N for
 * signal N, -1 when it could not run or timed out. */
static int run(const char *dir, char *const argv[], char *const envp[], const char *log,
               int timeout_s)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        setpgid(0, 0);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0 || chdir(dir) != 0)
            _exit(126);
        dup2(fd, 1);
        dup2(fd, 2);
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0)
            dup2(nul, 0);
        for (char *const *e = envp; e && *e; e++)
            putenv(*e);
        execv(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    long long deadline = h_now_ms() + timeout_s * 1000LL;
    int st;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR)
            return -1;
        if (h_now_ms() > deadline) {
            fprintf(stderr, "%s: timed out after %d s; killed\n", argv[0], timeout_s);
            kill(-pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        h_sleep_ms(100);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static const char *which(const char *name, char *buf, size_t bufsz)
{
    const char *dirs[] = {"/usr/bin", "/usr/local/bin", "/bin"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(buf, bufsz, "%s/%s", dirs[i], name);
        if (access(buf, X_OK) == 0)
            return buf;
    }
    fprintf(stderr, "%s not found (scripts/deps.sh installs it)\n", name);
    return NULL;
}

/* The "version" of a package.json-like file, or of one entry of its
 * "packages" (a package-lock.json) when `entry` is given; "" when absent. */
static void json_version(const char *file, const char *entry, char *out, size_t outsz)
{
    json_t *j = json_load_file(file, 0, NULL);
    json_t *o = entry ? json_object_get(json_object_get(j, "packages"), entry) : j;
    const char *v = json_string_value(json_object_get(o, "version"));
    snprintf(out, outsz, "%s", v ? v : "");
    json_decref(j);
}

/* 1 when tests/e2e/node_modules holds the playwright-core the lock names. */
static int playwright_installed(void)
{
    char want[64], have[64];
    json_version(VIGIL_E2E_DIR "/package-lock.json", "node_modules/playwright-core", want,
                 sizeof want);
    json_version(VIGIL_E2E_DIR "/node_modules/playwright-core/package.json", NULL, have,
                 sizeof have);
    return want[0] && strcmp(want, have) == 0;
}

/* playwright-core in tests/e2e/node_modules, installed with `npm ci` (from
 * the committed package-lock.json) when missing or not the locked version. */
static int ensure_playwright(const char *log)
{
    char npm[256];
    int lock = open(VIGIL_E2E_DIR "/package.json", O_RDONLY);
    if (lock < 0 || flock(lock, LOCK_EX) != 0) {
        fprintf(stderr, "cannot lock %s/package.json: %s\n", VIGIL_E2E_DIR, strerror(errno));
        if (lock >= 0)
            close(lock);
        return -1;
    }
    int rc = 0;
    if (!playwright_installed()) {
        if (!which("npm", npm, sizeof npm)) {
            rc = -1;
        } else {
            fprintf(stderr, "installing playwright-core: npm ci in %s\n", VIGIL_E2E_DIR);
            char *const argv[] = {npm, "ci", "--no-audit", "--no-fund", NULL};
            rc = run(VIGIL_E2E_DIR, argv, NULL, log, 600);
            if (rc != 0 || !playwright_installed()) {
                fprintf(stderr, "npm ci failed (%d):\n", rc);
                h_print_log_tail(log, 30);
                rc = -1;
            }
        }
    }
    close(lock); /* releases the flock */
    return rc;
}

/* The value after "E2E <name>=" or "E2E <name> " in the log, or -1. */
static long long log_number(const char *text, const char *name)
{
    char pat[64];
    snprintf(pat, sizeof pat, "E2E %s=", name);
    const char *p = text ? strstr(text, pat) : NULL;
    return p ? atoll(p + strlen(pat)) : -1;
}

static void browser_end_to_end(void **state)
{
    h_env *env = *state;
    char out[512], log[600], node[256], analyst[256], ingest[256];
    snprintf(out, sizeof out, "%s/dashboard", VIGIL_TEST_OUT);
    mkdir(VIGIL_TEST_OUT, 0755);
    mkdir(out, 0755);
    snprintf(log, sizeof log, "%s/e2e.log", out);
    unlink(log);
    char stale[600];
    snprintf(stale, sizeof stale, "%s/failure.png", out); /* from an earlier failed run */
    unlink(stale);

    assert_non_null(which("node", node, sizeof node));
    assert_int_equal(access(CHROMIUM, X_OK), 0);
    assert_int_equal(ensure_playwright(log), 0);
    assert_int_equal(h_key_create(env, "analyst", analyst, sizeof analyst), 0);
    assert_int_equal(h_key_create(env, "ingest", ingest, sizeof ingest), 0);
    long long alerts_before = h_db_count(env, "SELECT count(*) FROM alerts");

    char e_url[200], e_an[300], e_in[300], e_ad[300], e_out[600];
    snprintf(e_url, sizeof e_url, "VIGIL_URL=%s", env->base_url);
    snprintf(e_an, sizeof e_an, "VIGIL_ANALYST_KEY=%s", analyst);
    snprintf(e_in, sizeof e_in, "VIGIL_INGEST_KEY=%s", ingest);
    snprintf(e_ad, sizeof e_ad, "VIGIL_ADMIN_KEY=%s", env->admin_key);
    snprintf(e_out, sizeof e_out, "VIGIL_E2E_OUT=%s", out);
    char *const envp[] = {e_url, e_an, e_in, e_ad, e_out, "CHROMIUM=" CHROMIUM, NULL};
    char *const argv[] = {node, VIGIL_E2E_DIR "/dashboard.mjs", NULL};
    long long t0 = h_now_ms();
    int rc = run(VIGIL_E2E_DIR, argv, envp, log, E2E_TIMEOUT_S);
    char *text = h_read_file(log);
    fprintf(stderr, "---- %s (%lld ms) ----\n%s----\n", log, h_now_ms() - t0,
            text ? text : "(no log)");
    if (rc != 0)
        h_mark_failed(env);
    assert_int_equal(rc, 0);

    /* What the browser did, as the database has it: three structuring
     * alerts; the first closed as a false positive by the analyst's key,
     * the second closed as sar_filed through an approved proposal, the
     * third (fired while the queue loaded) left open. */
    long long live_ms = log_number(text, "alert_live_ms");
    assert_true(live_ms >= 0 && live_ms <= 2000);
    const char *a = text ? strstr(text, "E2E ALERT ") : NULL;
    assert_non_null(a);
    char alert_id[37];
    snprintf(alert_id, sizeof alert_id, "%.36s", a + 10);
    free(text);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM alerts"), alerts_before + 3);
    assert_int_equal(h_db_count(env, "SELECT count(*) FROM alerts WHERE disposition = 'sar_filed'"),
                     1);
    assert_int_equal(h_db_count(env,
                                "SELECT count(*) FROM alerts WHERE id = $1::uuid AND rule_id ="
                                " 'structuring' AND status = 'closed' AND disposition ="
                                " 'false_positive' AND actor LIKE 'key:it-analyst-%'",
                                alert_id),
                     1);
    char shot[700];
    snprintf(shot, sizeof shot, "%s/1-alert-queue.png", out);
    struct stat sb;
    assert_int_equal(stat(shot, &sb), 0);
    assert_true(sb.st_size > 10000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(index_is_served_with_strict_headers),
        cmocka_unit_test(modules_import_only_embedded_files),
        cmocka_unit_test(unknown_files_are_problems),
        cmocka_unit_test(browser_end_to_end),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
