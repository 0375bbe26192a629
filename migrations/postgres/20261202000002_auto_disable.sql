-- Auto-disable (issue 15, item 4): how long a webhook has failed every
-- attempt. `failing_since` is the first failure after the last success
-- (NULL while it succeeds), `failures_since_success` counts those failures;
-- both are maintained by the statement that records outcomes.
ALTER TABLE webhook_health
    ADD COLUMN failing_since TIMESTAMPTZ,
    ADD COLUMN failures_since_success INTEGER NOT NULL DEFAULT 0;
UPDATE webhook_health SET failing_since = last_failure_at
WHERE last_failure_at IS NOT NULL
  AND (last_success_at IS NULL OR last_success_at < last_failure_at);

-- Throttling (issue 15, item 2): a receiver's `Retry-After` on 429/503
-- pauses the whole endpoint until then, on every engine.
ALTER TABLE webhook_state ADD COLUMN throttled_until TIMESTAMPTZ;

-- Rate limits (issue 15, item 5): one token bucket per rate-limited
-- webhook, shared by every engine on the database and refilled by the
-- database's clock. Engines take tokens before they claim.
CREATE TABLE webhook_rate (
    webhook_id TEXT PRIMARY KEY,
    tokens     DOUBLE PRECISION NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
