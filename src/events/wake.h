/*
 * wake.h — "events were committed": the sequencer's wake-up (see wake.c).
 */
#ifndef VIGIL_EVENTS_WAKE_H
#define VIGIL_EVENTS_WAKE_H

#include <stdatomic.h>

#include "util/status.h"

/* Creates the wake-up channels and starts the notifier thread, which uses
 * its own connection to `db_url` (opened on the first kick). */
vg_status wake_init(const char *db_url, int connect_timeout, vg_error *err);

/* Stops the notifier thread and closes the channels. */
void wake_shutdown(void);

/* Call after committing a transaction that wrote events (cheap: one
 * eventfd write; never blocks). A no-op before wake_init. */
void wake_kick(void);

/* The sequencer says whether it leads in this process (kicks go to it
 * directly) or not (kicks become a NOTIFY). Leading again starts its
 * watermark from 0, as the sequencer does. */
void wake_set_local_leader(int leading);

/* The sequencer's outbox watermark after each round (every outbox id below
 * it is sequenced: sql/migrations/0017), for writers that sequence their
 * own events (api_ingest.c, migration 0030). wake_local_low returns 1 and
 * the watermark when the sequencer leads in this process, else 0: another
 * process leads, and this one knows no watermark. */
void wake_set_local_low(long long low);
int wake_local_low(long long *low);

/* The eventfd the local sequencer polls (-1 before wake_init), and a read
 * that clears it (1 if it had been kicked). */
int wake_local_fd(void);
int wake_local_drain(void);

#endif
