//! One ACME order, start to finish: account (stored or created, with EAB if configured),
//! new order for all names, challenges answered, CSR, certificate downloaded and stored.

use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, ExternalAccountKey,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};

use super::storage::{write_atomic, Storage};
use super::{AcmeConfig, Challenge, KeyType};
use crate::tls::{challenges, LoadedCertificate};

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("ACME: {0}")]
    Acme(#[from] instant_acme::Error),
    #[error("the CA offers no {challenge} challenge for {name}")]
    NoChallenge {
        challenge: &'static str,
        name: String,
    },
    #[error("authorization for {name} ended {status}")]
    Authorization { name: String, status: String },
    #[error("order ended {0} instead of ready (a challenge failed validation)")]
    NotReady(String),
    #[error("cannot make the key or CSR: {0}")]
    Key(String),
    #[error("storage {path}: {source}")]
    Storage {
        path: String,
        source: std::io::Error,
    },
    #[error("the CA's certificate is unusable: {0}")]
    Certificate(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Challenge answers to withdraw whatever way the order ends.
#[derive(Default)]
struct Published {
    http: Vec<String>,
    tls_alpn: Vec<String>,
}

impl Published {
    fn withdraw(&self, storage: &Storage) {
        for t in &self.http {
            challenges::remove_http01(t);
            storage.unpublish_http01(t);
        }
        for n in &self.tls_alpn {
            challenges::remove_tls_alpn(n);
        }
    }
}

/// Orders a certificate for `cfg.names`, stores it and returns it loaded.
pub async fn obtain(cfg: &AcmeConfig, storage: &Storage) -> Result<LoadedCertificate, OrderError> {
    let account = account(cfg, storage).await?;
    let ids: Vec<Identifier> = cfg
        .names
        .iter()
        .map(|n| Identifier::Dns(n.clone()))
        .collect();
    let mut order = account.new_order(&NewOrder::new(&ids)).await?;
    let mut published = Published::default();
    let result = answer_and_finalize(cfg, &mut order, &mut published, storage).await;
    published.withdraw(storage);
    let (chain_pem, key_pem) = result?;
    storage
        .write_certificate(&chain_pem, &key_pem)
        .map_err(|source| OrderError::Storage {
            path: storage.dir().display().to_string(),
            source,
        })?;
    crate::tls::load_certificate(&storage.spec())
        .map_err(|e| OrderError::Certificate(e.to_string()))
}

async fn answer_and_finalize(
    cfg: &AcmeConfig,
    order: &mut instant_acme::Order,
    published: &mut Published,
    storage: &Storage,
) -> Result<(String, String), OrderError> {
    let (kind, label) = match cfg.challenge {
        Challenge::Http01 => (ChallengeType::Http01, "http-01"),
        Challenge::TlsAlpn01 => (ChallengeType::TlsAlpn01, "tls-alpn-01"),
    };
    let mut auths = order.authorizations();
    while let Some(auth) = auths.next().await {
        let mut auth = auth?;
        match auth.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => {
                return Err(OrderError::Authorization {
                    name: auth.identifier().to_string(),
                    status: format!("{other:?}"),
                })
            }
        }
        let name = auth.identifier().to_string();
        let mut ch = auth
            .challenge(kind.clone())
            .ok_or(OrderError::NoChallenge {
                challenge: label,
                name: name.clone(),
            })?;
        let ka = ch.key_authorization();
        match cfg.challenge {
            Challenge::Http01 => {
                challenges::add_http01(&ch.token, ka.as_str());
                published.http.push(ch.token.clone());
                storage
                    .publish_http01(&ch.token, ka.as_str())
                    .map_err(|source| OrderError::Storage {
                        path: storage.dir().display().to_string(),
                        source,
                    })?;
            }
            Challenge::TlsAlpn01 => {
                challenges::add_tls_alpn(&name, tls_alpn_cert(&name, ka.digest().as_ref())?);
                published.tls_alpn.push(name.clone());
            }
        }
        ch.set_ready().await?;
    }
    let poll = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .timeout(Duration::from_secs(120));
    let status = order.poll_ready(&poll).await?;
    if status != OrderStatus::Ready {
        return Err(OrderError::NotReady(format!("{status:?}")));
    }
    let (key, key_pem) = certificate_key(cfg.key_type)?;
    let params = rcgen::CertificateParams::new(cfg.names.clone())
        .map_err(|e| OrderError::Key(e.to_string()))?;
    let csr = params
        .serialize_request(&key)
        .map_err(|e| OrderError::Key(e.to_string()))?;
    order.finalize_csr(csr.der()).await?;
    let chain = order.poll_certificate(&poll).await?;
    Ok((chain, key_pem))
}

/// The stored account, or a new one (stored before use, so a crash never orphans it).
async fn account(cfg: &AcmeConfig, storage: &Storage) -> Result<Account, OrderError> {
    let builder = || match &cfg.directory_ca {
        Some(ca) => Account::builder_with_root(ca),
        None => Account::builder(),
    };
    let path = storage.account_path();
    if let Ok(json) = std::fs::read(&path) {
        if let Ok(creds) = serde_json::from_slice::<AccountCredentials>(&json) {
            return Ok(builder()?.from_credentials(creds).await?);
        }
        tracing::warn!(file = %path.display(), "stored ACME account unreadable; creating a new one");
    }
    let contact: Vec<&str> = cfg.contact.iter().map(String::as_str).collect();
    let eab = cfg
        .eab
        .as_ref()
        .map(|e| ExternalAccountKey::new(e.kid.clone(), &e.hmac_key));
    let (account, creds) = builder()?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            cfg.directory.clone(),
            eab.as_ref(),
        )
        .await?;
    let json = serde_json::to_vec(&creds).map_err(|e| OrderError::Key(e.to_string()))?;
    write_atomic(&path, &json).map_err(|source| OrderError::Storage {
        path: path.display().to_string(),
        source,
    })?;
    tracing::info!(acme = %cfg.name, id = %account.id(), "ACME account created");
    Ok(account)
}

