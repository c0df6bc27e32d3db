/*
 * harness.c — test environments: a temp dir, PostgreSQL, nats-server and the
 * vigil binary, started for one test and removed after it.
 *
 * PostgreSQL runs as a direct child (`postgres -D ...`, not pg_ctl, which
 * daemonizes it) so that its pid and exit status are known and the kernel
 * sends it SIGQUIT if the test process dies. initdb plus CREATE DATABASE
 * cost over a second, so they run once per process, into a template cluster
 * that every env's cluster copies (cp -a, 0.1-1 s depending on disk load).
 * When the test runs as root, initdb and postgres run as the `postgres` user
 * (they refuse root), dropping privileges in the forked child, and the socket
 * DIR/pg is postgres-owned with mode 0700.
 */
#include "harness_internal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef VIGIL_BIN
#error "VIGIL_BIN must be defined (path of the built vigil binary)"
#endif
#ifndef VIGIL_TEST_OUT
#define VIGIL_TEST_OUT "/tmp"
#endif

#define PG_BIN         "/usr/lib/postgresql/15/bin"
#define DIR_PREFIX     "vigil-it-"
#define PG_WAIT_MS     60000
#define NATS_READY_MS  20000
#define NATS_STOP_MS   30000
#define VIGIL_READY_MS 15000
#define VIGIL_STOP_MS  15000
#define VIGIL_RUN_MS   300000
#define MAX_ARGS       64
#define PORT_ATTEMPTS  3
#define H_SERVICE_ROLE "vigil_app" /* the login role vigil connects as */

extern char **environ;

static int is_root(void)
{
    return geteuid() == 0;
}

/* ---- ports ------------------------------------------------------------------ */

int h_free_port(void)
{
    /* Ports handed out recently in this process, so two services of one test
     * never get the same port between probing and binding it. */
    static int recent[256];
    static unsigned next;
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

    for (int attempt = 0; attempt < 50; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof a;
        int port = -1;
        if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
            getsockname(fd, (struct sockaddr *)&a, &len) == 0)
            port = ntohs(a.sin_port);
        close(fd);
        if (port < 0) {
            h__err("cannot find a free port: %s", strerror(errno));
            return -1;
        }
        pthread_mutex_lock(&lock);
        int dup = 0;
        for (size_t i = 0; i < sizeof recent / sizeof recent[0]; i++)
            dup |= recent[i] == port;
        if (!dup)
            recent[next++ % (sizeof recent / sizeof recent[0])] = port;
        pthread_mutex_unlock(&lock);
        if (!dup)
            return port;
    }
    return -1;
}

int h_wait_port(int port, int timeout_ms)
{
    long long deadline = h_now_ms() + timeout_ms;
    do {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok)
            return 0;
        h_sleep_ms(20);
    } while (h_now_ms() < deadline);
    return -1;
}

int h_wait_listener(pid_t pid, int port, int timeout_ms)
{
    long long deadline = h_now_ms() + timeout_ms;
    for (;;) {
        if (h__port_owned_by(pid, port) != 0)
            return 0;
        if (kill(pid, 0) != 0 || h_now_ms() >= deadline)
            return -1;
        h_sleep_ms(20);
    }
}

/* ---- small file helpers ----------------------------------------------------- */

static int open_log(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        h__err("open %s: %s", path, strerror(errno));
    return fd;
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int rc = fputs(text, f) < 0 ? -1 : 0;
    return fclose(f) == 0 ? rc : -1;
}

static int file_contains(const char *path, const char *needle)
{
    char *s = h_read_file(path);
    int found = s && strstr(s, needle);
    free(s);
    return found;
}

static long read_pid_file(const char *path)
{
    char *s = h_read_file(path);
    long pid = s ? strtol(s, NULL, 10) : 0;
    free(s);
    return pid;
}

/* Where env dirs go: VIGIL_TEST_TMPDIR when set (e.g. /dev/shm, where
 * copying a cluster is about ten times faster than on a loaded ext4 disk),
 * else /tmp. */
static const char *temp_base(void)
{
    const char *base = getenv("VIGIL_TEST_TMPDIR");
    return base && *base ? base : "/tmp";
}

/* Owner-only temp dir that the postgres user may traverse when root. */
static int make_temp_dir(char *out, size_t outsz)
{
    if (h__fmt(out, outsz, "%s/" DIR_PREFIX "XXXXXX", temp_base()) != 0)
        return -1;
    if (!mkdtemp(out)) {
        h__err("mkdtemp %s: %s", out, strerror(errno));
        return -1;
    }
    h__dir_track(out);
    char owner[H_PATH_SIZE + 16], pid[32];
    snprintf(owner, sizeof owner, "%s/owner", out);
    snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (write_file(owner, pid) != 0 || (is_root() && chmod(out, 0711) != 0)) {
        h__err("preparing %s: %s", out, strerror(errno));
        return -1;
    }
    return 0;
}

