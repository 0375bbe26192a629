//! Retention (issue 9, item 6): only old finished deliveries go, with their
//! attempts and the events they leave behind; pending rows and audit
//! records stay.

use aion_webhooks::retention::run_once;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support::*;

both! {
    async fn retention_deletes_only_old_finished_work_and_never_audit_records(db) {
        let ok = Receiver::start().await;
        let once = "retry: { initial_interval: 10ms, max_interval: 10ms, max_attempts: 1 }";
        let yaml = policy_yaml(&format!(
            "{}{}{}",
            hook("ok", &ok.url, "[s.x]", ""),
            hook("bad", "http://127.0.0.1:9/", "[d.x]", once),
            hook("off", &ok.url, "[p.x]", "enabled: false")
        )) + "retention:\n  succeeded: 1h\n  dead: 2h\n";
        let app = TestApp::spawn(db.clone(), &yaml).await;
        for topic in ["s.x", "s.x", "d.x", "p.x", "none.x"] {
            app.post_events(&json!({"topic": topic, "payload": 1}))
                .await;
        }
        // A denial leaves an audit record and an audit event.
        app.post_raw("/v1/policy/reload", PUBLISHER_KEY, Vec::new())
            .await;
        ok.wait_for_count(2).await;
        // Outcomes are recorded a little after the receiver answers (they gather
        // for a few milliseconds), so wait for the rows, not the requests.
        wait_for("the two successes and the dead letter", || async {
            app.count("SELECT count(*) FROM deliveries WHERE state = 'succeeded'")
                .await
                == 2
                && app
                    .count("SELECT count(*) FROM deliveries WHERE state = 'dead'")
                    .await
                    == 1
        })
        .await;
        let audit_before = app.count("SELECT count(*) FROM audit_log").await;
        assert_eq!(audit_before, 1);

        let store = db.store();
        let policy = app.policy.load_full();
        let meters = aion_webhooks::app::Meters::default();
        let never = CancellationToken::new();
        let pass = || run_once(&store, &policy, &meters.retention, &never);

        // Nothing is old yet.
        assert_eq!(pass().await.expect("pass").deliveries, 0);
        // Everything finished 90 minutes ago: past `succeeded`, not past `dead`.
        db.execute(&format!(
            "UPDATE deliveries SET completed_at = {}, created_at = {}",
            db.ago(90 * 60),
            db.ago(86_400)
        ))
        .await;
        db.execute(&format!("UPDATE events SET received_at = {}", db.ago(90 * 60)))
            .await;
        let purged = pass().await.expect("pass");
        assert_eq!(purged.deliveries, 2, "the two old successes");
        assert_eq!(purged.attempts, 2);
        assert_eq!(
            purged.events, 3,
            "their events had nothing else, and the one that matched no webhook"
        );
        assert_eq!(
            app.count("SELECT count(*) FROM events WHERE topic = 'none.x'")
                .await,
            0
        );
        let left: Vec<(String, String)> = db
            .all("SELECT webhook_id, state FROM deliveries ORDER BY webhook_id")
            .await;
        assert_eq!(
            left,
            [
                ("bad".to_owned(), "dead".to_owned()),
                ("off".to_owned(), "pending".to_owned())
            ]
        );

        db.execute(&format!(
            "UPDATE deliveries SET completed_at = {} WHERE state = 'dead'",
            db.ago(3 * 3600)
        ))
        .await;
        let purged = pass().await.expect("pass");
        assert_eq!((purged.deliveries, purged.events), (1, 1));
        assert_eq!(
            app.count("SELECT count(*) FROM deliveries WHERE state = 'pending'")
                .await,
            1,
            "pending work is never deleted, however old"
        );
        assert_eq!(
            app.count("SELECT count(*) FROM audit_log").await,
            audit_before
        );
        assert_eq!(
            app.count("SELECT count(*) FROM events WHERE topic = 'aion.audit.activity'")
                .await,
            1,
            "an audit record's event stays"
        );
        let text = meters.engine.render();
        assert!(
            text.contains("aion_webhooks_retention_deleted_total{kind=\"events\"} 4"),
            "{text}"
        );
    }
}

both! {
    async fn rejected_bus_messages_are_kept_as_long_as_dead_deliveries(db) {
        use aion_webhooks::store::NewReject;
        // No workers: the engine's own retention pass must not race this one.
        let mut config = test_config();
        config.run_workers = false;
        let yaml = policy_yaml(&hook("h", "http://127.0.0.1:9/", "[a.b]", "")) + "retention:\n  dead: 2h\n";
        let app = TestApp::spawn_with(db.clone(), &yaml, config).await;
        let store = db.store();
        let now = chrono::Utc::now();
        let old = now - chrono::Duration::hours(3);
        let rejects = vec![
            NewReject::new("bus", "nats:S:1".into(), "old".into(), b"x", old),
            NewReject::new("bus", "nats:S:2".into(), "recent".into(), b"y", now - chrono::Duration::hours(1)),
        ];
        store.record_rejects(&rejects).await.expect("record");
        // The same position again (a redelivery) is recorded once.
        store.record_rejects(&rejects[..1]).await.expect("record again");
        assert_eq!(app.count("SELECT count(*) FROM source_rejects").await, 2);
        let policy = app.policy.load_full();
        let meters = aion_webhooks::app::Meters::default();
        let p = run_once(&store, &policy, &meters.retention, &CancellationToken::new()).await.expect("pass");
        assert_eq!(p.rejects, 1);
        let left = store.list_rejects("bus", None, 10).await.expect("list");
        assert_eq!(left.iter().map(|r| r.reason.as_str()).collect::<Vec<_>>(), ["recent"]);
        app.stop().await;
    }
}
