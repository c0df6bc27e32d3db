/*
 * main.c — the `vigil` command: subcommand dispatch.
 *
 *   vigil serve                         HTTP API (and, later, the event pipeline)
 *   vigil migrate                       apply the embedded SQL migrations
 *   vigil keys create --role R [--name N]   new API key, printed once (last line)
 *   vigil keys list                     keys without their secrets
 *   vigil audit verify | reconcile | replay   history checks (src/cli/)
 *   vigil version | --help
 *
 * Configuration comes from the environment only (see --help).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/server.h"
#include "cli/cli.h"
#include "consumers/consumers.h"
#include "events/pipeline.h"
#include "store/db.h"
#include "store/migrate.h"
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
            "  vigil migrate                           apply pending database migrations\n"
            "  vigil keys create --role ROLE [--name NAME]\n"
            "                                          create an API key (admin, ingest,\n"
            "                                          analyst, auditor); the key is printed\n"
            "                                          once, alone on the last line\n"
            "  vigil keys list                         list keys (never their secrets)\n"
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

static int cmd_migrate(const vg_config *cfg)
{
    vg_error err = {0};
    PGconn *c = db_connect(cfg->database_url, (int)cfg->db_connect_timeout, &err);
    int applied = 0;
    if (!c || migrate_run(c, &applied, &err) != VG_OK) {
        PQfinish(c);
        return fail(&err);
    }
    PQfinish(c);
    printf("migrations applied: %d\n", applied);
    return 0;
}

static int cmd_keys(const vg_config *cfg, int argc, char **argv)
{
    const char *role = NULL, *name = NULL;
    if (argc < 1) {
        usage(stderr);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--role") == 0 && i + 1 < argc)
            role = argv[++i];
        else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
            name = argv[++i];
        else {
            fprintf(stderr, "vigil keys: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
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
        } else if (keys_create(c, role, name ? name : role, secret, &info, &err) != VG_OK) {
            rc = fail(&err);
        } else {
            printf("created %s key '%s' (id %s); store it now, it is not shown again:\n%s\n", role,
                   info.name, info.id, secret);
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
        fprintf(stderr, "vigil keys: unknown command '%s' (create | list)\n", argv[0]);
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

static int cmd_serve(const vg_config *cfg)
{
    /* SIGINT/SIGTERM are taken synchronously by the main thread (sigwait),
     * so block them before any thread exists. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    vg_error err = {0};
    db_pool *pool =
        db_pool_new(cfg->database_url, (int)cfg->http_threads + 2, (int)cfg->db_connect_timeout);
    /* Start even when the database is down: /readyz says so and requests
     * get 503 until it is back. But refuse to run on an old schema. */
    PGconn *c = db_acquire(pool, &err);
    if (c) {
        int pending = migrate_pending(c, &err);
        db_release(pool, c);
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
    db_pool_free(pool);
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
    consumer_group *g = consumers_start(cfg, argv[0]);
    int sig;
    sigwait(&set, &sig);
    log_info("signal %d: stopping consumer %s", sig, argv[0]);
    consumers_stop(g);
    return 0;
}

int main(int argc, char **argv)
{
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
        return cmd_migrate(&cfg);
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
    fprintf(stderr, "vigil: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
