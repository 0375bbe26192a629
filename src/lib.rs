//! aion-webhooks: a durable, signed webhook delivery engine.
//!
//! The library holds everything; `main.rs` only parses arguments and calls
//! [`cli::run`]. Layers point one way: `cli` → use cases → `policy`,
//! `signing`, `domain` (pure, no I/O).

pub mod app;
pub mod auth;
pub mod cli;
pub mod delivery;
pub mod domain;
pub mod http;
pub mod ingest;
pub mod policy;
pub mod signing;
pub mod store;
