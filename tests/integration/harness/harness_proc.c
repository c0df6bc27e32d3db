/*
 * harness_proc.c — child processes for the harness: spawn, wait, run to
 * completion with captured output, and the last-resort cleanup.
 *
 * The harness starts servers as direct children so it always knows their
 * pids and exit statuses. Each one is tracked in a fixed table that the
 * atexit and SIGINT/SIGTERM/SIGHUP handlers walk to kill what is still
 * running and to remove the temp dirs, so a test that aborts between setup
 * and teardown leaves nothing behind. The handler path uses only
 * async-signal-safe calls (kill, waitpid, nanosleep, fork, execve); the table
 * is fixed-size for the same reason.
 */
#include "harness_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_CHILDREN 64
#define MAX_DIRS     32

static struct {
    volatile pid_t pid;
    int kill_sig;
    const h_env *owner;
} children[MAX_CHILDREN];

static struct {
    volatile sig_atomic_t used;
    char path[H_PATH_SIZE];
} dirs[MAX_DIRS];

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
/* The exit handler is inherited by forked children; only this pid may run it. */
static pid_t owner_pid;

/* ---- messages ---------------------------------------------------------- */

int h__verbose(void)
{
    const char *v = getenv("VIGIL_TEST_VERBOSE");
    return v && *v && strcmp(v, "0") != 0;
}

static void vmsg(const char *fmt, va_list ap)
{
    /* Formatted whole, then written with one fprintf, so that messages from
     * parallel threads do not interleave; they may be long (a child's stderr). */
    char *line = NULL;
    if (vasprintf(&line, fmt, ap) < 0)
        line = NULL;
    fprintf(stderr, "harness: %s\n", line ? line : fmt);
    free(line);
}

void h__err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(fmt, ap);
    va_end(ap);
}

void h__log(const char *fmt, ...)
{
    if (!h__verbose())
        return;
    va_list ap;
    va_start(ap, fmt);
    vmsg(fmt, ap);
    va_end(ap);
}

int h__fmt(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size) {
        h__err("internal buffer too small for \"%s\"", fmt);
        return -1;
    }
    return 0;
}

/* ---- time ---------------------------------------------------------------- */

long long h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void h_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- emergency cleanup --------------------------------------------------- */

/* Reaps pid if it has exited; returns 1 when it is gone. */
static int reaped(pid_t pid)
{
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    return r == pid || (r < 0 && errno == ECHILD);
}

/* Kills every tracked child (its kill_sig, then SIGKILL after 5 s) and removes
 * every tracked dir. Async-signal-safe. */
static void emergency_cleanup(void)
{
    if (getpid() != owner_pid)
        return;
    int any = 0;
    for (int i = 0; i < MAX_CHILDREN; i++) {
        pid_t pid = children[i].pid;
        if (pid > 0) {
            kill(pid, children[i].kill_sig);
            any = 1;
        }
    }
    for (int round = 0; any && round < 2; round++) {
        for (int t = 0; t < 100; t++) {
            int left = 0;
            for (int i = 0; i < MAX_CHILDREN; i++) {
                pid_t pid = children[i].pid;
                if (pid > 0 && reaped(pid))
                    children[i].pid = 0;
                else if (pid > 0)
                    left = 1;
            }
            if (!left) {
                any = 0;
                break;
            }
            h_sleep_ms(50);
        }
        for (int i = 0; any && i < MAX_CHILDREN; i++) {
            pid_t pid = children[i].pid;
            if (pid > 0) {
                kill(-pid, SIGKILL);
                kill(pid, SIGKILL);
            }
        }
    }
    for (int i = 0; i < MAX_DIRS; i++) {
        if (!dirs[i].used)
            continue;
        pid_t pid = fork();
        if (pid == 0) {
            char *const argv[] = {"/bin/rm", "-rf", "--", dirs[i].path, NULL};
            execve(argv[0], argv, environ);
            _exit(127);
        }
        if (pid > 0)
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
        dirs[i].used = 0;
    }
}

static void on_exit_cleanup(void)
{
    emergency_cleanup();
}

static void on_fatal_signal(int sig)
{
    emergency_cleanup();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void init(void)
{
    owner_pid = getpid();
    atexit(on_exit_cleanup);
    /* A write to a dead child's pipe or socket must be an error, not death. */
    signal(SIGPIPE, SIG_IGN);
    const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction old;
        /* Leave alone a handler the test installed itself. */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL) {
            struct sigaction sa = {0};
            sa.sa_handler = on_fatal_signal;
            sigemptyset(&sa.sa_mask);
            sigaction(sigs[i], &sa, NULL);
        }
    }
    h__curl_init();
}

