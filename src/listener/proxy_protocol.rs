//! PROXY protocol v1 (text) and v2 (binary) headers, as an L4 balancer (HAProxy, IPVS with
//! a helper, AWS NLB, F5) sends them before the client's first byte.
//!
//! `read_header` reads exactly the header and nothing after it: v1 byte by byte up to the
//! CRLF (at most 107 bytes, the spec's limit), v2 the 16-byte fixed part and then exactly the
//! length it announces. Whatever the client sends next (a TLS ClientHello, an HTTP request)
//! stays unread in the socket for the TLS or HTTP layer. Spec:
//! <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The 12 bytes every v2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest v1 line, CRLF included (spec section 2.1).
pub const V1_MAX_LEN: usize = 107;

/// The largest v2 address block accepted. The spec allows 65535; real balancers send the
/// addresses (at most 216 bytes for UNIX) plus a few TLVs (AWS/Azure ids, SSL info). A
/// larger block is refused rather than read.
pub const V2_MAX_ADDR_LEN: usize = 2048;

/// The client as the balancer saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The original client; `None` for v1 `UNKNOWN`, v2 `LOCAL`, or a family Portico does not
    /// turn into a socket address (UNIX, UNSPEC).
    pub source: Option<SocketAddr>,
    /// The address the client connected to on the balancer; `None` when `source` is.
    pub destination: Option<SocketAddr>,
}

/// Why a connection's PROXY header was refused (the connection is then closed).
#[derive(Debug, thiserror::Error)]
pub enum ProxyProtocolError {
    /// No complete header within the listener's header read timeout (the time waited).
    #[error("no complete PROXY protocol header within {0:?}")]
    Timeout(Duration),
    /// The peer closed the connection mid-header.
    #[error("connection closed inside the PROXY protocol header")]
    Truncated,
    /// Reading the socket failed.
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[source] std::io::Error),
    /// The first bytes are neither a v1 nor a v2 header: the peer does not speak PROXY protocol.
    #[error("the connection does not start with a PROXY protocol header (neither \"PROXY \" nor the v2 signature)")]
    NoHeader,
    /// No CRLF within the v1 maximum of 107 bytes.
    #[error("PROXY v1 line longer than {V1_MAX_LEN} bytes without CRLF")]
    V1TooLong,
    /// The v1 line does not parse; says which part.
    #[error("malformed PROXY v1 line: {0}")]
    V1Malformed(&'static str),
    /// A v2 header with a version other than 2 (the number sent).
    #[error("unsupported PROXY v2 version {0} (only 2)")]
    V2Version(u8),
    /// A v2 command other than LOCAL or PROXY (the byte sent).
    #[error("unknown PROXY v2 command {0:#x} (LOCAL = 0, PROXY = 1)")]
    V2Command(u8),
    /// A v2 family/protocol byte Portico does not know (the byte sent).
    #[error("unknown PROXY v2 address family/protocol byte {0:#04x}")]
    V2Family(u8),
    /// The v2 address block is larger than Portico reads (its length in bytes).
    #[error("PROXY v2 address block of {0} bytes exceeds the {V2_MAX_ADDR_LEN}-byte limit")]
    V2TooLong(usize),
    #[error("PROXY v2 address block of {len} bytes is shorter than the {need} its family needs")]
    /// The v2 address block is too short for the addresses its family carries.
    V2ShortAddresses {
        /// Length of the address block sent, in bytes.
        len: usize,
        /// Bytes the family's addresses and ports need.
        need: usize,
    },
}

/// Reads one PROXY v1 or v2 header from `io` within `timeout`, consuming exactly its bytes.
pub async fn read_header<IO: AsyncRead + Unpin>(
    io: &mut IO,
    timeout: Duration,
) -> Result<ProxyHeader, ProxyProtocolError> {
    match tokio::time::timeout(timeout, read_header_inner(io)).await {
        Ok(r) => r,
        Err(_) => Err(ProxyProtocolError::Timeout(timeout)),
    }
}

