-- Issue 31: less database work per delivery.
--
-- The foreign keys deliveries -> events and delivery_attempts -> deliveries
-- cost every delivery two row locks (each a WAL record) and two lookups
-- through the constraint triggers, and they guard nothing the engine does
-- not already keep:
-- - a delivery is only ever inserted by the statement that inserts its
--   event (store/postgres/events.rs: `WHERE d.event_id IN (SELECT id FROM
--   ins)`), and retention deletes an event only once no delivery names it;
-- - an attempt is recorded for a delivery the engine holds (claimed or
--   leased at ingest, or the rescuer's own rows), and retention deletes a
--   delivery's attempts with it. An outcome arrives after its delivery was
--   purged only when an engine held it for longer than the retention
--   period (say, cut off from the database for longer than a very short
--   `retention.succeeded`, while another engine rescued, sent and finished
--   the delivery); its attempt row is then kept alone, where the foreign
--   key refused it. The completion does not look the delivery up: see
--   queue.rs.
-- The other foreign keys (commands, audit_log -> events) stay: they are
-- not on the delivery path.
ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_event_id_fkey;
ALTER TABLE delivery_attempts DROP CONSTRAINT IF EXISTS delivery_attempts_delivery_id_fkey;

-- A delivery's row is written once and then rewritten by its outcome, soon
-- after. With every page filled by inserts, that new version lands on
-- another page: the whole row goes to the WAL and two pages are touched.
-- With room left on each page, it stays beside the old one (and the WAL
-- record holds only the changed middle of the row); pruning reclaims the old
-- versions in place. Measured on this machine: 900 -> 820 WAL bytes per
-- row written and completed. New pages only; nothing is rewritten.
ALTER TABLE deliveries SET (fillfactor = 60);
