//! Heads written to the wire: always HTTP/1.1 and CRLF, names in the peer's spelling where
//! one was kept and Title-Case otherwise. The caller has already set the framing headers
//! it means (`Content-Length` or `Transfer-Encoding: chunked`); nothing is added here.

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use super::spelling::{write_title_case, Spelling};

/// Fields written after a head's own, without being inserted in its map: the forwarding
/// fields the proxy adds to every request. Three insertions into the map (a hash and a
/// probe each) were 3% of a proxied request's instructions (callgrind).
pub type Added<'a> = &'a [(&'a HeaderName, &'a HeaderValue)];

/// Appends a request head for a member: `headers`, then `added`. Returns how many bytes
/// the `added` lines took (they end just before the head's blank line).
pub fn request_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &[u8],
    headers: &HeaderMap,
    added: Added<'_>,
    spelling: Option<&Spelling>,
) -> usize {
    // A target with a space or line end would split the request line; every target comes
    // from a parsed head or a rewrite through `http::Uri`, neither of which allows one.
    debug_assert!(!target.iter().any(|b| matches!(b, b' ' | b'\r' | b'\n')));
    let fields_size = head_size(headers.iter().chain(added.iter().copied()));
    out.reserve(fields_size + method.as_str().len() + target.len() + 12);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    fields(out, headers, spelling);
    let own_end = out.len();
    for &(name, value) in added {
        // A name the peer sent and the proxy replaced keeps the peer's spelling.
        field(out, name, 0, value, spelling);
    }
    let added_len = out.len() - own_end;
    out.extend_from_slice(b"\r\n");
    added_len
}

/// Appends a response head for a client. `reason`: the member's phrase, kept when it sent
/// one; otherwise the status's canonical phrase.
pub fn response_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    reason: Option<&[u8]>,
    headers: &HeaderMap,
    spelling: Option<&Spelling>,
) {
    let reason = match reason {
        Some(r) if !r.is_empty() => r,
        _ => status.canonical_reason().unwrap_or("").as_bytes(),
    };
    debug_assert!(!reason.iter().any(|b| matches!(b, b'\r' | b'\n')));
    out.reserve(head_size(headers.iter()) + reason.len() + 15);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
    fields(out, headers, spelling);
    out.extend_from_slice(b"\r\n");
}

/// The bytes `fields` take as `name: value` lines, and the blank line after them.
fn head_size<'a>(fields: impl Iterator<Item = (&'a HeaderName, &'a HeaderValue)>) -> usize {
    fields
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + 2
}

/// The field lines of `headers`, without the blank line that ends a head.
fn fields(out: &mut Vec<u8>, headers: &HeaderMap, spelling: Option<&Spelling>) {
    // `HeaderMap::iter` yields a name's values together, in the order they were added, so
    // the nth value of a name meets the nth spelling the peer used for it.
    let mut last: Option<&HeaderName> = None;
    let mut nth = 0;
    for (name, value) in headers {
        nth = if last == Some(name) { nth + 1 } else { 0 };
        last = Some(name);
        field(out, name, nth, value, spelling);
    }
}