/* Dir owned by the postgres user (when root) with mode 0700. */
static int make_pg_dir(const char *path)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        h__err("mkdir %s: %s", path, strerror(errno));
        return -1;
    }
    if (is_root()) {
        struct passwd pw, *found = NULL;
        char b[4096];
        if (getpwnam_r("postgres", &pw, b, sizeof b, &found) != 0 || !found) {
            h__err("running as root but there is no `postgres` user");
            return -1;
        }
        if (chown(path, pw.pw_uid, pw.pw_gid) != 0) {
            h__err("chown %s: %s", path, strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* Removes vigil-it-* dirs (in the temp base) whose owning test process no longer exists
 * (left behind by a test that was SIGKILLed) and whose postmaster is gone. */
static void sweep_stale_dirs(void)
{
    const char *base = temp_base();
    DIR *d = opendir(base);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, DIR_PREFIX, strlen(DIR_PREFIX)) != 0)
            continue;
        char path[H_PATH_SIZE + 260], file[H_PATH_SIZE + 300];
        snprintf(path, sizeof path, "%s/%s", base, e->d_name);
        snprintf(file, sizeof file, "%s/owner", path);
        long owner = read_pid_file(file);
        if (owner <= 0 || kill((pid_t)owner, 0) == 0 || errno != ESRCH)
            continue;
        snprintf(file, sizeof file, "%s/pg/data/postmaster.pid", path);
        long pm = read_pid_file(file);
        if (pm > 0 && (kill((pid_t)pm, 0) == 0 || errno != ESRCH))
            continue;
        h__log("removing stale %s (owner %ld is gone)", path, owner);
        h__rmtree(path);
    }
    closedir(d);
}

/* ---- environment ------------------------------------------------------------ */

static void set_urls(h_env *env)
{
    snprintf(env->db_url, sizeof env->db_url, "postgresql://postgres@127.0.0.1:%d/vigil",
             env->pg_port);
    snprintf(env->svc_db_url, sizeof env->svc_db_url,
             "postgresql://" H_SERVICE_ROLE "@127.0.0.1:%d/vigil", env->pg_port);
    snprintf(env->base_url, sizeof env->base_url, "http://127.0.0.1:%d", env->http_port);
    snprintf(env->nats_url, sizeof env->nats_url, "nats://127.0.0.1:%d", env->nats_port);
}

/* Envs not yet torn down. One still here at exit belongs to a test that
 * stopped before its teardown, most likely on a failed assertion: the exit
 * handler tears it down as failed, so its logs are shown and kept. */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t live_once = PTHREAD_ONCE_INIT;
static h_env *live;
static pid_t live_owner;

static void teardown_leftovers(void)
{
    if (getpid() != live_owner)
        return; /* a forked child's exit */
    for (;;) {
        pthread_mutex_lock(&live_lock);
        h_env *env = live;
        pthread_mutex_unlock(&live_lock);
        if (!env)
            break;
        h__err("env %s was never torn down (did its test fail?); tearing it down now", env->dir);
        env->failed = 1;
        h_teardown(env);
    }
}

static void live_init(void)
{
    live_owner = getpid();
    /* Registered after the process-wide cleanup, so it runs before it. */
    atexit(teardown_leftovers);
}

static void live_add(h_env *env)
{
    pthread_mutex_lock(&live_lock);
    env->live_next = live;
    live = env;
    pthread_mutex_unlock(&live_lock);
}

static void live_remove(h_env *env)
{
    pthread_mutex_lock(&live_lock);
    for (h_env **p = &live; *p; p = &(*p)->live_next) {
        if (*p == env) {
            *p = env->live_next;
            break;
        }
    }
    pthread_mutex_unlock(&live_lock);
}

h_env *h_env_new(void)
{
    h__init_once();
    pthread_once(&live_once, live_init);
    sweep_stale_dirs();
    h_env *env = calloc(1, sizeof *env);
    if (!env) {
        h__err("out of memory");
        return NULL;
    }
    live_add(env);
    if (make_temp_dir(env->dir, sizeof env->dir) != 0) {
        h_teardown(env);
        return NULL;
    }
    env->pg_port = h_free_port();
    env->http_port = h_free_port();
    env->nats_port = h_free_port();
    env->nats_mon_port = h_free_port();
    if (env->pg_port < 0 || env->http_port < 0 || env->nats_port < 0 || env->nats_mon_port < 0) {
        h_teardown(env);
        return NULL;
    }
    env->http_timeout_ms = 30000;
    set_urls(env);
    h__log("env %s: ports pg %d, http %d, nats %d", env->dir, env->pg_port, env->http_port,
           env->nats_port);
    return env;
}

void h_mark_failed(h_env *env)
{
    if (env)
        env->failed = 1;
}

/* Copies src to dst; used to keep a failed env's logs. */
static void copy_file(const char *src, const char *dst)
{
    char *s = h_read_file(src);
    if (s) {
        write_file(dst, s);
        free(s);
    }
}

static int is_log_entry(const struct dirent *e)
{
    size_t n = strlen(e->d_name);
    return n > 4 && strcmp(e->d_name + n - 4, ".log") == 0;
}

/* Prints the log tails (when print) and copies the logs to VIGIL_TEST_OUT
 * (when keep). */
