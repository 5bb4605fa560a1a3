//! `[[acme]]` entries: validated into `acme::AcmeConfig`, found by name from listener
//! certificates `{ acme = "NAME" }`. No network here: `portico validate` compiles too.

use super::*;
use crate::acme::{AcmeConfig, Challenge, Eab, KeyType};

impl Compiler<'_> {
    pub(super) fn acme_entries(&mut self, entries: &[S<file::Acme>]) {
        let mut storages: HashSet<PathBuf> = HashSet::new();
        for (i, se) in entries.iter().enumerate() {
            let e = se.get_ref();
            let key = format!("acme[{i}]");
            let name = e.name.get_ref().trim().to_string();
            if name.is_empty() {
                self.d.at(
                    e.name.span(),
                    format!("{key}.name"),
                    "is empty; give the name listeners refer to, e.g. name = \"public\"",
                );
                continue;
            }
            if self.acme.contains_key(&name) {
                self.d.at(
                    e.name.span(),
                    format!("{key}.name"),
                    format!("{name:?} is used by an earlier [[acme]] entry too"),
                );
                continue;
            }
            let directory = e.directory.get_ref().trim().to_string();
            if !directory.starts_with("https://") {
                self.d.at(e.directory.span(), format!("{key}.directory"), format!("{directory:?} is not an https:// URL (expected the CA's directory, e.g. \"https://acme-v02.api.letsencrypt.org/directory\")"));
            }
            let mut contact = Vec::new();
            for c in &e.contact {
                let v = c.get_ref().trim();
                if !v.starts_with("mailto:") {
                    self.d.at(c.span(), format!("{key}.contact"), format!("{v:?} is not a mailto: URL (expected e.g. \"mailto:admin@contoso.com\")"));
                }
                contact.push(v.to_string());
            }
            let mut names = Vec::new();
            for n in e.names.get_ref() {
                let v = n
                    .get_ref()
                    .trim()
                    .trim_end_matches('.')
                    .to_ascii_lowercase();
                let valid = !v.is_empty()
                    && v.split('.').count() >= 2
                    && v.split('.').enumerate().all(|(j, l)| {
                        (j == 0 && l == "*")
                            || (!l.is_empty()
                                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
                    });
                if !valid {
                    self.d.at(
                        n.span(),
                        format!("{key}.names"),
                        format!("{v:?} is not a DNS name (expected e.g. \"meet.contoso.com\")"),
                    );
                } else if !names.contains(&v) {
                    names.push(v);
                }
            }
            if e.names.get_ref().is_empty() {
                self.d.at(e.names.span(), format!("{key}.names"), "lists no name; give the names the certificate must cover, e.g. [\"meet.contoso.com\", \"dialin.contoso.com\"]");
            }
            let challenge = match e
                .challenge
                .as_ref()
                .map(|c| c.get_ref().to_ascii_lowercase())
            {
                None => Challenge::Http01,
                Some(c) if c == "http-01" => Challenge::Http01,
                Some(c) if c == "tls-alpn-01" => Challenge::TlsAlpn01,
                Some(other) => {
                    let sp = e.challenge.as_ref().map(|c| c.span()).unwrap_or_default();
                    self.d.at(sp, format!("{key}.challenge"), format!("unknown challenge {other:?}; accepted: \"http-01\" (default), \"tls-alpn-01\""));
                    Challenge::Http01
                }
            };
            if challenge == Challenge::TlsAlpn01 && names.iter().any(|n| n.starts_with("*.")) {
                self.d.at(e.names.span(), format!("{key}.names"), "wildcard names need dns-01, which Portico does not do; list the host names instead");
            }
            let key_type = match e
                .key_type
                .as_ref()
                .map(|c| c.get_ref().to_ascii_lowercase())
            {
                None => KeyType::EcdsaP256,
                Some(k) if k == "ecdsa-p256" => KeyType::EcdsaP256,
                Some(k) if k == "rsa-2048" => KeyType::Rsa2048,
                Some(other) => {
                    let sp = e.key_type.as_ref().map(|c| c.span()).unwrap_or_default();
                    self.d.at(sp, format!("{key}.key_type"), format!("unknown key type {other:?}; accepted: \"ecdsa-p256\" (default), \"rsa-2048\""));
                    KeyType::EcdsaP256
                }
            };
            let storage = self.path(e.storage.get_ref());
            if !storages.insert(storage.clone()) {
                self.d.at(e.storage.span(), format!("{key}.storage"), format!("{} is the storage of an earlier [[acme]] entry too; give each its own directory", storage.display()));
            }
            let directory_ca = e.directory_ca.as_ref().map(|c| {
                let p = self.path(c.get_ref());
                if !p.is_file() {
                    self.d.at(c.span(), format!("{key}.directory_ca"), format!("{} does not exist or is not a file (expected a PEM CA certificate trusted for the ACME server's TLS)", p.display()));
                }
                p
            });
            let eab = e.eab.as_ref().and_then(|x| {
                let x = x.get_ref();
                match base64url(x.hmac_key.get_ref().trim()) {
                    Some(hmac_key) if !hmac_key.is_empty() => Some(Eab {
                        kid: x.kid.get_ref().clone(),
                        hmac_key,
                    }),
                    _ => {
                        self.d.at(
                            x.hmac_key.span(),
                            format!("{key}.eab.hmac_key"),
                            "is not base64url (expected the HMAC key exactly as the CA gave it)",
                        );
                        None
                    }
                }
            });
            let cfg = AcmeConfig {
                name: name.clone(),
                directory,
                contact,
                names,
                challenge,
                storage,
                directory_ca,
                key_type,
                eab,
                lock_stale: self.duration(
                    &e.lock_stale,
                    &format!("{key}.lock_stale"),
                    Duration::from_secs(600),
                ),
                retry_first: self.duration(
                    &e.retry_first,
                    &format!("{key}.retry_first"),
                    Duration::from_secs(60),
                ),
                retry_max: self.duration(
                    &e.retry_max,
                    &format!("{key}.retry_max"),
                    Duration::from_secs(6 * 3600),
                ),
            };
            self.acme.insert(name, Arc::new(cfg));
        }
    }

    /// The slot for a listener certificate `{ acme = "NAME" }`.
    pub(super) fn acme_certificate(
        &mut self,
        name: &S<String>,
        key: &str,
    ) -> Option<Arc<tls::CertSlot>> {
        match self.acme.get(name.get_ref().trim()) {
            Some(cfg) => Some(crate::acme::slot_for(cfg)),
            None => {
                let mut known: Vec<&str> = self.acme.keys().map(String::as_str).collect();
                known.sort();
                self.d.at(
                    name.span(),
                    format!("{key}.acme"),
                    format!(
                        "no [[acme]] entry is named {:?} (defined: {})",
                        name.get_ref(),
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
                None
            }
        }
    }
}

/// base64url with or without padding (also accepts standard base64 characters).
fn base64url(s: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    Some(out)
}
