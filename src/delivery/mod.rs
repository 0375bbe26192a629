//! Outbound delivery: one HTTP attempt (`sender`), the SSRF guard (`ssrf`),
//! the retry schedule (`retry`), and the worker that claims due deliveries,
//! sends them and records outcomes (`worker`).

pub mod retry;
pub mod sender;
pub mod ssrf;
pub mod worker;
