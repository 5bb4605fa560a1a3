//! `portico run`: bind every listener, serve the config, reload it without dropping
//! anything (SIGHUP, `portico reload`, the admin API), stop gracefully on SIGTERM/SIGINT.

use crate::config::Config;
use crate::instance::configure_access_log;
pub use crate::instance::{Control, DrainState, ReloadStatus, StartError};
use crate::listener::graceful::GracefulShutdown;
use crate::listener::{self, ListenerSettings};
use crate::proxy::{Proxy, Snapshot};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Binds all listeners (all or nothing) and starts serving `config`.
pub async fn start(config: Config) -> Result<Arc<Control>, StartError> {
    start_from(config, None).await
}

/// Like `start`, remembering `path` for reloads.
pub async fn start_from(config: Config, path: Option<PathBuf>) -> Result<Arc<Control>, StartError> {
    check_open_files_limit(&config);
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
        drain: Mutex::new(None),
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
    if let Some(path) = &control.config_path {
        crate::health::spawn_server(Arc::clone(&control), path);
    }
    control.ready.store(true, Ordering::Relaxed);
    Ok(control)
}

/// Raises the open-files limit and says when it still cannot cover the listeners'
/// `max_connections`: running out shows up as refused connections, never as members failing.
fn check_open_files_limit(config: &Config) {
    let need = crate::os::descriptors_needed(config.listeners.iter().map(|l| l.max_connections));
    match crate::os::raise_open_files_limit() {
        Ok(l) => {
            if l.was < l.soft {
                tracing::debug!(from = l.was, to = l.soft, "raised the open-files limit");
            }
            if l.soft < need {
                tracing::warn!(limit = l.soft, needed = need, "the open-files limit (ulimit -n; LimitNOFILE= under systemd) is below what max_connections allows: past it, new client connections are refused; raise the hard limit or lower max_connections");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open-files limit"),
    }
}

/// Serves `path` until SIGTERM or SIGINT; SIGHUP reloads.
pub async fn run_until_signal(config: Config, path: PathBuf) -> Result<(), StartError> {
    use tokio::signal::unix::{signal, SignalKind};
    let control = start_from(config, Some(path)).await?;
    crate::os::spawn_trimmer(Duration::from_secs(5));
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
    crate::notify::notify("STOPPING=1");
    let drain_delay = control.proxy.current.load().config.drain_delay;
    control.begin_drain(drain_delay);
    if !drain_delay.is_zero() {
        tracing::info!(
            drain_delay_ms = drain_delay.as_millis() as u64,
            "stopping: not ready from now on; still accepting for drain_delay (a second signal skips it)"
        );
        tokio::select! {
            _ = tokio::time::sleep(drain_delay) => {}
            _ = async { match term.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    tracing::info!("stopping: no new connections; finishing requests in flight");
    let deadline = control.proxy.current.load().config.shutdown_timeout;
    control.shutdown(deadline).await;
    tracing::info!("stopped");
    Ok(())
}
