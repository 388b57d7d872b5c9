//! TLS for clients (`tls_cert_file`, `tls_key_file`, and `tls_ca_file` to require client
//! certificates signed by that CA): the server configuration is built once at start-up,
//! so a bad file stops start-up naming it and no connection re-reads it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use super::{invalid, ConfigError, Settings};

/// The client listener's TLS.
#[derive(Clone)]
pub struct ClientTls {
    pub acceptor: TlsAcceptor,
    pub cert_file: PathBuf,
    /// Clients must present a certificate signed by this CA.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("cert_file", &self.cert_file)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

fn read(field: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| invalid(field, format!("cannot read {}: {e}", path.display())))
}

pub(super) fn resolve(s: &Settings) -> Result<Option<ClientTls>, ConfigError> {
    let (cert_file, key_file) = match (&s.tls_cert_file, &s.tls_key_file) {
        (None, None) => {
            return match &s.tls_ca_file {
                Some(_) => Err(invalid("tls_ca_file", "needs tls_cert_file and tls_key_file")),
                None => Ok(None),
            }
        }
        (Some(c), Some(k)) => (c, k),
        (Some(_), None) => return Err(invalid("tls_key_file", "tls_cert_file needs tls_key_file")),
        (None, Some(_)) => return Err(invalid("tls_cert_file", "tls_key_file needs tls_cert_file")),
    };
    let pem = read("tls_cert_file", cert_file)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("tls_cert_file", format!("{}: {e}", cert_file.display())))?;
    if certs.is_empty() {
        return Err(invalid(
            "tls_cert_file",
            format!("{}: no certificate", cert_file.display()),
        ));
    }
    let key_pem = read("tls_key_file", key_file)?;
    if key_pem.windows(9).any(|w| w == b"ENCRYPTED") {
        return Err(invalid(
            "tls_key_file",
            format!(
                "{}: the key is encrypted; decrypt it (openssl pkey -in key.pem -out plain.pem)",
                key_file.display()
            ),
        ));
    }
    // The error never quotes the file: it holds the key.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        invalid(
            "tls_key_file",
            format!("{}: no private key in PEM", key_file.display()),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("tls_cert_file", format!("TLS: {e}")))?;
    let builder = match &s.tls_ca_file {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&read("tls_ca_file", ca)?) {
                let cert = cert.map_err(|e| invalid("tls_ca_file", format!("{}: {e}", ca.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| invalid("tls_ca_file", format!("{}: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| invalid("tls_ca_file", format!("{}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        invalid(
            "tls_key_file",
            format!("{} does not fit {}: {e}", key_file.display(), cert_file.display()),
        )
    })?;
    Ok(Some(ClientTls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        cert_file: cert_file.clone(),
        ca_file: s.tls_ca_file.clone(),
    }))
}
