//! Rendering and argument checks of the operator commands.

use super::*;

#[test]
fn tables_align_their_columns() {
    let t = table(
        &["ID", "STATUS"],
        &[
            vec!["a".into(), "dead".into()],
            vec!["long-id".into(), "ok".into()],
        ],
    );
    assert_eq!(t, "ID       STATUS\na        dead\nlong-id  ok\n");
}

#[test]
fn bulk_replay_needs_a_filter() {
    let none = DeliveriesCommand::Replay {
        id: None,
        webhook: None,
        since: None,
        until: None,
        status: None,
    };
    assert!(deliveries(none).is_err());
}
