//! Outbound delivery: one HTTP attempt (`sender`), the SSRF guard (`ssrf`),
//! the retry schedule (`retry`), what may be sent now (`scheduler`), and the
//! worker that claims due deliveries, sends them and records outcomes
//! (`worker`); endpoint state transitions, by an admin or the engine
//! (`endpoint`).

pub mod endpoint;
pub mod retry;
pub mod scheduler;
pub mod sender;
pub mod ssrf;
pub mod worker;
