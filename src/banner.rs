//! What `serve` prints once it is ready: where it listens, which store it
//! uses, and a request to paste to try it. Pure: the caller prints it.

use std::net::SocketAddr;
use std::path::Path;

use crate::auth::authenticate;
use crate::domain::{ReservedNamespace, Topic};
use crate::policy::PolicySet;

/// The API key of `policies/dev.yaml`. It is public (the README prints it),
/// so a policy that accepts it is for trying the engine out only.
pub const DEV_API_KEY: &str = "aionk_dev0000000000000000000000000000000000000000000000000000000000";

/// The start-up text: listen address, store, policy, and a `curl` that
/// posts an event one of the policy's webhooks receives.
pub fn banner(
    addr: SocketAddr,
    store: &str,
    single_node: bool,
    policy: &PolicySet,
    path: &Path,
) -> String {
    let base = format!("http://{addr}");
    let mut text = format!("aion-webhooks is ready on {base}\n  store:  {store}\n");
    if single_node {
        text.push_str(
            "          single node; for several engines use PostgreSQL (DATABASE_URL=postgres://…)\n",
        );
    }
    let n = policy.webhooks().len();
    text.push_str(&format!(
        "  policy: {} ({n} webhook{})\n",
        path.display(),
        if n == 1 { "" } else { "s" }
    ));
    let dev_key = authenticate(policy.auth(), Some(&format!("Bearer {DEV_API_KEY}")), 0).is_ok();
    let key = if dev_key {
        text.push_str(
            "  warning: this policy accepts the public development API key; never deploy it\n",
        );
        DEV_API_KEY
    } else {
        "$AION_WEBHOOKS_API_KEY"
    };
    text.push_str(&format!(
        "try it:\n  curl -s -X POST {base}/v1/events -H \"Authorization: Bearer {key}\" \\\n    \
         -H 'Content-Type: application/json' \\\n    \
         -d '{{\"topic\": \"{}\", \"payload\": {{\"hello\": \"world\"}}}}'\n",
        sample_topic(policy)
    ));
    text
}

/// A topic an enabled webhook receives, that a publisher may post: the
/// most specific pattern (most literal segments) with its wildcards filled
/// in; `example.created` if there is none.
fn sample_topic(policy: &PolicySet) -> String {
    policy
        .webhooks()
        .iter()
        .filter(|w| w.enabled)
        .flat_map(|w| &w.topics)
        .map(|pattern| {
            let segments = pattern.as_str().split('.');
            let literal = segments.clone().filter(|s| !s.contains('*')).count();
            let topic = segments
                .map(|s| if s.contains('*') { "created" } else { s })
                .collect::<Vec<_>>()
                .join(".");
            (literal, topic)
        })
        .filter(|(_, topic)| Topic::parse(topic).is_ok_and(|t| ReservedNamespace::of(&t).is_none()))
        .max_by_key(|(literal, _)| *literal)
        .map_or_else(|| "example.created".to_owned(), |(_, topic)| topic)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> PolicySet {
        PolicySet::parse(yaml, "p.yaml", Path::new("."), &|_| None).expect("policy")
    }

    #[test]
    fn the_dev_policy_gets_a_ready_request_with_its_key_and_a_warning() {
        let dev =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/dev.yaml"))
                .expect("dev policy");
        let text = banner(
            "127.0.0.1:8080".parse().expect("addr"),
            "SQLite file aion-webhooks.db",
            true,
            &policy(&dev),
            Path::new("policies/dev.yaml"),
        );
        assert!(text.contains("ready on http://127.0.0.1:8080"), "{text}");
        assert!(text.contains("single node"), "{text}");
        assert!(text.contains(DEV_API_KEY), "{text}");
        assert!(text.contains("never deploy"), "{text}");
        // aion.** is the engine's; the next pattern gives a postable topic.
        assert!(
            text.contains("\"topic\": \"kernel.proposal.created\""),
            "{text}"
        );
    }

    #[test]
    fn another_policy_gets_a_placeholder_key() {
        let yaml = "version: 1\nwebhooks:\n  - id: h\n    url: https://example.com/h\n    secret: s\n    topics: [\"orders.**\"]\nauth:\n  api_keys:\n    - id: k\n      sha256: \"0000000000000000000000000000000000000000000000000000000000000000\"\n      roles: [publisher]\n";
        let text = banner(
            "127.0.0.1:1".parse().expect("addr"),
            "PostgreSQL at db:5432/aion",
            false,
            &policy(yaml),
            Path::new("p.yaml"),
        );
        assert!(text.contains("$AION_WEBHOOKS_API_KEY"), "{text}");
        assert!(!text.contains(DEV_API_KEY), "{text}");
        assert!(!text.contains("single node"), "{text}");
        assert!(text.contains("\"topic\": \"orders.created\""), "{text}");
    }
}
