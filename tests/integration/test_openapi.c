/*
 * test_openapi.c — openapi.yaml and the routing table describe the same API.
 *
 * The contract is parsed with libyaml (a real YAML parser) and compared with
 * `api_routes` (this test links vigil_core), both ways:
 *
 *   - every route has an operation under its path and method, and every
 *     operation of the spec has a route (paths are written alike: {id});
 *   - each operation's effective security (its own `security`, else the
 *     document's) is empty exactly for the public routes, and names the
 *     bearer scheme otherwise, which must be `type: http, scheme: bearer`;
 *   - `x-vigil-roles` lists exactly the roles the route admits;
 *   - every {name} in a path is declared as a required path parameter (on
 *     the path item or the operation, $ref resolved) and no path parameter
 *     is declared that the path lacks;
 *   - each operation has a 2xx response, and a secured one 401 and 403;
 *   - every "$ref" in the document resolves.
 *
 * Then the running server must serve that very file at GET /openapi.yaml
 * (application/yaml), to a reader's key only.
 */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <yaml.h>

#include "api/api.h"

static const char *const methods[] = {"get",  "put",     "post",  "patch", "delete",
                                      "head", "options", "trace", NULL};

static const struct {
    const char *name;
    unsigned bit;
} role_names[] = {
    {"admin", ROLE_ADMIN},
    {"ingest", ROLE_INGEST},
    {"analyst", ROLE_ANALYST},
    {"auditor", ROLE_AUDITOR},
};

typedef struct spec {
    yaml_document_t doc;
    yaml_node_t *root, *paths, *global_security;
    char *text;
    int problems;
} spec;

static void problem(spec *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(spec *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "openapi.yaml: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    s->problems++;
}

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* The value under `key` in mapping `map`, or NULL. */
static yaml_node_t *get(spec *s, const yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const char *k = scalar(yaml_document_get_node(&s->doc, p->key));
        if (k && strcmp(k, key) == 0)
            return yaml_document_get_node(&s->doc, p->value);
    }
    return NULL;
}

static size_t seq_len(const yaml_node_t *n)
{
    return n && n->type == YAML_SEQUENCE_NODE
               ? (size_t)(n->data.sequence.items.top - n->data.sequence.items.start)
               : 0;
}

static yaml_node_t *seq_at(spec *s, const yaml_node_t *n, size_t i)
{
    return yaml_document_get_node(&s->doc, n->data.sequence.items.start[i]);
}

/* Follows a local "$ref": "#/a/b/c" (one level, as the spec uses them). */
static yaml_node_t *deref(spec *s, yaml_node_t *n)
{
    const char *ref = scalar(get(s, n, "$ref"));
    if (!ref)
        return n;
    if (strncmp(ref, "#/", 2) != 0) {
        problem(s, "non-local $ref %s", ref);
        return NULL;
    }
    char buf[256];
    snprintf(buf, sizeof buf, "%s", ref + 2);
    yaml_node_t *cur = s->root;
    for (char *part = strtok(buf, "/"); part && cur; part = strtok(NULL, "/"))
        cur = get(s, cur, part);
    if (!cur)
        problem(s, "$ref %s points nowhere", ref);
    return cur;
}

static int load(spec *s)
{
    s->text = h_read_file(VIGIL_OPENAPI_YAML);
    if (!s->text)
        return -1;
    yaml_parser_t p;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_string(&p, (const unsigned char *)s->text, strlen(s->text));
    int ok = yaml_parser_load(&p, &s->doc);
    if (!ok)
        fprintf(stderr, "openapi.yaml: YAML error at line %zu: %s\n", p.problem_mark.line + 1,
                p.problem ? p.problem : "?");
    yaml_parser_delete(&p);
    if (!ok)
        return -1;
    s->root = yaml_document_get_root_node(&s->doc);
    s->paths = get(s, s->root, "paths");
    s->global_security = get(s, s->root, "security");
    return s->root && s->paths ? 0 : -1;
}

static void unload(spec *s)
{
    yaml_document_delete(&s->doc);
    free(s->text);
}

static const api_route *route_find(const char *method, const char *pattern)
{
    for (const api_route *r = api_routes; r->method; r++)
        if (strcasecmp(r->method, method) == 0 && strcmp(r->pattern, pattern) == 0)
            return r;
    return NULL;
}

