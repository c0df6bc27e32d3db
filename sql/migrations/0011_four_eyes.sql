-- 0011_four_eyes.sql — maker-checker approvals, and API key expiry.
--
-- Closing an alert as escalated or sar_filed, and any change to a rule, is
-- first a proposal (a row here, status 'pending'). It takes effect only when
-- a second person approves it; the approval and the change commit in one
-- transaction (src/store/store_approvals.c). A person is a key *name*: two
-- keys with the same name are one person and cannot approve each other.
--
-- At most one pending proposal per target, so an approver never has to
-- choose between rival versions of one decision.

-- Keys may expire (`vigil keys create --expires-in 90d`). Lookup is by the
-- key's public prefix, then a constant-time compare of the hash in C
-- (src/store/store_keys.c says why).
ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;
CREATE INDEX api_keys_prefix ON api_keys (key_prefix);

CREATE TABLE approvals (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind            text NOT NULL CHECK (kind IN ('alert_close', 'rule_change')),
    target_id       text NOT NULL,                 -- alert id, or rule id
    payload         jsonb NOT NULL,                -- the change, as the proposer sent it
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'approved', 'rejected')),
    proposed_by_key uuid NOT NULL REFERENCES api_keys (id),
    proposed_by     text NOT NULL,                 -- "key:<name>"
    proposed_at     timestamptz NOT NULL DEFAULT now(),
    decided_by_key  uuid REFERENCES api_keys (id),
    decided_by      text,
    decided_at      timestamptz,
    decision_note   text,
    CHECK ((status = 'pending') = (decided_at IS NULL)),
    -- the database's own guard against self-approval (a proposer may withdraw,
    -- i.e. reject, their own proposal)
    CHECK (status <> 'approved' OR decided_by_key <> proposed_by_key)
);
CREATE UNIQUE INDEX approvals_one_pending ON approvals (kind, target_id) WHERE status = 'pending';
CREATE INDEX approvals_status ON approvals (status, proposed_at, id);

CREATE FUNCTION vigil_approval_json(a approvals) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', a.id, 'kind', a.kind, 'target_id', a.target_id, 'payload', a.payload,
        'status', a.status, 'proposed_by', a.proposed_by,
        'proposed_at', vigil_ts(a.proposed_at), 'decided_by', a.decided_by,
        'decided_at', vigil_ts(a.decided_at), 'decision_note', a.decision_note)
$$;

-- aml.approval.proposed on insert; aml.approval.approved / .rejected when
-- decided. The approval's event precedes the change it lets through (same
-- transaction, written first).
CREATE FUNCTION vigil_ev_approval() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM vigil_emit('aml.approval.proposed', NEW.id::text, vigil_approval_json(NEW));
    ELSIF OLD.status IS DISTINCT FROM NEW.status THEN
        PERFORM vigil_emit('aml.approval.' || NEW.status, NEW.id::text, vigil_approval_json(NEW));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER approval_events AFTER INSERT OR UPDATE ON approvals
    FOR EACH ROW EXECUTE FUNCTION vigil_ev_approval();
