-- 0004_rule_engine.sql — the transaction monitoring rules, set-based.
--
-- vigil_ingest() inserts a whole batch (up to 10,000 rows) with one INSERT,
-- so the rules run once per statement over the transition table new_tx, not
-- once per row. Each rule is one query that looks only at the customers of the
-- batch, through index range scans on transactions (customer_id, occurred_at);
-- the rest of the history is never scanned. Windows are measured on
-- occurred_at (business time), so a late-arriving transaction is judged
-- against the activity around it, not around its ingest.
--
-- A rule query returns its hits as a vigil_rule_hit[]; vigil_record_hits()
-- is the one place that applies suppression and writes rule_hits (every mode)
-- and alerts (active mode only). Alerts go in with one INSERT per rule, so
-- their statement trigger emits aml.alert.created for all of them, after the
-- aml.transaction.ingested events: "tx_events" < "tx_rules", and statement
-- triggers fire in name order.
--
-- Window rules (structuring, velocity, high_risk_jurisdiction, rapid_movement,
-- round_amounts) are evaluated once per customer per batch, for the window
-- ending at the customer's latest new qualifying transaction. Per-transaction
-- rules (large_cash, dormant_reactivation) give one hit per transaction.
-- Every hit contains at least one transaction of the batch.

-- The engine implements exactly these rules; a rules row without code here
-- would be silently ignored, so it cannot exist.
ALTER TABLE rules ADD CONSTRAINT rules_implemented CHECK (id IN (
    'large_cash', 'structuring', 'velocity', 'high_risk_jurisdiction',
    'rapid_movement', 'dormant_reactivation', 'round_amounts'));
ALTER TABLE rule_hits ADD CONSTRAINT rule_hits_mode CHECK (mode IN ('active', 'shadow'));

-- One match of one rule. window_start is NULL for per-transaction rules (no
-- suppression); for window rules it is window_end minus the rule's window.
CREATE TYPE vigil_rule_hit AS (
    customer_id     uuid,
    transaction_ids uuid[],       -- sorted by occurred_at
    aggregates      jsonb,
    window_start    timestamptz,
    window_end      timestamptz   -- latest contributing occurred_at
);

-- Records the hits of rule p_rule, which was evaluated in its current mode.
-- Suppression: a window hit is dropped when a hit of the same rule, customer
-- and mode already covers an overlapping window ([window_end - L, window_end]
-- with L this hit's window length), so a structuring pattern that keeps
-- growing raises one alert, while an unrelated older pattern imported later
-- still raises its own. rule_hits (customer_id, rule_id, window_end) serves
-- the lookup. Alert ids are drawn up front so that each rule_hits row can
-- point at its alert inside the same statement.
CREATE FUNCTION vigil_record_hits(p_rule rules, p_hits vigil_rule_hit[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- plpgsql rather than sql: its plan is cached for the session, where a
    -- sql function would plan this statement again on every call.
    WITH h AS MATERIALIZED (
        SELECT u.*, CASE WHEN p_rule.mode = 'active' THEN gen_random_uuid() END AS alert_id
        FROM unnest(p_hits) WITH ORDINALITY
             AS u (customer_id, transaction_ids, aggregates, window_start, window_end, ord)
        WHERE u.window_start IS NULL
           OR NOT EXISTS (
                SELECT 1 FROM rule_hits x
                WHERE x.customer_id = u.customer_id AND x.rule_id = p_rule.id
                  AND x.window_end > u.window_start
                  AND x.window_end < u.window_end + (u.window_end - u.window_start)
                  AND x.mode = p_rule.mode)),
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

-- The statement trigger. Parameters come from rules.params (amounts are
-- decimal strings compared as numeric against amount_base, never float).
-- PATCH /rules must validate them: a value that does not cast aborts the
-- ingest here, which is loud, rather than silently skipping the rule.
CREATE FUNCTION vigil_run_rules() RETURNS trigger
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
            -- Inflows, then outflows taking most of them out again.
            WITH q AS (
                SELECT (p->>'min_inflow')::numeric AS min_inflow,
                       (p->>'out_pct')::numeric AS out_pct,
                       (p->>'window_hours')::int * interval '1 hour' AS win),
            latest AS (
                SELECT t.customer_id, max(t.occurred_at) AS wend
                FROM new_tx t GROUP BY t.customer_id)
            SELECT array_agg(ROW(l.customer_id, w.ids,
                       jsonb_build_object('inflow', w.inflow::text, 'outflow', w.outflow::text,
                                          'ratio_pct', round(w.outflow * 100 / w.inflow, 2)::text,
                                          'window_start', vigil_ts(l.wend - q.win),
                                          'window_end', vigil_ts(l.wend)),
                       l.wend - q.win, l.wend)::vigil_rule_hit
                   ORDER BY l.customer_id)
            INTO hits
            FROM q CROSS JOIN latest l
            CROSS JOIN LATERAL (
                -- Cheap necessary condition first (all outflows in the
                -- window); the exact evaluation runs only for candidates.
                SELECT sum(t.amount_base) FILTER (WHERE t.direction = 'in') AS inflow,
                       sum(t.amount_base) FILTER (WHERE t.direction = 'out') AS outflow
                FROM transactions t
                WHERE t.customer_id = l.customer_id
                  AND t.occurred_at >= l.wend - q.win AND t.occurred_at <= l.wend) c
            CROSS JOIN LATERAL (
                SELECT sum(x.amount_base) FILTER (WHERE x.direction = 'in') AS inflow,
                       coalesce(sum(x.amount_base) FILTER (WHERE x.direction = 'out'), 0)
                           AS outflow,
                       array_agg(x.id ORDER BY x.occurred_at, x.id) AS ids,
                       bool_or(x.id IN (SELECT n.id FROM new_tx n)) AS has_new
                FROM (SELECT t.id, t.occurred_at, t.direction, t.amount_base,
                             min(t.occurred_at) FILTER (WHERE t.direction = 'in') OVER ()
                                 AS first_in
                      FROM transactions t
                      WHERE c.inflow >= q.min_inflow AND c.outflow * 100 >= q.out_pct * c.inflow
                        AND t.customer_id = l.customer_id
                        AND t.occurred_at >= l.wend - q.win AND t.occurred_at <= l.wend) x
                WHERE x.direction = 'in' OR x.occurred_at > x.first_in) w
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

CREATE TRIGGER tx_rules AFTER INSERT ON transactions
    REFERENCING NEW TABLE AS new_tx FOR EACH STATEMENT EXECUTE FUNCTION vigil_run_rules();