/// A fresh certificate key: ECDSA P-256 (rcgen/ring) or RSA 2048 (the `rsa` crate, since
/// ring cannot generate RSA keys; rcgen signs the CSR with it through ring).
fn certificate_key(kind: KeyType) -> Result<(rcgen::KeyPair, String), OrderError> {
    let key_err = |e: String| OrderError::Key(e);
    let key = match kind {
        KeyType::EcdsaP256 => rcgen::KeyPair::generate().map_err(|e| key_err(e.to_string()))?,
        KeyType::Rsa2048 => {
            use rsa::pkcs8::EncodePrivateKey;
            let rsa = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048)
                .map_err(|e| key_err(e.to_string()))?;
            let der = rsa.to_pkcs8_der().map_err(|e| key_err(e.to_string()))?;
            rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
                &rustls::pki_types::PrivatePkcs8KeyDer::from(der.as_bytes().to_vec()),
                &rcgen::PKCS_RSA_SHA256,
            )
            .map_err(|e| key_err(e.to_string()))?
        }
    };
    let pem = key.serialize_pem();
    Ok((key, pem))
}

/// The RFC 8737 validation certificate: self-signed for `name`, with the critical
/// acmeIdentifier extension holding SHA-256 of the key authorization.
fn tls_alpn_cert(
    name: &str,
    digest: &[u8],
) -> Result<std::sync::Arc<rustls::sign::CertifiedKey>, OrderError> {
    let key = rcgen::KeyPair::generate().map_err(|e| OrderError::Key(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()])
        .map_err(|e| OrderError::Key(e.to_string()))?;
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest));
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + Duration::from_secs(86_400)).into();
    let cert = params
        .self_signed(&key)
        .map_err(|e| OrderError::Key(e.to_string()))?;
    let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signer = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| OrderError::Key(e.to_string()))?;
    Ok(std::sync::Arc::new(rustls::sign::CertifiedKey::new(
        vec![cert.der().clone()],
        signer,
    )))
}
