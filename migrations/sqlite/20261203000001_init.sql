-- The embedded store (SQLite): the same tables as the PostgreSQL store
-- (migrations/postgres, where each is explained), for one engine.
-- Differences: times are INTEGER milliseconds since the Unix epoch (UTC),
-- ids BLOBs (16-byte UUIDs, so byte order is id order), booleans 0/1, and
-- the order sequence is a row in `counters`. One writer at a time (the
-- engine's single write connection) replaces row locks, SKIP LOCKED and
-- advisory locks.

CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    topic       TEXT NOT NULL,
    payload     TEXT NOT NULL,
    body        BLOB NOT NULL,
    occurred_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    tenant_id   TEXT,
    source      TEXT,
    key         TEXT,
    trace_id    TEXT,
    undelivered INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX events_undelivered ON events (received_at) WHERE undelivered;

-- The state machine is documented on `store::DeliveryState`.
CREATE TABLE deliveries (
    id               BLOB PRIMARY KEY,
    event_id         TEXT NOT NULL REFERENCES events (id),
    webhook_id       TEXT NOT NULL,
    state            TEXT NOT NULL
                     CHECK (state IN ('waiting', 'pending', 'in_flight', 'succeeded', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    replay_base      INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_expires_at INTEGER,
    leased_by        TEXT,
    last_status      INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    completed_at     INTEGER,
    order_key        TEXT,
    order_seq        INTEGER
);
CREATE INDEX deliveries_due_by_webhook ON deliveries (webhook_id, next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_leases ON deliveries (lease_expires_at) WHERE state = 'in_flight';
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_dead ON deliveries (webhook_id, id) WHERE state = 'dead';
CREATE INDEX deliveries_finished ON deliveries (completed_at) WHERE state IN ('succeeded', 'dead');
CREATE INDEX deliveries_line ON deliveries (webhook_id, order_key, order_seq)
    WHERE order_key IS NOT NULL AND state IN ('waiting', 'pending', 'in_flight');
CREATE UNIQUE INDEX deliveries_line_head ON deliveries (webhook_id, order_key)
    WHERE order_key IS NOT NULL AND state IN ('pending', 'in_flight');

CREATE TABLE delivery_attempts (
    delivery_id   BLOB NOT NULL REFERENCES deliveries (id),
    attempt       INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL,
    status_code   INTEGER,
    error_kind    TEXT,
    error         TEXT,
    response_body TEXT,
    recorded_by   TEXT NOT NULL DEFAULT 'worker' CHECK (recorded_by IN ('worker', 'rescuer')),
    PRIMARY KEY (delivery_id, attempt, recorded_by)
);

-- Acceptance order of deliveries in lines (PostgreSQL: a sequence).
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('delivery_order_seq', 0);

CREATE TABLE commands (
    id              BLOB PRIMARY KEY,
    action          TEXT NOT NULL,
    params          TEXT NOT NULL,
    actor_id        TEXT NOT NULL,
    received_at     INTEGER NOT NULL,
    idempotency_key TEXT,
    event_id        TEXT NOT NULL REFERENCES events (id)
);
CREATE INDEX commands_event ON commands (event_id);

CREATE TABLE idempotency_keys (
    actor_id    TEXT NOT NULL,
    key         TEXT NOT NULL,
    body_sha256 BLOB NOT NULL,
    status      INTEGER NOT NULL,
    response    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (actor_id, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

CREATE TABLE inbound_signatures (
    actor_id   TEXT NOT NULL,
    digest     BLOB NOT NULL,
    status     INTEGER NOT NULL,
    response   TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (actor_id, digest)
);
CREATE INDEX inbound_signatures_expiry ON inbound_signatures (expires_at);

-- Append-only: the triggers refuse every UPDATE and DELETE.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    actor_id   TEXT NOT NULL,
    action     TEXT NOT NULL,
    outcome    TEXT NOT NULL CHECK (outcome IN ('accepted', 'denied', 'applied')),
    target     TEXT,
    request_id TEXT,
    source_ip  TEXT,
    event_id   TEXT REFERENCES events (id)
);
CREATE INDEX audit_log_actor ON audit_log (actor_id, at);
CREATE INDEX audit_log_event ON audit_log (event_id);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TABLE webhook_health (
    webhook_id             TEXT PRIMARY KEY,
    last_success_at        INTEGER,
    last_failure_at        INTEGER,
    last_error_kind        TEXT,
    failing_since          INTEGER,
    failures_since_success INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE webhook_minutes (
    webhook_id TEXT NOT NULL,
    minute     INTEGER NOT NULL,
    succeeded  INTEGER NOT NULL DEFAULT 0,
    failed     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (webhook_id, minute)
);

CREATE TABLE webhook_state (
    webhook_id      TEXT PRIMARY KEY,
    state           TEXT NOT NULL CHECK (state IN ('active', 'throttled', 'disabled')),
    reason          TEXT NOT NULL,
    since           INTEGER NOT NULL,
    changed_by      TEXT NOT NULL,
    throttled_until INTEGER
);

CREATE TABLE webhook_rate (
    webhook_id TEXT PRIMARY KEY,
    tokens     REAL NOT NULL,
    updated_at INTEGER NOT NULL
);
