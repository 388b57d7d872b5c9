//! Shared support for the integration tests. Use it with `mod common;` in a test file.
//!
//! Keep this file to `pub mod` lines only: several people add helper modules here, and
//! a one-line-per-module file merges cleanly. Put the code in the module's own file.

pub mod auth;
pub mod binary;
pub mod bystander;
pub mod dnsmasq;
pub mod failpoint;
pub mod mongos;
pub mod peers;
pub mod pki;
pub mod proxy;
pub mod replset;
