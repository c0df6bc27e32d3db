-- 0003_events.sql — one JSON representation per entity, and the triggers
-- that write a CloudEvent to the outbox for every domain change.
--
-- The API returns the same vigil_*_json() documents that events carry, so a
-- consumer and an API client never see two shapes of one thing.

-- STABLE, not IMMUTABLE: to_char is STABLE, and a mislabelled function
-- cannot be inlined (2.8x slower per call; it is in every event).
CREATE FUNCTION vigil_ts(t timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

CREATE FUNCTION vigil_customer_json(c customers) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', c.id, 'external_id', c.external_id, 'full_name', c.full_name,
        'email', c.email, 'country', c.country,
        'date_of_birth', to_char(c.date_of_birth, 'YYYY-MM-DD'),
        'customer_type', c.customer_type, 'pep', c.pep,
        'risk', jsonb_build_object('score', c.risk_score, 'level', c.risk_level,
                                   'version', c.risk_version),
        'created_at', vigil_ts(c.created_at), 'updated_at', vigil_ts(c.updated_at))
$$;

CREATE FUNCTION vigil_risk_json(r risk_assessments) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'customer_id', r.customer_id, 'version', r.version, 'score', r.score,
        'level', r.level, 'factors', r.factors, 'model_version', r.model_version,
        'reason', r.reason, 'actor', r.actor, 'assessed_at', vigil_ts(r.created_at))
$$;

CREATE FUNCTION vigil_kyc_json(k kyc_tasks) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', k.id, 'customer_id', k.customer_id, 'kind', k.kind, 'reason', k.reason,
        'status', k.status, 'due_at', vigil_ts(k.due_at), 'note', k.note,
        'actor', k.actor, 'created_at', vigil_ts(k.created_at),
        'updated_at', vigil_ts(k.updated_at))
$$;

CREATE FUNCTION vigil_tx_json(t transactions) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', t.id, 'external_id', t.external_id, 'customer_id', t.customer_id,
        'amount', t.amount::text, 'currency', t.currency,
        'amount_base', t.amount_base::text, 'direction', t.direction,
        'channel', t.channel,
        'counterparty', CASE WHEN t.counterparty_name IS NULL
                              AND t.counterparty_account IS NULL
                              AND t.counterparty_country IS NULL THEN NULL
                        ELSE jsonb_build_object('name', t.counterparty_name,
                                                'account', t.counterparty_account,
                                                'country', t.counterparty_country) END,
        'occurred_at', vigil_ts(t.occurred_at), 'ingested_at', vigil_ts(t.ingested_at))
$$;

CREATE FUNCTION vigil_alert_json(a alerts) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', a.id, 'customer_id', a.customer_id, 'rule_id', a.rule_id,
        'rule_version', a.rule_version, 'params', a.params, 'severity', a.severity,
        'transaction_ids', to_jsonb(a.transaction_ids), 'aggregates', a.aggregates,
        'window_end', vigil_ts(a.window_end),
        'status', a.status, 'disposition', a.disposition, 'note', a.note,
        'actor', a.actor, 'created_at', vigil_ts(a.created_at),
        'updated_at', vigil_ts(a.updated_at))
$$;

CREATE FUNCTION vigil_rule_json(r rules) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', r.id, 'name', r.name, 'description', r.description, 'params', r.params,
        'version', r.version, 'mode', r.mode, 'severity', r.severity,
        'updated_at', vigil_ts(r.updated_at), 'updated_by', r.updated_by)
$$;

-- The CloudEvents 1.0 envelope (the sequencer adds "seq" later).
CREATE FUNCTION vigil_cloudevent(p_id uuid, p_type text, p_subject text, p_data jsonb)
RETURNS jsonb LANGUAGE sql VOLATILE AS $$
    SELECT jsonb_build_object(
        'specversion', '1.0', 'id', p_id, 'source', '/vigil', 'type', p_type,
        'subject', p_subject, 'time', vigil_ts(clock_timestamp()),
        'datacontenttype', 'application/json', 'data', p_data)
$$;

-- Writes one event per row of (subject, data); used by every trigger below.
--
-- Event ids in the set-based triggers below: gen_random_uuid() must run once
-- per row. `FROM new_rows r, LATERAL gen_random_uuid() AS e` does not: the
-- call is uncorrelated, so the planner evaluates it once for the statement
-- and every row of a batch gets the same event_id (a unique violation that
-- fails the whole batch). Hence `LATERAL (SELECT r.id, gen_random_uuid())`,
-- which refers to the row and is evaluated for each, or a call in the select
-- list of a grouped subquery (once per group).
CREATE FUNCTION vigil_emit(p_type text, p_subject text, p_data jsonb) RETURNS void
LANGUAGE sql VOLATILE AS $$
    INSERT INTO outbox (event_id, event_type, subject, payload)
    SELECT e, p_type, p_subject, vigil_cloudevent(e, p_type, p_subject, p_data)
    FROM gen_random_uuid() AS e
$$;

