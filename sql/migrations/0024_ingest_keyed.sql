-- 0024_ingest_keyed.sql — the API keys of an ingest, checked inside its
-- transaction.
--
-- Every request looked its API key up in PostgreSQL before anything else:
-- for a single-transaction POST that was a round trip of its own beside the
-- ingest (about 5 % of the machine's CPU per transaction in benchmark 2, on
-- both sides of the connection). `vigil serve` now authenticates POST
-- /transactions from a cache of keys that authenticated in the last minute
-- (store_keys.c), and a parked single transaction goes to the database with
-- its key's id: the ingest flush calls vigil_ingest_keyed with the ids of
-- the keys of every item it joins, which checks them first, in the
-- transaction that writes. A key revoked (or expired) since it was cached
-- stops the whole statement, so nothing of it is written: revocation still
-- takes effect at once, for writes, the moment it commits (before this, a
-- key revoked between the lookup and the ingest's commit still wrote).
-- SQLSTATE VG401 carries the key's refusal; the flush then answers each of
-- its items alone, so only the revoked key's requests fail.

CREATE FUNCTION vigil_keys_usable(p_keys uuid[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    bad uuid;
    k record;
BEGIN
    -- One statement on the usual path (every key usable).
    SELECT count(*),
           (array_agg(a.id ORDER BY a.id)
                FILTER (WHERE a.revoked_at IS NOT NULL OR a.expires_at <= now()))[1]
    INTO n, bad
    FROM api_keys a WHERE a.id = ANY (p_keys);
    IF bad IS NOT NULL THEN
        -- The same refusals, in the same words, as keys_authenticate.
        SELECT a.revoked_at IS NOT NULL AS revoked, vigil_ts(a.expires_at) AS expires_at
        INTO k FROM api_keys a WHERE a.id = bad;
        IF k.revoked THEN
            RAISE EXCEPTION USING ERRCODE = 'VG401', DETAIL = bad::text,
                MESSAGE = 'this API key was revoked; ask an administrator for a new one';
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'VG401', DETAIL = bad::text,
            MESSAGE = 'this API key expired at ' || k.expires_at
                      || '; ask an administrator for a new one';
    END IF;
    -- Keys are never deleted: an id that names none is a bug, not a guess.
    IF n < cardinality(p_keys) AND n <> (SELECT count(DISTINCT u) FROM unnest(p_keys) u) THEN
        RAISE EXCEPTION USING ERRCODE = 'VG401', MESSAGE = 'unknown API key';
    END IF;
END $$;

-- vigil_ingest, after the keys' check.
CREATE FUNCTION vigil_ingest_keyed(items jsonb, p_keys uuid[])
RETURNS TABLE (idx int, duplicate boolean, tx jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM vigil_keys_usable(p_keys);
    RETURN QUERY SELECT * FROM vigil_ingest(items);
END $$;
