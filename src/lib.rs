//! mongoplex (layout map written as modules land)
#![forbid(unsafe_code)]
pub mod address;
pub mod command;
pub mod config;
pub mod sdam;
pub mod wire;
