//! Heap held by the member side of a held long poll: one member connection whose request
//! has been sent and whose response has not come, through hyper's HTTP/1.1 client (what
//! Portico uses today: a connection task, a request queue, read and write buffers) and
//! through `portico::http1::client` (the request's own future, no buffers while waiting).
//!
//!     cargo run --release --example member_side            # N=1000
//!     N=2000 cargo run --release --example member_side
//!
//! Counted by a counting global allocator, so the figure is exact and the same on every
//! run (RSS would depend on the heap's history). Clear text on loopback; TLS adds the same
//! rustls state to both. Prints one Markdown table row per client.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn request() -> http::Request<Empty<Bytes>> {
    http::Request::get("/long-poll?secs=600")
        .header("host", "app.contoso.com")
        .header("x-forwarded-for", "192.0.2.7")
        .body(Empty::new())
        .unwrap()
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // The member reads each request and never answers.
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut b = [0u8; 1024];
                while s.read(&mut b).await.unwrap_or(0) > 0 {}
            });
        }
    });
    println!("| member side of a held poll, {n} held | heap bytes per held request |");
    println!("| --- | ---: |");
    for client in ["hyper 1 http1 client", "portico::http1::client"] {
        // The member's own per-connection tasks are counted too; they are the same for both.
        let mut held = Vec::with_capacity(n);
        settle().await;
        let before = LIVE.load(Ordering::Relaxed);
        for _ in 0..n {
            let io = TcpStream::connect(addr).await.unwrap();
            io.set_nodelay(true).unwrap();
            let task = if client.starts_with("hyper") {
                let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
                    .preserve_header_case(true)
                    .title_case_headers(true)
                    .handshake(TokioIo::new(io))
                    .await
                    .unwrap();
                tokio::spawn(conn);
                let sent = sender.send_request(request());
                tokio::spawn(async move {
                    let _keep = sender;
                    let _ = sent.await;
                })
            } else {
                let conn = portico::http1::client::Connection::new(
                    io,
                    portico::http1::head::Limits {
                        max_head_bytes: 64 * 1024,
                    },
                );
                let sent = conn.send(request());
                tokio::spawn(async move {
                    let _ = sent.await;
                })
            };
            held.push(task);
        }
        settle().await;
        let after = LIVE.load(Ordering::Relaxed);
        println!("| {client} | {:.0} |", (after - before) as f64 / n as f64);
        for t in held.drain(..) {
            t.abort();
        }
        settle().await;
    }
}
