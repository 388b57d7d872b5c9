//! Splitting a connection string into scheme, userinfo, hosts, database and
//! query, and percent-decoding each part (Connection String spec, "Reference
//! Implementation" steps 1-8). Options are decoded later, by `apply`.

use std::borrow::Cow;
use std::net::Ipv6Addr;
use std::path::PathBuf;

use super::error::{UriComponent, UriError};
use super::options::Secret;
use super::Host;
use crate::address::{ServerAddress, DEFAULT_PORT};

/// A connection string cut into its parts, everything but the query decoded.
#[derive(Debug)]
pub(super) struct Parts<'a> {
    pub is_srv: bool,
    pub userinfo: Option<Userinfo>,
    pub hosts: Vec<ParsedHost>,
    pub database: Option<String>,
    /// The raw text after the first '?', if any.
    pub query: Option<&'a str>,
}

#[derive(Debug)]
pub(super) struct Userinfo {
    pub username: String,
    pub password: Option<Secret>,
}

#[derive(Debug)]
pub(super) struct ParsedHost {
    pub host: Host,
    /// Whether the string named a port (mongodb+srv forbids one).
    pub explicit_port: bool,
    /// Whether the host was a bracketed IP literal.
    pub ip_literal: bool,
}

/// Characters a database name must not contain once decoded.
const DATABASE_FORBIDDEN: &[char] = &['/', '\\', ' ', '"', '$', '\0'];

pub(super) fn split(s: &str) -> Result<Parts<'_>, UriError> {
    if s.is_empty() {
        return Err(UriError::Empty);
    }
    let (is_srv, rest) = if let Some(rest) = strip_prefix_ignore_case(s, "mongodb://") {
        (false, rest)
    } else if let Some(rest) = strip_prefix_ignore_case(s, "mongodb+srv://") {
        (true, rest)
    } else {
        // Only echo what precedes "://": without it, the text may be userinfo.
        let found = s.find("://").map(|i| s[..i].to_owned());
        return Err(UriError::InvalidScheme { found });
    };

    // The host information ends at the first '/' or, when the slash before the
    // options is left out, at the first '?'.
    let (authority, after) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (path, query) = match after.strip_prefix('/') {
        Some(path_and_query) => match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        },
        None => ("", after.strip_prefix('?')),
    };
    // "user/x@host" splits at the slash: the '@' then lands in the path. Catch
    // that before the pieces are echoed in other errors, as they may hold a
    // password.
    if !authority.contains('@') && path.contains('@') {
        return Err(UriError::UnescapedInUserinfo { ch: '/' });
    }

    let (userinfo, host_list) = match authority.rfind('@') {
        Some(i) => (Some(parse_userinfo(&authority[..i])?), &authority[i + 1..]),
        None => (None, authority),
    };
    if host_list.is_empty() {
        let hint = if after.starts_with('/') && !path.is_empty() {
            "; a UNIX socket path must be percent-encoded, e.g. %2Ftmp%2Fmongodb-27017.sock"
        } else {
            ""
        };
        return Err(UriError::MissingHost { hint });
    }
    let hosts = host_list
        .split(',')
        .enumerate()
        .map(|(position, raw)| parse_host(raw, position))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Parts {
        is_srv,
        userinfo,
        hosts,
        database: parse_database(path)?,
        query,
    })
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

fn parse_userinfo(raw: &str) -> Result<Userinfo, UriError> {
    if raw.contains('@') {
        return Err(UriError::UnescapedInUserinfo { ch: '@' });
    }
    let (user, password) = match raw.split_once(':') {
        Some((_, password)) if password.contains(':') => {
            return Err(UriError::UnescapedInUserinfo { ch: ':' });
        }
        Some((user, password)) => (user, Some(password)),
        None => (raw, None),
    };
    Ok(Userinfo {
        username: percent_decode(user, UriComponent::Username)?,
        password: password
            .map(|p| percent_decode(p, UriComponent::Password).map(Secret::new))
            .transpose()?,
    })
}

fn parse_host(raw: &str, position: usize) -> Result<ParsedHost, UriError> {
    if raw.is_empty() {
        return Err(UriError::EmptyHost { position });
    }
    let invalid = |reason| UriError::InvalidHost {
        host: raw.to_owned(),
        reason,
    };
    let (host, port, ip_literal) = if let Some(inner) = raw.strip_prefix('[') {
        let (literal, after) = inner
            .split_once(']')
            .ok_or_else(|| invalid("unterminated IP literal: missing ']'"))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| invalid("unexpected text after ']'"))?,
            ),
        };
        let literal = percent_decode(literal, UriComponent::Host)?;
        if !is_ipv6_literal(&literal) {
            return Err(invalid("not a valid IPv6 address"));
        }
        (literal, port, true)
    } else {
        let (host, port) = match raw.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (raw, None),
        };
        if port.is_some_and(|p| p.contains(':')) {
            return Err(invalid(
                "more than one ':' (IPv6 addresses must be enclosed in brackets)",
            ));
        }
        let host = percent_decode(host, UriComponent::Host)?;
        if host.is_empty() {
            return Err(invalid("missing host name before ':'"));
        }
        if host.contains('/') {
            return unix_socket(host, port.is_some(), invalid);
        }
        if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                "host names must not contain spaces or control characters",
            ));
        }
        (host, port, false)
    };
    let explicit_port = port.is_some();
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => parse_port(port).ok_or_else(|| UriError::InvalidPort {
            host: raw.to_owned(),
            port: port.to_owned(),
        })?,
    };
    Ok(ParsedHost {
        host: Host::Tcp(ServerAddress::new(host, port)),
        explicit_port,
        ip_literal,
    })
}