async fn read_header_inner<IO: AsyncRead + Unpin>(
    io: &mut IO,
) -> Result<ProxyHeader, ProxyProtocolError> {
    // Both versions are told apart by the first 6 bytes ("PROXY " vs "\r\n\r\n\0\r"); both
    // headers are longer than that, so reading 6 never over-reads.
    let mut head = [0u8; 16];
    read_exact(io, &mut head[..6]).await?;
    if &head[..6] == b"PROXY " {
        return read_v1(io).await;
    }
    if head[..6] != V2_SIGNATURE[..6] {
        return Err(ProxyProtocolError::NoHeader);
    }
    read_exact(io, &mut head[6..16]).await?;
    if head[..12] != V2_SIGNATURE {
        return Err(ProxyProtocolError::NoHeader);
    }
    let version = head[12] >> 4;
    let command = head[12] & 0x0f;
    if version != 2 {
        return Err(ProxyProtocolError::V2Version(version));
    }
    let family = head[13];
    let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
    if len > V2_MAX_ADDR_LEN {
        return Err(ProxyProtocolError::V2TooLong(len));
    }
    let mut block = vec![0u8; len];
    read_exact(io, &mut block).await?;
    match command {
        // LOCAL: the balancer's own connection (health check); the family is ignored.
        0x0 => Ok(ProxyHeader {
            source: None,
            destination: None,
        }),
        0x1 => parse_v2_addresses(family, &block),
        other => Err(ProxyProtocolError::V2Command(other)),
    }
}

/// The address block of a v2 PROXY command; TLVs after the addresses are skipped.
fn parse_v2_addresses(family: u8, block: &[u8]) -> Result<ProxyHeader, ProxyProtocolError> {
    let need = |n: usize| {
        if block.len() < n {
            Err(ProxyProtocolError::V2ShortAddresses {
                len: block.len(),
                need: n,
            })
        } else {
            Ok(())
        }
    };
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    match family {
        // TCP over IPv4 (0x11) and UDP over IPv4 (0x12).
        0x11 | 0x12 => {
            need(12)?;
            let src = Ipv4Addr::new(block[0], block[1], block[2], block[3]);
            let dst = Ipv4Addr::new(block[4], block[5], block[6], block[7]);
            Ok(ProxyHeader {
                source: Some(SocketAddr::new(IpAddr::V4(src), port(&block[8..10]))),
                destination: Some(SocketAddr::new(IpAddr::V4(dst), port(&block[10..12]))),
            })
        }
        // TCP / UDP over IPv6.
        0x21 | 0x22 => {
            need(36)?;
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&block[..16]);
            d.copy_from_slice(&block[16..32]);
            Ok(ProxyHeader {
                source: Some(SocketAddr::new(
                    IpAddr::V6(Ipv6Addr::from(s)),
                    port(&block[32..34]),
                )),
                destination: Some(SocketAddr::new(
                    IpAddr::V6(Ipv6Addr::from(d)),
                    port(&block[34..36]),
                )),
            })
        }
        // UNIX stream / datagram: 2 × 108-byte paths; no socket address to report.
        0x31 | 0x32 => {
            need(216)?;
            Ok(ProxyHeader {
                source: None,
                destination: None,
            })
        }
        // UNSPEC: the receiver must accept it and use the real connection's addresses.
        0x00 => Ok(ProxyHeader {
            source: None,
            destination: None,
        }),
        other => Err(ProxyProtocolError::V2Family(other)),
    }
}

/// Reads the rest of a v1 line (after "PROXY ") one byte at a time, so nothing past the
/// CRLF is consumed.
async fn read_v1<IO: AsyncRead + Unpin>(io: &mut IO) -> Result<ProxyHeader, ProxyProtocolError> {
    let mut line = Vec::with_capacity(V1_MAX_LEN);
    line.extend_from_slice(b"PROXY ");
    loop {
        if line.len() >= V1_MAX_LEN {
            return Err(ProxyProtocolError::V1TooLong);
        }
        let mut b = [0u8; 1];
        read_exact(io, &mut b).await?;
        line.push(b[0]);
        if b[0] == b'\n' {
            break;
        }
    }
    parse_v1(&line)
}