static void report_logs(const h_env *env, int print, int keep)
{
    char keep_dir[H_PATH_SIZE + 64] = "";
    if (keep) {
        const char *base = strrchr(env->dir, '/');
        snprintf(keep_dir, sizeof keep_dir, "%s/%s", VIGIL_TEST_OUT, base ? base + 1 : env->dir);
        mkdir(VIGIL_TEST_OUT, 0755);
        if (mkdir(keep_dir, 0755) != 0 && errno != EEXIST)
            keep_dir[0] = '\0';
    }
    char path[H_PATH_SIZE + 300], dst[2 * H_PATH_SIZE + 300];
    struct dirent **names = NULL;
    int n = scandir(env->dir, &names, is_log_entry, alphasort);
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        snprintf(path, sizeof path, "%s/%s", env->dir, name);
        if (print)
            h_print_log_tail(path, strncmp(name, "vigil-", 6) == 0 ? 40 : 15);
        if (keep_dir[0]) {
            snprintf(dst, sizeof dst, "%s/%s", keep_dir, name);
            copy_file(path, dst);
        }
        free(names[i]);
    }
    free(names);
    snprintf(path, sizeof path, "%s/pg/log", env->dir);
    if (print && access(path, F_OK) == 0)
        h_print_log_tail(path, 15);
    if (keep_dir[0]) {
        snprintf(dst, sizeof dst, "%s/postgres.log", keep_dir);
        copy_file(path, dst);
        h__err("logs of failed env %s kept in %s", env->dir, keep_dir);
    }
}

void h_teardown(h_env *env)
{
    if (!env)
        return;
    if (env->vigil_pid)
        h_vigil_stop(env, SIGTERM);
    /* Processes from h_vigil_spawn, while the servers they use are still up. */
    h__proc_kill_owned(env);
    if (env->db) {
        PQfinish(env->db);
        env->db = NULL;
    }
    if (env->nats_pid)
        h_nats_stop(env, SIGTERM);
    if (env->pg_pid)
        h_pg_stop(env, "fast");
    if (env->dir[0]) {
        if (env->failed || h__verbose())
            report_logs(env, 1, env->failed);
        if (h__rmtree(env->dir) != 0)
            h__err("could not remove %s", env->dir);
        h__dir_untrack(env->dir);
    }
    live_remove(env);
    free(env);
}

/* Reports a server that did not come up, with its log tail; returns -1. */
static int start_failed(h_env *env, const char *what, const char *log)
{
    h__err("%s failed to start in %s", what, env->dir);
    h_print_log_tail(log, 20);
    env->failed = 1;
    return -1;
}

/* ---- PostgreSQL --------------------------------------------------------------- */

/* env->pg_initialized: nothing yet; a data dir without the `vigil` database
 * (only the template); a data dir with it. */
enum { PG_NONE, PG_DATA, PG_READY };

static int run_initdb(const char *data_dir)
{
    const char *argv[] = {
        PG_BIN "/initdb",   "-D",        data_dir, "-U", "postgres", "-A", "trust", "-E", "UTF8",
        "--locale=C.UTF-8", "--no-sync", NULL};
    char *out = NULL, *err = NULL;
    long long t0 = h_now_ms();
    int rc = h__run(argv, NULL, "/", 1, NULL, &out, &err, 120000);
    if (rc != 0)
        h__err("initdb failed (exit %d):\n%s%s", rc, out ? out : "", err ? err : "");
    else
        h__log("initdb took %lld ms", h_now_ms() - t0);
    free(out);
    free(err);
    return rc == 0 ? 0 : -1;
}

/* The process-wide template cluster: initdb'ed, database `vigil` created,
 * cleanly stopped. Every env copies its data dir. The exit handler removes
 * it with the other tracked dirs. */
static pthread_mutex_t template_lock = PTHREAD_MUTEX_INITIALIZER;
static h_env template_env;
static int template_ok;

static int template_build(h_env *t)
{
    char sock[H_PATH_SIZE + 8], data[H_PATH_SIZE + 16];
    long long t0 = h_now_ms();
    if (make_temp_dir(t->dir, sizeof t->dir) != 0)
        return -1;
    snprintf(sock, sizeof sock, "%s/pg", t->dir);
    snprintf(data, sizeof data, "%s/pg/data", t->dir);
    if (make_pg_dir(sock) != 0 || run_initdb(data) != 0)
        return -1;
    t->pg_initialized = PG_DATA;
    if ((t->pg_port = h_free_port()) < 0)
        return -1;
    set_urls(t);
    if (h_pg_start(t) != 0 || h_pg_stop(t, "fast") != 0)
        return -1;
    h__log("cluster template %s built in %lld ms", t->dir, h_now_ms() - t0);
    return 0;
}

static const char *pg_template(void)
{
    pthread_mutex_lock(&template_lock);
    if (!template_ok) {
        h_env *t = &template_env;
        template_ok = template_build(t) == 0;
        if (!template_ok) {
            if (t->pg_pid)
                h_pg_stop(t, "immediate");
            if (t->dir[0]) {
                h__rmtree(t->dir);
                h__dir_untrack(t->dir);
            }
            memset(t, 0, sizeof *t);
        }
    }
    pthread_mutex_unlock(&template_lock);
    return template_ok ? template_env.dir : NULL;
}

static int pg_init_data(h_env *env)
{
    char sock[H_PATH_SIZE + 8], src[H_PATH_SIZE + 16], dst[H_PATH_SIZE + 16];
    snprintf(sock, sizeof sock, "%s/pg", env->dir);
    snprintf(dst, sizeof dst, "%s/pg/data", env->dir);
    if (make_pg_dir(sock) != 0)
        return -1;
    const char *tpl = pg_template();
    if (!tpl)
        return -1;
    snprintf(src, sizeof src, "%s/pg/data", tpl);
    /* cp -a as root keeps the postgres ownership and the 0700 mode. */
    const char *argv[] = {"/bin/cp", "-a", src, dst, NULL};
    char *err = NULL;
    long long t0 = h_now_ms();
    int rc = h__run(argv, NULL, NULL, 0, NULL, NULL, &err, 120000);
    if (rc != 0)
        h__err("copying the cluster template failed (exit %d): %s", rc, err ? err : "");
    else
        h__log("copying the cluster template took %lld ms", h_now_ms() - t0);
    free(err);
    if (rc != 0)
        return -1;
    env->pg_initialized = PG_READY;
    return 0;
}

