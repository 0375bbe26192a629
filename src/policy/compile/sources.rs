//! Compiling `sources:` (contract §9): each entry's kind decides which
//! fields it takes; a field of the other kind is an error naming it.

use std::collections::HashSet;

use serde_saphyr::Spanned;

use super::super::raw::{RawSource, Str};
use super::super::sources::{
    DEFAULT_SOURCE_BATCH, KafkaSasl, KafkaSource, KafkaTls, MAX_SOURCE_BATCH, MessageFormat,
    SaslMechanism, Source, SourceKind, StartAt,
};
use super::Compiler;
use crate::domain::{Secret, WebhookId};

mod nats;

impl Compiler<'_> {
    pub fn sources(&mut self, raw: &[Spanned<RawSource>]) -> Vec<Source> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (i, s) in raw.iter().enumerate() {
            let path = format!("sources[{i}]");
            if let Some(source) = self.source(&s.value, &path)
                && self.unique(&mut seen, &source.id, &s.value.id, &path)
            {
                out.push(source);
            }
        }
        out
    }

    fn unique(&mut self, seen: &mut HashSet<String>, id: &str, at: &Str, path: &str) -> bool {
        if seen.insert(id.to_owned()) {
            return true;
        }
        self.error(
            format!("{path}.id"),
            at.referenced,
            format!("source id {id:?} is used twice"),
        );
        false
    }

    fn source(&mut self, s: &RawSource, path: &str) -> Option<Source> {
        // Source ids follow the webhook id grammar: they end up in metrics labels and URLs.
        let id =
            self.string(&s.id, &format!("{path}.id"))
                .and_then(|id| match WebhookId::parse(&id) {
                    Ok(_) if id == crate::domain::ENGINE_SOURCE => {
                        self.error(
                            format!("{path}.id"),
                            s.id.referenced,
                            format!("`{id}` is reserved for the engine's own events"),
                        );
                        None
                    }
                    Ok(_) => Some(id),
                    Err(e) => {
                        self.error(format!("{path}.id"), s.id.referenced, e.to_string());
                        None
                    }
                });
        let format = match &s.format {
            None => Some(MessageFormat::Envelope),
            Some(f) => match self.string(f, &format!("{path}.format"))?.as_str() {
                "envelope" => Some(MessageFormat::Envelope),
                "raw" => Some(MessageFormat::Raw),
                other => {
                    self.error(
                        format!("{path}.format"),
                        f.referenced,
                        format!("unknown format {other:?}; expected `envelope` or `raw`"),
                    );
                    None
                }
            },
        };
        let max_batch = match &s.max_batch {
            None => Some(DEFAULT_SOURCE_BATCH),
            Some(n) if (1..=i64::from(MAX_SOURCE_BATCH)).contains(&n.value) => Some(n.value as u32),
            Some(n) => {
                self.error(
                    format!("{path}.max_batch"),
                    n.referenced,
                    format!("must be 1 to {MAX_SOURCE_BATCH}, got {}", n.value),
                );
                None
            }
        };
        let kind_text = self.string(&s.kind, &format!("{path}.kind"))?;
        let kind = match kind_text.as_str() {
            "kafka" => {
                self.foreign(s, path, "kafka");
                self.kafka(s, path).map(SourceKind::Kafka)
            }
            "nats" => {
                self.foreign(s, path, "nats");
                self.nats(s, path).map(SourceKind::Nats)
            }
            other => {
                self.error(
                    format!("{path}.kind"),
                    s.kind.referenced,
                    format!("unknown source kind {other:?}; expected `kafka` or `nats`"),
                );
                None
            }
        };
        let kind = kind?;
        let files_stamp = self.stamp_files(&kind.files());
        Some(Source {
            id: id?,
            format: format?,
            accept_audit_topics: s.accept_audit_topics.unwrap_or(false),
            max_batch: max_batch?,
            enabled: s.enabled.unwrap_or(true),
            kind,
            files_stamp,
        })
    }

    /// Fields of the other kind are errors, each named.
    fn foreign(&mut self, s: &RawSource, path: &str, kind: &str) {
        let kafka_only = [
            ("brokers", s.brokers.as_ref().map(|v| v.referenced)),
            ("group", s.group.as_ref().map(|v| v.referenced)),
            ("topics", s.topics.as_ref().map(|v| v.referenced)),
            ("start", s.start.as_ref().map(|v| v.referenced)),
            ("tls", s.tls.as_ref().map(|v| v.referenced)),
            ("sasl", s.sasl.as_ref().map(|v| v.referenced)),
        ];
        let nats_only = [
            ("url", s.url.as_ref().map(|v| v.referenced)),
            ("stream", s.stream.as_ref().map(|v| v.referenced)),
            ("consumer", s.consumer.as_ref().map(|v| v.referenced)),
            ("subjects", s.subjects.as_ref().map(|v| v.referenced)),
            ("credentials", s.credentials.as_ref().map(|v| v.referenced)),
        ];
        let (other, list) = if kind == "kafka" {
            ("nats", nats_only.as_slice())
        } else {
            ("kafka", kafka_only.as_slice())
        };
        for &(name, loc) in list {
            if let Some(loc) = loc {
                self.error(
                    format!("{path}.{name}"),
                    loc,
                    format!("`{name}` belongs to `kind: {other}` sources, not `kind: {kind}`"),
                );
            }
        }
    }

    fn required(&mut self, v: &Option<Str>, path: &str, name: &str, owner: &Str) -> Option<String> {
        match v {
            Some(s) => {
                let text = self.string(s, &format!("{path}.{name}"))?;
                if text.is_empty() {
                    self.error(
                        format!("{path}.{name}"),
                        s.referenced,
                        format!("`{name}` must not be empty"),
                    );
                    return None;
                }
                Some(text)
            }
            None => {
                self.error(path, owner.referenced, format!("`{name}` is required"));
                None
            }
        }
    }

    fn list(
        &mut self,
        v: &Option<Spanned<Vec<Str>>>,
        path: &str,
        name: &str,
        owner: &Str,
        required: bool,
    ) -> Option<Vec<String>> {
        let Some(list) = v else {
            if required {
                self.error(path, owner.referenced, format!("`{name}` is required"));
                return None;
            }
            return Some(Vec::new());
        };
        if list.value.is_empty() && required {
            self.error(
                format!("{path}.{name}"),
                list.referenced,
                format!("`{name}` must list at least one entry"),
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (i, s) in list.value.iter().enumerate() {
            match self.string(s, &format!("{path}.{name}[{i}]")) {
                Some(t) if t.is_empty() => {
                    self.error(
                        format!("{path}.{name}[{i}]"),
                        s.referenced,
                        "must not be empty",
                    );
                    ok = false;
                }
                Some(t) => out.push(t),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn kafka(&mut self, s: &RawSource, path: &str) -> Option<KafkaSource> {
        let brokers = self.list(&s.brokers, path, "brokers", &s.kind, true);
        if let Some(list) = &brokers {
            for (i, b) in list.iter().enumerate() {
                if b.rsplit_once(':')
                    .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
                {
                    let at = s.brokers.as_ref().map(|l| l.value[i].referenced);
                    if let Some(at) = at {
                        self.error(
                            format!("{path}.brokers[{i}]"),
                            at,
                            format!("{b:?} is not host:port"),
                        );
                    }
                }
            }
        }
        let group = self.required(&s.group, path, "group", &s.kind);
        let topics = self.list(&s.topics, path, "topics", &s.kind, true);
        let start = match &s.start {
            None => Some(StartAt::Earliest),
            Some(t) => match self.string(t, &format!("{path}.start"))?.as_str() {
                "earliest" => Some(StartAt::Earliest),
                "latest" => Some(StartAt::Latest),
                other => {
                    self.error(
                        format!("{path}.start"),
                        t.referenced,
                        format!("unknown start {other:?}; expected `earliest` or `latest`"),
                    );
                    None
                }
            },
        };
        let tls = s.tls.as_ref().map(|t| {
            let file = |c: &mut Self, f: &Option<Str>, name: &str| {
                f.as_ref()
                    .and_then(|f| c.string(f, &format!("{path}.tls.{name}")))
                    .map(|n| c.base_dir.join(n))
            };
            KafkaTls {
                ca_file: file(self, &t.value.ca_file, "ca_file"),
                cert_file: file(self, &t.value.cert_file, "cert_file"),
                key_file: file(self, &t.value.key_file, "key_file"),
            }
        });
        let sasl = match &s.sasl {
            None => Some(None),
            Some(raw) => self.sasl(&raw.value, raw.referenced, path).map(Some),
        };
        Some(KafkaSource {
            brokers: brokers?,
            group: group?,
            topics: topics?,
            start: start?,
            tls,
            sasl: sasl?,
        })
    }

    fn sasl(
        &mut self,
        raw: &super::super::raw::RawSasl,
        owner: serde_saphyr::Location,
        path: &str,
    ) -> Option<KafkaSasl> {
        let p = format!("{path}.sasl");
        let mechanism = self.string(&raw.mechanism, &format!("{p}.mechanism")).and_then(|m| {
            let parsed = SaslMechanism::parse(&m);
            if parsed.is_none() {
                self.error(format!("{p}.mechanism"), raw.mechanism.referenced, format!("unknown SASL mechanism {m:?}; expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"));
            }
            parsed
        });
        let username = self.string(&raw.username, &format!("{p}.username"));
        let password = match (&raw.password, &raw.password_file) {
            (Some(pw), None) => self.string(pw, &format!("{p}.password")),
            (None, Some(f)) => self.read_file(f, &format!("{p}.password_file")),
            _ => {
                self.error(&p, owner, "set one of `password` and `password_file`");
                None
            }
        }
        .map(Secret::new);
        Some(KafkaSasl {
            mechanism: mechanism?,
            username: username?,
            password: password?,
        })
    }
}
