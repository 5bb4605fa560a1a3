//! Client affinity by cookie (ARR's `ARRAffinity`, or SfB's `MS-WSMAN`): the cookie names a
//! member by a hash of its identity, so every Portico instance with the same config reads
//! and writes the same value. Not HttpOnly and no expiry, as MS-WSMAN clients expect.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The member may ask for no affinity on a response (ARR honours this header too).
pub static DISABLE_AFFINITY: HeaderName = HeaderName::from_static("arr-disable-session-affinity");

/// The value of cookie `name` in the request, borrowed.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// `Set-Cookie` naming the member.
pub fn set_cookie(name: &str, key: &str, secure: bool) -> Option<HeaderValue> {
    let text = if secure {
        format!("{name}={key}; Path=/; Secure")
    } else {
        format!("{name}={key}; Path=/")
    };
    HeaderValue::from_str(&text).ok()
}

/// True when the member's response asks Portico not to set affinity; the header is removed.
pub fn member_disables(headers: &mut HeaderMap) -> bool {
    match headers.remove(&DISABLE_AFFINITY) {
        Some(v) => !v.as_bytes().eq_ignore_ascii_case(b"false"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_is_found_among_others_and_set_without_httponly_or_expiry() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; ARRAffinity=00ff; b=2"),
        );
        assert_eq!(cookie_value(&h, "ARRAffinity"), Some("00ff"));
        assert_eq!(cookie_value(&h, "MS-WSMAN"), None);
        let c = set_cookie("MS-WSMAN", "abc", true).unwrap();
        let c = c.to_str().unwrap();
        assert_eq!(c, "MS-WSMAN=abc; Path=/; Secure");
        assert!(!c.contains("HttpOnly") && !c.contains("Expires") && !c.contains("Max-Age"));
    }

    #[test]
    fn member_can_disable_affinity() {
        let mut h = HeaderMap::new();
        h.insert(&DISABLE_AFFINITY, HeaderValue::from_static("true"));
        assert!(member_disables(&mut h));
        assert!(!h.contains_key(&DISABLE_AFFINITY));
        assert!(!member_disables(&mut h));
    }
}
