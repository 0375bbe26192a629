//! OpenTelemetry traces (issue 16): spans for ingest, fan-out, each
//! delivery attempt and each inbound command, parented on the producer's W3C
//! `traceparent` and exported with OTLP/HTTP when the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) is set; off
//! otherwise, at the cost of one `Option` check per span.
//!
//! The tracer is a value the application owns and passes down (no global
//! provider), so each engine in a test process exports to its own collector.
//! Spans go through the SDK's batch processor: ending a span is a bounded
//! channel send that drops the span when the queue is full; exporting runs
//! on the processor's own thread with the OTLP timeout; so a slow or dead
//! collector never blocks ingest or delivery.
//!
//! A trace carries across the queue in `events.traceparent`: the ingest
//! span's context, written with the event, is the parent of every attempt,
//! also of a retry hours later on another engine.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};

/// Where spans go: `endpoint` is the full OTLP/HTTP traces URL, or `None`
/// for the exporter's own reading of the `OTEL_EXPORTER_OTLP_*` variables.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    pub endpoint: Option<String>,
    /// How long a span may wait in the batch before export.
    pub schedule_delay: Duration,
    /// Each export request's timeout.
    pub timeout: Duration,
}

impl OtlpConfig {
    /// From the OpenTelemetry SDK's standard variables: `None` unless an
    /// OTLP endpoint is set, or when `OTEL_SDK_DISABLED=true` or
    /// `OTEL_TRACES_EXPORTER=none`.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
        {
            return None;
        }
        (set("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
            || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some())
        .then(|| Self {
            endpoint: None,
            schedule_delay: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
        })
    }
}

/// The engine's tracer, or none (tracing off). Cheap to clone.
#[derive(Clone, Default)]
pub struct Telemetry {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.inner.is_some() {
            "Telemetry(otlp)"
        } else {
            "Telemetry(off)"
        })
    }
}

impl Telemetry {
    /// Tracing off: every span is a no-op.
    pub fn off() -> Self {
        Self::default()
    }

    /// Starts the OTLP/HTTP exporter. Must be called inside the runtime
    /// (the exporter's blocking HTTP client is built on a thread of its own).
    pub fn start(config: &OtlpConfig) -> Result<Self, String> {
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(config.timeout);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        let exporter = builder.build().map_err(|e| format!("OTLP exporter: {e}"))?;
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(8192)
                    .with_scheduled_delay(config.schedule_delay)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(
                Resource::builder()
                    .with_service_name("aion-webhooks")
                    .build(),
            )
            .build();
        let tracer = provider.tracer("aion-webhooks");
        Ok(Self {
            inner: Some(Arc::new(Inner { provider, tracer })),
        })
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Starts a span under `parent` (a W3C traceparent, or a bare 32-hex
    /// trace id; anything else starts a new trace). `attributes` runs only
    /// when tracing is on: with it off, a span costs nothing on the hot path.
    pub fn span(
        &self,
        name: &'static str,
        kind: SpanKind,
        parent: Option<&str>,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> TraceSpan {
        let Some(inner) = &self.inner else {
            return TraceSpan { span: None };
        };
        let cx = match parent.and_then(parse_parent) {
            Some(sc) => Context::new().with_remote_span_context(sc),
            None => Context::new(),
        };
        let span = inner
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes())
            .start_with_context(&inner.tracer, &cx);
        TraceSpan { span: Some(span) }
    }

    /// A child of `parent` (a span of this tracer).
    pub fn child(
        &self,
        name: &'static str,
        parent: &TraceSpan,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> TraceSpan {
        let parent = parent.traceparent();
        self.span(name, SpanKind::Internal, parent.as_deref(), attributes)
    }

    /// Exports what is queued and stops the exporter, waiting at most
    /// `timeout` (off the async workers: the SDK's shutdown blocks).
    pub async fn shutdown(&self, timeout: Duration) {
        let Some(inner) = self.inner.clone() else {
            return;
        };
        let done =
            tokio::task::spawn_blocking(move || inner.provider.shutdown_with_timeout(timeout));
        match tokio::time::timeout(timeout + Duration::from_secs(1), done).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "OTLP exporter shutdown"),
            _ => tracing::warn!("OTLP exporter shutdown did not finish in time"),
        }
    }
}

/// One span, or nothing when tracing is off. Ends when dropped.
#[derive(Debug)]
pub struct TraceSpan {
    span: Option<opentelemetry_sdk::trace::Span>,
}

impl TraceSpan {
    /// This span's W3C traceparent, for the next hop (`None` when off).
    pub fn traceparent(&self) -> Option<String> {
        let sc = self.span.as_ref()?.span_context();
        sc.is_valid().then(|| {
            format!(
                "00-{}-{}-{:02x}",
                sc.trace_id(),
                sc.span_id(),
                sc.trace_flags().to_u8()
            )
        })
    }

