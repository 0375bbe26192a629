//! The one integration test binary: the real `aion-webhooks` executable and,
//! for the engine, the real application on a fresh database.

#[macro_use]
mod db;

mod api_contract;
mod cli;
mod console;
mod console_browser;
mod console_sessions;
mod contracts;
mod crash;
mod delivery;
mod docs;
mod edge_input;
mod embedded;
mod endpoint_state;
mod first_contact;
mod hostile_receivers;
mod id_spaces;
mod inbound;
mod inbound_replay;
mod ingest;
mod isolation;
mod layers;
mod leaks;
mod metrics;
mod migration;
mod operator;
mod ordering;
mod pgtmp;
mod queue;
mod reach;
mod reload;
mod replay;
mod retention;
mod secret_rotation;
mod security;
mod slow_clients;
mod sources;
mod support;
mod throttling;
mod tracing;
