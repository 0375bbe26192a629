//! The queue's transitions against the real store: outcomes that cannot be
//! stored, late outcomes after a rescue, releases that use no budget.

use std::time::Duration;

use aion_webhooks::delivery::worker::record_outcomes;
use aion_webhooks::store::{
    AttemptRecord, Claimed, Completion, DeliveryState, NewEvent, Recipient, Store, WebhookSlot,
};
use chrono::Utc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db::TestDb;

async fn store_with_deliveries(db: &TestDb, n: usize) -> Store {
    let store = db.store();
    store.migrate().await.expect("migrate");
    add_deliveries(&store, "e", "h", n).await;
    store
}

async fn add_deliveries(store: &Store, prefix: &str, webhook: &str, n: usize) {
    let now = Utc::now();
    let events: Vec<NewEvent> = (0..n)
        .map(|i| NewEvent {
            id: format!("{prefix}{i}"),
            topic: "a.b".into(),
            payload: i.to_string(),
            body: format!("{{\"payload\":{i}}}").into_bytes(),
            occurred_at: now,
            tenant_id: None,
            source: None,
            key: None,
            trace_id: None,
            meta: Default::default(),
            notes: Default::default(),
            webhooks: vec![Recipient::unordered(webhook)],
        })
        .collect();
    store.insert_events(&events, now).await.expect("insert");
}

async fn claim(store: &Store, lease: Duration) -> Vec<Claimed> {
    let slot = WebhookSlot {
        webhook_id: "h".into(),
        room: 100,
        lease,
    };
    store.claim(&[slot], 100, "engine-a").await.expect("claim")
}

fn outcome(id: Uuid, attempt: i32, state: DeliveryState, body: &str) -> Completion {
    Completion {
        id,
        webhook_id: "h".into(),
        attempt,
        state,
        retry_in: (state == DeliveryState::Pending).then_some(Duration::from_secs(60)),
        record: AttemptRecord {
            started_at: Utc::now(),
            duration: Duration::from_millis(3),
            status: Some(if state == DeliveryState::Succeeded {
                200
            } else {
                500
            }),
            error_kind: (state != DeliveryState::Succeeded).then_some("http_status"),
            error: (state != DeliveryState::Succeeded).then(|| "HTTP 500".to_owned()),
            response_body: Some(body.to_owned()),
        },
        in_line: false,
    }
}

async fn state_of(db: &TestDb, id: Uuid) -> (String, i32) {
    let rows: Vec<(Uuid, String, i32)> = db.all("SELECT id, state, attempts FROM deliveries").await;
    rows.into_iter()
        .find(|r| r.0 == id)
        .map(|(_, state, attempts)| (state, attempts))
        .expect("delivery")
}

both! {
    async fn a_row_that_cannot_be_stored_never_blocks_the_rest_of_its_batch(db) {
        let store = store_with_deliveries(&db, 3).await;
        let claimed = claim(&store, Duration::from_secs(60)).await;
        assert_eq!(claimed.len(), 3);
        let mut batch: Vec<Completion> = claimed
            .iter()
            .map(|c| outcome(c.id, c.attempt, DeliveryState::Succeeded, "ok\0with NUL"))
            .collect();
        // An outcome whose delivery does not exist (as if retention had
        // deleted it): on SQLite its attempt row violates the foreign key
        // however often it is tried; PostgreSQL has no foreign key on the
        // delivery path (migration narrow_writes) and keeps the row alone.
        batch.insert(
            1,
            outcome(Uuid::now_v7(), 1, DeliveryState::Succeeded, "orphan"),
        );
        let finished = tokio::time::timeout(
            Duration::from_secs(30),
            record_outcomes(&store, &batch, &CancellationToken::new()),
        )
        .await
        .expect("record_outcomes gives up on the bad row instead of retrying it forever");
        assert!(finished);
        for c in &claimed {
            assert_eq!(state_of(&db, c.id).await.0, "succeeded");
        }
        let bodies: Vec<(String,)> = db
            .all("SELECT response_body FROM delivery_attempts ORDER BY response_body")
            .await;
        let mut expected = vec![("ok\u{FFFD}with NUL".to_owned(),); 3];
        if matches!(db, TestDb::Postgres(_)) {
            expected.push(("orphan".to_owned(),));
        }
        assert_eq!(bodies, expected);
    }
}

