//! The admin listener: status page, JSON API, Prometheus metrics, health endpoints.
//!
//! | path | method | what |
//! | --- | --- | --- |
//! | `/` | GET | status page (`page.rs`): HTML that refreshes itself from `/api/status` |
//! | `/api/status` | GET | every farm, member, certificate and the last reload, as JSON (`api.rs`) |
//! | `/api/farms/{farm}/members/{member}/state` | POST | body `available`, `draining` or `unavailable` |
//! | `/api/reset` | POST | zero every member's totals |
//! | `/api/reload` | POST | re-read the config file (as SIGHUP does) |
//! | `/api/lockout/release` | POST | body: an account or client address held back by failed-sign-in protection |
//! | `/metrics` | GET | Prometheus / OpenMetrics text (`metrics.rs`) |
//! | `/healthz` | GET | 200 while the process runs |
//! | `/readyz` | GET | 200 while serving, 503 once a graceful shutdown began |
//!
//! Reads are open; POSTs need the token (`auth.rs`). docs/operations.md is the manual.

mod api;
mod auth;
pub mod client;
mod metrics;
mod page;

use crate::instance::Control;
use http::{header, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Largest request body the admin API reads (a state name, nothing more).
const MAX_BODY_BYTES: usize = 4096;

/// Serves the admin endpoints until the process ends.
pub async fn serve(listener: TcpListener, control: Arc<Control>) {
    let local = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let control = Arc::clone(&control);
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<Incoming>| {
                let control = Arc::clone(&control);
                async move { Ok::<_, std::convert::Infallible>(handle(&control, local, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

type Reply = Response<Full<Bytes>>;

async fn handle(control: &Control, local: SocketAddr, req: http::Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match (method, path.as_str()) {
        (Method::GET | Method::HEAD, "/healthz") => text(StatusCode::OK, "alive\n"),
        (Method::GET | Method::HEAD, "/readyz") if control.is_ready() => {
            text(StatusCode::OK, "ready\n")
        }
        (Method::GET | Method::HEAD, "/readyz") => {
            text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
        }
        (Method::GET | Method::HEAD, "/") => {
            let status = api::status(control);
            respond(
                StatusCode::OK,
                "text/html; charset=utf-8",
                page::render(&status).into(),
            )
        }
        (Method::GET | Method::HEAD, "/api/status") => json(StatusCode::OK, &api::status(control)),
        (Method::GET | Method::HEAD, "/metrics") => respond(
            StatusCode::OK,
            metrics::CONTENT_TYPE,
            metrics::render(control).into(),
        ),
        (Method::POST, p) if p.starts_with("/api/") => {
            if let Err((status, message)) = auth::authorize(control, local, req.headers()) {
                return json(status, &api::Outcome::err(message));
            }
            let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return json(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &api::Outcome::err("request body too large".into()),
                    )
                }
            };
            let (status, outcome) = api::action(control, p, &body).await;
            json(status, &outcome)
        }
        (_, "/healthz" | "/readyz" | "/" | "/api/status" | "/metrics") => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            r
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Reply {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    h.insert(
        "x-content-type-options",
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "content-security-policy",
        header::HeaderValue::from_static(page::CONTENT_SECURITY_POLICY),
    );
    r
}

fn text(status: StatusCode, body: &'static str) -> Reply {
    respond(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Reply {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_else(|_| b"{}".to_vec());
    body.push(b'\n');
    respond(status, "application/json", body.into())
}
