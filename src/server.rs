//! `portico run`: bind every listener, serve the config, stop gracefully on SIGTERM/SIGINT.

use crate::config::Config;
use crate::listener::{self, ListenerSettings};
use crate::proxy::{Proxy, Snapshot};
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A running Portico: its listeners and the way to stop it.
pub struct Running {
    pub proxy: Arc<Proxy>,
    pub addrs: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
    graceful: Arc<GracefulShutdown>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} (listener {name:?}): {source}")]
    Bind {
        name: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds all listeners (all or nothing) and starts serving.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let mut bound = Vec::new();
    for l in &config.listeners {
        let sock = listener::bind(l.bind).map_err(|source| StartError::Bind {
            name: l.name.clone(),
            addr: l.bind,
            source,
        })?;
        bound.push((sock, ListenerSettings::from(l)));
    }
    let snapshot = Snapshot::new(config, None);
    snapshot.start_background();
    let proxy = Arc::new(Proxy::new(snapshot));
    let (shutdown, rx) = watch::channel(false);
    let graceful = Arc::new(GracefulShutdown::new());
    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
    for (sock, settings) in bound {
        let addr = sock.local_addr().map_err(|source| StartError::Bind {
            name: settings.name.clone(),
            addr: "0.0.0.0:0".parse().expect("literal address"),
            source,
        })?;
        tracing::info!(listener = %settings.name, %addr, tls = settings.tls.is_some(), "listening");
        addrs.push(addr);
        tasks.push(tokio::spawn(listener::serve(
            sock,
            settings,
            Arc::clone(&proxy),
            rx.clone(),
            Arc::clone(&graceful),
        )));
    }
    Ok(Running {
        proxy,
        addrs,
        shutdown,
        graceful,
        tasks,
    })
}

impl Running {
    /// Stops accepting, lets requests in flight finish for up to `deadline`, then returns.
    pub async fn shutdown(self, deadline: Duration) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let graceful = match Arc::try_unwrap(self.graceful) {
            Ok(g) => g,
            Err(_) => return,
        };
        if tokio::time::timeout(deadline, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                deadline_secs = deadline.as_secs(),
                "requests still in flight at the shutdown deadline; closing them"
            );
        }
    }
}

/// Serves until SIGTERM or SIGINT.
pub async fn run_until_signal(config: Config) -> Result<(), StartError> {
    let running = start(config).await?;
    wait_for_stop_signal().await;
    tracing::info!("stopping: no new connections; finishing requests in flight");
    running.shutdown(Duration::from_secs(30)).await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
