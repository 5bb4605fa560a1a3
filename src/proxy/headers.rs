//! Header handling on the way to a member and back, split by concern:
//! hop-by-hop removal, forwarding headers, and h2 → HTTP/1.1 translation.

use crate::http1::Present;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

/// Headers that describe one connection and must not cross the proxy (RFC 9110 7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers, including any the `Connection` header names.
/// `Upgrade` is removed too unless `keep_upgrade` (a WebSocket being tunnelled).
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages carry none of them: one pass over the (few) names present decides,
    // where a removal per hop-by-hop name costs a hashed lookup each (measured with
    // callgrind: 2% of a request's instructions).
    if !headers
        .keys()
        .any(|k| k == header::UPGRADE || HOP_BY_HOP.iter().any(|h| h == k))
    {
        return;
    }
    // Names listed in Connection are hop-by-hop for this message only.
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in listed {
            if keep_upgrade && name == header::UPGRADE {
                continue;
            }
            headers.remove(&name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if !keep_upgrade {
        headers.remove(header::UPGRADE);
    }
}

/// True when an HTTP/1.1 request asks to switch protocols (WebSocket and friends).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

use crate::http1::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};

/// What a request's X-Forwarded-For says to the member.
pub enum ForwardedFor {
    /// The connection's peer alone (the value made once per connection).
    Peer,
    /// A trusted proxy's list, extended with its own address.
    List(HeaderValue),
}

/// Takes the client's own X-Forwarded-For / -Proto / -Host out of `headers`, which the
/// proxy writes itself ([`Forwarded::fields`]). A client on the internet must not choose
/// the address the member believes, so its X-Forwarded-For is dropped; only a `trusted`
/// peer (a proxy in front of Portico) gets its list extended with its own address.
/// `present`: the request carries a name outside [`Present`]'s known ones, so it may carry
/// these; without one there is nothing to look up.
pub(crate) fn take_forwarded(
    headers: &mut HeaderMap,
    present: Present,
    peer: &HeaderValue,
    trusted: bool,
) -> ForwardedFor {
    if !present.any(Present::OTHER) {
        return ForwardedFor::Peer;
    }
    let mut joined: Vec<u8> = Vec::new();
    if trusted {
        for v in headers.get_all(&X_FORWARDED_FOR) {
            // Empty fields before the first value add nothing (no leading ", ").
            if !joined.is_empty() {
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(v.as_bytes());
        }
    }
    for name in [&X_FORWARDED_FOR, &X_FORWARDED_PROTO, &X_FORWARDED_HOST] {
        headers.remove(name);
    }
    if joined.is_empty() {
        return ForwardedFor::Peer;
    }
    joined.extend_from_slice(b", ");
    joined.extend_from_slice(peer.as_bytes());
    // Valid values joined by ", " make a valid value; were it not, the peer alone is true.
    HeaderValue::from_bytes(&joined).map_or(ForwardedFor::Peer, ForwardedFor::List)
}

static HTTPS: HeaderValue = HeaderValue::from_static("https");
static HTTP: HeaderValue = HeaderValue::from_static("http");

/// The forwarding fields of one request, written after its own by `http1::write`.
pub struct Forwarded<'a> {
    fields: [(&'a HeaderName, &'a HeaderValue); 3],
}

impl<'a> Forwarded<'a> {
    /// X-Forwarded-For from `for_` (`peer`: the connection's address), -Proto from
    /// `https`, -Host `host` (the client's).
    pub fn new(
        for_: &'a ForwardedFor,
        peer: &'a HeaderValue,
        https: bool,
        host: &'a HeaderValue,
    ) -> Self {
        let for_ = match for_ {
            ForwardedFor::Peer => peer,
            ForwardedFor::List(list) => list,
        };
        let proto = if https { &HTTPS } else { &HTTP };
        Forwarded {
            fields: [
                (&X_FORWARDED_FOR, for_),
                (&X_FORWARDED_PROTO, proto),
                (&X_FORWARDED_HOST, host),
            ],
        }
    }

    /// The fields, in the order they are written.
    pub fn fields(&self) -> &[(&'a HeaderName, &'a HeaderValue)] {
        &self.fields
    }
}