int h_pg_set(h_env *env, const char *name_eq_value)
{
    if (env->pg_nsettings >= H_PG_SETTINGS_MAX || !strchr(name_eq_value, '=') ||
        h__fmt(env->pg_settings[env->pg_nsettings], sizeof env->pg_settings[0], "%s",
               name_eq_value) != 0) {
        h__err("h_pg_set: cannot add \"%s\"", name_eq_value);
        return -1;
    }
    env->pg_nsettings++;
    return 0;
}

static pid_t pg_spawn(h_env *env)
{
    char data[H_PATH_SIZE + 16], sock[H_PATH_SIZE + 8], port[16], logp[H_PATH_SIZE + 16];
    snprintf(data, sizeof data, "%s/pg/data", env->dir);
    snprintf(sock, sizeof sock, "%s/pg", env->dir);
    snprintf(logp, sizeof logp, "%s/pg/log", env->dir);
    snprintf(port, sizeof port, "%d", env->pg_port);
    const char *argv[16 + 2 * H_PG_SETTINGS_MAX] = {PG_BIN "/postgres",
                                                    "-D",
                                                    data,
                                                    "-p",
                                                    port,
                                                    "-k",
                                                    sock,
                                                    "-c",
                                                    "listen_addresses=127.0.0.1",
                                                    "-c",
                                                    "fsync=off",
                                                    "-c",
                                                    "synchronous_commit=off",
                                                    "-c",
                                                    "full_page_writes=off"};
    int n = 15;
    for (int i = 0; i < env->pg_nsettings; i++) {
        argv[n++] = "-c";
        argv[n++] = env->pg_settings[i];
    }
    argv[n] = NULL;
    int fd = open_log(logp);
    if (fd < 0)
        return -1;
    h__spawn_opts o = {.argv = argv,
                       .cwd = sock,
                       .in_fd = -1,
                       .out_fd = fd,
                       .err_fd = -1,
                       .as_postgres = 1,
                       .pdeath_sig = SIGQUIT};
    pid_t pid = h__spawn(&o);
    close(fd);
    if (pid > 0)
        h__proc_track(pid, SIGQUIT, NULL);
    return pid;
}

/* Waits until the server answers a connection. 1 ready, 0 the postmaster
 * exited, -1 timeout. */
static int pg_wait_ready(h_env *env, int timeout_ms)
{
    char conninfo[128];
    snprintf(conninfo, sizeof conninfo,
             "host=127.0.0.1 port=%d user=postgres dbname=postgres connect_timeout=2",
             env->pg_port);
    long long deadline = h_now_ms() + timeout_ms;
    while (h_now_ms() < deadline) {
        int status;
        if (h__wait(env->pg_pid, 0, &status) != 0) {
            env->pg_pid = 0;
            return 0;
        }
        /* Answered by our postmaster, not another test's on the same port. */
        if (PQping(conninfo) == PQPING_OK && h__port_owned_by(env->pg_pid, env->pg_port) != 0)
            return 1;
        h_sleep_ms(20);
    }
    return -1;
}

static int pg_create_db(h_env *env)
{
    char conninfo[128];
    snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%d user=postgres dbname=postgres",
             env->pg_port);
    PGconn *c = PQconnectdb(conninfo);
    int rc = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        /* The service role exists before any migration, so that a vigil
         * started first finds it (h_migrate makes it a vigil_service member). */
        PGresult *r = PQexec(c, "CREATE DATABASE vigil");
        if (PQresultStatus(r) == PGRES_COMMAND_OK) {
            PQclear(r);
            r = PQexec(c, "CREATE ROLE " H_SERVICE_ROLE " LOGIN");
        }
        rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
        if (rc != 0)
            h__err("CREATE DATABASE vigil / ROLE " H_SERVICE_ROLE ": %s", PQerrorMessage(c));
        PQclear(r);
    } else {
        h__err("connecting to the new cluster: %s", PQerrorMessage(c));
    }
    PQfinish(c);
    return rc;
}

