//! The command line as a user runs it: exit codes and output of the real binary.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_aion-webhooks"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.env_remove("AION_WEBHOOKS_POLICY");
    c
}

/// Every variable the production policy names, set as a deployment sets them.
fn with_production_env(mut c: Command) -> Command {
    for name in [
        "ROUTER_ANALYTICS_SECRET",
        "CAPACITY_METRICS_SECRET",
        "CAPACITY_METRICS_SECRET_OLD",
        "SIEM_AUDIT_SECRET",
        "KERNEL_REVIEW_SECRET",
        "CONTROL_PLANE_SECRET",
        "AION_INBOUND_SECRET",
    ] {
        c.env(name, format!("test-value-of-{name}"));
    }
    c.env(
        "TASK_DASHBOARD_SECRET",
        "whsec_dGFzay1kYXNoYm9hcmQtc2VjcmV0LWZvci10ZXN0cw==",
    );
    c
}

/// `aion-webhooks policy check FILE`.
fn check(file: &std::path::Path) -> Output {
    bin()
        .arg("policy")
        .arg("check")
        .arg(file)
        .output()
        .expect("run")
}

fn run_with_stdin(mut cmd: Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn aion-webhooks");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn policy_check_accepts_the_shipped_policy_with_its_variables_set() {
    let out = with_production_env(bin())
        .args(["policy", "check", "policies/webhooks.yaml"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("ok (6 webhooks"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn policy_check_refuses_the_shipped_policy_when_a_secret_variable_is_unset() {
    let mut cmd = with_production_env(bin());
    cmd.env_remove("AION_INBOUND_SECRET")
        .env_remove("SIEM_AUDIT_SECRET")
        .args(["policy", "check", "policies/webhooks.yaml"]);
    let out = cmd.output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("inbound.secret: environment variable AION_INBOUND_SECRET is not set"),
        "{err}"
    );
    assert!(
        err.contains("environment variable SIEM_AUDIT_SECRET is not set"),
        "{err}"
    );
}

#[test]
fn policy_check_lists_every_problem_with_path_and_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "version: 1\nwebhooks:\n  - id: a\n    url: https://a.example.com\n    secret: ${AION_TEST_UNSET_VAR}\n    topics: [\"kernel.*x\"]\n  - id: a\n    url: https://b.example.com\n    secret: s\n    topics: [y]\n",
    )
    .expect("write");
    let out = check(&file);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(
            ":5:13: webhooks[0].secret: environment variable AION_TEST_UNSET_VAR is not set"
        ),
        "{err}"
    );
    assert!(
        err.contains(":6:14: webhooks[0].topics[0]: invalid topic pattern"),
        "{err}"
    );

    std::fs::write(&file, "version: 1\nwebhooks:\n  - id: a\n    url: https://b.example.com\n    secret: s\n    topics: [y]\n  - id: a\n    url: https://b.example.com\n    secret: s\n    topics: [y]\n").expect("write");
    let out = check(&file);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(":7:9: webhooks[1].id: duplicate webhook id \"a\""),
        "{}",
        text(&out.stderr)
    );

    std::fs::write(
        &file,
        "version: 1\nwebhooks:\n  - id: a\n    ulr: https://b.example.com\n",
    )
    .expect("write");
    let out = check(&file);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(":4:5: webhooks[0].ulr: unknown field `ulr`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn policy_match_shows_the_webhook_and_pattern() {
    let out = with_production_env(bin())
        .args([
            "policy",
            "match",
            "kernel.proposal.created",
            "--policy",
            "policies/webhooks.yaml",
        ])
        .output()
        .expect("run");
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("kernel-review-bot\tkernel.proposal.*"),
        "{stdout}"
    );

    let out = with_production_env(bin())
        .args(["policy", "match", "kernel.proposal.a.b"])
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(
        !text(&out.stdout).contains("kernel-review-bot"),
        "{}",
        text(&out.stdout)
    );

    let out = with_production_env(bin())
        .args(["policy", "match", "kernel.*"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "wildcards are not topics");
}

