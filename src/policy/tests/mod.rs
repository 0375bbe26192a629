//! Policy loading tests: the shipped files, every validation rule, and
//! hostile input. Each error case checks the YAML path and the position.

use std::path::Path;
use std::time::Duration;

use super::*;

/// An environment that sets every variable the production policy names, as
/// a deployment must (the Standard Webhooks secret in its `whsec_` form).
pub(crate) fn production_env(name: &str) -> Option<String> {
    Some(match name {
        "TASK_DASHBOARD_SECRET" => "whsec_dGFzay1kYXNoYm9hcmQtc2VjcmV0LWZvci10ZXN0cw==".to_owned(),
        other => format!("test-value-of-{other}"),
    })
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<PolicySet, PolicyErrors> {
    PolicySet::parse(text, "test.yaml", Path::new("."), &no_env)
}

fn errors(text: &str) -> Vec<PolicyError> {
    parse(text).expect_err("policy should be refused").errors
}

/// Asserts one error sits at `path` on `line` and its message contains `needle`.
fn assert_error(errs: &[PolicyError], path: &str, line: u64, needle: &str) {
    assert!(
        errs.iter().any(|e| e.path == path
            && e.line == line
            && e.column > 0
            && e.message.contains(needle)),
        "no error at {path} line {line} containing {needle:?}; got:\n{errs:#?}"
    );
}

const MINIMAL: &str = "version: 1\nwebhooks:\n  - id: a\n    url: https://a.example.com/h\n    secret: s\n    topics: [x.y]\n";

#[test]
fn every_shipped_policy_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("policies/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            seen += 1;
            // The dev policy needs no variables; the production one needs all.
            let dev = path.file_name().is_some_and(|n| n == "dev.yaml");
            let env: &dyn Fn(&str) -> Option<String> = if dev { &no_env } else { &production_env };
            if let Err(e) = PolicySet::load_file_with_env(&path, env) {
                panic!("{e}");
            }
        }
    }
    assert!(seen >= 2, "expected the shipped policies, found {seen}");
}

#[test]
fn shipped_policy_routes_the_platform_topics() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/webhooks.yaml");
    let p = PolicySet::load_file_with_env(&path, &production_env).expect("valid");
    let ids = |topic: &str, tenant: Option<&str>| -> Vec<String> {
        p.route(&Topic::parse(topic).expect("topic"), tenant)
            .iter()
            .map(|r| r.webhook.id.to_string())
            .collect()
    };
    assert_eq!(ids("kernel.proposal.created", None), ["kernel-review-bot"]);
    assert!(ids("kernel.proposal.a.b", None).is_empty());
    assert_eq!(ids("aion.router.decisions", None), ["router-analytics"]);
    assert_eq!(
        ids("aion.audit.activity", Some("tenant-001")),
        ["siem-audit"]
    );
    assert!(ids("aion.audit.activity", Some("tenant-002")).is_empty());
    // The engine's own audit events carry no tenant: the SIEM gets them.
    assert_eq!(ids("aion.audit.activity", None), ["siem-audit"]);
    assert_eq!(ids("command.install_module", None), ["control-plane"]);
    let inbound = p.inbound().expect("inbound section");
    assert_eq!(inbound.actions.len(), 5);
    assert_eq!(inbound.actions["install_module"], ["module-admin"]);
}

#[test]
fn environment_variables_fill_the_production_policy() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/webhooks.yaml");
    let env = |n: &str| {
        if n == "KERNEL_REVIEW_SECRET" {
            Some("from-env".to_owned())
        } else {
            production_env(n)
        }
    };
    let p = PolicySet::load_file_with_env(&path, &env).expect("valid");
    let hook = p.webhook("kernel-review-bot").expect("present");
    assert_eq!(hook.secrets[0].expose(), "from-env");
}

#[test]
fn production_policy_without_its_variables_names_every_missing_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/webhooks.yaml");
    let err = PolicySet::load_file_with_env(&path, &no_env).expect_err("secrets are required");
    let text = err.to_string();
    for name in [
        "ROUTER_ANALYTICS_SECRET",
        "TASK_DASHBOARD_SECRET",
        "CAPACITY_METRICS_SECRET",
        "CAPACITY_METRICS_SECRET_OLD",
        "SIEM_AUDIT_SECRET",
        "KERNEL_REVIEW_SECRET",
        "CONTROL_PLANE_SECRET",
        "AION_INBOUND_SECRET",
    ] {
        assert!(
            text.contains(&format!("environment variable {name} is not set")),
            "{name} missing from:\n{text}"
        );
    }
    // No development fallback is left in the production file.
    let source = std::fs::read_to_string(&path).expect("read");
    assert!(!source.contains(":-"), "a ${{X:-fallback}} remains");
}

