//! Non-HTTP destinations (contract §10): a webhook whose `url` is
//! `kafka://broker1:9092,broker2:9092/TOPIC` or `nats://host:4222/SUBJECT`
//! delivers to a Kafka topic or a JetStream subject instead of an HTTP
//! receiver. Parsed here, once per policy; pure.

use std::fmt;

use url::Host;

/// Where a bus destination's broker or server listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BrokerAddr {
    pub host: Host<String>,
    pub port: u16,
}

impl fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Host`'s Display puts an IPv6 address in brackets.
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A webhook's non-HTTP destination.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Bus {
    /// A Kafka topic, through these bootstrap brokers.
    Kafka {
        brokers: Vec<BrokerAddr>,
        topic: String,
    },
    /// A subject a JetStream stream takes, on this server.
    Nats { server: BrokerAddr, subject: String },
}

const KAFKA_PORT: u16 = 9092;
const NATS_PORT: u16 = 4222;
const MAX_TOPIC: usize = 249;
const MAX_SUBJECT: usize = 255;
const MAX_BROKERS: usize = 32;

impl Bus {
    /// The destination `text` names, `Ok(None)` when it is not a `kafka://`
    /// or `nats://` URL, or why it is not a valid one.
    pub fn parse(text: &str) -> Result<Option<Self>, String> {
        let Some((scheme, rest)) = text.split_once("://") else {
            return Ok(None);
        };
        let kafka = match scheme.to_ascii_lowercase().as_str() {
            "kafka" => true,
            "nats" => false,
            _ => return Ok(None),
        };
        let (name, what) = if kafka {
            ("kafka://broker1:9092,broker2:9092/TOPIC", "topic")
        } else {
            ("nats://host:4222/SUBJECT", "subject")
        };
        if rest.contains(['?', '#']) {
            return Err(format!(
                "a query or fragment is not allowed; expected {name}"
            ));
        }
        let Some((authority, path)) = rest.split_once('/') else {
            return Err(format!("names no {what}; expected {name}"));
        };
        if authority.contains('@') {
            return Err("credentials in the URL are not allowed".into());
        }
        let addrs = authority
            .split(',')
            .map(|a| broker(a, if kafka { KAFKA_PORT } else { NATS_PORT }))
            .collect::<Result<Vec<_>, _>>()?;
        if kafka {
            if addrs.len() > MAX_BROKERS {
                return Err(format!("at most {MAX_BROKERS} brokers"));
            }
            kafka_topic(path)?;
            Ok(Some(Self::Kafka {
                brokers: addrs,
                topic: path.to_owned(),
            }))
        } else {
            let [server] = <[BrokerAddr; 1]>::try_from(addrs)
                .map_err(|_| "a nats:// destination names one server".to_owned())?;
            nats_subject(path)?;
            Ok(Some(Self::Nats {
                server,
                subject: path.to_owned(),
            }))
        }
    }

    /// `kafka` or `nats`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kafka { .. } => "kafka",
            Self::Nats { .. } => "nats",
        }
    }

    /// The Kafka topic or NATS subject.
    pub fn target(&self) -> &str {
        match self {
            Self::Kafka { topic, .. } => topic,
            Self::Nats { subject, .. } => subject,
        }
    }

    /// A URL naming the first broker and the topic or subject: what the
    /// webhook's `url` shows (a URL has room for one host).
    pub fn url(&self) -> url::Url {
        let (first, target) = match self {
            Self::Kafka { brokers, topic } => (&brokers[0], topic),
            Self::Nats { server, subject } => (server, subject),
        };
        let text = format!("{}://{first}/{target}", self.kind());
        url::Url::parse(&text).unwrap_or_else(|_| {
            // Unreachable for a parsed destination; a URL without the target.
            url::Url::parse(&format!("{}://{first}", self.kind())).expect("a host and port")
        })
    }
}

