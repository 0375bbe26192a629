//! The shipped dashboard and alert rules (`deploy/`) query only metrics the
//! engine exports: every family is given a sample, rendered in the classic
//! format, and each `aion_webhooks_*` name in the files must be one of its
//! sample names.

use std::collections::BTreeSet;
use std::time::Duration;

use super::*;

/// Every sample name the engine can export.
fn exported() -> BTreeSet<String> {
    let m = Metrics::default();
    m.count_inbound(InboundOutcome::Accepted);
    m.events_accepted(EventSource::Api, 1);
    m.schema_violation("a.*", SchemaMode::Enforce);
    m.source_messages("bus", MessageOutcome::Created, 1);
    m.source_lag("bus", 1);
    m.source_connected("bus", true);
    m.send_started(SendPath::Ingest);
    m.attempt("h", AttemptOutcome::Succeeded, Duration::from_millis(5));
    m.connection(ConnectionEvent::Opened);
    m.endpoint_transition("h", "disabled");
    m.concurrency_limit("h", 8);
    m.reload("applied");
    m.retention_deleted(&[
        ("deliveries", 1),
        ("attempts", 1),
        ("events", 1),
        ("source_rejects", 1),
    ]);
    let states = [
        "pending_due",
        "pending_scheduled",
        "waiting",
        "in_flight",
        "dead",
    ];
    m.set_queue_depth(&states.map(|s| (s, 0)), 0.0);
    m.webhooks_disabled(&["h".to_owned()]);
    m.below_min_version
        .get_or_create(&WebhookLabel {
            webhook: "h".to_owned(),
        })
        .inc();
    m.render_classic()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l[..l.find(['{', ' ']).unwrap_or(l.len())].to_owned())
        .collect()
}

fn queried(file: &str) -> BTreeSet<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut names = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("aion_webhooks_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn the_dashboard_and_the_alerts_query_only_exported_metrics() {
    let exported = exported();
    for file in [
        "deploy/prometheus/alerts.yml",
        "deploy/grafana/aion-webhooks.json",
    ] {
        let names = queried(file);
        assert!(names.len() >= 5, "{file} queries {names:?}");
        let unknown: Vec<&String> = names.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} queries {unknown:?}, which the engine does not export (it does: {exported:?})"
        );
    }
}
