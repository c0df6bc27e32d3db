-- 0006_event_log.sql — the sequenced, hash-chained event log.
--
-- The sequencer (one leader) moves committed outbox rows into event_log,
-- assigning a gap-free seq and a SHA-256 chain:
--
--   hash(seq) = sha256(prev_hash || utf8(seq || '\n' || event_id || '\n' ||
--                      event_type || '\n' || subject || '\n' || payload::text))
--   prev_hash(1) = 32 zero bytes
--
-- `vigil audit verify` recomputes this in C (OpenSSL), independently of the
-- database function, so an edited, removed or reordered row is named.
--
-- Order: rows are taken in outbox id order among those committed when the
-- sequencer runs. A transaction that started after another committed has
-- larger outbox ids, so causally related events keep their order; events of
-- transactions that overlapped in time are ordered by the sequencer's scan.

CREATE TABLE event_log (
    seq         bigint PRIMARY KEY,
    event_id    uuid NOT NULL UNIQUE,
    event_type  text NOT NULL,
    subject     text NOT NULL,
    payload     jsonb NOT NULL,          -- the CloudEvent, with "seq"
    prev_hash   bytea NOT NULL,
    hash        bytea NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CHECK (seq > 0)
);
CREATE INDEX event_log_type ON event_log (event_type, seq);

-- Append-only: no UPDATE, DELETE or TRUNCATE through any role that does not
-- first disable this trigger (only the owner can, and the tamper tests do it
-- on purpose to prove `vigil audit verify` catches them).
CREATE FUNCTION vigil_event_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'event_log is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER event_log_append_only BEFORE UPDATE OR DELETE ON event_log
    FOR EACH ROW EXECUTE FUNCTION vigil_event_log_append_only();
CREATE TRIGGER event_log_no_truncate BEFORE TRUNCATE ON event_log
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_event_log_append_only();

-- Wake the sequencer when events commit (NOTIFY is delivered at commit).
CREATE FUNCTION vigil_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('vigil_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_outbox_notify();

CREATE FUNCTION vigil_event_hash(p_prev bytea, p_seq bigint, p_event_id uuid, p_type text,
                                 p_subject text, p_payload jsonb) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT sha256(p_prev || convert_to(p_seq::text || E'\n' || p_event_id::text || E'\n' ||
                                       p_type || E'\n' || p_subject || E'\n' || p_payload::text,
                                       'UTF8'))
$$;

-- Moves up to p_limit committed outbox rows into event_log. Returns the
-- number moved and the last seq. A transaction-level advisory lock makes
-- this single-writer even if two processes believe they lead.
CREATE FUNCTION vigil_sequence(p_limit int, OUT moved int, OUT last_seq bigint)
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
                 WHERE o.id IN (SELECT id FROM outbox ORDER BY id LIMIT p_limit FOR UPDATE)
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

-- Where each publisher (and other cursor holders) got to. The publisher
-- advances its cursor only over a contiguous run of acknowledged seqs.
CREATE TABLE cursors (
    name       text PRIMARY KEY,
    seq        bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO cursors (name) VALUES ('publisher');
