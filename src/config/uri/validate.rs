//! Rules that span several options or the host list (URI Options, Initial
//! DNS Seedlist Discovery, Load Balancer, SOCKS5, Max Staleness and Read/Write
//! Concern specs). Pure: it looks only at the parsed value, so it can run
//! again after SRV/TXT resolution replaces hosts or adds options.

use super::error::UriError;
use super::options::{Acknowledgment, ReadPreferenceMode, UriOptions};
use super::{ConnectionString, Host};

/// Pairs of TLS options that must not appear together (URI Options spec,
/// "Conflicting TLS options"), whatever their values.
const TLS_CONFLICTS: &[(&str, &str)] = &[
    ("tlsInsecure", "tlsAllowInvalidCertificates"),
    ("tlsInsecure", "tlsAllowInvalidHostnames"),
    ("tlsInsecure", "tlsDisableOCSPEndpointCheck"),
    ("tlsInsecure", "tlsDisableCertificateRevocationCheck"),
    ("tlsAllowInvalidCertificates", "tlsDisableOCSPEndpointCheck"),
    (
        "tlsAllowInvalidCertificates",
        "tlsDisableCertificateRevocationCheck",
    ),
    (
        "tlsDisableOCSPEndpointCheck",
        "tlsDisableCertificateRevocationCheck",
    ),
];

const MAX_APP_NAME_BYTES: usize = 128;

pub(super) fn validate(cs: &ConnectionString) -> Result<(), UriError> {
    check_hosts(cs)?;
    let o = &cs.options;
    check_tls(o)?;
    check_proxy(o)?;
    check_read_write(o)?;
    if let (Some(min), Some(max)) = (o.min_pool_size, o.max_pool_size) {
        if max != 0 && min > max {
            return Err(UriError::MinPoolSizeExceedsMax { min, max });
        }
    }
    if let Some(len) = o.app_name.as_ref().map(String::len) {
        if len > MAX_APP_NAME_BYTES {
            return Err(UriError::AppNameTooLong { len });
        }
    }
    if o.auth_source.as_deref() == Some("") {
        return Err(UriError::EmptyAuthSource);
    }
    Ok(())
}

fn check_hosts(cs: &ConnectionString) -> Result<(), UriError> {
    let o = &cs.options;
    let count = cs.hosts.len();
    if count == 0 {
        return Err(UriError::MissingHost { hint: "" });
    }
    if cs.is_srv {
        // The single-name rule is syntactic (checked by `parse`): after SRV
        // resolution the list holds the resolved hosts.
        if let Some(Host::Unix(path)) = cs.hosts.first() {
            return Err(UriError::SrvNotHostname {
                host: path.display().to_string(),
                kind: "a UNIX socket",
            });
        }
        if o.direct_connection == Some(true) {
            return Err(UriError::DirectConnectionSrv);
        }
    } else if o.srv_service_name.is_some() {
        return Err(UriError::SrvOnlyOption {
            option: "srvServiceName",
        });
    } else if o.srv_max_hosts.is_some() {
        return Err(UriError::SrvOnlyOption {
            option: "srvMaxHosts",
        });
    }
    if let Some(max) = o.srv_max_hosts.filter(|&m| m > 0) {
        if o.replica_set.is_some() {
            return Err(UriError::SrvMaxHostsConflict {
                max,
                other: "replicaSet",
            });
        }
        if o.load_balanced == Some(true) {
            return Err(UriError::SrvMaxHostsConflict {
                max,
                other: "loadBalanced=true",
            });
        }
    }
    if o.direct_connection == Some(true) && count > 1 {
        return Err(UriError::DirectConnectionMultipleHosts { count });
    }
    if o.load_balanced == Some(true) {
        // For mongodb+srv this catches several hosts once resolved.
        let other = if count > 1 {
            Some("multiple hosts")
        } else if o.replica_set.is_some() {
            Some("replicaSet")
        } else if o.direct_connection == Some(true) {
            Some("directConnection=true")
        } else {
            None
        };
        if let Some(other) = other {
            return Err(UriError::LoadBalancedConflict { other });
        }
    }
    Ok(())
}

fn check_tls(o: &UriOptions) -> Result<(), UriError> {
    let present = |name: &str| match name {
        "tlsInsecure" => o.tls_insecure.is_some(),
        "tlsAllowInvalidCertificates" => o.tls_allow_invalid_certificates.is_some(),
        "tlsAllowInvalidHostnames" => o.tls_allow_invalid_hostnames.is_some(),
        "tlsDisableOCSPEndpointCheck" => o.tls_disable_ocsp_endpoint_check.is_some(),
        "tlsDisableCertificateRevocationCheck" => o.tls_disable_certificate_revocation_check.is_some(),
        _ => false,
    };
    match TLS_CONFLICTS
        .iter()
        .find(|(first, second)| present(first) && present(second))
    {
        Some(&(first, second)) => Err(UriError::TlsConflict { first, second }),
        None => Ok(()),
    }
}

fn check_proxy(o: &UriOptions) -> Result<(), UriError> {
    if o.proxy_host.is_none() {
        let given = [
            ("proxyPort", o.proxy_port.is_some()),
            ("proxyUsername", o.proxy_username.is_some()),
            ("proxyPassword", o.proxy_password.is_some()),
        ];
        if let Some(&(option, _)) = given.iter().find(|(_, set)| *set) {
            return Err(UriError::ProxyOptionWithoutHost { option });
        }
    }
    match (o.proxy_username.is_some(), o.proxy_password.is_some()) {
        (true, false) => Err(UriError::ProxyCredentialIncomplete {
            given: "proxyUsername",
            missing: "proxyPassword",
        }),
        (false, true) => Err(UriError::ProxyCredentialIncomplete {
            given: "proxyPassword",
            missing: "proxyUsername",
        }),
        _ => Ok(()),
    }
}

fn check_read_write(o: &UriOptions) -> Result<(), UriError> {
    let primary = o.read_preference.unwrap_or(ReadPreferenceMode::Primary) == ReadPreferenceMode::Primary;
    if primary {
        if let Some(staleness) = o.max_staleness {
            return Err(UriError::MaxStalenessWithPrimary {
                seconds: staleness.as_secs(),
            });
        }
        // An empty tag set matches every server, so it adds no constraint.
        if o.read_preference_tags.iter().any(|tags| !tags.is_empty()) {
            return Err(UriError::TagsWithPrimary);
        }
    }
    if o.w == Some(Acknowledgment::Nodes(0)) && o.journal == Some(true) {
        return Err(UriError::UnacknowledgedJournal);
    }
    Ok(())
}
