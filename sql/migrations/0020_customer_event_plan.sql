-- 0020_customer_event_plan.sql — a customer's event payload is no longer
-- planned again for every customer written.
--
-- vigil_customer_event_json (0010) is a SQL function whose body has a
-- sub-select (the event_pii setting), so PostgreSQL cannot inline it, and
-- a SQL function that is not inlined is parsed and planned on every call:
-- pg_stat_statements in `BENCH_PROFILE=1 make bench ONLY=2` counted 1,000
-- plans for 1,000 calls while the benchmark created its 1,000 customers
-- (0.28 ms of planning each, against 0.03 ms of execution). Every
-- POST /customers, PATCH and `vigil import` row pays it through the
-- customers trigger. As PL/pgSQL the same statements are planned once per
-- session and cached: 5,000 customers in one INSERT took 1.37-2.13 s
-- before and 0.55-0.72 s after (four runs each, a scratch PostgreSQL 15
-- on the 2-core development machine, 2026-11-29). Same result for every input (the event bodies and
-- so the audit chain are unchanged); test_event_pii covers both modes.
CREATE OR REPLACE FUNCTION vigil_customer_event_json(c customers) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF (SELECT s.event_pii FROM vigil_settings s) = 'minimal' THEN
        RETURN vigil_customer_json(c) - 'email' - 'date_of_birth';
    END IF;
    RETURN vigil_customer_json(c);
END $$;
