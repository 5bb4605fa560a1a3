//! `portico health --config FILE`: should this instance hold traffic (a keepalived
//! `vrrp_script`, systemd, a monitoring probe)? Works without `[admin]` and without a token.
//!
//! A running instance answers on a Linux *abstract* unix socket named
//! `portico-health/<key>/<pid>`, where `<key>` is derived from the canonical path of its config
//! file. Abstract sockets have no file: nothing to create, no directory to make writable under
//! systemd's `ProtectSystem=strict`, nothing stale after `kill -9` (the name dies with the
//! process). `portico health` finds every such socket for its config in `/proc/net/unix`, so
//! during a binary upgrade the new instance (ready) and the old one (draining) are both heard.
//! The name lives in the network namespace: run `portico health` where Portico runs.
//!
//! The rule (docs/operations.md): ready when the instance started and is not shutting down,
//! at least one listener is bound, and — when rules route to farms at all — at least one of
//! those farms has a member that can take a new request (available and up). One farm down
//! on its own is the farm's problem, which the peer sees too; every farm down from here
//! means this instance is cut off from the internal network, which the peer may not be.

use crate::instance::Control;
use std::io::Read;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How long `portico health` waits for an instance's answer: under keepalived's script
/// `timeout` (2 s in contrib/keepalived), so a wedged instance is reported, not timed out.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// Why `portico health` cannot say the instance is ready (keepalived then lowers its priority).
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The config file cannot be read (its path names the instance's health socket).
    #[error("cannot read the config file {path}: {source}")]
    Config {
        /// The config file given.
        path: String,
        /// Why reading failed.
        source: std::io::Error,
    },
    #[error("not ready: no running Portico serves {path} in this network namespace (no health socket @{prefix}<pid> in /proc/net/unix); is `portico run --config {path}` running here?")]
    /// No instance running with this config has its health socket in this network namespace.
    NotRunning {
        /// The config file given.
        path: String,
        /// Start of the abstract socket name derived from the config path.
        prefix: String,
    },
    /// `/proc/net/unix` cannot be read to find the instance's socket.
    #[error("cannot list unix sockets in /proc/net/unix: {0}")]
    Proc(std::io::Error),
}

/// What one instance said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub(crate) ready: bool,
    /// One line for people: why (not) ready.
    pub line: String,
    /// The running config's digest (`config::digest`).
    pub digest: Option<String>,
}

/// `portico-health/<key>/`: the name prefix every instance serving `config_path` uses.
pub fn socket_prefix(config_path: &Path) -> std::io::Result<String> {
    let canonical = config_path.canonicalize()?;
    let digest = crate::config::digest(canonical.as_os_str().as_encoded_bytes());
    Ok(format!("portico-health/{}/", &digest[..16]))
}

/// Answers health queries for `control` until the process ends. Not fatal when it cannot
/// bind: the instance serves anyway, and `portico health` then says nobody answers.
pub fn spawn_server(control: Arc<Control>, config_path: &Path) {
    let name = match socket_prefix(config_path) {
        Ok(p) => format!("{p}{}", std::process::id()),
        Err(e) => {
            tracing::warn!(config = %config_path.display(), error = %e, "no health socket: `portico health` will not reach this instance");
            return;
        }
    };
    let listener = match bind_abstract(&name) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(socket = %format!("@{name}"), error = %e, "cannot bind the health socket: `portico health` will not reach this instance");
            return;
        }
    };
    tracing::debug!(socket = %format!("@{name}"), "health socket for `portico health`");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let control = Arc::clone(&control);
            tokio::spawn(async move {
                let answer = readiness(&control).await;
                let text = format!(
                    "{} {}\ndigest {}\n",
                    if answer.ready { "ready" } else { "not-ready" },
                    answer.line,
                    answer.digest.unwrap_or_default()
                );
                let _ =
                    tokio::time::timeout(QUERY_TIMEOUT, stream.write_all(text.as_bytes())).await;
            });
        }
    });
}

fn bind_abstract(name: &str) -> std::io::Result<tokio::net::UnixListener> {
    let addr = UnixAddr::from_abstract_name(name.as_bytes())?;
    let std = std::os::unix::net::UnixListener::bind_addr(&addr)?;
    std.set_nonblocking(true)?;
    tokio::net::UnixListener::from_std(std)
}

/// The readiness rule (module doc), as this instance sees itself now.
pub async fn readiness(control: &Control) -> Answer {
    let snap = control.proxy.current.load_full();
    let digest = Some(snap.config.digest.clone());
    let not_ready = |line: String| Answer {
        ready: false,
        line,
        digest: digest.clone(),
    };
    if let Some(d) = control.drain_state() {
        let left = d.delay.saturating_sub(d.since.elapsed());
        return not_ready(if left.is_zero() {
            format!(
                "shutting down ({:.1} s since SIGTERM): no longer accepting, finishing requests in flight",
                d.since.elapsed().as_secs_f64()
            )
        } else {
            format!(
                "draining ({:.1} s since SIGTERM): still accepting for {:.1} s of drain_delay, then finishing requests in flight",
                d.since.elapsed().as_secs_f64(),
                left.as_secs_f64()
            )
        });
    }
    if !control.is_ready() {
        return not_ready("starting or stopping: not serving".into());
    }
    let listeners = control.listener_addrs().await.len();
    if listeners == 0 {
        return not_ready("no listener is bound".into());
    }
    let routed = snap.config.rules.routed_farms();
    let mut usable = 0;
    let mut detail = Vec::new();
    for &id in &routed {
        let farm = snap.farm_by_id(id);
        let set = farm.members();
        let up = set.members.iter().filter(|m| m.is_selectable()).count();
        if up > 0 {
            usable += 1;
        }
        detail.push(format!("{} {up}/{}", farm.name, set.members.len()));
    }
    let farms = format!(
        "{usable} of {} routed farm(s) can take requests ({})",
        routed.len(),
        detail.join(", ")
    );
    if !routed.is_empty() && usable == 0 {
        return not_ready(format!(
            "no farm that a rule routes to has a member that can take a request: {farms}"
        ));
    }
    Answer {
        ready: true,
        line: format!(
            "pid {}, {listeners} listener(s) bound, {farms}",
            std::process::id()
        ),
        digest,
    }
}

