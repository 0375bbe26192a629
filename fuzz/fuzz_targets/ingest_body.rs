//! The ingest body parser (`POST /v1/events`, also what bus sources will
//! call) and the payload checks behind duplicate detection.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use aion_webhooks::domain::payload;
use aion_webhooks::ingest;
use aion_webhooks::policy::PolicySet;
use libfuzzer_sys::fuzz_target;

const POLICY: &str = r#"
version: 1
webhooks:
  - id: all
    url: https://example.com/all
    secret: s3cret
    topics: ["**"]
  - id: tenant
    url: https://example.com/t
    secret: s3cret
    topics: ["a.*"]
    tenants: [t1]
"#;

fn policy() -> &'static PolicySet {
    static POLICY_SET: OnceLock<PolicySet> = OnceLock::new();
    POLICY_SET.get_or_init(|| {
        PolicySet::parse(POLICY, "fuzz.yaml", Path::new("."), &|_| None).expect("fuzz policy")
    })
}

fuzz_target!(|data: &[u8]| {
    let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("time");
    if let Ok((events, _batch)) = ingest::parse(data, policy(), 64 * 1024, now) {
        for e in &events {
            // Whatever was accepted is comparable with itself and its body
            // is JSON.
            assert!(e.same_content(&e.topic, &e.payload));
            assert!(serde_json::from_slice::<&serde_json::value::RawValue>(&e.body).is_ok());
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let checked = payload::check(text);
    let digest = payload::digest(text);
    // What serde_json reads as a value (within its depth limit) is JSON to
    // the payload walker too, and re-serialising it keeps the value —
    // unless a member name repeats (serde_json keeps the last, ingest
    // refuses it), an exponent is out of range, or a number went through
    // an f64 (serde_json rounds it; the walker compares exact decimals).
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        assert!(
            !matches!(checked, Err(payload::PayloadError::Malformed { .. })),
            "valid JSON refused: {text:?}"
        );
        if checked.is_ok() && !has_float(&value) {
            let again = payload::digest(&value.to_string());
            assert_eq!(digest, again, "{text:?}");
        }
    }
    if checked.is_ok() {
        assert!(digest.is_ok());
    }
});

fn has_float(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Number(n) => n.is_f64(),
        serde_json::Value::Array(a) => a.iter().any(has_float),
        serde_json::Value::Object(m) => m.values().any(has_float),
        _ => false,
    }
}
