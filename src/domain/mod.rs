//! Pure value types shared by every layer: identifiers, topics, secrets.
//! Nothing here does I/O or knows about HTTP or SQL.

pub mod action;
pub mod causes;
pub mod decimal;
pub mod derived_id;
pub mod ids;
pub mod payload;
pub mod redact;
pub mod reserved;
pub mod secret;
pub mod state;
pub mod topic;
pub mod version;

pub use action::InboundAction;
pub use causes::Causes;
pub use ids::{DeliveryId, EventId, IdError, WebhookId};
pub use reserved::{ENGINE_SOURCE, ReservedNamespace};
pub use secret::Secret;
pub use state::DeliveryState;
pub use topic::{Topic, TopicError, TopicPattern};
pub use version::EventVersion;
