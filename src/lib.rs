//! mongoplex (layout map written as modules land)
#![forbid(unsafe_code)]
pub mod address;
pub mod command;
pub mod config;
pub mod metrics;
pub mod pool;
pub mod sdam;
pub mod upstream;
pub mod wire;
