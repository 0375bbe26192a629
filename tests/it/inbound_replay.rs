//! Inbound requests sent again, hostile action names, and identities that
//! could be confused (issue 7, items 3, 7 and 9).

use axum::http::StatusCode;
use serde_json::json;

use crate::inbound::*;
use crate::support::*;

both! {
    async fn a_replayed_signed_request_gets_the_first_answer_and_dispatches_nothing(db) {
        let app = TestApp::spawn(
            db,
            &policy("http://127.0.0.1:9/cp", "http://127.0.0.1:9/audit"),
        )
        .await;
        // No Idempotency-Key: the signature alone identifies the request.
        let first = Call::signed(APPROVE);
        let (status, answer) = send(&app, &first).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        let after_first = counts(&app).await;

        let again = Call {
            signature: first.signature.clone(),
            ..Call::signed(APPROVE)
        };
        let (status, replayed) = send(&app, &again).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(replayed, answer, "the first answer, again");

        // A fresh Idempotency-Key on the captured request changes nothing.
        let with_new_key = Call {
            signature: first.signature.clone(),
            idempotency_key: Some("attacker-chosen".into()),
            ..Call::signed(APPROVE)
        };
        let (status, replayed) = send(&app, &with_new_key).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(replayed["command_id"], answer["command_id"]);
        assert_eq!(
            counts(&app).await,
            after_first,
            "no command, audit record or event was added"
        );

        // The same command signed anew is a new request (a minute back: well
        // inside the tolerance, and never the first call's second).
        let t = now() - 60;
        let fresh = Call {
            signature: Some(sign(NEW_SECRET, t, APPROVE)),
            ..Call::signed(APPROVE)
        };
        let (status, second) = send(&app, &fresh).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_ne!(second["command_id"], answer["command_id"]);
        assert_eq!(app.count("SELECT count(*) FROM commands").await, 2);
    }
}

both! {
    async fn a_denied_action_with_nul_bytes_is_refused_and_audited_not_a_500(db) {
        let app = TestApp::spawn(
            db,
            &policy("http://127.0.0.1:9/cp", "http://127.0.0.1:9/audit"),
        )
        .await;
        let body = json!({"action": "install\u{0}module", "params": {}}).to_string();
        let (status, answer) = send(&app, &Call::signed(body.as_bytes())).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert_eq!(answer["error"]["code"], "action_not_allowed");
        let (action,): (String,) = app
            .db
            .one("SELECT action FROM audit_log WHERE outcome = 'denied'")
            .await;
        assert_eq!(action, "install\u{FFFD}module");
    }
}

both! {
    async fn a_jwt_cannot_speak_as_an_api_key_or_carry_control_characters(db) {
        let app = TestApp::spawn(
            db,
            &policy("http://127.0.0.1:9/cp", "http://127.0.0.1:9/audit"),
        )
        .await;
        for sub in ["approver", "tester", "svc\u{0}deployer", "svc\ndeployer"] {
            let mut claims = good_claims();
            claims["sub"] = json!(sub);
            let call = Call {
                bearer: Some(jwt(claims, JWT_SECRET)),
                ..Call::signed(APPROVE)
            };
            let (status, answer) = send(&app, &call).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{sub:?}: {answer}");
        }
        assert_eq!(counts(&app).await, (0, 0, 0));
        // The same token with its own subject is accepted.
        let call = Call {
            bearer: Some(jwt(good_claims(), JWT_SECRET)),
            ..Call::signed(APPROVE)
        };
        assert_eq!(send(&app, &call).await.0, StatusCode::ACCEPTED);
    }
}
