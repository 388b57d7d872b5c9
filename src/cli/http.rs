//! One blocking HTTP/1.1 GET to mongoplex's own admin listener, for the operator
//! subcommands (`health`, `top`): `Connection: close`, the answer read to its end up to a
//! bound, so no HTTP client and no runtime are needed.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// An admin listener bound to every address (`0.0.0.0`, `[::]`, as in a container) is
/// reached on loopback.
pub fn probe_addr(admin: SocketAddr) -> SocketAddr {
    match admin.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), admin.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), admin.port()),
        _ => admin,
    }
}

/// The status code and the whole body of `GET path`, reading at most `max` bytes.
pub fn get(admin: SocketAddr, path: &str, timeout: Duration, max: u64) -> Result<(u16, String), String> {
    let addr = probe_addr(admin);
    let url = format!("http://{addr}{path}");
    let fail = |e: std::io::Error| format!("{url}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(fail)?;
    stream.set_read_timeout(Some(timeout)).map_err(fail)?;
    stream.set_write_timeout(Some(timeout)).map_err(fail)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(fail)?;
    let mut raw = Vec::new();
    stream.take(max).read_to_end(&mut raw).map_err(fail)?;
    parse_response(&raw).map_err(|e| format!("{url}: {e}"))
}

/// Reads the status code and the body from an HTTP/1.x response.
pub fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(raw);
    let status_line = text.lines().next().unwrap_or("");
    let mut parts = status_line.split(' ');
    let code = match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => code.parse::<u16>().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("not an HTTP response: {:?}", truncate(status_line)))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((code, body.to_string()))
}

/// At most 200 characters of `s`, for error messages.
pub fn truncate(s: &str) -> &str {
    match s.char_indices().nth(200) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse() {
        type Want = Result<(u16, &'static str), &'static str>;
        let cases: [(&[u8], Want); 5] = [
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nlive\n",
                Ok((200, "live\n")),
            ),
            (
                b"HTTP/1.1 503 Service Unavailable\r\n\r\nnot ready: no primary known\nmore\n",
                Ok((503, "not ready: no primary known\nmore\n")),
            ),
            (b"HTTP/1.0 404 Not Found\r\n\r\n", Ok((404, ""))),
            (b"SSH-2.0-OpenSSH\r\n", Err("not an HTTP response")),
            (b"", Err("not an HTTP response")),
        ];
        for (raw, want) in cases {
            let got = parse_response(raw);
            match want {
                Ok((code, body)) => assert_eq!(got, Ok((code, body.to_string()))),
                Err(e) => assert!(got.unwrap_err().contains(e)),
            }
        }
    }

    #[test]
    fn wildcard_admin_addresses_are_probed_on_loopback() {
        let cases = [
            ("0.0.0.0:9317", "127.0.0.1:9317"),
            ("[::]:9317", "[::1]:9317"),
            ("10.1.2.3:9317", "10.1.2.3:9317"),
        ];
        for (admin, want) in cases {
            assert_eq!(probe_addr(admin.parse().unwrap()).to_string(), want);
        }
    }
}