#[test]
fn sign_output_verifies_with_an_independent_hmac() {
    let body = br#"{"id":"evt_1","payload":{"x":"\u00e9"}}"#;
    let mut cmd = bin();
    cmd.args(["sign", "--secret", "s3cr3t", "--timestamp", "1700000000"]);
    let out = run_with_stdin(cmd, body);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let header = text(&out.stdout).trim().to_owned();

    // Python's hmac module, not our code, recomputes the signature.
    let script = "import hmac,hashlib,sys\nbody=sys.stdin.buffer.read()\nt,v=[p.split('=',1)[1] for p in sys.argv[1].split(',')]\nexp=hmac.new(b's3cr3t', t.encode()+b'.'+body, hashlib.sha256).hexdigest()\nsys.exit(0 if hmac.compare_digest(exp, v) else 1)";
    let mut py = Command::new("python3");
    py.args(["-c", script, &header]);
    let out = run_with_stdin(py, body);
    assert!(
        out.status.success(),
        "python rejected {header}: {}",
        text(&out.stderr)
    );
}

#[test]
fn verify_accepts_fresh_signatures_and_refuses_stale_or_tampered_ones() {
    let body = b"{\"a\":1}";
    let mut cmd = bin();
    cmd.args(["sign", "--secret", "k"]);
    let header = text(&run_with_stdin(cmd, body).stdout).trim().to_owned();

    let verify = |secret: &str, sig: &str, body: &[u8]| {
        let mut cmd = bin();
        cmd.args(["verify", "--secret", secret, "--signature", sig]);
        run_with_stdin(cmd, body).status.code()
    };
    assert_eq!(verify("k", &header, body), Some(0));
    assert_eq!(verify("k", &header, b"{\"a\":2}"), Some(1), "tampered body");
    assert_eq!(verify("other", &header, body), Some(1), "wrong secret");
    assert_eq!(verify("k", "garbage", body), Some(1), "malformed");

    let mut cmd = bin();
    cmd.args(["sign", "--secret", "k", "--timestamp", "1000"]);
    let stale = text(&run_with_stdin(cmd, body).stdout).trim().to_owned();
    assert_eq!(verify("k", &stale, body), Some(1), "stale");
}

#[test]
fn keygen_prints_a_key_and_the_matching_policy_line() {
    let out = bin().arg("keygen").output().expect("run");
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    let key = stdout
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .expect("key line")
        .trim();
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("sha256: "))
        .expect("sha256 line");
    assert!(key.len() >= 6 + 64, "at least 32 random bytes, hex: {key}");

    // The printed line pastes into a policy and authenticates that key.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        format!(
            "version: 1\nauth:\n  api_keys:\n    - id: k\n      {}\n      roles: [publisher]\n",
            line.trim()
        ),
    )
    .expect("write");
    let out = check(&file);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let script = format!("import hashlib;print(hashlib.sha256(b'{key}').hexdigest())");
    let digest = text(
        &Command::new("python3")
            .args(["-c", &script])
            .output()
            .expect("python")
            .stdout,
    );
    assert!(line.contains(digest.trim()), "{line} vs {digest}");

    let again = text(&bin().arg("keygen").output().expect("run").stdout);
    assert_ne!(stdout, again, "keys are random");
}

