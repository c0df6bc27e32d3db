-- 0008_webhooks.sql — outgoing webhooks: registrations, a delivery outbox
-- and the log of every HTTP attempt.
--
-- The `webhooks` consumer runs in the processed_events transaction and only
-- enqueues: one webhook_deliveries row per (active matching webhook, event),
-- made exactly once by UNIQUE (webhook_id, event_id). Delivery workers (any
-- number, on any instance) claim due rows with FOR UPDATE SKIP LOCKED, take
-- a lease by pushing next_attempt_at past the HTTP timeout, POST outside any
-- transaction, and record the outcome fenced by the attempt number, so a
-- worker whose lease ran out can never overwrite the one that took over.
--
-- A delivery is 'pending' (not tried yet, or leased), 'failed' (last try
-- failed, retry at next_attempt_at), 'delivered' (a 2xx) or 'dead' (the
-- horizon passed: a dead_letters row with consumer 'webhooks' was written in
-- the same transaction; redriving that letter re-queues the delivery).
--
-- The body sent is event_log.payload::text, byte for byte what JetStream
-- carries, so it is not copied per webhook.

CREATE TABLE webhooks (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    url         text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    -- exact types ("aml.alert.created") or prefixes ending in '.'
    -- ("aml.alert."); empty = every event
    event_types text[] NOT NULL DEFAULT '{}' CHECK (cardinality(event_types) <= 32),
    -- the HMAC key; needed in clear to sign, never returned by the API
    secret      text NOT NULL CHECK (length(secret) >= 16),
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL
);
CREATE INDEX webhooks_page ON webhooks (created_at, id);

CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    webhook_id      uuid NOT NULL REFERENCES webhooks (id),
    event_id        uuid NOT NULL,
    seq             bigint NOT NULL,
    event_type      text NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'failed', 'delivered', 'dead')),
    attempts        int NOT NULL DEFAULT 0,   -- attempts claimed so far (all rounds)
    http_status     int,                      -- of the last finished attempt
    error           text,                     -- of the last finished attempt
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    retry_since     timestamptz NOT NULL DEFAULT now(), -- horizon start; reset by redrive
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status IN ('pending', 'failed');
CREATE INDEX webhook_deliveries_page ON webhook_deliveries (webhook_id, created_at, id);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id) WHERE status = 'dead';

CREATE TABLE webhook_attempts (
    delivery_id uuid NOT NULL REFERENCES webhook_deliveries (id),
    attempt     int NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    duration_ms int,
    http_status int,
    error       text,
    -- 'sending' until recorded; 'lost' when a worker vanished mid-attempt
    outcome     text NOT NULL DEFAULT 'sending'
                CHECK (outcome IN ('sending', 'delivered', 'retry', 'dead', 'lost', 'abandoned')),
    PRIMARY KEY (delivery_id, attempt)
);

-- Wake delivery workers when deliveries are enqueued (delivered at commit).
CREATE FUNCTION vigil_webhook_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('vigil_webhooks', '');
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_deliveries_notify AFTER INSERT ON webhook_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_webhook_notify();

-- 1 when a webhook subscribed to `p_type`: no filter, an exact type, or a
-- prefix ending in '.'.
CREATE FUNCTION vigil_webhook_matches(p_types text[], p_type text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT cardinality(p_types) = 0 OR EXISTS (
        SELECT 1 FROM unnest(p_types) t
        WHERE t = p_type OR (right(t, 1) = '.' AND starts_with(p_type, t)))
$$;

CREATE FUNCTION vigil_webhook_json(w webhooks) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', w.id, 'url', w.url, 'event_types', to_jsonb(w.event_types), 'active', w.active,
        'secret_hint', '…' || right(w.secret, 4),
        'created_at', vigil_ts(w.created_at), 'created_by', w.created_by,
        'updated_at', vigil_ts(w.updated_at), 'updated_by', w.updated_by)
$$;

