//! Each origin has its own event-id space (issue 27, item 2; contract §9):
//! the ids the bus sources derive from a message's position
//! (`nats:<stream>:<seq>`, `kafka:<topic>:<p>:<o>`) cannot be taken by a
//! publisher through the API, nor by a bus envelope or `Nats-Msg-Id` naming
//! another position, so nobody can suppress a message that has not arrived.

use axum::http::StatusCode;
use serde_json::json;

use crate::sources::{TestStream, by_event_id, source_view, with_sources};
use crate::support::*;

both! {
    async fn a_publisher_cannot_take_the_id_of_a_future_bus_message(db) {
        let stream = TestStream::new().await;
        let rx = Receiver::start().await;
        let policy = with_sources(
            &hook("h", &rx.url, "[\"**\"]", ""),
            &stream.source("bus", "c", ">", "accept_audit_topics: true"),
        );
        let app = TestApp::spawn(db, &policy).await;
        let future = [
            format!("nats:{}:1", stream.name),
            format!("nats:{}:2", stream.name),
            "kafka:orders:0:0".to_owned(),
        ];
        for id in &future {
            let (status, body) = app
                .post_raw(
                    "/v1/events",
                    PUBLISHER_KEY,
                    json!({"id": id, "topic": "orders.created", "payload": {"stolen": true}})
                        .to_string()
                        .into_bytes(),
                )
                .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{id}: {body}");
            assert_eq!(
                (&body["error"]["code"], &body["error"]["field"]),
                (&json!("invalid_event"), &json!("id")),
                "{body}"
            );
            assert!(body["error"]["message"].as_str().unwrap_or_default().contains("derived"), "{body}");
        }
        // In a batch, the whole batch is refused and the member named.
        let (status, body) = app
            .post_raw(
                "/v1/events",
                PUBLISHER_KEY,
                json!([{"id": "fine-1", "topic": "orders.created", "payload": 1},
                       {"id": future[0], "topic": "orders.created", "payload": 2}])
                .to_string()
                .into_bytes(),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["field"], "[1].id", "{body}");
        assert_eq!(app.count("SELECT count(*) FROM events").await, 0);

        // The bus messages then arrive: both stored as themselves (one an
        // audit envelope), none a conflict. A third names another position
        // of the stream as its id: refused, recorded as a reject.
        stream
            .publish("audit", json!({"event_type": "aion.audit.activity", "payload": {"actor_id": "root"}}).to_string())
            .await;
        stream
            .publish("orders", json!({"event_type": "orders.created", "payload": {"real": true}}).to_string())
            .await;
        stream
            .publish("orders", json!({"event_type": "orders.created", "event_id": format!("nats:{}:9", stream.name), "payload": 3}).to_string())
            .await;
        wait_for("both messages delivered and the third rejected", || async {
            let seen = by_event_id(&rx);
            seen.contains_key(&future[0]) && seen.contains_key(&future[1])
                && source_view(&app, "bus").await["rejects"] == 1
        })
        .await;
        let (status, event) = app.get(&format!("/v1/events/{}", future[1])).await;
        assert_eq!(status, StatusCode::OK, "{event}");
        assert_eq!(event["payload"], json!({"real": true}), "{event}");
        let view = source_view(&app, "bus").await;
        assert_eq!(view["duplicates"], 0, "no conflict with a publisher's event: {view}");
        let (_, rejects) = app.get("/v1/sources/bus/rejects").await;
        let reason = rejects["data"][0]["reason"].as_str().unwrap_or_default().to_owned();
        assert!(reason.contains("id") && reason.contains("derived"), "{reason}");
        app.stop().await;
        stream.delete().await;
    }
}
