//! Kafka and NATS destinations as `policy check` sees them (issue 30,
//! item 6): the URL parsed once, its errors at the line of `url`, and the
//! settings only HTTP takes refused at theirs.

use super::*;

fn parse(text: &str) -> Result<PolicySet, PolicyErrors> {
    PolicySet::parse(text, "t", Path::new("."), &|_| None)
}

fn hook(id: &str, url: &str, extra: &str) -> String {
    format!("  - id: {id}\n    url: \"{url}\"\n    secret: s\n    topics: [x]\n{extra}")
}

#[test]
fn kafka_and_nats_urls_become_destinations() {
    let text = [
        "version: 1\nnetwork:\n  proxy: http://egress.internal:3128\nwebhooks:\n",
        &hook("k", "kafka://b1:9093,b2/orders.paid", "    ordering: key\n"),
        &hook(
            "n",
            "nats://127.0.0.1/orders.paid",
            "    headers: { X-Team: pay }\n",
        ),
        &hook("h", "https://h.example.com/x", ""),
    ]
    .concat();
    let p = parse(&text).expect("valid");
    let k = p.webhook("k").unwrap();
    let bus = k.bus.as_deref().expect("kafka");
    assert_eq!(bus.to_string(), "kafka://b1:9093,b2:9092/orders.paid");
    assert_eq!(k.url.as_str(), "kafka://b1:9093/orders.paid");
    assert!(k.route.proxy.is_none(), "network.proxy is for HTTP only");
    let n = p.webhook("n").unwrap();
    assert_eq!(
        n.bus.as_deref().unwrap().to_string(),
        "nats://127.0.0.1:4222/orders.paid"
    );
    let h = p.webhook("h").unwrap();
    assert!(h.bus.is_none());
    assert!(h.route.proxy.is_some());
}

#[test]
fn bad_destinations_and_http_only_settings_are_refused_at_their_lines() {
    let text = [
        "version: 1\nwebhooks:\n",
        &hook("a", "kafka://b1:9092", ""),
        &hook("b", "nats://h/orders.*", ""),
        &hook(
            "c",
            "nats://h/s",
            "    tls: { ca_file: ca.pem }\n    proxy: none\n    oauth2: { token_url: https://t.example.com, client_id: i, client_secret: s }\n",
        ),
        &hook("d", "kafka://u:p@b1/t", ""),
    ]
    .concat();
    let errs = parse(&text).unwrap_err().errors;
    assert_eq!(errs.len(), 6, "{errs:#?}");
    assert_error(&errs, "webhooks[0].url", 4, "names no topic");
    assert_error(&errs, "webhooks[1].url", 8, "no wildcards");
    assert_error(&errs, "webhooks[2].tls", 15, "HTTP receivers only");
    assert_error(&errs, "webhooks[2].proxy", 16, "nats:// destination");
    assert_error(&errs, "webhooks[2].oauth2", 17, "HTTP receivers only");
    assert_error(&errs, "webhooks[3].url", 19, "credentials");
    assert!(
        !format!("{errs:?}").contains("u:p"),
        "credentials are not echoed"
    );
}
