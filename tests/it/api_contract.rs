//! The OpenAPI description holds for the running engine (issue 28, item 2):
//! Schemathesis (PyPI; `scripts/test` installs it) drives
//! `GET /v1/openapi.json` against a real engine on each store, with an
//! admin key and with a publisher key. Every check runs — no 5xx, every
//! status, content type, header and body as described, bad input refused,
//! described input accepted — except where `tests/api/schemathesis.toml`
//! says why not. `SCHEMATHESIS_SEED` and `SCHEMATHESIS_EXAMPLES` override
//! the fixed seed and the examples per operation.

use std::process::Command;

use crate::support::*;

fn schemathesis() -> Command {
    let found = Command::new("st").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "Schemathesis is needed: pip install schemathesis (scripts/test installs it)"
    );
    Command::new("st")
}

async fn run(base: &str, key: &str) -> (bool, String) {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/schemathesis.toml");
    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261206".into());
    let examples = std::env::var("SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "25".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = schemathesis();
    cmd.current_dir(dir.path())
        .args(["--no-color", "--config-file", config, "run"])
        .arg(format!("{base}/v1/openapi.json"))
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .args(["--workers", "1", "--request-timeout", "10"])
        .args(["--max-examples", &examples, "--seed", &seed]);
    run_tool(cmd).await
}

both! {
    async fn schemathesis_finds_no_response_the_description_does_not_allow(db) {
        let rx = Receiver::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("webhooks.yaml");
        // Inbound configured, so its checks (signature first) are what a
        // caller meets, not `404` for an engine without them.
        let yaml = policy_yaml(&hook("h", &rx.url, "[\"**\"]", ""))
            + "inbound:\n  secrets: [inbound-secret-0123456789]\n  tolerance: 5m\n  actions:\n    approve_kernel_proposal: { roles: [admin] }\n";
        std::fs::write(&file, &yaml).expect("write policy");
        let mut config = test_config();
        config.policy_path = file;
        let app = TestApp::spawn_with(db, &yaml, config).await;
        for (who, key) in [("admin", API_KEY), ("publisher", PUBLISHER_KEY)] {
            let (passed, said) = run(&app.base, key).await;
            assert!(passed, "Schemathesis with the {who} key:\n{said}");
            assert!(said.contains("Tested: 20"), "every operation tested:\n{said}");
        }
        app.stop().await;
    }
}