CREATE FUNCTION vigil_webhook_delivery_json(d webhook_deliveries) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', d.id, 'webhook_id', d.webhook_id, 'event_id', d.event_id, 'seq', d.seq,
        'event_type', d.event_type, 'status', d.status, 'attempts', d.attempts,
        'http_status', d.http_status, 'error', d.error,
        'next_attempt_at', CASE WHEN d.status IN ('pending', 'failed')
                                THEN vigil_ts(d.next_attempt_at) END,
        'created_at', vigil_ts(d.created_at), 'delivered_at', vigil_ts(d.delivered_at),
        'attempt_log', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                       'attempt', a.attempt, 'started_at', vigil_ts(a.started_at),
                       'duration_ms', a.duration_ms, 'http_status', a.http_status,
                       'error', a.error, 'outcome', a.outcome) ORDER BY a.attempt)
            FROM webhook_attempts a WHERE a.delivery_id = d.id), '[]'))
$$;

-- The consumer's effect: one delivery per active webhook subscribed to the
-- event. Returns how many were enqueued now. An event that is not in
-- event_log (nothing to send) is an error, never a silent skip.
CREATE FUNCTION vigil_webhook_enqueue(p_event uuid, p_seq bigint, p_type text) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    n int;
BEGIN
    INSERT INTO webhook_deliveries (webhook_id, event_id, seq, event_type)
    SELECT w.id, p_event, p_seq, p_type FROM webhooks w
    WHERE w.active AND vigil_webhook_matches(w.event_types, p_type)
    ON CONFLICT (webhook_id, event_id) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 AND NOT EXISTS (SELECT 1 FROM event_log WHERE event_id = p_event) THEN
        RAISE EXCEPTION 'event % is not in event_log: nothing to deliver', p_event;
    END IF;
    RETURN n;
END $$;

