/*
 * cli_demo.c — `vigil demo seed`: a believable book of customers and a few
 * weeks of their transactions, with one planted case for every built-in
 * monitoring rule, so that a fresh installation (and its dashboard) has
 * something to look at.
 *
 * Deterministic: a splitmix64 generator seeded by --seed draws every name,
 * country, amount and time. Times are offsets back from the start of the
 * current UTC hour, so two runs with one seed produce the same data shifted
 * to "now". Customers carry external_id demo-S-cN and transactions
 * demo-S-tN, so re-running a seed inserts nothing twice.
 *
 * Customers go in through customers_create (scored, onboarding KYC tasks:
 * what POST /customers does); transactions through the importer
 * (import.h), the path `vigil import transactions` takes. Background
 * activity stays clear of every rule (amounts with cents, small cash, no
 * bursts); the planted patterns are:
 *
 *   large_cash              one cash deposit of 12,000-25,000
 *   structuring             three or four cash deposits of 9,100-9,900 in 20 h
 *   velocity                25 card payments within 50 minutes
 *   high_risk_jurisdiction  a wire to a counterparty in a FATF-listed country
 *   rapid_movement          a 20,000+ wire in, 97 % wired out 6 h later
 *   dormant_reactivation    a card payment 200+ days ago, then an 8,000+ wire
 *   round_amounts           three or four wires of whole thousands in 5 days
 *
 * The importer's batch is flushed right after each planted pattern: window
 * rules judge the window ending at the customer's latest transaction of the
 * batch, and the pattern must be that end. Rules changed with PATCH /rules
 * (higher thresholds, disabled) may of course not fire.
 */
#include "cli/cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/import.h"
#include "domain/timeparse.h"
#include "store/db.h"
#include "store/store_customers.h"

#define DEMO_CMD "demo seed"
#define HOUR     3600LL
#define DAY      86400LL

enum pattern {
    P_NONE,
    P_LARGE_CASH,
    P_STRUCTURING,
    P_VELOCITY,
    P_HIGH_RISK,
    P_RAPID,
    P_DORMANT,
    P_ROUND,
    P_COUNT
};

static const char *const first_names[] = {
    "Amelia", "Liam", "Sofia", "Noah",  "Mia",    "Lucas", "Hannah", "Mateo", "Chloe", "Jonas",
    "Elena",  "Omar", "Yuki",  "Priya", "Daniel", "Ines",  "Tomasz", "Aisha", "Lars",  "Grace",
};
static const char *const last_names[] = {
    "Schmidt", "Okafor", "Rossi", "Dubois", "Tanaka", "Nowak",  "Garcia", "Jensen",  "Kowalski",
    "Haddad",  "Silva",  "Brown", "Müller", "Novak",  "Larsen", "Costa",  "Ivanova", "Patel",
};
static const char *const company_words[] = {"Harbor",  "Summit",   "Northwind", "Bluebell",
                                            "Granite", "Meridian", "Cedar",     "Atlas"};
static const char *const company_kinds[] = {"Trading Ltd", "Logistics GmbH", "Imports LLC",
                                            "Holdings SA", "Consulting BV"};
static const char *const safe_countries[] = {"US", "GB", "DE", "FR", "NL",
                                             "CA", "CH", "SE", "IE", "ES"};
