-- 0001_core.sql — Vigil's source of truth: keys, reference data, customers,
-- risk history, KYC tasks, transactions and the transactional outbox.
--
-- Events are written by triggers (see 0003_events.sql), so no code path can
-- change a business row without writing its event in the same transaction.

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name         text NOT NULL,
    role         text NOT NULL CHECK (role IN ('admin', 'ingest', 'analyst', 'auditor')),
    key_hash     bytea NOT NULL UNIQUE,          -- SHA-256 of the whole key
    key_prefix   text NOT NULL,                  -- first characters, to recognise a key in lists
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz
);

-- Exchange rates into the base currency (USD by default). Rules compare
-- amounts in the base currency; an unknown currency is refused at ingest.
CREATE TABLE fx_rates (
    currency     char(3) PRIMARY KEY CHECK (currency ~ '^[A-Z]{3}$'),
    rate_to_base numeric(20, 10) NOT NULL CHECK (rate_to_base > 0),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO fx_rates (currency, rate_to_base) VALUES
    ('USD', 1), ('EUR', 1.08), ('GBP', 1.27), ('CHF', 1.13), ('JPY', 0.0067),
    ('CAD', 0.73), ('AUD', 0.66), ('NZD', 0.60), ('SEK', 0.095), ('NOK', 0.093),
    ('DKK', 0.145), ('PLN', 0.25), ('CZK', 0.043), ('HUF', 0.0027), ('SGD', 0.74),
    ('HKD', 0.128), ('CNY', 0.138), ('INR', 0.012), ('BRL', 0.18), ('MXN', 0.055),
    ('ZAR', 0.054), ('AED', 0.2723), ('SAR', 0.2667), ('TRY', 0.029), ('KWD', 3.25),
    ('BHD', 2.65), ('NGN', 0.00065), ('KES', 0.0077), ('ILS', 0.27), ('KRW', 0.00072);

-- High-risk jurisdictions, editable. Seeded with the FATF lists as published
-- in October 2024: "black" = call for action, "grey" = increased monitoring.
CREATE TABLE high_risk_countries (
    country  char(2) PRIMARY KEY CHECK (country ~ '^[A-Z]{2}$'),
    list     text NOT NULL CHECK (list IN ('fatf_black', 'fatf_grey', 'custom')),
    added_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO high_risk_countries (country, list) VALUES
    ('KP', 'fatf_black'), ('IR', 'fatf_black'), ('MM', 'fatf_black'),
    ('DZ', 'fatf_grey'), ('AO', 'fatf_grey'), ('BG', 'fatf_grey'), ('BF', 'fatf_grey'),
    ('CM', 'fatf_grey'), ('CI', 'fatf_grey'), ('HR', 'fatf_grey'), ('CD', 'fatf_grey'),
    ('HT', 'fatf_grey'), ('KE', 'fatf_grey'), ('LB', 'fatf_grey'), ('ML', 'fatf_grey'),
    ('MC', 'fatf_grey'), ('MZ', 'fatf_grey'), ('NA', 'fatf_grey'), ('NG', 'fatf_grey'),
    ('PH', 'fatf_grey'), ('SN', 'fatf_grey'), ('ZA', 'fatf_grey'), ('SS', 'fatf_grey'),
    ('SY', 'fatf_grey'), ('TZ', 'fatf_grey'), ('VE', 'fatf_grey'), ('VN', 'fatf_grey'),
    ('YE', 'fatf_grey');

CREATE TABLE customers (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    external_id   text UNIQUE,
    full_name     text NOT NULL CHECK (length(full_name) > 0),
    email         text,
    country       char(2),
    date_of_birth date,
    customer_type text NOT NULL DEFAULT 'individual'
                  CHECK (customer_type IN ('individual', 'business')),
    pep           boolean NOT NULL DEFAULT false,
    risk_score    int NOT NULL DEFAULT 0 CHECK (risk_score BETWEEN 0 AND 100),
    risk_level    text NOT NULL DEFAULT 'low' CHECK (risk_level IN ('low', 'medium', 'high')),
    risk_version  int NOT NULL DEFAULT 0,   -- bumps with every assessment; never goes back
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- Keyset pagination walks (created_at, id).
CREATE INDEX customers_page ON customers (created_at, id);

CREATE TABLE risk_assessments (
    id            bigserial PRIMARY KEY,
    customer_id   uuid NOT NULL REFERENCES customers (id),
    version       int NOT NULL,
    score         int NOT NULL CHECK (score BETWEEN 0 AND 100),
    level         text NOT NULL CHECK (level IN ('low', 'medium', 'high')),
    factors       jsonb NOT NULL,
    model_version text NOT NULL,
    reason        text NOT NULL,
    actor         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (customer_id, version)
);

CREATE TABLE kyc_tasks (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id uuid NOT NULL REFERENCES customers (id),
    kind        text NOT NULL CHECK (kind IN ('identity_verification', 'address_verification',
                    'sanctions_pep_screening', 'source_of_funds', 'source_of_wealth',
                    'senior_management_approval')),
    reason      text NOT NULL CHECK (reason IN ('onboarding', 'enhanced_due_diligence')),
    status      text NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'in_progress', 'completed', 'rejected')),
    due_at      timestamptz NOT NULL,
    note        text,
    actor       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX kyc_tasks_customer ON kyc_tasks (customer_id);
CREATE INDEX kyc_tasks_page ON kyc_tasks (created_at, id);

CREATE TABLE transactions (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    external_id          text NOT NULL UNIQUE,
    customer_id          uuid NOT NULL REFERENCES customers (id),
    amount               numeric NOT NULL CHECK (amount > 0 AND scale(amount) <= 4),
    currency             char(3) NOT NULL REFERENCES fx_rates (currency),
    amount_base          numeric(26, 4) NOT NULL,  -- amount × fx rate, for rules
    direction            text NOT NULL CHECK (direction IN ('in', 'out')),
    channel              text NOT NULL
                         CHECK (channel IN ('cash', 'wire', 'card', 'ach', 'crypto', 'other')),
    counterparty_name    text,
    counterparty_account text,
    counterparty_country char(2),
    occurred_at          timestamptz NOT NULL,
    ingested_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transactions_customer_time ON transactions (customer_id, occurred_at);
CREATE INDEX transactions_page ON transactions (ingested_at, id);

-- The transactional outbox: every domain event, written in the same
-- transaction as its change. `id` orders events inside one transaction;
-- commit order across transactions is the sequencer's job (never read this
-- table with id > last_seen: sequence values commit out of order).
CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    event_id   uuid NOT NULL UNIQUE,
    event_type text NOT NULL,
    subject    text NOT NULL,
    payload    jsonb NOT NULL,           -- the CloudEvent, without seq
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
