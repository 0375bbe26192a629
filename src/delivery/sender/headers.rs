//! The request headers of contract §3: the webhook's static headers, then
//! the engine's own (which always win), the signatures and `traceparent`.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::{Outbound, USER_AGENT};
use crate::signing::{SignError, aion_sign, standard_sign, v1a_sign};

/// All request headers of contract §3. Static headers go in first so the
/// engine's own headers always win (the policy compiler also refuses
/// reserved names; this is the second line of defence).
pub(super) fn build_headers(req: &Outbound<'_>) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in &req.webhook.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("static header name {name:?} is invalid"))?;
        // The value is not echoed: a static header may carry a credential.
        let mut value = HeaderValue::from_str(value.expose())
            .map_err(|_| format!("static header {name} has an invalid value"))?;
        // Masked in the map's `Debug`, and never indexed by HTTP/2's HPACK.
        value.set_sensitive(true);
        headers.append(name, value);
    }

    let mut set = |name: &'static str, value: String| -> Result<(), String> {
        let value = HeaderValue::try_from(value)
            .map_err(|_| format!("header {name} would have an invalid value"))?;
        headers.insert(HeaderName::from_static(name), value);
        Ok(())
    };
    let timestamp = req.timestamp.to_string();
    set("content-type", "application/json".into())?;
    set("user-agent", USER_AGENT.into())?;
    set("idempotency-key", req.delivery_id.into())?;
    set("x-aion-event", req.topic.into())?;
    set("x-aion-event-id", req.event_id.into())?;
    set("x-aion-delivery", req.delivery_id.into())?;
    set("x-aion-attempt", req.attempt.to_string())?;
    set("x-aion-timestamp", timestamp.clone())?;

    let webhook = req.webhook;
    if webhook.signature.signs_aion() {
        if webhook.secrets.is_empty() {
            return Err(SignError::NoSecrets.to_string());
        }
        let keys: Vec<&[u8]> = webhook
            .secrets
            .iter()
            .map(|s| s.expose().as_bytes())
            .collect();
        set(
            "x-aion-signature",
            aion_sign(&keys, req.timestamp, &req.body),
        )?;
    }
    if webhook.signature.signs_standard() {
        if webhook.standard_secrets.is_empty() && webhook.ed25519_keys.is_empty() {
            return Err(SignError::NoSecrets.to_string());
        }
        let hmac: Vec<_> = webhook.standard_secrets.iter().collect();
        let ed25519: Vec<_> = webhook.ed25519_keys.iter().collect();
        let signature = [
            standard_sign(&hmac, req.delivery_id, req.timestamp, &req.body),
            v1a_sign(&ed25519, req.delivery_id, req.timestamp, &req.body),
        ]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
        set("webhook-id", req.delivery_id.into())?;
        set("webhook-timestamp", timestamp)?;
        set("webhook-signature", signature)?;
    }
    if let Some(traceparent) = req.trace_id.and_then(traceparent) {
        set("traceparent", traceparent)?;
    }
    Ok(headers)
}

/// A W3C `traceparent` for `trace`: a valid version-00 traceparent passes
/// through (lowercased), a bare 32-hex trace id gets a fresh random span id
/// and the sampled flag, anything else yields none.
pub(super) fn traceparent(trace: &str) -> Option<String> {
    let trace = trace.trim().to_ascii_lowercase();
    let is_id = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()) && s.bytes().any(|b| b != b'0')
    };
    if is_id(&trace, 32) {
        let span = rand::random_range(1..=u64::MAX);
        return Some(format!("00-{trace}-{span:016x}-01"));
    }
    let parts: Vec<&str> = trace.split('-').collect();
    match parts.as_slice() {
        ["00", trace_id, parent_id, flags]
            if is_id(trace_id, 32)
                && is_id(parent_id, 16)
                && flags.len() == 2
                && flags.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Some(trace)
        }
        _ => None,
    }
}
