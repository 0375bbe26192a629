//! The policy parser and validator: any text is a policy or a list of
//! errors with positions, never a panic, a hang or a runaway allocation.
#![no_main]

use std::path::Path;

use aion_webhooks::policy::PolicySet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `${X}` resolves for names starting with `SET`, so both the
    // interpolated and the missing-variable paths are reached.
    let env = |name: &str| name.starts_with("SET").then(|| "value".to_owned());
    match PolicySet::parse(text, "fuzz.yaml", Path::new("/nonexistent"), &env) {
        Ok(policy) => {
            // A valid policy routes any topic without panicking.
            if let Ok(topic) = aion_webhooks::domain::Topic::parse("a.b.c") {
                let _ = policy.route(&topic, Some("t1"));
            }
        }
        Err(errors) => {
            let _ = errors.to_string();
        }
    }
});
