//! OCSP messages (RFC 6960): the request for one certificate, and the checks on the answer
//! that decide whether it may be stapled. Only the handful of fields stapling needs are
//! read, with a minimal DER reader; anything unexpected is an error, never a staple.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::certificate::X509Certificate;

/// Why a response is not stapled.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OcspError {
    /// The DER does not parse as an OCSP response; says which part.
    #[error("malformed OCSP response: {0}")]
    Malformed(&'static str),
    /// The responder answered with a non-successful responseStatus (the number).
    #[error("OCSP responder answered status {0} (0 = successful; 1 malformedRequest, 2 internalError, 3 tryLater, 5 sigRequired, 6 unauthorized)")]
    Status(u8),
    /// The response's CertID does not match the certificate asked about.
    #[error("OCSP response is not for this certificate")]
    WrongCertificate,
    /// The certificate is revoked: stapling that would tell clients to reject us.
    #[error("OCSP says the certificate is revoked")]
    Revoked,
    /// The responder does not know the certificate.
    #[error("OCSP responder does not know the certificate (status unknown)")]
    Unknown,
    /// Now is outside thisUpdate..nextUpdate: clients would reject the staple.
    #[error("OCSP response is outside its validity window (thisUpdate..nextUpdate)")]
    Stale,
    /// The signature does not verify with the issuer's key; says why.
    #[error("OCSP response signature does not verify with the issuer's key: {0}")]
    Signature(&'static str),
}

/// The CertID fields a response must echo back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertId {
    pub(crate) issuer_name_hash: Vec<u8>,
    pub(crate) issuer_key_hash: Vec<u8>,
    pub(crate) serial: Vec<u8>,
}

impl CertId {
    /// SHA-1 CertID (what every responder accepts) for `leaf` issued by `issuer`.
    pub fn new(leaf: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> CertId {
        let sha1 = |d: &[u8]| {
            ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, d)
                .as_ref()
                .to_vec()
        };
        CertId {
            issuer_name_hash: sha1(issuer.subject().as_raw()),
            issuer_key_hash: sha1(&issuer.public_key().subject_public_key.data),
            serial: leaf.raw_serial().to_vec(),
        }
    }

    /// The DER OCSPRequest for this certificate (no nonce: responses must stay cacheable).
    pub fn request_der(&self) -> Vec<u8> {
        // sha1, NULL parameters
        let alg = tlv(
            0x30,
            &[tlv(0x06, &[0x2b, 0x0e, 0x03, 0x02, 0x1a]), vec![0x05, 0x00]].concat(),
        );
        let cert_id = tlv(
            0x30,
            &[
                alg,
                tlv(0x04, &self.issuer_name_hash),
                tlv(0x04, &self.issuer_key_hash),
                tlv(0x02, &self.serial),
            ]
            .concat(),
        );
        let request = tlv(0x30, &cert_id);
        let request_list = tlv(0x30, &request);
        let tbs = tlv(0x30, &request_list);
        tlv(0x30, &tbs)
    }
}

/// What a good response says about time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoodResponse {
    pub(crate) this_update: SystemTime,
    /// None: the responder promises nothing; treated as valid for a short while.
    pub next_update: Option<SystemTime>,
}

