-- 0021_event_log_json_text.sql — event_log keeps each event's payload as
-- the text that was hashed (json) instead of as jsonb.
--
-- Why. Every reader of the log wants the payload as text: the publisher
-- (each event goes to JetStream as payload::text), the SSE hub, the
-- webhooks worker, `vigil audit verify`, replay and reconcile. As jsonb
-- PostgreSQL rebuilt that text from the binary form on every read; as json
-- it hands back the stored bytes. Measured on the 2-core development
-- machine (2026-11-29, pgbench, 200,000 benchmark-shaped events): reading a
-- publisher window of 4,000 events took 37.8 ms from jsonb and 18.7 ms from
-- json, about 4.8 us per event of the 38-42 us of CPU the whole machine
-- spends per published event (benchmark 3).
--
-- The chain does not change. The hash has always covered payload::text, the
-- jsonb rendering; the conversion below stores exactly that rendering, so
-- every existing hash still verifies, and the sequencer stores the rendering
-- it hashes. A json column keeps its text byte for byte: an edit that only
-- reformats a payload (spaces, key order), which jsonb would have
-- normalised away, now changes payload::text and so fails verification too.
-- json still has the -> and ->> operators; code that needs jsonb functions
-- (jsonb_set, @>, jsonb_agg's normal form) casts payload::jsonb.
--
-- Cost of the upgrade: the ALTER rewrites event_log and its indexes under
-- an exclusive lock, about as long as a VACUUM FULL of it (run `vigil
-- migrate` in a maintenance window for a large log; nothing else changes
-- its rows).
ALTER TABLE event_log ALTER COLUMN payload TYPE json USING payload::text::json;

-- The hash of an event whose payload is already text. Same bytes as the
-- jsonb version (0006, 0019), whose p_payload::text is what is stored now.
-- STABLE like it (convert_to is STABLE), so the sequencer's call is inlined.
CREATE FUNCTION vigil_event_hash(p_prev bytea, p_seq bigint, p_event_id uuid, p_type text,
                                 p_subject text, p_payload json) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT sha256(p_prev || convert_to(p_seq::text || E'\n' || p_event_id::text || E'\n' ||
                                       p_type || E'\n' || p_subject || E'\n' || p_payload::text,
                                       'UTF8'))
$$;

-- The sequencer of 0017, storing each payload as the text it hashed (the
-- jsonb is rendered once, as before, for the hash). Unchanged otherwise;
-- see 0017 for the watermark. vigil_sequence(int), kept for an older
-- instance during a rolling upgrade, still works: its jsonb values are cast
-- to json on insert, which renders the same text it hashed.
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
        v_payload := (r.payload || jsonb_build_object('seq', v_seq))::text::json;
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
