-- Event contracts (issue 16): the envelope's `event_version`, the schema
-- errors of an event accepted in `warn` mode (a JSON array), and the W3C
-- traceparent its attempts are parented on (the engine's ingest span, or
-- the producer's own when tracing is off). All three are written once, at
-- ingest, and never changed.
ALTER TABLE events
    ADD COLUMN version       text,
    ADD COLUMN schema_errors text,
    ADD COLUMN traceparent   text;
