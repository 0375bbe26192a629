-- Inbound commands, their idempotency keys, and the audit log (contract §4, §5).

-- One row per accepted command; its dispatch event is written in the same
-- transaction (`event_id`), so a stored command is always on its way.
CREATE TABLE commands (
    id              UUID PRIMARY KEY,
    action          TEXT NOT NULL,
    params          TEXT NOT NULL,
    actor_id        TEXT NOT NULL,
    received_at     TIMESTAMPTZ NOT NULL,
    idempotency_key TEXT,
    event_id        TEXT NOT NULL REFERENCES events (id)
);

-- First answer per (caller, Idempotency-Key), kept 24 h. The primary key is
-- what makes concurrent duplicates wait for the first and then replay it.
CREATE TABLE idempotency_keys (
    actor_id    TEXT NOT NULL,
    key         TEXT NOT NULL,
    body_sha256 BYTEA NOT NULL,
    status      INTEGER NOT NULL,
    response    TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (actor_id, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

-- Append-only: the trigger refuses every UPDATE and DELETE.
CREATE TABLE audit_log (
    id         BIGSERIAL PRIMARY KEY,
    at         TIMESTAMPTZ NOT NULL,
    actor_id   TEXT NOT NULL,
    action     TEXT NOT NULL,
    outcome    TEXT NOT NULL CHECK (outcome IN ('accepted', 'denied', 'applied')),
    target     TEXT,
    request_id TEXT,
    source_ip  TEXT,
    event_id   TEXT REFERENCES events (id)
);
CREATE INDEX audit_log_actor ON audit_log (actor_id, at);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
