//! The egress proxy (issue 30, item 4), a real forward proxy on loopback:
//! every attempt goes through it (absolute-form for http, `CONNECT` for
//! https, with its credentials), the receiver sees the proxy as its peer,
//! `proxy: none` goes direct, and a private target is refused before the
//! proxy is contacted.

use std::sync::Arc;

use super::peers::{Pki, Proxy, Server};
use super::{error_kinds, post, wait_state};
use crate::support::*;

#[tokio::test]
async fn every_attempt_goes_through_the_proxy_and_the_receiver_sees_the_proxy() {
    let proxy = Proxy::start().await;
    let pki = Pki::new();
    pki.client("aion", 90);
    let plain = Server::http(Arc::new(|_| 200)).await;
    let tls = Server::https(&pki, true).await;
    let direct = Server::http(Arc::new(|_| 200)).await;
    let hooks = [
        hook("plain", &plain.url, "[t.x]", ""),
        hook("tls", &tls.url, "[t.x]", &pki.tls_yaml("aion")),
        hook("direct", &direct.url, "[t.x]", "proxy: none"),
    ]
    .concat();
    // The password is percent-encoded in the URL ("pa:s%41": a `%` that
    // must stay a `%`) and sent as Basic.
    let yaml = policy_yaml(&hooks).replace(
        "network:\n",
        &format!(
            "network:\n  proxy: \"http://egress:pa%3As%2541@{}\"\n",
            proxy.addr
        ),
    );
    let basic = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode("egress:pa:s%41");
        format!("Basic {b64}")
    };
    let app = TestApp::spawn(TestDb::sqlite().await, &yaml).await;
    post(&app, "p", 3).await;
    for h in ["plain", "tls", "direct"] {
        wait_state(&app, h, "succeeded", 3).await;
    }
    let seen = proxy.seen();
    let plain_port = plain
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .trim_end_matches("/hook");
    let tls_port = tls.url.split(':').nth(2).unwrap().trim_end_matches("/hook");
    // http: the request itself, absolute-form.
    assert!(
        seen.iter()
            .any(|(line, _)| line.starts_with(&format!("POST http://127.0.0.1:{plain_port}/hook"))),
        "{seen:?}"
    );
    // https: a tunnel.
    assert!(
        seen.iter()
            .any(|(line, _)| line.starts_with(&format!("CONNECT 127.0.0.1:{tls_port} "))),
        "{seen:?}"
    );
    // Every connection carried the proxy's credentials ("egress:pa:ss").
    assert!(
        seen.iter()
            .all(|(_, auth)| auth.as_deref() == Some(basic.as_str())),
        "{seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|(line, _)| line.contains(direct.url.split(':').nth(2).unwrap())),
        "{seen:?}"
    );
    // The receivers behind the proxy saw the proxy (127.0.0.2); the direct one the engine.
    for s in plain.seen().into_iter().chain(tls.seen()) {
        assert_eq!(s.peer.ip().to_string(), "127.0.0.2", "{s:?}");
    }
    assert_eq!(plain.seen().len(), 3);
    assert_eq!(tls.seen().len(), 3);
    for s in direct.seen() {
        assert_eq!(s.peer.ip().to_string(), "127.0.0.1", "{s:?}");
    }
    app.stop().await;
}

both! {
    async fn a_private_target_is_refused_before_the_proxy_is_contacted(db) {
        let proxy = Proxy::start().await;
        let rx = Server::http(Arc::new(|_| 200)).await;
        let port = rx.url.split(':').nth(2).unwrap().trim_end_matches("/hook").to_owned();
        // No allow_private_targets: loopback is forbidden, by literal and by name.
        let yaml = format!(
            "version: 1
webhooks:
  - {{ id: literal, url: \"http://127.0.0.1:{port}/hook\", secret: s, topics: [t.x], retry: {{ max_attempts: 1 }} }}
  - {{ id: named, url: \"http://localhost:{port}/hook\", secret: s, topics: [t.x], retry: {{ max_attempts: 1 }} }}
auth:
  api_keys:
    - {{ id: tester, sha256: \"{}\", roles: [publisher, admin] }}
network:
  proxy: \"http://{}\"
",
            sha256_hex(API_KEY),
            proxy.addr
        );
        let app = TestApp::spawn(db, &yaml).await;
        post(&app, "s", 2).await;
        wait_state(&app, "literal", "dead", 2).await;
        wait_state(&app, "named", "dead", 2).await;
        for h in ["literal", "named"] {
            let kinds = error_kinds(&app, h).await;
            assert!(kinds.iter().all(|k| k.as_deref() == Some("blocked_destination")), "{h}: {kinds:?}");
        }
        assert!(proxy.seen().is_empty(), "the proxy was contacted: {:?}", proxy.seen());
        assert!(rx.seen().is_empty());
        app.stop().await;
    }
}
