-- 0022_webhooks_batch_set_based.sql — the webhooks consumer's batch in
-- one statement instead of three per event.
--
-- 0016 applied a batch in one call, but looped over its events: per event
-- an INSERT into processed_events, a call of vigil_webhook_enqueue (its
-- INSERT into webhook_deliveries, set_config, the statement trigger) and an
-- array append. In benchmark 2 (BENCH_PROFILE=1) that was about 110 us of
-- PostgreSQL time per event, about 7 % of the machine's CPU per
-- transaction. The same effects, set-based, in one statement whose parts
-- are:
--   1. processed_events gets every event of the batch that it did not hold
--      (ON CONFLICT DO NOTHING; an id repeated within the batch counts once,
--      at its first position);
--   2. webhook_deliveries gets one row per active webhook subscribed to
--      each of those events, in batch order, in one INSERT (its statement
--      trigger notifies the delivery workers once);
--   3. an enqueued event missing from event_log is an error, never a silent
--      skip, as in vigil_webhook_enqueue.
-- Returns, per event and in order, true when it was applied now and false
-- when it had been already (a redelivery) or repeats an earlier position.
-- The commit waits for its WAL flush only when something was enqueued (see
-- 0016): synchronous_commit is turned off for this transaction otherwise.
-- When a batch fails, the runner applies its events one per transaction
-- through this same function (a batch of one). 0015's one-event
-- vigil_consume_webhooks and vigil_webhook_enqueue, which this binary no
-- longer calls, stay as they were for an older instance during a rolling
-- upgrade.
CREATE OR REPLACE FUNCTION vigil_consume_webhooks_many(p_consumer text, p_events uuid[],
                                                       p_seqs bigint[], p_types text[])
RETURNS boolean[]
LANGUAGE plpgsql AS $$
DECLARE
    applied boolean[];
    enqueued int;
    missing uuid;
BEGIN
    IF cardinality(p_events) IS DISTINCT FROM cardinality(p_seqs)
       OR cardinality(p_events) IS DISTINCT FROM cardinality(p_types) THEN
        RAISE EXCEPTION 'events, seqs and types differ in length';
    END IF;
    WITH e AS (
        SELECT u.event_id, u.seq, u.event_type, u.ord
        FROM unnest(p_events, p_seqs, p_types) WITH ORDINALITY AS u(event_id, seq, event_type, ord)),
    first AS (
        SELECT DISTINCT ON (e.event_id) e.* FROM e ORDER BY e.event_id, e.ord),
    ins AS (
        INSERT INTO processed_events (consumer, event_id, seq)
        SELECT p_consumer, f.event_id, f.seq FROM first f ORDER BY f.ord
        ON CONFLICT DO NOTHING
        RETURNING event_id),
    fresh AS (
        SELECT f.* FROM first f JOIN ins USING (event_id)),
    dl AS (
        INSERT INTO webhook_deliveries (webhook_id, event_id, seq, event_type)
        SELECT w.id, f.event_id, f.seq, f.event_type
        FROM fresh f JOIN webhooks w
          ON w.active AND vigil_webhook_matches(w.event_types, f.event_type)
        ORDER BY f.ord, w.id
        ON CONFLICT (webhook_id, event_id) DO NOTHING
        RETURNING event_id)
    SELECT (SELECT array_agg(fr.ord IS NOT NULL ORDER BY e.ord)
            FROM e LEFT JOIN fresh fr ON fr.ord = e.ord),
           (SELECT count(*) FROM dl),
           (SELECT d.event_id FROM dl d
            WHERE NOT EXISTS (SELECT 1 FROM event_log l WHERE l.event_id = d.event_id)
            LIMIT 1)
    INTO applied, enqueued, missing;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'event % is not in event_log: nothing to deliver', missing;
    END IF;
    IF enqueued = 0 THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    RETURN coalesce(applied, '{}');
END $$;
