//! What a pool is configured with, and why a checkout fails.

use std::time::Duration;

use crate::address::ServerAddress;
use crate::upstream::UpstreamError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// 0 means no limit, as in the CMAP spec.
    pub max_size: usize,
    pub min_size: usize,
    pub max_connecting: usize,
    pub max_idle_time: Option<Duration>,
    pub max_lifetime: Option<Duration>,
    pub wait_queue_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_size: 100,
            min_size: 0,
            max_connecting: 2,
            max_idle_time: None,
            max_lifetime: None,
            wait_queue_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a checkout failed. All of these happen before the request is sent.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("timed out after {waited_ms} ms waiting for a connection to {address} (maxPoolSize {max_size}, waitQueueTimeoutMS {timeout_ms})")]
    Timeout {
        address: ServerAddress,
        waited_ms: u128,
        max_size: usize,
        timeout_ms: u128,
    },
    /// The request's maxTimeMS ran out first (the caller's deadline).
    #[error("the request's maxTimeMS ran out {doing} {address}")]
    Expired {
        address: ServerAddress,
        doing: &'static str,
    },
    #[error("connection pool for {address} was cleared: {reason}")]
    Cleared { address: ServerAddress, reason: String },
    #[error("connection pool for {address} is closed")]
    Closed { address: ServerAddress },
    /// A login was refused lately; no connection is opened until the backoff ends.
    #[error("{why} (no new connection to {address} until the login backoff ends)")]
    AuthRefused { address: ServerAddress, why: String },
    #[error(transparent)]
    Connect(#[from] UpstreamError),
}

impl CheckoutError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::Expired { .. } => "max_time",
            Self::Cleared { .. } => "pool_cleared",
            Self::Closed { .. } => "pool_closed",
            Self::AuthRefused { .. } => "auth_refused",
            Self::Connect(_) => "connection_error",
        }
    }
}
