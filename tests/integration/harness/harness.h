/*
 * harness.h — the integration-test harness: real servers, real binary.
 *
 * Every integration test runs against a real PostgreSQL 15 and, when it asks,
 * a real nats-server 2.9 with JetStream, each on free loopback ports inside a
 * fresh temp dir (/tmp/vigil-it-XXXXXX; $VIGIL_TEST_TMPDIR instead of /tmp
 * when set, e.g. /dev/shm for speed), plus the real `vigil` binary
 * (VIGIL_BIN, defined by CMake). Teardown stops all of it and deletes the dir.
 *
 * Layout of an environment's dir:
 *   DIR/pg/           socket dir (postgres-owned, 0700 when running as root)
 *   DIR/pg/data/      the cluster          DIR/pg/log     its server log
 *   DIR/js/           JetStream store      DIR/nats.log   nats-server log
 *   DIR/vigil-N.log   stdout+stderr of the N-th `vigil serve` (N from 1)
 *   DIR/run-N.log     stderr of the N-th one-shot `vigil <cmd>` run
 *
 * Processes. Every server is a direct child of the test process, started with
 * fork/execve, in its own process group, with a parent-death signal (so a
 * crashed test leaves no servers behind; start them from the main thread, or
 * from a thread that outlives them). When the test runs as root, PostgreSQL
 * runs as the `postgres` user. An atexit handler and SIGINT/SIGTERM/SIGHUP
 * handlers kill whatever is still running and remove every env dir, so a test
 * that fails before its teardown still cleans up; dirs left by a test that
 * was SIGKILLed are swept by the next h_env_new() once their owner is gone.
 *
 * Diagnostics. With VIGIL_TEST_VERBOSE set in the environment the harness
 * narrates what it starts, and h_teardown prints the tail of every log. The
 * same happens when the env is marked failed: by h_mark_failed(), by any
 * harness call that fails, by a vigil process that died on its own or exited
 * non-zero when stopped, or by the test ending without h_teardown (a failed
 * cmocka assertion jumps past the rest of the test: the exit handler then
 * tears the env down as failed). A failed env's logs are also copied to
 * VIGIL_TEST_OUT/<dir name>/ before the dir is removed.
 *
 * Threads. h_http*, h_get/h_post/..., h_db_connect and the h_sse_* calls may
 * be used from any thread. Everything else, including the cached h_db()
 * connection and the h_db_* helpers, belongs to the thread that owns the env.
 *
 * Return conventions: int functions return 0 on success and -1 on failure
 * after printing why on stderr (prefixed "harness:"), unless stated otherwise.
 */
#ifndef VIGIL_TEST_HARNESS_H
#define VIGIL_TEST_HARNESS_H

#include <jansson.h>
#include <libpq-fe.h>
#include <nats/nats.h>
#include <stddef.h>
#include <sys/types.h>

#define H_PATH_SIZE       256
#define H_PG_SETTINGS_MAX 16

/* One test environment. Tests read these fields and change only
 * http_timeout_ms. Ports are fixed by h_env_new (a start retries on a new
 * port only if the first start of that server finds its port taken); a pid
 * is 0 when the process is not running. */
typedef struct h_env {
    char dir[H_PATH_SIZE]; /* the temp dir, removed by h_teardown */

    int pg_port;              /* chosen by h_env_new, kept across restarts */
    pid_t pg_pid;             /* postmaster */
    char db_url[H_PATH_SIZE]; /* postgresql://postgres@127.0.0.1:PORT/vigil */
    /* postgresql://vigil_app@127.0.0.1:PORT/vigil: the least-privilege
     * service role (a member of vigil_service, see h_migrate) that vigil
     * processes connect as; db_url (a superuser) is the schema owner. */
    char svc_db_url[H_PATH_SIZE];

    int nats_port;     /* chosen by h_env_new, kept across restarts */
    int nats_mon_port; /* nats-server monitoring (HTTP) port */
    pid_t nats_pid;
    char nats_url[128];          /* nats://127.0.0.1:PORT, set even before a start */
    char nats_conf[H_PATH_SIZE]; /* set by h_nats_config: DIR/nats.conf */

    int http_port;               /* chosen by h_env_new; vigil serve listens here */
    char base_url[128];          /* http://127.0.0.1:PORT */
    pid_t vigil_pid;             /* the `vigil serve` started by h_vigil_start */
    char vigil_log[H_PATH_SIZE]; /* its log file */
    char admin_key[256];         /* filled by h_setup */

    int failed;           /* set by h_mark_failed or a failing harness call */
    long http_timeout_ms; /* per-request timeout of h_http (default 30000) */

    /* Harness-internal state below; do not touch. */
    int vigil_runs, cmd_runs, key_seq, pg_initialized, pg_started, nats_started;
    int pg_nsettings;
    char pg_settings[H_PG_SETTINGS_MAX][128];
    PGconn *db;
    struct h_env *live_next;
} h_env;