#[test]
fn a_tenant_filter_admits_untenanted_events_only_when_asked() {
    let p = parse("version: 1\nwebhooks:\n  - id: strict\n    url: https://a.example.com\n    secret: s\n    topics: [x]\n    tenants: [t1]\n  - id: open\n    url: https://b.example.com\n    secret: s\n    topics: [x]\n    tenants: [t1]\n    include_untenanted: true\n").expect("valid");
    let ids = |tenant: Option<&str>| -> Vec<String> {
        p.route(&Topic::parse("x").expect("topic"), tenant)
            .iter()
            .map(|r| r.webhook.id.to_string())
            .collect()
    };
    assert_eq!(ids(Some("t1")), ["strict", "open"]);
    assert!(ids(Some("t2")).is_empty());
    assert_eq!(ids(None), ["open"]);
}

#[test]
fn defaults_merge_into_each_webhook_field_by_field() {
    let p = parse(
        "version: 1\ndefaults:\n  timeout: 3s\n  retry: { initial_interval: 2s, max_interval: 1m, max_attempts: 4 }\nwebhooks:\n  - id: a\n    url: https://a.example.com\n    secret: s\n    topics: [x]\n    retry: { max_attempts: 9 }\n  - id: b\n    url: http://b.example.com\n    secret: s\n    topics: [x]\n    timeout: 1s\n",
    )
    .expect("valid");
    let a = p.webhook("a").expect("a");
    assert_eq!(a.timeout, Duration::from_secs(3));
    assert_eq!(a.retry.initial_interval, Duration::from_secs(2));
    assert_eq!(a.retry.max_interval, Duration::from_secs(60));
    assert_eq!(a.retry.max_attempts, 9);
    assert_eq!(p.webhook("b").expect("b").timeout, Duration::from_secs(1));
    assert_eq!(p.webhook("b").expect("b").retry.max_attempts, 4);
}

#[test]
fn builtin_defaults_apply_without_a_defaults_section() {
    let p = parse(MINIMAL).expect("valid");
    let a = p.webhook("a").expect("a");
    assert_eq!(a.retry, compile::DEFAULT_RETRY);
    assert_eq!(a.timeout, compile::DEFAULT_TIMEOUT);
    assert!(a.enabled);
    assert_eq!(a.signature, SignatureMode::Aion);
}

#[test]
fn misspelled_key_is_refused_with_its_position() {
    let errs = errors(
        "version: 1\nwebhooks:\n  - id: a\n    url: https://a.example.com\n    secret: s\n    topcis: [x]\n",
    );
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, 6, "{errs:?}");
    assert_eq!(errs[0].path, "webhooks[0].topcis", "{errs:?}");
    assert!(errs[0].message.contains("topcis"), "{errs:?}");
}

#[test]
fn missing_env_var_is_named_with_its_position() {
    let errs = errors(
        "version: 1\nwebhooks:\n  - id: a\n    url: https://a.example.com\n    secret: ${NOT_SET_ANYWHERE}\n    topics: [x]\n",
    );
    assert_error(&errs, "webhooks[0].secret", 5, "NOT_SET_ANYWHERE");
}

