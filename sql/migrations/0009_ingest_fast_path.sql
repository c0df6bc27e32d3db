-- 0009_ingest_fast_path.sql — two costs every ingest transaction paid.
--
-- 1. No NOTIFY from the outbox trigger. A transaction that issued NOTIFY
--    takes a database-wide lock at commit and holds it through its WAL
--    flush, so every writer committed one at a time, one fsync each, with no
--    group commit (bench/ANALYSIS.md). The sequencer is now woken by the
--    process that committed (an in-process kick, or one coalesced
--    `NOTIFY vigil_outbox` sent outside the business transaction when the
--    sequencer runs elsewhere: src/events/wake.c) and still polls as a
--    fallback, so a writer that kicks nobody (plain SQL) delays its events
--    by at most the poll interval and loses none.
DROP TRIGGER outbox_notify ON outbox;
DROP FUNCTION vigil_outbox_notify();

-- 2. vigil_ingest without its temporary table. The ON COMMIT DELETE ROWS
--    table truncated a file at every commit (IO:DataFileTruncate); the items
--    are now read straight from the jsonb argument. Behaviour is unchanged:
--    the whole batch is refused (VG422) when any item names an unknown
--    customer or a currency without a rate; new items are inserted in one
--    statement (idempotent on external_id, the first occurrence in a batch
--    wins), which fires the rule engine and the event trigger once; one row
--    comes back per item, in order. The result is read by a second
--    statement, so it also sees a row a concurrent batch committed with the
--    same external_id (ON CONFLICT waited for it).
CREATE OR REPLACE FUNCTION vigil_ingest(items jsonb)
RETURNS TABLE (idx int, duplicate boolean, tx jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    bad jsonb;
    new_ids text[];
BEGIN
    SELECT jsonb_agg(e ORDER BY (e->>'index')::int) INTO bad FROM (
        SELECT jsonb_build_object('index', x.o - 1, 'field', 'customer_id',
                                  'detail', 'unknown customer ' || (x.i->>'customer_id')) AS e
        FROM jsonb_array_elements(items) WITH ORDINALITY AS x(i, o)
        WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE c.id = (x.i->>'customer_id')::uuid)
        UNION ALL
        SELECT jsonb_build_object('index', x.o - 1, 'field', 'currency',
                                  'detail', 'no exchange rate for currency ' || (x.i->>'currency'))
        FROM jsonb_array_elements(items) WITH ORDINALITY AS x(i, o)
        WHERE NOT EXISTS (SELECT 1 FROM fx_rates f WHERE f.currency = x.i->>'currency')) s;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'VG422', MESSAGE = 'batch refused', DETAIL = bad::text;
    END IF;

    WITH n AS (
        SELECT x.o, x.i->>'external_id' AS external_id, x.i,
               row_number() OVER (PARTITION BY x.i->>'external_id' ORDER BY x.o) = 1 AS is_first
        FROM jsonb_array_elements(items) WITH ORDINALITY AS x(i, o)),
    ins AS (
        INSERT INTO transactions (external_id, customer_id, amount, currency, amount_base,
                                  direction, channel, counterparty_name, counterparty_account,
                                  counterparty_country, occurred_at)
        SELECT n.external_id, (n.i->>'customer_id')::uuid, (n.i->>'amount')::numeric,
               n.i->>'currency', round((n.i->>'amount')::numeric * f.rate_to_base, 4),
               n.i->>'direction', n.i->>'channel', n.i->>'cp_name', n.i->>'cp_account',
               n.i->>'cp_country', (n.i->>'occurred_at')::timestamptz
        FROM n JOIN fx_rates f ON f.currency = n.i->>'currency'
        WHERE n.is_first
        ORDER BY n.o
        ON CONFLICT (external_id) DO NOTHING
        RETURNING external_id)
    SELECT array_agg(external_id) INTO new_ids FROM ins;

    RETURN QUERY
    SELECT (n.o - 1)::int, NOT (n.is_first AND u.external_id IS NOT NULL), vigil_tx_json(t)
    FROM (SELECT x.o, x.i->>'external_id' AS external_id,
                 row_number() OVER (PARTITION BY x.i->>'external_id' ORDER BY x.o) = 1 AS is_first
          FROM jsonb_array_elements(items) WITH ORDINALITY AS x(i, o)) n
    JOIN transactions t ON t.external_id = n.external_id
    LEFT JOIN unnest(new_ids) AS u(external_id) ON u.external_id = n.external_id
    ORDER BY n.o;
