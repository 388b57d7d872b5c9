//! mongoplex (layout map written as modules land)
#![forbid(unsafe_code)]
pub mod address;
pub mod admin;
pub mod command;
pub mod config;
pub mod context;
pub mod errors;
pub mod handshake;
pub mod metrics;
pub mod pins;
pub mod pool;
pub mod router;
pub mod sdam;
pub mod server;
pub mod session;
pub mod topology;
pub mod upstream;
pub mod wire;
