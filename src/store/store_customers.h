/*
 * store_customers.h — customers, their risk history and onboarding tasks.
 *
 * Every write runs in one PostgreSQL transaction together with the events
 * its triggers emit (aml.customer.created / .updated, aml.customer.risk,
 * aml.kyc.tasks.created). JSON outputs are malloc'd texts produced by the
 * database's vigil_*_json functions; the caller frees them.
 */
#ifndef VIGIL_STORE_CUSTOMERS_H
#define VIGIL_STORE_CUSTOMERS_H

#include <libpq-fe.h>

#include "domain/risk.h"
#include "domain/validate.h"
#include "util/status.h"

/* Creates a customer, scores its risk, opens the onboarding KYC tasks (and
 * the enhanced-due-diligence tasks when the risk is high). With an
 * external_id that already exists nothing is written and *duplicate is 1.
 * *out is the customer detail (vigil_customer_detail). */
vg_status customers_create(PGconn *c, const customer_input *in, const risk_config *rcfg,
                           const char *actor, char **out, int *duplicate, vg_error *err);

/* Applies a patch and re-scores risk, in one transaction. */
vg_status customers_update(PGconn *c, const char *id, const customer_input *patch,
                           const risk_config *rcfg, const char *actor, char **out, vg_error *err);

vg_status customers_get(PGconn *c, const char *id, char **out, vg_error *err);

/* {"items": [...], "next": cursor|null}, ordered by creation; `after` is the
 * previous page's cursor (a customer id) or NULL. */
vg_status customers_list(PGconn *c, const char *after, int limit, char **out, vg_error *err);

/* {"customer_id", "items": [assessment...]} newest first. */
vg_status customers_risk_history(PGconn *c, const char *id, char **out, vg_error *err);

/* Re-scores customer `id` inside the caller's transaction (row locked FOR
 * NO KEY UPDATE). Writes a risk_assessments row and updates the customer
 * only when the score or level changed (or `force`); a rise to high opens
 * the enhanced-due-diligence tasks not already open. *changed (may be NULL)
 * is 1 when a new assessment was written. */
vg_status risk_reassess(PGconn *c, const char *id, const risk_config *rcfg, const char *reason,
                        const char *actor, int force, int *changed, vg_error *err);

/* risk_reassess for the n distinct customers ids[0..n) at once, reasons[i]
 * recorded for ids[i]: one statement reads (and locks, in id order) them
 * all, one writes the new assessments, one updates the customers. The first
 * id that is not a customer fails the whole call (VG_E_NOT_FOUND). *changed
 * (may be NULL) is how many new assessments were written. */
vg_status risk_reassess_many(PGconn *c, int n, const char *const *ids, const char *const *reasons,
                             const risk_config *rcfg, const char *actor, int force, int *changed,
                             vg_error *err);

#endif