/* Security: the bearer scheme is declared, and named where required. */
static void check_security(spec *s, const api_route *r, yaml_node_t *op)
{
    yaml_node_t *sec = get(s, op, "security");
    if (!sec)
        sec = s->global_security;
    if (!sec || sec->type != YAML_SEQUENCE_NODE) {
        problem(s, "%s %s: no security list (own or global)", r->method, r->pattern);
        return;
    }
    if (r->roles == 0) {
        if (seq_len(sec) != 0)
            problem(s, "%s %s is public in the routing table but the spec demands a key", r->method,
                    r->pattern);
        return;
    }
    int bearer = 0;
    for (size_t i = 0; i < seq_len(sec); i++) {
        yaml_node_t *req = seq_at(s, sec, i);
        if (req->type != YAML_MAPPING_NODE)
            continue;
        for (yaml_node_pair_t *p = req->data.mapping.pairs.start; p < req->data.mapping.pairs.top;
             p++) {
            const char *name = scalar(yaml_document_get_node(&s->doc, p->key));
            yaml_node_t *scheme =
                get(s, get(s, get(s, s->root, "components"), "securitySchemes"), name);
            const char *type = scalar(get(s, scheme, "type"));
            const char *sch = scalar(get(s, scheme, "scheme"));
            if (type && sch && strcmp(type, "http") == 0 && strcasecmp(sch, "bearer") == 0)
                bearer = 1;
            else
                problem(s, "security scheme '%s' is not declared as http bearer", name);
        }
    }
    if (!bearer)
        problem(s, "%s %s needs a key but declares no bearer security", r->method, r->pattern);
}

static void check_roles(spec *s, const api_route *r, yaml_node_t *op)
{
    yaml_node_t *roles = get(s, op, "x-vigil-roles");
    if (!roles || roles->type != YAML_SEQUENCE_NODE) {
        problem(s, "%s %s: no x-vigil-roles list", r->method, r->pattern);
        return;
    }
    unsigned bits = 0;
    for (size_t i = 0; i < seq_len(roles); i++) {
        const char *name = scalar(seq_at(s, roles, i));
        size_t k = 0;
        while (k < 4 && (!name || strcmp(name, role_names[k].name) != 0))
            k++;
        if (k == 4)
            problem(s, "%s %s: unknown role '%s'", r->method, r->pattern, name ? name : "?");
        else
            bits |= role_names[k].bit;
    }
    if (bits != r->roles)
        problem(s, "%s %s: x-vigil-roles says %#x, the routing table admits %#x", r->method,
                r->pattern, bits, r->roles);
}

/* Adds the path parameters declared in `list` (a parameters sequence) to
 * names (space-separated " a b "), checking each is required. */
static void collect_path_params(spec *s, const api_route *r, yaml_node_t *list, char *names,
                                size_t namesz)
{
    for (size_t i = 0; i < seq_len(list); i++) {
        yaml_node_t *p = deref(s, seq_at(s, list, i));
        const char *in = scalar(get(s, p, "in")), *name = scalar(get(s, p, "name"));
        if (!in || strcmp(in, "path") != 0)
            continue;
        const char *req = scalar(get(s, p, "required"));
        if (!req || strcmp(req, "true") != 0)
            problem(s, "%s %s: path parameter %s is not required: true", r->method, r->pattern,
                    name ? name : "?");
        size_t n = strlen(names);
        snprintf(names + n, namesz - n, "%s ", name ? name : "?");
    }
}

static void check_path_params(spec *s, const api_route *r, yaml_node_t *item, yaml_node_t *op)
{
    char declared[512] = " ", want[512] = " ";
    collect_path_params(s, r, get(s, item, "parameters"), declared, sizeof declared);
    collect_path_params(s, r, get(s, op, "parameters"), declared, sizeof declared);
    for (const char *p = strchr(r->pattern, '{'); p; p = strchr(p + 1, '{')) {
        size_t n = strcspn(p + 1, "}"), w = strlen(want);
        snprintf(want + w, sizeof want - w, "%.*s ", (int)n, p + 1);
        char needle[128];
        snprintf(needle, sizeof needle, " %.*s ", (int)n, p + 1);
        if (!strstr(declared, needle))
            problem(s, "%s %s: path parameter {%.*s} is not declared", r->method, r->pattern,
                    (int)n, p + 1);
    }
    for (char *tok = strtok(declared, " "); tok; tok = strtok(NULL, " ")) {
        char needle[128];
        snprintf(needle, sizeof needle, " %s ", tok);
        if (!strstr(want, needle))
            problem(s, "%s %s: declares path parameter '%s' the path does not have", r->method,
                    r->pattern, tok);
    }
}

