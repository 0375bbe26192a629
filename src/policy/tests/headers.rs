//! A webhook's `headers:` and `header_files:` as `policy check` sees them:
//! names refused, values kept secret, files watched (issue 30, item 1).

use super::*;

/// A policy with one webhook `a`, its lines after `topics:` to follow
/// (they start on line 7).
const HOOK_A: &str = "version: 1\nwebhooks:\n  - id: a\n    url: https://a.example.com\n    secret: s\n    topics: [x]\n";

#[test]
fn reserved_and_malformed_headers_are_refused() {
    let errs = errors(
        &[HOOK_A, "    headers: { X-Aion-Signature: forged, Content-Type: text/plain, X-Ok: \"a\\r\\nb\" }\n"].concat(),
    );
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert_error(
        &errs,
        "webhooks[0].headers.X-Aion-Signature",
        7,
        "set by the engine",
    );
    assert_error(
        &errs,
        "webhooks[0].headers.Content-Type",
        7,
        "set by the engine",
    );
    assert_error(&errs, "webhooks[0].headers.X-Ok", 7, "control characters");
}

#[test]
fn a_name_twice_an_empty_value_or_a_control_byte_is_refused() {
    let errs = errors(
        &[HOOK_A, "    headers:\n      Authorization: Bearer new\n      authorization: Bearer old\n      X-Empty: \"\"\n      X-Bell: \"a\\u0007b\"\n      X-Del: \"a\\u007fb\"\n      X-Tab: \"a\\tb\"\n      Bad Name: x\n"].concat(),
    );
    assert_eq!(errs.len(), 5, "{errs:#?}");
    // `BTreeMap` order: the lowercase spelling comes second.
    assert_error(&errs, "webhooks[0].headers.authorization", 9, "twice");
    assert_error(&errs, "webhooks[0].headers.X-Empty", 10, "empty");
    assert_error(
        &errs,
        "webhooks[0].headers.X-Bell",
        11,
        "control characters",
    );
    assert_error(&errs, "webhooks[0].headers.X-Del", 12, "control characters");
    assert_error(
        &errs,
        "webhooks[0].headers.Bad Name",
        14,
        "not a valid HTTP header name",
    );
    assert!(
        errs.iter().all(|e| !e.message.contains("Bearer")),
        "{errs:#?}"
    );
}

#[test]
fn hop_by_hop_headers_are_refused_naming_each() {
    let names = [
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
    ];
    let lines: String = names
        .iter()
        .map(|n| format!("      {n}: not-this-value\n"))
        .collect();
    let errs = errors(&format!("{HOOK_A}    headers:\n{lines}"));
    assert_eq!(errs.len(), names.len(), "{errs:#?}");
    for (i, name) in names.iter().enumerate() {
        let line = 8 + i as u64;
        assert_error(
            &errs,
            &format!("webhooks[0].headers.{name}"),
            line,
            "set by the engine",
        );
    }
    assert!(
        errs.iter().all(|e| !e.message.contains("not-this-value")),
        "an error echoes a header's value: {errs:#?}"
    );
}

#[test]
fn header_values_are_secrets_never_shown_by_debug() {
    let env = |name: &str| (name == "PARTNER_TOKEN").then(|| "tok-3f9a".to_owned());
    let text = &[
        HOOK_A,
        "    headers: { Authorization: \"Bearer ${PARTNER_TOKEN}\", X-Team: payments }\n",
    ]
    .concat();
    let p = PolicySet::parse(text, "t", Path::new("."), &env).expect("valid");
    let w = p.webhook("a").expect("a");
    let sent: Vec<(&str, &str)> = w
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    assert_eq!(
        sent,
        [("Authorization", "Bearer tok-3f9a"), ("X-Team", "payments")]
    );
    let shown = format!("{p:?} {w:?}");
    assert!(
        !shown.contains("tok-3f9a") && !shown.contains("payments"),
        "{shown}"
    );
    // A missing variable names the variable, never a value.
    let errs = errors(&text.replace("PARTNER_TOKEN", "UNSET_TOKEN"));
    assert_error(&errs, "webhooks[0].headers.Authorization", 7, "UNSET_TOKEN");
}

#[test]
fn header_files_hold_secret_values_watched_like_secret_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("partner.auth"), "Bearer tok-1\n").expect("write");
    let text = &[
        HOOK_A,
        "    headers: { X-Team: payments }\n    header_files: { Authorization: partner.auth }\n",
    ]
    .concat();
    let p = PolicySet::parse(text, "t", dir.path(), &no_env).expect("valid");
    let w = p.webhook("a").expect("a");
    let sent: Vec<(&str, &str)> = w
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    assert_eq!(
        sent,
        [("X-Team", "payments"), ("Authorization", "Bearer tok-1")]
    );
    assert!(!format!("{p:?}").contains("tok-1"));
    // The file is watched, and rotating it is a change a reload applies.
    assert!(
        p.files().iter().any(|f| f.ends_with("partner.auth")),
        "{:?}",
        p.files()
    );
    std::fs::write(dir.path().join("partner.auth"), "Bearer tok-2\n").expect("rotate");
    let rotated = PolicySet::parse(text, "t", dir.path(), &no_env).expect("valid");
    assert_ne!(p.fingerprint(), rotated.fingerprint());
    assert_eq!(
        rotated.webhook("a").expect("a").headers[1].1.expose(),
        "Bearer tok-2"
    );

    // Missing file, a name in both maps, a reserved name, a line break
    // inside the value: each an error at its line, none showing a value.
    std::fs::write(dir.path().join("two.lines"), "Bearer tok-1\nX-Evil: 1\n").expect("write");
    let bad = &[HOOK_A, "    headers: { X-Team: payments }\n    header_files:\n      Authorization: nope.auth\n      x-team: partner.auth\n      Proxy-Authorization: partner.auth\n      X-Two: two.lines\n"].concat();
    let errs = PolicySet::parse(bad, "t", dir.path(), &no_env)
        .expect_err("refused")
        .errors;
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert_error(
        &errs,
        "webhooks[0].header_files.Authorization",
        9,
        "cannot read",
    );
    assert_error(&errs, "webhooks[0].header_files.x-team", 10, "twice");
    assert_error(
        &errs,
        "webhooks[0].header_files.Proxy-Authorization",
        11,
        "set by the engine",
    );
    assert_error(&errs, "webhooks[0].header_files.X-Two", 12, "CR, LF");
    assert!(
        errs.iter().all(|e| !e.message.contains("tok-")),
        "{errs:#?}"
    );
}
