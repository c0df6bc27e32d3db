/*
 * test_risk.c — the risk model: weights, caps, clamping, thresholds, and the
 * explanation (factor list and JSON) that goes with every score.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "domain/risk.h"

/* A customer with nothing against them: country known and not high-risk,
 * an individual of unknown age, no alerts. */
static risk_input clean(void)
{
    risk_input in = {0};
    in.has_country = 1;
    in.age_years = -1;
    return in;
}

static risk_result score(const risk_input *in)
{
    risk_config cfg;
    risk_config_default(&cfg);
    risk_result r;
    risk_score(&cfg, in, &r);
    return r;
}

/* The contribution of factor `name`, or 0 when it is not listed. */
static int contribution(const risk_result *r, const char *name)
{
    for (int i = 0; i < r->nfactors; i++)
        if (strcmp(r->factors[i].name, name) == 0)
            return r->factors[i].contribution;
    return 0;
}

static const risk_factor *factor(const risk_result *r, const char *name)
{
    for (int i = 0; i < r->nfactors; i++)
        if (strcmp(r->factors[i].name, name) == 0)
            return &r->factors[i];
    fail_msg("factor %s missing", name);
    return NULL;
}

static void test_defaults(void **state)
{
    risk_config cfg = {0, 0};
    risk_config_default(&cfg);
    assert_int_equal(cfg.medium_threshold, 30);
    assert_int_equal(cfg.high_threshold, 60);
}

static void test_baseline_alone_is_low(void **state)
{
    risk_input in = clean();
    risk_result r = score(&in);
    assert_int_equal(r.score, 5);
    assert_int_equal(r.level, RISK_LOW);
    assert_int_equal(r.nfactors, 1);
    assert_string_equal(r.factors[0].name, "baseline");
    assert_int_equal(r.factors[0].contribution, 5);
}

static void test_pep_and_high_risk_country_is_high(void **state)
{
    risk_input in = clean();
    in.pep = 1;
    in.country_high_risk = 1;
    risk_result r = score(&in);
    assert_int_equal(r.score, 70);
    assert_int_equal(r.level, RISK_HIGH);
    assert_int_equal(r.nfactors, 3);
    assert_int_equal(contribution(&r, "pep"), 35);
    assert_int_equal(contribution(&r, "country_high_risk"), 30);
    assert_string_equal(factor(&r, "pep")->detail, "politically exposed person");
    assert_string_equal(factor(&r, "country_high_risk")->detail,
                        "country on the high-risk jurisdiction list");
}

/* Each row: input → score and level under the default thresholds. */
static void test_combinations_and_thresholds(void **state)
{
    static const struct {
        const char *label;
        risk_input in;
        int score;
        risk_level level;
    } cases[] = {
        /* has_country, high_risk, pep, business, age, open, escalated, sar */
        {"no country", {0, 0, 0, 0, -1, 0, 0, 0}, 15, RISK_LOW},
        {"pep only", {1, 0, 1, 0, -1, 0, 0, 0}, 40, RISK_MEDIUM},
        {"high-risk country only", {1, 1, 0, 0, -1, 0, 0, 0}, 35, RISK_MEDIUM},
        {"business, no country", {0, 0, 0, 1, -1, 0, 0, 0}, 25, RISK_LOW},
        {"exactly medium: +young", {0, 0, 0, 1, 20, 0, 0, 0}, 30, RISK_MEDIUM},
        {"age 21 is not young", {0, 0, 0, 1, 21, 0, 0, 0}, 25, RISK_LOW},
        {"age 0 is young", {1, 0, 0, 0, 0, 0, 0, 0}, 10, RISK_LOW},
        {"one open alert", {1, 0, 0, 0, -1, 1, 0, 0}, 10, RISK_LOW},
        {"three open alerts", {1, 0, 0, 0, -1, 3, 0, 0}, 20, RISK_LOW},
        {"open alerts capped", {1, 0, 0, 0, -1, 100, 0, 0}, 25, RISK_LOW},
        {"one escalated", {1, 0, 0, 0, -1, 0, 1, 0}, 15, RISK_LOW},
        {"escalated capped", {1, 0, 0, 0, -1, 0, 9, 0}, 25, RISK_LOW},
        {"sar filed", {1, 0, 0, 0, -1, 0, 0, 1}, 45, RISK_MEDIUM},
        {"three sars count once", {1, 0, 0, 0, -1, 0, 0, 3}, 45, RISK_MEDIUM},
        {"55 is medium", {1, 0, 1, 0, -1, 3, 0, 0}, 55, RISK_MEDIUM},
        {"exactly high", {1, 0, 1, 0, -1, 0, 2, 0}, 60, RISK_HIGH},
        {"sar + open alerts", {1, 0, 0, 0, -1, 4, 0, 1}, 65, RISK_HIGH},
        {"high-risk flag needs a country", {0, 1, 0, 0, -1, 0, 0, 0}, 15, RISK_LOW},
        {"negative counts are zero", {1, 0, 0, 0, -1, -3, -2, -1}, 5, RISK_LOW},
        {"everything clamps to 100", {1, 1, 1, 1, 18, 50, 50, 5}, 100, RISK_HIGH},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        risk_result r = score(&cases[i].in);
        if (r.score != cases[i].score || r.level != cases[i].level)
            fail_msg("%s: score %d level %s, expected %d %s", cases[i].label, r.score,
                     risk_level_name(r.level), cases[i].score, risk_level_name(cases[i].level));
        /* Only factors that moved the score are listed. */
        int sum = 0;
        for (int f = 0; f < r.nfactors; f++) {
            assert_true(r.factors[f].contribution > 0);
            sum += r.factors[f].contribution;
        }
        if (r.score < 100)
            assert_int_equal(sum, r.score);
        else
            assert_true(sum >= 100);
    }
}