/* ---- environment lifecycle ---------------------------------------------- */

/* Creates the temp dir and picks free ports for PostgreSQL, HTTP and NATS
 * (client and monitoring); starts nothing. Returns NULL (with a message) on failure. Free with
 * h_teardown. */
h_env *h_env_new(void);

/* One call for the common case: h_env_new, h_pg_start, h_nats_start when
 * with_nats, h_migrate, an admin key into env->admin_key, h_vigil_start(NULL).
 * Returns NULL on failure after printing why (and the vigil log tail) and
 * cleaning up everything it started. */
h_env *h_setup(int with_nats);

/* Stops vigil (SIGTERM), any process from h_vigil_spawn, nats-server
 * (SIGTERM) and PostgreSQL (fast), prints/copies logs when failed or verbose,
 * removes env->dir and frees env. h_teardown(NULL) is a no-op. */
void h_teardown(h_env *env);

/* Marks the env failed so that h_teardown prints and keeps its logs. */
void h_mark_failed(h_env *env);

/* ---- PostgreSQL ----------------------------------------------------------- */

/* Adds a server setting ("name=value", e.g. "max_connections=200") passed as
 * -c to every later start of this env's cluster. At most H_PG_SETTINGS_MAX. */
int h_pg_set(h_env *env, const char *name_eq_value);

/* Starts PostgreSQL on env->pg_port and waits until it accepts connections
 * (up to 60 s, crash recovery included). The first start copies the data dir
 * of a per-process template cluster (built once per process: initdb -U
 * postgres -A trust -E UTF8 --locale=C.UTF-8, then CREATE DATABASE vigil).
 * The server runs with fsync, synchronous_commit and full_page_writes off:
 * with "immediate" or "kill" stops, transactions committed in the last few
 * hundred ms may be lost; h_pg_set(env, "synchronous_commit=on") first where
 * a test needs them to survive. */
int h_pg_start(h_env *env);

/* Stops PostgreSQL and waits for it to exit. mode is
 *   "smart"      SIGTERM: waits for clients to disconnect;
 *   "fast"       SIGINT:  disconnects clients, clean shutdown (the default
 *                for NULL);
 *   "immediate"  SIGQUIT: no checkpoint, crash recovery at next start;
 *   "kill"       SIGKILL to the postmaster and all its backends at once
 *                (like a power cut, minus the fsync=off caveat).
 * Closes the cached h_db() connection first. */
int h_pg_stop(h_env *env, const char *mode);

/* h_pg_stop(mode) then h_pg_start, same port, same data. */
int h_pg_restart(h_env *env, const char *mode);

/* ---- nats-server ---------------------------------------------------------- */

/* Starts `nats-server -js -sd DIR/js -a 127.0.0.1 -p PORT -m MONPORT
 * -P DIR/nats.pid` and waits (up to 20 s) until the client port accepts and
 * the monitoring /healthz answers 200. Every start uses the same ports and
 * store dir, so a stop + start is a restart; nats may also first be started
 * after vigil, which was already given env->nats_url. */
int h_nats_start(h_env *env);

/* Writes `conf` (nats-server configuration text: authorization, tls...) to
 * DIR/nats.conf; every later h_nats_start passes it with -c (the command-line
 * flags above still win). Tests of authenticated or TLS servers connect with
 * their own natsOptions: h_nats_connect and h_js_stream_msgs do not
 * authenticate. */
int h_nats_config(h_env *env, const char *conf);

/* Sends sig (SIGTERM for a clean shutdown, SIGKILL for a crash) and waits up
 * to 30 s for the exit, escalating to SIGKILL after that. */
int h_nats_stop(h_env *env, int sig);

/* h_nats_stop(sig) then h_nats_start. */
int h_nats_restart(h_env *env, int sig);

