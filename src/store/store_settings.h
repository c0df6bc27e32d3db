/*
 * store_settings.h — process settings that SQL must see (vigil_settings,
 * one row; sql/migrations/0010_event_privacy.sql).
 */
#ifndef VIGIL_STORE_STORE_SETTINGS_H
#define VIGIL_STORE_STORE_SETTINGS_H

#include <libpq-fe.h>

#include "util/status.h"

/* Stores VIGIL_EVENT_PII (`mode`: "full" or "minimal"), which the triggers
 * that build customer events read. Writes `previous` (16 bytes) with the
 * value it replaced; equal to `mode` when nothing changed. */
vg_status settings_apply_event_pii(PGconn *c, const char *mode, char previous[16], vg_error *err);

#endif
