//! Portico's own responses: short, no internal addresses, the farm named so an
//! administrator knows where to look.

use super::body::ResponseBody;
use http::{header, HeaderValue, Response, StatusCode};

fn page(status: StatusCode, title: &str, detail: &str) -> Response<ResponseBody> {
    let body = format!(
        "<!doctype html><html><head><title>{code} {title}</title></head><body><h1>{code} {title}</h1><p>{detail}</p><hr><p>Portico</p></body></html>\n",
        code = status.as_u16(),
        title = escape(title),
        detail = escape(detail),
    );
    let mut r = Response::new(ResponseBody::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub fn no_route(host: &str) -> Response<ResponseBody> {
    page(
        StatusCode::NOT_FOUND,
        "Not Found",
        &format!("No site is published for host \"{host}\"."),
    )
}

pub fn bad_request(why: &str) -> Response<ResponseBody> {
    page(StatusCode::BAD_REQUEST, "Bad Request", why)
}

/// A 400 for a request that may have been read differently by someone else (smuggling):
/// on HTTP/1 the connection is closed after it, so nothing behind it is read as a request.
pub fn bad_request_close(why: &str, is_h1: bool) -> Response<ResponseBody> {
    let mut r = bad_request(why);
    if is_h1 {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

pub fn bad_gateway(farm: &str) -> Response<ResponseBody> {
    page(
        StatusCode::BAD_GATEWAY,
        "Bad Gateway",
        &format!("Portico could not get a response from any member of server farm \"{farm}\"."),
    )
}

pub fn gateway_timeout(farm: &str, secs: u64) -> Response<ResponseBody> {
    page(
        StatusCode::GATEWAY_TIMEOUT,
        "Gateway Timeout",
        &format!("A member of server farm \"{farm}\" sent nothing for {secs} seconds."),
    )
}

pub fn unavailable(farm: &str) -> Response<ResponseBody> {
    let mut r = page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Service Unavailable",
        &format!("No member of server farm \"{farm}\" is available."),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            _ => out.push(c),
        }
    }
    out
}

pub fn too_many_pinned(farm: &str) -> Response<ResponseBody> {
    let mut r = page(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", &format!("Too many authenticated (NTLM/Negotiate) connections to server farm \"{farm}\"; try again shortly."));
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

pub fn too_large(farm: &str, limit: u64) -> Response<ResponseBody> {
    let mut r = page(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Content Too Large",
        &format!("Requests to server farm \"{farm}\" may carry at most {limit} bytes."),
    );
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Portico itself is out of resources (descriptors, ports, memory): the member is fine.
pub fn overloaded(farm: &str) -> Response<ResponseBody> {
    let mut r = page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Service Unavailable",
        &format!(
            "The proxy is at its connection limit for server farm \"{farm}\"; try again shortly."
        ),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    r
}

/// 431: the request head is over the listener's `max_header_bytes` (the text names it).
pub fn head_too_large(why: &str) -> Response<ResponseBody> {
    page(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "Request Header Fields Too Large",
        why,
    )
}

/// The key authorization an ACME CA asks for at `/.well-known/acme-challenge/TOKEN`.
pub fn acme_http01(key_authorization: String) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(key_authorization));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    r
}
