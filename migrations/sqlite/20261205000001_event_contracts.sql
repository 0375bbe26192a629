-- Event contracts (issue 16): see the PostgreSQL migration of the same name.
ALTER TABLE events ADD COLUMN version TEXT;
ALTER TABLE events ADD COLUMN schema_errors TEXT;
ALTER TABLE events ADD COLUMN traceparent TEXT;