#[test]
fn every_error_in_a_file_is_listed() {
    let errs = errors(
        "version: 1
webhooks:
  - id: Bad_ID
    url: ftp://a.example.com
    secret: s
    topics: [\"a.*b\", \"\"]
    retry: { initial_interval: 10m, max_interval: 1m, max_attempts: 0 }
    signature: fancy
  - id: dup
    url: https://a.example.com
    secret: s
    topics: []
  - id: dup
    url: https://a.example.com
    secret: plain-not-whsec
    signature: standard
    topics: [x]
  - id: dup2
    url: https://a.example.com
    secret: s
    topics: [x]
  - id: dup2
    url: https://b.example.com
    secret: s
    topics: [y]
inbound:
  tolerance: 5m
  actions:
    approve_kernel_proposal: { roles: [] }
auth:
  api_keys:
    - { id: k, sha256: \"abc\", roles: [publisher] }
    - { id: k, sha256: \"0000000000000000000000000000000000000000000000000000000000000000\", roles: [admin] }
network:
  allow_private_targets: [10.0.0.0/33, nonsense]
",
    );
    assert_error(&errs, "webhooks[0].id", 3, "1-64 characters");
    assert_error(&errs, "webhooks[0].url", 4, "ftp");
    assert_error(&errs, "webhooks[0].topics[0]", 6, "a.*b");
    assert_error(&errs, "webhooks[0].topics[1]", 6, "invalid topic pattern");
    assert_error(&errs, "webhooks[0].retry.max_attempts", 7, "between 1 and");
    assert_error(&errs, "webhooks[0].signature", 8, "fancy");
    assert_error(&errs, "webhooks[1].topics", 12, "at least one");
    assert_error(&errs, "webhooks[2].secret", 13, "whsec_");
    assert_error(&errs, "webhooks[4].id", 22, "duplicate webhook id");
    assert_error(&errs, "inbound", 27, "secret is required");
    assert_error(
        &errs,
        "inbound.actions.approve_kernel_proposal.roles",
        29,
        "at least one role",
    );
    assert_error(&errs, "auth.api_keys[0].sha256", 32, "64 hexadecimal");
    assert_error(&errs, "auth.api_keys[1].id", 33, "duplicate api key id");
    assert_error(&errs, "network.allow_private_targets[0]", 35, "CIDR");
    assert_error(&errs, "network.allow_private_targets[1]", 35, "CIDR");
    assert!(
        errs.iter()
            .any(|e| e.path == "webhooks[0].retry"
                && e.message.contains("greater than max_interval")),
        "{errs:#?}"
    );
    // Sorted by position, so `policy check` reads top to bottom.
    assert!(
        errs.windows(2)
            .all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column))
    );
}

#[test]
fn unknown_inbound_action_is_refused_with_the_known_names() {
    let errs = errors(
        "version: 1
webhooks: []
inbound:
  secret: s
  actions:
    approve_kernel_proposal: { roles: [kernel-approver] }
    approve: { roles: [kernel-approver] }
    Install_Module: { roles: [] }
",
    );
    assert_error(
        &errs,
        "inbound.actions.approve",
        7,
        "unknown action \"approve\"; known actions: approve_kernel_proposal, reject_kernel_proposal, install_module, ingest_dataset, update_memory_profile",
    );
    assert_error(&errs, "inbound.actions.Install_Module", 8, "unknown action");
    // The roles of an unknown action are still checked, in the same pass.
    assert_error(
        &errs,
        "inbound.actions.Install_Module.roles",
        8,
        "at least one role",
    );
    assert_eq!(errs.len(), 3, "{errs:#?}");
}

#[test]
fn display_gives_file_line_column_and_path() {
    let err = parse("version: 1\nwebhooks:\n  - id: a\n    url: https://a.example.com\n    secret: s\n    topics: [\"**x\"]\n").expect_err("bad pattern");
    let text = err.to_string();
    assert!(text.contains("test.yaml:6:"), "{text}");
    assert!(text.contains("webhooks[0].topics[0]"), "{text}");
}

#[test]
fn unsupported_version_and_bad_durations_are_refused() {
    let errs = errors("version: 2\ndefaults:\n  timeout: 10 seconds\nwebhooks: []\n");
    assert_error(&errs, "version", 1, "expected 1");
    assert_error(&errs, "defaults.timeout", 3, "10 seconds");
}

#[test]
fn secret_file_is_read_relative_to_the_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("hook.secret"), "from-file\n").expect("write");
    let text = "version: 1\nwebhooks:\n  - id: a\n    url: https://a.example.com\n    secret_file: hook.secret\n    topics: [x]\n";
    let p = PolicySet::parse(text, "t", dir.path(), &no_env).expect("valid");
    assert_eq!(p.webhook("a").expect("a").secrets[0].expose(), "from-file");
    let missing = PolicySet::parse(
        &text.replace("hook.secret", "nope.secret"),
        "t",
        dir.path(),
        &no_env,
    )
    .expect_err("missing file");
    assert_eq!(missing.errors[0].path, "webhooks[0].secret_file");
}