END $$;

-- 3. The webhook trigger notified after every INSERT statement on
--    webhook_deliveries, even one that inserted nothing (statement triggers
--    fire for zero rows), so every event the webhooks consumer handled took
--    the same commit-serialising lock. Now only when rows were enqueued.
DROP TRIGGER webhook_deliveries_notify ON webhook_deliveries;
CREATE OR REPLACE FUNCTION vigil_webhook_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM enqueued) THEN
        PERFORM pg_notify('vigil_webhooks', '');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_deliveries_notify AFTER INSERT ON webhook_deliveries
    REFERENCING NEW TABLE AS enqueued
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_webhook_notify();


-- 4. The sequencer's DELETE ... WHERE id IN (SELECT ... LIMIT n FOR UPDATE)
--    became, once PL/pgSQL switched to a generic plan, a scan of the whole
--    outbox per batch: a sequencer that fell behind drained its backlog in
--    quadratic time (found by benchmark 8). `= ANY (ARRAY(subquery))` is an
--    index scan on the primary key whatever the backlog. Otherwise unchanged.
CREATE OR REPLACE FUNCTION vigil_sequence(p_limit int, OUT moved int, OUT last_seq bigint)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v_prev bytea;
    v_seq bigint;
    v_payload jsonb;
    v_hash bytea;
    a_seq bigint[] := '{}';
    a_id uuid[] := '{}';
    a_type text[] := '{}';
    a_subject text[] := '{}';
    a_payload jsonb[] := '{}';
    a_prev bytea[] := '{}';
    a_hash bytea[] := '{}';
BEGIN
    PERFORM pg_advisory_xact_lock(7307100102);
    SELECT e.seq, e.hash INTO v_seq, v_prev FROM event_log e ORDER BY e.seq DESC LIMIT 1;
    v_seq := coalesce(v_seq, 0);
    v_prev := coalesce(v_prev, decode(repeat('00', 32), 'hex'));
    FOR r IN WITH taken AS (
                 DELETE FROM outbox o
                 WHERE o.id = ANY (ARRAY(SELECT id FROM outbox ORDER BY id
                                         LIMIT p_limit FOR UPDATE))
                 RETURNING o.id, o.event_id, o.event_type, o.subject, o.payload)
             SELECT * FROM taken ORDER BY id LOOP
        v_seq := v_seq + 1;
        v_payload := r.payload || jsonb_build_object('seq', v_seq);
        v_hash := vigil_event_hash(v_prev, v_seq, r.event_id, r.event_type, r.subject, v_payload);
        a_seq := a_seq || v_seq;
        a_id := a_id || r.event_id;
        a_type := a_type || r.event_type;
        a_subject := a_subject || r.subject;
        a_payload := a_payload || v_payload;
        a_prev := a_prev || v_prev;
        a_hash := a_hash || v_hash;
        v_prev := v_hash;
    END LOOP;
    INSERT INTO event_log (seq, event_id, event_type, subject, payload, prev_hash, hash)
    SELECT * FROM unnest(a_seq, a_id, a_type, a_subject, a_payload, a_prev, a_hash);
    moved := coalesce(array_length(a_seq, 1), 0);
    last_seq := v_seq;
    IF moved > 0 THEN
        PERFORM pg_notify('vigil_events', last_seq::text);
    END IF;
END $$;
