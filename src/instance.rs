//! A running Portico instance: its proxy state and listeners, and the controls that signals,
//! the admin listener and `portico health` use (reload, drain, shutdown). `server` starts
//! one; `admin` and `health` only hold it, so neither needs `server`.

use crate::config::{self, Config};
use crate::listener::graceful::GracefulShutdown;
use crate::listener::{self, ListenerRuntime, ListenerSettings};
use crate::proxy::{Proxy, Snapshot};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

/// Why an instance could not start (or a reload could not apply); the message is for the
/// administrator.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configured access log file could not be opened.
    #[error("cannot open the access log {path}: {source}")]
    AccessLog {
        /// The file, as configured (`stdout` for standard output).
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A listener's address could not be bound.
    #[error(
        "cannot listen on {addr} (listener {name:?}): {source}{}",
        bind_hint(source)
    )]
    Bind {
        /// The listener's name (`admin` for the admin listener).
        name: String,
        /// The address it asks for.
        addr: SocketAddr,
        /// The OS error (EADDRINUSE, EADDRNOTAVAIL, EACCES).
        source: std::io::Error,
    },
}

/// What to do about a bind error an administrator meets in a keepalived pair.
fn bind_hint(e: &std::io::Error) -> &'static str {
    if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
        " (the address is not on this machine: for a keepalived virtual address that the other instance holds now, set net.ipv4.ip_nonlocal_bind=1, or bind 0.0.0.0; docs/high-availability.md)"
    } else {
        ""
    }
}

/// The outcome of the last reload, for logs and the status page.
#[derive(Debug, Clone)]
pub struct ReloadStatus {
    /// When the reload finished.
    pub at: SystemTime,
    /// Whether the new config was applied; if not, the previous one keeps serving.
    pub ok: bool,
    /// "reloaded", or why the config was rejected.
    pub message: String,
}

/// A shutdown that began: when, and how long new connections are still accepted.
#[derive(Debug, Clone, Copy)]
pub struct DrainState {
    /// When SIGTERM/SIGINT arrived.
    pub since: Instant,
    /// `drain_delay`: how long after `since` the listeners keep accepting.
    pub delay: Duration,
}

/// How long a shutdown waits for connections accepted before it to start their first
/// request (a client on a slow link may take a round trip or two after the handshake).
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(2);

pub(crate) struct ListenerHandle {
    runtime: Arc<ArcSwap<ListenerRuntime>>,
    stop: watch::Sender<bool>,
    /// One accept loop per worker (one on the caller's runtime without workers).
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// What the accept loops share; shutdown reads its connections still before their
    /// first request.
    shared: Arc<listener::ListenerShared>,
    addr: SocketAddr,
}

/// A running Portico: the proxy state, its listeners, and the controls the admin listener
/// and signals use.
pub struct Control {
    /// The current config's run-time state, swapped by reloads.
    pub proxy: Arc<Proxy>,
    /// The file reloads read again (None for a config built in memory).
    pub config_path: Option<PathBuf>,
    /// When this instance started, for the status page and metrics.
    pub started_at: SystemTime,
    /// `/readyz`: true once serving, false from the start of a graceful shutdown.
    pub(crate) ready: AtomicBool,
    pub(crate) last_reload: Mutex<Option<ReloadStatus>>,
    pub(crate) listeners: tokio::sync::Mutex<HashMap<SocketAddr, ListenerHandle>>,
    /// Taken at shutdown to tell every connection to finish and close.
    pub(crate) graceful: Mutex<Option<Arc<GracefulShutdown>>>,
    /// Set when SIGTERM/SIGINT arrived (`begin_drain`); `portico health` says why not ready.
    pub(crate) drain: Mutex<Option<DrainState>>,
}

impl Control {
    /// `/readyz`: serving and not shutting down.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Not ready from now on (`/readyz` 503, `portico health` non-zero) while the listeners
    /// keep accepting: the caller waits `delay` (drain_delay), then calls `shutdown`.
    pub fn begin_drain(&self, delay: Duration) {
        self.ready.store(false, Ordering::Relaxed);
        if let Ok(mut g) = self.drain.lock() {
            g.get_or_insert(DrainState {
                since: Instant::now(),
                delay,
            });
        }
    }

