-- 0026_hit_suppression_inlined.sql — the rule-hit suppression test of 0025
-- is inlined where it is used, as 0025 meant it to be; behaviour is
-- unchanged.
--
-- 0025 put the test in vigil_hit_suppressed(), a boolean SQL function of
-- one SELECT EXISTS (...), and said it was inlined. It is not: PostgreSQL
-- inlines a scalar SQL function only when its body has no sub-select, and
-- EXISTS is one. So every use was a function call with its own executor
-- start-up: the benchmark-1 profile of 2026-11-30 (BENCH_PROFILE=1,
-- pg_stat_user_functions, which counts only calls that were not inlined)
-- showed 47,830 calls in 45 ingest calls of 1,000 transactions, 517 ms in
-- all, of which 190 ms was the probe itself: about 7 ms per ingest call
-- spent on calling.
--
-- A set-returning SQL function (LANGUAGE sql, STABLE, not STRICT, no SET
-- clause) is inlined into the query that selects from it, sub-selects and
-- all; so the test becomes vigil_suppressing_hits(), the rule hits that
-- suppress a new hit, and the two callers ask NOT EXISTS (SELECT 1 FROM
-- vigil_suppressing_hits(...)). Same bounds and the same comparison as
-- 0013 and 0025. tests/integration/test_rules.c checks with EXPLAIN that
-- the function is inlined (no Function Scan on it), so this cannot silently
-- regress again.
--
-- vigil_hit_suppressed is dropped so nothing new uses the slow form; the
-- two PL/pgSQL functions that called it are restated below with the new
-- test and nothing else changed (PL/pgSQL bodies hold no dependency on the
-- functions they call, so the drop does not cascade to them).

CREATE FUNCTION vigil_suppressing_hits(p_rule text, p_mode text, p_customer uuid,
                                       p_start timestamptz, p_end timestamptz)
RETURNS SETOF rule_hits LANGUAGE sql STABLE AS $$
    SELECT x.* FROM rule_hits x
    WHERE x.customer_id = p_customer AND x.rule_id = p_rule
      AND x.window_end > p_start
      AND x.window_end < p_end + (p_end - p_start)
      AND x.mode = p_mode
$$;

-- vigil_record_hits of 0025, its test through vigil_suppressing_hits.
CREATE OR REPLACE FUNCTION vigil_record_hits(p_rule rules, p_hits vigil_rule_hit[]) RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    -- plpgsql rather than sql: its plan is cached for the session, where a
    -- sql function would plan this statement again on every call.
    WITH h AS MATERIALIZED (
        SELECT u.*, CASE WHEN p_rule.mode = 'active' THEN vigil_uuid7() END AS alert_id
        FROM unnest(p_hits) WITH ORDINALITY
             AS u (customer_id, transaction_ids, aggregates, window_start, window_end, ord)
        WHERE u.window_start IS NULL
           OR NOT EXISTS (
                SELECT 1 FROM vigil_suppressing_hits(p_rule.id, p_rule.mode, u.customer_id,
                                                     u.window_start, u.window_end))),
    a AS (
        INSERT INTO alerts (id, customer_id, rule_id, rule_version, params, severity,
                            transaction_ids, aggregates, window_end)
        SELECT h.alert_id, h.customer_id, p_rule.id, p_rule.version, p_rule.params,
               p_rule.severity, h.transaction_ids, h.aggregates, h.window_end
        FROM h WHERE h.alert_id IS NOT NULL
        ORDER BY h.ord)
    INSERT INTO rule_hits (rule_id, rule_version, mode, customer_id, alert_id,
                           transaction_ids, aggregates, window_end)
    SELECT p_rule.id, p_rule.version, p_rule.mode, h.customer_id, h.alert_id,
           h.transaction_ids, h.aggregates, h.window_end
    FROM h ORDER BY h.ord;
END $$;

-- vigil_run_rules of 0025, rapid_movement's pre-check through
-- vigil_suppressing_hits.
CREATE OR REPLACE FUNCTION vigil_run_rules() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r    rules;
    p    jsonb;
    hits vigil_rule_hit[];