void h__init_once(void)
{
    pthread_once(&init_once, init);
}

void h__proc_track(pid_t pid, int kill_sig, const h_env *owner)
{
    pthread_mutex_lock(&table_lock);
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i].pid == 0) {
            children[i].kill_sig = kill_sig;
            children[i].owner = owner;
            children[i].pid = pid; /* last: the signal handler keys on it */
            pthread_mutex_unlock(&table_lock);
            return;
        }
    }
    pthread_mutex_unlock(&table_lock);
    h__err("more than %d children; pid %d will not be cleaned up on abort", MAX_CHILDREN, (int)pid);
}

void h__proc_untrack(pid_t pid)
{
    pthread_mutex_lock(&table_lock);
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i].pid == pid)
            children[i].pid = 0;
    pthread_mutex_unlock(&table_lock);
}

static int tracked(pid_t pid)
{
    int found = 0;
    pthread_mutex_lock(&table_lock);
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (pid > 0 && children[i].pid == pid)
            found = 1;
    pthread_mutex_unlock(&table_lock);
    return found;
}

void h__proc_kill_owned(const h_env *owner)
{
    pid_t pids[MAX_CHILDREN];
    int n = 0;
    pthread_mutex_lock(&table_lock);
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i].pid > 0 && children[i].owner == owner)
            pids[n++] = children[i].pid;
    pthread_mutex_unlock(&table_lock);
    for (int i = 0; i < n; i++) {
        h__log("stopping leftover child %d", (int)pids[i]);
        h_proc_stop(pids[i], SIGTERM, 10000);
    }
}

void h__dir_track(const char *dir)
{
    pthread_mutex_lock(&table_lock);
    for (int i = 0; i < MAX_DIRS; i++) {
        if (!dirs[i].used) {
            snprintf(dirs[i].path, sizeof dirs[i].path, "%s", dir);
            dirs[i].used = 1;
            break;
        }
    }
    pthread_mutex_unlock(&table_lock);
}

void h__dir_untrack(const char *dir)
{
    pthread_mutex_lock(&table_lock);
    for (int i = 0; i < MAX_DIRS; i++)
        if (dirs[i].used && strcmp(dirs[i].path, dir) == 0)
            dirs[i].used = 0;
    pthread_mutex_unlock(&table_lock);
}

/* ---- spawning -------------------------------------------------------------- */

static int postgres_ids(uid_t *uid, gid_t *gid)
{
    struct passwd pw, *found = NULL;
    char buf[4096];
    if (getpwnam_r("postgres", &pw, buf, sizeof buf, &found) != 0 || !found) {
        h__err("running as root but there is no `postgres` user to run PostgreSQL as");
        return -1;
    }
    *uid = pw.pw_uid;
    *gid = pw.pw_gid;
    return 0;
}

/* The child half of h__spawn: only async-signal-safe calls until execve. */
static void child_exec(const h__spawn_opts *o, int devnull, pid_t parent, int drop, uid_t uid,
                       gid_t gid)
{
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* Ignored dispositions survive execve; give the child the defaults. */
    const int sigs[] = {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        signal(sigs[i], SIG_DFL);

    int in = o->in_fd >= 0 ? o->in_fd : devnull;
    int out = o->out_fd >= 0 ? o->out_fd : devnull;
    int err = o->err_fd >= 0 ? o->err_fd : out;
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
        _exit(126);
    /* dup2(fd, fd) keeps FD_CLOEXEC; clear it on what the child must keep. */
    for (int fd = 0; fd < 3; fd++)
        fcntl(fd, F_SETFD, 0);
    close_range(3, ~0U, 0);
    if (o->cwd && chdir(o->cwd) != 0)
        _exit(126);
    if (drop && (setgroups(1, &gid) != 0 || setgid(gid) != 0 || setuid(uid) != 0))
        _exit(126);
    /* After setuid: a credential change clears the parent-death signal. */
    if (o->pdeath_sig) {
        prctl(PR_SET_PDEATHSIG, o->pdeath_sig);
        if (getppid() != parent)
            _exit(1);
    }
    execve(o->argv[0], (char *const *)o->argv, o->envp ? o->envp : environ);
    static const char msg[] = "harness: execve failed in child\n";
    if (write(2, msg, sizeof msg - 1) < 0)
        _exit(127);
    _exit(127);
}

pid_t h__spawn(const h__spawn_opts *o)
{
    h__init_once();
    uid_t uid = 0;
    gid_t gid = 0;
    int drop = o->as_postgres && geteuid() == 0;
    if (drop && postgres_ids(&uid, &gid) != 0)
        return -1;
    if (access(o->argv[0], X_OK) != 0) {
        h__err("cannot execute %s: %s", o->argv[0], strerror(errno));
        return -1;
    }
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0) {
        h__err("open /dev/null: %s", strerror(errno));
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0)
        child_exec(o, devnull, parent, drop, uid, gid);
    int saved = errno;
    close(devnull);
    if (pid < 0) {
        h__err("fork: %s", strerror(saved));
        return -1;
    }
    setpgid(pid, pid); /* both sides set it, so no signal can race the child's */
    return pid;
}

