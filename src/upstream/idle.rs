//! Per-read idle timeout on an upstream connection (ARR's "proxy timeout").
//!
//! The deadline moves forward on every byte read or written, so a 900 s long poll that
//! trickles data lives, an upload that streams lives, and a member that says nothing for
//! `timeout` is cut. Checking `Instant::now()` on progress and re-arming the timer lazily
//! only when it fires keeps the hot path to one clock read. A read that would block polls the
//! timer only when the timer does not already know whom to wake (first wait, another task, or
//! it fired): polling it on every such read was 1.4% of the instructions per request.

use pin_project_lite::pin_project;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pin_project! {
    /// A member connection that fails with a timeout error once it has been `timeout`
    /// without a byte read or written.
    pub struct IdleTimeout<T> {
        #[pin]
        inner: T,
        sleep: Pin<Box<Sleep>>,
        timeout: Duration,
        deadline: Instant,
        // The task the armed timer wakes; `None` until it has been polled.
        armed_for: Option<std::task::Waker>,
    }
}

impl<T> IdleTimeout<T> {
    pub(crate) fn new(inner: T, timeout: Duration) -> Self {
        let deadline = Instant::now() + timeout;
        IdleTimeout {
            inner,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            timeout,
            deadline,
            armed_for: None,
        }
    }
}

impl<T> IdleTimeout<T> {
    /// Makes `timeout` the idle limit from now on: a connection kept (pooled or pinned)
    /// across a reload that changed the farm's `timeout` follows the new one. A no-op when
    /// unchanged, as it is for almost every request.
    pub(crate) fn set_timeout(&mut self, timeout: Duration) {
        if timeout == self.timeout {
            return;
        }
        self.timeout = timeout;
        self.deadline = Instant::now() + timeout;
        // Armed for the old limit, which may be later: re-armed at the next wait.
        self.sleep.as_mut().reset(self.deadline);
        self.armed_for = None;
    }
}

/// The error an idle upstream produces; `proxy` maps it to 504.
pub fn is_idle_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::TimedOut {
                return true;
            }
        }
        cur = e.source();
    }
    false
}

fn check_deadline(
    sleep: Pin<&mut Sleep>,
    deadline: Instant,
    timeout: Duration,
    cx: &mut Context<'_>,
) -> Option<io::Error> {
    let mut sleep = sleep;
    loop {
        if sleep.as_mut().poll(cx).is_pending() {
            return None;
        }
        if Instant::now() >= deadline {
            return Some(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("member sent nothing for {}s", timeout.as_secs()),
            ));
        }
        sleep.as_mut().reset(deadline);
    }
}

use std::future::Future;

impl<T: AsyncRead> AsyncRead for IdleTimeout<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        match this.inner.poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    *this.deadline = Instant::now() + *this.timeout;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                // Armed, not fired, and for this task: it will wake us when it fires.
                let armed = this
                    .armed_for
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()));
                if armed && !this.sleep.is_elapsed() {
                    return Poll::Pending;
                }
                match check_deadline(this.sleep.as_mut(), *this.deadline, *this.timeout, cx) {
                    Some(e) => Poll::Ready(Err(e)),
                    None => {
                        if !armed {
                            *this.armed_for = Some(cx.waker().clone());
                        }
                        Poll::Pending
                    }
                }
            }
        }
    }
}

impl<T: AsyncWrite> AsyncWrite for IdleTimeout<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        match this.inner.poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    *this.deadline = Instant::now() + *this.timeout;
                }
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        match this.inner.poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    *this.deadline = Instant::now() + *this.timeout;
                }
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn silent_peer_times_out_but_trickling_peer_lives() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut a = IdleTimeout::new(a, Duration::from_secs(10));
        let writer = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(8)).await;
                b.write_all(b"x").await.unwrap();
            }
            // then silence
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(b);
        });
        let mut buf = [0u8; 1];
        for _ in 0..5 {
            a.read_exact(&mut buf)
                .await
                .expect("trickle keeps it alive");
        }
        let err = a.read_exact(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(is_idle_timeout(&err));
        writer.abort();
    }

    /// An upgraded connection's stream moves from the member connection's task to the
    /// tunnel's: the timer must wake the task that waits now, not the one that armed it.
    #[tokio::test(start_paused = true)]
    async fn the_timeout_wakes_the_task_that_waits_now() {
        let (a, _b) = tokio::io::duplex(64);
        let mut a = IdleTimeout::new(a, Duration::from_secs(10));
        let mut buf = [0u8; 1];
        // Armed by this task, which then stops reading.
        let first = tokio::time::timeout(Duration::from_secs(1), a.read(&mut buf)).await;
        assert!(first.is_err(), "nothing was written, so the read waits");
        let other = tokio::spawn(async move {
            let mut buf = [0u8; 1];
            a.read(&mut buf).await.unwrap_err()
        });
        let err = tokio::time::timeout(Duration::from_secs(60), other)
            .await
            .expect("the idle timeout never woke the task reading now")
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
