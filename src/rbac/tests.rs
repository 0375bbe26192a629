//! Tests for `rbac`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::auth::PrincipalKind;
use crate::policy::PolicySet;

fn principal(id: &str, roles: &[&str]) -> Principal {
    Principal {
        actor_id: id.into(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        kind: PrincipalKind::ApiKey,
    }
}

/// What the table below expects, written out by hand.
#[derive(Debug, Clone, Copy)]
enum Want {
    Allow,
    Need(&'static [&'static str]),
    NotListed,
}

impl Want {
    fn decision(self) -> Decision {
        match self {
            Want::Allow => Decision::Allow,
            Want::Need(roles) => Decision::Deny {
                reason: DenyReason::MissingRole {
                    needed: roles.iter().map(|r| (*r).to_owned()).collect(),
                },
            },
            Want::NotListed => Decision::Deny {
                reason: DenyReason::NotAllowListed,
            },
        }
    }
}

use InboundAction as I;
use Want::{Allow, Need, NotListed};

/// Every action, listed by hand (not via `Action::all`), in table order.
const ACTIONS: [Action; 20] = [
    Action::PublishEvents,
    Action::ListWebhooks,
    Action::ListDeliveries,
    Action::GetDelivery,
    Action::ReplayDelivery,
    Action::BulkReplay,
    Action::GetEvent,
    Action::ListAudit,
    Action::GetPolicy,
    Action::ReloadPolicy,
    Action::DisableWebhook,
    Action::EnableWebhook,
    Action::TestWebhook,
    Action::ListSources,
    Action::ConsoleSignIn,
    Action::Inbound(I::ApproveKernelProposal),
    Action::Inbound(I::RejectKernelProposal),
    Action::Inbound(I::InstallModule),
    Action::Inbound(I::IngestDataset),
    Action::Inbound(I::UpdateMemoryProfile),
];

const ADMIN_ONLY: Want = Need(&["admin"]);
const PUBLISHER_ONLY: Want = Need(&["publisher"]);
const KERNEL: Want = Need(&["kernel-approver"]);

/// policies/webhooks.yaml: api key id → expected decision per `ACTIONS` entry.
const SHIPPED: [(&str, [Want; 20]); 3] = [
    (
        // roles: publisher, kernel-approver, module-admin
        "control-plane",
        [
            Allow,      // publish_events
            ADMIN_ONLY, // list_webhooks
            ADMIN_ONLY, // list_deliveries
            ADMIN_ONLY, // get_delivery
            ADMIN_ONLY, // replay_delivery
            ADMIN_ONLY, // bulk_replay
            ADMIN_ONLY, // get_event
            ADMIN_ONLY, // list_audit
            ADMIN_ONLY, // get_policy
            ADMIN_ONLY, // reload_policy
            ADMIN_ONLY, // disable_webhook
            ADMIN_ONLY, // enable_webhook
            ADMIN_ONLY, // test_webhook
            ADMIN_ONLY, // list_sources
            ADMIN_ONLY, // console_sign_in
            Allow,      // approve_kernel_proposal
            Allow,      // reject_kernel_proposal
            Allow,      // install_module
            Need(&["data-engineer"]),
            Need(&["memory-admin"]),
        ],
    ),
    (
        // roles: admin, kernel-approver
        "ops",
        [
            PUBLISHER_ONLY,
            Allow,
            Allow,
            Allow,
            Allow,
            Allow,
            Allow,
            Allow,
            Allow,
            Allow,
            Allow,
            Allow,
            Allow,
            Allow,
            Allow,
            Allow,
            Allow,
            Need(&["module-admin"]),
            Need(&["data-engineer"]),
            Need(&["memory-admin"]),
        ],
    ),
    (
        // roles: publisher, data-engineer
        "data-pipeline",
        [
            Allow,
            ADMIN_ONLY,
            ADMIN_ONLY,
            ADMIN_ONLY,
            ADMIN_ONLY,
            ADMIN_ONLY,
            ADMIN_ONLY,
            ADMIN_ONLY,
            ADMIN_ONLY,
            ADMIN_ONLY,
            ADMIN_ONLY,
            ADMIN_ONLY,
            ADMIN_ONLY,
            ADMIN_ONLY,
            ADMIN_ONLY,
            KERNEL,
            KERNEL,
            Need(&["module-admin"]),
            Allow,
            Need(&["memory-admin"]),
        ],
    ),
];

fn shipped_policy() -> PolicySet {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/webhooks.yaml");
    PolicySet::load_file_with_env(&path, &crate::policy::tests::production_env)
        .expect("shipped policy is valid")
}

