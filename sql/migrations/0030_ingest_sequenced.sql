-- 0030_ingest_sequenced.sql — a group commit of single-transaction POSTs
-- can sequence its own events (and whatever else is committed and waiting
-- in the outbox) in its own transaction, so they are in event_log, with
-- their seq and hash, the moment the ingest commits.
--
-- Why. Until now an event took two commits to reach event_log: the ingest's,
-- then the sequencer's (woken after the first, its own round trip, its own
-- WAL flush). Benchmark 4 (1,000 single POSTs a second, bench/ANALYSIS.md)
-- put "ingest commit -> sequencer commit" at a p50 of 1.8-2.5 ms, most of
-- the time from the HTTP answer to the event's delivery, and a traced run
-- of the sequencer (2026-11-30) showed why: at that load a round trip that
-- does nothing (BEGIN) took 0.3 ms, the vigil_sequence() call 0.9 ms and
-- its commit 1.5 ms (p50s). Done in the ingest's transaction, the second
-- commit and the wake-up disappear from the event's path; the publisher
-- and /events/stream are notified by the ingest's commit.
--
-- vigil_ingest_rows_sequenced(items, keys, low, limit) is
-- vigil_ingest_rows_keyed (0028) followed by vigil_sequence() (0027) with
-- the sequencer's current watermark `low` (from the sequencer leading in
-- the same `vigil serve`; any watermark it proved is a true lower bound,
-- see 0017) and at most `limit` rows. It is the sequencer's own function,
-- under its lock: the order, the gap-free seqs and the hash chain are
-- exactly the sequencer's; the lock is held from there through the commit,
-- which a concurrent sequencer round waits for, as it would for another
-- round. A failure of the sequencing part (a payload that is not a JSON
-- object, written by plain SQL) must not fail the ingest: it is rolled back
-- alone (a subtransaction), reported in seq_error, and the rows stay in the
-- outbox for the sequencer, which fails on them visibly as before.
--
-- Returned per item: idx, duplicate, id, tx as vigil_ingest_rows_keyed;
-- the same on every row: seq_moved (rows sequenced; -1 when the sequencing
-- failed), seq_last (the last seq written), seq_strays (rows found below
-- `low`: should be 0; the caller logs them and counts them with the
-- sequencer's, vigil_sequencer_strays_total) and seq_error.

CREATE TYPE vigil_ingested AS (idx int, duplicate boolean, id uuid, tx text);

CREATE FUNCTION vigil_ingest_rows_sequenced(p_items jsonb, p_keys uuid[], p_low bigint,
                                            p_limit int)
RETURNS TABLE (idx int, duplicate boolean, id uuid, tx text, seq_moved int, seq_last bigint,
               seq_strays int, seq_error text)
LANGUAGE plpgsql AS $$
DECLARE
    a vigil_ingested[];
    v_moved int;
    v_last bigint;
    v_strays int;
    v_error text;
BEGIN
    SELECT array_agg(ROW(r.idx, r.duplicate, r.id, r.tx)::vigil_ingested ORDER BY r.idx)
    INTO a
    FROM vigil_ingest_rows_keyed(p_items, p_keys) r;
    BEGIN
        SELECT q.moved, q.last_seq, q.strays INTO v_moved, v_last, v_strays
        FROM vigil_sequence(p_limit, p_low, NULL, NULL, false) q;
    EXCEPTION WHEN OTHERS THEN
        v_moved := -1;
        v_error := SQLERRM;
    END;
    RETURN QUERY SELECT u.idx, u.duplicate, u.id, u.tx, v_moved, v_last, v_strays, v_error
                 FROM unnest(a) u;
END $$;
