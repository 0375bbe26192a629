//! The inbound request checks (contract §4) up to the store: signature,
//! credentials, allow-list and roles, body and `Idempotency-Key`. The first
//! byte's bits sign the body and present a valid key, so the fuzzer gets
//! past the signature to the later checks.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use aion_webhooks::inbound::{InboundRequest, Verdict, check};
use aion_webhooks::policy::PolicySet;
use aion_webhooks::signing::aion_sign;
use libfuzzer_sys::fuzz_target;

const KEY: &str = "fuzz-key";
const NOW: i64 = 1_800_000_000;

fn policy() -> &'static PolicySet {
    static POLICY_SET: OnceLock<PolicySet> = OnceLock::new();
    POLICY_SET.get_or_init(|| {
        use std::fmt::Write;
        let mut hex = String::new();
        for b in sha256(KEY.as_bytes()) {
            let _ = write!(hex, "{b:02x}");
        }
        let yaml = format!(
            "version: 1\nwebhooks: []\ninbound:\n  secret: inbound-secret\n  tolerance: 5m\n  actions:\n    approve_kernel_proposal: {{ roles: [kernel-approver] }}\n    install_module: {{ roles: [module-admin] }}\nauth:\n  api_keys:\n    - id: caller\n      sha256: \"{hex}\"\n      roles: [kernel-approver]\n"
        );
        PolicySet::parse(&yaml, "fuzz.yaml", Path::new("."), &|_| None).expect("fuzz policy")
    })
}

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(4, |b| *b == 0xff);
    let signature = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let authorization = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let key = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default();
    let signature = if flags & 1 == 1 {
        aion_sign(&[b"inbound-secret"], NOW, body)
    } else {
        signature
    };
    let authorization = if flags & 2 == 2 {
        format!("Bearer {KEY}")
    } else {
        authorization
    };
    let req = InboundRequest {
        body,
        signature: (flags & 4 == 0).then_some(signature.as_str()),
        authorization: (flags & 8 == 0).then_some(authorization.as_str()),
        idempotency_key: (flags & 16 == 0).then_some(key.as_str()),
        request_id: None,
        source_ip: None,
    };
    let now = chrono::DateTime::from_timestamp(NOW, 0).expect("time");
    match check(policy(), &req, now) {
        Ok(Verdict::Accept(c)) => {
            assert!(c.params.is_object());
            assert!(c.action == "approve_kernel_proposal");
        }
        Ok(Verdict::Deny { error, .. }) => {
            let _ = error.to_string();
        }
        Err(e) => {
            assert!(e.outcome().is_some());
        }
    }
});