impl fmt::Display for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kafka { brokers, topic } => {
                let list: Vec<String> = brokers.iter().map(ToString::to_string).collect();
                write!(f, "kafka://{}/{topic}", list.join(","))
            }
            Self::Nats { server, subject } => write!(f, "nats://{server}/{subject}"),
        }
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn broker(text: &str, default_port: u16) -> Result<BrokerAddr, String> {
    let bad = || format!("{text:?} is not a host or host:port");
    let (host, port) = match text.rsplit_once(':') {
        // `[::1]` alone: the colon is inside the brackets.
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (text, None),
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(format!("{text:?} has an invalid port")),
        },
    };
    let host = Host::parse(host).map_err(|_| bad())?;
    Ok(BrokerAddr { host, port })
}

/// Kafka's own rule: 1–249 of `[A-Za-z0-9._-]`, and not `.` or `..`.
fn kafka_topic(topic: &str) -> Result<(), String> {
    let legal = topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if topic.is_empty() || topic.len() > MAX_TOPIC || !legal || topic == "." || topic == ".." {
        return Err(format!(
            "Kafka topic {topic:?} is not valid: 1-{MAX_TOPIC} of A-Z a-z 0-9 . _ -"
        ));
    }
    Ok(())
}

/// A literal subject to publish on: tokens of printable ASCII joined by
/// `.`, none empty, no wildcard.
fn nats_subject(subject: &str) -> Result<(), String> {
    let token_ok = |t: &str| {
        !t.is_empty()
            && t.bytes().all(|b| b.is_ascii_graphic())
            && t != "*"
            && t != ">"
            && !t.contains(['*', '>'])
    };
    if subject.is_empty() || subject.len() > MAX_SUBJECT || !subject.split('.').all(token_ok) {
        return Err(format!(
            "NATS subject {subject:?} is not valid: tokens of printable ASCII joined by '.', no wildcards, at most {MAX_SUBJECT} bytes"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Bus {
        Bus::parse(text).expect("valid").expect("a bus URL")
    }

    #[test]
    fn kafka_urls_name_brokers_and_a_topic() {
        let Bus::Kafka { brokers, topic } = ok("kafka://b1:9093,b2,[::1]:9094/orders.paid-v1")
        else {
            panic!("kafka")
        };
        let shown: Vec<String> = brokers.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["b1:9093", "b2:9092", "[::1]:9094"]);
        assert_eq!(topic, "orders.paid-v1");
        assert_eq!(
            ok("kafka://b1:9093,b2/t").url().as_str(),
            "kafka://b1:9093/t"
        );
        assert_eq!(
            ok("kafka://b1,b2:1/t").to_string(),
            "kafka://b1:9092,b2:1/t"
        );
    }

    #[test]
    fn nats_urls_name_one_server_and_a_subject() {
        let bus = ok("nats://127.0.0.1/orders.paid");
        assert_eq!(bus.to_string(), "nats://127.0.0.1:4222/orders.paid");
        assert_eq!(bus.target(), "orders.paid");
        assert_eq!(bus.url().as_str(), "nats://127.0.0.1:4222/orders.paid");
    }

    #[test]
    fn other_schemes_are_not_bus_urls() {
        assert_eq!(Bus::parse("https://x.example/kafka://"), Ok(None));
        assert_eq!(Bus::parse("not a url"), Ok(None));
    }

    #[test]
    fn bad_bus_urls_say_what_is_wrong() {
        for (text, says) in [
            ("kafka://b1:9092", "names no topic"),
            ("kafka://b1:9092/", "Kafka topic \"\""),
            ("kafka://b1:9092/a b", "is not valid"),
            ("kafka://b1:9092/..", "is not valid"),
            ("kafka://b1:0/t", "invalid port"),
            ("kafka://b1:+80/t", "invalid port"),
            ("kafka://b1:99999/t", "invalid port"),
            ("kafka://,b1/t", "not a host"),
            ("kafka://u:p@b1/t", "credentials"),
            ("kafka://b1/t?x=1", "query"),
            ("nats://a,b/s", "one server"),
            ("nats://h/a.*", "no wildcards"),
            ("nats://h/a.>", "no wildcards"),
            ("nats://h/a..b", "not valid"),
            ("nats://h/a b", "not valid"),
        ] {
            let err = Bus::parse(text).expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
        }
        let long = format!("kafka://b/{}", "t".repeat(250));
        assert!(Bus::parse(&long).is_err());
    }
}
