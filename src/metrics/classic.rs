//! The classic Prometheus text format (`text/plain; version=0.0.4`) from
//! the OpenMetrics text the registry encodes. The two differ where it
//! matters to a scraper that trusts the header: OpenMetrics names a
//! counter's family without `_total` and its samples with it, writes
//! `# UNIT`, `_created` samples, exemplars and `# EOF`, and has `info`
//! metrics. Read with the classic parser, such a counter's samples match no
//! `# TYPE` and arrive untyped and without help. Here every family is
//! renamed to the name of its samples, and what the classic format lacks is
//! dropped. Pure.

/// `openmetrics` (one registry's encoding) as classic Prometheus text.
pub fn to_classic(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut family = Family::default();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            family.start(name, &mut out);
            family.help = Some(help.replace("\\\"", "\""));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            family.start(name, &mut out);
            family.kind = Some(kind.to_owned());
        } else if line.starts_with("# ") || line.is_empty() {
            // `# UNIT`, `# EOF`: not in the classic format.
        } else {
            family.sample(line, &mut out);
        }
    }
    family.flush_header(&mut out);
    out
}

/// The family being written: its header is written before its first sample.
#[derive(Debug, Default)]
struct Family {
    name: String,
    help: Option<String>,
    kind: Option<String>,
    written: bool,
}

impl Family {
    /// A `# HELP` or `# TYPE` line: the same family, or the next one.
    fn start(&mut self, name: &str, out: &mut String) {
        if name != self.name {
            self.flush_header(out);
            *self = Self {
                name: name.to_owned(),
                ..Self::default()
            };
        }
    }

    /// The classic name and type of the family's samples.
    fn classic(&self) -> (String, &'static str) {
        match self.kind.as_deref() {
            Some("counter") if !self.name.ends_with("_total") => {
                (format!("{}_total", self.name), "counter")
            }
            Some("counter") => (self.name.clone(), "counter"),
            Some("gauge") => (self.name.clone(), "gauge"),
            Some("histogram") => (self.name.clone(), "histogram"),
            Some("summary") => (self.name.clone(), "summary"),
            // An info metric is a gauge of 1 named `<name>_info`.
            Some("info") => (format!("{}_info", self.name), "gauge"),
            _ => (self.name.clone(), "untyped"),
        }
    }

    /// Writes `# HELP` and `# TYPE` once, under the samples' name. A family
    /// with no sample still gets its header (as the registry wrote it).
    fn flush_header(&mut self, out: &mut String) {
        if self.written || self.name.is_empty() {
            return;
        }
        self.written = true;
        let (name, kind) = self.classic();
        if let Some(help) = &self.help {
            out.push_str(&format!("# HELP {name} {help}\n"));
        }
        out.push_str(&format!("# TYPE {name} {kind}\n"));
    }

    fn sample(&mut self, line: &str, out: &mut String) {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        if line[..name_end].ends_with("_created") && !self.name.ends_with("_created") {
            return;
        }
        self.flush_header(out);
        out.push_str(without_exemplar(line));
        out.push('\n');
    }
}

/// A sample line without its ` # {…} value` exemplar (quote-aware: a label
/// value may hold ` # `).
fn without_exemplar(line: &str) -> &str {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '#' if !quoted && line[..i].ends_with(' ') => return line[..i].trim_end(),
            _ => {}
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_as_their_samples_and_openmetrics_only_lines_go() {
        let om = "# HELP a_events Events accepted.\n# TYPE a_events counter\na_events_total{source=\"api\"} 3\na_events_created{source=\"api\"} 1.7e9\n# HELP a_depth Queue \\\"depth\\\".\n# TYPE a_depth gauge\na_depth{state=\"x # y\"} 2 # {trace_id=\"1\"} 2\n# HELP a_lat Latency.\n# TYPE a_lat histogram\n# UNIT a_lat seconds\na_lat_sum 0.5\na_lat_count 1\na_lat_bucket{le=\"+Inf\"} 1\n# TYPE a_build info\na_build_info{version=\"1\"} 1\n# HELP a_empty Nothing yet.\n# TYPE a_empty counter\n# EOF\n";
        assert_eq!(
            to_classic(om),
            "# HELP a_events_total Events accepted.\n# TYPE a_events_total counter\na_events_total{source=\"api\"} 3\n# HELP a_depth Queue \"depth\".\n# TYPE a_depth gauge\na_depth{state=\"x # y\"} 2\n# HELP a_lat Latency.\n# TYPE a_lat histogram\na_lat_sum 0.5\na_lat_count 1\na_lat_bucket{le=\"+Inf\"} 1\n# TYPE a_build_info gauge\na_build_info{version=\"1\"} 1\n# HELP a_empty_total Nothing yet.\n# TYPE a_empty_total counter\n"
        );
    }
}
