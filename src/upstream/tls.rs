//! TLS to the upstream (rustls): the client configuration is built once, at start-up,
//! from the URI's `tls*` options, and shared by every connection, pooled or monitoring,
//! so no connection re-reads a certificate. SNI is the member's host name.
//!
//! Roots are the Mozilla set (webpki-roots) plus the system store, so an Atlas
//! certificate verifies out of the box; `tlsCAFile` replaces both.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The URI's TLS options, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    pub ca_file: Option<PathBuf>,
    pub certificate_key_file: Option<PathBuf>,
    pub allow_invalid_certificates: bool,
    pub allow_invalid_hostnames: bool,
}

/// A ready client configuration.
#[derive(Clone)]
pub struct TlsSettings {
    connector: TlsConnector,
    /// For logs and `/status`: what was relaxed.
    pub options: TlsOptions,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("options", &self.options)
            .finish()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsSettings {
    /// Reads the CA and key files and builds the configuration; every failure names
    /// the file and the cause.
    pub fn new(options: TlsOptions) -> Result<Self, String> {
        let provider = provider();
        let roots = Arc::new(match &options.ca_file {
            Some(path) => ca_file(path)?,
            None => default_roots(),
        });
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| format!("TLS: {e}"))?;
        let verifier = Arc::new(Verifier {
            webpki,
            provider,
            allow_invalid_certificates: options.allow_invalid_certificates,
            allow_invalid_hostnames: options.allow_invalid_hostnames,
        });
        let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
        let config = match &options.certificate_key_file {
            Some(path) => {
                let (certs, key) = certificate_key_file(path)?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| format!("tlsCertificateKeyFile {}: {e}", path.display()))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            options,
        })
    }

    /// The TLS handshake over `tcp`, with `host` as SNI and the name to verify.
    pub async fn connect(&self, host: &str, tcp: TcpStream) -> Result<TlsStream<TcpStream>, String> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| format!("{host:?} is not a valid TLS server name: {e}"))?;
        self.connector.connect(name, tcp).await.map_err(|e| describe(&e))
    }
}

/// A handshake error in words a user can act on.
fn describe(e: &std::io::Error) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(c)) => match c {
            CertificateError::UnknownIssuer => {
                "TLS: the server's certificate is not signed by a trusted CA (set tlsCAFile to the CA that signed it)"
                    .into()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => format!(
                "TLS: the server's certificate does not name this host ({c:?}); \
                 fix the certificate or the host, or set tlsAllowInvalidHostnames=true"
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("TLS: the server's certificate has expired ({c:?})")
            }
            other => format!("TLS: the server's certificate is not valid: {other:?}"),
        },
        Some(rustls::Error::InvalidMessage(_)) | Some(rustls::Error::InappropriateMessage { .. }) => {
            format!("TLS: the server did not answer in TLS (is it a plaintext server? tls=true was set): {e}")
        }
        Some(other) => format!("TLS: {other}"),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "TLS: the server closed the connection during the handshake (plaintext server, or it requires a client certificate: tlsCertificateKeyFile)".into()
        }
        None => format!("TLS: {e}"),
    }
}

fn default_roots() -> RootCertStore {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system certificate rustls cannot parse is skipped, as the drivers do.
        let _ = roots.add(cert);
    }
    roots
}

fn ca_file(path: &Path) -> Result<RootCertStore, String> {
    let what = |e: &dyn std::fmt::Display| format!("tlsCAFile {}: {e}", path.display());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| what(&e))? {
        roots.add(cert.map_err(|e| what(&e))?).map_err(|e| what(&e))?;
    }
    if roots.is_empty() {
        return Err(what(&"no certificate in the file"));
    }
    Ok(roots)
}

fn certificate_key_file(
    path: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let what = |e: &dyn std::fmt::Display| format!("tlsCertificateKeyFile {}: {e}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| what(&e))?;
    if text.contains("ENCRYPTED") {
        return Err(what(
            &"the private key is encrypted; mongoplex refuses encrypted keys \
              (tlsCertificateKeyFilePassword): decrypt it, e.g. openssl pkey -in key.pem -out plain.pem",
        ));
    }
    let certs = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| what(&e))?;
    if certs.is_empty() {
        return Err(what(&"no certificate in the file"));
    }
    let key =
        PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| what(&format!("no private key: {e}")))?;
    Ok((certs, key))
}

/// WebPKI verification, with the two relaxations the URI options allow.
#[derive(Debug)]
struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
    allow_invalid_certificates: bool,
    allow_invalid_hostnames: bool,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.allow_invalid_certificates {
            return Ok(ServerCertVerified::assertion());
        }
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.allow_invalid_hostnames => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
