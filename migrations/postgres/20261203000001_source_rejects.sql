-- Event-bus sources (issue 11, contract §9): a message that cannot become an
-- event is recorded here before its position is committed or acknowledged,
-- so no message disappears unrecorded. One row per (source, position): a
-- message redelivered after a crash between this insert and the commit is
-- recorded once. `value` holds at most the first 4 KiB of the message;
-- `value_bytes` is its whole size.
CREATE TABLE source_rejects (
    id          BIGSERIAL PRIMARY KEY,
    source_id   TEXT NOT NULL,
    position    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    value       BYTEA NOT NULL,
    value_bytes BIGINT NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    UNIQUE (source_id, position)
);
CREATE INDEX source_rejects_by_source ON source_rejects (source_id, id);
