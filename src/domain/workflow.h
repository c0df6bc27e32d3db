/*
 * workflow.h — the status machines analysts move alerts and KYC tasks
 * through. Pure: the store layer asks, the API reports 409 on a refusal.
 *
 *   alert:    open → investigating → closed (with a disposition)
 *   KYC task: open → in_progress → completed | rejected
 */
#ifndef VIGIL_DOMAIN_WORKFLOW_H
#define VIGIL_DOMAIN_WORKFLOW_H

/* 1 when `s` is a known alert status / disposition / KYC task status. */
int alert_status_valid(const char *s);
int alert_disposition_valid(const char *s);
int kyc_status_valid(const char *s);

/* 1 when moving from `from` to `to` is allowed. */
int alert_transition_ok(const char *from, const char *to);
int kyc_transition_ok(const char *from, const char *to);

#endif