static void test_every_factor_at_once(void **state)
{
    risk_input in = {1, 1, 1, 1, 18, 7, 3, 2};
    risk_result r = score(&in);
    assert_int_equal(r.score, 100);
    assert_int_equal(r.nfactors, 8);
    assert_int_equal(contribution(&r, "baseline"), 5);
    assert_int_equal(contribution(&r, "pep"), 35);
    assert_int_equal(contribution(&r, "country_high_risk"), 30);
    assert_int_equal(contribution(&r, "country_unknown"), 0);
    assert_int_equal(contribution(&r, "business"), 10);
    assert_int_equal(contribution(&r, "young_customer"), 5);
    assert_int_equal(contribution(&r, "open_alerts"), 20);
    assert_int_equal(contribution(&r, "escalated_alerts"), 20);
    assert_int_equal(contribution(&r, "sar_filed"), 40);
    assert_string_equal(factor(&r, "open_alerts")->detail, "7 open alerts");
    assert_string_equal(factor(&r, "escalated_alerts")->detail, "3 escalated alerts");
    assert_string_equal(factor(&r, "sar_filed")->detail, "2 suspicious activity reports filed");
}

static void test_details_name_the_reason(void **state)
{
    risk_input in = {0, 0, 0, 0, -1, 1, 1, 1};
    risk_result r = score(&in);
    assert_string_equal(factor(&r, "country_unknown")->detail, "no country known");
    assert_string_equal(factor(&r, "open_alerts")->detail, "1 open alert");
    assert_string_equal(factor(&r, "escalated_alerts")->detail, "1 escalated alert");
    assert_string_equal(factor(&r, "sar_filed")->detail, "1 suspicious activity report filed");
}

static void test_custom_thresholds_and_null_config(void **state)
{
    risk_config cfg = {.medium_threshold = 10, .high_threshold = 20};
    risk_input in = clean();
    risk_result r;
    risk_score(&cfg, &in, &r);
    assert_int_equal(r.level, RISK_LOW); /* 5 */
    in.has_country = 0;
    risk_score(&cfg, &in, &r);
    assert_int_equal(r.level, RISK_MEDIUM); /* 15 */
    in.is_business = 1;
    risk_score(&cfg, &in, &r);
    assert_int_equal(r.level, RISK_HIGH); /* 25 */
    risk_score(NULL, &in, &r);
    assert_int_equal(r.level, RISK_LOW); /* 25 under the defaults */
}

static void test_deterministic(void **state)
{
    risk_input in = {1, 1, 0, 1, 19, 2, 1, 0};
    risk_result a, b;
    memset(&b, 0xA5, sizeof b); /* stale contents must not leak through */
    risk_score(NULL, &in, &a);
    risk_score(NULL, &in, &b);
    assert_memory_equal(&a, &b, sizeof a);
}

static void test_level_names(void **state)
{
    assert_string_equal(risk_level_name(RISK_LOW), "low");
    assert_string_equal(risk_level_name(RISK_MEDIUM), "medium");
    assert_string_equal(risk_level_name(RISK_HIGH), "high");
    assert_string_equal(risk_level_name((risk_level)7), "unknown");
    assert_int_equal(risk_level_parse("low"), RISK_LOW);
    assert_int_equal(risk_level_parse("medium"), RISK_MEDIUM);
    assert_int_equal(risk_level_parse("high"), RISK_HIGH);
    assert_int_equal(risk_level_parse("HIGH"), -1);
    assert_int_equal(risk_level_parse("hi"), -1);
    assert_int_equal(risk_level_parse(""), -1);
    assert_int_equal(risk_level_parse(NULL), -1);
}

static void test_kyc_due_days(void **state)
{
    assert_int_equal(risk_kyc_due_days(RISK_HIGH), 7);
    assert_int_equal(risk_kyc_due_days(RISK_MEDIUM), 14);
    assert_int_equal(risk_kyc_due_days(RISK_LOW), 30);
}

static void test_result_json(void **state)
{
    risk_input in = clean();
    in.pep = 1;
    in.open_alerts = 2;
    risk_result r = score(&in);
    json_t *j = risk_result_json(&r);
    assert_non_null(j);
    assert_int_equal(json_object_size(j), 4);
    assert_int_equal(json_integer_value(json_object_get(j, "score")), 50);
    assert_string_equal(json_string_value(json_object_get(j, "level")), "medium");
    assert_string_equal(json_string_value(json_object_get(j, "model_version")), RISK_MODEL_VERSION);
    json_t *factors = json_object_get(j, "factors");
    assert_true(json_is_array(factors));
    assert_int_equal(json_array_size(factors), 3);
    json_t *f = json_array_get(factors, 1);
    assert_int_equal(json_object_size(f), 3);
    assert_string_equal(json_string_value(json_object_get(f, "name")), "pep");
    assert_int_equal(json_integer_value(json_object_get(f, "contribution")), 35);
    assert_string_equal(json_string_value(json_object_get(f, "detail")),
                        "politically exposed person");
    f = json_array_get(factors, 2);
    assert_string_equal(json_string_value(json_object_get(f, "name")), "open_alerts");
    assert_string_equal(json_string_value(json_object_get(f, "detail")), "2 open alerts");
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_baseline_alone_is_low),
        cmocka_unit_test(test_pep_and_high_risk_country_is_high),
        cmocka_unit_test(test_combinations_and_thresholds),
        cmocka_unit_test(test_every_factor_at_once),
        cmocka_unit_test(test_details_name_the_reason),
        cmocka_unit_test(test_custom_thresholds_and_null_config),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_level_names),
        cmocka_unit_test(test_kyc_due_days),
        cmocka_unit_test(test_result_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
