//! `portico::http1::client` against a member that sends anything: the fuzz input is the
//! member's bytes, cut into reads at points the input also chooses. A GET (or a HEAD) is
//! sent and its response read to the end. Nothing may panic or loop forever, a body never
//! yields more bytes than the member sent, and a connection handed back for reuse has no
//! bytes left over.
#![no_main]

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::Body;
use libfuzzer_sys::fuzz_target;
use portico::http1::client::{Connection, Exchange};
use portico::http1::head::Limits;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A member connection that replays `data` in reads of the given sizes, then ends; writes
/// are all accepted. It never waits, so a plain loop can drive the futures.
struct Scripted {
    data: Vec<u8>,
    at: usize,
    cuts: Vec<usize>,
    read: usize,
}

impl AsyncRead for Scripted {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let step = self.cuts.get(self.read).copied().unwrap_or(usize::MAX).max(1);
        self.read += 1;
        let n = step.min(buf.remaining()).min(self.data.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Scripted {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else { return };
    // The first bytes choose the read sizes (1..=16 each), the rest is what the member sends.
    let ncuts = usize::from(mode & 0x0f);
    if rest.len() < ncuts {
        return;
    }
    let (cuts, data) = rest.split_at(ncuts);
    let io = Scripted {
        data: data.to_vec(),
        at: 0,
        cuts: cuts.iter().map(|c| usize::from(c & 0x0f) + 1).collect(),
        read: 0,
    };
    let method = if mode & 0x10 != 0 { http::Method::HEAD } else { http::Method::GET };
    let req = http::Request::builder()
        .method(method)
        .uri("/owa/")
        .header("host", "mail.contoso.com")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    let mut sending = Connection::new(io, Limits { max_head_bytes: 8 * 1024 }).send(req);
    // Every read makes progress or ends, so the number of polls is bounded by the input.
    let bound = 4 * (data.len() + 8);
    let mut polls = 0;
    let exchange = loop {
        polls += 1;
        assert!(polls < bound, "the send does not finish");
        if let Poll::Ready(r) = Pin::new(&mut sending).poll(&mut cx) {
            break r;
        }
    };
    let Ok(Exchange::Response(resp)) = exchange else { return };
    let mut body = resp.into_body();
    let mut got = 0;
    loop {
        polls += 1;
        assert!(polls < 2 * bound, "the body does not finish");
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    got += d.len();
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => break,
            Poll::Pending => {}
        }
    }
    assert!(got <= data.len());
    let _ = body.take_connection();
});

