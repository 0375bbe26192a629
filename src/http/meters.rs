//! What the API's listener counts: connections by what happened to them,
//! and how many are open now.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::Registry;

/// What happened to an API connection; counted in
/// `http_connections_total{event}` (open ones in `http_connections_open`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionEvent {
    Opened,
    Closed,
    /// Over the connection cap: answered 503 and closed at once.
    Refused,
    /// `accept` failed (e.g. out of descriptors).
    AcceptFailed,
    /// The request head did not arrive in time (also idle keep-alives).
    HeaderTimeout,
    /// Too many or too large headers: answered 431.
    HeaderTooLarge,
    /// Not HTTP/1.1.
    Malformed,
    /// The body did not arrive in time: answered 408.
    BodyTimeout,
    /// The client stopped reading its response.
    WriteTimeout,
    /// Reset or closed by the client mid-request.
    Aborted,
}

impl ConnectionEvent {
    fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Closed => "closed",
            Self::Refused => "refused",
            Self::AcceptFailed => "accept_failed",
            Self::HeaderTimeout => "header_timeout",
            Self::HeaderTooLarge => "header_too_large",
            Self::Malformed => "malformed",
            Self::BodyTimeout => "body_timeout",
            Self::WriteTimeout => "write_timeout",
            Self::Aborted => "aborted",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

/// The listener's families; see the module documentation.
#[derive(Debug, Default)]
pub struct Meters {
    connections: Family<EventLabel, Counter>,
    open: Gauge,
}

impl Meters {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "http_connections",
            "API connections by event: opened, refused (over the cap), header_timeout, body_timeout, write_timeout, header_too_large, malformed, aborted, accept_failed",
            m.connections.clone(),
        );
        registry.register(
            "http_connections_open",
            "API connections open now",
            m.open.clone(),
        );
        m
    }

    /// Something happened to an API connection.
    pub fn connection(&self, event: ConnectionEvent) {
        match event {
            ConnectionEvent::Opened => {
                self.open.inc();
            }
            ConnectionEvent::Closed => {
                self.open.dec();
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
}
