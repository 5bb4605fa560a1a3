//! Header handling on the way to a member and back, split by concern:
//! hop-by-hop removal, forwarding headers, and h2 → HTTP/1.1 translation.

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

pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Sets X-Forwarded-For / -Proto / -Host. A client on the internet must not choose the
/// address the member believes, so its own X-Forwarded-For is replaced; only a `trusted`
/// peer (a proxy in front of Portico) gets its list extended with its own address.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    https: bool,
    host: Option<&HeaderValue>,
    trusted: bool,
) {
    let prior: Option<Vec<u8>> = if trusted {
        let mut joined: Vec<u8> = Vec::new();
        for v in headers.get_all(&X_FORWARDED_FOR) {
            if !joined.is_empty() {
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(v.as_bytes());
        }
        (!joined.is_empty()).then_some(joined)
    } else {
        None
    };
    let value = match prior {
        Some(mut list) => {
            list.extend_from_slice(b", ");
            list.extend_from_slice(client.as_bytes());
            HeaderValue::from_bytes(&list).ok()
        }
        // The common case costs a reference count: the address was formatted once, when
        // the connection was accepted (`address_value`).
        None => Some(client.clone()),
    };
    match value {
        Some(v) => {
            headers.insert(X_FORWARDED_FOR.clone(), v);
        }
        None => {
            headers.remove(&X_FORWARDED_FOR);
        }
    }
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(if https { "https" } else { "http" }),
    );
    match host {
        Some(h) => {
            headers.insert(X_FORWARDED_HOST.clone(), h.clone());
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
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

    #[test]
    fn client_supplied_forwarded_for_is_replaced() {
        let mut h = map(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-host", "evil")]);
        set_forwarded(
            &mut h,
            &address_value("203.0.113.7".parse().unwrap()),
            true,
            Some(&HeaderValue::from_static("meet.contoso.com")),
            false,
        );
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "203.0.113.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "meet.contoso.com");
        set_forwarded(
            &mut h,
            &address_value("2001:db8::1".parse().unwrap()),
            false,
            None,
            false,
        );
        assert_eq!(h["x-forwarded-for"], "2001:db8::1");
        assert!(!h.contains_key("x-forwarded-host"));
    }

    #[test]
    fn a_trusted_proxy_gets_its_forwarded_for_list_extended() {
        let mut h = map(&[("x-forwarded-for", "198.51.100.4")]);
        set_forwarded(
            &mut h,
            &address_value("10.0.0.5".parse().unwrap()),
            true,
            None,
            true,
        );
        assert_eq!(h["x-forwarded-for"], "198.51.100.4, 10.0.0.5");
        let mut h = HeaderMap::new();
        set_forwarded(
            &mut h,
            &address_value("10.0.0.5".parse().unwrap()),
            true,
            None,
            true,
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.5");
    }

    #[test]
    fn split_cookies_are_joined_for_http1() {
        let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2")]);
        join_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "a=1; b=2");
    }
}