/// A decoded host holding a '/' is a UNIX socket path (the spec requires
/// paths to be percent-encoded and to end in ".sock").
fn unix_socket(
    path: String,
    has_port: bool,
    invalid: impl Fn(&'static str) -> UriError,
) -> Result<ParsedHost, UriError> {
    if has_port {
        return Err(invalid("a UNIX socket path cannot have a port"));
    }
    if !path.ends_with(".sock") {
        return Err(invalid(
            "contains '/', so it must be a UNIX socket path, and those must end in \".sock\"",
        ));
    }
    Ok(ParsedHost {
        host: Host::Unix(PathBuf::from(path)),
        explicit_port: false,
        ip_literal: false,
    })
}

/// An IPv6 address with an optional zone ("fe80::1%eth0").
fn is_ipv6_literal(s: &str) -> bool {
    let (addr, zone) = match s.split_once('%') {
        Some((addr, zone)) => (addr, Some(zone)),
        None => (s, None),
    };
    addr.parse::<Ipv6Addr>().is_ok() && zone.is_none_or(|z| !z.is_empty())
}

/// Digits only (no sign, no spaces), 1 to 65535.
fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|&p| p != 0)
}

fn parse_database(raw: &str) -> Result<Option<String>, UriError> {
    let name = percent_decode(raw, UriComponent::Database)?;
    if name.is_empty() {
        return Ok(None);
    }
    if let Some(ch) = name.chars().find(|c| DATABASE_FORBIDDEN.contains(c)) {
        return Err(UriError::InvalidDatabaseName { name, ch });
    }
    Ok(Some(name))
}

/// Percent-decodes `raw`, rejecting a '%' not followed by two hex digits (the
/// spec requires an error for these in userinfo; elsewhere it is equally
/// ambiguous) and results that are not UTF-8.
pub(super) fn percent_decode(raw: &str, component: UriComponent) -> Result<String, UriError> {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while let Some(offset) = bytes
        .get(i..)
        .and_then(|rest| rest.iter().position(|&b| b == b'%'))
    {
        let at = i + offset;
        let hex = |k: usize| bytes.get(at + k).is_some_and(u8::is_ascii_hexdigit);
        if !(hex(1) && hex(2)) {
            return Err(UriError::BadPercentEncoding { component });
        }
        i = at + 3;
    }
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|_| UriError::InvalidUtf8 { component })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_of(s: &str) -> Result<Host, UriError> {
        parse_host(s, 0).map(|h| h.host)
    }

    #[test]
    fn percent_decoding_is_strict() {
        let c = || UriComponent::Username;
        assert_eq!(percent_decode("a%20b%2F", c()).as_deref(), Ok("a b/"));
        assert_eq!(percent_decode("%C3%BC", c()).as_deref(), Ok("ü"));
        for bad in ["%", "a%2", "%zz", "user%20%", "%w"] {
            assert!(
                matches!(percent_decode(bad, c()), Err(UriError::BadPercentEncoding { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            percent_decode("%FF", c()),
            Err(UriError::InvalidUtf8 { .. })
        ));
    }

    #[test]
    fn host_forms() {
        assert_eq!(
            host_of("Example.COM:27018"),
            Ok(Host::Tcp(ServerAddress::new("example.com", 27018)))
        );
        assert_eq!(
            host_of("[fe80::1%25eth0]:5"),
            Ok(Host::Tcp(ServerAddress::new("fe80::1%eth0", 5)))
        );
        assert_eq!(
            host_of("rel%2FMongo.sock"),
            Ok(Host::Unix(PathBuf::from("rel/Mongo.sock")))
        );
        for bad in [
            "localhost::27017",
            "::",
            ":27017",
            "a:0",
            "a:65536",
            "a:+1",
            "a:",
            "[::1",
            "[::1]x",
            "[nope]",
            "%2Ftmp%2Fdir",
            "%2Fa.sock:1",
            "a b",
        ] {
            assert!(host_of(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn splits_without_slash_before_options() {
        let parts = split("mongodb://h?w=1").unwrap();
        assert_eq!(parts.query, Some("w=1"));
        assert_eq!(parts.database, None);
        let parts = split("mongodb://h/db%3F?w=1").unwrap();
        assert_eq!(parts.database.as_deref(), Some("db?"));
    }

    #[test]
    fn errors_do_not_echo_passwords() {
        for uri in [
            "mongodb://alice:s3cret/x@localhost/db",
            "mongodb://alice/bob:s3cret@localhost/db",
            "mongodb://alice:s3cret:x@localhost",
            "mongodb://alice:s3cret@x@localhost",
            "s3cret@localhost",
        ] {
            let err = split(uri).unwrap_err().to_string();
            assert!(!err.contains("s3cret"), "{uri}: {err}");
        }
    }
}
