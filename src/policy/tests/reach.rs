//! A webhook's `tls:`, `oauth2:` and `proxy:`, and `network.proxy`, as
//! `policy check` sees them (issue 30, items 2–4): every problem at its
//! line and column, secrets never echoed, files watched.

use super::*;

/// A policy with one webhook `a`; its lines after `topics:` follow (from
/// line 7).
const HOOK_A: &str = "version: 1\nwebhooks:\n  - id: a\n    url: https://a.example.com\n    secret: s\n    topics: [x]\n";

fn parse_in(dir: &Path, text: &str) -> Result<PolicySet, PolicyErrors> {
    PolicySet::parse(text, "t", dir, &|name| {
        (name == "OAUTH_SECRET").then(|| "oauth-secret-value".to_owned())
    })
}

/// A self-signed certificate and its key, valid from yesterday for `days`.
fn pair(days: i64) -> (String, String) {
    use chrono::Datelike as _;
    let ymd = |d: chrono::DateTime<chrono::Utc>| {
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    };
    let mut params = rcgen::CertificateParams::new(vec!["aion.test".into()]).unwrap();
    params.not_before = ymd(chrono::Utc::now() - chrono::Duration::days(1));
    params.not_after = ymd(chrono::Utc::now() + chrono::Duration::days(days));
    let key = rcgen::KeyPair::generate().unwrap();
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

#[test]
fn a_client_certificate_is_read_checked_and_watched() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pair(30);
    std::fs::write(dir.path().join("c.pem"), &cert).unwrap();
    std::fs::write(dir.path().join("k.pem"), &key).unwrap();
    std::fs::write(dir.path().join("ca.pem"), &cert).unwrap();
    let text = [
        HOOK_A,
        "    tls: { client_cert_file: c.pem, client_key_file: k.pem, ca_file: ca.pem }\n",
    ]
    .concat();
    let p = parse_in(dir.path(), &text).expect("valid");
    let tls = p.webhook("a").unwrap().route.tls.clone().expect("tls");
    let days = (tls.identity.as_ref().unwrap().not_after - chrono::Utc::now()).num_days();
    assert!((28..=31).contains(&days), "{days}");
    assert!(tls.ca_pem.is_some());
    for f in ["c.pem", "k.pem", "ca.pem"] {
        assert!(p.files().iter().any(|p| p.ends_with(f)), "{f} watched");
    }
    assert!(
        !format!("{p:?}").contains("PRIVATE KEY"),
        "the key is never printed"
    );
}

#[test]
fn an_expired_mismatched_or_half_pair_is_refused_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = pair(30);
    let (_, other_key) = pair(30);
    std::fs::write(dir.path().join("c.pem"), &cert).unwrap();
    std::fs::write(dir.path().join("k.pem"), &other_key).unwrap();
    let text = [
        HOOK_A,
        "    tls:\n      client_cert_file: c.pem\n      client_key_file: k.pem\n",
        "  - id: b\n    url: https://b.example.com\n    secret: s\n    topics: [x]\n    tls: { client_cert_file: c.pem }\n",
        "  - id: c\n    url: https://c.example.com\n    secret: s\n    topics: [x]\n    tls: { ca_file: missing.pem }\n",
        "  - id: d\n    url: https://d.example.com\n    secret: s\n    topics: [x]\n    tls: {}\n",
    ]
    .concat();
    let errs = parse_in(dir.path(), &text).unwrap_err().errors;
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert_error(
        &errs,
        "webhooks[0].tls.client_key_file",
        9,
        "does not belong",
    );
    assert_error(&errs, "webhooks[1].tls", 14, "go together");
    assert_error(&errs, "webhooks[2].tls.ca_file", 19, "cannot read");
    assert_error(&errs, "webhooks[3].tls", 24, "needs client_cert_file");
}