int h_pg_start(h_env *env)
{
    char logp[H_PATH_SIZE + 16];
    snprintf(logp, sizeof logp, "%s/pg/log", env->dir);
    if (env->pg_pid) {
        h__err("h_pg_start: PostgreSQL is already running (pid %d)", (int)env->pg_pid);
        return -1;
    }
    long long t0 = h_now_ms();
    if (env->pg_initialized == PG_NONE && pg_init_data(env) != 0)
        goto fail;
    /* Early exits get retried: before first use the port may have been taken
     * (pick another); after a "kill" stop, old backends may still hold the
     * shared memory for a moment. */
    for (int attempt = 1;; attempt++) {
        env->pg_pid = pg_spawn(env);
        if (env->pg_pid < 0) {
            env->pg_pid = 0;
            goto fail;
        }
        int r = pg_wait_ready(env, PG_WAIT_MS);
        if (r == 1)
            break;
        if (r < 0) {
            h__err("PostgreSQL did not become ready within %d ms", PG_WAIT_MS);
            h_pg_stop(env, "immediate");
            goto fail;
        }
        if (attempt >= 5)
            goto fail;
        if (!env->pg_started && file_contains(logp, "could not bind")) {
            env->pg_port = h_free_port();
            set_urls(env);
            h__log("pg port taken, retrying on %d", env->pg_port);
        } else {
            h_sleep_ms(500);
        }
    }
    if (env->pg_initialized != PG_READY) {
        long long t1 = h_now_ms();
        if (pg_create_db(env) != 0)
            goto fail;
        h__log("CREATE DATABASE took %lld ms", h_now_ms() - t1);
        env->pg_initialized = PG_READY;
    }
    env->pg_started = 1;
    h__log("PostgreSQL up on port %d (pid %d) in %lld ms", env->pg_port, (int)env->pg_pid,
           h_now_ms() - t0);
    return 0;
fail:
    return start_failed(env, "PostgreSQL", logp);
}

/* Pids whose parent is ppid (the postmaster's backends), from /proc. */
static int child_pids(pid_t ppid, pid_t *out, int max)
{
    DIR *d = opendir("/proc");
    int n = 0;
    struct dirent *e;
    while (d && n < max && (e = readdir(d))) {
        char path[300], *s;
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        if (!(s = h_read_file(path)))
            continue;
        /* Fields after the command name, which may itself hold ") ". */
        char *p = strrchr(s, ')');
        char state;
        int parent;
        if (p && sscanf(p + 1, " %c %d", &state, &parent) == 2 && parent == ppid)
            out[n++] = (pid_t)atoi(e->d_name);
        free(s);
    }
    if (d)
        closedir(d);
    return n;
}

/* 1 when pid no longer exists or is a zombie. */
static int gone(pid_t pid)
{
    char path[64], *s;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (!(s = h_read_file(path)))
        return 1;
    char *p = strrchr(s, ')');
    int zombie = p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
    free(s);
    return zombie;
}

int h_pg_stop(h_env *env, const char *mode)
{
    if (env->db) {
        PQfinish(env->db);
        env->db = NULL;
    }
    if (!env->pg_pid) {
        h__err("h_pg_stop: PostgreSQL is not running");
        return -1;
    }
    if (!mode)
        mode = "fast";
    int sig = strcmp(mode, "smart") == 0       ? SIGTERM
              : strcmp(mode, "fast") == 0      ? SIGINT
              : strcmp(mode, "immediate") == 0 ? SIGQUIT
              : strcmp(mode, "kill") == 0      ? SIGKILL
                                               : 0;
    if (!sig) {
        h__err("h_pg_stop: unknown mode \"%s\"", mode);
        return -1;
    }
    pid_t backends[256];
    int nb = sig == SIGKILL ? child_pids(env->pg_pid, backends, 256) : 0;
    long long t0 = h_now_ms();
    kill(env->pg_pid, sig);
    for (int i = 0; i < nb; i++)
        kill(backends[i], SIGKILL);
    int status, rc = 0;
    if (h__wait(env->pg_pid, PG_WAIT_MS, &status) != 1) {
        h__err("PostgreSQL did not stop (%s) within %d ms; killing it", mode, PG_WAIT_MS);
        h_proc_stop(env->pg_pid, SIGQUIT, 10000);
        rc = -1;
    }
    /* Killed backends are no longer our business once they are gone, but a
     * new postmaster refuses to start while they still hold shared memory. */
    for (long long deadline = h_now_ms() + 5000; nb > 0 && h_now_ms() < deadline;) {
        int alive = 0;
        for (int i = 0; i < nb; i++)
            alive |= !gone(backends[i]);
        if (!alive)
            break;
        h_sleep_ms(10);
    }
    h__log("PostgreSQL stopped (%s) in %lld ms", mode, h_now_ms() - t0);
    env->pg_pid = 0;
    return rc;
}

int h_pg_restart(h_env *env, const char *mode)
{
    if (env->pg_pid && h_pg_stop(env, mode) != 0)
        return -1;
    return h_pg_start(env);
}

/* ---- nats-server --------------------------------------------------------------- */

