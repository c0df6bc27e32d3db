-- 0017_outbox_watermark.sql — the sequencer scans the outbox from a low
-- watermark instead of from its first entry.
--
-- Why. The outbox is a queue: every row is inserted once and deleted once
-- by vigil_sequence(). The entries of deleted rows stay in its primary key
-- until VACUUM removes them, and `SELECT id FROM outbox ORDER BY id LIMIT n`
-- walks over all of them from the left. While any snapshot older than the
-- deletes is open (a pg_dump, a report, an ANALYZE of a large table) they
-- cannot even be skipped without visiting the heap, so each call's cost
-- grows with the churn since that snapshot: benchmark 8 saw the DELETE read
-- 253 buffers per event (17 normally) and the pipeline fall to 0.56x.
--
-- The trap. Outbox ids come from a sequence in insert order, not commit
-- order: a transaction that drew id 10 may commit after one that drew 11
-- and after the sequencer took 11. So `id > last taken` would lose row 10.
--
-- The watermark L: every outbox id below L has been taken by the sequencer
-- or will never be visible (its transaction aborted). Each call scans
-- `id >= L`. L only moves up over ids whose transactions are known to have
-- ended:
--
--   1. Every outbox id is drawn by a transaction that already has its
--      top-level xid. The id's default below calls pg_current_xact_id()
--      (which assigns one if missing) before nextval(). Rows written by
--      Vigil's triggers had one anyway (the business row came first); the
--      default makes it hold for any INSERT that does not set id itself.
--      The sequence's CACHE must stay 1: a backend's cached values would be
--      handed out after the sequencer read the sequence.
--   2. A call reads C = the sequence's last value, then takes X = its own
--      xid (pg_current_xact_id(), assigned after that read). Every id <= C
--      was drawn before the read by a transaction whose xid was assigned
--      before the draw, so its xid is < X (xids are assigned in order).
--      (C, X) is the candidate; the sequencer keeps it for the next call.
--   3. A later call checks that the oldest running xid, the xmin of a
--      fresh snapshot, is >= X: then every transaction that could own an
--      id <= C has ended, so each such row is visible to the DELETE that
--      follows, or never will be. A running transaction without an xid
--      has drawn no id (by 1), and read-only transactions, however long,
--      hold nothing back: only a long-running writer that started before
--      the candidate does, and then rightly (its rows are still to come).
--   4. After that DELETE: if it took fewer rows than its limit, it took
--      every visible row from L on, so L := C + 1; otherwise it took the
--      smallest ones, so L := min(C, largest id taken) + 1.
--
-- The sequencer (src/events/sequencer.c) starts every leadership term with
-- L = 0 and no candidate, and once a minute passes p_sweep = true: that call
-- scans from 0 anyway and reports in `strays` how many rows it took below L.
-- By the argument above that is always 0; a non-zero count is logged and
-- counted (vigil_sequencer_strays_total) rather than trusted, and the row
-- is sequenced all the same, late, not lost.
--
-- vigil_sequence(int) stays, unchanged, for an older instance still running
-- during a rolling upgrade; both take the same advisory lock, and the old
-- one scans from 0, which is always correct.

ALTER SEQUENCE outbox_id_seq CACHE 1;
ALTER TABLE outbox ALTER COLUMN id SET DEFAULT
    CASE WHEN pg_current_xact_id() IS NOT NULL THEN nextval('outbox_id_seq'::regclass) END;
COMMENT ON COLUMN outbox.id IS
    'Drawn by the default only (after the transaction has an xid): the sequencer''s '
    'low watermark relies on it (0017_outbox_watermark.sql). Never set it explicitly.';

CREATE FUNCTION vigil_sequence(p_limit int, p_low bigint, p_cand_id bigint, p_cand_xid xid8,
                               p_sweep boolean,
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
    low := greatest(coalesce(p_low, 0), 0);
    strays := 0;
    -- 3: has every transaction older than the candidate's xid ended?
    v_ok := p_cand_xid IS NOT NULL
            AND pg_snapshot_xmin(pg_current_snapshot()) >= p_cand_xid;
    IF v_ok OR p_cand_xid IS NULL THEN
        -- 2: a new candidate; the read comes before this transaction's xid.
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
    -- 4: move the watermark over what the old candidate proved.
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

-- Grants for both signatures (vigil_apply_grants() runs after every
-- migration; a CREATE OR REPLACE of either function would reset them).
CREATE OR REPLACE FUNCTION vigil_apply_grants() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t record;
    v_privs text[];
    f text;
BEGIN
    GRANT USAGE ON SCHEMA public TO vigil_service;
    FOR t IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm') LOOP
        v_privs := (SELECT p.privileges FROM service_privileges p WHERE p.table_name = t.relname);
        EXECUTE format('REVOKE ALL ON TABLE public.%I FROM vigil_service', t.relname);
        EXECUTE format('GRANT %s ON TABLE public.%I TO vigil_service',
                       array_to_string(coalesce(v_privs, '{SELECT,INSERT,UPDATE}'), ', '),
                       t.relname);
    END LOOP;
    GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO vigil_service;
    FOREACH f IN ARRAY ARRAY['public.vigil_sequence(integer)',
                             'public.vigil_sequence(integer,bigint,bigint,xid8,boolean)'] LOOP
        IF to_regprocedure(f) IS NOT NULL THEN
            EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = public, pg_temp', f);
            EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO vigil_service', f);
        END IF;
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION vigil_apply_grants() FROM PUBLIC;