/* A new client connection to env->nats_url that reconnects every 100 ms
 * (without limit) across server restarts; caller natsConnection_Destroy-s it.
 * NULL (printed) on failure. */
natsConnection *h_nats_connect(const h_env *env);

/* Number of messages JetStream stream `stream` holds now, or -1 (printed). */
long long h_js_stream_msgs(h_env *env, const char *stream);

/* ---- the vigil binary ----------------------------------------------------- */

/* The environment a vigil process gets: the test process's environment,
 * then VIGIL_DATABASE_URL=env->svc_db_url (the service role),
 * VIGIL_MIGRATE_DATABASE_URL=env->db_url, VIGIL_HTTP_ADDR=127.0.0.1:http_port and
 * VIGIL_NATS_URL=env->nats_url (always: when nats is not running nothing
 * listens there, so a test never reaches a NATS it did not start), then
 * extra_env: a NULL-terminated array of "K=V" that add or replace, or "K"
 * alone to remove K. */

/* Starts `vigil serve` with stdout+stderr to DIR/vigil-N.log and waits up to
 * 15 s for GET /healthz == 200. Fails if vigil is already running (stop it
 * first), exits early or never becomes healthy; the log tail is printed. */
int h_vigil_start(h_env *env, const char *const *extra_env);

/* Sends sig to `vigil serve` and waits up to 15 s, then SIGKILL. Returns the
 * exit code (0..255), 128+N if it died from signal N (SIGKILL gives 137), or
 * -1 if no vigil was running. A clean SIGTERM shutdown gives 0. Unless sig is
 * SIGKILL, a non-zero result marks the env failed, as does a vigil that had
 * already exited by itself (its code is returned). */
int h_vigil_stop(h_env *env, int sig);

/* Runs `vigil ARGS...` to completion (at most 300 s) with the env described
 * above. argv does not include the program name. stdin_data (or NULL for
 * /dev/null) is written to its stdin. *out_stdout and *out_stderr (each may be
 * NULL) receive malloc'ed NUL-terminated copies, caller frees; stderr is also
 * appended to DIR/run-N.log. Returns the exit code (0..255), 128+N for a
 * signal, or -1 if it could not run or timed out. */
int h_vigil_runv(h_env *env, const char *const *extra_env, const char *stdin_data,
                 char **out_stdout, char **out_stderr, const char *const *argv);

/* h_vigil_runv(env, NULL, NULL, out_stdout, NULL, {arg0, ..., NULL}).
 * The argument list must end with NULL. */
int h_vigil_run(h_env *env, char **out_stdout, const char *arg0, ...) __attribute__((sentinel));

/* Runs `vigil migrate --service-role vigil_app` (as the owner, db_url); 0
 * when it exits 0, else prints its stderr, -1. */
int h_migrate(h_env *env);

/* Copies the last non-empty line of text (NULL counts as empty), without
 * surrounding blanks, into out; trims text's trailing blanks in place. 0 when
 * the line is not empty and fits in outsz, else -1. Used to read the key that
 * `vigil keys create` prints alone on its last line. */
int h_last_line(char *text, char *out, size_t outsz);

/* Runs `vigil keys create --role ROLE --name NAME` and copies the key (the
 * last non-empty stdout line, trimmed) into out. 0 on success; otherwise
 * prints the output, marks env failed and returns -1. */
int h_key_create_named(h_env *env, const char *role, const char *name, char *out, size_t outsz);

/* h_key_create_named with the name it-ROLE-N (N counts up per env). */
int h_key_create(h_env *env, const char *role, char *out, size_t outsz);

/* Starts any other long-running vigil process in the background (a second
 * `serve` with extra_env {"VIGIL_HTTP_ADDR=127.0.0.1:P", NULL}, `replay`...)
 * with stdout+stderr to DIR/vigil-N.log (path copied to log_out when not
 * NULL). It is killed by h_teardown/the exit handler if still running. Returns
 * the pid, or -1. Stop it with h_proc_stop. */
pid_t h_vigil_spawn(h_env *env, const char *const *extra_env, const char *const *argv,
                    char *log_out, size_t log_outsz);

/* Sends sig (0 = send nothing, just wait) to a child started by the harness
 * and waits up to timeout_ms for its exit, then SIGKILLs it. Returns the exit
 * code, 128+N for signal N, -1 if pid is not a running harness child, or -2
 * when sig was 0 and it did not exit in time (it is then left running). */
