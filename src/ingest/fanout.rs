//! Fan-out: the webhooks an event goes to — those whose topics match it,
//! whose tenant filter admits it, whose `min_version` it meets and whose
//! `filter:` admits it (contract §10) — and those that passed on it, for the
//! metrics. Also the test send's event, which goes to one webhook alone.

use chrono::{DateTime, Utc};

use super::parse::engine_event;
use crate::domain::{EventVersion, Topic};
use crate::policy::PolicySet;
use crate::policy::filter::{Lookup, Subject};
use crate::store::{NewEvent, Recipient};

/// Where an event goes, and which matching webhooks passed on it.
#[derive(Debug, Default)]
pub(super) struct Fanout {
    pub to: Vec<Recipient>,
    /// Topics matched, `min_version` above the event's.
    pub below_min_version: Vec<String>,
    /// Topics matched, `filter:` refused.
    pub filtered_out: Vec<String>,
}

/// The webhooks `event` (of `topic`) goes to. Each filter field is read
/// from the event once, however many webhooks' filters look at it.
pub(super) fn recipients(
    policy: &PolicySet,
    topic: &Topic,
    event: Subject<'_>,
    version: Option<&EventVersion>,
) -> Fanout {
    let mut out = Fanout::default();
    let mut lookup = Lookup::new(event);
    for r in policy.route(topic, event.tenant_id) {
        let id = r.webhook.id.as_str();
        if !r.webhook.accepts_version(version) {
            out.below_min_version.push(id.to_owned());
        } else if r
            .webhook
            .filter
            .as_ref()
            .is_some_and(|f| !f.admits(&mut lookup))
        {
            out.filtered_out.push(id.to_owned());
        } else {
            out.to.push(Recipient {
                webhook_id: id.to_owned(),
                ordered: r.webhook.ordered,
                lease: None,
            });
        }
    }
    out
}
/// The topic of a test send (contract §10).
pub const TEST_TOPIC: &str = "aion.webhooks.test";

/// The example event of `POST /v1/webhooks/{id}/test`: topic
/// [`TEST_TOPIC`], for webhook `webhook` alone (whatever else subscribes to
/// the topic), delivered like any event.
pub fn test_event(webhook: &str, now: DateTime<Utc>) -> NewEvent {
    let topic = Topic::parse(TEST_TOPIC).expect("the test topic is valid");
    let payload = serde_json::json!({
        "webhook_id": webhook,
        "message": "A test event from aion-webhooks: it was signed and sent the way every event to this webhook is.",
    });
    let mut event = engine_event(&topic, None, &payload, now);
    event.webhooks = vec![Recipient::unordered(webhook)];
    event
}
