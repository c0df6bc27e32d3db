-- 0027_event_text.sql — transaction events are written as JSON text, and
-- the sequencer adds "seq" to that text instead of rebuilding a jsonb.
--
-- Why. Every ingested transaction writes one aml.transaction.ingested
-- event. Its payload was built as jsonb (vigil_cloudevent(vigil_tx_json(t))):
-- two jsonb_build_object calls whose binary trees are sorted and
-- serialised, then stored in the outbox as jsonb. The sequencer then read
-- it back, concatenated a jsonb {"seq": n} onto it (deserialise, merge,
-- serialise again), rendered the result as text for the hash and parsed
-- that text once more as json for event_log (0021). Benchmark 1's profile
-- (2026-11-30, auto_explain, 1,000 transactions per call) showed the
-- event's INSERT at 25-40 ms of an ingest call of 130-200 ms. Measured
-- here on 1,000 benchmark transactions (psql, five interleaved runs,
-- medians): building and storing the events 32 ms as jsonb, 19 ms as
-- text; the sequencer's per-event step 15.5 ms as jsonb, 9.8 ms as text.
--
-- What changes.
-- - outbox.payload is json (text kept as written) instead of jsonb. The
--   other events still build jsonb; the assignment cast renders it as text
--   on INSERT, the same text the sequencer used to render.
-- - vigil_tx_json_text(t) renders a transaction as JSON text by
--   concatenation: uuids, numerics and timestamps are written as strings
--   whose characters need no escaping; every other text goes through
--   to_json(), which escapes it as JSON requires, and a NULL becomes null.
--   vigil_tx_json(t), the jsonb the API returns, is now that text cast to
--   jsonb, so the event and the API cannot disagree on a transaction (one
--   rendering, not two; the same cost as before, measured: 17 ms per 1,000
--   either way). The key order of the event's text is the order written
--   here; the API's jsonb orders keys its own way, as it always did.
-- - vigil_cloudevent_text() is vigil_cloudevent() producing text, and the
--   ::json at its end validates what the concatenation built, so a bug
--   here fails the transaction's INSERT instead of storing bad JSON.
-- - vigil_sequence() puts "seq" first, by text: '{"seq":n,' and the rest
--   of the stored text after its opening brace, for every payload whose
--   text starts with a member ('{"'), which is every event Vigil writes.
--   Another object (empty, or with spaces first) is merged through jsonb
--   as before; a payload that is not an object (never written by Vigil)
--   stops the sequencer with an error naming the event.
--
-- The chain is unchanged in kind: the hash covers the stored text, as
-- since 0021, and `vigil audit verify` recomputes it from the stored text.
-- Events already in event_log keep their text. New events' key order
-- differs from the old jsonb order ("seq" first, then the envelope in
-- CloudEvents order); JSON consumers do not depend on key order, and the
-- README says nothing about it.
--
-- vigil_sequence(int), kept for an older instance during a rolling upgrade
-- (0021), is restated reading the json payload as jsonb; otherwise as in
-- 0009.

ALTER TABLE outbox ALTER COLUMN payload TYPE json USING payload::text::json;

CREATE FUNCTION vigil_tx_json_text(t transactions) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT concat(
        '{"id":"', t.id, '","external_id":', to_json(t.external_id),
        ',"customer_id":"', t.customer_id, '","amount":"', t.amount,
        '","currency":', to_json(t.currency), ',"amount_base":"', t.amount_base,
        '","direction":', to_json(t.direction), ',"channel":', to_json(t.channel),
        ',"counterparty":',
        CASE WHEN t.counterparty_name IS NULL AND t.counterparty_account IS NULL
                  AND t.counterparty_country IS NULL THEN 'null'
             ELSE concat('{"name":', coalesce(to_json(t.counterparty_name)::text, 'null'),
                         ',"account":', coalesce(to_json(t.counterparty_account)::text, 'null'),
                         ',"country":', coalesce(to_json(t.counterparty_country)::text, 'null'),
                         '}') END,
        ',"occurred_at":"', vigil_ts(t.occurred_at),
        '","ingested_at":"', vigil_ts(t.ingested_at), '"}')
$$;

CREATE OR REPLACE FUNCTION vigil_tx_json(t transactions) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT vigil_tx_json_text(t)::jsonb
$$;

CREATE FUNCTION vigil_cloudevent_text(p_id uuid, p_type text, p_subject text, p_data text)
RETURNS json LANGUAGE sql VOLATILE AS $$
    SELECT concat('{"specversion":"1.0","id":"', p_id, '","source":"/vigil","type":',
                  to_json(p_type), ',"subject":', to_json(p_subject), ',"time":"',
                  vigil_ts(clock_timestamp()), '","datacontenttype":"application/json","data":',
                  p_data, '}')::json
$$;