-- customers ---------------------------------------------------------------
CREATE FUNCTION vigil_ev_customer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM vigil_emit('aml.customer.created', NEW.id::text, vigil_customer_json(NEW));
    ELSIF (to_jsonb(OLD) - 'updated_at' - 'risk_score' - 'risk_level' - 'risk_version')
          IS DISTINCT FROM
          (to_jsonb(NEW) - 'updated_at' - 'risk_score' - 'risk_level' - 'risk_version') THEN
        -- Risk changes have their own event (aml.customer.risk).
        PERFORM vigil_emit('aml.customer.updated', NEW.id::text, vigil_customer_json(NEW));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER customers_events AFTER INSERT OR UPDATE ON customers
    FOR EACH ROW EXECUTE FUNCTION vigil_ev_customer();

CREATE FUNCTION vigil_ev_risk() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM vigil_emit('aml.customer.risk', NEW.customer_id::text, vigil_risk_json(NEW));
    RETURN NULL;
END $$;
CREATE TRIGGER risk_events AFTER INSERT ON risk_assessments
    FOR EACH ROW EXECUTE FUNCTION vigil_ev_risk();

-- KYC tasks: one aml.kyc.tasks.created per customer per statement ---------
CREATE FUNCTION vigil_ev_kyc_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (event_id, event_type, subject, payload)
    SELECT g.e, 'aml.kyc.tasks.created', g.customer_id::text,
           vigil_cloudevent(g.e, 'aml.kyc.tasks.created', g.customer_id::text,
                            jsonb_build_object('customer_id', g.customer_id, 'tasks', g.tasks))
    FROM (SELECT customer_id, jsonb_agg(vigil_kyc_json(n) ORDER BY n.created_at, n.kind) AS tasks,
                 gen_random_uuid() AS e
          FROM new_tasks n GROUP BY customer_id) g;
    RETURN NULL;
END $$;
CREATE TRIGGER kyc_created_events AFTER INSERT ON kyc_tasks
    REFERENCING NEW TABLE AS new_tasks FOR EACH STATEMENT EXECUTE FUNCTION vigil_ev_kyc_created();

CREATE FUNCTION vigil_ev_kyc_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM vigil_emit('aml.kyc.task.updated', NEW.id::text,
                       vigil_kyc_json(NEW) || jsonb_build_object('previous_status', OLD.status));
    RETURN NULL;
END $$;
CREATE TRIGGER kyc_updated_events AFTER UPDATE ON kyc_tasks
    FOR EACH ROW EXECUTE FUNCTION vigil_ev_kyc_updated();

-- transactions: set-based, one statement for a whole batch -----------------
CREATE FUNCTION vigil_ev_tx() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (event_id, event_type, subject, payload)
    SELECT g.e, 'aml.transaction.ingested', t.id::text,
           vigil_cloudevent(g.e, 'aml.transaction.ingested', t.id::text, vigil_tx_json(t))
    FROM new_tx t, LATERAL (SELECT t.id, gen_random_uuid() AS e) AS g;
    RETURN NULL;
END $$;
CREATE TRIGGER tx_events AFTER INSERT ON transactions
    REFERENCING NEW TABLE AS new_tx FOR EACH STATEMENT EXECUTE FUNCTION vigil_ev_tx();

-- alerts ------------------------------------------------------------------
CREATE FUNCTION vigil_ev_alert_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (event_id, event_type, subject, payload)
    SELECT g.e, 'aml.alert.created', a.id::text,
           vigil_cloudevent(g.e, 'aml.alert.created', a.id::text, vigil_alert_json(a))
    FROM new_alerts a, LATERAL (SELECT a.id, gen_random_uuid() AS e) AS g;
    RETURN NULL;
END $$;
CREATE TRIGGER alert_created_events AFTER INSERT ON alerts
    REFERENCING NEW TABLE AS new_alerts FOR EACH STATEMENT EXECUTE FUNCTION vigil_ev_alert_created();

CREATE FUNCTION vigil_ev_alert_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM vigil_emit('aml.alert.updated', NEW.id::text,
                       vigil_alert_json(NEW) || jsonb_build_object('previous_status', OLD.status));
    RETURN NULL;
END $$;
CREATE TRIGGER alert_updated_events AFTER UPDATE ON alerts
    FOR EACH ROW EXECUTE FUNCTION vigil_ev_alert_updated();

-- rules -------------------------------------------------------------------
CREATE FUNCTION vigil_ev_rule() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM vigil_emit('aml.rule.changed', NEW.id::text,
                       vigil_rule_json(NEW) || jsonb_build_object(
                           'previous', jsonb_build_object('version', OLD.version,
                                                          'mode', OLD.mode, 'params', OLD.params)));
    RETURN NULL;
END $$;
CREATE TRIGGER rule_events AFTER UPDATE ON rules
    FOR EACH ROW EXECUTE FUNCTION vigil_ev_rule();

-- The customer as the API shows it: the row, its latest risk assessment
-- (with factors) and its KYC tasks.
CREATE FUNCTION vigil_customer_detail(p_id uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT vigil_customer_json(c)
        || jsonb_build_object(
               'risk', coalesce((SELECT vigil_risk_json(r) - 'customer_id' FROM risk_assessments r
                                 WHERE r.customer_id = c.id ORDER BY r.version DESC LIMIT 1),
                                jsonb_build_object('score', c.risk_score, 'level', c.risk_level)),
               'kyc_tasks', coalesce((SELECT jsonb_agg(vigil_kyc_json(k) ORDER BY k.created_at, k.kind)
                                      FROM kyc_tasks k WHERE k.customer_id = c.id), '[]'))
    FROM customers c WHERE c.id = p_id
$$;
