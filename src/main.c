/*
 * main.c — the `vigil` command: subcommand dispatch.
 *
 *   vigil serve                         HTTP API (and, later, the event pipeline)
 *   vigil migrate                       apply the embedded SQL migrations
 *   vigil keys create --role R [--name N]   new API key, printed once (last line)
 *   vigil keys revoke ID|PREFIX         revoke a key at once
 *   vigil keys list                     keys without their secrets
 *   vigil audit verify | reconcile | replay   history checks (src/cli/)
 *   vigil import | status | events tail | demo seed   operators' tools (src/cli/)
 *   vigil version | --help
 *
 * Configuration comes from the environment only (see --help).
 */
#include <errno.h>
#include <openssl/crypto.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/server.h"
#include "cli/cli.h"
#include "domain/timeparse.h"
#include "consumers/consumers.h"
#include "events/pipeline.h"
#include "events/wake.h"
#include "store/db.h"
#include "store/migrate.h"
#include "store/store_settings.h"
#include "store/store_keys.h"
#include "util/config.h"
#include "util/log.h"

static void usage(FILE *f)
{
    fprintf(f,
            "vigil %s — anti-money-laundering platform core\n\n"
            "Usage:\n"
            "  vigil serve                             run the API, sequencer, publisher and\n"
            "                                          consumers (VIGIL_ROLES)\n"
            "  vigil migrate [--service-role NAME]     apply pending database migrations as\n"
            "                                          the schema owner; make login role NAME\n"
            "                                          (created when missing) a member of\n"
            "                                          vigil_service\n"
            "  vigil keys create --role ROLE [--name NAME]\n"
            "                    [--expires-in N(d|h|m|s) | --expires-at RFC3339]\n"
            "                                          create an API key (admin, ingest,\n"
            "                                          analyst, auditor); the key is printed\n"
            "                                          once, alone on the last line; NAME\n"
            "                                          is the person (four eyes)\n"
            "  vigil keys revoke ID|PREFIX             revoke a key now (id or prefix from\n"
            "                                          keys list)\n"
            "  vigil keys list                         list keys (never their secrets): role,\n"
            "                                          state, expiry, last use\n"
            "  vigil audit verify [--from-seq N] [--to-seq M] [--json]\n"
            "                                          recompute event_log's hash chain; name\n"
            "                                          any edited, missing, reordered or\n"
            "                                          truncated event\n"
            "  vigil reconcile [--from-seq N] [--dry-run]\n"
            "                                          re-publish what the JetStream stream\n"
            "                                          lacks, then verify it holds every event\n"
            "  vigil replay --from-seq N [--to-seq M] [--type PREFIX] [--to stdout|nats]\n"
            "                                          re-emit history in seq order (JSON\n"
            "                                          Lines, or NATS vigil.replay.<type>)\n"
            "  vigil consume NAME                      run one built-in consumer alone (risk,\n"
            "                                          webhooks)\n"
            "  vigil import transactions FILE [--format csv|jsonl] [--batch N]\n"
            "               [--rejects PATH] [--progress SECONDS] [--quiet]\n"
            "                                          bulk-load transactions (idempotent on\n"
            "                                          external_id); rejected lines go to\n"
            "                                          FILE.rejects; exit 1 if any\n"
            "  vigil status [--json]                   leaders, outbox, lag, stream, consumers,\n"
            "                                          dead letters\n"
            "  vigil events tail [--type PREFIX] [--after SEQ | --last N] [--follow]\n"
            "                    [--limit N]           event_log as JSON Lines, in seq order\n"
            "  vigil demo seed [--customers N] [--days D] [--seed S]\n"
            "                                          demo data that fires every built-in rule\n"
            "  vigil version                           print the version\n"
            "  vigil --help                            this text\n\n",
            VIGIL_VERSION);
    config_print_help(f);
}

static int fail(const vg_error *err)
{
    fprintf(stderr, "vigil: %s%s%s\n", err->field[0] ? err->field : "", err->field[0] ? ": " : "",
            err->detail);
    return err->code == VG_E_UNAVAILABLE ? 3 : 1;
}

