//! `portico run`: bind every listener, serve the config, reload it without dropping
//! anything (SIGHUP, `portico reload`, the admin API), stop gracefully on SIGTERM/SIGINT.

use crate::config::{self, Config};
use crate::listener::{self, ListenerRuntime, ListenerSettings};
use crate::proxy::{Proxy, Snapshot};
use arc_swap::ArcSwap;
use hyper_util::server::graceful::GracefulShutdown;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the access log {path}: {source}")]
    AccessLog {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr} (listener {name:?}): {source}")]
    Bind {
        name: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The outcome of the last reload, for logs and the status page.
#[derive(Debug, Clone)]
pub struct ReloadStatus {
    pub at: SystemTime,
    pub ok: bool,
    pub message: String,
}

struct ListenerHandle {
    runtime: Arc<ArcSwap<ListenerRuntime>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    addr: SocketAddr,
}

/// A running Portico: the proxy state, its listeners, and the controls the admin listener
/// and signals use.
pub struct Control {
    pub proxy: Arc<Proxy>,
    /// The file reloads read again (None for a config built in memory).
    pub config_path: Option<PathBuf>,
    pub started_at: SystemTime,
    /// `/readyz`: true once serving, false from the start of a graceful shutdown.
    ready: AtomicBool,
    last_reload: Mutex<Option<ReloadStatus>>,
    listeners: tokio::sync::Mutex<HashMap<SocketAddr, ListenerHandle>>,
    /// Taken at shutdown to tell every connection to finish and close.
    graceful: Mutex<Option<Arc<GracefulShutdown>>>,
}

impl Control {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

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

    fn spawn_listener(
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
        let task = tokio::spawn(listener::serve(
            sock,
            Arc::clone(&runtime),
            Arc::clone(&self.proxy),
            rx,
            self.graceful(),
        ));
        ListenerHandle {
            runtime,
            stop,
            task,
            addr,
        }
    }

    /// Stops accepting (and `/readyz` goes false), lets requests in flight finish for up to
    /// `deadline`, then returns.
    pub async fn shutdown(&self, deadline: Duration) {
        self.ready.store(false, Ordering::Relaxed);
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
        for h in handles {
            let _ = h.task.await;
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
fn configure_access_log(proxy: &Proxy, cfg: &Config) -> Result<(), StartError> {
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

/// Binds all listeners (all or nothing) and starts serving `config`.
pub async fn start(config: Config) -> Result<Arc<Control>, StartError> {
    start_from(config, None).await
}

/// Like `start`, remembering `path` for reloads.
pub async fn start_from(config: Config, path: Option<PathBuf>) -> Result<Arc<Control>, StartError> {
    let mut bound = Vec::new();
    for l in &config.listeners {
        let sock =
            listener::bind_with(l.bind, l.reuse_port).map_err(|source| StartError::Bind {
                name: l.name.clone(),
                addr: l.bind,
                source,
            })?;
        bound.push((sock, l.bind, ListenerSettings::from(l)));
    }
    let admin = match &config.admin {
        // The admin listener follows the proxy listeners: a new process upgrading beside
        // this one must be able to bind it too.
        Some(a) => Some(
            listener::bind_with(a.bind, config.listeners.iter().any(|l| l.reuse_port)).map_err(
                |source| StartError::Bind {
                    name: "admin".into(),
                    addr: a.bind,
                    source,
                },
            )?,
        ),
        None => None,
    };
    let proxy = Proxy::new(Snapshot::new(config, None));
    configure_access_log(&proxy, &proxy.current.load().config)?;
    proxy.current.load().start_background();
    crate::tls::maintain(&proxy.current.load().config);
    let control = Arc::new(Control {
        proxy: Arc::new(proxy),
        config_path: path,
        started_at: SystemTime::now(),
        ready: AtomicBool::new(false),
        last_reload: Mutex::new(None),
        listeners: tokio::sync::Mutex::new(HashMap::new()),
        graceful: Mutex::new(Some(Arc::new(GracefulShutdown::new()))),
    });
    {
        let mut listeners = control.listeners.lock().await;
        for (sock, bind, settings) in bound {
            let h = control.spawn_listener(sock, settings);
            listeners.insert(bind, h);
        }
    }
    if let Some(sock) = admin {
        tracing::info!(addr = %sock.local_addr().map(|a| a.to_string()).unwrap_or_default(), "admin listener");
        tokio::spawn(crate::admin::serve(sock, Arc::clone(&control)));
    }
    control.ready.store(true, Ordering::Relaxed);
    Ok(control)
}

/// Serves `path` until SIGTERM or SIGINT; SIGHUP reloads.
pub async fn run_until_signal(config: Config, path: PathBuf) -> Result<(), StartError> {
    use tokio::signal::unix::{signal, SignalKind};
    let control = start_from(config, Some(path)).await?;
    crate::memory::spawn_trimmer(Duration::from_secs(5));
    crate::notify::notify("READY=1");
    let mut hup = signal(SignalKind::hangup()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    let mut usr1 = signal(SignalKind::user_defined1()).ok();
    loop {
        tokio::select! {
            _ = async { match usr1.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {
                if let Some(log) = control.proxy.access_log.load_full() {
                    tracing::info!("SIGUSR1: reopening the access log");
                    log.reopen();
                }
            }
            _ = async { match hup.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {
                tracing::info!("SIGHUP: reloading the config");
                crate::notify::notify("RELOADING=1");
                let _ = control.reload().await;
                crate::notify::notify("READY=1");
            }
            _ = async { match term.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    tracing::info!("stopping: no new connections; finishing requests in flight");
    crate::notify::notify("STOPPING=1");
    let deadline = control.proxy.current.load().config.shutdown_timeout;
    control.shutdown(deadline).await;
    tracing::info!("stopped");
    Ok(())
}