static const char *const risky_countries[] = {"IR", "KP", "MM", "SY", "YE", "VE"};
static const char *const merchants[] = {"Corner Grocery", "City Transit",      "Fuel Stop",
                                        "Bookshop",       "Pharmacy",          "Cafe Aroma",
                                        "Hardware Depot", "Online Marketplace"};

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t next(rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. */
static long long between(rng *r, long long lo, long long hi)
{
    return lo + (long long)(next(r) % (uint64_t)(hi - lo + 1));
}

#define PICK(r, arr) (arr[next(r) % (sizeof arr / sizeof arr[0])])

typedef struct demo {
    rng r;
    long long seed;
    int64_t end;   /* epoch seconds: start of the current UTC hour */
    int64_t start; /* end - days */
    long long ntx; /* transactions generated so far (external ids) */
    importer *im;
    vg_error err;
    vg_status st;
} demo;

/* Queues one transaction. `cents` is the amount in minor units. */
static void tx(demo *d, const char *cust, int64_t at, long long cents, const char *dir,
               const char *channel, const char *cp_name, const char *cp_country)
{
    if (d->st != VG_OK)
        return;
    char ext[64], amount[32], when[32];
    snprintf(ext, sizeof ext, "demo-%lld-t%lld", d->seed, ++d->ntx);
    snprintf(amount, sizeof amount, "%lld.%02lld", cents / 100, cents % 100);
    time_t t = (time_t)at;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "external_id", ext, "customer_id",
                          cust, "amount", amount, "currency", "USD", "direction", dir, "channel",
                          channel, "occurred_at", when);
    if (cp_name || cp_country) {
        json_t *cp = json_object();
        if (cp_name)
            json_object_set_new(cp, "name", json_string(cp_name));
        if (cp_country)
            json_object_set_new(cp, "country", json_string(cp_country));
        json_object_set_new(o, "counterparty", cp);
    }
    d->st = importer_add(d->im, (long)d->ntx, o, NULL, 0, &d->err);
    json_decref(o);
}

/* Cents that are never a whole unit: background amounts avoid round_amounts. */
static long long odd_cents(rng *r, long long lo_units, long long hi_units)
{
    return between(r, lo_units, hi_units) * 100 + between(r, 1, 99);
}

/* Ordinary life, from `from` to `to`: card spending, a monthly salary or
 * invoice payments, occasional small cash. Stays under every threshold. */
static void background(demo *d, const char *cust, int business, int64_t from, int64_t to)
{
    rng *r = &d->r;
    long long payday = between(r, 0, 29); /* day of the 30-day cycle */
    for (int64_t day = from - from % DAY; day < to; day += DAY) {
        int n = (int)between(r, 0, 2);
        for (int i = 0; i < n; i++) {
            int64_t at = day + between(r, 8 * HOUR, 21 * HOUR);
            if (at < from || at >= to)
                continue;
            tx(d, cust, at, odd_cents(r, 3, business ? 900 : 180), "out", "card",
               PICK(r, merchants), "US");
        }
        if (between(r, 0, 9) == 0) {
            int64_t at = day + between(r, 10 * HOUR, 16 * HOUR);
            if (at >= from && at < to)
                tx(d, cust, at, odd_cents(r, 20, 600), "in", "cash", NULL, NULL);
        }
        if (((day - d->start) / DAY % 30 + 30) % 30 == payday) {
            int64_t at = day + 9 * HOUR;
            if (at >= from && at < to)
                tx(d, cust, at, odd_cents(r, 1800, 4200), "in", "ach",
                   business ? "Client Payments" : "Employer Payroll", "US");
        }
    }
}