    /// Since when this instance is shutting down, if it is.
    pub fn drain_state(&self) -> Option<DrainState> {
        self.drain.lock().ok().and_then(|g| *g)
    }

    /// The outcome of the last reload; None before the first one.
    pub fn last_reload(&self) -> Option<ReloadStatus> {
        self.last_reload.lock().ok().and_then(|g| g.clone())
    }

    /// Addresses the listeners are bound to (port 0 in a config becomes the real port).
    pub async fn listener_addrs(&self) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = self
            .listeners
            .lock()
            .await
            .values()
            .map(|h| h.addr)
            .collect();
        v.sort();
        v
    }

    /// Reads the config file again and swaps it in if it is whole and valid; otherwise the
    /// running config keeps serving and the error is returned (and kept for the status page).
    pub async fn reload(&self) -> Result<(), String> {
        let Some(path) = self.config_path.clone() else {
            return Err("this instance was not started from a config file".into());
        };
        let loaded = tokio::task::spawn_blocking(move || config::load(&path))
            .await
            .map_err(|e| e.to_string())?;
        let result = match loaded {
            Ok(cfg) => self.apply(cfg).await,
            Err(errors) => Err(errors.to_string()),
        };
        let status = ReloadStatus {
            at: SystemTime::now(),
            ok: result.is_ok(),
            message: match &result {
                Ok(()) => "reloaded".into(),
                Err(e) => e.clone(),
            },
        };
        match &result {
            Ok(()) => tracing::info!("config reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "reload rejected; the running config keeps serving")
            }
        }
        if let Ok(mut g) = self.last_reload.lock() {
            *g = Some(status);
        }
        result
    }

    /// Swaps in a validated config: new listeners bound first (all or nothing), then the
    /// snapshot, then listeners updated or stopped by difference. Requests in flight finish
    /// on the snapshot they started with.
    pub async fn apply(&self, cfg: Config) -> Result<(), String> {
        let mut listeners = self.listeners.lock().await;
        let mut fresh = Vec::new();
        for l in &cfg.listeners {
            if !listeners.contains_key(&l.bind) {
                let sock = listener::bind_with(l.bind, l.reuse_port).map_err(|e| {
                    format!("cannot listen on {} (listener {:?}): {e}", l.bind, l.name)
                })?;
                fresh.push((sock, l.bind, ListenerSettings::from(l)));
            }
        }
        configure_access_log(&self.proxy, &cfg).map_err(|e| e.to_string())?;
        let old = self.proxy.current.load_full();
        if old.config.workers != cfg.workers {
            // The thread layout and the pools sharded by it are fixed for the process.
            tracing::warn!(
                running = crate::worker::handles().len(),
                "workers changed in the config: it takes effect at the next restart"
            );
        }
        let snapshot = Snapshot::new(cfg, Some(&old));
        snapshot.start_background();
        crate::tls::maintain(&snapshot.config);
        let wanted: HashMap<SocketAddr, ListenerSettings> = snapshot
            .config
            .listeners
            .iter()
            .map(|l| (l.bind, ListenerSettings::from(l)))
            .collect();
        self.proxy.current.store(Arc::new(snapshot));
        drop(old);
        listeners.retain(|bind, h| match wanted.get(bind) {
            Some(settings) => {
                h.runtime.store(ListenerRuntime::new(settings.clone()));
                true
            }
            None => {
                tracing::info!(%bind, "listener removed from the config: no longer accepting");
                let _ = h.stop.send(true);
                false
            }
        });
        for (sock, bind, settings) in fresh {
            let h = self.spawn_listener(sock, settings);
            tracing::info!(%bind, "listener added");
            listeners.insert(bind, h);
        }
        Ok(())
    }

    pub(crate) fn spawn_listener(
        &self,
        sock: tokio::net::TcpListener,
        settings: ListenerSettings,
    ) -> ListenerHandle {
        let addr = sock
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        tracing::info!(listener = %settings.name, %addr, tls = settings.tls.is_some(), "listening");
        let runtime = Arc::new(ArcSwap::new(ListenerRuntime::new(settings)));
        let (stop, rx) = watch::channel(false);
        let shared = Arc::new(listener::ListenerShared::default());
        let serve = |sock: tokio::net::TcpListener| {
            listener::serve(
                sock,
                Arc::clone(&runtime),
                Arc::clone(&self.proxy),
                Arc::clone(&shared),
                rx.clone(),
                self.graceful(),
            )
        };
        let workers = crate::worker::handles();
        let tasks = if workers.is_empty() {
            vec![tokio::spawn(serve(sock))]
        } else {
            // Each worker registers its own descriptor of the one socket with its own
            // poller; the kernel wakes them for a new connection and one accepts it.
            match sock.into_std() {
                Ok(std) => workers
                    .iter()
                    .filter_map(|w| {
                        let _entered = w.enter();
                        match std.try_clone().and_then(tokio::net::TcpListener::from_std) {
                            Ok(sock) => Some(w.spawn(serve(sock))),
                            Err(e) => {
                                tracing::error!(%addr, error = %e, "a worker cannot take its share of the listener");
                                None
                            }
                        }
                    })
                    .collect(),
                Err(e) => {
                    tracing::error!(%addr, error = %e, "cannot hand the listener to the workers");
                    Vec::new()
                }
            }
        };
        ListenerHandle {
            runtime,
            stop,
            tasks,
            shared,
            addr,
        }
    }

    /// Stops accepting (and `/readyz` goes false), lets requests in flight finish for up to
    /// `deadline`, then returns.
    pub async fn shutdown(&self, deadline: Duration) {
        self.begin_drain(Duration::ZERO);
        let handles: Vec<ListenerHandle> = self
            .listeners
            .lock()
            .await
            .drain()
            .map(|(_, h)| h)
            .collect();
        for h in &handles {
            let _ = h.stop.send(true);
        }
        let mut shared = Vec::new();
        for h in handles {
            for t in h.tasks {
                let _ = t.await;
            }
            shared.push(h.shared);
        }
        // A connection accepted before the stop gets its first request answered: the
        // servers (Portico's HTTP/1.1, hyper's h2) would close it at once as idle if told to
        // shut down before that request arrived (behind a PROXY header, a TLS handshake).
        // Bounded, for clients that never send.
        let began = tokio::time::Instant::now();
        let settle = began + FIRST_REQUEST_GRACE.min(deadline);
        while shared.iter().any(|s| s.awaiting_first_request() > 0)
            && tokio::time::Instant::now() < settle
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let graceful = self.graceful.lock().ok().and_then(|mut g| g.take());
        let Some(graceful) = graceful.and_then(|g| Arc::try_unwrap(g).ok()) else {
            return;
        };
        let waiting = graceful.count();
        if waiting > 0 {
            tracing::info!(
                connections = waiting,
                deadline_secs = deadline.as_secs(),
                "waiting for requests in flight"
            );
        }
        // Idle keep-alive connections close now; busy ones after their current request.
        let deadline = deadline.saturating_sub(began.elapsed());
        if tokio::time::timeout(deadline, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("shutdown deadline reached; closing what is left");
        }
    }

    fn graceful(&self) -> Arc<GracefulShutdown> {
        self.graceful
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(Arc::clone))
            .unwrap_or_else(|| Arc::new(GracefulShutdown::new()))
    }
}

/// Opens (or keeps, when unchanged) the access log the config asks for.
pub(crate) fn configure_access_log(proxy: &Proxy, cfg: &Config) -> Result<(), StartError> {
    use crate::access_log::{AccessLog, Format, Target};
    let format = match cfg.log.access_format.as_deref() {
        Some("json") => Format::Json,
        _ => Format::W3c,
    };
    let target = match cfg.log.access_log.as_deref() {
        None | Some("off") => None,
        Some("stdout") => Some(Target::Stdout),
        Some(path) => Some(Target::File(PathBuf::from(path))),
    };
    let current = proxy.access_log.load_full();
    let unchanged = match (&current, &target) {
        (Some(c), Some(t)) => c.target == *t && c.format == format,
        (None, None) => true,
        _ => false,
    };
    if unchanged {
        return Ok(());
    }
    let next = match target {
        None => None,
        Some(t) => {
            let path = match &t {
                Target::Stdout => "stdout".to_string(),
                Target::File(p) => p.display().to_string(),
            };
            Some(
                AccessLog::open(t, format)
                    .map_err(|source| StartError::AccessLog { path, source })?,
            )
        }
    };
    proxy.access_log.store(next);
    Ok(())
}
