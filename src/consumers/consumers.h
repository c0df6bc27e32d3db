/*
 * consumers.h — starting and stopping the built-in consumers.
 */
#ifndef VIGIL_CONSUMERS_CONSUMERS_H
#define VIGIL_CONSUMERS_CONSUMERS_H

#include "consumers/consumer.h"

typedef struct consumer_group consumer_group;

/* Starts one thread per built-in consumer, or only the one named `only`
 * (NULL = all), plus one for each consumer's companion worker (the webhook
 * delivery worker). A thread that cannot start is logged. Never NULL. */
consumer_group *consumers_start(const vg_config *cfg, const char *only);

/* Stops and joins the threads, frees the group. NULL is a no-op. */
void consumers_stop(consumer_group *g);

#endif
