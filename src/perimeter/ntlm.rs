//! Who a request says it is: the user name in `Authorization: Basic`, and in an NTLM
//! AUTHENTICATE (type 3) message sent as `NTLM <base64>` or `Negotiate <base64>`.
//!
//! The NTLM message carries domain and user in clear (UTF-16LE when the client negotiated
//! Unicode, else the OEM code page, read here as Latin-1). A Negotiate token that is not
//! NTLMSSP is a Kerberos ticket (inside SPNEGO): it names no one Portico can read, so such
//! attempts count per client address only. Nothing here verifies anything: the member does.

use base64::Engine as _;

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";
const NEGOTIATE_UNICODE: u32 = 0x0000_0001;

/// What the `Authorization` header of a request holds, as far as sign-in counting cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No `Authorization` header, or a scheme that is not a password sign-in (Bearer...).
    None,
    /// HTTP Basic: the user name is readable.
    Basic {
        /// The user name as sent (may be `DOMAIN\user` or a UPN).
        user: String,
    },
    /// NTLM NEGOTIATE (type 1): the start of the handshake; its 401 is a challenge, not a
    /// failure.
    NtlmNegotiate,
    /// NTLM AUTHENTICATE (type 3): the answer whose 401 is a failed sign-in.
    NtlmAuthenticate {
        /// The NT domain the client named (may be empty with a UPN).
        domain: String,
        /// The user name the client named.
        user: String,
    },
    /// A Negotiate token that is not NTLMSSP (Kerberos): an attempt with no readable name.
    Kerberos,
}

impl Credentials {
    /// Reads the request's `Authorization` header.
    pub fn from_headers(headers: &http::HeaderMap) -> Credentials {
        match headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            Some(v) => Credentials::parse(v),
            None => Credentials::None,
        }
    }

    /// Reads one `Authorization` value.
    pub fn parse(value: &str) -> Credentials {
        let value = value.trim();
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(rest) else {
                return Credentials::None;
            };
            let text = String::from_utf8_lossy(&raw);
            let user = text.split_once(':').map_or(&*text, |(u, _)| u);
            return Credentials::Basic {
                user: user.to_string(),
            };
        }
        let ntlm = scheme.eq_ignore_ascii_case("ntlm");
        if !ntlm && !scheme.eq_ignore_ascii_case("negotiate") {
            return Credentials::None;
        }
        let Ok(blob) = base64::engine::general_purpose::STANDARD.decode(rest) else {
            return Credentials::None;
        };
        // Raw NTLMSSP, or NTLMSSP wrapped in SPNEGO (offsets inside an NTLM message are
        // relative to its signature, so the message can be read where it starts).
        match find_signature(&blob) {
            Some(at) => parse_ntlm(&blob[at..]),
            None if ntlm => Credentials::None,
            None if blob.is_empty() => Credentials::None,
            None => Credentials::Kerberos,
        }
    }

    /// Whether a 401 answering this request is a failed sign-in.
    pub fn is_attempt(&self) -> bool {
        matches!(
            self,
            Credentials::Basic { .. }
                | Credentials::NtlmAuthenticate { .. }
                | Credentials::Kerberos
        )
    }

    /// The account the attempt is for, folded (see [`fold_account`]); `None` for Kerberos,
    /// anonymous NTLM and requests without credentials.
    pub fn account(&self) -> Option<String> {
        match self {
            Credentials::Basic { user } => fold_account("", user),
            Credentials::NtlmAuthenticate { domain, user } => fold_account(domain, user),
            _ => None,
        }
    }
}

fn find_signature(blob: &[u8]) -> Option<usize> {
    blob.windows(SIGNATURE.len()).position(|w| w == SIGNATURE)
}