int h_nats_start(h_env *env)
{
    char exe[H_PATH_SIZE], sd[H_PATH_SIZE + 8], pidf[H_PATH_SIZE + 16], logp[H_PATH_SIZE + 16];
    if (env->nats_pid) {
        h__err("h_nats_start: nats-server is already running (pid %d)", (int)env->nats_pid);
        return -1;
    }
    if (h__which("nats-server", exe, sizeof exe) != 0)
        goto fail;
    snprintf(sd, sizeof sd, "%s/js", env->dir);
    snprintf(pidf, sizeof pidf, "%s/nats.pid", env->dir);
    snprintf(logp, sizeof logp, "%s/nats.log", env->dir);
    long long t0 = h_now_ms();
    for (int attempt = 1;; attempt++) {
        char port[16], mon[16], health[64];
        snprintf(port, sizeof port, "%d", env->nats_port);
        snprintf(mon, sizeof mon, "%d", env->nats_mon_port);
        snprintf(health, sizeof health, "http://127.0.0.1:%d/healthz", env->nats_mon_port);
        const char *argv[] = {exe,  "-js", "-sd", sd,   "-a", "127.0.0.1", "-p", port,
                              "-m", mon,   "-P",  pidf, NULL, NULL,        NULL};
        if (env->nats_conf[0]) {
            argv[12] = "-c";
            argv[13] = env->nats_conf;
        }
        int fd = open_log(logp);
        if (fd < 0)
            goto fail;
        h__spawn_opts o = {.argv = argv,
                           .cwd = env->dir,
                           .in_fd = -1,
                           .out_fd = fd,
                           .err_fd = -1,
                           .pdeath_sig = SIGKILL};
        env->nats_pid = h__spawn(&o);
        close(fd);
        if (env->nats_pid < 0) {
            env->nats_pid = 0;
            goto fail;
        }
        h__proc_track(env->nats_pid, SIGKILL, NULL);
        /* The client port opens once JetStream is enabled; /healthz confirms. */
        long long deadline = h_now_ms() + NATS_READY_MS;
        int status, exited = 0, ready = 0;
        while (!ready && h_now_ms() < deadline) {
            if (h__wait(env->nats_pid, 0, &status) != 0) {
                exited = 1;
                break;
            }
            ready = h_wait_port(env->nats_port, 0) == 0 && h__http_status(health, 1000) == 200 &&
                    h__port_owned_by(env->nats_pid, env->nats_port) != 0 &&
                    h__port_owned_by(env->nats_pid, env->nats_mon_port) != 0;
            if (!ready)
                h_sleep_ms(20);
        }
        if (ready)
            break;
        if (!exited) {
            h__err("nats-server did not become ready within %d ms", NATS_READY_MS);
            h_nats_stop(env, SIGKILL);
            goto fail;
        }
        env->nats_pid = 0;
        h__err("nats-server exited during startup (exit %d)", h__exit_code(status));
        if (env->nats_started || attempt >= PORT_ATTEMPTS ||
            !file_contains(logp, "address already in use"))
            goto fail;
        /* Taken since h_env_new chose them; vigil has not seen them yet. */
        env->nats_port = h_free_port();
        env->nats_mon_port = h_free_port();
        if (env->nats_port < 0 || env->nats_mon_port < 0)
            goto fail;
        set_urls(env);
    }
    env->nats_started = 1;
    h__log("nats-server up on port %d (pid %d) in %lld ms", env->nats_port, (int)env->nats_pid,
           h_now_ms() - t0);
    return 0;
fail:
    return start_failed(env, "nats-server", logp);
}

int h_nats_config(h_env *env, const char *conf)
{
    char path[H_PATH_SIZE + 16];
    snprintf(path, sizeof path, "%s/nats.conf", env->dir);
    if (write_file(path, conf) != 0 ||
        h__fmt(env->nats_conf, sizeof env->nats_conf, "%s", path) != 0) {
        h__err("h_nats_config: cannot write %s", path);
        return -1;
    }
    return 0;
}

/* 1 when `pid`, the env's `what`, has already exited by itself (not through
 * a stop function): that breaks the test's premise, so it is reported and
 * the env marked failed, and h_teardown prints and keeps the logs that show
 * why. *code gets its exit code. 0 while it runs. */
static int exited_by_itself(h_env *env, pid_t pid, const char *what, int *code)
{
    int status;
    if (h__wait(pid, 0, &status) != 1)
        return 0;
    *code = h__exit_code(status);
    h__err("%s (pid %d) had already exited by itself (exit %d)", what, (int)pid, *code);
    env->failed = 1;
    return 1;
}

int h_nats_stop(h_env *env, int sig)
{
    if (!env->nats_pid) {
        h__err("h_nats_stop: nats-server is not running");
        return -1;
    }
    int code;
    if (exited_by_itself(env, env->nats_pid, "nats-server", &code)) {
        env->nats_pid = 0;
        return 0;
    }
    int rc = h_proc_stop(env->nats_pid, sig, NATS_STOP_MS);
    h__log("nats-server stopped with signal %d (exit %d)", sig, rc);
    env->nats_pid = 0;
    return rc < 0 ? -1 : 0;
}

int h_nats_restart(h_env *env, int sig)
{
    if (env->nats_pid && h_nats_stop(env, sig) != 0)
        return -1;
    return h_nats_start(env);
}

/* ---- vigil -------------------------------------------------------------------------- */

/* Frees an array built by vigil_envp. */
static void envp_free(char **envp)
{
    for (size_t i = 0; envp && envp[i]; i++)
        free(envp[i]);
    free(envp);
}

/* 1 when entry ("K=V" or "K") names key (the part of key before '='). */
static int same_key(const char *entry, const char *key)
{
    size_t n = strcspn(key, "=");
    return strncmp(entry, key, n) == 0 && (entry[n] == '=' || entry[n] == '\0');
}

/* 1 when extra (NULL-terminated) names key. */
static int in_extra(const char *key, const char *const *extra)
{
    for (size_t i = 0; extra && extra[i]; i++)
        if (same_key(extra[i], key))
            return 1;
    return 0;
}

