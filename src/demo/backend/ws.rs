//! `/ws`: a WebSocket echo (RFC 6455) so tests can prove the proxy carries upgrades.

use http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::body::Payload;
use super::codec::{base64_encode, sha1};
use super::generic::reply;

/// The GUID RFC 6455 appends to the key.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest frame echoed; bigger ones close the socket with 1009 (message too big).
const MAX_FRAME: u64 = 16 * 1024 * 1024;

/// `Sec-WebSocket-Accept` for a client key.
pub fn accept_key(key: &str) -> String {
    let mut input = String::with_capacity(key.len() + WS_GUID.len());
    input.push_str(key.trim());
    input.push_str(WS_GUID);
    base64_encode(&sha1(input.as_bytes()))
}

fn header_has_token(req: &Request<Incoming>, name: http::header::HeaderName, token: &str) -> bool {
    req.headers().get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// Answers the handshake with 101 and spawns the echo on the upgraded connection.
pub(super) fn upgrade(mut req: Request<Incoming>, stop: watch::Receiver<()>) -> Response<Payload> {
    if !header_has_token(&req, UPGRADE, "websocket") {
        return reply(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "expected Upgrade: websocket\n",
        );
    }
    let Some(key) = req
        .headers()
        .get(SEC_WEBSOCKET_KEY)
        .and_then(|k| k.to_str().ok())
    else {
        return reply(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "missing Sec-WebSocket-Key\n",
        );
    };
    let accept = match HeaderValue::from_str(&accept_key(key)) {
        Ok(v) => v,
        Err(_) => return reply(StatusCode::BAD_REQUEST, "text/plain", "bad key\n"),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let mut stop = stop;
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                return;
            }
        };
        tokio::select! {
            _ = super::stopped(&mut stop) => {}
            r = echo(TokioIo::new(upgraded)) => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "websocket echo ended");
                }
            }
        }
    });
    let mut r = Response::new(Payload::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(SEC_WEBSOCKET_ACCEPT, accept);
    r
}

/// Writes one unmasked frame.
async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    fin_opcode: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(10);
    head.push(fin_opcode);
    let len = payload.len();
    if len < 126 {
        head.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        head.push(126);
        head.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        head.push(127);
        head.extend_from_slice(&(len as u64).to_be_bytes());
    }
    w.write_all(&head).await?;
    w.write_all(payload).await?;
    w.flush().await
}

/// Reads client frames, unmasks them and echoes data frames back unmasked (same opcode and
/// FIN bit, so fragmented messages echo fragment by fragment); answers ping with pong and
/// close with close.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> std::io::Result<()> {
    let mut payload = Vec::new();
    loop {
        let mut head = [0u8; 2];
        match s.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let fin_opcode = head[0];
        let opcode = fin_opcode & 0x0F;
        let masked = head[1] & 0x80 != 0;
        let len = match head[1] & 0x7F {
            126 => u64::from(s.read_u16().await?),
            127 => s.read_u64().await?,
            n => u64::from(n),
        };
        if len > MAX_FRAME {
            write_frame(&mut s, 0x88, &1009u16.to_be_bytes()).await?;
            return Ok(());
        }
        let mut mask = [0u8; 4];
        if masked {
            s.read_exact(&mut mask).await?;
        }
        payload.resize(len as usize, 0);
        s.read_exact(&mut payload).await?;
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        match opcode {
            0x0..=0x2 => write_frame(&mut s, fin_opcode & 0x8F, &payload).await?,
            0x8 => {
                write_frame(&mut s, 0x88, &payload).await?;
                return s.shutdown().await;
            }
            0x9 => write_frame(&mut s, 0x8A, &payload).await?,
            0xA => {}
            _ => {
                // Unknown opcode: protocol error (1002).
                write_frame(&mut s, 0x88, &1002u16.to_be_bytes()).await?;
                return Ok(());
            }
        }
    }
}