fn parse_ntlm(msg: &[u8]) -> Credentials {
    let u32_at = |o: usize| -> Option<u32> {
        msg.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    match u32_at(8) {
        Some(1) => return Credentials::NtlmNegotiate,
        Some(3) => {}
        // A CHALLENGE (type 2) never comes from a client; anything else is not NTLM.
        _ => return Credentials::None,
    }
    let Some(flags) = u32_at(60) else {
        return Credentials::None;
    };
    let field = |o: usize| -> Option<&[u8]> {
        let len = usize::from(u16::from_le_bytes([*msg.get(o)?, *msg.get(o + 1)?]));
        let off = u32_at(o + 4)? as usize;
        msg.get(off..off.checked_add(len)?)
    };
    let text = |b: &[u8]| -> String {
        if flags & NEGOTIATE_UNICODE != 0 {
            let units: Vec<u16> = b
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        } else {
            b.iter().map(|&c| char::from(c)).collect()
        }
    };
    match (field(28), field(36)) {
        (Some(d), Some(u)) => Credentials::NtlmAuthenticate {
            domain: text(d),
            user: text(u),
        },
        _ => Credentials::None,
    }
}

/// One spelling per account: `CONTOSO\Alice`, `alice@contoso.com` and `alice` all become
/// `alice`. AD locks the account, not a spelling, so every spelling must count together.
/// In a forest with the same user name in two domains those two share a counter: the safe
/// side (held back sooner, never later). Empty names (anonymous NTLM) are no account.
pub fn fold_account(domain: &str, user: &str) -> Option<String> {
    let _ = domain;
    let user = user.trim();
    let user = user.rsplit_once('\\').map_or(user, |(_, u)| u);
    let user = user.split_once('@').map_or(user, |(u, _)| u);
    let user = user.trim();
    if user.is_empty() {
        return None;
    }
    Some(user.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
    }

    /// An AUTHENTICATE message laid out as MS-NLMP 2.2.1.3 says, payload after the header.
    fn authenticate(domain: &[u8], user: &[u8], flags: u32) -> Vec<u8> {
        let workstation = b"WS01".to_vec();
        let nt = vec![0xAB; 24];
        let mut payload: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut m = Vec::new();
        m.extend_from_slice(SIGNATURE);
        m.extend_from_slice(&3u32.to_le_bytes());
        let header_len = 72usize; // through flags + version
        let mut next = header_len;
        let fields = [
            Vec::new(),
            nt,
            domain.to_vec(),
            user.to_vec(),
            workstation,
            Vec::new(),
        ];
        for f in fields {
            m.extend_from_slice(&(f.len() as u16).to_le_bytes());
            m.extend_from_slice(&(f.len() as u16).to_le_bytes());
            m.extend_from_slice(&(next as u32).to_le_bytes());
            payload.push((next, f.clone()));
            next += f.len();
        }
        m.extend_from_slice(&flags.to_le_bytes());
        m.extend_from_slice(&[6, 1, 0, 0, 0, 0, 0, 15]); // version
        assert_eq!(m.len(), header_len);
        for (_, f) in payload {
            m.extend_from_slice(&f);
        }
        m
    }

    #[test]
    fn unicode_authenticate_names_domain_and_user() {
        let msg = authenticate(&utf16("CONTOSO"), &utf16("Ålice"), 0xE288_8235);
        let c = Credentials::parse(&format!("NTLM {}", b64(&msg)));
        assert_eq!(
            c,
            Credentials::NtlmAuthenticate {
                domain: "CONTOSO".into(),
                user: "Ålice".into()
            }
        );
        assert_eq!(c.account().as_deref(), Some("ålice"));
        assert!(c.is_attempt());
    }

    #[test]
    fn oem_authenticate_is_read_as_single_bytes() {
        let msg = authenticate(b"CONTOSO", b"bob", 0x0000_0002);
        let c = Credentials::parse(&format!("Negotiate {}", b64(&msg)));
        assert_eq!(c.account().as_deref(), Some("bob"));
    }

    #[test]
    fn ntlm_inside_spnego_is_found() {
        let mut wrapped = vec![
            0xa1, 0x81, 0x90, 0x30, 0x81, 0x8d, 0xa2, 0x81, 0x8a, 0x04, 0x81,
        ];
        wrapped.extend(authenticate(&utf16("C"), &utf16("carol"), 1));
        let c = Credentials::parse(&format!("Negotiate {}", b64(&wrapped)));
        assert_eq!(c.account().as_deref(), Some("carol"));
    }

    #[test]
    fn negotiate_message_and_kerberos_and_garbage() {
        let mut t1 = SIGNATURE.to_vec();
        t1.extend_from_slice(&1u32.to_le_bytes());
        t1.extend_from_slice(&0xE208_8297u32.to_le_bytes());
        let c = Credentials::parse(&format!("NTLM {}", b64(&t1)));
        assert_eq!(c, Credentials::NtlmNegotiate);
        assert!(!c.is_attempt());
        // A Kerberos AP-REQ in SPNEGO starts 0x60 (APPLICATION 0) and has no NTLMSSP.
        let krb = [
            0x60u8, 0x82, 0x02, 0x10, 0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02,
        ];
        let c = Credentials::parse(&format!("Negotiate {}", b64(&krb)));
        assert_eq!(c, Credentials::Kerberos);
        assert!(c.is_attempt());
        assert_eq!(c.account(), None);
        // Truncated type 3: fields point past the end.
        let mut cut = authenticate(&utf16("C"), &utf16("dave"), 1);
        cut.truncate(70);
        assert_eq!(
            Credentials::parse(&format!("NTLM {}", b64(&cut))),
            Credentials::None
        );
        assert_eq!(Credentials::parse("NTLM !!!"), Credentials::None);
        assert_eq!(Credentials::parse("Bearer abc"), Credentials::None);
        // Anonymous NTLM: empty user.
        let anon = authenticate(b"", b"", 1);
        assert_eq!(
            Credentials::parse(&format!("NTLM {}", b64(&anon))).account(),
            None
        );
    }

    #[test]
    fn basic_names_the_user() {
        let c = Credentials::parse(&format!("Basic {}", b64(b"CONTOSO\\Erin:pa:ss")));
        assert_eq!(
            c,
            Credentials::Basic {
                user: "CONTOSO\\Erin".into()
            }
        );
        assert_eq!(c.account().as_deref(), Some("erin"));
        assert_eq!(Credentials::parse("basic ***"), Credentials::None);
    }

    #[test]
    fn spellings_of_one_account_fold_together() {
        for (d, u) in [
            ("", "CONTOSO\\Alice"),
            ("", "alice@contoso.com"),
            ("", "Alice"),
            ("CONTOSO", "alice"),
            ("contoso.local", "ALICE@contoso.local"),
            ("", "  alice "),
        ] {
            assert_eq!(fold_account(d, u).as_deref(), Some("alice"), "{d:?} {u:?}");
        }
        assert_eq!(fold_account("", ""), None);
        assert_eq!(fold_account("C", "C\\"), None);
    }
}
