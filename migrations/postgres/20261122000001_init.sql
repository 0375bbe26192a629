-- Events, deliveries and attempts: the durable queue (contract §2, §3).

-- One row per accepted event. `body` is the delivery body, fixed at enqueue:
-- every attempt and every replay sends exactly these bytes. `payload` is the
-- producer's payload text exactly as received.
CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    topic       TEXT NOT NULL,
    payload     TEXT NOT NULL,
    body        BYTEA NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    tenant_id   TEXT,
    source      TEXT,
    key         TEXT,
    trace_id    TEXT
);

-- One row per (event, matching webhook). States:
--   pending   -> in_flight : a worker claims it (claim query, lease set)
--   in_flight -> succeeded : 2xx recorded by the worker that holds the lease
--   in_flight -> pending   : failure with attempts left (next_attempt_at set),
--                            or the rescuer after the lease expired
--   in_flight -> dead      : 410, or the retry budget is spent
--   dead      -> pending   : manual replay (budget restarts at replay_base)
CREATE TABLE deliveries (
    id               UUID PRIMARY KEY,
    event_id         TEXT NOT NULL REFERENCES events (id),
    webhook_id       TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'in_flight', 'succeeded', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    replay_base      INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    lease_expires_at TIMESTAMPTZ,
    leased_by        TEXT,
    last_status      INTEGER,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    completed_at     TIMESTAMPTZ
);

-- Every state change rewrites the row (state is indexed, so no HOT update)
-- and adds an entry to each index whose predicate the new version meets:
-- keep the indexes few and partial.
-- The claim query reads only this small partial index.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
-- The rescuer's scan.
CREATE INDEX deliveries_leases ON deliveries (lease_expires_at) WHERE state = 'in_flight';
-- Duplicate answers and `?event_id=` listing.
CREATE INDEX deliveries_event ON deliveries (event_id);
-- Dead letters are few and listed by webhook; finished rows stay out of it.
CREATE INDEX deliveries_dead ON deliveries (webhook_id, id) WHERE state = 'dead';

-- Append-only: one row per attempt, never updated.
CREATE TABLE delivery_attempts (
    delivery_id   UUID NOT NULL REFERENCES deliveries (id),
    attempt       INTEGER NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL,
    duration_ms   INTEGER NOT NULL,
    status_code   INTEGER,
    error_kind    TEXT,
    error         TEXT,
    response_body TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