BEGIN
    -- A batch made only of duplicates inserts nothing.
    IF NOT EXISTS (SELECT 1 FROM new_tx) THEN
        RETURN NULL;
    END IF;

    -- Serialise rule evaluation per customer. Without this, two concurrent
    -- batches for one customer each see only their own new rows (neither is
    -- committed) and both can miss a pattern that spans them, or both raise
    -- it. The second waits here; in READ COMMITTED each query below then
    -- takes a fresh snapshot and sees the first batch's rows and hits.
    -- Row locks live in the tuples, so the number of customers per batch is
    -- unbounded (advisory locks would exhaust the lock table); sorted to
    -- avoid deadlocks; NO KEY UPDATE does not block the FK checks (KEY SHARE)
    -- of other inserts.
    PERFORM 1 FROM customers c
    WHERE c.id IN (SELECT customer_id FROM new_tx)
    ORDER BY c.id FOR NO KEY UPDATE OF c;

    FOR r IN SELECT * FROM rules WHERE mode <> 'disabled' ORDER BY id LOOP
        p := r.params;
        hits := NULL;
        CASE r.id
        WHEN 'large_cash' THEN
            -- Each cash transaction at or above the CTR threshold.
            SELECT array_agg(ROW(t.customer_id, ARRAY[t.id],
                       jsonb_build_object('amount_base', t.amount_base::text,
                                          'threshold', p->>'threshold'),
                       NULL, t.occurred_at)::vigil_rule_hit
                   ORDER BY t.occurred_at, t.id)
            INTO hits
            FROM new_tx t
            WHERE t.channel = 'cash' AND t.amount_base >= (p->>'threshold')::numeric;

        WHEN 'structuring' THEN
            -- Cash deposits just under the threshold, together reaching it.
            WITH q AS (
                SELECT (p->>'threshold')::numeric AS thr,
                       (p->>'threshold')::numeric * (p->>'lower_pct')::numeric / 100 AS lo,
                       (p->>'min_count')::int AS min_count,
                       (p->>'window_hours')::int * interval '1 hour' AS win),
            latest AS (
                SELECT t.customer_id, max(t.occurred_at) AS wend
                FROM new_tx t, q
                WHERE t.direction = 'in' AND t.channel = 'cash'
                  AND t.amount_base >= q.lo AND t.amount_base < q.thr
                GROUP BY t.customer_id)
            SELECT array_agg(ROW(l.customer_id, w.ids,
                       jsonb_build_object('count', w.n, 'sum', w.s::text,
                                          'window_start', vigil_ts(l.wend - q.win),
                                          'window_end', vigil_ts(l.wend)),
                       l.wend - q.win, l.wend)::vigil_rule_hit
                   ORDER BY l.customer_id)
            INTO hits
            FROM q CROSS JOIN latest l
            CROSS JOIN LATERAL (
                SELECT array_agg(t.id ORDER BY t.occurred_at, t.id) AS ids,
                       count(*) AS n, sum(t.amount_base) AS s
                FROM transactions t
                WHERE t.customer_id = l.customer_id
                  AND t.occurred_at >= l.wend - q.win AND t.occurred_at <= l.wend
                  AND t.direction = 'in' AND t.channel = 'cash'
                  AND t.amount_base >= q.lo AND t.amount_base < q.thr) w
            WHERE w.n >= q.min_count AND w.s >= q.thr;

        WHEN 'velocity' THEN
            -- More than max_count transactions of any kind in the window.
            WITH q AS (
                SELECT (p->>'max_count')::int AS max_count,
                       (p->>'window_minutes')::int * interval '1 minute' AS win),
            latest AS (
                SELECT t.customer_id, max(t.occurred_at) AS wend
                FROM new_tx t GROUP BY t.customer_id)
            SELECT array_agg(ROW(l.customer_id, w.ids,
                       jsonb_build_object('count', w.n,
                                          'window_start', vigil_ts(l.wend - q.win),
                                          'window_end', vigil_ts(l.wend)),
                       l.wend - q.win, l.wend)::vigil_rule_hit
                   ORDER BY l.customer_id)
            INTO hits
            FROM q CROSS JOIN latest l
            CROSS JOIN LATERAL (
                -- Count first: the id list is only built for the few hits.
                SELECT count(*) AS n FROM transactions t
                WHERE t.customer_id = l.customer_id
                  AND t.occurred_at >= l.wend - q.win AND t.occurred_at <= l.wend) c
            CROSS JOIN LATERAL (
                SELECT array_agg(t.id ORDER BY t.occurred_at, t.id) AS ids, count(*) AS n
                FROM transactions t
                WHERE c.n > q.max_count AND t.customer_id = l.customer_id
                  AND t.occurred_at >= l.wend - q.win AND t.occurred_at <= l.wend) w
            WHERE c.n > q.max_count;

        WHEN 'high_risk_jurisdiction' THEN
            -- New transactions touching a listed country, through the
            -- counterparty or the customer: one hit per customer per batch.
            WITH m AS (
                -- The customer's country is looked up per row through the
                -- primary key: a join lets the planner hash all customers.
                SELECT t.customer_id, t.id, t.occurred_at, h.country, h.list
                FROM new_tx t
                CROSS JOIN LATERAL (VALUES (t.counterparty_country),
                    ((SELECT c.country FROM customers c WHERE c.id = t.customer_id))) v (country)
                JOIN high_risk_countries h ON h.country = v.country),
            tx AS (
                SELECT customer_id, array_agg(id ORDER BY occurred_at, id) AS ids,
                       max(occurred_at) AS wend
                FROM (SELECT DISTINCT customer_id, id, occurred_at FROM m) d
                GROUP BY customer_id),
            cl AS (
                SELECT customer_id, array_agg(DISTINCT country::text) AS countries,
                       array_agg(DISTINCT list) AS lists
                FROM m GROUP BY customer_id)
            SELECT array_agg(ROW(tx.customer_id, tx.ids,
                       jsonb_build_object('countries', to_jsonb(cl.countries),
                                          'lists', to_jsonb(cl.lists)),
                       tx.wend - (p->>'window_hours')::int * interval '1 hour',
                       tx.wend)::vigil_rule_hit
                   ORDER BY tx.customer_id)
            INTO hits
            FROM tx JOIN cl USING (customer_id);

        WHEN 'rapid_movement' THEN
            -- Inflows, then outflows taking most of them out again: the
            -- outflows that count are those after the window's first inflow.
            -- Per customer, one index probe finds that first inflow and one
            -- pass over the window sums both sides; the id list is built only
            -- for the hits (0023: this used to be two full passes, the second
            -- with a window function, for every customer passing the cheap
            -- "all outflows" pre-check, which most active customers do).
            -- 0025: a customer whose hit vigil_record_hits would suppress
            -- (a hit of this rule and mode ending inside the overlap its
            -- check uses) is left out before anything is computed for it;
            -- 0026: through vigil_suppressing_hits, the same test as there.
            WITH q AS (
                SELECT (p->>'min_inflow')::numeric AS min_inflow,
                       (p->>'out_pct')::numeric AS out_pct,
                       (p->>'window_hours')::int * interval '1 hour' AS win),
            latest AS (
                SELECT t.customer_id, max(t.occurred_at) AS wend
                FROM new_tx t, q GROUP BY t.customer_id, q.win
                HAVING NOT EXISTS (
                    SELECT 1 FROM vigil_suppressing_hits(r.id, r.mode, t.customer_id,
                                                         max(t.occurred_at) - q.win,
                                                         max(t.occurred_at))))
            SELECT array_agg(ROW(l.customer_id, i.ids,
                       jsonb_build_object('inflow', w.inflow::text, 'outflow', w.outflow::text,
                                          'ratio_pct', round(w.outflow * 100 / w.inflow, 2)::text,
                                          'window_start', vigil_ts(l.wend - q.win),
                                          'window_end', vigil_ts(l.wend)),
                       l.wend - q.win, l.wend)::vigil_rule_hit
                   ORDER BY l.customer_id)
            INTO hits
            FROM q CROSS JOIN latest l
            CROSS JOIN LATERAL (
                SELECT t.occurred_at AS first_in
                FROM transactions t
                WHERE t.customer_id = l.customer_id AND t.direction = 'in'
                  AND t.occurred_at >= l.wend - q.win AND t.occurred_at <= l.wend
                ORDER BY t.occurred_at LIMIT 1) f
            CROSS JOIN LATERAL (
                SELECT sum(t.amount_base) FILTER (WHERE t.direction = 'in') AS inflow,
                       coalesce(sum(t.amount_base) FILTER (WHERE t.direction = 'out'
                                                             AND t.occurred_at > f.first_in), 0)
                           AS outflow,
                       bool_or(t.id IN (SELECT n.id FROM new_tx n))
                           FILTER (WHERE t.direction = 'in' OR t.occurred_at > f.first_in)
                           AS has_new
                FROM transactions t
                WHERE t.customer_id = l.customer_id
                  AND t.occurred_at >= l.wend - q.win AND t.occurred_at <= l.wend) w
            CROSS JOIN LATERAL (
                SELECT array_agg(t.id ORDER BY t.occurred_at, t.id) AS ids
                FROM transactions t
                WHERE w.inflow >= q.min_inflow AND w.outflow * 100 >= q.out_pct * w.inflow
                  AND w.has_new
                  AND t.customer_id = l.customer_id
                  AND t.occurred_at >= l.wend - q.win AND t.occurred_at <= l.wend
                  AND (t.direction = 'in' OR t.occurred_at > f.first_in)) i
            WHERE w.inflow >= q.min_inflow AND w.outflow * 100 >= q.out_pct * w.inflow
              AND w.has_new;

        WHEN 'dormant_reactivation' THEN
            -- A large transaction after a long silence. "Previous" is the
            -- customer's latest earlier transaction in the whole history,
            -- batch included, so the result does not depend on how the
            -- transactions were split into batches (and a reactivation
            -- followed by more activity in the same batch alerts once).
            SELECT array_agg(ROW(t.customer_id, ARRAY[t.id],
                       jsonb_build_object('previous_activity', vigil_ts(pv.occurred_at),
                                          'gap_days', floor(extract(epoch FROM
                                              t.occurred_at - pv.occurred_at) / 86400)::int),
                       NULL, t.occurred_at)::vigil_rule_hit
                   ORDER BY t.occurred_at, t.id)
            INTO hits
            FROM new_tx t
            CROSS JOIN LATERAL (
                SELECT e.occurred_at FROM transactions e
                WHERE e.customer_id = t.customer_id AND e.occurred_at < t.occurred_at
                ORDER BY e.occurred_at DESC LIMIT 1) pv
            WHERE t.amount_base >= (p->>'min_amount')::numeric
              AND pv.occurred_at <= t.occurred_at - (p->>'dormant_days')::int * interval '24 hours';

        WHEN 'round_amounts' THEN
            -- Non-cash transfers that are whole multiples of unit, in their
            -- own currency.
            WITH q AS (
                SELECT (p->>'min_count')::int AS min_count, (p->>'unit')::numeric AS unit,
                       (p->>'window_days')::int * interval '24 hours' AS win),
            latest AS (
                SELECT t.customer_id, max(t.occurred_at) AS wend
                FROM new_tx t, q
                WHERE t.channel <> 'cash' AND t.amount % q.unit = 0
                GROUP BY t.customer_id)
            SELECT array_agg(ROW(l.customer_id, w.ids,
                       jsonb_build_object('count', w.n, 'unit', p->>'unit',
                                          'window_start', vigil_ts(l.wend - q.win),
                                          'window_end', vigil_ts(l.wend)),
                       l.wend - q.win, l.wend)::vigil_rule_hit
                   ORDER BY l.customer_id)
            INTO hits
            FROM q CROSS JOIN latest l
            CROSS JOIN LATERAL (
                SELECT array_agg(t.id ORDER BY t.occurred_at, t.id) AS ids, count(*) AS n
                FROM transactions t
                WHERE t.customer_id = l.customer_id
                  AND t.occurred_at >= l.wend - q.win AND t.occurred_at <= l.wend
                  AND t.channel <> 'cash' AND t.amount % q.unit = 0) w
            WHERE w.n >= q.min_count;
        END CASE;

        IF hits IS NOT NULL THEN
            PERFORM vigil_record_hits(r, hits);
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

DROP FUNCTION vigil_hit_suppressed(text, text, uuid, timestamptz, timestamptz);