#[test]
fn secret_and_secrets_together_are_refused() {
    let errs = errors(
        "version: 1\nwebhooks:\n  - id: a\n    url: https://a.example.com\n    secret: s\n    secrets: [t]\n    topics: [x]\n",
    );
    assert_error(&errs, "webhooks[0]", 3, "only one");
}

#[test]
fn standard_mode_accepts_whsec_secrets_and_rotation() {
    let p = parse("version: 1\nwebhooks:\n  - id: a\n    url: https://a.example.com\n    secrets: [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\", \"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD\"]\n    signature: both\n    topics: [x]\n").expect("valid");
    let a = p.webhook("a").expect("a");
    assert_eq!(a.standard_secrets.len(), 2);
    assert_eq!(a.secrets.len(), 2);
}

const WHSK: &str = "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
const WHPK: &str = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

fn with_secrets(secrets: &str, mode: &str) -> String {
    format!(
        "version: 1\nwebhooks:\n  - id: a\n    url: https://a.example.com\n    secrets: [{secrets}]\n    signature: {mode}\n    topics: [x]\n"
    )
}

#[test]
fn the_prefix_of_each_secret_selects_its_scheme() {
    let both = format!("\"{WHSK}\", \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"");
    let p = parse(&with_secrets(&both, "both")).expect("valid");
    let a = p.webhook("a").expect("a");
    assert_eq!(a.ed25519_keys.len(), 1);
    assert_eq!(a.ed25519_keys[0].public().to_string(), WHPK);
    assert_eq!(a.standard_secrets.len(), 1);
    assert_eq!(
        a.secrets.len(),
        1,
        "X-Aion-Signature signs with the HMAC secret only"
    );

    let p = parse(&with_secrets(&format!("\"{WHSK}\""), "standard")).expect("valid");
    assert_eq!(p.webhook("a").expect("a").ed25519_keys.len(), 1);
}

#[test]
fn ed25519_keys_in_the_wrong_place_are_named() {
    let only_whsk = format!("\"{WHSK}\"");
    for mode in ["aion", "both"] {
        let errs = errors(&with_secrets(&only_whsk, mode));
        assert_error(&errs, "webhooks[0].secret", 3, "needs an HMAC secret");
    }
    let errs = errors(&with_secrets(&only_whsk, "aion"));
    assert_error(
        &errs,
        "webhooks[0].secret",
        3,
        "set `signature: standard` or `both`",
    );
    let errs = errors(&with_secrets(&format!("\"{WHPK}\""), "standard"));
    assert_error(&errs, "webhooks[0].secret", 3, "public key");
    let errs = errors(&with_secrets("\"whsk_AAAA\"", "standard"));
    assert_error(&errs, "webhooks[0].secret", 3, "32 bytes");
    assert!(errs.iter().all(|e| !e.message.contains("AAAA")));
}

#[test]
fn routing_lists_each_webhook_once_with_the_first_matching_pattern() {
    let p = parse("version: 1\nwebhooks:\n  - id: a\n    url: https://a.example.com\n    secret: s\n    topics: [\"x.**\", \"x.*\", x.y]\n  - id: b\n    url: https://b.example.com\n    secret: s\n    topics: [\"*.y\"]\n    tenants: [t1]\n").expect("valid");
    let topic = Topic::parse("x.y").expect("topic");
    let routes = p.route(&topic, Some("t1"));
    let got: Vec<_> = routes
        .iter()
        .map(|r| (r.webhook.id.as_str(), r.pattern.as_str()))
        .collect();
    assert_eq!(got, [("a", "x.**"), ("b", "*.y")]);
    let untenanted: Vec<_> = p
        .route(&topic, None)
        .iter()
        .map(|r| r.webhook.id.to_string())
        .collect();
    assert_eq!(untenanted, ["a"]);
}

#[test]
fn debug_output_never_contains_secrets() {
    let p = parse(&MINIMAL.replace("secret: s", "secret: super-secret-value")).expect("valid");
    assert!(!format!("{p:?}").contains("super-secret-value"));
}

#[test]
fn hostile_yaml_gets_a_clean_error() {
    // Deep nesting.
    let deep = format!(
        "version: 1\nwebhooks: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert!(parse(&deep).is_err());
    // Billion laughs.
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        bomb.push_str(&format!(
            "{}: &{} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n",
            (b'a' + i) as char,
            (b'a' + i) as char,
            p = (b'a' + i - 1) as char
        ));
    }
    assert!(parse(&bomb).is_err());
    // 10 MB of garbage: refused on size before parsing.
    let garbage: String = (0..10 * 1024 * 1024u64)
        .map(|i| ((i.wrapping_mul(7919) % 94) as u8 + 33) as char)
        .collect();
    let err = parse(&garbage).expect_err("too big");
    assert!(err.errors[0].message.contains("limit"), "{err}");
    // Garbage under the limit, and odd documents.
    for text in [
        &garbage[..500_000],
        "",
        "---\n---\n",
        "[1, 2",
        "version: [1]",
        "\t\u{0}\u{7f}",
        "version: 1\nwebhooks: 5\n",
    ] {
        assert!(
            parse(text).is_err(),
            "{:?} accepted",
            &text[..text.len().min(40)]
        );
    }
}

#[test]
fn non_utf8_and_oversized_files_are_refused_by_load_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin.yaml");
    std::fs::write(&bin, [0xff, 0xfe, 0x00, 0x80]).expect("write");
    assert!(
        PolicySet::load_file_with_env(&bin, &no_env)
            .expect_err("binary")
            .to_string()
            .contains("UTF-8")
    );
    let big = dir.path().join("big.yaml");
    std::fs::write(&big, vec![b'#'; MAX_POLICY_BYTES + 1]).expect("write");
    assert!(PolicySet::load_file_with_env(&big, &no_env).is_err());
    assert!(PolicySet::load_file_with_env(&dir.path().join("absent.yaml"), &no_env).is_err());
}