/// Checks `der` is a successful, correctly signed (by the issuer) OCSP response saying
/// `id` is good at `now`.
pub fn check_response(
    der: &[u8],
    id: &CertId,
    issuer: &X509Certificate<'_>,
    now: SystemTime,
) -> Result<GoodResponse, OcspError> {
    let m = OcspError::Malformed;
    let (resp, _) = read(der, 0x30).ok_or(m("not a SEQUENCE"))?;
    let (status, rest) = read(resp, 0x0a).ok_or(m("no responseStatus"))?;
    match status {
        [0] => {}
        [s] => return Err(OcspError::Status(*s)),
        _ => return Err(m("bad responseStatus")),
    }
    let (bytes, _) = read(rest, 0xa0).ok_or(m("no responseBytes"))?;
    let (bytes, _) = read(bytes, 0x30).ok_or(m("bad responseBytes"))?;
    let (oid, rest) = read(bytes, 0x06).ok_or(m("no responseType"))?;
    // id-pkix-ocsp-basic 1.3.6.1.5.5.7.48.1.1
    if oid != [0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01] {
        return Err(m("not a basic OCSP response"));
    }
    let (basic, _) = read(rest, 0x04).ok_or(m("no response OCTET STRING"))?;
    let (basic, _) = read(basic, 0x30).ok_or(m("bad BasicOCSPResponse"))?;
    let (tbs_whole, tbs, rest) = read_whole(basic, 0x30).ok_or(m("no tbsResponseData"))?;
    let (sig_alg, rest) = read(rest, 0x30).ok_or(m("no signatureAlgorithm"))?;
    let (sig_alg_oid, _) = read(sig_alg, 0x06).ok_or(m("bad signatureAlgorithm"))?;
    let (signature, _) = read(rest, 0x03).ok_or(m("no signature"))?;
    let signature = signature.split_first().map(|(_, s)| s).unwrap_or_default();
    verify_signature(issuer, sig_alg_oid, tbs_whole, signature)?;

    // ResponseData: [0] version?, responderID, producedAt, responses, [1] extensions?
    let mut rest = tbs;
    if let Some((_, r)) = read(rest, 0xa0) {
        rest = r;
    }
    let (_, r) = read_any(rest).ok_or(m("no responderID"))?;
    let (_, r) = read(r, 0x18).ok_or(m("no producedAt"))?;
    let (responses, _) = read(r, 0x30).ok_or(m("no responses"))?;
    let mut list = responses;
    while !list.is_empty() {
        let (single, next) = read(list, 0x30).ok_or(m("bad SingleResponse"))?;
        list = next;
        let (cert_id, r) = read(single, 0x30).ok_or(m("no certID"))?;
        if !cert_id_matches(cert_id, id) {
            continue;
        }
        let (tag, _, r) = read_tagged(r).ok_or(m("no certStatus"))?;
        match tag {
            0x80 => {}
            0xa1 => return Err(OcspError::Revoked),
            0x82 => return Err(OcspError::Unknown),
            _ => return Err(m("bad certStatus")),
        }
        let (this_update, r) = read(r, 0x18).ok_or(m("no thisUpdate"))?;
        let this_update = generalized_time(this_update).ok_or(m("bad thisUpdate"))?;
        let next_update = match read(r, 0xa0) {
            Some((inner, _)) => {
                let (t, _) = read(inner, 0x18).ok_or(m("bad nextUpdate"))?;
                Some(generalized_time(t).ok_or(m("bad nextUpdate"))?)
            }
            None => None,
        };
        // Five minutes of clock skew either way, as browsers allow.
        let skew = Duration::from_secs(300);
        if this_update > now + skew || next_update.is_some_and(|n| n + skew < now) {
            return Err(OcspError::Stale);
        }
        return Ok(GoodResponse {
            this_update,
            next_update,
        });
    }
    Err(OcspError::WrongCertificate)
}

fn cert_id_matches(der: &[u8], id: &CertId) -> bool {
    let Some((_, r)) = read(der, 0x30) else {
        return false;
    };
    let Some((name, r)) = read(r, 0x04) else {
        return false;
    };
    let Some((key, r)) = read(r, 0x04) else {
        return false;
    };
    let Some((serial, _)) = read(r, 0x02) else {
        return false;
    };
    name == id.issuer_name_hash && key == id.issuer_key_hash && serial == id.serial
}

