//! `POST /webhooks/inbound`: every refusal in the contract's order (status,
//! JSON error, nothing stored), acceptance and durable dispatch, audit
//! events, idempotency (also concurrent), secret rotation, and no secret in
//! the logs.

use std::sync::Arc;

use axum::http::StatusCode;
use hmac::{Hmac, Mac};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::support::*;

pub(crate) const NEW_SECRET: &str = "inbound-secret-new-0123456789";
pub(crate) const OLD_SECRET: &str = "inbound-secret-old-9876543210";
pub(crate) const JWT_SECRET: &str = "jwt-secret-for-tests-0123456789abcdef";
pub(crate) const APPROVER_KEY: &str = "approver-key-31337";
pub(crate) const NOBODY_KEY: &str = "key-without-inbound-roles";

pub(crate) fn policy(control_plane: &str, audit: &str) -> String {
    format!(
        "version: 1
webhooks:
  - id: control-plane
    url: {control_plane}
    secret: cp-secret
    topics: [\"command.*\"]
  - id: audit-sink
    url: {audit}
    secret: audit-secret
    topics: [\"aion.audit.**\"]
inbound:
  secrets: [{NEW_SECRET}, {OLD_SECRET}]
  tolerance: 5m
  actions:
    approve_kernel_proposal: {{ roles: [kernel-approver] }}
    install_module: {{ roles: [module-admin] }}
auth:
  api_keys:
    - {{ id: approver, sha256: \"{}\", roles: [kernel-approver] }}
    - {{ id: nobody, sha256: \"{}\", roles: [publisher] }}
    - {{ id: tester, sha256: \"{}\", roles: [publisher, admin] }}
  jwt:
    issuer: https://id.example.com
    audience: aion-webhooks
    hs256_secret: {JWT_SECRET}
network:
  allow_private_targets: [127.0.0.0/8]
",
        sha256_hex(APPROVER_KEY),
        sha256_hex(NOBODY_KEY),
        sha256_hex(API_KEY)
    )
}

pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub(crate) fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

pub(crate) fn jwt(claims: Value, secret: &str) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("jwt")
}

pub(crate) fn good_claims() -> Value {
    json!({"iss": "https://id.example.com", "aud": "aion-webhooks", "sub": "svc-deployer", "exp": now() + 300, "roles": ["kernel-approver"]})
}

pub(crate) const APPROVE: &[u8] =
    br#"{"action": "approve_kernel_proposal", "params": {"proposal_id": "kp-42"}}"#;

pub(crate) struct Call {
    pub body: Vec<u8>,
    pub signature: Option<String>,
    pub bearer: Option<String>,
    pub idempotency_key: Option<String>,
}

impl Call {
    pub fn signed(body: &[u8]) -> Self {
        Self {
            body: body.to_vec(),
            signature: Some(sign(NEW_SECRET, now(), body)),
            bearer: Some(APPROVER_KEY.into()),
            idempotency_key: None,
        }
    }
}

pub(crate) async fn send(app: &TestApp, call: &Call) -> (StatusCode, Value) {
    let mut req = app
        .http
        .post(format!("{}/webhooks/inbound", app.base))
        .header("content-type", "application/json")
        .body(call.body.clone());
    if let Some(s) = &call.signature {
        req = req.header("x-aion-signature", s);
    }
    if let Some(b) = &call.bearer {
        req = req.bearer_auth(b);
    }
    if let Some(k) = &call.idempotency_key {
        req = req.header("idempotency-key", k);
    }
    let r = req.send().await.expect("send");
    let status = StatusCode::from_u16(r.status().as_u16()).expect("status");
    (status, r.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn counts(app: &TestApp) -> (i64, i64, i64) {
    (
        app.count("SELECT count(*) FROM commands").await,
        app.count("SELECT count(*) FROM audit_log").await,
        app.count("SELECT count(*) FROM events").await,
    )
}

both! {
    async fn every_refusal_follows_the_check_order_and_stores_nothing(db) {
        let app = TestApp::spawn(
            db,
            &policy("http://127.0.0.1:9/cp", "http://127.0.0.1:9/audit"),
        )
        .await;
        let body = APPROVE;
        let t = now();
        let mut cases: Vec<(&str, Call, StatusCode, &str)> = vec![
            (
                "oversized body",
                Call::signed(&[b' '; 300 * 1024]),
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
            ),
            (
                "missing signature",
                Call {
                    signature: None,
                    ..Call::signed(body)
                },
                StatusCode::UNAUTHORIZED,
                "signature_missing",
            ),
            (
                "malformed signature",
                Call {
                    signature: Some("v1=abc".into()),
                    ..Call::signed(body)
                },
                StatusCode::UNAUTHORIZED,
                "signature_malformed",
            ),
            (
                "stale timestamp",
                Call {
                    signature: Some(sign(NEW_SECRET, t - 600, body)),
                    ..Call::signed(body)
                },
                StatusCode::UNAUTHORIZED,
                "signature_stale",
            ),
            (
                "future timestamp",
                Call {
                    signature: Some(sign(NEW_SECRET, t + 600, body)),
                    ..Call::signed(body)
                },
                StatusCode::UNAUTHORIZED,
                "signature_stale",
            ),
            (
                "wrong secret",
                Call {
                    signature: Some(sign("not-the-secret", t, body)),
                    ..Call::signed(body)
                },
                StatusCode::UNAUTHORIZED,
                "signature_invalid",
            ),
            (
                "body changed after signing",
                Call {
                    signature: Some(sign(NEW_SECRET, t, b"{}")),
                    ..Call::signed(body)
                },
                StatusCode::UNAUTHORIZED,
                "signature_invalid",
            ),
            (
                "no credentials",
                Call {
                    bearer: None,
                    ..Call::signed(body)
                },
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            ),
            (
                "unknown api key",
                Call {
                    bearer: Some("nope".into()),
                    ..Call::signed(body)
                },
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            ),
        ];
        let mut claim_case = |name: &'static str, key: &str, value: Value, secret: &str| {
            let mut c = good_claims();
            c[key] = value;
            cases.push((
                name,
                Call {
                    bearer: Some(jwt(c, secret)),
                    ..Call::signed(body)
                },
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            ));
        };
        claim_case("jwt expired", "exp", json!(t - 3600), JWT_SECRET);
        claim_case(
            "jwt wrong audience",
            "aud",
            json!("someone-else"),
            JWT_SECRET,
        );
        claim_case(
            "jwt wrong issuer",
            "iss",
            json!("https://evil.example.com"),
            JWT_SECRET,
        );
        claim_case(
            "jwt wrong key",
            "sub",
            json!("svc-deployer"),
            "another-secret-entirely-0123456789",
        );
        // alg: none, crafted by hand.
        let b64 = |v: &Value| {
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                v.to_string(),
            )
        };
        let none_token = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&good_claims())
        );
        cases.push((
            "jwt alg none",
            Call {
                bearer: Some(none_token),
                ..Call::signed(body)
            },
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ));
        let unknown = br#"{"action": "drop_database", "params": {}}"#;
        cases.push((
            "action not allow-listed",
            Call::signed(unknown),
            StatusCode::FORBIDDEN,
            "action_not_allowed",
        ));
        let install = br#"{"action": "install_module", "params": {"name": "x"}}"#;
        cases.push((
            "caller lacks the role",
            Call::signed(install),
            StatusCode::FORBIDDEN,
            "forbidden",
        ));
        let not_object = br#"{"action": "approve_kernel_proposal", "params": [1, 2]}"#;
        cases.push((
            "params not an object",
            Call::signed(not_object),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_command",
        ));
        cases.push((
            "malformed json",
            Call::signed(b"{\"action\": "),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ));
        let long_key = Call {
            idempotency_key: Some("k".repeat(256)),
            ..Call::signed(body)
        };
        cases.push((
            "idempotency key too long",
            long_key,
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
        ));

        for (name, call, status, code) in cases {
            let (got, answer) = send(&app, &call).await;
            assert_eq!(got, status, "{name}: {answer}");
            assert_eq!(answer["error"]["code"], code, "{name}: {answer}");
            assert!(
                answer["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "{name}: {answer}"
            );
            let (commands, _, _) = counts(&app).await;
            assert_eq!(commands, 0, "{name} stored a command");
        }
        // Only the two RBAC denials of an authenticated caller were audited.
        let (_, audits, events) = counts(&app).await;
        assert_eq!(audits, 2);
        assert_eq!(events, 2, "one audit event per denial, nothing else");
        assert_eq!(
            app.count(
                "SELECT count(*) FROM audit_log WHERE outcome = 'denied' AND actor_id = 'approver'"
            )
            .await,
            2
        );
    }
}

both! {
    async fn accepted_command_is_dispatched_and_audited(db) {
        let cp = Receiver::start().await;
        let audit = Receiver::start().await;
        let app = TestApp::spawn(db, &policy(&cp.url, &audit.url)).await;
        let (status, answer) = send(&app, &Call::signed(APPROVE)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        assert_eq!(answer["action"], "approve_kernel_proposal");
        assert_eq!(answer["status"], "accepted");
        let command_id = answer["command_id"]
            .as_str()
            .expect("command_id")
            .to_owned();
        assert!(command_id.starts_with("cmd_"));

        let got = cp.wait_for_count(1).await;
        assert_eq!(
            got[0].header("x-aion-event"),
            "command.approve_kernel_proposal"
        );
        let body: Value = serde_json::from_slice(&got[0].body).expect("json");
        assert_eq!(
            body["payload"],
            json!({"command_id": command_id, "action": "approve_kernel_proposal", "params": {"proposal_id": "kp-42"}, "actor_id": "approver"})
        );

        let got = audit.wait_for_count(1).await;
        assert_eq!(got[0].header("x-aion-event"), "aion.audit.activity");
        let body: Value = serde_json::from_slice(&got[0].body).expect("json");
        assert_eq!(body["key"], "approver");
        assert_eq!(body["payload"]["actor_id"], "approver");
        assert_eq!(body["payload"]["action"], "approve_kernel_proposal");
        assert_eq!(body["payload"]["outcome"], "accepted");
        assert_eq!(body["payload"]["target"], command_id);
        assert!(body["payload"]["at"].is_string());
        assert_eq!(body["payload"]["source_ip"], "127.0.0.1");
        app.drain().await;

        // JWT callers work the same way; `sub` is the actor.
        let call = Call {
            bearer: Some(jwt(good_claims(), JWT_SECRET)),
            ..Call::signed(APPROVE)
        };
        let (status, _) = send(&app, &call).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(
            app.count("SELECT count(*) FROM commands WHERE actor_id = 'svc-deployer'")
                .await,
            1
        );
    }
}

both! {
    async fn denial_produces_a_denied_audit_event(db) {
        let audit = Receiver::start().await;
        let app = TestApp::spawn(db, &policy("http://127.0.0.1:9/cp", &audit.url)).await;
        let call = Call {
            bearer: Some(NOBODY_KEY.into()),
            ..Call::signed(APPROVE)
        };
        let (status, _) = send(&app, &call).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let got = audit.wait_for_count(1).await;
        let body: Value = serde_json::from_slice(&got[0].body).expect("json");
        assert_eq!(body["payload"]["outcome"], "denied");
        assert_eq!(body["payload"]["actor_id"], "nobody");
        assert_eq!(app.count("SELECT count(*) FROM commands").await, 0);
        // The audit log is append-only.
        let tampered = app.db.try_execute("UPDATE audit_log SET outcome = 'accepted'").await;
        assert!(tampered.is_err(), "audit rows cannot be changed");
        let deleted = app.db.try_execute("DELETE FROM audit_log").await;
        assert!(deleted.is_err(), "audit rows cannot be deleted");
        let (_, list) = app.get("/v1/audit?actor=nobody").await;
        assert_eq!(list["data"][0]["outcome"], "denied", "{list}");
    }
}

both! {
    async fn concurrent_duplicates_with_one_key_make_one_command(db) {
        let app = Arc::new(
            TestApp::spawn(
                db,
                &policy("http://127.0.0.1:9/cp", "http://127.0.0.1:9/audit"),
            )
            .await,
        );
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let app = app.clone();
            tasks.push(tokio::spawn(async move {
                let call = Call {
                    idempotency_key: Some("approve-kp-42".into()),
                    ..Call::signed(APPROVE)
                };
                send(&app, &call).await
            }));
        }
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.expect("task"));
        }
        assert!(
            answers.iter().all(|(s, _)| *s == StatusCode::ACCEPTED),
            "{answers:?}"
        );
        assert!(
            answers.windows(2).all(|w| w[0].1 == w[1].1),
            "five identical answers: {answers:?}"
        );
        assert_eq!(app.count("SELECT count(*) FROM commands").await, 1);
        assert_eq!(
            app.count("SELECT count(*) FROM events WHERE topic = 'command.approve_kernel_proposal'")
                .await,
            1
        );

        let other = br#"{"action": "approve_kernel_proposal", "params": {"proposal_id": "kp-43"}}"#;
        let call = Call {
            idempotency_key: Some("approve-kp-42".into()),
            ..Call::signed(other)
        };
        let (status, answer) = send(&app, &call).await;
        assert_eq!(status, StatusCode::CONFLICT, "{answer}");
        assert_eq!(answer["error"]["code"], "idempotency_key_reused");
        assert_eq!(app.count("SELECT count(*) FROM commands").await, 1);
    }
}

both! {
    async fn both_inbound_secrets_are_accepted_during_rotation(db) {
        let app = TestApp::spawn(
            db,
            &policy("http://127.0.0.1:9/cp", "http://127.0.0.1:9/audit"),
        )
        .await;
        // Two requests (an identical `t` and body would be one request sent twice).
        for (secret, t) in [(NEW_SECRET, now()), (OLD_SECRET, now() - 1)] {
            let call = Call {
                signature: Some(sign(secret, t, APPROVE)),
                ..Call::signed(APPROVE)
            };
            let (status, answer) = send(&app, &call).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{secret}: {answer}");
        }
        assert_eq!(app.count("SELECT count(*) FROM commands").await, 2);
    }
}

both! {
    async fn secrets_and_keys_never_appear_in_logs(db) {
        let (capture, _guard) = Capture::install();

        let cp = Receiver::start().await;
        let app = TestApp::spawn(db, &policy(&cp.url, "http://127.0.0.1:9/audit")).await;
        send(&app, &Call::signed(APPROVE)).await;
        send(
            &app,
            &Call {
                signature: Some(sign("wrong-secret-zzz", now(), APPROVE)),
                ..Call::signed(APPROVE)
            },
        )
        .await;
        send(
            &app,
            &Call {
                bearer: Some("bad-key-zzz-123".into()),
                ..Call::signed(APPROVE)
            },
        )
        .await;
        send(
            &app,
            &Call {
                bearer: Some(NOBODY_KEY.into()),
                ..Call::signed(APPROVE)
            },
        )
        .await;
        let token = jwt(good_claims(), JWT_SECRET);
        send(
            &app,
            &Call {
                bearer: Some(token.clone()),
                ..Call::signed(APPROVE)
            },
        )
        .await;
        cp.wait_for_count(2).await;
        // Let the worker record those deliveries (and log about it) too.
        wait_for("both commands recorded as delivered", || async {
            app.count("SELECT count(*) FROM deliveries WHERE webhook_id = 'control-plane' AND state = 'succeeded'").await == 2
        })
        .await;

        let logs = String::from_utf8_lossy(&capture.0.lock().expect("lock")).into_owned();
        assert!(logs.len() > 200, "the capture saw the app's logs: {logs}");
        for secret in [
            NEW_SECRET,
            OLD_SECRET,
            JWT_SECRET,
            APPROVER_KEY,
            NOBODY_KEY,
            "bad-key-zzz-123",
            "cp-secret",
            &token,
        ] {
            assert!(!logs.contains(secret), "{secret} leaked into the logs");
        }
    }
}