/// A client address as an X-Forwarded-For value, made once per client connection.
pub fn address_value(ip: IpAddr) -> HeaderValue {
    use std::io::Write;
    let mut buf = [0u8; 48];
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cur, "{ip}");
    let n = cur.position() as usize;
    HeaderValue::from_bytes(&buf[..n]).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// h2 may split `cookie` into several fields; HTTP/1.1 members need one (RFC 9113 8.2.3).
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (values.next(), values.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for v in headers.get_all(header::COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_headers_and_connection_listed_names_are_removed() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a [&'a str]);
        let cases: &[Case] = &[
            (
                &[
                    ("connection", "keep-alive, x-secret"),
                    ("x-secret", "1"),
                    ("x-keep", "2"),
                ],
                &["x-keep"],
                &["connection", "x-secret"],
            ),
            (
                &[
                    ("te", "trailers"),
                    ("trailer", "x"),
                    ("transfer-encoding", "chunked"),
                    ("keep-alive", "timeout=5"),
                ],
                &[],
                &["te", "trailer", "transfer-encoding", "keep-alive"],
            ),
            (
                &[("proxy-connection", "keep-alive"), ("upgrade", "websocket")],
                &[],
                &["proxy-connection", "upgrade"],
            ),
            (
                &[
                    ("authorization", "NTLM abc"),
                    ("www-authenticate", "Negotiate"),
                ],
                &["authorization", "www-authenticate"],
                &[],
            ),
        ];
        for (input, kept, removed) in cases {
            let mut h = map(input);
            remove_hop_by_hop(&mut h, false);
            for k in *kept {
                assert!(h.contains_key(*k), "{k} should stay in {input:?}");
            }
            for k in *removed {
                assert!(!h.contains_key(*k), "{k} should go from {input:?}");
            }
        }
    }

    #[test]
    fn upgrade_is_kept_for_tunnels() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(wants_upgrade(&h));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert!(!wants_upgrade(&map(&[("upgrade", "websocket")])));
    }

    /// `take_forwarded` on `h` as the proxy calls it, with the names `h` carries.
    fn take(h: &mut HeaderMap, peer: &HeaderValue, trusted: bool) -> ForwardedFor {
        let present = Present::of(h);
        take_forwarded(h, present, peer, trusted)
    }

    fn written(h: &HeaderMap, f: &Forwarded<'_>) -> Vec<(String, String)> {
        h.iter()
            .chain(f.fields().iter().copied())
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn client_supplied_forwarding_fields_are_replaced() {
        let peer = address_value("203.0.113.7".parse().unwrap());
        let host = HeaderValue::from_static("meet.contoso.com");
        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-host", "evil"),
            ("x-forwarded-proto", "ftp"),
            ("accept", "*/*"),
        ]);
        let for_ = take(&mut h, &peer, false);
        let f = Forwarded::new(&for_, &peer, true, &host);
        assert_eq!(
            written(&h, &f),
            pairs(&[
                ("accept", "*/*"),
                ("x-forwarded-for", "203.0.113.7"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "meet.contoso.com"),
            ])
        );
        // A request with only known names carries none to take out.
        let mut h = map(&[("host", "meet.contoso.com")]);
        let for_ = take(&mut h, &peer, false);
        let f = Forwarded::new(&for_, &peer, false, &host);
        assert_eq!(
            written(&h, &f),
            pairs(&[
                ("host", "meet.contoso.com"),
                ("x-forwarded-for", "203.0.113.7"),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "meet.contoso.com"),
            ])
        );
    }

    #[test]
    fn a_trusted_proxy_gets_its_forwarded_for_list_extended() {
        let peer = address_value("10.0.0.5".parse().unwrap());
        let host = HeaderValue::from_static("mail.contoso.com");
        let mut h = map(&[
            ("x-forwarded-for", "198.51.100.4"),
            ("x-forwarded-for", "192.0.2.1"),
        ]);
        let for_ = take(&mut h, &peer, true);
        let f = Forwarded::new(&for_, &peer, true, &host);
        assert_eq!(f.fields()[0].1, "198.51.100.4, 192.0.2.1, 10.0.0.5");
        assert!(!h.contains_key(&X_FORWARDED_FOR));
        // Trusted, but no list of its own: the peer alone.
        let mut h = map(&[("accept", "*/*")]);
        let for_ = take(&mut h, &peer, true);
        assert_eq!(
            Forwarded::new(&for_, &peer, true, &host).fields()[0].1,
            "10.0.0.5"
        );
        // An untrusted client's list is dropped, not extended.
        let mut h = map(&[("x-forwarded-for", "198.51.100.4")]);
        let for_ = take(&mut h, &peer, false);
        assert_eq!(
            Forwarded::new(&for_, &peer, true, &host).fields()[0].1,
            "10.0.0.5"
        );
    }

    /// A trusted proxy's empty X-Forwarded-For fields before its first value add nothing:
    /// the list gains no leading ", " (found by review).
    #[test]
    fn an_empty_trusted_forwarded_for_adds_no_separator() {
        let peer = address_value("10.0.0.5".parse().unwrap());
        let host = HeaderValue::from_static("mail.contoso.com");
        for (values, want) in [
            (&[""][..], "10.0.0.5"),
            (&["", "198.51.100.4"][..], "198.51.100.4, 10.0.0.5"),
            (&["198.51.100.4", ""][..], "198.51.100.4, , 10.0.0.5"),
        ] {
            let mut pairs: Vec<(&str, &str)> =
                values.iter().map(|v| ("x-forwarded-for", *v)).collect();
            pairs.push(("accept", "*/*"));
            let mut h = map(&pairs);
            let for_ = take(&mut h, &peer, true);
            assert_eq!(
                Forwarded::new(&for_, &peer, true, &host).fields()[0].1,
                want,
                "{values:?}"
            );
        }
    }

    #[test]
    fn split_cookies_are_joined_for_http1() {
        let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2")]);
        join_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "a=1; b=2");
    }
}
