//! The perimeter's hooks on the request path, called by `proxy::decide` around forwarding:
//! a routing rule's rate limit, and failed-sign-in protection for `lockout = true` farms
//! (hold an attempt back before it reaches the member; count its outcome after).

use super::body::ResponseBody;
use crate::access_log::AccessRecord;
use crate::perimeter::lockout::{Answer, Hold, LockoutSettings, Verdict};
use crate::perimeter::ntlm::Credentials;
use crate::perimeter::ratelimit::RateLimiter;
use crate::perimeter::Perimeter;
use http::{header, HeaderValue, Response, StatusCode};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A sign-in attempt on a protected farm, carried from before forwarding to after it.
pub(super) struct Attempt {
    settings: Arc<LockoutSettings>,
    credentials: Credentials,
    account: Option<String>,
    client: IpAddr,
}

/// Applies a rule's rate limit; `Some` is the 429 to send instead of forwarding.
pub(super) fn rate_limit(
    perimeter: &Perimeter,
    limiter: Option<&Arc<RateLimiter>>,
    client: IpAddr,
    rule: &str,
    record: Option<&Arc<AccessRecord>>,
) -> Option<Response<ResponseBody>> {
    let refused = limiter?.check(client).err()?;
    perimeter
        .rate_limited_requests
        .fetch_add(1, Ordering::Relaxed);
    tracing::debug!(%client, rule, "rate limit: 429");
    if let Some(r) = record {
        r.set_answered_by_portico("rate-limit");
    }
    Some(too_many(
        refused.retry_after_secs(),
        "Too many requests from your address; try again later.",
        false,
    ))
}

/// Before forwarding to a protected farm: reads the credentials and asks the lockout tables.
/// `Err` is Portico's answer for a held attempt; `Ok(Some)` an attempt to count afterwards.
pub(super) fn before(
    perimeter: &Perimeter,
    settings: Option<&Arc<LockoutSettings>>,
    headers: &http::HeaderMap,
    client: IpAddr,
    is_h1: bool,
    record: Option<&Arc<AccessRecord>>,
) -> Result<Option<Attempt>, Box<Response<ResponseBody>>> {
    let Some(settings) = settings else {
        return Ok(None);
    };
    let credentials = Credentials::from_headers(headers);
    if !credentials.is_attempt() {
        return Ok(None);
    }
    let account = credentials.account();
    match perimeter
        .lockout
        .check(settings, client, account.as_deref())
    {
        Verdict::Pass => Ok(Some(Attempt {
            settings: Arc::clone(settings),
            credentials,
            account,
            client,
        })),
        Verdict::Held { why, retry_after } => {
            let what = match &why {
                Hold::Account(a) => format!("account {a}"),
                Hold::Address(ip) => format!("address {ip}"),
            };
            tracing::warn!(%client, held = %what, "sign-in attempt held back (failed-sign-in protection)");
            if let Some(r) = record {
                r.set_answered_by_portico("lockout");
            }
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            Err(Box::new(match settings.answer {
                Answer::TooManyRequests => {
                    too_many(secs, "Too many failed sign-ins; try again later.", is_h1)
                }
                Answer::Unauthorized => unauthorized(&credentials, secs, is_h1),
            }))
        }
    }
}

/// After forwarding: 401 to credentials is a failure, 2xx/3xx a success.
pub(super) fn after(perimeter: &Perimeter, attempt: Attempt, status: StatusCode) {
    let Attempt {
        settings,
        credentials,
        account,
        client,
    } = attempt;
    // A Kerberos ticket names no one readable: it counts against the address only.
    let account = match credentials {
        Credentials::Kerberos => None,
        _ => account,
    };
    if status == StatusCode::UNAUTHORIZED {
        tracing::info!(%client, account = account.as_deref().unwrap_or("-"), "failed sign-in counted");
        perimeter
            .lockout
            .record_failure(&settings, client, account.as_deref());
    } else if status.is_success() || status.is_redirection() {
        perimeter
            .lockout
            .record_success(&settings, client, account.as_deref());
    }
}

fn too_many(retry_after_secs: u64, text: &str, close: bool) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(format!("{text}\n")));
    *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let h = r.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if close {
        // An NTLM handshake may be half-way on this connection's pinned member connection:
        // closing makes the client start afresh on a new one.
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

fn unauthorized(c: &Credentials, retry_after_secs: u64, close: bool) -> Response<ResponseBody> {
    let mut r = too_many(retry_after_secs, "Sign-in failed.", close);
    *r.status_mut() = StatusCode::UNAUTHORIZED;
    let challenge = match c {
        Credentials::Basic { .. } => "Basic realm=\"Portico\"",
        Credentials::NtlmAuthenticate { .. } => "NTLM",
        _ => "Negotiate",
    };
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    r
}