int h__exit_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

/* The inode of the IPv4 socket listening on `port`, from /proc/net/tcp
 * (state 0A is LISTEN); 0 when none is listed. */
static unsigned long listen_inode(int port)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    if (!f)
        return 0;
    char line[512];
    unsigned long found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned addr, lport, raddr, rport, st;
        unsigned long inode;
        /* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
        if (sscanf(line, " %*d: %x:%x %x:%x %x %*x:%*x %*x:%*x %*x %*u %*u %lu", &addr, &lport,
                   &raddr, &rport, &st, &inode) == 6 &&
            (int)lport == port && st == 0x0A)
            found = inode;
    }
    fclose(f);
    return found;
}

int h__port_owned_by(pid_t pid, int port)
{
    unsigned long inode = listen_inode(port);
    if (!inode)
        return 0;
    char dir[64], want[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    snprintf(want, sizeof want, "socket:[%lu]", inode);
    DIR *d = opendir(dir);
    if (!d)
        return errno == EACCES ? -1 : 0;
    int owned = 0;
    struct dirent *e;
    while (!owned && (e = readdir(d))) {
        char path[64 + sizeof e->d_name], link[64];
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n > 0) {
            link[n] = '\0';
            owned = strcmp(link, want) == 0;
        }
    }
    closedir(d);
    return owned;
}

int h__wait(pid_t pid, int timeout_ms, int *status)
{
    long long deadline = h_now_ms() + timeout_ms;
    int delay = 2;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid) {
            h__proc_untrack(pid);
            return 1;
        }
        if (r < 0 && errno != EINTR) {
            h__proc_untrack(pid);
            return -1;
        }
        if (timeout_ms >= 0 && h_now_ms() >= deadline)
            return 0;
        h_sleep_ms(delay);
        if (delay < 50)
            delay *= 2;
    }
}

int h_proc_stop(pid_t pid, int sig, int timeout_ms)
{
    if (!tracked(pid)) {
        h__err("h_proc_stop: %d is not a running harness child", (int)pid);
        return -1;
    }
    int status;
    if (sig)
        kill(pid, sig);
    int r = h__wait(pid, timeout_ms, &status);
    if (r == 0 && sig == 0)
        return -2;
    if (r == 0) {
        h__err("pid %d did not exit within %d ms of signal %d; sending SIGKILL", (int)pid,
               timeout_ms, sig);
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        r = h__wait(pid, -1, &status);
    }
    return r == 1 ? h__exit_code(status) : -1;
}

/* ---- running to completion ------------------------------------------------ */

typedef struct buf {
    char *data;
    size_t len, cap;
} buf;

static int buf_add(buf *b, const char *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d)
            return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

/* Hands the buffer to *dst (an empty string when nothing was read). */
static void buf_give(buf *b, char **dst)
{
    if (dst) {
        if (!b->data)
            buf_add(b, "", 0);
        *dst = b->data;
    } else {
        free(b->data);
    }
    b->data = NULL;
}

