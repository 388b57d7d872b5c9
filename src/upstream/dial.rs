//! The TCP connect of an upstream connection. With the `dns_server` setting the member's
//! host name is resolved through that server (split DNS: the names an SRV answer hands
//! out may exist only there); otherwise the system resolver does it, as before.

use std::net::SocketAddr;

use tokio::net::TcpStream;

use crate::address::ServerAddress;
use crate::srv::dns::Resolver;

/// Connects to the first address of `address` that accepts, as `TcpStream::connect` does.
pub async fn connect(address: &ServerAddress, dns: Option<&Resolver>) -> std::io::Result<TcpStream> {
    let target = (address.host.as_str(), address.port);
    let Some(dns) = dns.filter(|_| address.host.parse::<std::net::IpAddr>().is_err()) else {
        return TcpStream::connect(target).await;
    };
    let ips = dns.ip(&address.host).await?;
    let mut last = None;
    for ip in ips {
        match TcpStream::connect(SocketAddr::new(ip, address.port)).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("DNS has no address for {}", address.host),
        )
    }))
}
