/*
 * consumers.c — the built-in consumers and the threads that run them.
 *
 * risk: an alert raised or worked changes the customer's risk inputs (open
 * alerts, escalations, SARs). The handler re-scores the customer from the
 * database's current state, not from the event, so a redelivered or
 * out-of-order event can never move risk backwards: the newest state wins
 * and risk_version only grows. A new assessment emits aml.customer.risk
 * (and, on a rise to high, the EDD tasks and aml.kyc.tasks.created) through
 * the outbox in the same transaction as the processed_events row.
 *
 * webhooks: every event (aml.>) is enqueued, in the processed_events
 * transaction, for each active webhook subscribed to its type; its worker
 * thread (consumer_def.worker, started here beside the consumer) does the
 * HTTP. See webhooks.h.
 */
#include "consumers/consumers.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumers/webhooks.h"
#include "domain/validate.h"
#include "store/store_customers.h"
#include "util/log.h"

/* Most events a reassessment's reason names; the rest are counted. */
#define RISK_REASON_EVENTS 8

/* One reassessment per customer of the batch, whatever number of its alert
 * events came together: the score is the customer's current state, so a
 * second pass would only find it unchanged. Its reason names the events
 * ("aml.alert.created <id>", joined by "; "). */
static vg_status risk_many(PGconn *c, const vg_config *cfg, const consumer_event *evs, int n,
                           vg_error *err)
{
    char(*ids)[37] = malloc((size_t)n * sizeof *ids);
    const char **idp = malloc((size_t)n * sizeof *idp); /* ids[j], as risk_reassess_many takes */
    char **reasons = calloc((size_t)n, sizeof *reasons);
    int *named = calloc((size_t)n, sizeof *named), *more = calloc((size_t)n, sizeof *more);
    if (!ids || !idp || !reasons || !named || !more)
        abort();
    int m = 0;
    vg_status st = VG_OK;
    for (int i = 0; i < n && st == VG_OK; i++) {
        const char *customer = json_string_value(json_object_get(evs[i].data, "customer_id"));
        char id[37]; /* canonical (lowercase), so one customer is one entry */
        if (!uuid_parse(customer, id)) {
            st = vg_fail(err, VG_E_INVALID, "data.customer_id", "event %s has no customer_id",
                         evs[i].id);
            break;
        }
        int j = 0;
        while (j < m && strcmp(ids[j], id) != 0)
            j++;
        if (j == m) {
            memcpy(ids[m], id, sizeof id);
            idp[m] = ids[m];
            m++;
        }
        if (named[j] == RISK_REASON_EVENTS) {
            more[j]++;
            continue;
        }
        const char *alert = json_string_value(json_object_get(evs[i].data, "id"));
        char *old = reasons[j], *joined = NULL;
        if (asprintf(&joined, "%s%s%s %s", old ? old : "", old ? "; " : "", evs[i].type,
                     alert ? alert : "") < 0)
            abort();
        free(old);
        reasons[j] = joined;
        named[j]++;
    }
    for (int j = 0; j < m && st == VG_OK; j++)
        if (more[j]) {
            char *joined = NULL;
            if (asprintf(&joined, "%s; and %d more", reasons[j], more[j]) < 0)
                abort();
            free(reasons[j]);
            reasons[j] = joined;
        }
    if (st == VG_OK) {
        risk_config rc = {(int)cfg->risk_medium, (int)cfg->risk_high};
        st = risk_reassess_many(c, m, idp, (const char *const *)reasons, &rc, "consumer:risk", 0,
                                NULL, err);
    }
    for (int j = 0; j < n; j++)
        free(reasons[j]);
    free(reasons);
    free(idp);
    free(ids);
    free(named);
    free(more);
    return st;
}

static vg_status risk_handler(PGconn *c, const vg_config *cfg, const consumer_event *ev,
                              vg_error *err)
{
    return risk_many(c, cfg, ev, 1, err);
}

static const consumer_def risk_consumer = {.name = "risk",
                                           .filter_subject = "aml.alert.>",
                                           .handler = risk_handler,
                                           .handle_many = risk_many,
                                           .emits_events = 1};
/* A batch's whole transaction is one statement (see consumer_def.apply_stmt
 * and migration 0016). */
static db_stmt webhooks_apply =
    DB_STMT("SELECT vigil_consume_webhooks_many($1, $2::uuid[], $3::bigint[], $4::text[])", 4);
static const consumer_def webhooks_consumer = {.name = "webhooks",
                                               .filter_subject = "aml.>",
                                               .redrive = webhooks_redrive,
                                               .worker = webhooks_deliver,
                                               .apply_stmt = &webhooks_apply,
                                               .headers_suffice = 1};

const consumer_def *const consumer_registry[] = {&risk_consumer, &webhooks_consumer, NULL};

/* One thread: a consumer's runner, or its companion worker. */
typedef struct runner {
    const vg_config *cfg;
    const consumer_def *def;
    consumer_worker worker; /* NULL: run the consumer itself */
    atomic_int *stop;
    pthread_t thread;
} runner;

struct consumer_group {
    atomic_int stop;
    int n;
    runner r[8];
};

static void *runner_main(void *arg)
{
    runner *r = arg;
    char name[16]; /* top -H, perf: which consumer a thread is */
    snprintf(name, sizeof name, "%s %s", r->worker ? "work" : "cons", r->def->name);
    pthread_setname_np(pthread_self(), name);
    if (r->worker)
        r->worker(r->cfg, r->stop);
    else
        consumer_run(r->cfg, r->def, r->stop);
    return NULL;
}

/* Starts one thread of the group; a thread that cannot start is logged
 * (its consumer's backlog then shows in /metrics). */
static void runner_start(consumer_group *g, const vg_config *cfg, const consumer_def *def,
                         consumer_worker worker)
{
    if (g->n >= 8) {
        log_error("consumer %s: too many threads in one group", def->name);
        return;
    }
    runner *r = &g->r[g->n];
    r->cfg = cfg;
    r->def = def;
    r->worker = worker;
    r->stop = &g->stop;
    if (pthread_create(&r->thread, NULL, runner_main, r) != 0) {
        log_error("consumer %s: cannot start a %s thread", def->name,
                  worker ? "worker" : "consumer");
        return;
    }
    g->n++;
}

consumer_group *consumers_start(const vg_config *cfg, const char *only)
{
    consumer_group *g = calloc(1, sizeof *g);
    if (!g)
        abort();
    for (int i = 0; consumer_registry[i]; i++) {
        const consumer_def *def = consumer_registry[i];
        if (only && strcmp(only, def->name) != 0)
            continue;
        runner_start(g, cfg, def, NULL);
        if (def->worker)
            runner_start(g, cfg, def, def->worker);
    }
    return g;
}

void consumers_stop(consumer_group *g)
{
    if (!g)
        return;
    atomic_store(&g->stop, 1);
    for (int i = 0; i < g->n; i++)
        pthread_join(g->r[i].thread, NULL);
    free(g);
}