/* `vigil migrate [--service-role NAME]`, as the schema owner
 * (VIGIL_MIGRATE_DATABASE_URL, else VIGIL_DATABASE_URL). */
static int cmd_migrate(const vg_config *cfg, int argc, char **argv)
{
    const char *service_role = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--service-role") == 0 && i + 1 < argc && argv[i + 1][0]) {
            service_role = argv[++i];
        } else {
            fprintf(stderr, "vigil migrate: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    const char *url = cfg->migrate_database_url[0] ? cfg->migrate_database_url : cfg->database_url;
    vg_error err = {0};
    PGconn *c = db_connect(url, (int)cfg->db_connect_timeout, &err);
    int applied = 0, created = 0;
    if (!c || migrate_run(c, &applied, &err) != VG_OK ||
        (service_role && migrate_service_member(c, service_role, &created, &err) != VG_OK)) {
        PQfinish(c);
        return fail(&err);
    }
    PQfinish(c);
    printf("migrations applied: %d\n", applied);
    if (service_role)
        printf("%s %s is a member of vigil_service\n", created ? "created login role" : "role",
               service_role);
    return 0;
}

/* "90d", "12h", "30m", "3600s" → seconds; -1 when malformed or not > 0. */
static long long duration_parse(const char *s)
{
    char *end;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    long long unit = 0;
    if (end != s && end[0] && !end[1])
        unit = end[0] == 'd' ? 86400 : end[0] == 'h' ? 3600 : end[0] == 'm' ? 60 : end[0] == 's';
    if (errno || n < 1 || unit == 0 || n > 100LL * 365 * 86400 / unit)
        return -1;
    return n * unit;
}

static int cmd_keys(const vg_config *cfg, int argc, char **argv)
{
    const char *role = NULL, *name = NULL, *expires_at = NULL, *target = NULL;
    long long expires_in = 0;
    if (argc < 1) {
        usage(stderr);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--role") == 0 && i + 1 < argc)
            role = argv[++i];
        else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
            name = argv[++i];
        else if (strcmp(argv[i], "--expires-in") == 0 && i + 1 < argc) {
            if ((expires_in = duration_parse(argv[++i])) < 0) {
                fprintf(stderr,
                        "vigil keys: --expires-in wants N followed by d, h, m or s "
                        "(e.g. 90d), got '%s'\n",
                        argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--expires-at") == 0 && i + 1 < argc) {
            int64_t at = 0;
            vg_error perr = {0};
            expires_at = argv[++i];
            if (rfc3339_parse(expires_at, "--expires-at", &at, &perr) != VG_OK ||
                at <= now_epoch_us()) {
                fprintf(stderr,
                        "vigil keys: --expires-at wants a future RFC 3339 time with an "
                        "offset (e.g. 2027-03-01T00:00:00Z), got '%s'\n",
                        expires_at);
                return 2;
            }
        } else if (strcmp(argv[0], "revoke") == 0 && !target && argv[i][0] != '-')
            target = argv[i];
        else {
            fprintf(stderr, "vigil keys: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (expires_at && expires_in) {
        fprintf(stderr, "vigil keys create: give --expires-in or --expires-at, not both\n");
        return 2;
    }
    vg_error err = {0};
    PGconn *c = db_connect(cfg->database_url, (int)cfg->db_connect_timeout, &err);
    if (!c)
        return fail(&err);
    int rc = 0;
    if (strcmp(argv[0], "create") == 0) {
        char secret[API_KEY_SECRET_MAX];
        api_key_info info;
        if (!role) {
            fprintf(stderr, "vigil keys create: --role is required\n");
            rc = 2;
        } else if (keys_create(c, role, name ? name : role, expires_at, expires_in, secret, &info,
                               &err) != VG_OK) {
            rc = fail(&err);
        } else {
            printf("created %s key '%s' (id %s%s%s); store it now, it is not shown again:\n%s\n",
                   role, info.name, info.id, info.expires_at[0] ? ", expires " : "",
                   info.expires_at, secret);
        }
    } else if (strcmp(argv[0], "revoke") == 0) {
        api_key_info info;
        int already = 0;
        if (!target) {
            fprintf(stderr, "vigil keys revoke: name the key (its id or prefix)\n");
            rc = 2;
        } else if (keys_revoke(c, target, &info, &already, &err) != VG_OK) {
            rc = fail(&err);
        } else {
            printf("%s %s key '%s' (id %s)\n", already ? "already revoked:" : "revoked",
                   role_name(info.role), info.name, info.id);
        }
    } else if (strcmp(argv[0], "list") == 0) {
        json_t *list = keys_list(c, &err);
        if (!list) {
            rc = fail(&err);
        } else {
            json_dumpf(list, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            printf("\n");
            json_decref(list);
        }
    } else {
        fprintf(stderr, "vigil keys: unknown command '%s' (create | revoke | list)\n", argv[0]);
        rc = 2;
    }
    PQfinish(c);
    vg_error_clear(&err);
    return rc;
}

/* 1 when the comma-separated `roles` names `role`. */
static int has_role(const char *roles, const char *role)
{
    size_t n = strlen(role);
    for (const char *p = roles; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, role, n) == 0)
            return 1;
        p += len + (p[len] == ',');
    }
    return 0;
}

/* Hands VIGIL_EVENT_PII to the triggers that build customer events (they
 * run in SQL, so the setting is a row: store_settings.h). A setting that
 * cannot be applied stops the start: events would carry other personal data
 * than configured. 0 or -1 (printed). */
static int apply_event_pii(const vg_config *cfg, PGconn *c)
{
    vg_error err = {0};
    char previous[16];
    if (settings_apply_event_pii(c, cfg->event_pii, previous, &err) != VG_OK) {
        fprintf(stderr, "vigil: cannot apply VIGIL_EVENT_PII=%s: %s\n", cfg->event_pii, err.detail);
        vg_error_clear(&err);
        return -1;
    }
    if (strcmp(previous, cfg->event_pii) != 0)
        log_warn("VIGIL_EVENT_PII: customer events change from '%s' to '%s' now (events already "
                 "written keep what they carry)",
                 previous, cfg->event_pii);
    else
        log_info("VIGIL_EVENT_PII=%s: customer events %s", cfg->event_pii,
                 strcmp(cfg->event_pii, "minimal") == 0 ? "leave out email and date_of_birth"
                                                        : "carry every customer field");
    return 0;
}

static int cmd_serve(const vg_config *cfg)
{
    /* glibc gives each thread its own malloc arena (up to 8 per core), and
     * with 16+ HTTP threads plus libnats' the freed-but-kept memory of each
     * adds up; two arenas keep the peak RSS down at no measurable cost. */
    mallopt(M_ARENA_MAX, 2);
    /* SIGINT/SIGTERM are taken synchronously by the main thread (sigwait),
     * so block them before any thread exists. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    vg_error err = {0};
    /* One connection per HTTP thread and per ingest flusher, plus two. */
    db_pool *pool =
        db_pool_new(cfg->database_url, (int)(cfg->http_threads + cfg->ingest_flushes) + 2,
                    (int)cfg->db_connect_timeout);
    /* Start even when the database is down: /readyz says so and requests
     * get 503 until it is back. But refuse to run on an old schema. */
    PGconn *c = db_acquire(pool, &err);
    if (c) {
        int pending = migrate_pending(c, &err);
        int privileged = pending == 0 ? migrate_is_privileged(c, &err) : 0;
        int pii = pending == 0 ? apply_event_pii(cfg, c) : 0;
        db_release(pool, c);
        if (pii != 0) {
            db_pool_free(pool);
            return 1;
        }
        if (privileged > 0)
            log_warn("VIGIL_DATABASE_URL connects as a superuser or the schema owner: this "
                     "instance could change the schema and rewrite history; serve as a member "
                     "of vigil_service (vigil migrate --service-role NAME)");
        if (pending > 0) {
            fprintf(stderr, "vigil: %d migrations pending; run `vigil migrate` first\n", pending);
            db_pool_free(pool);
            return 1;
        }
    } else {
        log_warn("starting without the database: %s", err.detail);
    }
    vg_error_clear(&err);

    int api = has_role(cfg->roles, "api");
    /* Writers wake the sequencer after commit (events/wake.c). */
    if (wake_init(cfg->database_url, (int)cfg->db_connect_timeout, &err) != VG_OK) {
        db_pool_free(pool);
        return fail(&err);
    }
    pipeline *pipe =
        pipeline_start(cfg, has_role(cfg->roles, "sequencer"), has_role(cfg->roles, "publisher"));
    consumer_group *consumers =
        has_role(cfg->roles, "consumers") ? consumers_start(cfg, NULL) : NULL;
    vg_status st = VG_OK;
    if (api) {
        st = api_server_run(cfg, pool, &err);
    } else {
        int sig;
        log_info("serving roles '%s' without the HTTP API", cfg->roles);
        sigwait(&set, &sig);
    }
    consumers_stop(consumers);
    pipeline_stop(pipe);
    wake_shutdown();
    db_pool_free(pool);
    if (st == VG_OK)
        log_info("stopped");
    return st == VG_OK ? 0 : fail(&err);
}

/* `vigil consume NAME`: one built-in consumer alone (scale out by running
 * several: they share the durable consumer's work). */
static int cmd_consume(const vg_config *cfg, int argc, char **argv)
{
    if (argc != 1 || !consumer_find(argv[0])) {
        fprintf(stderr, "vigil consume: name one consumer:");
        for (int i = 0; consumer_registry[i]; i++)
            fprintf(stderr, " %s", consumer_registry[i]->name);
        fprintf(stderr, "\n");
        return 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    vg_error err = {0};
    if (wake_init(cfg->database_url, (int)cfg->db_connect_timeout, &err) != VG_OK)
        return fail(&err);
    consumer_group *g = consumers_start(cfg, argv[0]);
    int sig;
    sigwait(&set, &sig);
    log_info("signal %d: stopping consumer %s", sig, argv[0]);
    consumers_stop(g);
    wake_shutdown();
    return 0;
}

int main(int argc, char **argv)
{
    /* libnats 3.4's TLS teardown (in nats_CloseAndWait) frees OpenSSL's
     * compression-method list without clearing it; OpenSSL's own cleanup at
     * exit would free it again (nats.c issue 904). Leave the process-wide
     * OpenSSL state to the operating system at exit instead. */
    OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("vigil %s\n", VIGIL_VERSION);
        return 0;
    }
    vg_config cfg;
    vg_error err = {0};
    if (config_load(&cfg, &err) != VG_OK)
        return fail(&err);
    log_set_level(log_level_parse(cfg.log_level));

    if (strcmp(argv[1], "serve") == 0)
        return cmd_serve(&cfg);
    if (strcmp(argv[1], "migrate") == 0)
        return cmd_migrate(&cfg, argc - 2, argv + 2);
    if (strcmp(argv[1], "keys") == 0)
        return cmd_keys(&cfg, argc - 2, argv + 2);
    if (strcmp(argv[1], "consume") == 0)
        return cmd_consume(&cfg, argc - 2, argv + 2);
    if (strcmp(argv[1], "audit") == 0 && argc > 2 && strcmp(argv[2], "verify") == 0)
        return cli_audit_verify(&cfg, argc - 3, argv + 3);
    if (strcmp(argv[1], "reconcile") == 0)
        return cli_reconcile(&cfg, argc - 2, argv + 2);
    if (strcmp(argv[1], "replay") == 0)
        return cli_replay(&cfg, argc - 2, argv + 2);
    if (strcmp(argv[1], "import") == 0)
        return cli_import(&cfg, argc - 2, argv + 2);
    if (strcmp(argv[1], "status") == 0)
        return cli_status(&cfg, argc - 2, argv + 2);
    if (strcmp(argv[1], "events") == 0 && argc > 2 && strcmp(argv[2], "tail") == 0)
        return cli_events_tail(&cfg, argc - 3, argv + 3);
    if (strcmp(argv[1], "demo") == 0 && argc > 2 && strcmp(argv[2], "seed") == 0)
        return cli_demo_seed(&cfg, argc - 3, argv + 3);
    fprintf(stderr, "vigil: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
