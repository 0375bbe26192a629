//! Today's data through this release's migrations: a PostgreSQL database
//! migrated as the previous release left it, holding rows of every
//! delivery state and every ordering, rate and endpoint state, keeps every
//! row and value, and reads the same through the store afterwards.

use std::borrow::Cow;

use aion_webhooks::store::{InsertOutcome, NewEvent, Store};
use chrono::Utc;
use sqlx::PgPool;

/// The first migration of this release (issue 31).
const FIRST_NEW: i64 = 20261207000001;

/// Every table the migrations keep data in, as text, row by row.
const TABLES: &[&str] = &[
    "events",
    "deliveries",
    "delivery_attempts",
    "webhook_state",
    "webhook_rate",
    "webhook_health",
    "webhook_minutes",
];

async fn migrate_as_before(pool: &PgPool) {
    let mut migrator = sqlx::migrate::Migrator::new(std::path::Path::new("migrations/postgres"))
        .await
        .expect("migrations");
    let before: Vec<_> = migrator
        .iter()
        .filter(|m| m.version < FIRST_NEW)
        .cloned()
        .collect();
    assert!(
        before.len() < migrator.iter().count(),
        "this release adds a migration"
    );
    migrator.migrations = Cow::Owned(before);
    migrator
        .run(pool)
        .await
        .expect("the previous release's migrations");
}

/// Rows as the previous release wrote them: events with their payload text
/// in `payload`, deliveries in each state (two of them in an ordering
/// line), attempts by the worker and the rescuer, and webhook states.
const PREVIOUS_ROWS: &str = r#"
INSERT INTO events (id, topic, payload, body, occurred_at, received_at, key)
SELECT 'old-' || s, 'a.b', '{"n": "' || s || '"}',
       convert_to('{"id":"old-' || s || '","topic":"a.b","payload":{"n":"' || s || '"}}', 'UTF8'),
       now(), now(), CASE WHEN s IN ('waiting', 'pending') THEN 'k' END
FROM unnest(ARRAY['waiting', 'pending', 'in_flight', 'succeeded', 'dead']) AS s;
INSERT INTO deliveries (id, event_id, webhook_id, state, attempts, next_attempt_at, lease_expires_at,
                        leased_by, last_status, last_error, created_at, updated_at, completed_at,
                        order_key, order_seq)
SELECT gen_random_uuid(), 'old-' || s, 'h', s,
       CASE s WHEN 'waiting' THEN 0 WHEN 'pending' THEN 1 ELSE 2 END,
       now(), CASE WHEN s = 'in_flight' THEN now() + interval '1 minute' END,
       CASE WHEN s = 'in_flight' THEN 'engine-1' END,
       CASE WHEN s IN ('succeeded', 'dead') THEN 200 END,
       CASE WHEN s = 'dead' THEN 'status 500' END, now(), now(),
       CASE WHEN s IN ('succeeded', 'dead') THEN now() END,
       CASE WHEN s IN ('waiting', 'pending') THEN 'k' END,
       CASE s WHEN 'pending' THEN 1 WHEN 'waiting' THEN 2 END
FROM unnest(ARRAY['waiting', 'pending', 'in_flight', 'succeeded', 'dead']) AS s;
INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error_kind,
                               error, response_body, recorded_by)
SELECT id, 1, now(), 12, 500, 'status', 'status 500', 'no', 'worker' FROM deliveries WHERE attempts > 0;
INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, error_kind, error, recorded_by)
SELECT id, 2, now(), 0, 'lease_expired', 'lost', 'rescuer' FROM deliveries WHERE attempts > 1;
INSERT INTO webhook_state (webhook_id, state, reason, since, changed_by, throttled_until, note)
VALUES ('h', 'active', 'policy', now(), 'engine', NULL, NULL),
       ('t', 'throttled', '429', now(), 'engine', now() + interval '1 minute', NULL),
       ('d', 'disabled', 'failing', now(), 'admin', NULL, 'gone');
INSERT INTO webhook_rate (webhook_id, tokens, updated_at) VALUES ('h', 2.5, now());
INSERT INTO webhook_health (webhook_id, last_success_at, last_failure_at, last_error_kind,
                            failing_since, failures_since_success)
