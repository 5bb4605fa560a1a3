//! The admin listener: status page, JSON API, Prometheus metrics, health endpoints.

use crate::server::Control;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::Arc;
use tokio::net::TcpListener;

/// Serves the admin endpoints until the process ends.
pub async fn serve(listener: TcpListener, control: Arc<Control>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let control = Arc::clone(&control);
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<Incoming>| {
                let control = Arc::clone(&control);
                async move { Ok::<_, std::convert::Infallible>(route(&control, req.uri().path())) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn route(control: &Control, path: &str) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/healthz" => (StatusCode::OK, "alive\n"),
        "/readyz" if control.is_ready() => (StatusCode::OK, "ready\n"),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}
