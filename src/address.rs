//! Server addresses as they appear in connection strings and hello replies.
//!
//! Hostnames compare case-insensitively (SDAM spec), so they are stored lowercased.

use std::fmt;

/// The default MongoDB port, used when an address names none.
pub const DEFAULT_PORT: u16 = 27017;

/// A `host:port` pair, normalised to lowercase. IPv6 literals are stored without brackets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerAddress {
    pub host: String,
    pub port: u16,
}

/// Why an address string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("empty host in address {0:?}")]
    EmptyHost(String),
    #[error("invalid port in address {0:?}: must be 1-65535")]
    BadPort(String),
    #[error("unterminated IPv6 literal in address {0:?}")]
    BadIpv6(String),
}

impl ServerAddress {
    pub fn new(host: impl AsRef<str>, port: u16) -> Self {
        Self {
            host: host.as_ref().to_ascii_lowercase(),
            port,
        }
    }

    /// Parses `host`, `host:port`, `[v6]` or `[v6]:port`.
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let end = rest.find(']').ok_or_else(|| AddressError::BadIpv6(s.into()))?;
            let host = &rest[..end];
            let after = &rest[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(AddressError::BadIpv6(s.into())),
            };
            (host, port)
        } else {
            match s.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h, Some(p)),
                Some(_) => (s, None), // bare IPv6 without brackets
                None => (s, None),
            }
        };
        if host.is_empty() {
            return Err(AddressError::EmptyHost(s.into()));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(AddressError::BadPort(s.into())),
            },
        };
        Ok(Self::new(host, port))
    }
}

impl fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        let cases = [
            ("a", "a", 27017),
            ("A:1", "a", 1),
            ("[::1]", "::1", 27017),
            ("[::1]:5", "::1", 5),
            ("127.0.0.1:27016", "127.0.0.1", 27016),
        ];
        for (input, host, port) in cases {
            let a = ServerAddress::parse(input).unwrap();
            assert_eq!((a.host.as_str(), a.port), (host, port), "{input}");
        }
        assert!(ServerAddress::parse("a:0").is_err());
        assert!(ServerAddress::parse("a:x").is_err());
        assert!(ServerAddress::parse(":1").is_err());
        assert!(ServerAddress::parse("[::1").is_err());
        assert_eq!(ServerAddress::parse("[::1]:5").unwrap().to_string(), "[::1]:5");
    }
}