CREATE OR REPLACE FUNCTION vigil_ev_tx() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (event_id, event_type, subject, payload)
    SELECT g.e, 'aml.transaction.ingested', t.id::text,
           vigil_cloudevent_text(g.e, 'aml.transaction.ingested', t.id::text,
                                 vigil_tx_json_text(t))
    FROM new_tx t, LATERAL (SELECT t.id, vigil_uuid7() AS e) AS g;
    RETURN NULL;
END $$;

-- The sequencer of 0021 with "seq" added by text (above).
CREATE OR REPLACE FUNCTION vigil_sequence(p_limit int, p_low bigint, p_cand_id bigint,
                                          p_cand_xid xid8, p_sweep boolean,
                                          OUT moved int, OUT last_seq bigint, OUT low bigint,
                                          OUT cand_id bigint, OUT cand_xid xid8, OUT strays int)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v_ok boolean;
    v_from bigint;
    v_max_id bigint;
    v_prev bytea;
    v_seq bigint;
    v_payload json;
    v_text text;
    v_hash bytea;
    a_seq bigint[] := '{}';
    a_id uuid[] := '{}';
    a_type text[] := '{}';
    a_subject text[] := '{}';
    a_payload json[] := '{}';
    a_prev bytea[] := '{}';
    a_hash bytea[] := '{}';
BEGIN
    PERFORM pg_advisory_xact_lock(7307100102);
    low := greatest(coalesce(p_low, 0), 0);
    strays := 0;
    v_ok := p_cand_xid IS NOT NULL
            AND pg_snapshot_xmin(pg_current_snapshot()) >= p_cand_xid;
    IF v_ok OR p_cand_xid IS NULL THEN
        cand_id := coalesce(pg_sequence_last_value('outbox_id_seq'::regclass), 0);
        cand_xid := pg_current_xact_id();
    ELSE
        cand_id := p_cand_id;
        cand_xid := p_cand_xid;
    END IF;
    v_from := CASE WHEN p_sweep THEN 0 ELSE low END;

    SELECT e.seq, e.hash INTO v_seq, v_prev FROM event_log e ORDER BY e.seq DESC LIMIT 1;
    v_seq := coalesce(v_seq, 0);
    v_prev := coalesce(v_prev, decode(repeat('00', 32), 'hex'));
    FOR r IN WITH taken AS (
                 DELETE FROM outbox o
                 WHERE o.id = ANY (ARRAY(SELECT id FROM outbox WHERE id >= v_from ORDER BY id
                                         LIMIT p_limit FOR UPDATE))
                 RETURNING o.id, o.event_id, o.event_type, o.subject, o.payload)
             SELECT * FROM taken ORDER BY id LOOP
        IF r.id < low THEN
            strays := strays + 1;
        END IF;
        v_max_id := r.id;
        v_seq := v_seq + 1;
        -- "seq" goes first: the outbox's text with the key spliced in
        -- after its opening brace, when the text starts with a member
        -- ('{"', as every event Vigil writes does). Any other object (empty,
        -- or spaced) takes the old way through jsonb; a payload that is not
        -- an object stops the sequencer with an error naming it.
        v_text := r.payload::text;
        IF starts_with(v_text, '{"') THEN
            v_payload := ('{"seq":' || v_seq || ',' || substr(v_text, 2))::json;
        ELSIF json_typeof(r.payload) = 'object' THEN
            v_payload := (r.payload::jsonb || jsonb_build_object('seq', v_seq))::text::json;
        ELSE
            RAISE EXCEPTION 'outbox event % (%) is not a JSON object', r.event_id, r.event_type;
        END IF;
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
    IF v_ok THEN
        IF moved < p_limit THEN
            low := greatest(low, p_cand_id + 1);
        ELSE
            low := greatest(low, least(p_cand_id, v_max_id) + 1);
        END IF;
    END IF;
    IF moved > 0 THEN
        PERFORM pg_notify('vigil_events', last_seq::text);
    END IF;
END $$;

-- CREATE OR REPLACE resets a function's settings: put back 0018's (the
-- grants and SECURITY DEFINER come back through vigil_apply_grants()).
ALTER FUNCTION vigil_sequence(integer, bigint, bigint, xid8, boolean) SET enable_seqscan = off;
ALTER FUNCTION vigil_sequence(integer, bigint, bigint, xid8, boolean) SET enable_bitmapscan = off;

-- The legacy sequencer of 0009, reading the json payload as jsonb.
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
        v_payload := r.payload::jsonb || jsonb_build_object('seq', v_seq);
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
-- Its settings of 0018, which CREATE OR REPLACE dropped.
ALTER FUNCTION vigil_sequence(integer) SET enable_seqscan = off;
ALTER FUNCTION vigil_sequence(integer) SET enable_bitmapscan = off;
