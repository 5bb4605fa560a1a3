//! OCSP stapling: for each served certificate whose leaf names an OCSP responder (AIA) and
//! whose issuer is in the served chain, fetch a response, check it, staple it, and refresh
//! it halfway to `nextUpdate`. A responder that is down never breaks a handshake: the
//! certificate is served without a staple (or with the previous one while it is still
//! valid), the failure is logged, and fetching is retried with back-off.

mod message;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::{GeneralName, ParsedExtension};

pub use message::{check_response, CertId, GoodResponse, OcspError};

use super::{CertSlot, LoadedCertificate};

/// How often the task looks at its slot (a swapped certificate gets a staple this soon).
const TICK: Duration = Duration::from_secs(2);
/// Responses without `nextUpdate` are refreshed this often.
const NO_NEXT_UPDATE_REFRESH: Duration = Duration::from_secs(3600);
/// Refreshes never come closer together than this, whatever the responder says.
const MIN_REFRESH: Duration = Duration::from_secs(10);
/// Retry back-off after a failed fetch: from the first to the last, doubling, with jitter.
const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(600);
/// A responder gets this long to answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// What to ask and whom, for one certificate.
struct Target {
    url: String,
    id: CertId,
    issuer_der: Vec<u8>,
}

/// The responder URL and CertID for `cert`, if its leaf has an OCSP URL and its issuer is in
/// the chain.
fn target(cert: &LoadedCertificate) -> Result<Target, &'static str> {
    let chain = &cert.key.cert;
    let (_, leaf) =
        x509_parser::parse_x509_certificate(chain[0].as_ref()).map_err(|_| "unparsable leaf")?;
    let mut url = None;
    for ext in leaf.extensions() {
        if let ParsedExtension::AuthorityInfoAccess(aia) = ext.parsed_extension() {
            for d in &aia.accessdescs {
                if d.access_method == x509_parser::oid_registry::OID_PKIX_ACCESS_DESCRIPTOR_OCSP {
                    if let GeneralName::URI(u) = d.access_location {
                        url = Some(u.to_string());
                    }
                }
            }
        }
    }
    let url = url.ok_or("no OCSP URL in the certificate")?;
    for der in chain.iter().skip(1) {
        let Ok((_, issuer)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
            continue;
        };
        if issuer.subject().as_raw() == leaf.issuer().as_raw() {
            return Ok(Target {
                url,
                id: CertId::new(&leaf, &issuer),
                issuer_der: der.to_vec(),
            });
        }
    }
    Err("the issuer certificate is not in the served chain (append it to the certificate file)")
}

/// Starts stapling for `slot` for as long as it lives. Fetches leave from `source` when set.
pub fn staple(slot: &Arc<CertSlot>, source: Option<IpAddr>) {
    let weak = Arc::downgrade(slot);
    tokio::spawn(async move {
        // (serial stapled, when to refresh, when the staple stops being valid)
        let mut stapled: Option<(String, SystemTime, Option<SystemTime>)> = None;
        let mut retry = RETRY_FIRST;
        let mut next_try = SystemTime::now();
        loop {
            let Some(slot) = weak.upgrade() else { return };
            let cur = slot.current();
            let now = SystemTime::now();
            let same_cert = stapled.as_ref().is_some_and(|(s, _, _)| *s == cur.serial);
            if !same_cert {
                stapled = None;
                next_try = now;
            }
            // A staple past its nextUpdate would make strict clients fail: drop it.
            if let Some((_, _, Some(valid_until))) = &stapled {
                if now > *valid_until && cur.key.ocsp.is_some() {
                    tracing::warn!(cert = %cur.cert_path.display(), "OCSP staple expired without a refresh; serving without one");
                    slot.store_if_current(&cur, with_ocsp(&cur, None));
                    slot.update_status(|s| s.ocsp_state = Some("expired; retrying".into()));
                    stapled = None;
                }
            }
            let due = match &stapled {
                Some((_, refresh_at, _)) => now >= *refresh_at && now >= next_try,
                None => now >= next_try,
            };
            if !due {
                drop((slot, cur));
                tokio::time::sleep(TICK).await;
                continue;
            }
            let target = match target(&cur) {
                Ok(t) => t,
                Err(why) => {
                    slot.update_status(|s| s.ocsp_state = Some(format!("not stapled: {why}")));
                    // Look again later: the certificate may be replaced by one that has OCSP.
                    next_try = now + Duration::from_secs(60);
                    stapled = Some((cur.serial.clone(), next_try, None));
                    continue;
                }
            };
            drop(slot);
            let result = fetch_and_check(&target, source).await;
            let Some(slot) = weak.upgrade() else { return };
            match result {
                Ok((der, good)) => {
                    let now = SystemTime::now();
                    let refresh_at = match good.next_update {
                        Some(next) => {
                            let life = next.duration_since(good.this_update).unwrap_or_default();
                            (good.this_update + life / 2).max(now + MIN_REFRESH)
                        }
                        None => now + NO_NEXT_UPDATE_REFRESH,
                    };
                    slot.store_if_current(&cur, with_ocsp(&cur, Some(der)));
                    tracing::info!(
                        cert = %cur.cert_path.display(),
                        responder = %target.url,
                        refresh_in_secs = refresh_at.duration_since(now).unwrap_or_default().as_secs(),
                        "OCSP response stapled"
                    );
                    slot.update_status(|s| {
                        s.ocsp_state = Some("stapled (good)".into());
                        s.ocsp_next_update = good.next_update;
                    });
                    stapled = Some((cur.serial.clone(), refresh_at, good.next_update));
                    retry = RETRY_FIRST;
                    next_try = now;
                }
                Err(e) => {
                    let wait = jitter(retry);
                    tracing::warn!(
                        cert = %cur.cert_path.display(),
                        responder = %target.url,
                        error = %e,
                        retry_in_secs = wait.as_secs(),
                        "OCSP fetch failed; serving without a new staple"
                    );
                    slot.update_status(|s| s.ocsp_state = Some(format!("fetch failed: {e}")));
                    next_try = SystemTime::now() + wait;
                    retry = (retry * 2).min(RETRY_MAX);
                    if stapled.is_none() {
                        stapled = Some((cur.serial.clone(), next_try, None));
                    }
                }
            }
        }
    });
}

