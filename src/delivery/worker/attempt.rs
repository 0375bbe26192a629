//! The attempt service: one HTTP attempt of one claimed delivery, start to
//! handed-over outcome — reshape the body if the webhook wants the
//! Standard Webhooks payload, send it in a span, let the retry schedule
//! and `outcome::next` decide what it means, act on that (`control`), and
//! return the outcome the send task hands to the completer.

use bytes::Bytes;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use rand::Rng;

use super::{Shared, control};
use crate::delivery::outcome;
use crate::delivery::retry;
use crate::delivery::sender::{AttemptReport, Outbound};
use crate::policy::PayloadFormat;
use crate::store::{AttemptRecord, Claimed, Completion};

/// One attempt of `c`, in a span naming the delivery, event, webhook and
/// attempt; its outcome for the completer (`None`: nothing was sent, the
/// delivery went back untouched).
pub(super) async fn deliver(shared: &Shared, c: Claimed) -> Option<Completion> {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "attempt",
        delivery = %crate::domain::DeliveryId::from_uuid(c.id),
        event = %c.event_id,
        webhook = %c.webhook_id,
        attempt = c.attempt,
    );
    attempt(shared, c).instrument(span).await
}

async fn attempt(shared: &Shared, c: Claimed) -> Option<Completion> {
    let policy = shared.policy.load_full();
    let sendable = shared.scheduler.is_sendable(&policy, &c.webhook_id);
    let Some(webhook) = policy.webhook(&c.webhook_id).filter(|_| sendable) else {
        // Removed or disabled between claim and send: nothing was sent, so
        // the delivery goes back untouched, its budget intact. If this
        // fails, the lease expires and the rescuer returns it.
        if let Err(e) = shared
            .store
            .release(c.id, c.attempt, shared.cfg.poll_interval)
            .await
        {
            tracing::debug!(delivery = %c.id, error = %e.chain(), "release failed; the lease will expire");
        }
        return None;
    };
    let delivery_id = crate::domain::DeliveryId::from_uuid(c.id).to_string();
    let body = match webhook.payload_format {
        PayloadFormat::Aion => c.body,
        // Stored bodies are the engine's own rendering, so this cannot fail;
        // if it ever did, the receiver still gets the event, in §3's shape.
        PayloadFormat::Standard => crate::ingest::standard_body(&c.body).unwrap_or_else(|e| {
            tracing::warn!(delivery = %delivery_id, error = %e, "cannot reshape the body for payload_format: standard");
            c.body
        }),
    };
    // The attempt's span is a child of the event's ingest span (stored with
    // the event), and its id goes out in `traceparent`.
    // A publish to Kafka or NATS is a messaging producer span.
    let kind = match webhook.bus {
        Some(_) => SpanKind::Producer,
        None => SpanKind::Client,
    };
    let mut span = shared.telemetry.span(
        "delivery attempt",
        kind,
        c.traceparent.as_deref().or(c.trace_id.as_deref()),
        || {
            vec![
                KeyValue::new("aion.webhook", c.webhook_id.clone()),
                KeyValue::new("aion.delivery", delivery_id.clone()),
                KeyValue::new("aion.event.id", c.event_id.clone()),
                KeyValue::new("aion.attempt", i64::from(c.attempt)),
            ]
        },
    );
    if let Some(bus) = &webhook.bus {
        span.set(KeyValue::new("messaging.system", bus.kind()));
        span.set(KeyValue::new(
            "messaging.destination.name",
            bus.target().to_owned(),
        ));
    }
    let traceparent = span.traceparent();
    let outbound = Outbound {
        webhook,
        delivery_id: &delivery_id,
        attempt: u32::try_from(c.attempt).unwrap_or(1),
        event_id: &c.event_id,
        topic: &c.topic,
        // Tracing off: the first of the event's trace ids that is one.
        trace_id: traceparent.as_deref().or_else(|| {
            [c.trace_id.as_deref(), c.traceparent.as_deref()]
                .into_iter()
                .flatten()
                .find(|t| crate::telemetry::parse_parent(t).is_some())
        }),
        key: c.key.as_deref(),
        body: Bytes::from(body),
        timestamp: shared.clock.now().timestamp(),
    };
    let sending = shared.sender.send(&outbound);
    let (report, overdue): (AttemptReport, bool) =
        control::watch_overdue(shared, &policy, &c.webhook_id, sending).await;
    if let Some(status) = report.status {
        span.set(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
    }
    span.set(KeyValue::new(
        "aion.duration_ms",
        i64::try_from(report.duration.as_millis()).unwrap_or(i64::MAX),
    ));
    if let Some(kind) = report.error_kind {
        span.set(KeyValue::new("error.type", kind.as_str()));
        span.fail(
            report
                .error
                .clone()
                .unwrap_or_else(|| kind.as_str().to_owned()),
        );
    }
    span.end();
    let budget_used = u32::try_from(c.attempt - c.replay_base).unwrap_or(1).max(1);
    let jitter = rand::rng().random_range(-1.0..=1.0);
    let decided_at = shared.clock.now();
    let decision = retry::decide(
        &webhook.retry,
        budget_used,
        report.result(),
        report.retry_after,
        decided_at,
        jitter,
    );
    let next = outcome::next(webhook, &report, decision, decided_at);
    control::after_attempt(shared, &policy, webhook, &report, &next, overdue).await;
    shared
        .meters
        .attempt(&c.webhook_id, next.outcome, report.duration);
    if let Some(kind) = report.error_kind {
        shared.meters.attempt_error(&c.webhook_id, kind.as_str());
    }
    tracing::debug!(
        status = report.status,
        duration_ms = u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
        error_kind = report.error_kind.map(|k| k.as_str()),
        outcome = ?next.outcome,
        "attempt finished"
    );
    Some(Completion {
        id: c.id,
        webhook_id: c.webhook_id.clone(),
        attempt: c.attempt,
        state: next.state,
        retry_in: next.retry_in,
        record: AttemptRecord {
            started_at: report.started_at,
            duration: report.duration,
            status: report.status,
            error_kind: report.error_kind.map(|k| k.as_str()),
            error: report.error,
            response_body: report.response_body,
        },
        in_line: c.in_line,
    })
}
