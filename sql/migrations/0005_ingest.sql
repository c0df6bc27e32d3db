-- 0005_ingest.sql — the one entry point for transaction ingest.
--
-- vigil_ingest(items jsonb) takes an array of already validated, canonical
-- transactions (the C layer checked types, formats and ranges) and, in the
-- caller's transaction:
--   1. refuses the whole batch if any item names an unknown customer or a
--      currency without an FX rate (SQLSTATE VG422, DETAIL = JSON array of
--      {"index", "field", "detail"}), so nothing partial is written;
--   2. inserts the new ones in one statement (idempotent on external_id; the
--      first occurrence inside a batch wins), which fires the set-based rule
--      engine and the event trigger once for the whole batch;
--   3. returns one row per item, in order: the stored transaction (new or
--      previously stored) and whether it was a duplicate.

CREATE FUNCTION vigil_ingest(items jsonb)
RETURNS TABLE (idx int, duplicate boolean, tx jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    bad jsonb;
BEGIN
    IF to_regclass('pg_temp.ingest_items') IS NULL THEN
        CREATE TEMP TABLE ingest_items (
            idx int, external_id text, customer_id uuid, amount numeric, currency text,
            direction text, channel text, cp_name text, cp_account text, cp_country text,
            occurred_at timestamptz, is_first boolean, is_new boolean NOT NULL DEFAULT false)
            ON COMMIT DELETE ROWS;
    END IF;
    DELETE FROM pg_temp.ingest_items;

    INSERT INTO pg_temp.ingest_items (idx, external_id, customer_id, amount, currency, direction,
                                      channel, cp_name, cp_account, cp_country, occurred_at, is_first)
    SELECT (o - 1)::int, i->>'external_id', (i->>'customer_id')::uuid, (i->>'amount')::numeric,
           i->>'currency', i->>'direction', i->>'channel', i->>'cp_name', i->>'cp_account',
           i->>'cp_country', (i->>'occurred_at')::timestamptz,
           row_number() OVER (PARTITION BY i->>'external_id' ORDER BY o) = 1
    FROM jsonb_array_elements(items) WITH ORDINALITY AS x(i, o);

    SELECT jsonb_agg(e ORDER BY (e->>'index')::int) INTO bad FROM (
        SELECT jsonb_build_object('index', n.idx, 'field', 'customer_id',
                                  'detail', 'unknown customer ' || n.customer_id) AS e
        FROM pg_temp.ingest_items n
        WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE c.id = n.customer_id)
        UNION ALL
        SELECT jsonb_build_object('index', n.idx, 'field', 'currency',
                                  'detail', 'no exchange rate for currency ' || n.currency)
        FROM pg_temp.ingest_items n
        WHERE NOT EXISTS (SELECT 1 FROM fx_rates f WHERE f.currency = n.currency)) s;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'VG422', MESSAGE = 'batch refused', DETAIL = bad::text;
    END IF;

    WITH ins AS (
    INSERT INTO transactions (external_id, customer_id, amount, currency, amount_base, direction,
                              channel, counterparty_name, counterparty_account,
                              counterparty_country, occurred_at)
    SELECT n.external_id, n.customer_id, n.amount, n.currency,
           round(n.amount * f.rate_to_base, 4), n.direction, n.channel, n.cp_name,
           n.cp_account, n.cp_country, n.occurred_at
    FROM pg_temp.ingest_items n JOIN fx_rates f ON f.currency = n.currency
    WHERE n.is_first
    ORDER BY n.idx
    ON CONFLICT (external_id) DO NOTHING
    RETURNING external_id)
    -- New: inserted now, and the first item carrying its external_id.
    UPDATE pg_temp.ingest_items n SET is_new = true FROM ins
    WHERE n.external_id = ins.external_id AND n.is_first;

    RETURN QUERY
    SELECT n.idx, NOT n.is_new, vigil_tx_json(t)
    FROM pg_temp.ingest_items n JOIN transactions t ON t.external_id = n.external_id
    ORDER BY n.idx;
END $$;
