//! Heads written to the wire: always HTTP/1.1 and CRLF, names in the peer's spelling where
//! one was kept and Title-Case otherwise. The caller has already set the framing headers
//! it means (`Content-Length` or `Transfer-Encoding: chunked`); nothing is added here.

use http::{HeaderMap, HeaderName, Method, StatusCode};

use super::spelling::{write_title_case, Spelling};

/// Appends a request head for a member.
pub fn request_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &[u8],
    headers: &HeaderMap,
    spelling: Option<&Spelling>,
) {
    // A target with a space or line end would split the request line; every target comes
    // from a parsed head or a rewrite through `http::Uri`, neither of which allows one.
    debug_assert!(!target.iter().any(|b| matches!(b, b' ' | b'\r' | b'\n')));
    out.reserve(head_size(headers) + method.as_str().len() + target.len() + 12);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    fields(out, headers, spelling);
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
    out.reserve(head_size(headers) + reason.len() + 15);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
    fields(out, headers, spelling);
}

fn head_size(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + 2
}

fn fields(out: &mut Vec<u8>, headers: &HeaderMap, spelling: Option<&Spelling>) {
    // `HeaderMap::iter` yields a name's values together, in the order they were added, so
    // the nth value of a name meets the nth spelling the peer used for it.
    let mut last: Option<&HeaderName> = None;
    let mut nth = 0;
    for (name, value) in headers {
        nth = if last == Some(name) { nth + 1 } else { 0 };
        last = Some(name);
        match spelling.and_then(|s| s.name(name, nth)) {
            Some(spelled) => out.extend_from_slice(spelled),
            None => write_title_case(out, name.as_str().as_bytes()),
        }
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
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
            head.spelling.as_ref(),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /Autodiscover/Autodiscover.xml HTTP/1.1\r\nhost: autodiscover.contoso.com\r\nX-AnchorMailbox: a@b\r\n\
             set-cookie: 1\r\nSet-Cookie: 2\r\nX-Forwarded-For: 192.0.2.7\r\n\r\n"
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
