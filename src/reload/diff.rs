//! What a reload changed: the webhooks added, removed and changed, by a
//! digest of everything that makes each behave as it does.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use super::Diff;
use crate::policy::{PolicySet, Webhook};

/// Webhooks added, removed and changed between two policies.
pub fn diff(old: &PolicySet, new: &PolicySet) -> Diff {
    let ids = |p: &PolicySet| -> BTreeSet<String> {
        p.webhooks().iter().map(|w| w.id.to_string()).collect()
    };
    let (before, after) = (ids(old), ids(new));
    Diff {
        added: after.difference(&before).cloned().collect(),
        removed: before.difference(&after).cloned().collect(),
        changed: after
            .intersection(&before)
            .filter(|id| {
                let a = old.webhook(id).map(fingerprint);
                let b = new.webhook(id).map(fingerprint);
                a != b
            })
            .cloned()
            .collect(),
    }
}

/// A digest of everything that makes a webhook behave as it does, secrets
/// included (a rotation is a change); the digest itself is never shown.
fn fingerprint(w: &Webhook) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(w.url.as_str().as_bytes());
    field(
        w.bus
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
            .as_bytes(),
    );
    for s in &w.secrets {
        field(s.expose().as_bytes());
    }
    for k in &w.ed25519_keys {
        field(k.expose().as_bytes());
    }
    field(format!("{:?}/{:?}", w.min_version, w.payload_format).as_bytes());
    for t in &w.topics {
        field(t.as_str().as_bytes());
    }
    field(format!("{:?}", w.retry).as_bytes());
    field(&w.timeout.as_millis().to_le_bytes());
    for (k, v) in &w.headers {
        field(k.as_bytes());
        field(v.expose().as_bytes());
    }
    field(w.signature.as_str().as_bytes());
    field(format!("{:?}/{}", w.tenants, w.include_untenanted).as_bytes());
    field(&[u8::from(w.enabled)]);
    let (tls, proxy) = w.route.key();
    field(&tls);
    field(&proxy);
    field(w.oauth2.as_ref().map_or(&[][..], |o| &o.fingerprint[..]));
    field(format!("{:?}", w.filter).as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(hooks: &str) -> PolicySet {
        PolicySet::parse(
            &format!("version: 1\nwebhooks:\n{hooks}"),
            "t",
            std::path::Path::new("."),
            &|_| None,
        )
        .expect("policy")
    }

    fn hook(id: &str, secret: &str, topic: &str) -> String {
        format!(
            "  - id: {id}\n    url: https://{id}.example.com\n    secret: {secret}\n    topics: [{topic}]\n"
        )
    }

    #[test]
    fn the_diff_names_added_removed_and_changed_webhooks() {
        let old = parse(&format!(
            "{}{}{}",
            hook("same", "s", "x"),
            hook("gone", "s", "x"),
            hook("rotated", "s1", "x")
        ));
        let new = parse(&format!(
            "{}{}{}",
            hook("same", "s", "x"),
            hook("rotated", "s2", "x"),
            hook("fresh", "s", "y")
        ));
        assert_eq!(
            diff(&old, &new),
            Diff {
                added: vec!["fresh".into()],
                removed: vec!["gone".into()],
                changed: vec!["rotated".into()],
            }
        );
        assert_eq!(diff(&new, &new), Diff::default());
    }

    #[test]
    fn an_ed25519_rotation_min_version_and_payload_format_are_changes() {
        let with = |extra: &str| {
            parse(&format!(
                "  - id: h\n    url: https://h.example.com\n    topics: [x]\n    signature: standard\n{extra}"
            ))
        };
        let base = with("    secrets: [\"whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=\"]\n");
        let rotated =
            with("    secrets: [\"whsk_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\"]\n");
        let versioned = with(
            "    secrets: [\"whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=\"]\n    min_version: 2\n",
        );
        let reshaped = with(
            "    secrets: [\"whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=\"]\n    payload_format: standard\n",
        );
        for other in [&rotated, &versioned, &reshaped] {
            assert_eq!(diff(&base, other).changed, vec!["h".to_owned()]);
        }
    }

    #[test]
    fn a_changed_broker_list_is_a_change() {
        let with = |url: &str| {
            parse(&format!(
                "  - id: k\n    url: \"{url}\"\n    secret: s\n    topics: [x]\n"
            ))
        };
        let (a, b) = (with("kafka://b1,b2/t"), with("kafka://b1,b3/t"));
        assert_eq!(a.webhook("k").unwrap().url, b.webhook("k").unwrap().url);
        assert_eq!(diff(&a, &b).changed, vec!["k".to_owned()]);
    }
}