#[test]
fn keygen_ed25519_pair_signs_in_the_policy_and_verifies_with_the_public_key() {
    use aion_webhooks::signing::{Ed25519Secret, StandardSecret, standard_sign, v1a_sign};
    let out = bin().args(["keygen", "--ed25519"]).output().expect("run");
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in {stdout}"))
            .trim()
            .to_owned()
    };
    let (signing, public) = (field("signing key: "), field("public key: "));
    assert!(signing.starts_with("whsk_") && public.starts_with("whpk_"));
    let key = Ed25519Secret::parse(&signing).expect("whsk_ parses");
    assert_eq!(
        key.public().to_string(),
        public,
        "the pair belongs together"
    );

    // The signing key is a webhook secret for `signature: standard` only.
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = |mode: &str| {
        let file = dir.path().join(format!("{mode}.yaml"));
        std::fs::write(
            &file,
            format!(
                "version: 1\nwebhooks:\n  - id: a\n    url: https://a.example/\n    \
                 secrets: [\"{signing}\"]\n    topics: [a.b]\n    signature: {mode}\n"
            ),
        )
        .expect("write");
        check(&file)
    };
    assert!(policy("standard").status.success());
    let aion = policy("aion");
    assert_eq!(aion.status.code(), Some(1));
    assert!(
        text(&aion.stderr).contains("webhooks[0].secret"),
        "{}",
        text(&aion.stderr)
    );
    assert!(
        text(&aion.stderr).contains("whsk_"),
        "{}",
        text(&aion.stderr)
    );
    assert!(
        !text(&aion.stderr).contains(&signing[5..]),
        "the key is never echoed"
    );

    let (id, t) = ("msg_1", chrono::Utc::now().timestamp());
    let body = b"{\"a\":1}";
    let v1a = v1a_sign(&[&key], id, t, body);
    let whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let v1 = standard_sign(&[&StandardSecret::parse(whsec).unwrap()], id, t, body);
    let verify = |secret: &str, sig: &str, body: &[u8]| {
        let mut cmd = bin();
        let t = t.to_string();
        cmd.args(["verify", "--secret", secret, "--signature", sig, "--id", id]);
        cmd.args(["--timestamp", &t]);
        run_with_stdin(cmd, body).status.code()
    };
    assert_eq!(verify(&public, &v1a, body), Some(0));
    assert_eq!(verify(&public, &format!("{v1} {v1a}"), body), Some(0));
    assert_eq!(
        verify(&public, &v1a, b"{\"a\":2}"),
        Some(1),
        "tampered body"
    );
    assert_eq!(verify(&public, &v1, body), Some(1), "no v1a entry");
    let other = Ed25519Secret::from_seed([1; 32]).public().to_string();
    assert_eq!(verify(&other, &v1a, body), Some(1), "another key");
    assert_eq!(
        verify(whsec, &format!("{v1} {v1a}"), body),
        Some(0),
        "v1 by whsec_"
    );
    assert_eq!(verify(whsec, &v1a, body), Some(1));
    assert_eq!(
        verify("not-a-key", &v1a, body),
        Some(2),
        "a bad key is a usage error"
    );
}

#[test]
fn policy_check_names_bad_delivery_control_settings_with_their_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "version: 1\nwebhooks:\n  - id: a\n    url: https://a.example.com\n    secret: s\n    topics: [x]\n    rate_limit: fast\n    disable_after: -1\n    max_in_flight: 0\n    ordering: maybe\n",
    )
    .expect("write");
    let out = check(&file);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for needle in [
        "bad.yaml:7:17: webhooks[0].rate_limit",
        "bad.yaml:8:20: webhooks[0].disable_after",
        "bad.yaml:9:20: webhooks[0].max_in_flight",
        "bad.yaml:10:15: webhooks[0].ordering",
    ] {
        assert!(err.contains(needle), "{needle} not in:\n{err}");
    }
}

#[test]
fn serve_refuses_a_malformed_setting_naming_the_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bin()
        .current_dir(dir.path())
        .env("AION_WEBHOOKS_MAX_IN_FLIGHT", "lots")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("AION_WEBHOOKS_MAX_IN_FLIGHT=\"lots\": expected a whole number"),
        "{err}"
    );
    assert!(
        !dir.path()
            .join(aion_webhooks::store::DEFAULT_SQLITE_FILE)
            .exists(),
        "refused before opening the store"
    );
}
