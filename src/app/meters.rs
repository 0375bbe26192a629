//! Every subsystem's meters, registered in one registry at start (the
//! wiring's job: `metrics` knows no subsystem), and the registry with the
//! engine's own figures that renders `/metrics`.

use std::sync::Arc;

use crate::metrics::{Metrics, Registry};

/// Each subsystem's meters; `engine` renders them all.
#[derive(Debug, Clone)]
pub struct Meters {
    pub engine: Arc<Metrics>,
    pub delivery: Arc<crate::delivery::Meters>,
    pub ingest: Arc<crate::ingest::Meters>,
    pub inbound: Arc<crate::inbound::Meters>,
    pub http: Arc<crate::http::Meters>,
    pub sources: Arc<crate::sources::Meters>,
    pub reload: Arc<crate::reload::Meters>,
    pub retention: Arc<crate::retention::Meters>,
}

impl Default for Meters {
    fn default() -> Self {
        let mut registry = Registry::default();
        let r = &mut registry;
        let (inbound, ingest) = (
            crate::inbound::Meters::register(r),
            crate::ingest::Meters::register(r),
        );
        let (delivery, reload, retention) = (
            crate::delivery::Meters::register(r),
            crate::reload::Meters::register(r),
            crate::retention::Meters::register(r),
        );
        let (http, sources) = (
            crate::http::Meters::register(r),
            crate::sources::Meters::register(r),
        );
        Self {
            engine: Arc::new(Metrics::new(registry)),
            delivery: Arc::new(delivery),
            ingest: Arc::new(ingest),
            inbound: Arc::new(inbound),
            http: Arc::new(http),
            sources: Arc::new(sources),
            reload: Arc::new(reload),
            retention: Arc::new(retention),
        }
    }
}

/// The shipped dashboard and alert rules (`deploy/`) query only metrics the
/// engine exports: every family is given a sample, rendered in the classic
/// format, and each `aion_webhooks_*` name in the files must be one of its
/// sample names.
#[cfg(test)]
mod deploy_tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::Meters;
    use crate::delivery::meters::{AttemptOutcome, SendPath};
    use crate::http::ConnectionEvent;
    use crate::inbound::InboundOutcome;
    use crate::ingest::EventSource;
    use crate::policy::schemas::SchemaMode;
    use crate::sources::MessageOutcome;

    /// The meters, each family with a sample.
    fn sampled() -> Meters {
        let m = Meters::default();
        m.inbound.count(InboundOutcome::Accepted);
        m.ingest.events_accepted(EventSource::Api, 1);
        m.ingest.schema_violation("a.*", SchemaMode::Enforce);
        m.ingest.below_min_version("h");
        m.ingest.filtered_out("h");
        m.sources.source_messages("bus", MessageOutcome::Created, 1);
        m.sources.source_lag("bus", 1);
        m.sources.source_connected("bus", true);
        m.delivery.send_started(SendPath::Ingest);
        m.delivery
            .attempt("h", AttemptOutcome::Succeeded, Duration::from_millis(5));
        m.delivery.endpoint_transition("h", "disabled");
        m.delivery.attempt_error("h", "auth");
        m.delivery.concurrency_limit("h", 8);
        m.delivery.webhooks_disabled(&["h".to_owned()]);
        m.http.connection(ConnectionEvent::Opened);
        m.reload.reload("applied");
        m.reload.client_cert_expiry("h", 2e9);
        m.retention.deleted(&[
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
        m.engine.set_queue_depth(&states.map(|s| (s, 0)), 0.0);
        m
    }

    /// Every sample name the engine can export.
    fn exported() -> BTreeSet<String> {
        sampled()
            .engine
            .render_classic()
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

    #[test]
    fn every_sample_of_the_engines_metrics_has_its_type_and_help() {
        let classic = sampled().engine.render_classic();
        let mut typed = std::collections::HashMap::new();
        for line in classic.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("type");
                typed.insert(name.to_owned(), kind.to_owned());
            }
        }
        let mut samples = 0;
        for line in classic.lines().filter(|l| !l.starts_with('#')) {
            samples += 1;
            let name = &line[..line.find(['{', ' ']).expect("sample")];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| typed.get(*f).is_some_and(|k| k == "histogram"))
                })
                .unwrap_or(name);
            assert!(
                typed.contains_key(family),
                "{name} has no TYPE in:\n{classic}"
            );
            assert!(
                classic.contains(&format!("# HELP {family} ")),
                "{family} has no HELP"
            );
        }
        assert!(samples > 0 && typed.len() >= 5, "{classic}");
        assert!(!classic.contains("# EOF") && !classic.contains("_created"));
    }
}
