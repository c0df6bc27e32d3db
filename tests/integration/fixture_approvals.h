/*
 * fixture_approvals.h — a change that needs four eyes, made and approved:
 * for tests whose subject is what the change does (a rule's new mode), not
 * the approval itself (test_four_eyes.c).
 *
 * Header-only like fixture_alerts.h. Include after <cmocka.h>.
 */
#ifndef VIGIL_TEST_FIXTURE_APPROVALS_H
#define VIGIL_TEST_FIXTURE_APPROVALS_H

#include "harness.h"

#include <stdio.h>
#include <string.h>

/* PATCHes `path` with `body` as env->admin_key (a proposal: 202), then
 * approves it with a second admin key (created once per env). On success
 * *r is the approval's 200 reply with r->json replaced by the changed
 * resource ("result"); otherwise *r is the first reply that was not 202/200,
 * unchanged, so a test can assert on a refusal. Free r as usual. */
static void fx_approved_patch(h_env *env, const char *path, const char *body, h_resp *r)
{
    static const h_env *checker_env;
    static char checker[256];
    if (checker_env != env) {
        assert_int_equal(h_key_create(env, "admin", checker, sizeof checker), 0);
        checker_env = env;
    }
    assert_int_equal(h_http(env, "PATCH", path, env->admin_key, body, -1, NULL, r), 0);
    if (r->status != 202)
        return;
    char approve[128];
    snprintf(approve, sizeof approve, "/approvals/%s/approve",
             json_string_value(json_object_get(r->json, "id")));
    h_resp_free(r);
    assert_int_equal(h_http(env, "POST", approve, checker, NULL, -1, NULL, r), 0);
    if (r->status != 200)
        return;
    json_t *result = json_incref(json_object_get(r->json, "result"));
    json_decref(r->json);
    r->json = result;
}

#endif