/* The environment of a vigil process (see harness.h), malloc'ed. */
static char **vigil_envp(const h_env *env, const char *const *extra)
{
    enum { NOURS = 4 };
    static const char *const keys[NOURS] = {"VIGIL_DATABASE_URL", "VIGIL_HTTP_ADDR",
                                            "VIGIL_NATS_URL", "VIGIL_MIGRATE_DATABASE_URL"};
    char ours[NOURS][H_PATH_SIZE + 64];
    snprintf(ours[0], sizeof ours[0], "%s=%s", keys[0], env->svc_db_url);
    snprintf(ours[1], sizeof ours[1], "%s=127.0.0.1:%d", keys[1], env->http_port);
    snprintf(ours[2], sizeof ours[2], "%s=%s", keys[2], env->nats_url);
    snprintf(ours[3], sizeof ours[3], "%s=%s", keys[3], env->db_url);

    size_t n = 0, nextra = 0;
    while (environ[n])
        n++;
    while (extra && extra[nextra])
        nextra++;
    char **envp = calloc(n + nextra + NOURS + 1, sizeof *envp);
    if (!envp)
        return NULL;
    size_t k = 0;
    int oom = 0;
    for (size_t i = 0; i < n; i++) {
        int skip = in_extra(environ[i], extra);
        for (size_t j = 0; j < NOURS; j++)
            skip |= same_key(environ[i], keys[j]);
        if (!skip)
            oom |= !(envp[k++] = strdup(environ[i]));
    }
    for (size_t j = 0; j < NOURS; j++)
        if (!in_extra(keys[j], extra))
            oom |= !(envp[k++] = strdup(ours[j]));
    for (size_t i = 0; i < nextra; i++)
        if (strchr(extra[i], '='))
            oom |= !(envp[k++] = strdup(extra[i]));
    if (oom) {
        envp_free(envp);
        return NULL;
    }
    return envp;
}

/* full = {VIGIL_BIN, args..., NULL}. Returns its length, or -1 (printed) when
 * the binary is missing or there are too many args. */
static int vigil_argv(const char *const *args, const char *full[MAX_ARGS])
{
    if (access(VIGIL_BIN, X_OK) != 0) {
        h__err("the vigil binary %s is missing; build the `vigil` target first", VIGIL_BIN);
        return -1;
    }
    int n = 0;
    full[n++] = VIGIL_BIN;
    for (size_t i = 0; args && args[i]; i++) {
        if (n == MAX_ARGS - 1) {
            h__err("more than %d arguments for vigil", MAX_ARGS - 2);
            return -1;
        }
        full[n++] = args[i];
    }
    full[n] = NULL;
    return n;
}

/* Starts `vigil ARGV...` in the background with output to a new
 * DIR/vigil-N.log (path into log, when not NULL). Returns the pid or -1. */
static pid_t vigil_background(h_env *env, const char *const *extra, const char *const *argv,
                              char *log, size_t logsz)
{
    const char *full[MAX_ARGS];
    if (vigil_argv(argv, full) < 0)
        return -1;
    char path[H_PATH_SIZE];
    if (snprintf(path, sizeof path, "%s/vigil-%d.log", env->dir, ++env->vigil_runs) >=
        (int)sizeof path) {
        h__err("vigil log path too long under %s", env->dir);
        return -1;
    }
    if (log)
        snprintf(log, logsz, "%s", path);
    char **envp = vigil_envp(env, extra);
    int fd = envp ? open_log(path) : -1;
    pid_t pid = -1;
    if (fd >= 0) {
        h__spawn_opts o = {.argv = full,
                           .envp = envp,
                           .in_fd = -1,
                           .out_fd = fd,
                           .err_fd = -1,
                           .pdeath_sig = SIGKILL};
        pid = h__spawn(&o);
        close(fd);
    }
    envp_free(envp);
    if (pid > 0)
        h__proc_track(pid, SIGKILL, env);
    return pid;
}

pid_t h_vigil_spawn(h_env *env, const char *const *extra_env, const char *const *argv,
                    char *log_out, size_t log_outsz)
{
    pid_t pid = vigil_background(env, extra_env, argv, log_out, log_outsz);
    if (pid < 0)
        env->failed = 1;
    return pid;
}

int h_vigil_start(h_env *env, const char *const *extra_env)
{
    static const char *const serve[] = {"serve", NULL};
    if (env->vigil_pid) {
        h__err("h_vigil_start: vigil is already running (pid %d)", (int)env->vigil_pid);
        return -1;
    }
    long long t0 = h_now_ms();
    for (int attempt = 1;; attempt++) {
        pid_t pid = vigil_background(env, extra_env, serve, env->vigil_log, sizeof env->vigil_log);
        if (pid < 0)
            break;
        env->vigil_pid = pid;
        char health[192];
        snprintf(health, sizeof health, "%s/healthz", env->base_url);
        long long deadline = h_now_ms() + VIGIL_READY_MS;
        int status;
        while (h_now_ms() < deadline) {
            if (h__wait(pid, 0, &status) != 0) {
                env->vigil_pid = 0;
                break;
            }
            if (h__http_status(health, 1000) == 200 && h__port_owned_by(pid, env->http_port) != 0) {
                h__log("vigil serve up on %s (pid %d) in %lld ms", env->base_url, (int)pid,
                       h_now_ms() - t0);
                return 0;
            }
            h_sleep_ms(25);
        }
        if (env->vigil_pid) {
            h__err("vigil serve did not answer 200 on /healthz within %d ms", VIGIL_READY_MS);
            h_proc_stop(pid, SIGKILL, 5000);
            env->vigil_pid = 0;
            break;
        }
        h__err("vigil serve exited during startup (exit %d)", h__exit_code(status));
        if (attempt >= PORT_ATTEMPTS || !file_contains(env->vigil_log, "in use"))
            break;
        env->http_port = h_free_port(); /* someone took the port: choose again */
        set_urls(env);
    }
    h_print_log_tail(env->vigil_log, 40);
    env->failed = 1;
    return -1;
}

