-- Security and correctness fixes (issue 7).

-- A late real outcome and the rescuer's `lease_expired` guess for the same
-- attempt are both kept: the attempt happened, and the rescuer could not know
-- how it ended. `recorded_by` tells them apart.
ALTER TABLE delivery_attempts
    ADD COLUMN recorded_by TEXT NOT NULL DEFAULT 'worker'
        CHECK (recorded_by IN ('worker', 'rescuer'));
UPDATE delivery_attempts SET recorded_by = 'rescuer' WHERE error_kind = 'lease_expired';
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_pkey;
ALTER TABLE delivery_attempts ADD PRIMARY KEY (delivery_id, attempt, recorded_by);

-- Inbound signatures accepted within the tolerance window, per caller: a
-- captured request sent again gets the first answer and dispatches nothing,
-- with or without an Idempotency-Key. `digest` is SHA-256 of `<t>.<body>`,
-- the message the signature covers.
CREATE TABLE inbound_signatures (
    actor_id   TEXT NOT NULL,
    digest     BYTEA NOT NULL,
    status     INTEGER NOT NULL,
    response   TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (actor_id, digest)
);
CREATE INDEX inbound_signatures_expiry ON inbound_signatures (expires_at);

-- The fair claim takes each webhook's oldest due rows separately (one short
-- index range per webhook, round-robin across them), so a webhook's backlog
-- never sits in front of another webhook's due deliveries. This index serves
-- it and the per-webhook "next due" lookup; the global due index goes.
CREATE INDEX deliveries_due_by_webhook ON deliveries (webhook_id, next_attempt_at) WHERE state = 'pending';
DROP INDEX deliveries_due;

-- Retention: finished deliveries are found by when they finished; events
-- are deleted only when nothing references them any more.
CREATE INDEX deliveries_finished ON deliveries (completed_at) WHERE state IN ('succeeded', 'dead');
CREATE INDEX audit_log_event ON audit_log (event_id);
CREATE INDEX commands_event ON commands (event_id);

-- Webhook health, maintained by the completion that records each outcome,
-- so `GET /v1/webhooks` never scans the deliveries table.
CREATE TABLE webhook_health (
    webhook_id      TEXT PRIMARY KEY,
    last_success_at TIMESTAMPTZ,
    last_failure_at TIMESTAMPTZ,
    last_error_kind TEXT
);
INSERT INTO webhook_health (webhook_id, last_success_at, last_failure_at)
SELECT webhook_id,
       max(completed_at) FILTER (WHERE state = 'succeeded'),
       max(updated_at) FILTER (WHERE last_error IS NOT NULL)
FROM deliveries GROUP BY webhook_id;
-- Outcomes per webhook and minute, for the success rate of the last hour;
-- retention deletes minutes older than a day.
CREATE TABLE webhook_minutes (
    webhook_id TEXT NOT NULL,
    minute     TIMESTAMPTZ NOT NULL,
    succeeded  INTEGER NOT NULL DEFAULT 0,
    failed     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (webhook_id, minute)
);

-- Events that matched no webhook have no delivery to be purged with; this
-- flag (set at ingest) and its small partial index let retention find them.
ALTER TABLE events ADD COLUMN undelivered BOOLEAN NOT NULL DEFAULT false;
CREATE INDEX events_undelivered ON events (received_at) WHERE undelivered;