/* The planted pattern, starting at `at`. */
static void plant(demo *d, const char *cust, enum pattern p, int64_t at)
{
    rng *r = &d->r;
    switch (p) {
    case P_LARGE_CASH:
        tx(d, cust, at, odd_cents(r, 12000, 25000), "in", "cash", NULL, NULL);
        break;
    case P_STRUCTURING: {
        int n = (int)between(r, 3, 4);
        for (int i = 0; i < n; i++)
            tx(d, cust, at + i * 5 * HOUR + between(r, 0, 3000), odd_cents(r, 9100, 9899), "in",
               "cash", NULL, NULL);
        break;
    }
    case P_VELOCITY:
        for (int i = 0; i < 25; i++)
            tx(d, cust, at + i * 120, odd_cents(r, 10, 60), "out", "card", PICK(r, merchants),
               "US");
        break;
    case P_HIGH_RISK:
        tx(d, cust, at, odd_cents(r, 3000, 7000), "out", "wire", "Trans-Gulf Commodities",
           PICK(r, risky_countries));
        break;
    case P_RAPID: {
        long long in = odd_cents(r, 20000, 40000);
        tx(d, cust, at, in, "in", "wire", "Unknown Remitter", "GB");
        tx(d, cust, at + 6 * HOUR, in * 97 / 100, "out", "wire", "Offshore Holdings", "CH");
        break;
    }
    case P_DORMANT:
        tx(d, cust, at, odd_cents(r, 8000, 15000), "in", "wire", "Old Account Transfer", "US");
        break;
    case P_ROUND: {
        int n = (int)between(r, 3, 4);
        for (int i = 0; i < n; i++)
            tx(d, cust, at + i * DAY + between(r, 0, 4 * HOUR), between(r, 1, 9) * 100000, "out",
               "wire", "Consulting Partners", "NL");
        break;
    }
    default:
        break;
    }
}

static int usage_error(const char *msg, const char *arg)
{
    return cli_usage_error(
        DEMO_CMD, "vigil demo seed [--customers N (>= 7)] [--days D (>= 7)] [--seed S]", msg, arg);
}

