//! The ingest use case's OpenTelemetry spans (issue 16): one `ingest` span
//! per event and its `fan-out` child, whose context is stored with the
//! event so that every delivery attempt is its child.

use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;

use super::IngestFailure;
use crate::store::NewEvent;
use crate::telemetry::{Telemetry, TraceSpan};

/// Where an ingest call's trace comes from: the tracer, and the request's
/// W3C `traceparent` header if it sent one.
#[derive(Debug, Clone, Copy)]
pub struct Trace<'a> {
    pub telemetry: &'a Telemetry,
    pub traceparent: Option<&'a str>,
}

/// Starts each event's `ingest` span, parented on the request's
/// `traceparent`, else the event's `trace_id`, with a `fan-out` child
/// naming its deliveries, and writes the ingest span's context into the
/// event (`meta.traceparent`) so every attempt, whenever it runs, is its
/// child. With tracing off, the producer's traceparent is kept instead, for
/// the outbound `traceparent` header.
pub fn trace_events(trace: Trace<'_>, events: &mut [NewEvent]) -> Vec<TraceSpan> {
    let header = trace
        .traceparent
        .filter(|t| crate::telemetry::parse_parent(t).is_some());
    if !trace.telemetry.enabled() {
        for e in events.iter_mut() {
            e.meta.traceparent = header.map(str::to_owned);
        }
        return Vec::new();
    }
    events
        .iter_mut()
        .map(|e| {
            let parent = header.or(e.trace_id.as_deref());
            let span = trace
                .telemetry
                .span("ingest", SpanKind::Server, parent, || {
                    vec![
                        KeyValue::new("aion.event.id", e.id.clone()),
                        KeyValue::new("aion.event.topic", e.topic.clone()),
                    ]
                });
            trace
                .telemetry
                .child("fan-out", &span, || {
                    vec![
                        KeyValue::new("aion.deliveries", e.webhooks.len() as i64),
                        KeyValue::new(
                            "aion.webhooks",
                            e.webhooks
                                .iter()
                                .map(|r| r.webhook_id.as_str())
                                .collect::<Vec<_>>()
                                .join(","),
                        ),
                    ]
                })
                .end();
            e.meta.traceparent = span.traceparent().or_else(|| header.map(str::to_owned));
            span
        })
        .collect()
}

/// Ends the ingest spans of [`trace_events`], failed if the store refused.
pub fn end_spans(spans: Vec<TraceSpan>, error: Option<&IngestFailure>) {
    for mut span in spans {
        if let Some(e) = error {
            span.fail(e.to_string());
        }
        span.end();
    }
}
