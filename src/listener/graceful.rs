//! Graceful shutdown of client connections: one signal for all of them, and a count of the
//! ones still open, for Portico's HTTP/1.1 connections and hyper's h2 ones alike.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::watch;

/// The shutdown signal and the count of watched connections.
pub struct GracefulShutdown {
    tx: watch::Sender<()>,
}

impl Default for GracefulShutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl GracefulShutdown {
    /// No connection watched, no shutdown begun.
    pub fn new() -> Self {
        GracefulShutdown {
            tx: watch::channel(()).0,
        }
    }

    /// A watcher for one connection about to be served. Taken before the connection is, so
    /// a shutdown that begins in between still reaches it.
    pub fn watcher(&self) -> Watcher {
        Watcher {
            rx: self.tx.subscribe(),
        }
    }

    /// Connections watched and not yet done.
    pub fn count(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Tells every watched connection to finish (in-flight requests complete, idle
    /// connections close) and returns when all of them are done.
    pub async fn shutdown(self) {
        let _ = self.tx.send(());
        self.tx.closed().await;
    }
}

/// One connection's share of the signal; counted until the connection's future ends.
pub struct Watcher {
    rx: watch::Receiver<()>,
}

impl Watcher {
    /// `conn`, told to shut down gracefully when the signal comes.
    pub fn watch<C: Graceful>(self, conn: C) -> Watched<C, impl Future<Output = Watcher>> {
        let Watcher { mut rx } = self;
        Watched {
            conn,
            signal: async move {
                let _ = rx.changed().await;
                Watcher { rx }
            },
            signalled: None,
        }
    }
}

/// A served connection that can be asked to finish what it has in flight and close.
pub trait Graceful: Future {
    /// Stops taking new requests; the future completes once in-flight ones are answered.
    fn begin_shutdown(self: Pin<&mut Self>);
}

pin_project_lite::pin_project! {
    /// A connection and the signal that shuts it down; the watcher, once signalled, is held
    /// until the connection ends so that [`GracefulShutdown::shutdown`] waits for it.
    pub struct Watched<C, S: Future> {
        #[pin]
        conn: C,
        #[pin]
        signal: S,
        signalled: Option<S::Output>,
    }
}

impl<C: Graceful, S: Future> Future for Watched<C, S> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let mut this = self.project();
        if this.signalled.is_none() {
            if let Poll::Ready(watcher) = this.signal.poll(cx) {
                *this.signalled = Some(watcher);
                this.conn.as_mut().begin_shutdown();
            }
        }
        this.conn.poll(cx)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<T, S, F, B, E> Graceful for crate::http1::server::Connection<T, S, F, B>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
        http::Request<crate::http1::server::RequestBody<T>>,
        Response = http::Response<B>,
        Error = E,
        Future = F,
    >,
    F: Future<Output = Result<http::Response<B>, E>>,
    B: http_body::Body<Data = bytes::Bytes> + crate::http1::server::Spelled + Unpin,
    B::Error: Into<BoxError>,
    E: std::fmt::Display,
{
    fn begin_shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B, E> Graceful for hyper::server::conn::http2::Connection<I, S, E>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: hyper::body::Body + 'static,
    B::Error: Into<BoxError>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn begin_shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// Ends one tick after it is told to shut down.
    struct Conn {
        told: Arc<AtomicBool>,
    }

    impl Future for Conn {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.told.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }

    impl Graceful for Conn {
        fn begin_shutdown(self: Pin<&mut Self>) {
            self.told.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn shutdown_tells_every_watched_connection_and_waits_for_them() {
        let shutdown = GracefulShutdown::new();
        let told: Vec<_> = (0..3).map(|_| Arc::new(AtomicBool::new(false))).collect();
        let tasks: Vec<_> = told
            .iter()
            .map(|t| {
                let conn = Conn {
                    told: Arc::clone(t),
                };
                tokio::spawn(shutdown.watcher().watch(conn))
            })
            .collect();
        assert_eq!(shutdown.count(), 3);
        tokio::time::timeout(std::time::Duration::from_secs(5), shutdown.shutdown())
            .await
            .expect("shutdown waits only for the watched connections");
        assert!(told.iter().all(|t| t.load(Ordering::SeqCst)));
        for t in tasks {
            t.await.unwrap();
        }
    }
}
