-- 0018_sequencer_index_plans.sql — the sequencer's outbox statements always
-- use the primary key, whatever size the planner last saw the outbox at.
--
-- Found by benchmark 8 (2026-11-28, sampling pg_stat_statements and the
-- outbox every 2 s): after a VACUUM had truncated the empty outbox, the
-- sequencer's first calls planned its scan and its DELETE as sequential
-- scans (right for a table of 0 to 14 pages), PL/pgSQL kept those as its
-- cached generic plans, and the outbox heap then grew by a page per ~9
-- events until the next autovacuum (the watermark of 0017 means nothing
-- revisits the pages of rows already taken, and only VACUUM tells inserts
-- where the free space is): every call read the whole heap, 2,800 to 5,500
-- buffers per call, 221 to 267 per event, until autovacuum's new statistics
-- invalidated the plan. Both statements are meant to walk outbox_pkey from
-- the watermark and stop after the batch: with sequential and bitmap scans
-- off for these functions only, the planner has no other choice, and the
-- cost of a call no longer depends on the heap's size or on its statistics.
--
-- The old one-argument function (kept for rolling upgrades, 0017) gets the
-- same settings. vigil_apply_grants() only sets search_path, which leaves
-- these in place.
ALTER FUNCTION vigil_sequence(integer, bigint, bigint, xid8, boolean) SET enable_seqscan = off;
ALTER FUNCTION vigil_sequence(integer, bigint, bigint, xid8, boolean) SET enable_bitmapscan = off;
ALTER FUNCTION vigil_sequence(integer) SET enable_seqscan = off;
ALTER FUNCTION vigil_sequence(integer) SET enable_bitmapscan = off;
