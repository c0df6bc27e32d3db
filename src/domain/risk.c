/*
 * risk.c — the customer risk model (version RISK_MODEL_VERSION).
 *
 * The score is a plain sum of named factors so that every point can be
 * explained to an analyst or an auditor. Factors and weights:
 *
 *   name               points            when
 *   baseline            5                always (no customer is risk-free)
 *   pep                35                politically exposed person
 *   country_high_risk  30                country on the high-risk jurisdiction list
 *   country_unknown    10                no residence/incorporation country known
 *   business           10                customer_type is business
 *   young_customer      5                age known and under 21
 *   open_alerts         5 each, max 20   alerts not yet closed
 *   escalated_alerts   10 each, max 20   alerts closed as escalated
 *   sar_filed          40                at least one SAR filed
 *
 * The total is clamped to 0..100 and mapped to a level by the configured
 * thresholds. A high-risk flag only counts for a known country: without one
 * the customer gets country_unknown instead. Negative counts count as zero.
 * Changing any line of this table means bumping RISK_MODEL_VERSION.
 */
#include "domain/risk.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define W_BASELINE           5
#define W_PEP                35
#define W_COUNTRY_HIGH_RISK  30
#define W_COUNTRY_UNKNOWN    10
#define W_BUSINESS           10
#define W_YOUNG              5
#define YOUNG_BELOW_AGE      21
#define W_OPEN_ALERT         5
#define CAP_OPEN_ALERTS      20
#define W_ESCALATED_ALERT    10
#define CAP_ESCALATED_ALERTS 20
#define W_SAR_FILED          40
#define SCORE_MAX            100

static const char *const level_names[] = {"low", "medium", "high"};

void risk_config_default(risk_config *cfg)
{
    cfg->medium_threshold = 30;
    cfg->high_threshold = 60;
}

/* Records factor `name` when it contributed; a zero contribution is left out
 * so that the explanation lists only what moved the score. */
static void add_factor(risk_result *out, const char *name, int points, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void add_factor(risk_result *out, const char *name, int points, const char *fmt, ...)
{
    if (points <= 0)
        return;
    assert(out->nfactors < RISK_MAX_FACTORS);
    risk_factor *f = &out->factors[out->nfactors++];
    f->name = name;
    f->contribution = points;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->detail, sizeof f->detail, fmt, ap);
    va_end(ap);
    out->score += points;
}

/* `count` items at `each` points, at most `cap` points; negatives are 0. */
static int capped(int count, int each, int cap)
{
    if (count <= 0)
        return 0;
    return count >= cap / each ? cap : count * each;
}

static const char *plural(int n)
{
    return n == 1 ? "" : "s";
}

void risk_score(const risk_config *cfg, const risk_input *in, risk_result *out)
{
    memset(out, 0, sizeof *out);
    add_factor(out, "baseline", W_BASELINE, "baseline for every customer");
    add_factor(out, "pep", in->pep ? W_PEP : 0, "politically exposed person");
    if (in->has_country)
        add_factor(out, "country_high_risk", in->country_high_risk ? W_COUNTRY_HIGH_RISK : 0,
                   "country on the high-risk jurisdiction list");
    else
        add_factor(out, "country_unknown", W_COUNTRY_UNKNOWN, "no country known");
    add_factor(out, "business", in->is_business ? W_BUSINESS : 0, "business customer");
    add_factor(out, "young_customer",
               in->age_years >= 0 && in->age_years < YOUNG_BELOW_AGE ? W_YOUNG : 0,
               "young customer (under %d)", YOUNG_BELOW_AGE);
    add_factor(out, "open_alerts", capped(in->open_alerts, W_OPEN_ALERT, CAP_OPEN_ALERTS),
               "%d open alert%s", in->open_alerts, plural(in->open_alerts));
    add_factor(out, "escalated_alerts",
               capped(in->escalated_alerts, W_ESCALATED_ALERT, CAP_ESCALATED_ALERTS),
               "%d escalated alert%s", in->escalated_alerts, plural(in->escalated_alerts));
    add_factor(out, "sar_filed", in->sar_filed > 0 ? W_SAR_FILED : 0,
               "%d suspicious activity report%s filed", in->sar_filed, plural(in->sar_filed));

    if (out->score > SCORE_MAX)
        out->score = SCORE_MAX;
    risk_config defaults;
    if (!cfg) {
        risk_config_default(&defaults);
        cfg = &defaults;
    }
    if (out->score >= cfg->high_threshold)
        out->level = RISK_HIGH;
    else if (out->score >= cfg->medium_threshold)
        out->level = RISK_MEDIUM;
    else
        out->level = RISK_LOW;
}

const char *risk_level_name(risk_level level)
{
    return (unsigned)level <= RISK_HIGH ? level_names[level] : "unknown";
}

int risk_level_parse(const char *name)
{
    for (int i = RISK_LOW; name && i <= RISK_HIGH; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

json_t *risk_result_json(const risk_result *r)
{
    json_t *factors = json_array();
    for (int i = 0; i < r->nfactors; i++) {
        const risk_factor *f = &r->factors[i];
        json_array_append_new(factors, json_pack("{s:s, s:i, s:s}", "name", f->name, "contribution",
                                                 f->contribution, "detail", f->detail));
    }
    /* "o" steals the reference to `factors`, also when packing fails. */
    return json_pack("{s:i, s:s, s:s, s:o}", "score", r->score, "level", risk_level_name(r->level),
                     "model_version", RISK_MODEL_VERSION, "factors", factors);
}

int risk_kyc_due_days(risk_level level)
{
    switch (level) {
    case RISK_HIGH:
        return 7;
    case RISK_MEDIUM:
        return 14;
    case RISK_LOW:
    default:
        return 30;
    }
}