/// Responses signed by the issuer itself are accepted (delegated responders are not yet).
fn verify_signature(
    issuer: &X509Certificate<'_>,
    alg_oid: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), OcspError> {
    use ring::signature as sig;
    const RSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
    const RSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
    const RSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
    const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
    let key = &issuer.public_key().subject_public_key.data;
    let p384 = key.len() == 97;
    let alg: &dyn sig::VerificationAlgorithm = match alg_oid {
        RSA_SHA256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        RSA_SHA384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        RSA_SHA512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        ECDSA_SHA256 if p384 => &sig::ECDSA_P384_SHA256_ASN1,
        ECDSA_SHA256 => &sig::ECDSA_P256_SHA256_ASN1,
        ECDSA_SHA384 if p384 => &sig::ECDSA_P384_SHA384_ASN1,
        ECDSA_SHA384 => &sig::ECDSA_P256_SHA384_ASN1,
        _ => return Err(OcspError::Signature("unsupported signature algorithm")),
    };
    sig::UnparsedPublicKey::new(alg, key.as_ref())
        .verify(message, signature)
        .map_err(|_| OcspError::Signature("signature invalid (or made by a delegated responder)"))
}

/// `YYYYMMDDHHMMSS[.fff]Z` as UTC.
fn generalized_time(b: &[u8]) -> Option<SystemTime> {
    let s = std::str::from_utf8(b).ok()?;
    let s = s.strip_suffix('Z')?;
    let s = s.split('.').next()?;
    if s.len() != 14 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().ok();
    let (y, mo, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (h, mi, se) = (n(8..10)?, n(10..12)?, n(12..14)?);
    // days from civil (Howard Hinnant)
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(secs).ok()?))
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// One TLV of any tag: (tag, content, whole TLV, rest).
type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

fn parse(input: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, r) = input.split_first()?;
    let (&first, r) = r.split_first()?;
    let (len, r) = if first < 0x80 {
        (usize::from(first), r)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || r.len() < n {
            return None;
        }
        let len = r[..n]
            .iter()
            .fold(0usize, |a, b| (a << 8) | usize::from(*b));
        (len, &r[n..])
    };
    if r.len() < len {
        return None;
    }
    let header = input.len() - r.len();
    Some((tag, &r[..len], &input[..header + len], &r[len..]))
}

fn read(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, content, _, rest) = parse(input)?;
    (t == tag).then_some((content, rest))
}

fn read_whole(input: &[u8], tag: u8) -> Option<(&[u8], &[u8], &[u8])> {
    let (t, content, whole, rest) = parse(input)?;
    (t == tag).then_some((whole, content, rest))
}

fn read_any(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (_, content, _, rest) = parse(input)?;
    Some((content, rest))
}

fn read_tagged(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (t, content, _, rest) = parse(input)?;
    Some((t, content, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generalized_time_is_read_as_utc() {
        let t = generalized_time(b"20261201093000Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_796_117_400
        );
        assert!(generalized_time(b"2026120109300Z").is_none());
        assert!(generalized_time(b"20261201093000").is_none());
    }

    #[test]
    fn long_lengths_round_trip() {
        let content = vec![7u8; 300];
        let der = tlv(0x04, &content);
        assert_eq!(&der[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let (c, rest) = read(&der, 0x04).unwrap();
        assert_eq!(c, content.as_slice());
        assert!(rest.is_empty());
    }

    #[test]
    fn error_status_and_garbage_are_refused() {
        let ca = crate::tls::test_support::Ca::new();
        let der = ca.der();
        let (_, issuer) = x509_parser::parse_x509_certificate(&der).unwrap();
        let id = CertId::new(&issuer, &issuer);
        let now = SystemTime::now();
        // OCSPResponse { responseStatus tryLater(3) }
        let try_later = tlv(0x30, &tlv(0x0a, &[3]));
        assert_eq!(
            check_response(&try_later, &id, &issuer, now),
            Err(OcspError::Status(3))
        );
        assert!(matches!(
            check_response(b"\x30\x05junk", &id, &issuer, now),
            Err(OcspError::Malformed(_))
        ));
    }
}
