-- Runtime endpoint state (issue 15, item 3): a webhook disabled at runtime
-- keeps its deliveries pending (not sent, no attempts used) until enabled.
-- Kept apart from the policy file, so it survives restarts and reloads. A
-- webhook without a row is active. `throttled` is reserved for adaptive
-- throttling (issue 15, item 2).
CREATE TABLE webhook_state (
    webhook_id TEXT PRIMARY KEY,
    state      TEXT NOT NULL CHECK (state IN ('active', 'throttled', 'disabled')),
    reason     TEXT NOT NULL,
    since      TIMESTAMPTZ NOT NULL,
    changed_by TEXT NOT NULL
);
