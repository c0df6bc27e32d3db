/*
 * web_assets.h — the dashboard's files (web/), embedded into the binary at
 * build time by cmake/embed_web.cmake, served by api_ui.c.
 */
#ifndef VIGIL_API_WEB_ASSETS_H
#define VIGIL_API_WEB_ASSETS_H

#include <stddef.h>

typedef struct web_asset {
    const char *name;         /* "app.js": the file name inside web/ */
    const char *content_type; /* "text/javascript; charset=utf-8" */
    const char *etag;         /* strong ETag, quoted: "\"3f9a…\"" */
    const unsigned char *data;
    size_t len;
} web_asset;

/* Generated: every file of web/, ending with a NULL name. */
extern const web_asset web_assets[];

#endif
