//! aion-webhooks: a durable, signed webhook delivery engine.
//!
//! The library holds everything; `main.rs` only parses arguments and calls
//! [`cli::run`]. Layers point one way: `cli` → use cases → `policy`,
//! `signing`, `domain` (pure, no I/O).

pub mod app;
pub mod audit;
pub mod auth;
pub mod banner;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod http;
pub mod inbound;
pub mod ingest;
pub mod metrics;
pub mod policy;
pub mod rbac;
pub mod reload;
pub mod retention;
pub mod signing;
pub mod sources;
pub mod store;
pub mod telemetry;
