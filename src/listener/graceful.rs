//! Graceful shutdown of client connections: one signal for all of them, and a count of the
//! ones still open, for Portico's HTTP/1.1 connections and hyper's h2 ones alike.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
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
        let wake = Arc::new(SignalWake {
            // Polled once to register: the signal's future needs a first poll.
            fired: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        Watched {
            conn,
            signal: async move {
                let _ = rx.changed().await;
                Watcher { rx }
            },
            signalled: None,
            signal_waker: Waker::from(Arc::clone(&wake)),
            wake,
            task: None,
        }
    }
}

/// Wakes a watched connection's task when the signal fires, and marks it fired: the signal
/// is polled only then, not on every poll of the connection. Polling the watch's future on
/// every wake-up took its mutex each time: 0.6% of a request's CPU (perf, HTTPS keep-alive).
struct SignalWake {
    fired: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for SignalWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(task) = task.as_ref() {
            task.wake_by_ref();
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
        // What the signal is polled with.
        signal_waker: Waker,
        wake: Arc<SignalWake>,
        // The task waker `wake` holds, compared here so that an unchanged one (every poll
        // of a spawned task) costs no lock.
        task: Option<Waker>,
    }
}

impl<C: Graceful, S: Future> Future for Watched<C, S> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let mut this = self.project();
        if this.signalled.is_none() {
            if !this.task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                let waker = cx.waker().clone();
                *this.wake.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(waker.clone());
                *this.task = Some(waker);
            }
            if this.wake.fired.load(Ordering::Acquire) {
                // Cleared before the poll: a signal that comes during it sets it again.
                this.wake.fired.store(false, Ordering::Release);
                let mut signal_cx = Context::from_waker(this.signal_waker);
                if let Poll::Ready(watcher) = this.signal.poll(&mut signal_cx) {
                    *this.signalled = Some(watcher);
                    this.conn.as_mut().begin_shutdown();
                }
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

    /// Pending until told to shut down, and waking nobody itself: only the signal can
    /// reach it (an idle keep-alive connection waiting for its next head).
    struct Idle {
        told: bool,
        polls: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Future for Idle {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.told {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    impl Graceful for Idle {
        fn begin_shutdown(mut self: Pin<&mut Self>) {
            self.told = true;
        }
    }

    /// Counts its wakes.
    struct Count(std::sync::atomic::AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn the_signal_wakes_an_idle_connection_through_the_task_that_polled_it_last() {
        let shutdown = GracefulShutdown::new();
        let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let idle = Idle {
            told: false,
            polls: Arc::clone(&polls),
        };
        let mut watched = Box::pin(shutdown.watcher().watch(idle));
        let first = Arc::new(Count(Default::default()));
        let second = Arc::new(Count(Default::default()));
        for (task, times) in [(&first, 3), (&second, 2)] {
            let waker = Waker::from(Arc::clone(task));
            for _ in 0..times {
                assert!(watched
                    .as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending());
            }
        }
        assert_eq!(polls.load(Ordering::SeqCst), 5);
        let done = tokio::spawn(shutdown.shutdown());
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while second.0.load(Ordering::SeqCst) == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the signal wakes the task that polled the connection last");
        assert_eq!(first.0.load(Ordering::SeqCst), 0, "not the earlier task");
        let waker = Waker::from(Arc::clone(&second));
        assert!(watched
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready());
        drop(watched);
        tokio::time::timeout(std::time::Duration::from_secs(5), done)
            .await
            .expect("shutdown ends once the connection is done")
            .unwrap();
    }
}
