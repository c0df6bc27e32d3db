/*
 * harness_internal.h — what the harness files share and tests do not see:
 * child-process spawning and bookkeeping, the emergency cleanup registry,
 * logging, and the libcurl bootstrap.
 */
#ifndef VIGIL_TEST_HARNESS_INTERNAL_H
#define VIGIL_TEST_HARNESS_INTERNAL_H

#include "harness.h"

#include <stdarg.h>

/* "harness: ..." on stderr, always. */
void h__err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "harness: ..." on stderr when VIGIL_TEST_VERBOSE is set. */
void h__log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int h__verbose(void);

/* Installs the atexit and signal handlers once per process. */
void h__init_once(void);

/* How to start one child. argv[0] must be an absolute path. */
typedef struct h__spawn_opts {
    const char *const *argv;
    char *const *envp; /* NULL: the test process's environment */
    const char *cwd;   /* NULL: unchanged */
    int in_fd;         /* -1: /dev/null */
    int out_fd;        /* -1: /dev/null */
    int err_fd;        /* -1: same as out_fd */
    int as_postgres;   /* drop to the postgres user (only when root) */
    int pdeath_sig;    /* signal sent to the child when the test dies; 0 none */
} h__spawn_opts;

/* fork + execve. The child gets its own process group, default signal
 * dispositions, and no fds but 0-2. Returns the pid, or -1 (printed). */
pid_t h__spawn(const h__spawn_opts *o);

/* Registers a running child so the exit/signal handlers kill it with
 * kill_sig (then SIGKILL); h__wait unregisters it once reaped. Children with
 * an owner (those of h_vigil_spawn/h_vigil_start) are also stopped by
 * h__proc_kill_owned(owner); servers the env stops itself pass NULL. */
void h__proc_track(pid_t pid, int kill_sig, const h_env *owner);
void h__proc_untrack(pid_t pid);
void h__proc_kill_owned(const h_env *owner);

/* Waits up to timeout_ms (<0: forever) for pid. Returns 1 when it exited
 * (*status filled, pid untracked), 0 on timeout, -1 on error. */
int h__wait(pid_t pid, int timeout_ms, int *status);

/* Whether pid holds the socket listening on 127.0.0.1:port (Linux /proc):
 * 1 yes, 0 no (another process has the port, or nobody yet), -1 cannot
 * tell (pid's fds are not readable). Ports are probed free and bound
 * later, so two tests running at once can draw the same one; the loser's
 * server exits on "address in use", but until it does a readiness probe
 * on that port is answered by the winner's server. */
int h__port_owned_by(pid_t pid, int port);

/* Exit code from a wait status: the code, or 128+signal. */
int h__exit_code(int status);

/* Registers/unregisters a dir removed by the exit/signal handlers. */
void h__dir_track(const char *dir);
void h__dir_untrack(const char *dir);

/* rm -rf path, without following symlinks. 0 or -1. */
int h__rmtree(const char *path);

/* Absolute path of an executable found in PATH (or the name itself if it
 * contains '/'), into out. 0 or -1. */
int h__which(const char *name, char *out, size_t outsz);

/* Runs argv to completion, feeding stdin_data, collecting stdout/stderr into
 * malloc'ed strings (NULL pointers: discarded). timeout_ms then SIGKILL.
 * Returns the exit code, or -1 if it could not run or timed out. */
int h__run(const char *const *argv, char *const *envp, const char *cwd, int as_postgres,
           const char *stdin_data, char **out, char **err, int timeout_ms);

/* snprintf that reports truncation: 0 when it fit, -1 otherwise. */
int h__fmt(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Process-wide libcurl setup; called by h__init_once. */
void h__curl_init(void);

/* Status of a GET on url (body discarded), or -1 when no response arrived
 * within timeout_ms. Thread-safe. */
int h__http_status(const char *url, long timeout_ms);

#endif