/// Asks every running instance that serves `config_path` (in this network namespace).
pub fn query(config_path: &Path) -> Result<Vec<Answer>, HealthError> {
    let shown = config_path.display().to_string();
    let prefix = socket_prefix(config_path).map_err(|source| HealthError::Config {
        path: shown.clone(),
        source,
    })?;
    let table = std::fs::read_to_string("/proc/net/unix").map_err(HealthError::Proc)?;
    let mut names: Vec<&str> = table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(7))
        .filter_map(|p| p.strip_prefix('@'))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    names.sort_unstable();
    names.dedup();
    let answers: Vec<Answer> = names.iter().filter_map(|n| ask(n)).collect();
    if answers.is_empty() {
        return Err(HealthError::NotRunning {
            path: shown,
            prefix,
        });
    }
    Ok(answers)
}

/// One instance's answer, or None when nobody listens there (any more).
fn ask(name: &str) -> Option<Answer> {
    let addr = UnixAddr::from_abstract_name(name.as_bytes()).ok()?;
    let s = UnixStream::connect_addr(&addr).ok()?;
    s.set_read_timeout(Some(QUERY_TIMEOUT)).ok()?;
    let mut text = String::new();
    if let Err(e) = s.take(64 * 1024).read_to_string(&mut text) {
        let pid = name.rsplit('/').next().unwrap_or("?");
        return Some(Answer {
            ready: false,
            line: format!("the instance with pid {pid} did not answer: {e}"),
            digest: None,
        });
    }
    parse_answer(&text)
}

fn parse_answer(text: &str) -> Option<Answer> {
    let mut lines = text.lines();
    let first = lines.next()?;
    let (ready, line) = if let Some(rest) = first.strip_prefix("ready ") {
        (true, rest)
    } else {
        (false, first.strip_prefix("not-ready ")?)
    };
    let digest = lines
        .find_map(|l| l.strip_prefix("digest "))
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(String::from);
    Some(Answer {
        ready,
        line: line.to_string(),
        digest,
    })
}

/// The one line `portico health` prints, and whether it exits 0. Any ready instance is
/// enough (an upgrade runs the new one beside the draining old one). When the file on disk
/// is no longer what the instance runs, the line says so (a reload is pending).
pub fn verdict(answers: &[Answer], file_digest: Option<&str>) -> (bool, String) {
    let stale = |a: &Answer| match (a.digest.as_deref(), file_digest) {
        (Some(running), Some(file)) if running != file => format!(
            " (note: the file on disk differs from the running config {}: reload pending)",
            &running[..running.len().min(12)]
        ),
        _ => String::new(),
    };
    if let Some(a) = answers.iter().find(|a| a.ready) {
        let others = answers.len() - 1;
        let also = if others > 0 {
            format!("; {others} other instance(s) for this config are not ready")
        } else {
            String::new()
        };
        return (true, format!("ready: {}{also}{}", a.line, stale(a)));
    }
    let why: Vec<&str> = answers.iter().map(|a| a.line.as_str()).collect();
    (false, format!("not ready: {}", why.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_both_ways_and_reject_garbage() {
        let a = parse_answer("ready pid 7, 1 listener(s) bound\ndigest abc\n").unwrap();
        assert!(a.ready);
        assert_eq!(a.line, "pid 7, 1 listener(s) bound");
        assert_eq!(a.digest.as_deref(), Some("abc"));
        let b = parse_answer("not-ready draining\ndigest \n").unwrap();
        assert!(!b.ready);
        assert_eq!(b.digest, None);
        assert_eq!(parse_answer("hello\n"), None);
        assert_eq!(parse_answer(""), None);
    }

    #[test]
    fn any_ready_instance_wins_and_a_changed_file_is_noted() {
        let ready = Answer {
            ready: true,
            line: "pid 2".into(),
            digest: Some("aaaa".into()),
        };
        let old = Answer {
            ready: false,
            line: "draining".into(),
            digest: Some("aaaa".into()),
        };
        let (ok, line) = verdict(&[old.clone(), ready.clone()], Some("aaaa"));
        assert!(ok, "{line}");
        assert!(line.starts_with("ready: pid 2; 1 other"), "{line}");
        let (ok, line) = verdict(&[ready], Some("bbbb"));
        assert!(ok);
        assert!(line.contains("reload pending"), "{line}");
        let (ok, line) = verdict(&[old], Some("aaaa"));
        assert!(!ok);
        assert_eq!(line, "not ready: draining");
    }
}
