//! A test PKI made by rcgen: a CA, and server or client certificates it signs, as PEM
//! files in a temp dir (for SecantusDB's `--tls-*` flags and the proxy's `tls*` options).

#![allow(dead_code)]

use std::net::IpAddr;
use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};

use super::peers::unique_temp_dir;

/// A CA and PEM files signed by it, in a temp dir.
pub struct Pki {
    dir: PathBuf,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    pub fn new() -> Self {
        let dir = unique_temp_dir("pki");
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "mongoplex test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Self { dir, ca, ca_key }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `NAME.pem` (certificate) and `NAME.key`, plus `NAME-both.pem` (both, as
    /// tlsCertificateKeyFile wants), for `names` (DNS names; "127.0.0.1" as an IP SAN).
    pub fn issue(&self, name: &str, names: &[&str], expired: bool) -> (PathBuf, PathBuf, PathBuf) {
        let dns: Vec<String> = names
            .iter()
            .filter(|n| n.parse::<IpAddr>().is_err())
            .map(|n| n.to_string())
            .collect();
        let mut params = CertificateParams::new(dns).unwrap();
        for ip in names.iter().filter_map(|n| n.parse::<IpAddr>().ok()) {
            params.subject_alt_names.push(SanType::IpAddress(ip));
        }
        params.distinguished_name.push(DnType::CommonName, name);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let (c, k, both) = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
            self.dir.join(format!("{name}-both.pem")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        std::fs::write(&both, format!("{}{}", cert.pem(), key.serialize_pem())).unwrap();
        (c, k, both)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
