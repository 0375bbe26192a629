//! Outbound delivery: one HTTP attempt (`sender`), the SSRF guard (`ssrf`),
//! the retry schedule (`retry`), what an attempt decides (`outcome`), what
//! may be sent now (`scheduler`), and the worker's services that claim due
//! deliveries, send them and record outcomes (`worker`); endpoint state
//! transitions, by an admin or the engine (`endpoint`); what it counts
//! (`meters`).

pub mod endpoint;
pub mod meters;
pub mod outcome;
pub mod retry;
pub mod scheduler;
pub mod sender;
pub mod ssrf;
pub mod worker;

pub use meters::Meters;
