//! Error documents the proxy itself sends to clients: always `ok: 0`, `code`,
//! `codeName` and `errmsg`, plus error labels where they tell the driver it may retry.

use bson::{rawdoc, RawDocumentBuf};

pub mod codes;

/// Server error codes the proxy uses, with their official names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InternalError,
    BadValue,
    HostUnreachable,
    ProtocolError,
    AuthenticationFailed,
    Unauthorized,
    MechanismUnavailable,
    InvalidOptions,
    MaxTimeMSExpired,
    NetworkTimeout,
    FailedToSatisfyReadPreference,
    ExceededTimeLimit,
    UnsupportedOpQueryCommand,
    CommandNotSupported,
}

impl ErrorCode {
    /// Every code, for tables that must cover them all.
    pub const ALL: [ErrorCode; 14] = [
        Self::InternalError,
        Self::BadValue,
        Self::HostUnreachable,
        Self::ProtocolError,
        Self::AuthenticationFailed,
        Self::Unauthorized,
        Self::MechanismUnavailable,
        Self::InvalidOptions,
        Self::MaxTimeMSExpired,
        Self::NetworkTimeout,
        Self::FailedToSatisfyReadPreference,
        Self::ExceededTimeLimit,
        Self::UnsupportedOpQueryCommand,
        Self::CommandNotSupported,
    ];

    pub fn code(self) -> i32 {
        match self {
            Self::InternalError => 1,
            Self::BadValue => 2,
            Self::HostUnreachable => 6,
            Self::ProtocolError => 17,
            Self::AuthenticationFailed => 18,
            Self::Unauthorized => 13,
            Self::MechanismUnavailable => 334,
            Self::InvalidOptions => 72,
            Self::MaxTimeMSExpired => 50,
            Self::NetworkTimeout => 89,
            Self::FailedToSatisfyReadPreference => 133,
            Self::ExceededTimeLimit => 262,
            Self::UnsupportedOpQueryCommand => 352,
            Self::CommandNotSupported => 115,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::InternalError => "InternalError",
            Self::BadValue => "BadValue",
            Self::HostUnreachable => "HostUnreachable",
            Self::ProtocolError => "ProtocolError",
            Self::AuthenticationFailed => "AuthenticationFailed",
            Self::Unauthorized => "Unauthorized",
            Self::MechanismUnavailable => "MechanismUnavailable",
            Self::InvalidOptions => "InvalidOptions",
            Self::MaxTimeMSExpired => "MaxTimeMSExpired",
            Self::NetworkTimeout => "NetworkTimeout",
            Self::FailedToSatisfyReadPreference => "FailedToSatisfyReadPreference",
            Self::ExceededTimeLimit => "ExceededTimeLimit",
            Self::UnsupportedOpQueryCommand => "UnsupportedOpQueryCommand",
            Self::CommandNotSupported => "CommandNotSupported",
        }
    }
}

pub const RETRYABLE_WRITE_ERROR: &str = "RetryableWriteError";
pub const TRANSIENT_TRANSACTION_ERROR: &str = "TransientTransactionError";
pub const RESUMABLE_CHANGE_STREAM_ERROR: &str = "ResumableChangeStreamError";

/// An error the proxy reports to a client instead of a server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyError {
    pub code: ErrorCode,
    pub message: String,
    pub labels: Vec<&'static str>,
}

impl ProxyError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            labels: Vec::new(),
        }
    }

    pub fn to_document(&self) -> RawDocumentBuf {
        let mut d = rawdoc! {
            "ok": 0.0,
            "errmsg": format!("mongoplex: {}", self.message),
            "code": self.code.code(),
            "codeName": self.code.name(),
        };
        if !self.labels.is_empty() {
            let mut arr = bson::RawArrayBuf::new();
            for l in &self.labels {
                arr.push(*l);
            }
            d.append(bson::cstr!("errorLabels"), arr);
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_have_the_standard_shape() {
        let mut e = ProxyError::new(ErrorCode::HostUnreachable, "x");
        e.labels.push(RETRYABLE_WRITE_ERROR);
        let d = e.to_document();
        assert_eq!(d.get_f64("ok").unwrap(), 0.0);
        assert_eq!(d.get_i32("code").unwrap(), 6);
        assert_eq!(d.get_str("codeName").unwrap(), "HostUnreachable");
        assert_eq!(d.get_str("errmsg").unwrap(), "mongoplex: x");
        assert_eq!(d.get_array("errorLabels").unwrap().into_iter().count(), 1);
        let d = ProxyError::new(ErrorCode::BadValue, "y").to_document();
        assert!(d.get("errorLabels").unwrap().is_none());
    }

    #[test]
    fn proxy_codes_are_named_as_the_server_names_them() {
        for c in ErrorCode::ALL {
            assert_eq!(codes::code_name(c.code()), c.name(), "{c:?}");
        }
    }
}
