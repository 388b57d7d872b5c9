//! The upstream's TLS settings, from the URI's `tls*` options (built once at start-up:
//! the CA and key files are read here, and a bad one stops start-up naming it).

use super::uri::UriOptions;
use crate::upstream::tls::{TlsOptions, TlsSettings};

/// `None` when TLS is off (`enabled`: `tls`/`ssl`, else on for `mongodb+srv`); an option
/// that needs TLS without it is an error, not a silent plaintext connection.
pub fn resolve(o: &UriOptions, enabled: bool) -> Result<Option<TlsSettings>, String> {
    let needs_tls = [
        ("tlsCAFile", o.tls_ca_file.is_some()),
        ("tlsCertificateKeyFile", o.tls_certificate_key_file.is_some()),
        (
            "tlsAllowInvalidCertificates",
            o.tls_allow_invalid_certificates.is_some(),
        ),
        (
            "tlsAllowInvalidHostnames",
            o.tls_allow_invalid_hostnames.is_some(),
        ),
        ("tlsInsecure", o.tls_insecure.is_some()),
    ];
    if !enabled {
        return match needs_tls.iter().find(|(_, given)| *given) {
            Some((name, _)) => Err(format!("{name} is set but TLS is off: add tls=true")),
            None => Ok(None),
        };
    }
    let insecure = o.tls_insecure == Some(true);
    TlsSettings::new(TlsOptions {
        ca_file: o.tls_ca_file.clone(),
        certificate_key_file: o.tls_certificate_key_file.clone(),
        allow_invalid_certificates: insecure || o.tls_allow_invalid_certificates == Some(true),
        allow_invalid_hostnames: insecure || o.tls_allow_invalid_hostnames == Some(true),
    })
    .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::uri::ConnectionString;

    fn tls(uri: &str) -> Result<Option<TlsOptions>, String> {
        let cs = ConnectionString::parse(uri).unwrap();
        resolve(&cs.options, cs.tls_enabled()).map(|t| t.map(|t| t.options))
    }

    #[test]
    fn tls_options_need_tls_and_files_are_read_at_start() {
        assert_eq!(tls("mongodb://h/").unwrap(), None);
        assert_eq!(tls("mongodb://h/?tls=false").unwrap(), None);
        let e = tls("mongodb://h/?tlsCAFile=/x.pem").unwrap_err();
        assert!(e.contains("tlsCAFile") && e.contains("tls=true"), "{e}");
        let o = tls("mongodb://h/?tls=true").unwrap().unwrap();
        assert!(!o.allow_invalid_certificates && !o.allow_invalid_hostnames);
        let o = tls("mongodb://h/?tls=true&tlsInsecure=true").unwrap().unwrap();
        assert!(o.allow_invalid_certificates && o.allow_invalid_hostnames);
        let o = tls("mongodb://h/?ssl=true&tlsAllowInvalidHostnames=true")
            .unwrap()
            .unwrap();
        assert!(!o.allow_invalid_certificates && o.allow_invalid_hostnames);
        // mongodb+srv turns TLS on unless tls=false says otherwise (seedlist spec).
        assert!(tls("mongodb+srv://c.example.com/").unwrap().is_some());
        assert_eq!(tls("mongodb+srv://c.example.com/?tls=false").unwrap(), None);
        let e = tls("mongodb://h/?tls=true&tlsCAFile=/nonexistent/ca.pem").unwrap_err();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}
