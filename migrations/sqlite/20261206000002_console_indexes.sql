-- Issue 28 (console): searches by webhook and by topic, newest first, stay
-- index lookups with 1,000,000 deliveries. SQLite has no parallel scan to
-- fall back on: a rare webhook or topic took 1 s without these, ~1 ms with
-- (examples/console_load.rs).
CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id, id);
CREATE INDEX events_topic ON events (topic);
