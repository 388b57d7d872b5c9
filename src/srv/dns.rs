//! The DNS lookups, through hickory-resolver (the resolver the official Rust driver
//! uses) on tokio: SRV and TXT for `mongodb+srv`, and, when the `dns_server` setting names
//! a server, the addresses of member host names too, so that split DNS resolves the names
//! it hands out.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;

use super::{choose_seeds, normalize, verify_host, ForeignHost, SrvRecord, SrvSpec};
use crate::address::ServerAddress;

/// A resolver handle; clones share one cache and one set of sockets.
#[derive(Debug, Clone)]
pub struct Resolver {
    inner: TokioResolver,
    /// The `dns_server` setting, or `None` for the system configuration.
    pub server: Option<SocketAddr>,
}

/// Why a lookup gave nothing usable. Each names the DNS name it asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("DNS has no SRV records for {name}")]
    NoRecords { name: String },
    #[error("DNS lookup of {kind} {name} failed: {why}")]
    Failed {
        kind: &'static str,
        name: String,
        why: String,
    },
    #[error("DNS has {count} TXT records for {name}: at most one is allowed")]
    ManyTxt { name: String, count: usize },
    #[error(transparent)]
    Foreign(#[from] ForeignHost),
}

/// The outcome of the initial lookups, before the URI is rebuilt from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seedlist {
    /// At most srvMaxHosts of the SRV hosts, chosen at random.
    pub hosts: Vec<ServerAddress>,
    /// The TXT record's strings, concatenated; `None` when there is none.
    pub txt: Option<String>,
    /// The lowest TTL of the SRV answer, for the first rescan.
    pub min_ttl: Duration,
}

impl Resolver {
    /// A resolver that asks `server` (UDP, then TCP for long answers) or, without one,
    /// the servers of the system configuration (/etc/resolv.conf).
    pub fn new(server: Option<SocketAddr>) -> Result<Self, String> {
        let builder = match server {
            Some(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    Default::default(),
                )
                .with_options(ResolverOpts::default())
            }
            None => TokioResolver::builder_tokio()
                .map_err(|e| format!("cannot read the system DNS configuration (/etc/resolv.conf): {e}"))?,
        };
        let inner = builder
            .build()
            .map_err(|e| format!("cannot set up the DNS resolver: {e}"))?;
        Ok(Self { inner, server })
    }

    /// Every SRV record of `spec`, each target checked against the parent domain. A
    /// foreign target is refused here; the poller drops it instead (see [`srv_lenient`]).
    pub async fn srv(
        &self,
        spec: &SrvSpec,
    ) -> Result<Vec<(SrvRecord, Result<(), ForeignHost>)>, LookupError> {
        let name = spec.srv_name();
        let lookup = self
            .inner
            .srv_lookup(fqdn(&name))
            .await
            .map_err(|e| failed("SRV", &name, &e))?;
        let records: Vec<_> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(srv) => {
                    let host = normalize(&srv.target.to_ascii());
                    let check = verify_host(&spec.hostname, &host);
                    let record = SrvRecord {
                        address: ServerAddress::new(host, srv.port),
                        ttl: Duration::from_secs(r.ttl.into()),
                    };
                    Some((record, check))
                }
                _ => None,
            })
            .collect();
        if records.is_empty() {
            return Err(LookupError::NoRecords { name });
        }
        Ok(records)
    }

    /// The TXT record of `name`, its strings joined; two or more records are an error.
    pub async fn txt(&self, name: &str) -> Result<Option<String>, LookupError> {
        let lookup = match self.inner.txt_lookup(fqdn(name)).await {
            Ok(lookup) => lookup,
            Err(e) if e.is_no_records_found() => return Ok(None),
            Err(e) => return Err(failed("TXT", name, &e)),
        };
        let texts: Vec<String> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|part| String::from_utf8_lossy(part))
                        .collect(),
                ),
                _ => None,
            })
            .collect();
        match texts.len() {
            0 => Ok(None),
            1 => Ok(texts.into_iter().next()),
            count => Err(LookupError::ManyTxt {
                name: name.to_owned(),
                count,
            }),
        }
    }

    /// The addresses of a member's host name, for connecting.
    pub async fn ip(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        let lookup = self
            .inner
            .lookup_ip(fqdn(host))
            .await
            .map_err(|e| std::io::Error::other(format!("DNS lookup of {host} failed: {e}")))?;
        Ok(lookup.iter().collect())
    }
}

/// The initial lookups (seedlist spec): SRV hosts, all in the parent domain or an error,
/// at most srvMaxHosts of them; and at most one TXT record.
pub async fn discover(resolver: &Resolver, spec: &SrvSpec) -> Result<Seedlist, LookupError> {
    let (srv, txt) = tokio::join!(resolver.srv(spec), resolver.txt(&spec.hostname));
    let mut hosts = Vec::new();
    let mut min_ttl = Duration::MAX;
    for (record, check) in srv? {
        check?;
        min_ttl = min_ttl.min(record.ttl);
        hosts.push(record.address);
    }
    Ok(Seedlist {
        hosts: choose_seeds(&hosts, spec.max_hosts, &mut rand::rng()),
        txt: txt?,
        min_ttl,
    })
}

/// A rescan's usable records and their lowest TTL (polling spec): foreign hosts are left
/// out with a log line, not an error; `Err` when nothing usable came back.
pub async fn srv_lenient(
    resolver: &Resolver,
    spec: &SrvSpec,
) -> Result<(Vec<ServerAddress>, Duration), LookupError> {
    let mut hosts = Vec::new();
    let mut min_ttl = Duration::MAX;
    for (record, check) in resolver.srv(spec).await? {
        match check {
            Ok(()) => {
                min_ttl = min_ttl.min(record.ttl);
                hosts.push(record.address);
            }
            Err(foreign) => tracing::warn!(error = %foreign, "SRV rescan: host left out"),
        }
    }
    if hosts.is_empty() {
        return Err(LookupError::NoRecords {
            name: spec.srv_name(),
        });
    }
    Ok((hosts, min_ttl))
}

/// A name with its final dot, so that no search domain of resolv.conf is tried.
fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

fn failed(kind: &'static str, name: &str, e: &NetError) -> LookupError {
    if e.is_no_records_found() {
        return LookupError::NoRecords {
            name: name.to_owned(),
        };
    }
    LookupError::Failed {
        kind,
        name: name.to_owned(),
        why: e.to_string(),
    }
}