-- Claims up to p_limit due deliveries of active webhooks (at most 4 per
-- webhook, none of p_busy's): takes a lease of p_lease_ms, counts the
-- attempt, opens its attempt row (an earlier attempt still 'sending' was
-- lost with its worker) and returns what the worker needs to send it.
CREATE FUNCTION vigil_webhook_claim(p_limit int, p_lease_ms int, p_busy uuid[])
RETURNS TABLE (delivery_id uuid, webhook_id uuid, url text, secret text, event_id uuid,
               attempt int, body text)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    WITH due AS (
        SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
        WHERE d.status IN ('pending', 'failed') AND d.next_attempt_at <= now() AND w.active
          AND NOT (d.webhook_id = ANY (p_busy))
        ORDER BY d.next_attempt_at
        LIMIT p_limit * 4
        FOR UPDATE OF d SKIP LOCKED
    ), fair AS (
        SELECT x.id FROM (
            SELECT d.id, d.next_attempt_at,
                   row_number() OVER (PARTITION BY d.webhook_id ORDER BY d.next_attempt_at) AS rn
            FROM webhook_deliveries d JOIN due USING (id)) x
        WHERE x.rn <= 4 ORDER BY x.next_attempt_at LIMIT p_limit
    ), claimed AS (
        UPDATE webhook_deliveries d
        SET attempts = d.attempts + 1,
            next_attempt_at = now() + make_interval(secs => p_lease_ms / 1000.0)
        FROM fair WHERE d.id = fair.id
        RETURNING d.id, d.webhook_id, d.event_id, d.attempts
    ), lost AS (
        UPDATE webhook_attempts a SET outcome = 'lost',
               error = 'the worker stopped before recording the outcome'
        FROM claimed c WHERE a.delivery_id = c.id AND a.outcome = 'sending'
    ), opened AS (
        INSERT INTO webhook_attempts (delivery_id, attempt)
        SELECT c.id, c.attempts FROM claimed c
    )
    SELECT c.id, c.webhook_id, w.url, w.secret, c.event_id, c.attempts, e.payload::text
    FROM claimed c JOIN webhooks w ON w.id = c.webhook_id
    JOIN event_log e ON e.event_id = c.event_id;
END $$;

-- Records the outcome of attempt p_attempt (fenced: 'stale' when another
-- worker claimed the delivery since). A 2xx → 'delivered'. A failure before
-- the horizon → 'retry', next attempt after p_backoff_ms * 2^(k-1) (k =
-- attempts since retry_since), never later than the horizon itself; at or
-- past the horizon → 'dead' plus a dead_letters row (one per event for the
-- 'webhooks' consumer: a second webhook dying on the same event appends to
-- its last_error). next_in_ms is the delay to the retry (0 otherwise).
CREATE FUNCTION vigil_webhook_record(p_delivery uuid, p_attempt int, p_http_status int,
                                     p_error text, p_duration_ms int, p_backoff_ms bigint,
                                     p_horizon_s bigint, OUT outcome text, OUT next_in_ms bigint)
LANGUAGE plpgsql AS $$
DECLARE
    d webhook_deliveries;
    k int;
    deadline timestamptz;
    next_at timestamptz;
    why text;
BEGIN
    next_in_ms := 0;
    SELECT * INTO d FROM webhook_deliveries WHERE id = p_delivery FOR UPDATE;
    IF NOT FOUND OR d.attempts <> p_attempt OR d.status NOT IN ('pending', 'failed') THEN
        outcome := 'stale';
        RETURN;
    END IF;
    IF p_http_status BETWEEN 200 AND 299 THEN
        outcome := 'delivered';
        UPDATE webhook_deliveries SET status = 'delivered', http_status = p_http_status,
               error = NULL, delivered_at = now() WHERE id = p_delivery;
    ELSE
        deadline := d.retry_since + make_interval(secs => p_horizon_s);
        SELECT count(*) INTO k FROM webhook_attempts a
        WHERE a.delivery_id = p_delivery AND a.started_at >= d.retry_since
          AND a.outcome NOT IN ('lost', 'abandoned');
        next_at := least(now() + make_interval(secs => p_backoff_ms
                                                      * 2 ^ least(greatest(k - 1, 0), 30) / 1000.0),
                         deadline);
        IF now() >= deadline THEN
            outcome := 'dead';
            UPDATE webhook_deliveries SET status = 'dead', http_status = p_http_status,
                   error = p_error WHERE id = p_delivery;
            why := format('webhook %s: %s after %s attempts', d.webhook_id, p_error, d.attempts);
            INSERT INTO dead_letters (consumer, event_id, seq, event_type, payload, deliveries,
                                      last_error)
            SELECT 'webhooks', d.event_id, d.seq, d.event_type, e.payload, d.attempts, why
            FROM event_log e WHERE e.event_id = d.event_id
            ON CONFLICT (consumer, event_id) DO UPDATE SET
                deliveries = EXCLUDED.deliveries, status = 'dead', created_at = now(),
                last_error = CASE WHEN dead_letters.status = 'dead'
                                  THEN dead_letters.last_error || '; ' || EXCLUDED.last_error
                                  ELSE EXCLUDED.last_error END;
        ELSE
            outcome := 'retry';
            next_in_ms := greatest(0, (extract(epoch FROM next_at - now()) * 1000)::bigint);
            UPDATE webhook_deliveries SET status = 'failed', http_status = p_http_status,
                   error = p_error, next_attempt_at = next_at WHERE id = p_delivery;
        END IF;
    END IF;
    UPDATE webhook_attempts SET outcome = vigil_webhook_record.outcome,
           duration_ms = p_duration_ms, http_status = p_http_status, error = p_error
    WHERE delivery_id = p_delivery AND attempt = p_attempt;
END $$;

-- Gives back a claimed attempt that never got an answer because its worker
-- is stopping: due again now, and it does not count toward the backoff.
CREATE FUNCTION vigil_webhook_abandon(p_delivery uuid, p_attempt int) RETURNS void
LANGUAGE sql AS $$
    WITH d AS (
        UPDATE webhook_deliveries SET next_attempt_at = now()
        WHERE id = p_delivery AND attempts = p_attempt AND status IN ('pending', 'failed')
        RETURNING id)
    UPDATE webhook_attempts a SET outcome = 'abandoned',
           error = 'the worker stopped before the receiver answered'
    FROM d WHERE a.delivery_id = d.id AND a.attempt = p_attempt
$$;

-- Redrive of a 'webhooks' dead letter: its dead deliveries to webhooks that
-- are still active start a new round (a fresh horizon). Returns how many.
CREATE FUNCTION vigil_webhook_requeue(p_event uuid) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    n int;
BEGIN
    UPDATE webhook_deliveries d SET status = 'pending', next_attempt_at = now(),
           retry_since = now()
    FROM webhooks w
    WHERE d.event_id = p_event AND d.status = 'dead' AND w.id = d.webhook_id AND w.active;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM pg_notify('vigil_webhooks', '');
    END IF;
    RETURN n;
END $$;
