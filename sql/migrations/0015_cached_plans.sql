-- 0015_cached_plans.sql — statements that were planned again on every call.
--
-- PL/pgSQL caches each statement's plan for the session, but for the first
-- five executions, and whenever the generic plan looks costlier than the
-- custom ones seen so far, it plans anew with the call's values. Benchmark 2
-- (BENCH_PROFILE=1, pg_stat_statements with track_planning) found three
-- statements on the ingest and consumer paths planned on (nearly) every
-- call, together about a tenth of PostgreSQL's time there. And the
-- webhooks consumer gets its one-statement transaction (4). Behaviour is
-- unchanged.

-- 1. vigil_record_hits: with the hits array as a constant the planner knows
-- it holds one or two elements; the generic plan assumes ten, so it always
-- looked costlier and every call was planned again (0.48 ms of planning for
-- 0.40 ms of execution, on nearly every ingest, since some rule hits in most
-- batches). Both plans are the same index probes of rule_hits per hit, so
-- the generic one is forced.
ALTER FUNCTION vigil_record_hits(rules, vigil_rule_hit[]) SET plan_cache_mode = force_generic_plan;

-- 2. vigil_emit: a LANGUAGE sql function that is not inlined (it inserts) is
-- planned on every call in PostgreSQL 15; in PL/pgSQL its plan is cached.
-- The risk consumer emits through it once per changed assessment.
CREATE OR REPLACE FUNCTION vigil_emit(p_type text, p_subject text, p_data jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO outbox (event_id, event_type, subject, payload)
    SELECT e, p_type, p_subject, vigil_cloudevent(e, p_type, p_subject, p_data)
    FROM vigil_uuid7() AS e;
END $$;

-- 3. vigil_webhook_enqueue's guard `n > 0 AND NOT EXISTS (...)`: with n = 0
-- known the custom plan is "false", always cheaper than the generic one, so
-- the guard was planned on every event. Nested, the existence check is
-- planned only when something was enqueued. Otherwise unchanged from 0014.
CREATE OR REPLACE FUNCTION vigil_webhook_enqueue(p_event uuid, p_seq bigint, p_type text)
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    n int;
BEGIN
    INSERT INTO webhook_deliveries (webhook_id, event_id, seq, event_type)
    SELECT w.id, p_event, p_seq, p_type FROM webhooks w
    WHERE w.active AND vigil_webhook_matches(w.event_types, p_type)
    ON CONFLICT (webhook_id, event_id) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = 0 THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    ELSIF NOT EXISTS (SELECT 1 FROM event_log WHERE event_id = p_event) THEN
        RAISE EXCEPTION 'event % is not in event_log: nothing to deliver', p_event;
    END IF;
    RETURN n;
END $$;

-- 4. The webhooks consumer's whole transaction in one statement. It handles
-- every event, and spent four round trips on each (BEGIN, the
-- processed_events row, vigil_webhook_enqueue, COMMIT), each a wake-up of
-- both processes; now one call in one implicit transaction does the same.
-- false: the event was already processed (a redelivery), nothing done.
CREATE FUNCTION vigil_consume_webhooks(p_consumer text, p_event uuid, p_seq bigint, p_type text)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO processed_events (consumer, event_id, seq) VALUES (p_consumer, p_event, p_seq)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM vigil_webhook_enqueue(p_event, p_seq, p_type);
    RETURN true;
END $$;
