/*
 * store_work.h — analysts' work items: transactions (read), alerts and KYC
 * tasks (read, move through their workflow) and monitoring rules.
 *
 * Outputs are malloc'd JSON texts from the database's vigil_*_json
 * functions; the caller frees them. Every write emits its event through the
 * table's trigger in the same transaction.
 */
#ifndef VIGIL_STORE_WORK_H
#define VIGIL_STORE_WORK_H

#include <jansson.h>
#include <libpq-fe.h>

#include "util/status.h"

/* Ingests a batch of canonical transactions (JSON array text, see
 * sql/migrations/0005_ingest.sql) atomically. *out = {"created", "duplicates",
 * "items": [transaction + "duplicate"]} in input order, and the
 * two counts. An unknown customer or currency refuses the whole batch:
 * VG_E_INVALID with err->items. */
vg_status tx_ingest(PGconn *c, const char *items_json, char **out, long *created, long *duplicates,
                    vg_error *err);

/* The sequencer's step in the ingest's own transaction (migration 0030):
 * low and limit go in; moved (-1: the step failed and was rolled back
 * alone, error says why), strays and error come out. */
typedef struct tx_sequencing {
    long long low;
    int limit;
    int moved, strays;
    char error[256];
} tx_sequencing;

/* The step's parameters as text ($low::bigint, $limit::int), and its
 * outcome read from columns col.. (seq_moved, seq_strays, seq_error) of
 * row 0 of vigil_ingest_rows_sequenced's answer. */
void tx_sequencing_params(const tx_sequencing *seq, char low[24], char limit[16]);
void tx_sequencing_read(const PGresult *r, int col, tx_sequencing *seq);

/* tx_ingest, then the sequencer's step in the same commit. */
vg_status tx_ingest_sequenced(PGconn *c, const char *items_json, tx_sequencing *seq, char **out,
                              long *created, long *duplicates, vg_error *err);

/* One item of an ingest answer, as SQL over vigil_ingest_rows' columns (tx,
 * duplicate): the transaction with "duplicate" added first, as text. tx is
 * vigil_tx_json_text (migrations 0027, 0028), an object that starts with
 * its "id" member, so the member goes in after its opening brace; no jsonb
 * is parsed, merged or printed per transaction. The batch answer
 * (tx_ingest) and the single-transaction answer (api_ingest.c) both use
 * it, so the two answers' items are the same bytes. */
#define TX_ANSWER_ITEM_SQL                                                                         \
    "(CASE WHEN duplicate THEN '{\"duplicate\":true,' ELSE '{\"duplicate\":false,' END"            \
    " || substr(tx, 2))"

vg_status tx_get(PGconn *c, const char *id, char **out, vg_error *err);
/* Filter values: customer_id. */
vg_status tx_list(PGconn *c, const char *customer_id, const char *after, int limit, char **out,
                  vg_error *err);

vg_status alert_get(PGconn *c, const char *id, char **out, vg_error *err);
/* Filter values (NULL = any): status, customer_id, rule_id. */
vg_status alert_list(PGconn *c, const char *status, const char *customer_id, const char *rule_id,
                     const char *after, int limit, char **out, vg_error *err);
/* Moves an alert to `to` (with `disposition` when closing); `note` may be
 * NULL (keeps the old note). VG_E_CONFLICT naming the current status when
 * the workflow forbids it. */
vg_status alert_transition(PGconn *c, const char *id, const char *to, const char *disposition,
                           const char *note, const char *actor, char **out, vg_error *err);
/* The same step inside the caller's transaction (no BEGIN/COMMIT). With
 * out == NULL it only locks the alert and checks the move. */
vg_status alert_transition_in_tx(PGconn *c, const char *id, const char *to, const char *disposition,
                                 const char *note, const char *actor, char **out, vg_error *err);

/* Filter values: status, customer_id, kind. */
vg_status kyc_list(PGconn *c, const char *status, const char *customer_id, const char *kind,
                   const char *after, int limit, char **out, vg_error *err);
vg_status kyc_transition(PGconn *c, const char *id, const char *to, const char *note,
                         const char *actor, char **out, vg_error *err);

/* {"items": [rule...]} ordered by id. */
vg_status rules_list(PGconn *c, char **out, vg_error *err);
/* Locks rule `id` and checks `params_patch` (may be NULL) against it: each
 * key must exist and keep its type. *version = the rule's current version.
 * Inside the caller's transaction (the lock lasts until it ends). */
vg_status rule_check(PGconn *c, const char *id, const json_t *params_patch, long *version,
                     vg_error *err);
/* Changes a rule's params (merged key by key, checked as rule_check does),
 * mode and/or severity (NULL = unchanged) and bumps its version, inside the
 * caller's transaction. Only approvals call it (four eyes, see
 * store_approvals.h). VG_E_CONFLICT when expect_version >= 0 and the rule is
 * no longer at that version. */
vg_status rule_update_in_tx(PGconn *c, const char *id, const json_t *params_patch, const char *mode,
                            const char *severity, const char *actor, long expect_version,
                            char **out, vg_error *err);

#endif