int h_proc_stop(pid_t pid, int sig, int timeout_ms);

/* ---- HTTP (libcurl) ------------------------------------------------------- */

typedef struct h_resp {
    long status;            /* HTTP status of the final response */
    char *body;             /* malloc'ed, NUL-terminated ("" if empty) */
    size_t len;             /* body length without the NUL */
    json_t *json;           /* parsed body when it is JSON, else NULL; owned */
    char content_type[128]; /* "" when absent */
    char request_id[128];   /* X-Request-Id */
    char retry_after[32];   /* Retry-After */
    char *headers;          /* all header lines of the final response, raw */
} h_resp;

/* Sends one request to env->base_url + path (or to path itself when it starts
 * with "http://"). key, when not NULL, goes as "Authorization: Bearer KEY".
 * body (may contain NULs when body_len >= 0; body_len -1 means strlen) is sent
 * with "Content-Type: application/json" unless headers has a Content-Type.
 * headers: NULL-terminated extra "Name: value" lines; "Name:" removes a header
 * curl would send. *out is always initialised (h_resp_free is always safe).
 * Returns 0 when a response arrived, whatever its status; -1 on transport
 * error (refused, timeout: env->http_timeout_ms), printed. Thread-safe;
 * connections are kept alive and shared between calls. */
int h_http(h_env *env, const char *method, const char *path, const char *key, const char *body,
           long body_len, const char *const *headers, h_resp *out);

/* printf-style path conveniences over h_http (no extra headers). */
int h_get(h_env *env, const char *key, h_resp *out, const char *pathfmt, ...)
    __attribute__((format(printf, 4, 5)));
int h_delete(h_env *env, const char *key, h_resp *out, const char *pathfmt, ...)
    __attribute__((format(printf, 4, 5)));
int h_post(h_env *env, const char *key, const char *body, h_resp *out, const char *pathfmt, ...)
    __attribute__((format(printf, 5, 6)));
int h_put(h_env *env, const char *key, const char *body, h_resp *out, const char *pathfmt, ...)
    __attribute__((format(printf, 5, 6)));
int h_patch(h_env *env, const char *key, const char *body, h_resp *out, const char *pathfmt, ...)
    __attribute__((format(printf, 5, 6)));

/* POSTs `body` to /customers with the admin key and copies the new
 * customer's id into id_out. 0 on 201; otherwise prints the answer and
 * returns -1. */
int h_customer_create(h_env *env, const char *body, char *id_out, size_t outsz);

/* Copies the value of the response header `name` (case-insensitive, first
 * occurrence, trimmed) into out. Returns 0, or -1 when absent. */
int h_resp_header(const h_resp *r, const char *name, char *out, size_t outsz);

/* Frees what r owns and zeroes it; h_resp_free(NULL) is a no-op. */
void h_resp_free(h_resp *r);

/* GETs /metrics with key and sets *value to the sample on the line that
 * starts with `name` and a space (name may carry labels, e.g.
 * `vigil_consumer_batches_total{consumer="webhooks"}`), or to -1 when no
 * line does. Returns 0 on a 200 answer, -1 otherwise (printed). */
int h_metric(h_env *env, const char *key, const char *name, double *value);
/* The same sample from a /metrics answer already read (`body`), or -1: for
 * several samples that must come from one moment. */
double h_metric_in(const char *body, const char *name);

/* ---- Server-Sent Events -------------------------------------------------- */

typedef struct h_sse h_sse;

typedef struct h_sse_event {
    char id[128];    /* the event's id: field ("" if none) */
    char event[128]; /* the event: field ("" means "message") */
    char *data;      /* data lines joined with '\n', malloc'ed, owned */
    json_t *json;    /* data parsed as JSON, or NULL; owned */
    double at;       /* CLOCK_MONOTONIC seconds when its blank line was read */
} h_sse_event;

/* Opens a streaming GET on path (Accept: text/event-stream, Bearer key when
 * not NULL, Last-Event-ID when last_event_id is not NULL) read by a
 * background thread. Waits up to 10 s for the response headers and returns
 * NULL unless the status is 200 (the status, if any, goes to *status_out when
 * not NULL). */
h_sse *h_sse_open(h_env *env, const char *key, const char *path, const char *last_event_id,
                  long *status_out);

/* Waits up to timeout_ms for the next event (comments are skipped). Returns 1
 * with *ev filled (free with h_sse_event_free), 0 on timeout, -1 when the
 * stream has ended and no events are left. */
