//! `mongoplex health`: GET `/live` (or `/ready`) on the admin listener and turn the
//! answer into an exit status, for a container HEALTHCHECK where no curl exists.

use std::net::SocketAddr;
use std::time::Duration;

use super::http;

/// The answer is a short text body; anything longer is cut here.
const MAX_RESPONSE: u64 = 16 * 1024;

/// `Ok(message)` on 200, `Err(message)` on anything else, each one line.
pub fn check(admin: SocketAddr, path: &str, timeout: Duration) -> Result<String, String> {
    let url = format!("http://{}{path}", http::probe_addr(admin));
    let (code, body) = http::get(admin, path, timeout, MAX_RESPONSE)?;
    let first = http::truncate(body.lines().next().unwrap_or(""));
    if code == 200 {
        Ok(format!("{url}: {first}"))
    } else {
        Err(format!("{url}: HTTP {code}: {first}"))
    }
}