#[test]
fn the_table_lists_every_action_once() {
    let listed: Vec<Action> = ACTIONS.to_vec();
    let all: Vec<Action> = Action::all().collect();
    assert_eq!(
        listed, all,
        "add the new action to ACTIONS and to every row"
    );
}

#[test]
fn shipped_policy_grants_exactly_the_expected_table() {
    let policy = shipped_policy();
    let keys = &policy.auth().api_keys;
    assert_eq!(
        keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        SHIPPED.map(|(id, _)| id),
        "the table covers every api key of the shipped policy"
    );
    for key in keys {
        let p = Principal {
            actor_id: key.id.clone(),
            roles: key.roles.clone(),
            kind: PrincipalKind::ApiKey,
        };
        let (_, row) = SHIPPED
            .iter()
            .find(|(id, _)| *id == key.id)
            .expect("row for key");
        for (action, want) in ACTIONS.iter().zip(row) {
            assert_eq!(
                decide(&p, *action, policy.inbound()),
                want.decision(),
                "{} × {}",
                key.id,
                action.as_str()
            );
        }
    }
}

#[test]
fn a_principal_without_roles_may_do_nothing() {
    let policy = shipped_policy();
    let nobody = principal("nobody", &[]);
    let want: [Want; ACTIONS.len()] = [
        PUBLISHER_ONLY,
        ADMIN_ONLY,
        ADMIN_ONLY,
        ADMIN_ONLY,
        ADMIN_ONLY,
        ADMIN_ONLY,
        ADMIN_ONLY,
        ADMIN_ONLY,
        ADMIN_ONLY,
        ADMIN_ONLY,
        ADMIN_ONLY,
        ADMIN_ONLY,
        ADMIN_ONLY,
        ADMIN_ONLY,
        ADMIN_ONLY,
        KERNEL,
        KERNEL,
        Need(&["module-admin"]),
        Need(&["data-engineer"]),
        Need(&["memory-admin"]),
    ];
    for (action, want) in ACTIONS.iter().zip(want) {
        assert_eq!(
            decide(&nobody, *action, policy.inbound()),
            want.decision(),
            "{}",
            action.as_str()
        );
    }
}

#[test]
fn without_an_inbound_section_no_inbound_action_is_allowed() {
    let root = principal(
        "root",
        &[
            "publisher",
            "admin",
            "kernel-approver",
            "module-admin",
            "data-engineer",
            "memory-admin",
        ],
    );
    let want: [Want; ACTIONS.len()] = [
        Allow, Allow, Allow, Allow, Allow, Allow, Allow, Allow, Allow, Allow, Allow, Allow, Allow,
        Allow, Allow, NotListed, NotListed, NotListed, NotListed, NotListed,
    ];
    for (action, want) in ACTIONS.iter().zip(want) {
        assert_eq!(
            decide(&root, *action, None),
            want.decision(),
            "{}",
            action.as_str()
        );
    }
}

#[test]
fn an_action_missing_from_the_allow_list_is_refused_whatever_the_roles() {
    let inbound = InboundPolicy {
        secrets: Vec::new(),
        tolerance: Duration::from_secs(300),
        actions: BTreeMap::from([(
            "install_module".to_owned(),
            vec!["module-admin".to_owned(), "ops-lead".to_owned()],
        )]),
    };
    let lead = principal("lead", &["ops-lead", "kernel-approver", "admin"]);
    let install = Action::Inbound(I::InstallModule);
    assert_eq!(decide(&lead, install, Some(&inbound)), Decision::Allow);
    assert_eq!(
        decide(
            &lead,
            Action::Inbound(I::ApproveKernelProposal),
            Some(&inbound)
        ),
        NotListed.decision()
    );
    let deny = decide(&principal("x", &["admin"]), install, Some(&inbound));
    assert_eq!(deny, Need(&["module-admin", "ops-lead"]).decision());
    let Decision::Deny { reason } = deny else {
        unreachable!()
    };
    assert_eq!(
        reason.to_string(),
        "this operation needs one of the roles `module-admin`, `ops-lead`"
    );
}

#[test]
fn inbound_action_names_round_trip() {
    for a in InboundAction::ALL {
        assert_eq!(InboundAction::parse(a.as_str()), Some(a));
        assert_eq!(Action::Inbound(a).as_str(), a.as_str());
    }
    assert_eq!(InboundAction::parse("Approve_Kernel_Proposal"), None);
    assert_eq!(InboundAction::parse("approve"), None);
    assert_eq!(InboundAction::parse(""), None);
}
