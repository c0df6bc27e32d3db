-- 0028_ingest_answer_text.sql — the ingest answer is built as text, from
-- the same rendering as the transaction's event (0027), instead of as jsonb
-- that the caller then merged with {"duplicate": ..} and printed.
--
-- Why. Every ingested transaction is answered with its stored row. The
-- answer was vigil_tx_json(t) (since 0027: the text parsed into jsonb),
-- then, in the statement `vigil serve` runs, `tx || jsonb_build_object(
-- 'duplicate', duplicate)` printed back to text: parse, merge, print, per
-- transaction, inside the ingest transaction while the batch's customers
-- are locked. Measured on 1,000 benchmark transactions (psql, 5 runs,
-- medians): 17.5 ms for the text taken through jsonb and printed, 9.9 ms
-- for the text alone.
--
-- vigil_ingest_rows(items) is vigil_ingest of 0023 answering (idx,
-- duplicate, id, tx text), tx being vigil_tx_json_text; the caller adds
-- "duplicate" by text (store_work.h, TX_ANSWER_ITEM_SQL). The lookup of
-- each item's row is a LATERAL probe of transactions_external_id_key, as
-- the scalar sub-select was, returning the id beside the text so that the
-- caller does not parse the text for it. vigil_ingest_rows_keyed is
-- vigil_ingest_keyed (0024) over it.
--
-- vigil_ingest (and vigil_ingest_keyed, which calls it) stay, with their
-- jsonb answer, for an older instance during a rolling upgrade and for
-- scripts: vigil_ingest is restated over the new function, so there is one
-- ingest, not two.

-- vigil_ingest of 0023, answering text.
CREATE FUNCTION vigil_ingest_rows(items jsonb)
RETURNS TABLE (idx int, duplicate boolean, id uuid, tx text)
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
        WHERE (SELECT true FROM customers c WHERE c.id = (x.i->>'customer_id')::uuid) IS NULL
        UNION ALL
        SELECT jsonb_build_object('index', x.o - 1, 'field', 'currency',
                                  'detail', 'no exchange rate for currency ' || (x.i->>'currency'))
        FROM jsonb_array_elements(items) WITH ORDINALITY AS x(i, o)
        WHERE (SELECT true FROM fx_rates f
               WHERE f.currency = (x.i->>'currency')::bpchar) IS NULL) s;
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
               n.i->>'currency',
               round((n.i->>'amount')::numeric
                     * (SELECT f.rate_to_base FROM fx_rates f
                        WHERE f.currency = (n.i->>'currency')::bpchar),
                     4),
               n.i->>'direction', n.i->>'channel', n.i->>'cp_name', n.i->>'cp_account',
               n.i->>'cp_country', (n.i->>'occurred_at')::timestamptz
        FROM n
        WHERE n.is_first
        ORDER BY n.o
        ON CONFLICT (external_id) DO NOTHING
        RETURNING external_id)
    SELECT array_agg(external_id) INTO new_ids FROM ins;

    -- Every item has its row now: inserted above, or there before (a
    -- duplicate, possibly committed by a concurrent batch ON CONFLICT waited for).
    RETURN QUERY
    SELECT (n.o - 1)::int, NOT (n.is_first AND u.external_id IS NOT NULL), t.id, t.tx
    FROM (SELECT x.o, x.i->>'external_id' AS external_id,
                 row_number() OVER (PARTITION BY x.i->>'external_id' ORDER BY x.o) = 1 AS is_first
          FROM jsonb_array_elements(items) WITH ORDINALITY AS x(i, o)) n
    LEFT JOIN unnest(new_ids) AS u(external_id) ON u.external_id = n.external_id
    LEFT JOIN LATERAL (SELECT s.id, vigil_tx_json_text(s) AS tx FROM transactions s
                       WHERE s.external_id = n.external_id) t ON true
    ORDER BY n.o;
END $$;

CREATE OR REPLACE FUNCTION vigil_ingest(items jsonb)
RETURNS TABLE (idx int, duplicate boolean, tx jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY SELECT r.idx, r.duplicate, r.tx::jsonb FROM vigil_ingest_rows(items) r;
END $$;

CREATE FUNCTION vigil_ingest_rows_keyed(items jsonb, p_keys uuid[])
RETURNS TABLE (idx int, duplicate boolean, id uuid, tx text)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM vigil_keys_usable(p_keys);
    RETURN QUERY SELECT * FROM vigil_ingest_rows(items);
END $$;