both! {
    async fn a_late_outcome_after_a_rescue_is_kept_beside_the_rescuers_row(db) {
        let store = store_with_deliveries(&db, 2).await;
        let claimed = claim(&store, Duration::from_millis(1)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(store.rescue_expired().await.expect("rescue"), 2);
        let (first, second) = (&claimed[0], &claimed[1]);

        // The second delivery is claimed again before its first outcome arrives.
        let again = claim(&store, Duration::from_secs(60)).await;
        assert_eq!(again.len(), 2, "both were due again");
        let second_again = again.iter().find(|c| c.id == second.id).expect("second");
        assert_eq!(second_again.attempt, 2);
        // Put the first back as the rescuer left it (pending, nobody's), so
        // only the second is held by a new claim.
        let first_again = again.iter().find(|c| c.id == first.id).expect("first");
        store
            .release(first_again.id, first_again.attempt, Duration::ZERO)
            .await
            .expect("release");

        let late = [
            outcome(first.id, 1, DeliveryState::Succeeded, "late but fine"),
            outcome(second.id, 1, DeliveryState::Succeeded, "late, superseded"),
        ];
        store.complete(&late, Utc::now()).await.expect("complete");

        let rows: Vec<(Uuid, i32, String, Option<String>)> = db
            .all(
                "SELECT delivery_id, attempt, recorded_by, error_kind FROM delivery_attempts
                 ORDER BY delivery_id, attempt, recorded_by",
            )
            .await;
        for id in [first.id, second.id] {
            let mine: Vec<(i32, &str, Option<&str>)> = rows
                .iter()
                .filter(|r| r.0 == id)
                .map(|r| (r.1, r.2.as_str(), r.3.as_deref()))
                .collect();
            assert_eq!(
                mine,
                [(1, "rescuer", Some("lease_expired")), (1, "worker", None)],
                "both records of attempt 1 are kept"
            );
        }
        assert_eq!(
            state_of(&db, first.id).await,
            ("succeeded".into(), 1),
            "nobody claimed it since the rescue: the real outcome stands"
        );
        assert_eq!(
            state_of(&db, second.id).await,
            ("in_flight".into(), 2),
            "the new holder keeps it"
        );
    }
}

both! {
    async fn a_release_gives_the_delivery_back_with_its_budget_intact(db) {
        let store = store_with_deliveries(&db, 1).await;
        let claimed = claim(&store, Duration::from_secs(60)).await;
        assert_eq!(claimed[0].attempt, 1);
        store
            .release(claimed[0].id, claimed[0].attempt, Duration::ZERO)
            .await
            .expect("release");
        assert_eq!(state_of(&db, claimed[0].id).await, ("pending".into(), 0));
        let attempts = db.count("SELECT count(*) FROM delivery_attempts").await;
        assert_eq!(attempts, 0, "nothing was sent, so nothing is recorded");
        let again = claim(&store, Duration::from_secs(60)).await;
        assert_eq!(again[0].attempt, 1, "the next attempt is still the first");
    }
}

both! {
    async fn a_claim_shares_its_batch_round_robin_across_webhooks(db) {
        let store = db.store();
        store.migrate().await.expect("migrate");
        // busy's 100 due deliveries are all older than ok's 5.
        add_deliveries(&store, "busy-", "busy", 100).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        add_deliveries(&store, "ok-", "ok", 5).await;
        let slot = |id: &str| WebhookSlot {
            webhook_id: id.into(),
            room: 100,
            lease: Duration::from_secs(60),
        };
        let claimed = store
            .claim(&[slot("busy"), slot("ok")], 10, "engine-a")
            .await
            .expect("claim");
        let ok = claimed.iter().filter(|c| c.webhook_id == "ok").count();
        assert_eq!(claimed.len(), 10);
        assert_eq!(ok, 5, "every due delivery of ok is in the first batch");
        // Within a webhook, the oldest due go first.
        let mut busy: Vec<&str> = claimed
            .iter()
            .filter(|c| c.webhook_id == "busy")
            .map(|c| c.event_id.as_str())
            .collect();
        busy.sort_unstable();
        assert_eq!(busy.len(), 5);
    }
}
