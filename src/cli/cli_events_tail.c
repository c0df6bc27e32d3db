/*
 * cli_events_tail.c — `vigil events tail`: event_log's CloudEvents as JSON
 * Lines on stdout, in seq order, optionally following new ones.
 *
 * Reads PostgreSQL directly (the same rows GET /events serves), so it works
 * without a running API and sees exactly the sequenced history. Without
 * --after it starts with the last --last events (10), like tail(1). With
 * --follow it polls every 500 ms: seq is gap-free and assigned in commit
 * order, so "seq > last printed" never skips an event. A lost database
 * connection while following is reported on stderr and retried each second.
 */
#include "cli/cli.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/db.h"
#include "store/store_event_log.h"

#define TAIL_CMD  "events tail"
#define TAIL_PAGE 1000

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The seq just before the last `n` events matching `type`. */
static vg_status start_after(PGconn *c, const char *type, long n, int64_t *after, vg_error *err)
{
    char l[24];
    snprintf(l, sizeof l, "%ld", n);
    const char *p[] = {type, l};
    PGresult *r = db_exec(c,
                          "SELECT coalesce(min(seq) - 1, 0) FROM (SELECT seq FROM event_log"
                          " WHERE $1::text IS NULL OR starts_with(event_type, $1)"
                          " ORDER BY seq DESC LIMIT $2::int) s",
                          2, p, err);
    if (!r)
        return err->code;
    *after = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return VG_OK;
}

static int usage_error(const char *msg, const char *arg)
{
    return cli_usage_error(TAIL_CMD,
                           "vigil events tail [--type PREFIX] [--after SEQ | --last N] [--follow]"
                           " [--limit N]",
                           msg, arg);
}

static int parse_count(const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < 0)
        return -1;
    *out = v;
    return 0;
}

int cli_events_tail(const vg_config *cfg, int argc, char **argv)
{
    const char *type = NULL;
    long long after = -1, last = 10, limit = 0;
    int follow = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--type") == 0 && i + 1 < argc)
            type = argv[++i];
        else if (strcmp(a, "--after") == 0 && i + 1 < argc) {
            if (parse_count(argv[++i], &after) != 0)
                return usage_error("--after needs a seq >= 0, got ", argv[i]);
        } else if (strcmp(a, "--last") == 0 && i + 1 < argc) {
            if (parse_count(argv[++i], &last) != 0)
                return usage_error("--last needs a count >= 0, got ", argv[i]);
        } else if (strcmp(a, "--limit") == 0 && i + 1 < argc) {
            if (parse_count(argv[++i], &limit) != 0 || limit == 0)
                return usage_error("--limit needs a count >= 1, got ", argv[i]);
        } else if (strcmp(a, "--follow") == 0 || strcmp(a, "-f") == 0)
            follow = 1;
        else
            return usage_error("unexpected argument ", a);
    }
    vg_error err = {0};
    PGconn *db = db_connect(cfg->database_url, (int)cfg->db_connect_timeout, &err);
    if (!db)
        return cli_fail(TAIL_CMD, &err);
    int64_t pos = after;
    if (after < 0 && start_after(db, type, (long)last, &pos, &err) != VG_OK) {
        PQfinish(db);
        return cli_fail(TAIL_CMD, &err);
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    long long printed = 0;
    int rc = CLI_OK, down = 0;
    while (!stop_flag && (!limit || printed < limit)) {
        PGresult *r = event_log_scan(db, pos, 0, type, TAIL_PAGE, &err);
        if (!r) {
            if (!follow) {
                rc = cli_fail(TAIL_CMD, &err);
                break;
            }
            if (!down)
                fprintf(stderr, "vigil " TAIL_CMD ": %s; retrying\n", err.detail);
            down = 1;
            vg_error_clear(&err);
            nap_ms(1000);
            PQreset(db);
            continue;
        }
        if (down)
            fprintf(stderr, "vigil " TAIL_CMD ": database back\n");
        down = 0;
        int n = PQntuples(r);
        for (int i = 0; i < n && (!limit || printed < limit); i++, printed++) {
            pos = strtoll(PQgetvalue(r, i, 0), NULL, 10);
            fputs(PQgetvalue(r, i, 2), stdout);
            fputc('\n', stdout);
        }
        PQclear(r);
        if (fflush(stdout) != 0 || ferror(stdout)) {
            rc = errno == EPIPE ? CLI_OK : CLI_FAILED; /* a closed pipe (| head) is normal */
            break;
        }
        if (n == TAIL_PAGE)
            continue;
        if (!follow)
            break;
        nap_ms(500);
    }
    PQfinish(db);
    vg_error_clear(&err);
    return rc;
}