    pub fn set(&mut self, attribute: KeyValue) {
        if let Some(span) = &mut self.span {
            span.set_attribute(attribute);
        }
    }

    /// Marks the span failed with `message`.
    pub fn fail(&mut self, message: impl Into<String>) {
        if let Some(span) = &mut self.span {
            span.set_status(Status::error(message.into()));
        }
    }

    pub fn end(mut self) {
        if let Some(span) = &mut self.span {
            span.end();
        }
    }
}

/// A W3C version-00 traceparent, or a bare 32-hex trace id (an event's
/// `trace_id`: its trace, under a parent span id made up here).
pub fn parse_parent(text: &str) -> Option<SpanContext> {
    let text = text.trim();
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let (trace, span, flags) = if hex(text, 32) {
        (text, None, TraceFlags::SAMPLED)
    } else {
        let mut parts = text.split('-');
        match (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) {
            (Some("00"), Some(t), Some(s), Some(f), None)
                if hex(t, 32) && hex(s, 16) && hex(f, 2) =>
            {
                let flags = u8::from_str_radix(f, 16).ok()?;
                (t, Some(s), TraceFlags::new(flags))
            }
            _ => return None,
        }
    };
    let trace_id = TraceId::from_hex(&trace.to_ascii_lowercase()).ok()?;
    let span_id = match span {
        Some(s) => SpanId::from_hex(&s.to_ascii_lowercase()).ok()?,
        None => SpanId::from_bytes(rand::random::<u64>().max(1).to_be_bytes()),
    };
    let sc = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
    sc.is_valid().then_some(sc)
}

/// Whether a librdkafka log line (Kafka sources and destinations) is a
/// warning for us; the rest is debug.
#[cfg(feature = "kafka")]
pub fn librdkafka_warns(level: rdkafka::config::RDKafkaLogLevel) -> bool {
    use rdkafka::config::RDKafkaLogLevel as L;
    matches!(
        level,
        L::Emerg | L::Alert | L::Critical | L::Error | L::Warning
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_parse_from_traceparents_and_bare_trace_ids() {
        let sc = parse_parent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled() && sc.is_remote());
        let bare = parse_parent("4BF92F3577B34DA6A3CE929D0E0E4736").unwrap();
        assert_eq!(
            bare.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(bare.is_sampled());
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "not a trace",
        ] {
            assert!(parse_parent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn only_a_set_endpoint_turns_tracing_on() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(OtlpConfig::from_env(env(&[])).is_none());
        assert!(OtlpConfig::from_env(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")])).is_none());
        assert!(
            OtlpConfig::from_env(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]))
                .is_some()
        );
        assert!(
            OtlpConfig::from_env(env(&[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://c:4318/v1/traces"
            )]))
            .is_some()
        );
        assert!(
            OtlpConfig::from_env(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_SDK_DISABLED", "true")
            ]))
            .is_none()
        );
        let off = Telemetry::off();
        let span = off.span(
            "x",
            SpanKind::Internal,
            Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            Vec::new,
        );
        assert!(span.traceparent().is_none(), "off: no span, no traceparent");
    }
}