int h_sse_next(h_sse *s, h_sse_event *ev, int timeout_ms);

/* Stops the reader thread, closes the stream, frees s. NULL is a no-op. */
void h_sse_close(h_sse *s);

/* Frees what ev owns and zeroes it. */
void h_sse_event_free(h_sse_event *ev);

/* ---- database ------------------------------------------------------------- */

/* The env's cached connection to db_url, (re)connected when missing or bad.
 * Borrowed: do not PQfinish it. NULL (printed) when PostgreSQL is down. */
PGconn *h_db(h_env *env);

/* A new connection to env->db_url for another thread; caller PQfinish-es it.
 * NULL (printed) on failure. */
PGconn *h_db_connect(const h_env *env);

/* Run sql with text parameters $1..$n given as const char * arguments; the
 * argument list ends at the first NULL (the macros add one, so callers may
 * omit it; SQL NULL cannot be passed this way). */
#define h_db_count(...) h_db_count_(__VA_ARGS__, (const char *)NULL)
#define h_db_text(...)  h_db_text_(__VA_ARGS__, (const char *)NULL)
#define h_db_exec(...)  h_db_exec_(__VA_ARGS__, (const char *)NULL)

/* Value of row 1, column 1 as an integer. -1 on error (printed), when there
 * is no row, or when the value is NULL or not an integer. */
long long h_db_count_(h_env *env, const char *sql, ...);

/* Value of row 1, column 1 as a malloc'ed string, caller frees. NULL on error
 * (printed), when there is no row, or when the value is NULL. */
char *h_db_text_(h_env *env, const char *sql, ...);

/* Runs sql for its effect. Without parameters sql may hold several
 * statements. 0 on success, -1 on error (printed). */
int h_db_exec_(h_env *env, const char *sql, ...);

/* ---- small utilities ------------------------------------------------------ */

/* A free TCP port on 127.0.0.1 (bind port 0, read it back, close), never one
 * this process already handed out recently. -1 on failure. */
int h_free_port(void);

/* Polls until 127.0.0.1:port accepts a TCP connection. 0 when it does, -1
 * after timeout_ms. */
int h_wait_port(int port, int timeout_ms);

/* Polls until process pid itself listens on 127.0.0.1:port: a connection
 * alone could be answered by another test's server that drew the same
 * free port. 0 when it does, -1 when pid exited or after timeout_ms. */
int h_wait_listener(pid_t pid, int port, int timeout_ms);

/* Whole file as a malloc'ed NUL-terminated string, caller frees; NULL if it
 * cannot be read. */
char *h_read_file(const char *path);

/* Prints the last `lines` lines of a file to stderr under a header line. */
void h_print_log_tail(const char *path, int lines);

/* Monotonic milliseconds, for timing and polling loops. */
long long h_now_ms(void);

/* Sleeps ms milliseconds. */
void h_sleep_ms(int ms);

/* ---- fault-injecting TCP proxy (harness_proxy.c) ---------------------------- */

/* What the proxy does with traffic; a change reaches open connections within
 * 50 ms. */
typedef enum h_proxy_mode {
    H_PROXY_PASS,      /* forward both ways */
    H_PROXY_DELAY,     /* forward, sleeping delay_ms before each chunk read */
    H_PROXY_BLACKHOLE, /* accept and read, never forward or answer; sockets stay open */
    H_PROXY_RESET,     /* reset (RST, SO_LINGER 0) every open and every new connection */
} h_proxy_mode;

typedef struct h_proxy h_proxy;

/* Starts a proxy in H_PROXY_PASS mode on a free loopback port, forwarding to
 * 127.0.0.1:upstream_port (connected per accepted client). Runs on threads
 * of the test process. NULL (printed) on failure. Free with h_proxy_stop. */
h_proxy *h_proxy_start(int upstream_port);

/* The port clients connect to. */
int h_proxy_port(const h_proxy *p);

/* Switches mode; delay_ms is used by H_PROXY_DELAY. Thread-safe. */
void h_proxy_set_mode(h_proxy *p, h_proxy_mode mode, int delay_ms);

/* Connections accepted so far (reconnects show up here). */
long h_proxy_accepted(h_proxy *p);

/* Closes every connection and the listener, joins the threads, frees p.
 * NULL is a no-op. */
void h_proxy_stop(h_proxy *p);

#endif
