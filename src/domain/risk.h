/*
 * risk.h — the customer risk model: pure, explainable, configurable.
 *
 * A score 0..100 is the sum of named factors, each with its weight, clamped.
 * Thresholds turn the score into a level. Every factor that contributed is
 * reported so an analyst (and an auditor) can see why a customer is high risk.
 * RISK_MODEL_VERSION changes whenever a weight or factor changes.
 */
#ifndef VIGIL_DOMAIN_RISK_H
#define VIGIL_DOMAIN_RISK_H

#include <jansson.h>

#define RISK_MODEL_VERSION "2026.11-1"
#define RISK_MAX_FACTORS   12

typedef enum { RISK_LOW = 0, RISK_MEDIUM = 1, RISK_HIGH = 2 } risk_level;

typedef struct risk_config {
    int medium_threshold; /* score >= this → medium (default 30) */
    int high_threshold;   /* score >= this → high   (default 60) */
} risk_config;

/* What the model looks at. The caller gathers it (some from the database). */
typedef struct risk_input {
    int has_country;       /* residence/incorporation country known */
    int country_high_risk; /* country on the high-risk jurisdiction list */
    int pep;               /* politically exposed person */
    int is_business;       /* customer_type == business */
    int age_years;         /* -1 when date of birth unknown */
    int open_alerts;       /* alerts not yet closed */
    int escalated_alerts;  /* alerts closed as escalated */
    int sar_filed;         /* alerts closed with a SAR filed */
} risk_input;

typedef struct risk_factor {
    const char *name; /* stable identifier, e.g. "pep" (static string) */
    int contribution; /* points added to the score */
    char detail[96];  /* for a person: "politically exposed person" */
} risk_factor;

typedef struct risk_result {
    int score; /* 0..100 */
    risk_level level;
    int nfactors;
    risk_factor factors[RISK_MAX_FACTORS];
} risk_result;

/* Defaults: medium 30, high 60. */
void risk_config_default(risk_config *cfg);

/* Scores `in` under `cfg` (NULL: the defaults) into `out`. Deterministic; no
 * I/O. The factor table is in risk.c. */
void risk_score(const risk_config *cfg, const risk_input *in, risk_result *out);

/* "low" | "medium" | "high". */
const char *risk_level_name(risk_level level);

/* Parses a level name; returns -1 when unknown. */
int risk_level_parse(const char *name);

/* {"score", "level", "model_version", "factors": [{"name","contribution","detail"}]}
 * New reference; caller owns it. */
json_t *risk_result_json(const risk_result *r);

/* Days until a KYC task is due for a customer at `level`: high 7, medium 14,
 * low 30. */
int risk_kyc_due_days(risk_level level);

#endif