/// `cert` with `ocsp` as its staple.
fn with_ocsp(cert: &LoadedCertificate, ocsp: Option<Vec<u8>>) -> LoadedCertificate {
    let mut out = cert.clone();
    out.key = Arc::new(CertifiedKey {
        cert: cert.key.cert.clone(),
        key: cert.key.key.clone(),
        ocsp,
    });
    out
}

/// ±20 % so that many instances (or certificates) do not retry in lockstep.
pub(crate) fn jitter(d: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    let factor = 0.8 + f64::from(nanos % 1000) / 1000.0 * 0.4;
    d.mul_f64(factor)
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("{0}")]
    Url(String),
    #[error("cannot reach the responder: {0}")]
    Connect(std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("responder answered HTTP {0}")]
    Status(u16),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Ocsp(#[from] OcspError),
}

async fn fetch_and_check(
    target: &Target,
    source: Option<IpAddr>,
) -> Result<(Vec<u8>, GoodResponse), FetchError> {
    let der = tokio::time::timeout(
        FETCH_TIMEOUT,
        fetch(&target.url, target.id.request_der(), source),
    )
    .await
    .map_err(|_| FetchError::Timeout(FETCH_TIMEOUT))??;
    let (_, issuer) = x509_parser::parse_x509_certificate(&target.issuer_der)
        .map_err(|_| FetchError::Url("issuer unparsable".into()))?;
    let good = check_response(&der, &target.id, &issuer, SystemTime::now())?;
    Ok((der, good))
}

/// POSTs the request to an `http://` responder (OCSP is plain HTTP by design: the answer
/// is signed), leaving from `source` when set.
async fn fetch(url: &str, body: Vec<u8>, source: Option<IpAddr>) -> Result<Vec<u8>, FetchError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| FetchError::Url(format!("OCSP URL {url:?} is not a URL")))?;
    if uri.scheme_str() != Some("http") {
        return Err(FetchError::Url(format!("OCSP URL {url:?} is not http://")));
    }
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    let port = uri.port_u16().unwrap_or(80);
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(FetchError::Connect)?
        .find(|a| source.is_none_or(|s| s.is_ipv4() == a.is_ipv4()))
        .ok_or_else(|| FetchError::Url(format!("{host} has no address")))?;
    let stream = connect(addr, source).await.map_err(FetchError::Connect)?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or(host);
    let req = http::Request::post(path)
        .header(http::header::HOST, authority)
        .header(http::header::CONTENT_TYPE, "application/ocsp-request")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| FetchError::Url(e.to_string()))?;
    let resp = sender.send_request(req).await?;
    if !resp.status().is_success() {
        return Err(FetchError::Status(resp.status().as_u16()));
    }
    // OCSP responses are a few KiB; a limit keeps a hostile responder from filling memory.
    let body = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
        .collect()
        .await
        .map_err(|e| FetchError::Url(format!("reading the response: {e}")))?;
    Ok(body.to_bytes().to_vec())
}

async fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
) -> std::io::Result<tokio::net::TcpStream> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    sock.connect(addr).await
}
