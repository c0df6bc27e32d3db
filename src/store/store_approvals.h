/*
 * store_approvals.h — four eyes (maker-checker): proposals and decisions.
 *
 * Closing an alert as escalated or sar_filed, and any change to a rule,
 * first becomes a pending proposal; a second person decides it. Approving
 * applies the change in the same transaction as the decision, re-checking it
 * against the target's state at that moment. Every proposal and decision is
 * an event (aml.approval.proposed / .approved / .rejected, written by the
 * approvals table's trigger).
 *
 * Who may decide (enforced here, written in README "Four eyes"):
 *   - nobody approves their own proposal: not with the same key, and not
 *     with another key of the same name (a key's name identifies a person);
 *   - alert_close: an admin or analyst; rule_change: an admin;
 *   - the proposer may reject (withdraw) their own proposal.
 *
 * Outputs are malloc'd JSON texts (vigil_approval_json); the caller frees.
 */
#ifndef VIGIL_STORE_APPROVALS_H
#define VIGIL_STORE_APPROVALS_H

#include <jansson.h>
#include <libpq-fe.h>

#include "store/store_keys.h"
#include "util/status.h"

/* 1 when closing an alert with `disposition` needs a second person. */
int approval_needed_for_disposition(const char *disposition);

/* Proposes closing alert `alert_id` with `disposition` (and `note`, may be
 * NULL). The alert must be able to close now (else VG_E_CONFLICT, as a
 * direct transition would be); VG_E_CONFLICT too when a proposal for it is
 * already pending (the detail names it). */
vg_status approval_propose_alert_close(PGconn *c, const char *alert_id, const char *disposition,
                                       const char *note, const api_key_info *who, char **out,
                                       vg_error *err);

/* Proposes a change to rule `rule_id` (params_patch may be NULL, mode and
 * severity NULL = unchanged), validated now against the rule's current
 * parameters and recorded with its version: approval refuses it (409) if
 * the rule changed meanwhile. */
vg_status approval_propose_rule_change(PGconn *c, const char *rule_id, const json_t *params_patch,
                                       const char *mode, const char *severity,
                                       const api_key_info *who, char **out, vg_error *err);

/* Approves (approve = 1) or rejects proposal `id` as `who`, with `note` (may
 * be NULL). VG_E_NOT_FOUND, VG_E_CONFLICT when already decided or when the
 * target moved on (the proposal then stays pending: reject it),
 * VG_E_FORBIDDEN per the policy above. *out = the approval, plus "result":
 * the alert or rule as changed, on approval. */
vg_status approval_decide(PGconn *c, const char *id, int approve, const char *note,
                          const api_key_info *who, char **out, vg_error *err);

vg_status approval_get(PGconn *c, const char *id, char **out, vg_error *err);
/* Filter values (NULL = any): status, kind, target_id. */
vg_status approval_list(PGconn *c, const char *status, const char *kind, const char *target_id,
                        const char *after, int limit, char **out, vg_error *err);

#endif
