//! The operator subcommands of the `mongoplex` binary, beside the proxy itself:
//! [`health`] (`mongoplex health`, a probe for container HEALTHCHECKs, which have no
//! curl in a distroless image) and [`check_config`] (`mongoplex check-config`, the
//! effective settings, redacted, with where each came from), [`top`] (`mongoplex top`,
//! a live view of a running proxy from its `/status` and `/metrics`; it and `health`
//! go over [`http`]) and [`user`] (`mongoplex user add`, the users file of
//! `client_auth = "file"`). The flag parsing lives in `main.rs`; what is here is
//! testable without a process.

pub mod check_config;
pub mod health;
pub mod http;
pub mod top;
pub mod user;