/// Parses one complete v1 line, CRLF included.
fn parse_v1(line: &[u8]) -> Result<ProxyHeader, ProxyProtocolError> {
    use ProxyProtocolError::V1Malformed;
    let body = line
        .strip_suffix(b"\r\n")
        .ok_or(V1Malformed("the line must end with CRLF"))?;
    let text = std::str::from_utf8(body).map_err(|_| V1Malformed("not ASCII"))?;
    if !text.is_ascii() {
        return Err(V1Malformed("not ASCII"));
    }
    let mut parts = text.split(' ');
    parts.next(); // "PROXY"
    let proto = parts.next().ok_or(V1Malformed("no protocol"))?;
    if proto == "UNKNOWN" {
        // The rest of the line is to be ignored (spec section 2.1).
        return Ok(ProxyHeader {
            source: None,
            destination: None,
        });
    }
    let fields: Vec<&str> = parts.collect();
    if fields.len() != 4 {
        return Err(V1Malformed(
            "expected \"PROXY TCP4|TCP6 SRC DST SPORT DPORT\" separated by single spaces",
        ));
    }
    let (src, dst) = match proto {
        "TCP4" => (
            IpAddr::V4(parse_v4(fields[0])?),
            IpAddr::V4(parse_v4(fields[1])?),
        ),
        "TCP6" => (
            IpAddr::V6(
                fields[0]
                    .parse::<Ipv6Addr>()
                    .map_err(|_| V1Malformed("bad IPv6 address"))?,
            ),
            IpAddr::V6(
                fields[1]
                    .parse::<Ipv6Addr>()
                    .map_err(|_| V1Malformed("bad IPv6 address"))?,
            ),
        ),
        _ => return Err(V1Malformed("protocol must be TCP4, TCP6 or UNKNOWN")),
    };
    Ok(ProxyHeader {
        source: Some(SocketAddr::new(src, parse_port(fields[2])?)),
        destination: Some(SocketAddr::new(dst, parse_port(fields[3])?)),
    })
}

fn parse_v4(s: &str) -> Result<Ipv4Addr, ProxyProtocolError> {
    // std rejects leading zeros ("010.0.0.1"), which the spec also forbids.
    s.parse()
        .map_err(|_| ProxyProtocolError::V1Malformed("bad IPv4 address"))
}

/// A port: 1-5 decimal digits, no sign, no leading zero (spec: "0" alone is allowed), ≤ 65535.
fn parse_port(s: &str) -> Result<u16, ProxyProtocolError> {
    let bad = ProxyProtocolError::V1Malformed("bad port");
    if s.is_empty()
        || s.len() > 5
        || !s.bytes().all(|b| b.is_ascii_digit())
        || (s.len() > 1 && s.starts_with('0'))
    {
        return Err(bad);
    }
    s.parse().map_err(|_| bad)
}

async fn read_exact<IO: AsyncRead + Unpin>(
    io: &mut IO,
    buf: &mut [u8],
) -> Result<(), ProxyProtocolError> {
    match io.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(ProxyProtocolError::Truncated)
        }
        Err(e) => Err(ProxyProtocolError::Io(e)),
    }
}

/// Parses a header held whole in memory (fuzzing, tests); returns it and the bytes it used.
/// Nothing waits: an in-memory reader never returns `Pending`.
pub fn parse_slice(data: &[u8]) -> Result<(ProxyHeader, usize), ProxyProtocolError> {
    let mut cursor = std::io::Cursor::new(data);
    let polled = {
        let fut = std::pin::pin!(read_header_inner(&mut cursor));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        fut.poll(&mut cx)
    };
    let header = match polled {
        std::task::Poll::Ready(r) => r?,
        std::task::Poll::Pending => unreachable!("an in-memory reader is always ready"),
    };
    Ok((header, cursor.position() as usize))
}

#[cfg(test)]
mod tests;
