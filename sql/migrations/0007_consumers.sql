-- 0007_consumers.sql — exactly-once effects for JetStream consumers.
--
-- A consumer's effect and its processed_events row commit in one
-- transaction, and the JetStream ack is sent only after that commit. A
-- redelivered or duplicated event finds its row and changes nothing, so
-- correctness never depends on an ack arriving.

CREATE TABLE processed_events (
    consumer     text NOT NULL,
    event_id     uuid NOT NULL,
    seq          bigint NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Events a consumer gave up on after MaxDeliver attempts.
CREATE TABLE dead_letters (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    consumer    text NOT NULL,
    event_id    uuid NOT NULL,
    seq         bigint NOT NULL,
    event_type  text NOT NULL,
    payload     jsonb NOT NULL,
    deliveries  int NOT NULL,
    last_error  text NOT NULL,
    status      text NOT NULL DEFAULT 'dead' CHECK (status IN ('dead', 'redriven')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    redriven_at timestamptz,
    redriven_by text,
    UNIQUE (consumer, event_id)
);
CREATE INDEX dead_letters_page ON dead_letters (created_at, id);

CREATE FUNCTION vigil_dead_letter_json(d dead_letters) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', d.id, 'consumer', d.consumer, 'event_id', d.event_id, 'seq', d.seq,
        'event_type', d.event_type, 'deliveries', d.deliveries, 'last_error', d.last_error,
        'status', d.status, 'created_at', vigil_ts(d.created_at),
        'redriven_at', vigil_ts(d.redriven_at), 'redriven_by', d.redriven_by,
        'event', d.payload)
$$;
