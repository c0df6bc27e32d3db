/*
 * status.c — the error registry: one table, looked up by code.
 */
#include "util/status.h"

#include <stdio.h>
#include <string.h>

static const struct {
    int http;
    const char *slug, *title, *name;
} registry[] = {
#define VG_X_ROW(name, http, slug, title) {http, slug, title, #name},
    VG_STATUS_TABLE(VG_X_ROW)
#undef VG_X_ROW
};

static int valid(vg_status s)
{
    return (unsigned)s < VG_STATUS__COUNT;
}

int vg_status_http(vg_status s)
{
    return valid(s) ? registry[s].http : 500;
}

const char *vg_status_slug(vg_status s)
{
    return valid(s) ? registry[s].slug : "internal-error";
}

const char *vg_status_title(vg_status s)
{
    return valid(s) ? registry[s].title : "Internal error";
}

const char *vg_status_name(vg_status s)
{
    return valid(s) ? registry[s].name : "VG_E_UNKNOWN";
}

vg_status vg_fail(vg_error *err, vg_status code, const char *field, const char *fmt, ...)
{
    if (!err)
        return code;
    err->code = code;
    snprintf(err->field, sizeof err->field, "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->detail, sizeof err->detail, fmt, ap);
    va_end(ap);
    return code;
}

vg_status vg_fail_item(vg_error *err, long index, const char *field, const char *detail)
{
    if (!err)
        return VG_E_INVALID;
    if (!err->items)
        err->items = json_array();
    json_array_append_new(err->items,
                          json_pack("{s:I, s:s, s:s}", "index", (json_int_t)index, "field",
                                    field ? field : "", "detail", detail ? detail : ""));
    err->code = VG_E_INVALID;
    return VG_E_INVALID;
}

void vg_error_clear(vg_error *err)
{
    if (!err)
        return;
    json_decref(err->items);
    memset(err, 0, sizeof *err);
}
