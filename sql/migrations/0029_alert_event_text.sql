-- 0029_alert_event_text.sql — alert events written as JSON text, like the
-- transaction events of 0027; behaviour is unchanged.
--
-- Why. An alert's event was vigil_cloudevent(vigil_alert_json(a)): two
-- jsonb trees, the alert's with its transaction ids turned into a jsonb
-- array and its params and aggregates copied in, sorted, serialised, then
-- printed again when the outbox column (json since 0027) took it. In
-- benchmark 1 about one transaction in eleven raises an alert (a call
-- with 189 spent 16.6 ms on their events, auto_explain), so this is a
-- small part of an ingest call; it is done for the same single rendering
-- as 0027 and because a burst of alerts is where it counts. Measured in
-- psql on 1,000 alerts of the benchmark's rules (five runs): 46-83 ms for
-- the jsonb events, 29-44 ms as text; 26-61 ms for vigil_alert_json
-- alone, 20-31 ms for the text.
--
-- vigil_alert_json_text(a) writes the alert by concatenation as 0027 does
-- the transaction: ids, numbers and timestamps need no escaping, strings
-- go through to_json(), params and aggregates are jsonb printed as they
-- are, transaction_ids through array_to_json(), and the three nullable
-- columns (disposition, note, actor) become null when NULL. The other
-- columns are NOT NULL. vigil_alert_json(a), what the API returns and what
-- aml.alert.updated carries, is that text cast to jsonb: one rendering.
-- tests/integration/test_rules.c compares both with the jsonb_build_object
-- of 0003, kept in the test as the reference.

CREATE FUNCTION vigil_alert_json_text(a alerts) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT concat(
        '{"id":"', a.id, '","customer_id":"', a.customer_id, '","rule_id":', to_json(a.rule_id),
        ',"rule_version":', a.rule_version, ',"params":', a.params,
        ',"severity":', to_json(a.severity),
        ',"transaction_ids":', array_to_json(a.transaction_ids),
        ',"aggregates":', a.aggregates, ',"window_end":"', vigil_ts(a.window_end),
        '","status":', to_json(a.status),
        ',"disposition":', coalesce(to_json(a.disposition)::text, 'null'),
        ',"note":', coalesce(to_json(a.note)::text, 'null'),
        ',"actor":', coalesce(to_json(a.actor)::text, 'null'),
        ',"created_at":"', vigil_ts(a.created_at),
        '","updated_at":"', vigil_ts(a.updated_at), '"}')
$$;

CREATE OR REPLACE FUNCTION vigil_alert_json(a alerts) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT vigil_alert_json_text(a)::jsonb
$$;

CREATE OR REPLACE FUNCTION vigil_ev_alert_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (event_id, event_type, subject, payload)
    SELECT g.e, 'aml.alert.created', a.id::text,
           vigil_cloudevent_text(g.e, 'aml.alert.created', a.id::text, vigil_alert_json_text(a))
    FROM new_alerts a, LATERAL (SELECT a.id, vigil_uuid7() AS e) AS g;
    RETURN NULL;
END $$;
