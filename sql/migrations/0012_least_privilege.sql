-- 0012_least_privilege.sql — the service role.
--
-- `vigil migrate` runs as the schema owner (VIGIL_MIGRATE_DATABASE_URL).
-- `vigil serve`, `vigil consume` and the operator commands connect as a login
-- role that is a member of the NOLOGIN role vigil_service
-- (VIGIL_DATABASE_URL), which
--   * owns nothing and has no CREATE on the schema: no DDL, so it can neither
--     ALTER event_log, DROP or DISABLE its append-only trigger, nor replace a
--     function;
--   * never DELETEs or TRUNCATEs anything (no statement of the service needs
--     it); history tables are INSERT-only (service_privileges below);
--   * cannot write event_log at all: the sequencer appends through
--     vigil_sequence(), which runs as its owner (SECURITY DEFINER) and
--     chains each row from the outbox.
--
-- vigil_apply_grants() derives the grants from service_privileges; `vigil
-- migrate` calls it after every run, so a table that a later migration adds
-- gets the default (SELECT, INSERT, UPDATE) unless that migration lists it
-- here with fewer. The role is cluster-wide: databases of one cluster share
-- it (and this policy's last application in each database).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vigil_service') THEN
        CREATE ROLE vigil_service NOLOGIN;
    END IF;
END $$;

-- PostgreSQL 15 no longer lets PUBLIC create in schema public; a database
-- that began on an older version may still. Temporary tables are DDL too,
-- and no statement of the service needs one.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
DO $$
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
END $$;

CREATE TABLE service_privileges (
    table_name text PRIMARY KEY,
    privileges text[] NOT NULL
        CHECK (privileges <@ ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']::text[]),
    reason     text NOT NULL
);
INSERT INTO service_privileges (table_name, privileges, reason) VALUES
    ('event_log', '{SELECT}', 'appended only by vigil_sequence() as its owner; never rewritten'),
    ('outbox', '{SELECT,INSERT}', 'written by triggers; emptied only by vigil_sequence()'),
    ('schema_migrations', '{SELECT}', 'serve checks that the schema is current'),
    ('service_privileges', '{SELECT}', 'this policy'),
    ('transactions', '{SELECT,INSERT}', 'ingested once, never changed'),
    ('risk_assessments', '{SELECT,INSERT}', 'risk history'),
    ('rule_hits', '{SELECT,INSERT}', 'shadow-mode rule history'),
    ('processed_events', '{SELECT,INSERT}',
     'exactly-once record of the consumers: deleting a row would allow an effect twice');

CREATE FUNCTION vigil_apply_grants() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t record;
    v_privs text[];
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
    -- Re-applied each time: a later CREATE OR REPLACE would reset it.
    IF to_regprocedure('public.vigil_sequence(integer)') IS NOT NULL THEN
        ALTER FUNCTION public.vigil_sequence(integer)
            SECURITY DEFINER SET search_path = public, pg_temp;
        REVOKE ALL ON FUNCTION public.vigil_sequence(integer) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION public.vigil_sequence(integer) TO vigil_service;
    END IF;
END $$;

-- `vigil migrate --service-role NAME`: makes NAME (created as a LOGIN role
-- without password when missing) a member of vigil_service. Refuses a
-- superuser or the owner of event_log: such a role keeps every right the
-- service role is meant not to have. Returns true when it created the role.
CREATE FUNCTION vigil_service_member(p_role text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_created boolean := false;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = p_role) THEN
        EXECUTE format('CREATE ROLE %I LOGIN', p_role);
        v_created := true;
    ELSIF (SELECT rolsuper FROM pg_roles WHERE rolname = p_role)
          OR pg_has_role(p_role, (SELECT relowner FROM pg_class
                                  WHERE oid = 'public.event_log'::regclass), 'USAGE') THEN
        RAISE EXCEPTION 'role % is a superuser or owns the schema; the service needs a role '
                        'without those rights', p_role;
    END IF;
    EXECUTE format('GRANT vigil_service TO %I', p_role);
    RETURN v_created;
END $$;
REVOKE ALL ON FUNCTION vigil_service_member(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION vigil_apply_grants() FROM PUBLIC;
