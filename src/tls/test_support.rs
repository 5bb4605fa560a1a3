//! Test-only helpers: a throwaway CA and leaf certificates generated with rcgen, written
//! into a temporary directory (no key material is ever committed).

use std::path::PathBuf;
use std::sync::Arc;

use crate::demo::pki::{Issued, TestCa};
use rcgen::CertificateParams;
use rustls::pki_types::CertificateDer;

pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new() -> Self {
        Self(tempfile::tempdir().expect("create temp dir"))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, contents).expect("write temp file");
        p
    }
}

/// The demo's CA (`demo::pki::TestCa`): the one test CA of the crate, with helpers for the
/// TLS unit tests.
pub struct Ca {
    inner: TestCa,
    pub cert_pem: String,
}

/// A leaf certificate: `demo::pki::Issued`.
pub type Leaf = Issued;

/// Writes `<stem>.pem` and `<stem>.key` into a test directory.
pub trait WriteTo {
    fn write_to(&self, dir: &TempDir, stem: &str);
}

impl WriteTo for Leaf {
    fn write_to(&self, dir: &TempDir, stem: &str) {
        dir.write(&format!("{stem}.pem"), &self.cert_pem);
        dir.write(&format!("{stem}.key"), &self.key_pem);
    }
}

impl Ca {
    pub fn new() -> Self {
        let inner = TestCa::new("Portico Test CA").expect("test CA");
        let cert_pem = inner.cert_pem();
        Self { inner, cert_pem }
    }

    /// The CA certificate in DER.
    pub fn der(&self) -> Vec<u8> {
        self.inner.cert_der().to_vec()
    }

    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, |_| {})
    }

    pub fn leaf_with(&self, names: &[&str], tweak: impl FnOnce(&mut CertificateParams)) -> Leaf {
        self.inner.issue_with(names, tweak).expect("leaf cert")
    }

    pub fn root_store(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(self.der())).expect("add ca");
        roots
    }

    /// A client config trusting only this CA, offering `alpn`, limited to `versions`.
    pub fn client(
        &self,
        alpn: &[&[u8]],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut cfg = rustls::ClientConfig::builder_with_provider(super::provider())
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(self.root_store())
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }
}