int h__run(const char *const *argv, char *const *envp, const char *cwd, int as_postgres,
           const char *stdin_data, char **out, char **err, int timeout_ms)
{
    int pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1};
    buf bo = {0}, be = {0};
    int rc = -1, status = 0;
    pid_t pid = -1;
    if (out)
        *out = NULL;
    if (err)
        *err = NULL;
    if ((stdin_data && pipe2(pin, O_CLOEXEC) != 0) || pipe2(pout, O_CLOEXEC) != 0 ||
        pipe2(perr, O_CLOEXEC) != 0) {
        h__err("pipe: %s", strerror(errno));
        goto end;
    }
    h__spawn_opts o = {.argv = argv,
                       .envp = envp,
                       .cwd = cwd,
                       .in_fd = pin[0],
                       .out_fd = pout[1],
                       .err_fd = perr[1],
                       .as_postgres = as_postgres,
                       .pdeath_sig = SIGKILL};
    pid = h__spawn(&o);
    if (pid < 0)
        goto end;
    h__proc_track(pid, SIGKILL, NULL);
    close(pout[1]);
    close(perr[1]);
    pout[1] = perr[1] = -1;
    if (pin[0] >= 0) {
        close(pin[0]);
        pin[0] = -1;
        fcntl(pin[1], F_SETFL, O_NONBLOCK);
    }

    size_t in_left = stdin_data ? strlen(stdin_data) : 0;
    const char *in_next = stdin_data;
    if (pin[1] >= 0 && in_left == 0) {
        close(pin[1]);
        pin[1] = -1;
    }
    long long deadline = h_now_ms() + timeout_ms;
    while (pout[0] >= 0 || perr[0] >= 0) {
        struct pollfd p[3] = {{pout[0], POLLIN, 0}, {perr[0], POLLIN, 0}, {pin[1], POLLOUT, 0}};
        long long left = deadline - h_now_ms();
        if (left <= 0) {
            h__err("%s did not finish within %d ms; killing it", argv[0], timeout_ms);
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            h__wait(pid, -1, &status);
            goto end;
        }
        if (poll(p, 3, (int)(left < 200 ? left : 200)) < 0 && errno != EINTR)
            break;
        if (p[2].revents & (POLLOUT | POLLERR | POLLHUP)) {
            ssize_t n = write(pin[1], in_next, in_left);
            if (n > 0) {
                in_next += n;
                in_left -= (size_t)n;
            }
            if ((n < 0 && errno != EAGAIN) || in_left == 0) {
                close(pin[1]);
                pin[1] = -1;
            }
        }
        for (int i = 0; i < 2; i++) {
            int *fd = i == 0 ? &pout[0] : &perr[0];
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char chunk[8192];
            ssize_t n = read(*fd, chunk, sizeof chunk);
            if (n > 0)
                buf_add(i == 0 ? &bo : &be, chunk, (size_t)n);
            else if (n == 0 || errno != EINTR) {
                close(*fd);
                *fd = -1;
            }
        }
    }
    long long left = deadline - h_now_ms();
    if (h__wait(pid, left > 0 ? (int)left : 0, &status) != 1) {
        h__err("%s closed its output but did not exit; killing it", argv[0]);
        kill(-pid, SIGKILL);
        h__wait(pid, -1, &status);
        goto end;
    }
    rc = h__exit_code(status);
end:
    for (int i = 0; i < 2; i++) {
        if (pin[i] >= 0)
            close(pin[i]);
        if (pout[i] >= 0)
            close(pout[i]);
        if (perr[i] >= 0)
            close(perr[i]);
    }
    buf_give(&bo, out);
    buf_give(&be, err);
    return rc;
}

/* ---- files ------------------------------------------------------------------ */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    if (remove(path) != 0 && errno != ENOENT)
        h__err("remove %s: %s", path, strerror(errno));
    return 0;
}

int h__rmtree(const char *path)
{
    if (nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT) {
        h__err("remove %s: %s", path, strerror(errno));
        return -1;
    }
    return access(path, F_OK) == 0 ? -1 : 0;
}

int h__which(const char *name, char *out, size_t outsz)
{
    if (strchr(name, '/'))
        return h__fmt(out, outsz, "%s", name);
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    while (*path) {
        size_t n = strcspn(path, ":");
        if (n > 0 && (size_t)snprintf(out, outsz, "%.*s/%s", (int)n, path, name) < outsz &&
            access(out, X_OK) == 0)
            return 0;
        path += n + (path[n] == ':');
    }
    h__err("%s not found in PATH", name);
    return -1;
}

char *h_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    buf b = {0};
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (buf_add(&b, chunk, n) != 0)
            break;
    fclose(f);
    char *s = NULL;
    buf_give(&b, &s);
    return s;
}

void h_print_log_tail(const char *path, int lines)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    /* Only the end matters; a busy server log can be large. */
    static const long window = 64 * 1024;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size > window ? size - window : 0, SEEK_SET);
    buf b = {0};
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_add(&b, chunk, n);
    fclose(f);
    if (!b.data) {
        fprintf(stderr, "----- %s (empty) -----\n", path);
        return;
    }
    const char *start = b.data + b.len;
    int seen = 0;
    if (b.len && start[-1] == '\n')
        start--;
    while (start > b.data && seen < lines)
        if (*--start == '\n')
            seen++;
    if (*start == '\n')
        start++;
    fprintf(stderr, "----- last %d lines of %s -----\n%s%s----- end of %s -----\n", lines, path,
            start, b.data[b.len - 1] == '\n' ? "" : "\n", path);
    free(b.data);
}
