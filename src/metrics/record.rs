//! Recording: one method per thing counted, called by the subsystems;
//! and reading the process's own figures from `/proc` when rendered.

use std::sync::atomic::Ordering;

use super::*;

pub(super) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Metrics {
    pub fn count_inbound(&self, outcome: InboundOutcome) {
        self.inbound
            .get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    pub fn inbound(&self, outcome: InboundOutcome) -> u64 {
        self.inbound
            .get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            })
            .get()
    }

    /// True at most once a second per outcome: callers log at warn when it
    /// is, at debug otherwise, so a flood of garbage cannot flood the log.
    pub fn should_log(&self, outcome: InboundOutcome, now_ms: u64) -> bool {
        let slot = &self.last_logged_ms[outcome.index()];
        let last = slot.load(Ordering::Relaxed);
        now_ms.saturating_sub(last) >= 1000
            && slot
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    pub fn events_accepted(&self, source: EventSource, n: u64) {
        let source = match source {
            EventSource::Api => "api",
            EventSource::Inbound => "inbound",
            EventSource::Engine => "engine",
            EventSource::Bus => "bus",
        };
        self.events.get_or_create(&SourceLabel { source }).inc_by(n);
    }

    /// An event failed the schema of entry `pattern` (the entry's topic
    /// pattern: bounded by the policy, whatever topics producers send) in
    /// `mode`.
    pub fn schema_violation(&self, pattern: &str, mode: SchemaMode) {
        self.schema_violations
            .get_or_create(&SchemaLabel {
                topic: pattern.to_owned(),
                mode: mode.as_str(),
            })
            .inc();
    }

    /// A new event left `webhook` out: below its `min_version`.
    pub fn below_min_version(&self, webhook: &str) {
        self.below_min_version
            .get_or_create(&WebhookLabel {
                webhook: webhook.to_owned(),
            })
            .inc();
    }

    /// `n` messages of `source` ended as `outcome`.
    pub fn source_messages(&self, source: &str, outcome: MessageOutcome, n: u64) {
        let outcome = match outcome {
            MessageOutcome::Created => "created",
            MessageOutcome::Duplicate => "duplicate",
            MessageOutcome::Rejected => "rejected",
        };
        self.bus_messages
            .get_or_create(&BusOutcome {
                source: source.to_owned(),
                outcome,
            })
            .inc_by(n);
    }

    pub fn source_lag(&self, source: &str, lag: u64) {
        self.bus_lag
            .get_or_create(&BusLabel {
                source: source.to_owned(),
            })
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
    }

    pub fn source_connected(&self, source: &str, connected: bool) {
        self.bus_connected
            .get_or_create(&BusLabel {
                source: source.to_owned(),
            })
            .set(i64::from(connected));
    }

    /// A removed source's series go away with it.
    pub fn forget_source(&self, source: &str) {
        let label = BusLabel {
            source: source.to_owned(),
        };
        self.bus_lag.remove(&label);
        self.bus_connected.remove(&label);
    }

    /// An attempt is about to be sent.
    pub fn send_started(&self, path: SendPath) {
        let path = match path {
            SendPath::Ingest => "ingest",
            SendPath::Claim => "claim",
        };
        self.sends.get_or_create(&PathLabel { path }).inc();
    }

    /// One attempt to `webhook` ended.
    pub fn attempt(&self, webhook: &str, outcome: AttemptOutcome, took: Duration) {
        let outcome = match outcome {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Dead => "dead",
            AttemptOutcome::Blocked => "blocked",
        };
        self.finished
            .get_or_create(&WebhookOutcome {
                webhook: webhook.to_owned(),
                outcome,
            })
            .inc();
        self.attempt_seconds
            .get_or_create(&WebhookLabel {
                webhook: webhook.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Something happened to an API connection.
    pub fn connection(&self, event: ConnectionEvent) {
        match event {
            ConnectionEvent::Opened => {
                self.connections_open.inc();
            }
            ConnectionEvent::Closed => {
                self.connections_open.dec();
                return;
            }
            _ => {}
        }
        self.connections
            .get_or_create(&EventLabel {
                event: event.as_str(),
            })
            .inc();
    }

    /// How many times `event` happened (tests and diagnostics).
    pub fn connections(&self, event: ConnectionEvent) -> u64 {
        self.connections
            .get_or_create(&EventLabel {
                event: event.as_str(),
            })
            .get()
    }

    /// `webhook`'s runtime state changed to `to` (`disabled`, `enabled`).
    pub fn endpoint_transition(&self, webhook: &str, to: &'static str) {
        self.endpoint_transitions
            .get_or_create(&TransitionLabel {
                webhook: webhook.to_owned(),
                to,
            })
            .inc();
    }

    /// The adaptive concurrency limit of `webhook` on this engine.
    pub fn concurrency_limit(&self, webhook: &str, limit: u32) {
        self.concurrency_limit
            .get_or_create(&WebhookLabel {
                webhook: webhook.to_owned(),
            })
            .set(i64::from(limit));
    }

    /// A policy reload ended: `applied`, `unchanged` or `invalid`.
    pub fn reload(&self, outcome: &'static str) {
        self.reloads.get_or_create(&OutcomeLabel { outcome }).inc();
        match outcome {
            "invalid" => {
                self.last_reload_ok.set(0);
            }
            "applied" => {
                self.last_reload_ok.set(1);
                self.last_reload_success.set(unix_now());
            }
            _ => {
                self.last_reload_ok.set(1);
            }
        }
    }

    /// Rows retention deleted, by kind (`deliveries`, `attempts`,
    /// `events`, `source_rejects`).
    pub fn retention_deleted(&self, by_kind: &[(&'static str, u64)]) {
        for &(kind, n) in by_kind {
            self.retention.get_or_create(&KindLabel { kind }).inc_by(n);
        }
    }

    /// Deliveries by queue state (`pending_due`, `pending_scheduled`,
    /// `waiting`, `in_flight`, `dead`), and how long the oldest due one has
    /// waited.
    pub fn set_queue_depth(&self, by_state: &[(&'static str, i64)], oldest_due_seconds: f64) {
        for &(state, n) in by_state {
            self.depth.get_or_create(&StateLabel { state }).set(n);
        }
        self.oldest_due.set(oldest_due_seconds);
        self.database_up.set(1);
    }

    /// Every metric in the classic Prometheus text format (`text/plain;
    /// version=0.0.4`), process figures read now.
    pub fn render_classic(&self) -> String {
        classic::to_classic(&self.render())
    }

    /// Every metric as OpenMetrics text (`application/openmetrics-text;
    /// version=1.0.0`), process figures read now.
    pub fn render(&self) -> String {
        self.read_process();
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// RSS, open descriptors and CPU time from `/proc/self` (Linux); left
    /// at their last value elsewhere.
    fn read_process(&self) {
        if let Ok(status) = std::fs::read_to_string("/proc/self/status")
            && let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        {
            self.rss.set(kb * 1024);
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds
                .set(i64::try_from(dir.count()).unwrap_or(i64::MAX));
        }
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
            && let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest)
        {
            // Fields after the command: state is the 1st, utime the 12th, stime the 13th.
            let fields: Vec<&str> = after.split_whitespace().collect();
            let ticks = |i: usize| {
                fields
                    .get(i)
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            // USER_HZ is 100 on every Linux this runs on.
            self.cpu_seconds.set((ticks(11) + ticks(12)) / 100.0);
        }
    }

    /// Whether the database answered the last probe or depth query.
    pub fn database_reached(&self, up: bool) {
        self.database_up.set(i64::from(up));
    }

    /// The webhooks disabled at runtime now: each shows as 1, the others
    /// not at all. Only changes are applied, so a scrape never sees a
    /// webhook that stays disabled missing for a moment.
    pub fn webhooks_disabled(&self, ids: &[String]) {
        let now: std::collections::BTreeSet<String> = ids.iter().cloned().collect();
        let mut shown = self
            .disabled_shown
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for gone in shown.difference(&now) {
            self.webhook_disabled.remove(&WebhookLabel {
                webhook: gone.clone(),
            });
        }
        for id in now.difference(&shown) {
            self.webhook_disabled
                .get_or_create(&WebhookLabel {
                    webhook: id.clone(),
                })
                .set(1);
        }
        *shown = now;
    }
}
