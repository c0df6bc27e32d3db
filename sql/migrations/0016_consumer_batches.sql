-- 0016_consumer_batches.sql — the webhooks consumer takes many events per
-- transaction.
--
-- It handles every event, and each one was a statement, a commit and a
-- round trip of its own (0015): about a tenth of the CPU of benchmark 2
-- between its backend and its thread. Events reach it in bursts (the
-- publisher sends windows), so it now applies what has arrived, in arrival
-- order, in one statement and one commit. A batch whose statement fails
-- is applied again one event at a time by the runner (src/consumers/
-- consumer.c), so one bad event never holds back the others, and a batch
-- of one is exactly 0015's transaction.
--
-- Returns, per event and in order, true when it was applied now and false
-- when it had been already (a redelivery).
--
-- The commit waits for its WAL flush when any event of the batch enqueued a
-- delivery: losing that row in a crash after JetStream's ack would lose the
-- delivery. vigil_webhook_enqueue turns synchronous_commit off for an event
-- that enqueued nothing, and that setting lasts for the transaction, so it
-- is set back to what it was (the session's: 'on', or a stricter level such
-- as remote_apply) when another event did enqueue.
CREATE FUNCTION vigil_consume_webhooks_many(p_consumer text, p_events uuid[], p_seqs bigint[],
                                            p_types text[])
RETURNS boolean[]
LANGUAGE plpgsql AS $$
DECLARE
    applied boolean[] := '{}';
    enqueued int := 0;
    is_new boolean;
    sync text := current_setting('synchronous_commit');
BEGIN
    IF cardinality(p_events) IS DISTINCT FROM cardinality(p_seqs)
       OR cardinality(p_events) IS DISTINCT FROM cardinality(p_types) THEN
        RAISE EXCEPTION 'events, seqs and types differ in length';
    END IF;
    FOR i IN 1 .. coalesce(cardinality(p_events), 0) LOOP
        INSERT INTO processed_events (consumer, event_id, seq)
        VALUES (p_consumer, p_events[i], p_seqs[i])
        ON CONFLICT DO NOTHING;
        is_new := FOUND;
        IF is_new THEN
            enqueued := enqueued + vigil_webhook_enqueue(p_events[i], p_seqs[i], p_types[i]);
        END IF;
        applied := applied || is_new;
    END LOOP;
    IF enqueued > 0 THEN
        PERFORM set_config('synchronous_commit', sync, true);
    END IF;
    RETURN applied;
END $$;