#[test]
fn jwt_public_key_file_must_hold_a_public_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("garbage.pem"),
        "-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n",
    )
    .expect("write");
    let text = "version: 1\nauth:\n  jwt:\n    issuer: https://id.example.com\n    audience: aion\n    public_key_file: garbage.pem\n";
    let err = PolicySet::parse(text, "t", dir.path(), &no_env).expect_err("garbage key");
    assert_eq!(err.errors[0].path, "auth.jwt.public_key_file", "{err}");
    assert!(err.errors[0].message.contains("RS256"), "{err}");
}

#[test]
fn retention_is_read_with_defaults_and_bad_values_are_named() {
    let p = parse(MINIMAL).expect("valid");
    assert_eq!(p.retention(), crate::policy::RetentionPolicy::default());
    let p = parse(&format!("{MINIMAL}retention:\n  succeeded: 2d\n")).expect("valid");
    assert_eq!(p.retention().succeeded, Duration::from_secs(2 * 86_400));
    assert_eq!(p.retention().dead, Duration::from_secs(30 * 86_400));
    let errs = parse(&format!(
        "{MINIMAL}retention:\n  succeeded: forever\n  dead: 0s\n"
    ))
    .expect_err("invalid")
    .errors;
    assert_error(&errs, "retention.succeeded", 8, "");
    assert_error(&errs, "retention.dead", 9, "greater than zero");
    let errs = parse(&format!("{MINIMAL}retention:\n  keep: 1d\n"))
        .expect_err("unknown key")
        .errors;
    assert!(errs[0].message.contains("unknown field"), "{errs:?}");
}

#[test]
fn policy_errors_never_echo_a_secret() {
    let secret = "super-secret-value-4711";
    let text = format!(
        "version: 1\nwebhooks:\n  - id: a\n    url: https://a.example.com\n    secret: {secret}\n    signature: standard\n    topics: [x]\ninbound:\n  secret: {secret}\n  tolerance: soon\nauth:\n  jwt:\n    issuer: i\n    audience: a\n    hs256_secret: {secret}\n"
    );
    let err = parse(&text).expect_err("invalid");
    assert!(err.errors.len() >= 2, "{err}");
    assert!(!err.to_string().contains(secret), "{err}");
}