static void check_responses(spec *s, const api_route *r, yaml_node_t *op)
{
    yaml_node_t *resp = get(s, op, "responses");
    if (!resp || resp->type != YAML_MAPPING_NODE) {
        problem(s, "%s %s: no responses", r->method, r->pattern);
        return;
    }
    int ok2xx = 0;
    for (yaml_node_pair_t *p = resp->data.mapping.pairs.start; p < resp->data.mapping.pairs.top;
         p++) {
        const char *code = scalar(yaml_document_get_node(&s->doc, p->key));
        ok2xx |= code && code[0] == '2';
        if (!deref(s, yaml_document_get_node(&s->doc, p->value)))
            problem(s, "%s %s: response %s unresolved", r->method, r->pattern, code);
    }
    if (!ok2xx)
        problem(s, "%s %s: no 2xx response", r->method, r->pattern);
    if (r->roles && (!get(s, resp, "401") || !get(s, resp, "403")))
        problem(s, "%s %s: a secured operation must document 401 and 403", r->method, r->pattern);
}

/* Every "$ref" anywhere in the document resolves. Returns how many. */
static int check_all_refs(spec *s)
{
    int n = 0;
    for (yaml_node_t *node = s->doc.nodes.start; node < s->doc.nodes.top; node++) {
        if (node->type == YAML_MAPPING_NODE && get(s, node, "$ref")) {
            deref(s, node); /* reports a dangling one */
            n++;
        }
    }
    return n;
}

static void routes_and_spec_agree(void **state)
{
    spec s = {0};
    assert_int_equal(load(&s), 0);
    const char *version = scalar(get(&s, s.root, "openapi"));
    assert_non_null(version);
    assert_int_equal(strncmp(version, "3.1", 3), 0);

    /* Routing table → spec. */
    int nroutes = 0;
    for (const api_route *r = api_routes; r->method; r++, nroutes++) {
        char lower[16];
        size_t i = 0;
        for (; r->method[i] && i + 1 < sizeof lower; i++)
            lower[i] = (char)(r->method[i] | 0x20);
        lower[i] = '\0';
        yaml_node_t *item = get(&s, s.paths, r->pattern), *op = get(&s, item, lower);
        if (!op) {
            problem(&s, "route %s %s is not in the spec", r->method, r->pattern);
            continue;
        }
        check_security(&s, r, op);
        check_roles(&s, r, op);
        check_path_params(&s, r, item, op);
        check_responses(&s, r, op);
    }
    /* Spec → routing table. */
    int nops = 0;
    for (yaml_node_pair_t *p = s.paths->data.mapping.pairs.start;
         p < s.paths->data.mapping.pairs.top; p++) {
        const char *path = scalar(yaml_document_get_node(&s.doc, p->key));
        yaml_node_t *item = yaml_document_get_node(&s.doc, p->value);
        if (!item || item->type != YAML_MAPPING_NODE) {
            problem(&s, "path %s is not a mapping", path);
            continue;
        }
        for (yaml_node_pair_t *q = item->data.mapping.pairs.start; q < item->data.mapping.pairs.top;
             q++) {
            const char *key = scalar(yaml_document_get_node(&s.doc, q->key));
            int is_method = 0;
            for (int m = 0; methods[m]; m++)
                is_method |= strcmp(key, methods[m]) == 0;
            if (!is_method)
                continue;
            nops++;
            if (!route_find(key, path))
                problem(&s, "spec operation %s %s has no route in api_routes", key, path);
        }
    }
    int refs = check_all_refs(&s);
    fprintf(stderr, "openapi: %d routes, %d operations, %d $refs, %d problems\n", nroutes, nops,
            refs, s.problems);
    assert_int_equal(s.problems, 0);
    assert_int_equal(nops, nroutes);
    unload(&s);
}

/* The server serves that very file, to readers only. */
static void served_at_openapi_yaml(void **state)
{
    h_env *env = h_setup(0);
    assert_non_null(env);
    char *file = h_read_file(VIGIL_OPENAPI_YAML);
    assert_non_null(file);
    h_resp r;
    assert_int_equal(h_get(env, env->admin_key, &r, "/openapi.yaml"), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(strncmp(r.content_type, "application/yaml", 16), 0);
    assert_int_equal(r.len, strlen(file));
    assert_memory_equal(r.body, file, r.len);
    h_resp_free(&r);
    assert_int_equal(h_get(env, NULL, &r, "/openapi.yaml"), 0);
    assert_int_equal(r.status, 401);
    h_resp_free(&r);
    char key[256];
    assert_int_equal(h_key_create(env, "ingest", key, sizeof key), 0);
    assert_int_equal(h_get(env, key, &r, "/openapi.yaml"), 0);
    assert_int_equal(r.status, 403);
    h_resp_free(&r);
    free(file);
    h_teardown(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(routes_and_spec_agree),
        cmocka_unit_test(served_at_openapi_yaml),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
