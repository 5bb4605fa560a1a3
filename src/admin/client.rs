//! `portico reload`: asks a running Portico, through its admin listener, to reload.

use crate::config::AdminConfig;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::net::SocketAddr;
use std::time::Duration;

/// Why a reload request did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("cannot reach the admin listener at {addr}: {reason} (is portico running with this config?)")]
    /// Nothing answers on the `[admin]` address: usually no instance runs with this config.
    Unreachable {
        /// The admin address from the config.
        addr: SocketAddr,
        /// Why connecting or the exchange failed.
        reason: String,
    },
    /// The admin token file named in `[admin]` cannot be read.
    #[error("cannot read the admin token file {file}: {source}")]
    Token {
        /// The token file as the config names it.
        file: String,
        /// Why reading failed.
        source: std::io::Error,
    },
    #[error("the running instance refused the reload ({status}): {message}")]
    /// The instance answered with an error status: it did not reload (e.g. a rejected token, or a new config that does not compile).
    Refused {
        /// HTTP status of the answer.
        status: u16,
        /// The instance's explanation, printed as is.
        message: String,
    },
}

/// What the running instance answered to an accepted reload.
#[derive(Debug)]
pub struct Reloaded {
    /// The running instance's own summary of the reload, printed as is.
    pub message: String,
    /// The file the running instance re-read.
    pub config_file: Option<String>,
}

/// The address to connect to for a listener bound to `bind` (an unspecified address, such
/// as 0.0.0.0, is reached on loopback).
pub fn connect_addr(bind: SocketAddr) -> SocketAddr {
    let mut a = bind;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    a
}

/// POSTs `/api/reload` to the admin listener `admin` describes, with its token.
pub async fn request_reload(admin: &AdminConfig) -> Result<Reloaded, ReloadError> {
    let token = match &admin.token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|source| ReloadError::Token {
                    file: p.display().to_string(),
                    source,
                })?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let addr = connect_addr(admin.bind);
    let unreachable = |reason: String| ReloadError::Unreachable { addr, reason };
    let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| unreachable("connect timed out".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method("POST")
        .uri("/api/reload")
        .header(http::header::HOST, addr.to_string());
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(Full::new(Bytes::new()))
        .map_err(|e| unreachable(e.to_string()))?;
    // A reload re-reads certificates and binds listeners: give it time.
    let resp = tokio::time::timeout(Duration::from_secs(120), sender.send_request(req))
        .await
        .map_err(|_| unreachable("no answer within 120 s".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| unreachable(e.to_string()))?
        .to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let message = json
        .get("message")
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
    if status == 200 {
        Ok(Reloaded {
            message,
            config_file: json
                .get("config_file")
                .and_then(|m| m.as_str())
                .map(str::to_string),
        })
    } else {
        Err(ReloadError::Refused { status, message })
    }
}
