-- Ordering per key (issue 15, item 6). A webhook with `ordering: key` gets
-- each keyed event's delivery in a line: (webhook_id, order_key), ordered by
-- order_seq, the acceptance order. Only a line's head is `pending` or
-- `in_flight`; the deliveries behind it are `waiting` (never claimed) and the
-- one with the lowest order_seq is promoted when the head finishes. Every
-- writer that can leave a line without a head (ingest, finishing, replay)
-- promotes under a transaction-scoped advisory lock on the line, after its
-- own changes, so the last promoter always sees the others' rows.
-- Rows without a line (no ordering, or no key) have both columns NULL.
ALTER TABLE deliveries
    ADD COLUMN order_key TEXT,
    ADD COLUMN order_seq BIGINT;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_state_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_state_check
    CHECK (state IN ('waiting', 'pending', 'in_flight', 'succeeded', 'dead'));

-- Acceptance order: one value per ingest statement, times 2^20, plus the
-- event's place in the call. A statement that starts after another committed
-- draws a larger value, so a producer that waits for each 202 sees its
-- events in the order it sent them.
CREATE SEQUENCE delivery_order_seq;

-- A line's unfinished deliveries, by place: the promoter's "is there a head"
-- and "who is next" are one short range each.
CREATE INDEX deliveries_line ON deliveries (webhook_id, order_key, order_seq)
    WHERE order_key IS NOT NULL AND state IN ('waiting', 'pending', 'in_flight');
-- At most one head per line, whatever happens: a bug would be an error,
-- never two deliveries of one key in flight at once.
CREATE UNIQUE INDEX deliveries_line_head ON deliveries (webhook_id, order_key)
    WHERE order_key IS NOT NULL AND state IN ('pending', 'in_flight');
