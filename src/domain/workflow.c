/*
 * workflow.c — allowed transitions, as tables.
 */
#include "domain/workflow.h"

#include <stddef.h>
#include <string.h>

typedef struct {
    const char *from, *to;
} edge;

static const edge alert_edges[] = {
    {"open", "investigating"},
    {"investigating", "closed"},
};

static const edge kyc_edges[] = {
    {"open", "in_progress"},
    {"in_progress", "completed"},
    {"in_progress", "rejected"},
};

static int in_list(const char *s, const char *const *list)
{
    for (; s && *list; list++)
        if (strcmp(s, *list) == 0)
            return 1;
    return 0;
}

static int edge_ok(const edge *edges, size_t n, const char *from, const char *to)
{
    for (size_t i = 0; from && to && i < n; i++)
        if (strcmp(edges[i].from, from) == 0 && strcmp(edges[i].to, to) == 0)
            return 1;
    return 0;
}

int alert_status_valid(const char *s)
{
    static const char *const v[] = {"open", "investigating", "closed", NULL};
    return in_list(s, v);
}

int alert_disposition_valid(const char *s)
{
    static const char *const v[] = {"false_positive", "no_action", "escalated", "sar_filed", NULL};
    return in_list(s, v);
}

int kyc_status_valid(const char *s)
{
    static const char *const v[] = {"open", "in_progress", "completed", "rejected", NULL};
    return in_list(s, v);
}

int alert_transition_ok(const char *from, const char *to)
{
    return edge_ok(alert_edges, sizeof alert_edges / sizeof alert_edges[0], from, to);
}

int kyc_transition_ok(const char *from, const char *to)
{
    return edge_ok(kyc_edges, sizeof kyc_edges / sizeof kyc_edges[0], from, to);
}
