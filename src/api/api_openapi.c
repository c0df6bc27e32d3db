/*
 * api_openapi.c — GET /openapi.yaml: the API contract (openapi.yaml at the
 * repository root), embedded in the binary at build time
 * (cmake/embed_openapi.cmake), so what a client reads is what this build
 * serves. tests/integration/test_openapi.c keeps the file and the routing
 * table in step.
 *
 * Decision: it needs a reader's key (admin, analyst, auditor), like the
 * other read endpoints; the contract is no secret, but nothing except the
 * health checks and the dashboard's static files is public.
 */
#include "api/api.h"

extern const unsigned char api_openapi_yaml[];
extern const size_t api_openapi_yaml_len;

void api_openapi_get(api_ctx *ctx)
{
    api_reply_bytes(ctx, 200, api_openapi_yaml, api_openapi_yaml_len, "application/yaml");
}