int h_vigil_stop(h_env *env, int sig)
{
    if (!env->vigil_pid) {
        h__err("h_vigil_stop: vigil is not running");
        return -1;
    }
    pid_t pid = env->vigil_pid;
    env->vigil_pid = 0;
    int code;
    if (exited_by_itself(env, pid, "vigil serve", &code))
        return code;
    code = h_proc_stop(pid, sig, VIGIL_STOP_MS);
    h__log("vigil serve stopped with signal %d: exit %d", sig, code);
    if (code != 0 && sig != SIGKILL) {
        h__err("vigil serve exited with %d after signal %d", code, sig);
        env->failed = 1;
    }
    return code;
}

int h_vigil_runv(h_env *env, const char *const *extra_env, const char *stdin_data,
                 char **out_stdout, char **out_stderr, const char *const *argv)
{
    if (out_stdout)
        *out_stdout = NULL;
    if (out_stderr)
        *out_stderr = NULL;
    const char *full[MAX_ARGS];
    int n = vigil_argv(argv, full);
    if (n < 0)
        return -1;
    char **envp = vigil_envp(env, extra_env);
    if (!envp)
        return -1;
    char *err = NULL;
    int rc = h__run(full, envp, NULL, 0, stdin_data, out_stdout, &err, VIGIL_RUN_MS);
    envp_free(envp);

    char path[H_PATH_SIZE + 32];
    snprintf(path, sizeof path, "%s/run-%d.log", env->dir, ++env->cmd_runs);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "$ vigil");
        for (int i = 1; i < n; i++)
            fprintf(f, " %s", full[i]);
        fprintf(f, "\n# exit %d\n%s", rc, err ? err : "");
        fclose(f);
    }
    h__log("vigil %s ... -> exit %d", n > 1 ? full[1] : "", rc);
    if (out_stderr)
        *out_stderr = err;
    else
        free(err);
    return rc;
}

int h_vigil_run(h_env *env, char **out_stdout, const char *arg0, ...)
{
    const char *argv[MAX_ARGS + 1]; /* one more than vigil_argv takes: it reports */
    size_t n = 0;
    va_list ap;
    va_start(ap, arg0);
    for (const char *a = arg0; a && n < MAX_ARGS; a = va_arg(ap, const char *))
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    return h_vigil_runv(env, NULL, NULL, out_stdout, NULL, argv);
}

int h_migrate(h_env *env)
{
    static const char *const argv[] = {"migrate", "--service-role", H_SERVICE_ROLE, NULL};
    char *err = NULL;
    long long t0 = h_now_ms();
    int rc = h_vigil_runv(env, NULL, NULL, NULL, &err, argv);
    if (rc != 0) {
        h__err("vigil migrate failed (exit %d):\n%s", rc, err ? err : "");
        env->failed = 1;
    } else {
        h__log("vigil migrate took %lld ms", h_now_ms() - t0);
    }
    free(err);
    return rc == 0 ? 0 : -1;
}

int h_last_line(char *text, char *out, size_t outsz)
{
    if (!text)
        return -1;
    size_t len = strlen(text);
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
        text[--len] = '\0';
    char *line = strrchr(text, '\n');
    line = line ? line + 1 : text;
    while (*line == ' ' || *line == '\t')
        line++;
    if (!*line || strlen(line) >= outsz)
        return -1;
    memcpy(out, line, strlen(line) + 1);
    return 0;
}

int h_key_create_named(h_env *env, const char *role, const char *name, char *out, size_t outsz)
{
    const char *const argv[] = {"keys", "create", "--role", role, "--name", name, NULL};
    char *so = NULL, *se = NULL;
    int rc = h_vigil_runv(env, NULL, NULL, &so, &se, argv);
    int ok = rc == 0 ? h_last_line(so, out, outsz) : -1;
    if (ok != 0) {
        h__err("vigil keys create --role %s --name %s failed (exit %d); stdout:\n%s\nstderr:\n%s",
               role, name, rc, so ? so : "", se ? se : "");
        env->failed = 1;
    }
    free(so);
    free(se);
    return ok;
}

int h_key_create(h_env *env, const char *role, char *out, size_t outsz)
{
    char name[128];
    snprintf(name, sizeof name, "it-%s-%d", role, ++env->key_seq);
    return h_key_create_named(env, role, name, out, outsz);
}

h_env *h_setup(int with_nats)
{
    long long t0 = h_now_ms();
    h_env *env = h_env_new();
    if (!env)
        return NULL;
    if (h_pg_start(env) != 0 || (with_nats && h_nats_start(env) != 0) || h_migrate(env) != 0 ||
        h_key_create(env, "admin", env->admin_key, sizeof env->admin_key) != 0 ||
        h_vigil_start(env, NULL) != 0) {
        h__err("h_setup failed");
        env->failed = 1;
        h_teardown(env);
        return NULL;
    }
    h__log("h_setup(%d) took %lld ms", with_nats, h_now_ms() - t0);
    return env;
}
