-- 0002_alerts_rules.sql — monitoring rules as data, alerts, and rule hits.
--
-- A rule is a row: parameters (jsonb), a version bumped on every change, and
-- a mode: active (raises alerts), shadow (records hits only) or disabled.
-- The rule logic itself runs set-based in a statement-level trigger on
-- transactions (0004_rule_engine.sql).

CREATE TABLE rules (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    description text NOT NULL,
    params      jsonb NOT NULL,
    version     int NOT NULL DEFAULT 1,
    mode        text NOT NULL DEFAULT 'active' CHECK (mode IN ('active', 'shadow', 'disabled')),
    severity    text NOT NULL DEFAULT 'medium' CHECK (severity IN ('low', 'medium', 'high')),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text
);

INSERT INTO rules (id, name, severity, description, params) VALUES
  ('large_cash', 'Large cash transaction (CTR)', 'medium',
   'A cash transaction at or above the currency transaction report threshold, in the base currency.',
   '{"threshold": "10000"}'),
  ('structuring', 'Structuring', 'high',
   'At least min_count cash deposits within window_hours, each between lower_pct % and 100 % of the CTR threshold, together at or above it.',
   '{"threshold": "10000", "lower_pct": 90, "min_count": 3, "window_hours": 24}'),
  ('velocity', 'High velocity', 'medium',
   'More than max_count transactions within window_minutes.',
   '{"max_count": 20, "window_minutes": 60}'),
  ('high_risk_jurisdiction', 'High-risk jurisdiction', 'high',
   'The customer or the counterparty is in a country on the high-risk jurisdiction list.',
   '{"window_hours": 24}'),
  ('rapid_movement', 'Rapid movement of funds', 'high',
   'Inflows of at least min_inflow followed by outflows of at least out_pct % of them within window_hours.',
   '{"min_inflow": "5000", "out_pct": 90, "window_hours": 48}'),
  ('dormant_reactivation', 'Dormant account reactivation', 'medium',
   'A transaction of at least min_amount after no activity for dormant_days or more.',
   '{"dormant_days": 180, "min_amount": "5000"}'),
  ('round_amounts', 'Round-amount transfers', 'low',
   'At least min_count non-cash transfers that are whole multiples of unit within window_days.',
   '{"min_count": 3, "unit": "1000", "window_days": 7}');

CREATE TABLE alerts (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id     uuid NOT NULL REFERENCES customers (id),
    rule_id         text NOT NULL REFERENCES rules (id),
    rule_version    int NOT NULL,
    params          jsonb NOT NULL,          -- the parameters in force when it fired
    severity        text NOT NULL,
    transaction_ids uuid[] NOT NULL,         -- contributing transactions
    aggregates      jsonb NOT NULL,          -- what the rule computed
    window_end      timestamptz NOT NULL,    -- latest contributing occurred_at
    status          text NOT NULL DEFAULT 'open'
                    CHECK (status IN ('open', 'investigating', 'closed')),
    disposition     text CHECK (disposition IN ('false_positive', 'no_action', 'escalated', 'sar_filed')),
    note            text,
    actor           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'closed') = (disposition IS NOT NULL))
);
CREATE INDEX alerts_customer ON alerts (customer_id, rule_id, window_end);
CREATE INDEX alerts_page ON alerts (created_at, id);
CREATE INDEX alerts_status ON alerts (status, created_at);

-- Every evaluation that matched, in any mode. Shadow hits have no alert.
CREATE TABLE rule_hits (
    id              bigserial PRIMARY KEY,
    rule_id         text NOT NULL REFERENCES rules (id),
    rule_version    int NOT NULL,
    mode            text NOT NULL,
    customer_id     uuid NOT NULL REFERENCES customers (id),
    alert_id        uuid REFERENCES alerts (id),
    transaction_ids uuid[] NOT NULL,
    aggregates      jsonb NOT NULL,
    window_end      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rule_hits_rule ON rule_hits (rule_id, created_at);
CREATE INDEX rule_hits_customer ON rule_hits (customer_id, rule_id, window_end);