#[test]
fn disable_after_takes_a_duration_or_never_and_refuses_anything_else() {
    let hooks = "  - id: a\n    url: https://a.example.com\n    secret: s\n    topics: [x]\n    disable_after: 3s\n  - id: b\n    url: https://b.example.com\n    secret: s\n    topics: [x]\n    disable_after: never\n  - id: c\n    url: https://c.example.com\n    secret: s\n    topics: [x]\n";
    let p = parse(&format!("version: 1\nwebhooks:\n{hooks}")).expect("valid");
    let after = |id: &str| p.webhook(id).expect("hook").disable_after;
    assert_eq!(after("a"), Some(Duration::from_secs(3)));
    assert_eq!(after("b"), None);
    assert_eq!(
        after("c"),
        Some(Duration::from_secs(5 * 24 * 3600)),
        "default 5d"
    );
    let p = parse(&format!(
        "version: 1\ndefaults:\n  disable_after: never\nwebhooks:\n{hooks}"
    ))
    .expect("valid");
    assert_eq!(p.webhook("c").expect("hook").disable_after, None);

    let errs = errors(
        "version: 1\nwebhooks:\n  - id: a\n    url: https://a.example.com\n    secret: s\n    topics: [x]\n    disable_after: -1\n",
    );
    assert_error(&errs, "webhooks[0].disable_after", 7, "");
    let errs = errors("version: 1\ndefaults:\n  disable_after: soon\nwebhooks: []\n");
    assert_error(&errs, "defaults.disable_after", 3, "");
    let errs = errors(
        "version: 1\nwebhooks:\n  - id: a\n    url: https://a.example.com\n    secret: s\n    topics: [x]\n    disable_after: 0s\n",
    );
    assert_error(&errs, "webhooks[0].disable_after", 7, "greater than zero");
}

#[test]
fn max_in_flight_is_a_ceiling_between_1_and_10000() {
    let hook = |n: &str| {
        format!(
            "version: 1\nwebhooks:\n  - id: a\n    url: https://a.example.com\n    secret: s\n    topics: [x]\n    max_in_flight: {n}\n"
        )
    };
    let p = parse(&hook("16")).expect("valid");
    assert_eq!(p.webhook("a").expect("hook").max_in_flight, Some(16));
    for bad in ["0", "-1", "10001"] {
        assert_error(
            &errors(&hook(bad)),
            "webhooks[0].max_in_flight",
            7,
            "between 1 and 10000",
        );
    }
    assert!(!errors(&hook("many")).is_empty());
}

#[test]
fn rate_limit_is_per_second_or_per_minute_and_refuses_anything_else() {
    let hook = |r: &str| {
        format!(
            "version: 1\nwebhooks:\n  - id: a\n    url: https://a.example.com\n    secret: s\n    topics: [x]\n    rate_limit: {r}\n"
        )
    };
    assert_eq!(
        parse(&hook("50/s"))
            .expect("valid")
            .webhook("a")
            .expect("a")
            .rate_limit,
        Some(50.0)
    );
    assert_eq!(
        parse(&hook("120/m"))
            .expect("valid")
            .webhook("a")
            .expect("a")
            .rate_limit,
        Some(2.0)
    );
    for bad in ["fast", "0/s", "10/h", "-5/s", "1.5/s", "200000/s"] {
        assert_error(&errors(&hook(bad)), "webhooks[0].rate_limit", 7, "rate");
    }
}

#[test]
fn ordering_is_key_or_none_and_refuses_anything_else() {
    let hook = |o: &str| {
        format!(
            "version: 1\nwebhooks:\n  - id: a\n    url: https://a.example.com\n    secret: s\n    topics: [x]\n    ordering: {o}\n"
        )
    };
    let ordered = |o: &str| {
        parse(&hook(o))
            .expect("valid")
            .webhook("a")
            .expect("a")
            .ordered
    };
    assert!(ordered("key"));
    assert!(!ordered("none"));
    let plain = parse(
        "version: 1\nwebhooks:\n  - id: a\n    url: https://a.example.com\n    secret: s\n    topics: [x]\n",
    )
    .expect("valid");
    assert!(!plain.webhook("a").expect("a").ordered);
    for bad in ["maybe", "Key", "\"\""] {
        assert_error(&errors(&hook(bad)), "webhooks[0].ordering", 7, "ordering");
    }
}

mod bus;
mod headers;
mod reach;
mod schemas;

mod sources {
    use super::*;
    use crate::policy::sources::{MessageFormat, SaslMechanism, SourceKind, StartAt};

    const BOTH: &str = r#"version: 1
sources:
  - id: platform-kafka
    kind: kafka
    brokers: [kafka-1:9092, "kafka-2:9092"]
    group: aion-webhooks
    topics: [aion.router.decisions, "^aion\\.tasks\\..*"]
    format: raw
    start: latest
    sasl: { mechanism: SCRAM-SHA-256, username: aion, password: "${KAFKA_PASSWORD}" }
    accept_audit_topics: true
  - id: platform-nats
    kind: nats
    url: nats://127.0.0.1:4222
    stream: AION
    consumer: aion-webhooks
    subjects: ["aion.>"]
    max_batch: 100
"#;