VALUES ('h', now(), now(), 'status', now(), 3);
INSERT INTO webhook_minutes (webhook_id, minute, succeeded, failed)
VALUES ('h', date_trunc('minute', now()), 4, 1);
"#;

async fn snapshot(pool: &PgPool) -> Vec<(String, Vec<String>)> {
    let mut all = Vec::new();
    for table in TABLES {
        let rows: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT to_jsonb(t)::text FROM {table} t ORDER BY 1"
        ))
        .fetch_all(pool)
        .await
        .expect("rows");
        assert!(!rows.is_empty(), "{table} holds rows before the migration");
        all.push(((*table).to_owned(), rows));
    }
    all
}

fn new_event(id: &str, payload: &str) -> NewEvent {
    NewEvent {
        payload: payload.into(),
        body: format!("{{\"id\":\"{id}\",\"topic\":\"a.b\",\"payload\":{payload}}}").into_bytes(),
        ..crate::support::plain_event(id.into())
    }
}

pg_test! {
    async fn rows_of_every_state_keep_every_value_through_the_migration(pool) {
        migrate_as_before(&pool).await;
        sqlx::raw_sql(PREVIOUS_ROWS).execute(&pool).await.expect("previous rows");
        let before = snapshot(&pool).await;

        let store = Store::from_pool(pool.clone());
        store.migrate().await.expect("this release's migrations");
        assert_eq!(snapshot(&pool).await, before, "no row or value changed");

        // Read through the store: the old rows' payloads, deliveries and attempts.
        let old = store.get_event("old-dead").await.expect("read").expect("event");
        assert_eq!(old.payload, r#"{"n": "dead"}"#, "the text in the payload column");
        let dead: uuid::Uuid = sqlx::query_scalar("SELECT id FROM deliveries WHERE event_id = 'old-dead'")
            .fetch_one(&pool)
            .await
            .expect("id");
        let (row, attempts) = store.get_delivery(dead).await.expect("read").expect("delivery");
        assert_eq!((row.state.as_str(), attempts.len()), ("dead", 2));

        // The delivery path's foreign keys are gone (their names were right),
        // the others stay.
        let fks: Vec<String> = sqlx::query_scalar(
            "SELECT conname::text FROM pg_constraint WHERE contype = 'f' ORDER BY 1",
        )
        .fetch_all(&pool)
        .await
        .expect("constraints");
        assert_eq!(fks, ["audit_log_event_id_fkey", "commands_event_id_fkey"]);

        // An old row is still a duplicate of the same content re-sent, and a
        // conflict for other content.
        let same = store
            .insert_events(&[new_event("old-dead", r#"{"n":"dead"}"#)], Utc::now())
            .await
            .expect("same content re-sent");
        assert!(matches!(same.outcomes[..], [InsertOutcome::Duplicate { deliveries: 1 }]));
        let other = store.insert_events(&[new_event("old-dead", r#"{"n":1}"#)], Utc::now()).await;
        assert!(other.is_err(), "other content under the same id: {other:?}");
    }
}

both! {
    async fn a_payload_is_stored_once_in_the_body_and_read_back_byte_for_byte(db) {
        let store = db.store();
        store.migrate().await.expect("migrate");
        let spelled = r#"{ "b" : 1.50, "a":[ ], "s": "\u00e9" }"#;
        store.insert_events(&[new_event("e1", spelled)], Utc::now()).await.expect("insert");
        assert_eq!(db.count("SELECT count(*) FROM events WHERE id = 'e1' AND payload = ''").await, 1);
        let read = store.get_event("e1").await.expect("read").expect("event");
        assert_eq!(read.payload, spelled);
        // Re-sent with the same value spelled otherwise: a duplicate; with
        // another value: a conflict, and the stored event unchanged.
        let respelled = store
            .insert_events(&[new_event("e1", r#"{"a":[],"b":1.5,"s":"é"}"#)], Utc::now())
            .await
            .expect("a duplicate");
        assert!(matches!(respelled.outcomes[..], [InsertOutcome::Duplicate { deliveries: 1 }]));
        let other = store.insert_events(&[new_event("e1", r#"{"a":[]}"#)], Utc::now()).await;
        assert!(other.is_err(), "{other:?}");
        let read = store.get_event("e1").await.expect("read").expect("event");
        assert_eq!(read.payload, spelled);
    }
}
