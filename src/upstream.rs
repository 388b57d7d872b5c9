//! Upstream connections: establishment and request/reply exchange with one server.
//!
//! Establishment runs in stages — TCP connect, then (when configured) TLS, then the hello
//! handshake, then (when configured) authentication — so TLS and SCRAM slot in as new
//! stages of [`conn::UpstreamConn::establish`] and a new variant of [`stream::UpstreamStream`].
//! The hello also negotiates wire compression ([`compression`]), which the connection
//! then applies to its requests and undoes on its replies, below everything that reads
//! them.

pub mod compression;
pub mod conn;
mod dial;
pub mod stream;
pub mod tls;

pub use conn::{ConnectOptions, HelloSummary, UpstreamConn};

use crate::address::ServerAddress;

/// Who failed and how, for upstream I/O. Every variant is the upstream's side.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("could not connect to {address}: {source}")]
    Connect {
        address: ServerAddress,
        source: std::io::Error,
    },
    #[error("connecting to {address} timed out after {ms} ms")]
    ConnectTimeout { address: ServerAddress, ms: u128 },
    #[error("handshake with {address} failed: {why}")]
    Handshake { address: ServerAddress, why: String },
    #[error("TLS with {address} failed: {why}")]
    Tls { address: ServerAddress, why: String },
    /// The server refused the proxy's credential (or could not prove it knows it).
    #[error("authentication to {address} as {user} failed: {why}")]
    Auth {
        address: ServerAddress,
        user: String,
        why: String,
    },
    #[error("connection to {address} failed: {source}")]
    Io {
        address: ServerAddress,
        source: std::io::Error,
    },
    #[error("connection to {address} was closed by the server")]
    Closed { address: ServerAddress },
    #[error("no reply from {address} within {ms} ms (socketTimeoutMS)")]
    Timeout { address: ServerAddress, ms: u128 },
    #[error(
        "writing a request to {address} took more than {ms} ms (socketTimeoutMS); the server is not reading"
    )]
    WriteTimeout { address: ServerAddress, ms: u128 },
    /// The client's maxTimeMS (and the grace after it) ran out: the proxy's limit, not
    /// the server's failure.
    #[error("the request's maxTimeMS ran out while {doing} to {address}")]
    DeadlineExceeded {
        address: ServerAddress,
        doing: &'static str,
    },
    #[error("request to {address} interrupted: the member stopped answering its monitor")]
    Interrupted { address: ServerAddress },
    #[error("reply from {address} out of step: expected responseTo {}, got {got}; connection discarded", .expected.map_or_else(|| "none (no request outstanding)".to_string(), |e| e.to_string()))]
    ResponseMismatch {
        address: ServerAddress,
        /// The requestID awaited, `None` when no request was outstanding.
        expected: Option<i32>,
        got: i32,
    },
    #[error("bad reply from {address}: {source}")]
    Protocol {
        address: ServerAddress,
        source: crate::wire::WireError,
    },
}

impl UpstreamError {
    /// A network timeout in SDAM's sense (the member itself was too slow).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Self::ConnectTimeout { .. } | Self::Timeout { .. } | Self::WriteTimeout { .. }
        )
    }

    /// A bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect",
            Self::ConnectTimeout { .. } => "connect_timeout",
            Self::Handshake { .. } => "handshake",
            Self::Auth { .. } => "auth",
            Self::Tls { .. } => "tls",
            Self::Io { .. } => "io",
            Self::Closed { .. } => "closed",
            Self::Timeout { .. } => "timeout",
            Self::WriteTimeout { .. } => "write_timeout",
            Self::DeadlineExceeded { .. } => "deadline",
            Self::Protocol { .. } => "protocol",
            Self::Interrupted { .. } => "interrupted",
            Self::ResponseMismatch { .. } => "response_mismatch",
        }
    }
}
