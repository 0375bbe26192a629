//! The engine's own namespaces (contract §1, "Reserved topics"): topics only
//! the engine writes, and the `source` only its own events carry. Every way
//! in (the ingest API, event-bus sources) checks here, so a publisher cannot
//! forge a dispatched command, an audit event or an operational event.
//! Pure: no I/O.

use super::Topic;

/// The `source` of every event the engine emits itself.
pub const ENGINE_SOURCE: &str = "aion-webhooks";

/// A topic namespace only the engine may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservedNamespace {
    /// `command.**`: dispatched inbound commands.
    Command,
    /// `aion.audit.**`: audit events (an event-bus source may be allowed to
    /// carry the platform's own audit stream; see the sources issue).
    Audit,
    /// `aion.webhooks.**`: the engine's operational events.
    Webhooks,
}

impl ReservedNamespace {
    /// The namespace `topic` falls in, if any. Segments are compared without
    /// regard to ASCII case, so `Command.x` is refused as well: it matches no
    /// `command.*` subscription today, but nothing should look like one.
    pub fn of(topic: &Topic) -> Option<Self> {
        let mut segments = topic.segments();
        let first = segments.next()?;
        if first.eq_ignore_ascii_case("command") {
            return Some(Self::Command);
        }
        if !first.eq_ignore_ascii_case("aion") {
            return None;
        }
        match segments.next() {
            Some(s) if s.eq_ignore_ascii_case("audit") => Some(Self::Audit),
            Some(s) if s.eq_ignore_ascii_case("webhooks") => Some(Self::Webhooks),
            _ => None,
        }
    }

    /// The namespace as a pattern, for messages and docs.
    pub fn pattern(self) -> &'static str {
        match self {
            Self::Command => "command.**",
            Self::Audit => "aion.audit.**",
            Self::Webhooks => "aion.webhooks.**",
        }
    }
}

/// Whether `source` claims to be the engine (ASCII case ignored).
pub fn claims_engine_source(source: &str) -> bool {
    source.trim().eq_ignore_ascii_case(ENGINE_SOURCE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(topic: &str) -> Option<ReservedNamespace> {
        ReservedNamespace::of(&Topic::parse(topic).expect("topic"))
    }

    #[test]
    fn engine_namespaces_are_reserved_whatever_the_case() {
        assert_eq!(ns("command"), Some(ReservedNamespace::Command));
        assert_eq!(
            ns("command.install_module"),
            Some(ReservedNamespace::Command)
        );
        assert_eq!(ns("COMMAND.x.y"), Some(ReservedNamespace::Command));
        assert_eq!(ns("aion.audit"), Some(ReservedNamespace::Audit));
        assert_eq!(ns("aion.audit.activity"), Some(ReservedNamespace::Audit));
        assert_eq!(ns("Aion.Audit.activity"), Some(ReservedNamespace::Audit));
        assert_eq!(
            ns("aion.webhooks.endpoint.disabled"),
            Some(ReservedNamespace::Webhooks)
        );
    }

    #[test]
    fn neighbouring_topics_are_not_reserved() {
        for topic in [
            "commands.x",
            "x.command",
            "aion",
            "aion.router.decisions",
            "aion.auditing",
            "aion.webhook.x",
            "kernel.proposal.created",
        ] {
            assert_eq!(ns(topic), None, "{topic}");
        }
    }

    #[test]
    fn the_engine_source_is_recognised_in_any_case() {
        assert!(claims_engine_source("aion-webhooks"));
        assert!(claims_engine_source("AION-Webhooks"));
        assert!(claims_engine_source(" aion-webhooks "));
        assert!(!claims_engine_source("aion-webhooks-mirror"));
    }
}