int cli_demo_seed(const vg_config *cfg, int argc, char **argv)
{
    long long ncust = 50, days = 30, seed = 1;
    for (int i = 0; i < argc; i++) {
        long long *dst = NULL, lo = 0, hi = 0;
        if (strcmp(argv[i], "--customers") == 0)
            dst = &ncust, lo = 7, hi = 100000;
        else if (strcmp(argv[i], "--days") == 0)
            dst = &days, lo = 7, hi = 3650;
        else if (strcmp(argv[i], "--seed") == 0)
            dst = &seed, lo = 0, hi = INT64_MAX;
        if (!dst || i + 1 >= argc)
            return usage_error("unexpected argument ", argv[i]);
        char *end;
        *dst = strtoll(argv[++i], &end, 10);
        if (*end || *dst < lo || *dst > hi)
            return usage_error("value out of range: ", argv[i]);
    }
    demo d = {.r = {(uint64_t)seed}, .seed = seed};
    d.end = now_epoch_us() / 1000000 / HOUR * HOUR;
    d.start = d.end - days * DAY;
    vg_error err = {0};
    PGconn *db = db_connect(cfg->database_url, (int)cfg->db_connect_timeout, &err);
    if (!db)
        return cli_fail(DEMO_CMD, &err);
    risk_config rc = {.medium_threshold = (int)cfg->risk_medium,
                      .high_threshold = (int)cfg->risk_high};
    d.im = importer_new(db, 1000, NULL, 0);
    long long created = 0, existing = 0;
    int64_t t0 = cli_now_ms();
    int rcode = CLI_OK;
    for (long long c = 0; c < ncust && d.st == VG_OK; c++) {
        customer_input in = {0};
        /* The first seven carry one pattern each; then about one in ten. */
        enum pattern p = c < P_COUNT - 1            ? (enum pattern)(c + 1)
                         : between(&d.r, 0, 9) == 0 ? (enum pattern)between(&d.r, 1, P_COUNT - 1)
                                                    : P_NONE;
        int business = between(&d.r, 0, 6) == 0;
        in.has_full_name = 1;
        if (business)
            snprintf(in.full_name, sizeof in.full_name, "%s %s", PICK(&d.r, company_words),
                     PICK(&d.r, company_kinds));
        else
            snprintf(in.full_name, sizeof in.full_name, "%s %s", PICK(&d.r, first_names),
                     PICK(&d.r, last_names));
        in.has_email = 1;
        snprintf(in.email, sizeof in.email, "customer%lld.%lld@demo.example", c + 1, seed);
        in.has_country = 1;
        snprintf(in.country, sizeof in.country, "%s",
                 between(&d.r, 0, 19) == 0 ? PICK(&d.r, risky_countries)
                                           : PICK(&d.r, safe_countries));
        in.has_customer_type = 1;
        snprintf(in.customer_type, sizeof in.customer_type, "%s",
                 business ? "business" : "individual");
        if (!business) {
            in.has_date_of_birth = 1;
            snprintf(in.date_of_birth, sizeof in.date_of_birth, "%04lld-%02lld-%02lld",
                     between(&d.r, 1950, 2004), between(&d.r, 1, 12), between(&d.r, 1, 28));
        }
        in.has_pep = 1;
        in.pep = between(&d.r, 0, 29) == 0;
        in.has_external_id = 1;
        snprintf(in.external_id, sizeof in.external_id, "demo-%lld-c%lld", seed, c + 1);
        char *out = NULL;
        int dup = 0;
        if (customers_create(db, &in, &rc, "vigil demo seed", &out, &dup, &err) != VG_OK) {
            rcode = cli_fail(DEMO_CMD, &err);
            break;
        }
        json_t *j = json_loads(out, 0, NULL);
        free(out);
        char id[40];
        snprintf(id, sizeof id, "%s", json_string_value(json_object_get(j, "id")));
        json_decref(j);
        dup ? existing++ : created++;

        /* The pattern lands at a random time at least two days before the
         * end; activity before it, then a flush, then activity after. The
         * three quiet days before it keep ordinary inflows (a salary) out of
         * the pattern's window, where they would dilute rapid_movement. */
        int64_t at =
            d.start + between(&d.r, 2 * DAY, (days - 3) * DAY) + between(&d.r, 0, 23) * HOUR;
        if (p == P_DORMANT) {
            /* Quiet for 200+ days before the reactivation. */
            tx(&d, id, d.start - between(&d.r, 200, 260) * DAY, odd_cents(&d.r, 20, 90), "out",
               "card", PICK(&d.r, merchants), "US");
        } else {
            background(&d, id, business, d.start, p == P_NONE ? d.end : at - 3 * DAY);
        }
        if (p != P_NONE) {
            plant(&d, id, p, at);
            if (d.st == VG_OK)
                d.st = importer_flush(d.im, &d.err);
            background(&d, id, business, at + 2 * DAY, d.end);
        }
    }
    if (d.st == VG_OK)
        d.st = importer_flush(d.im, &d.err);
    const import_stats s = *importer_stats(d.im);
    importer_free(d.im);
    if (d.st != VG_OK && rcode == CLI_OK)
        rcode = cli_fail(DEMO_CMD, &d.err);
    printf("demo seed %lld: customers %lld created, %lld already there; transactions %lld "
           "imported, %lld already there, %lld rejected; %.1f s\n",
           seed, created, existing, s.imported, s.duplicates, s.rejected,
           (double)(cli_now_ms() - t0) / 1000.0);
    if (rcode == CLI_OK) {
        /* What the rules made of it: alerts per rule on demo customers. */
        char pat[48];
        snprintf(pat, sizeof pat, "demo-%lld-c", seed);
        const char *p[] = {pat};
        PGresult *r = db_exec(db,
                              "SELECT r.id, count(a.id) FROM rules r LEFT JOIN (alerts a JOIN"
                              " customers c ON c.id = a.customer_id AND starts_with(c.external_id,"
                              " $1)) ON a.rule_id = r.id GROUP BY r.id ORDER BY r.id",
                              1, p, &err);
        if (r) {
            printf("alerts by rule:");
            for (int i = 0; i < PQntuples(r); i++)
                printf(" %s %s%s", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                       i + 1 < PQntuples(r) ? "," : "\n");
            PQclear(r);
        } else {
            rcode = cli_fail(DEMO_CMD, &err);
        }
    }
    if (s.rejected && rcode == CLI_OK)
        rcode = CLI_FAILED; /* a generator bug: said loudly */
    PQfinish(db);
    vg_error_clear(&err);
    vg_error_clear(&d.err);
    return rcode;
}
