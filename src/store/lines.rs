//! Lines of `ordering: key` webhooks (see the PostgreSQL backend's `lines` for how they are kept).

/// One line: a webhook and an event key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(in crate::store) struct Line {
    pub(in crate::store) webhook_id: String,
    pub key: String,
}