/// One field line: the `nth` value of `name`, in the peer's spelling if it sent the name,
/// else Title-Case.
#[inline]
fn field(
    out: &mut Vec<u8>,
    name: &HeaderName,
    nth: usize,
    value: &HeaderValue,
    spelling: Option<&Spelling>,
) {
    match spelling.and_then(|s| s.name(name, nth)) {
        Some(spelled) => out.extend_from_slice(spelled),
        None => match title_case_of(name) {
            Some(t) => out.extend_from_slice(t),
            None => write_title_case(out, name.as_str().as_bytes()),
        },
    }
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The Title-Case spelling of the names nearly every proxied message carries, written as
/// one copy: spelling them byte by byte was 1.4% of a request's instructions (callgrind).
fn title_case_of(name: &HeaderName) -> Option<&'static [u8]> {
    use super::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};
    use http::header;
    // Standard names compare as one integer; the three custom ones by their bytes.
    let t: &'static [u8] = if *name == header::HOST {
        b"Host"
    } else if *name == header::CONTENT_LENGTH {
        b"Content-Length"
    } else if *name == header::DATE {
        b"Date"
    } else if *name == header::CONTENT_TYPE {
        b"Content-Type"
    } else if *name == header::CONNECTION {
        b"Connection"
    } else if *name == header::TRANSFER_ENCODING {
        b"Transfer-Encoding"
    } else if *name == X_FORWARDED_FOR {
        b"X-Forwarded-For"
    } else if *name == X_FORWARDED_PROTO {
        b"X-Forwarded-Proto"
    } else if *name == X_FORWARDED_HOST {
        b"X-Forwarded-Host"
    } else {
        return None;
    };
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::head::{parse_request, parse_response, Limits};
    use bytes::BytesMut;

    const LIMITS: Limits = Limits {
        max_head_bytes: 64 * 1024,
    };

    #[test]
    fn a_request_is_written_back_with_the_clients_spelling_and_crlf() {
        let raw = b"GET /Autodiscover/Autodiscover.xml HTTP/1.1\nhost: autodiscover.contoso.com\nX-AnchorMailbox: a@b\nset-cookie: 1\nSet-Cookie: 2\n\n";
        let mut buf = BytesMut::from(&raw[..]);
        let mut head = parse_request(&mut buf, LIMITS).unwrap().unwrap();
        head.headers
            .insert("x-forwarded-for", "192.0.2.7".parse().unwrap());
        let mut out = Vec::new();
        request_head(
            &mut out,
            &head.method,
            &head.target,
            &head.headers,
            &[],
            head.spelling.as_ref(),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /Autodiscover/Autodiscover.xml HTTP/1.1\r\nhost: autodiscover.contoso.com\r\nX-AnchorMailbox: a@b\r\n\
             set-cookie: 1\r\nSet-Cookie: 2\r\nX-Forwarded-For: 192.0.2.7\r\n\r\n"
        );
    }

    #[test]
    fn added_fields_follow_the_map_in_the_peers_spelling_or_title_case() {
        use crate::http1::{X_FORWARDED_FOR, X_FORWARDED_PROTO};
        let peer = HeaderValue::from_static("192.0.2.7");
        let https = HeaderValue::from_static("https");
        let added = [(&X_FORWARDED_FOR, &peer), (&X_FORWARDED_PROTO, &https)];
        // The client spelled its own X-Forwarded-For its way (and the proxy took it out):
        // the proxy's value goes out in that spelling; -Proto, which it did not send, Title-Case.
        let raw = b"GET / HTTP/1.1\r\nHOST: a\r\nx-forwarded-FOR: 1.2.3.4\r\n\r\n";
        let mut buf = BytesMut::from(&raw[..]);
        let mut head = parse_request(&mut buf, LIMITS).unwrap().unwrap();
        head.headers.remove(&X_FORWARDED_FOR);
        let mut out = Vec::new();
        request_head(
            &mut out,
            &head.method,
            &head.target,
            &head.headers,
            &added,
            head.spelling.as_ref(),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET / HTTP/1.1\r\nHOST: a\r\nx-forwarded-FOR: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n\r\n"
        );
        // No spelling kept (a Title-Case head): all Title-Case, the map's first.
        let mut out = Vec::new();
        let mut h = HeaderMap::new();
        h.insert(http::header::HOST, HeaderValue::from_static("a"));
        request_head(&mut out, &Method::GET, b"/", &h, &added, None);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n\r\n"
        );
    }

    #[test]
    fn the_title_case_table_spells_as_the_byte_by_byte_writer_does() {
        use crate::http1::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};
        use http::header;
        let known = [
            header::HOST,
            header::CONTENT_LENGTH,
            header::DATE,
            header::CONTENT_TYPE,
            header::CONNECTION,
            header::TRANSFER_ENCODING,
            X_FORWARDED_FOR.clone(),
            X_FORWARDED_PROTO.clone(),
            X_FORWARDED_HOST.clone(),
        ];
        for name in &known {
            let mut slow = Vec::new();
            write_title_case(&mut slow, name.as_str().as_bytes());
            assert_eq!(title_case_of(name), Some(&slow[..]), "{name}");
        }
        assert_eq!(title_case_of(&header::ACCEPT), None);
        assert_eq!(
            title_case_of(&HeaderName::from_static("x-forwarded-port")),
            None
        );
    }

    #[test]
    fn an_all_lower_case_head_goes_out_all_lower_case_with_porticos_fields() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-served-by: fe01\r\n\r\n";
        let mut buf = BytesMut::from(&raw[..]);
        let mut head = parse_response(&mut buf, LIMITS, false).unwrap().unwrap();
        head.headers.insert(
            http::header::DATE,
            "Tue, 01 Dec 2026 00:00:00 GMT".parse().unwrap(),
        );
        let mut out = Vec::new();
        response_head(
            &mut out,
            head.status,
            None,
            &head.headers,
            head.spelling.as_ref(),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-served-by: fe01\r\n\
             date: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\n"
        );
    }

    #[test]
    fn a_response_keeps_the_members_reason_and_names() {
        let raw = b"HTTP/1.1 200 Fine\r\nX-FEServer: EX01\r\nrequest-id: 6d0c\r\nContent-Length: 2\r\n\r\n";
        let mut buf = BytesMut::from(&raw[..]);
        let head = parse_response(&mut buf, LIMITS, false).unwrap().unwrap();
        let mut out = Vec::new();
        response_head(
            &mut out,
            head.status,
            Some(&head.reason),
            &head.headers,
            head.spelling.as_ref(),
        );
        assert_eq!(&out[..], &raw[..]);
        let mut out = Vec::new();
        let mut h = HeaderMap::new();
        h.insert("content-length", "0".parse().unwrap());
        response_head(&mut out, StatusCode::BAD_GATEWAY, None, &h, None);
        assert_eq!(
            &out[..],
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"
        );
    }
}
