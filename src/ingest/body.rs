//! The delivery body: contract §3's shape, rendered once at ingest and
//! stored, and the Standard Webhooks shape derived from it at send time.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::domain::EventVersion;

/// The fields of the delivery body besides the payload.
pub(super) struct Envelope<'a> {
    pub(super) id: &'a str,
    pub(super) topic: &'a str,
    pub(super) occurred_at: DateTime<Utc>,
    pub(super) version: Option<&'a EventVersion>,
    pub(super) tenant_id: &'a Option<String>,
    pub(super) source: &'a Option<String>,
    pub(super) key: &'a Option<String>,
    pub(super) trace_id: &'a Option<String>,
}

/// The delivery body (contract §3); absent optional fields are omitted and
/// the payload is embedded byte for byte as the producer sent it.
pub(super) fn render_body(e: Envelope<'_>, payload: &RawValue) -> Vec<u8> {
    let s = |v: &str| serde_json::Value::from(v).to_string();
    let mut out = String::with_capacity(payload.get().len() + 256);
    out.push_str(&format!(
        "{{\"id\":{},\"topic\":{},\"occurred_at\":{}",
        s(e.id),
        s(e.topic),
        s(&e.occurred_at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    ));
    if let Some(v) = e.version {
        out.push_str(&format!(",\"version\":{}", v.json()));
    }
    for (name, value) in [
        ("tenant_id", e.tenant_id),
        ("source", e.source),
        ("key", e.key),
        ("trace_id", e.trace_id),
    ] {
        if let Some(v) = value {
            out.push_str(&format!(",\"{name}\":{}", s(v)));
        }
    }
    out.push_str(",\"payload\":");
    out.push_str(payload.get());
    out.push('}');
    out.into_bytes()
}

/// The Standard Webhooks body (`payload_format: standard`) of a stored
/// contract §3 body: `{"type","timestamp","data"}`, the payload embedded
/// byte for byte. A pure function of the stored bytes, so every attempt and
/// replay sends the same bytes.
pub fn standard_body(body: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    #[derive(Deserialize)]
    struct Stored<'a> {
        topic: String,
        occurred_at: String,
        #[serde(borrow)]
        payload: &'a RawValue,
    }
    let stored: Stored<'_> = serde_json::from_slice(body)?;
    let s = |v: &str| serde_json::Value::from(v).to_string();
    let mut out = String::with_capacity(body.len());
    out.push_str(&format!(
        "{{\"type\":{},\"timestamp\":{},\"data\":",
        s(&stored.topic),
        s(&stored.occurred_at)
    ));
    out.push_str(stored.payload.get());
    out.push('}');
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_embeds_the_payload_bytes_exactly_and_omits_absent_fields() {
        let payload: &RawValue = serde_json::from_str(r#"{ "b" : 1.50, "a":[ ] }"#).expect("raw");
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.5Z")
            .expect("time")
            .with_timezone(&Utc);
        let tenant = Some("t1".to_owned());
        let envelope = |version| Envelope {
            id: "e1",
            topic: "a.b",
            occurred_at: at,
            version,
            tenant_id: &tenant,
            source: &None,
            key: &None,
            trace_id: &None,
        };
        let body = render_body(envelope(None), payload);
        assert_eq!(
            String::from_utf8(body).expect("utf8"),
            r#"{"id":"e1","topic":"a.b","occurred_at":"2026-01-02T03:04:05.500Z","tenant_id":"t1","payload":{ "b" : 1.50, "a":[ ] }}"#
        );
        let standard = standard_body(&render_body(envelope(None), payload)).expect("standard");
        assert_eq!(
            String::from_utf8(standard).expect("utf8"),
            r#"{"type":"a.b","timestamp":"2026-01-02T03:04:05.500Z","data":{ "b" : 1.50, "a":[ ] }}"#
        );
        let deep = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
        let deep: &RawValue = serde_json::from_str(&deep).expect("a deep payload is a raw value");
        let standard = standard_body(&render_body(envelope(None), deep)).expect("deep payload");
        assert_eq!(
            standard.len(),
            100_000 + r#"{"type":"a.b","timestamp":"2026-01-02T03:04:05.500Z","data":}"#.len()
        );
        let v2 = EventVersion::parse("2.1").expect("version");
        let body = render_body(envelope(Some(&v2)), payload);
        assert!(
            String::from_utf8(body).expect("utf8").contains(
                r#""occurred_at":"2026-01-02T03:04:05.500Z","version":"2.1","tenant_id""#
            )
        );
    }
}
