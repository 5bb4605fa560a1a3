//! The benchmark's member: as cheap as a member can be, so that the proxies, not the member,
//! are what the tables compare. One thread, HTTP/1.1 keep-alive, optional TLS, and:
//! `/status/200` (a 1 KiB body), `/download?bytes=N` (streamed), `/long-poll?secs=N`.
//! Every accepted connection is counted; `/connections` answers the count, so a bench can
//! tell how many connections each proxy opened to the member during a scenario.
//!
//! ```sh
//! cargo build --release --example bench-member
//! target/release/examples/bench-member 127.0.0.1:14080 [CERT.pem KEY.pem]
//! target/release/examples/bench-member 127.0.0.1:14080,127.0.0.1:14082,127.0.0.1:14083
//! ```
//!
//! Several comma-separated addresses are served by the same thread: a farm of three members
//! then has exactly the capacity of a farm of one, so comparing the two measures the proxy.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

static ACCEPTED: AtomicU64 = AtomicU64::new(0);
const KIB: &[u8] = &[b'x'; 1024];

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args
        .first()
        .ok_or("usage: bench-member ADDR[,ADDR...] [CERT KEY]")?
        .clone();
    let tls = match (args.get(1), args.get(2)) {
        (Some(c), Some(k)) => Some(tls_config(c, k)?),
        _ => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut serving = tokio::task::JoinSet::new();
        for a in addr.split(',') {
            let listener = TcpListener::bind(a).await?;
            serving.spawn(serve(listener, tls.clone()));
        }
        match serving.join_next().await {
            Some(Ok(r)) => r,
            Some(Err(e)) => Err(e.into()),
            None => Ok(()),
        }
    })
}

fn tls_config(
    cert: &str,
    key: &str,
) -> Result<Arc<rustls::ServerConfig>, Box<dyn std::error::Error + Send + Sync>> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(std::fs::File::open(cert)?))
        .collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(std::fs::File::open(key)?))?
        .ok_or("no private key")?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (tcp, _) = listener.accept().await?;
        ACCEPTED.fetch_add(1, Ordering::Relaxed);
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        // A current-thread runtime: every task runs on the one thread.
        tokio::spawn(async move {
            match acceptor {
                Some(a) => {
                    if let Ok(s) = a.accept(tcp).await {
                        serve_conn(TokioIo::new(s)).await;
                    }
                }
                None => serve_conn(TokioIo::new(tcp)).await,
            }
        });
    }
}

async fn serve_conn<I>(io: I)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service_fn(handle))
        .await;
}

async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path();
    let num = |name: &str| -> u64 {
        req.uri()
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(match path {
        "/status/200" => full(StatusCode::OK, Bytes::from_static(KIB)),
        "/connections" => full(
            StatusCode::OK,
            Bytes::from(ACCEPTED.load(Ordering::Relaxed).to_string()),
        ),
        "/download" => Response::new(
            Download {
                left: num("bytes"),
                chunk: Bytes::from(vec![b'd'; 64 * 1024]),
            }
            .boxed(),
        ),
        "/long-poll" => {
            tokio::time::sleep(Duration::from_secs(num("secs"))).await;
            full(StatusCode::OK, Bytes::from_static(b"done"))
        }
        _ => full(StatusCode::NOT_FOUND, Bytes::from_static(b"not found")),
    })
}

fn full(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body).boxed());
    *r.status_mut() = status;
    r
}

/// `left` bytes in 64 KiB frames, made as they are asked for.
struct Download {
    left: u64,
    chunk: Bytes,
}

impl hyper::body::Body for Download {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64) as usize;
        self.left -= n as u64;
        std::task::Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}
