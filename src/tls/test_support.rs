//! Test-only helpers: a throwaway CA and leaf certificates generated with rcgen, written
//! into a temporary directory (no key material is ever committed).

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
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

pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
    pub cert_pem: String,
}

pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Leaf {
    /// Writes `<stem>.pem` and `<stem>.key`.
    pub fn write(&self, dir: &TempDir, stem: &str) {
        dir.write(&format!("{stem}.pem"), &self.cert_pem);
        dir.write(&format!("{stem}.key"), &self.key_pem);
    }
}

impl Ca {
    pub fn new() -> Self {
        let key = KeyPair::generate().expect("ca key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Portico Test CA");
        let cert = params.self_signed(&key).expect("ca cert");
        let cert_pem = cert.pem();
        Self {
            cert,
            key,
            cert_pem,
        }
    }

    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, |_| {})
    }

    pub fn leaf_with(&self, names: &[&str], tweak: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        tweak(&mut params);
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("leaf cert");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    pub fn root_store(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.cert.der().to_vec()))
            .expect("add ca");
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
