/*
 * webhooks.c — redrive of the webhooks consumer's dead letters (its
 * enqueue is one SQL statement, see consumers.c). The HTTP half is
 * webhook_delivery.c.
 */
#include "consumers/webhooks.h"

#include "store/db.h"
#include "store/store_webhooks.h"
#include "util/log.h"

vg_status webhooks_redrive(PGconn *c, const vg_config *cfg, const consumer_event *ev, vg_error *err)
{
    int n = 0;
    vg_status st = store_webhooks_requeue(c, ev->id, &n, err);
    if (st == VG_OK && n == 0)
        return vg_fail(err, VG_E_CONFLICT, NULL,
                       "event %s has no dead delivery to an active webhook (reactivate the"
                       " webhook with PATCH /webhooks/{id} first)",
                       ev->id);
    if (st == VG_OK)
        log_info("webhooks: event %s re-queued for %d webhook(s) by redrive", ev->id, n);
    return st;
}
