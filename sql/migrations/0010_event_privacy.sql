-- 0010_event_privacy.sql — how much personal data customer events carry.
--
-- Events leave the database: event_log keeps them forever (hash-chained, so
-- they can never be edited away), JetStream, SSE clients and webhook
-- receivers get copies. VIGIL_EVENT_PII=minimal leaves a customer's email
-- and date_of_birth out of aml.customer.created / aml.customer.updated; the
-- API (vigil_customer_json) still returns them. Events are built here, in
-- triggers, so the setting lives in a table: `vigil serve` writes its
-- VIGIL_EVENT_PII into vigil_settings at start (store_settings.c) and the
-- trigger reads it in the same transaction as the change it describes.
-- 'full' until a `vigil serve` says otherwise: the schema changes nothing
-- for an existing deployment by itself.

CREATE TABLE vigil_settings (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id), -- exactly one row
    event_pii  text NOT NULL DEFAULT 'full' CHECK (event_pii IN ('full', 'minimal')),
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO vigil_settings DEFAULT VALUES;

-- The customer as its events carry it: vigil_customer_json without the
-- fields the setting withholds.
CREATE FUNCTION vigil_customer_event_json(c customers) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN (SELECT s.event_pii FROM vigil_settings s) = 'minimal'
                THEN vigil_customer_json(c) - 'email' - 'date_of_birth'
                ELSE vigil_customer_json(c) END
$$;

CREATE OR REPLACE FUNCTION vigil_ev_customer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM vigil_emit('aml.customer.created', NEW.id::text, vigil_customer_event_json(NEW));
    ELSIF (to_jsonb(OLD) - 'updated_at' - 'risk_score' - 'risk_level' - 'risk_version')
          IS DISTINCT FROM
          (to_jsonb(NEW) - 'updated_at' - 'risk_score' - 'risk_level' - 'risk_version') THEN
        -- Risk changes have their own event (aml.customer.risk).
        PERFORM vigil_emit('aml.customer.updated', NEW.id::text, vigil_customer_event_json(NEW));
    END IF;
    RETURN NULL;
END $$;
