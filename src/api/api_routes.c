/*
 * api_routes.c — the routing table: every endpoint, its method and the
 * roles that may call it. A route with no roles is public (health checks
 * and the dashboard's static files only). The authorization test walks this
 * table.
 */
#include "api/api.h"

#define PUBLIC  0u
#define READERS ((unsigned)ROLE_ANY_READER)
#define WRITERS ((unsigned)(ROLE_ADMIN | ROLE_INGEST))
#define WORKERS ((unsigned)(ROLE_ADMIN | ROLE_ANALYST))
#define ADMIN   ((unsigned)ROLE_ADMIN)
#define OVERSEE ((unsigned)(ROLE_ADMIN | ROLE_AUDITOR))

const api_route api_routes[] = {
    {"GET", "/healthz", api_healthz_get, PUBLIC},
    {"GET", "/readyz", api_readyz_get, PUBLIC},

    {"POST", "/customers", api_customers_post, WRITERS},
    {"GET", "/customers", api_customers_list, READERS},
    {"GET", "/customers/{id}", api_customer_get, READERS},
    {"PATCH", "/customers/{id}", api_customer_patch, WRITERS},
    {"GET", "/customers/{id}/risk", api_customer_risk_get, READERS},

    {"POST", "/transactions", api_transactions_post, WRITERS},
    {"GET", "/transactions", api_transactions_list, READERS},
    {"GET", "/transactions/{id}", api_transaction_get, READERS},

    {"GET", "/alerts", api_alerts_list, READERS},
    {"GET", "/alerts/{id}", api_alert_get, READERS},
    {"PATCH", "/alerts/{id}", api_alert_patch, WORKERS},

    {"GET", "/kyc/tasks", api_kyc_tasks_list, READERS},
    {"PATCH", "/kyc/tasks/{id}", api_kyc_task_patch, WORKERS},

    {"GET", "/rules", api_rules_list, READERS},
    {"PATCH", "/rules/{id}", api_rule_patch, ADMIN},

    /* Four eyes: anyone who reads casework sees proposals; admins and
     * analysts decide (rule changes: admins only, checked by the store). */
    {"GET", "/approvals", api_approvals_list, READERS},
    {"GET", "/approvals/{id}", api_approval_get, READERS},
    {"POST", "/approvals/{id}/approve", api_approval_approve, WORKERS},
    {"POST", "/approvals/{id}/reject", api_approval_reject, WORKERS},

    {"GET", "/events", api_events_list, READERS},
    {"GET", "/events/stream", api_events_stream, READERS},

    {"GET", "/dead-letters", api_dead_letters_list, READERS},
    {"POST", "/dead-letters/{id}/redrive", api_dead_letter_redrive, ADMIN},

    {"POST", "/webhooks", api_webhooks_post, ADMIN},
    {"GET", "/webhooks", api_webhooks_list, ADMIN},
    {"PATCH", "/webhooks/{id}", api_webhook_patch, ADMIN},
    {"GET", "/webhooks/{id}/deliveries", api_webhook_deliveries_list, OVERSEE},

    {"GET", "/metrics", api_metrics_get, READERS},
    {"GET", "/openapi.yaml", api_openapi_get, READERS},

    /* The dashboard's static files: public because they carry no data (the
     * page asks for an API key; all data comes from the routes above). */
    {"GET", "/", api_ui_index_get, PUBLIC},
    {"GET", "/ui/{file}", api_ui_asset_get, PUBLIC},

    {NULL, NULL, NULL, 0},
};