    #[test]
    fn the_contract_example_compiles_with_every_field() {
        let env = |n: &str| (n == "KAFKA_PASSWORD").then(|| "pw".to_owned());
        let p = PolicySet::parse(BOTH, "t", Path::new("."), &env).expect("valid");
        let [k, n] = p.sources() else {
            panic!("two sources")
        };
        assert_eq!(k.format, MessageFormat::Raw);
        assert!(k.accept_audit_topics);
        let SourceKind::Kafka(kafka) = &k.kind else {
            panic!("kafka")
        };
        assert_eq!(kafka.brokers, ["kafka-1:9092", "kafka-2:9092"]);
        assert_eq!(kafka.start, StartAt::Latest);
        let sasl = kafka.sasl.as_ref().expect("sasl");
        assert_eq!(
            (sasl.mechanism, sasl.password.expose()),
            (SaslMechanism::ScramSha256, "pw")
        );
        assert!(
            !format!("{p:?}").contains("pw\""),
            "the password is redacted"
        );
        assert_eq!((n.format, n.max_batch), (MessageFormat::Envelope, 100));
        let SourceKind::Nats(nats) = &n.kind else {
            panic!("nats")
        };
        assert_eq!(
            (nats.stream.as_str(), nats.subjects.as_slice()),
            ("AION", &["aion.>".to_owned()][..])
        );
    }

    #[test]
    fn a_missing_variable_is_named_at_its_line() {
        let errs = errors(BOTH);
        assert_error(&errs, "sources[0].sasl.password", 10, "KAFKA_PASSWORD");
    }

    /// The contract's example writes `password: ${KAFKA_PASSWORD} }` in a
    /// flow mapping, where `{` and `}` end the plain scalar: YAML itself
    /// refuses it. The error points at the place; the README says to quote.
    #[test]
    fn an_unquoted_variable_in_a_flow_mapping_is_a_yaml_error_at_its_place() {
        let text = BOTH.replace("\"${KAFKA_PASSWORD}\"", "${KAFKA_PASSWORD}");
        let errs = errors(&text);
        assert_eq!(
            (errs[0].path.as_str(), errs[0].line),
            ("sources[0].sasl", 10),
            "{errs:?}"
        );
    }

    #[test]
    fn bad_entries_are_named_at_their_line() {
        let text = "version: 1
sources:
  - id: k
    kind: kafka
    brokers: [nohost]
    topics: []
    url: nats://x:1
  - id: k
    kind: nats
    url: http://x
    stream: a.b
    consumer: c
  - id: z
    kind: rabbit
  - id: aion-webhooks
    kind: nats
    url: nats://x:1
    stream: s
    consumer: c
    format: xml
    max_batch: 0
";
        let errs = errors(text);
        assert_error(&errs, "sources[0].brokers[0]", 5, "host:port");
        assert_error(&errs, "sources[0].topics", 6, "at least one");
        assert_error(&errs, "sources[0]", 4, "`group` is required");
        assert_error(&errs, "sources[0].url", 7, "belongs to `kind: nats`");
        assert_error(&errs, "sources[1].url", 10, "not a NATS URL");
        assert_error(&errs, "sources[1].stream", 11, "letters, digits");
        assert_error(&errs, "sources[2].kind", 14, "unknown source kind");
        assert_error(&errs, "sources[3].id", 15, "reserved");
        assert_error(&errs, "sources[3].format", 20, "unknown format");
        assert_error(&errs, "sources[3].max_batch", 21, "1 to 1000");
        let dup = "version: 1
sources:
  - { id: s, kind: nats, url: 'nats://x:1', stream: s, consumer: c }
  - { id: s, kind: nats, url: 'nats://x:1', stream: t, consumer: c }
";
        assert_error(&errors(dup), "sources[1].id", 4, "used twice");
        let unknown = "version: 1\nsources:\n  - { id: s, kind: nats, url: 'nats://x:1', stream: s, consumer: c, colour: red }\n";
        assert!(errors(unknown)[0].message.contains("colour"));
    }
}