#[test]
fn oauth2_settings_are_checked_and_the_secret_kept_secret() {
    let text = [
        HOOK_A,
        "    oauth2:\n      token_url: https://auth.example.com/token\n      client_id: aion\n      client_secret: ${OAUTH_SECRET}\n      scopes: [a.write, b]\n      audience: partner\n",
    ]
    .concat();
    let dir = tempfile::tempdir().unwrap();
    let p = parse_in(dir.path(), &text).expect("valid");
    let o = p.webhook("a").unwrap().oauth2.clone().expect("oauth2");
    assert_eq!(o.client_secret.expose(), "oauth-secret-value");
    assert_eq!(o.scopes, ["a.write", "b"]);
    assert!(!format!("{p:?}").contains("oauth-secret-value"));

    let bad = [
        HOOK_A,
        "    oauth2:\n      token_url: ftp://auth.example.com/token\n      client_id: \"\"\n      client_secret: x\n      client_secret_file: y\n      scopes: [\"two words\"]\n      client_auth: jwt\n",
        "    headers: { authorization: Bearer static }\n",
    ]
    .concat();
    let errs = parse_in(dir.path(), &bad).unwrap_err().errors;
    assert_eq!(errs.len(), 6, "{errs:#?}");
    assert_error(&errs, "webhooks[0].oauth2.token_url", 8, "http or https");
    assert_error(
        &errs,
        "webhooks[0].oauth2.client_id",
        9,
        "must not be empty",
    );
    assert_error(
        &errs,
        "webhooks[0].oauth2",
        8,
        "exactly one of client_secret",
    );
    assert_error(&errs, "webhooks[0].oauth2.scopes[0]", 12, "printable ASCII");
    assert_error(&errs, "webhooks[0].oauth2.client_auth", 13, "basic or post");
    assert_error(
        &errs,
        "webhooks[0].headers.authorization",
        14,
        "set by oauth2",
    );
}

#[test]
fn a_proxy_is_inherited_overridden_or_bypassed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("proxy.pass"), "p@ss word\n").unwrap();
    let text = "version: 1
webhooks:
  - { id: a, url: https://a.example.com, secret: s, topics: [x] }
  - { id: b, url: https://b.example.com, secret: s, topics: [x], proxy: none }
  - { id: c, url: https://c.example.com, secret: s, topics: [x], proxy: \"http://other:8080\" }
network:
  proxy: http://egress%40corp@egress.internal:3128
  proxy_password_file: proxy.pass
";
    let p = parse_in(dir.path(), text).expect("valid");
    let proxy = |id: &str| p.webhook(id).unwrap().route.proxy.clone();
    let a = proxy("a").expect("inherited");
    assert_eq!(a.url.as_str(), "http://egress.internal:3128/");
    assert_eq!(a.username.as_deref(), Some("egress@corp"));
    assert_eq!(a.password.as_ref().map(|s| s.expose()), Some("p@ss word"));
    assert!(proxy("b").is_none(), "proxy: none bypasses network.proxy");
    assert_eq!(proxy("c").unwrap().url.as_str(), "http://other:8080/");
    assert!(!format!("{p:?}").contains("p@ss"));
    assert!(p.files().iter().any(|f| f.ends_with("proxy.pass")));
}

#[test]
fn a_bad_proxy_is_refused_without_echoing_it() {
    let text = "version: 1
webhooks:
  - { id: a, url: https://a.example.com, secret: s, topics: [x], proxy: \"socks5://u:hunter22@h:1\" }
  - { id: b, url: https://b.example.com, secret: s, topics: [x], proxy: \"http://u:hunter22@h:1/path\" }
  - { id: c, url: https://c.example.com, secret: s, topics: [x], proxy_password_file: p }
  - { id: d, url: https://d.example.com, secret: s, topics: [x], proxy: \"http://:hunter22@h:1\" }
network:
  proxy: \"http://u:hunter22@h:1\"
  proxy_password_file: p
";
    let dir = tempfile::tempdir().unwrap();
    let errs = parse_in(dir.path(), text).unwrap_err().errors;
    assert_eq!(errs.len(), 5, "{errs:#?}");
    assert_error(&errs, "webhooks[0].proxy", 3, "expected http://host:port");
    assert_error(&errs, "webhooks[3].proxy", 6, "no user name");
    assert_error(&errs, "webhooks[1].proxy", 4, "no path or query");
    assert_error(
        &errs,
        "webhooks[2].proxy_password_file",
        5,
        "without a proxy",
    );
    assert_error(&errs, "network.proxy_password_file", 9, "no password");
    assert!(
        errs.iter().all(|e| !e.message.contains("hunter22")),
        "{errs:#?}"
    );
}

#[test]
fn a_private_ca_cannot_go_through_an_https_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = pair(30);
    std::fs::write(dir.path().join("ca.pem"), &cert).unwrap();
    let text = [
        HOOK_A,
        "    tls: { ca_file: ca.pem }\n    proxy: https://egress.example.com:3128\n",
    ]
    .concat();
    let errs = parse_in(dir.path(), &text).unwrap_err().errors;
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_error(&errs, "webhooks[0].tls.ca_file", 7, "https:// proxy");
}
