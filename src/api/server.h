/*
 * server.h — the HTTP server (libmicrohttpd, epoll, thread pool).
 */
#ifndef VIGIL_API_SERVER_H
#define VIGIL_API_SERVER_H

#include "store/db.h"
#include "util/config.h"
#include "util/status.h"

/* Serves until SIGINT or SIGTERM, then stops accepting, lets in-flight
 * requests finish (up to cfg->shutdown_grace seconds) and returns. The
 * caller must have blocked SIGINT/SIGTERM in every thread (main does). */
vg_status api_server_run(const vg_config *cfg, db_pool *pool, vg_error *err);

#endif
