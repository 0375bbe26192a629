-- Event-bus sources (issue 11, contract §9): messages that could not become
-- events, recorded before their position is committed. See the PostgreSQL
-- migration of the same name; `at` is milliseconds since the epoch.
CREATE TABLE source_rejects (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id   TEXT NOT NULL,
    position    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    value       BLOB NOT NULL,
    value_bytes INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    UNIQUE (source_id, position)
);
CREATE INDEX source_rejects_by_source ON source_rejects (source_id, id);
