//! Connection futures awaited without an `async` block around them. An async block or fn
//! that builds a connection and awaits it keeps the moved-from connection in its state
//! beside the one running (rustc does not overlap them), so every held connection would pay
//! for its state twice (measured when hyper served HTTP/1.1: the client task held 9,872
//! bytes around a 2,712-byte connection, the member connection task 3,608 around one of
//! about 1,800). [`Logged`] awaits the connection itself and logs how it ended.

use pin_project_lite::pin_project;
use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project! {
    /// Runs a connection to its end; an error is logged at debug level with the peer.
    /// `guard` is dropped with it (a client connection's place in the listener's counts).
    pub(crate) struct Logged<F, G = ()> {
        #[pin]
        conn: F,
        peer: SocketAddr,
        what: &'static str,
        guard: G,
    }
}

impl<F> Logged<F> {
    /// `what` names the connection in the log line ("client connection ended with an error").
    pub(crate) fn new(conn: F, peer: SocketAddr, what: &'static str) -> Self {
        Logged {
            conn,
            peer,
            what,
            guard: (),
        }
    }

    /// Keeps `guard` until the connection ends.
    pub(crate) fn holding<G>(self, guard: G) -> Logged<F, G> {
        Logged {
            conn: self.conn,
            peer: self.peer,
            what: self.what,
            guard,
        }
    }
}

impl<F, G, E> Future for Logged<F, G>
where
    F: Future<Output = Result<(), E>>,
    E: Display,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        match this.conn.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(()),
            Poll::Ready(Err(e)) => {
                tracing::debug!(peer = %this.peer, error = %e, "{}", this.what);
                Poll::Ready(())
            }
        }
    }
}
