//! Perimeter protection: who may reach what (address ranges), how fast (rate limits), and
//! password spraying stopped before it locks accounts in Active Directory (lockout).
//!
//! | module | owns |
//! | --- | --- |
//! | [`cidr`] | range sets with binary-search lookups; range files followed as they change |
//! | [`ratelimit`] | per-client-address GCRA limiters in bounded tables |
//! | [`lockout`] | failure counters per account and per address, holds, familiar locations |
//! | [`ntlm`] | the user name in Basic and NTLM AUTHENTICATE credentials; name folding |
//!
//! The request path calls in from `proxy::decide` (rate limit and lockout around
//! forwarding) and `listener::serve` (connection rate at accept). docs/perimeter.md is the
//! manual.

pub mod cidr;
pub mod lockout;
pub mod ntlm;
pub mod ratelimit;

use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};

/// Perimeter state that outlives a config reload: what was counted stays counted.
#[derive(Default)]
pub struct Perimeter {
    pub(crate) lockout: lockout::Lockout,
    /// Requests answered 429 by a rule's rate limit.
    pub rate_limited_requests: AtomicU64,
    /// Connections closed at accept by a listener's `max_connection_rate`.
    pub rate_limited_connections: AtomicU64,
    /// Each listener's connection-rate limiter, for table sizes in `/metrics`.
    connection_limiters: Mutex<Vec<(String, Weak<ratelimit::RateLimiter>)>>,
}

impl Perimeter {
    /// Remembers a listener's connection-rate limiter for `/metrics` (dropped with it).
    pub fn register_connection_limiter(&self, listener: &str, l: &Arc<ratelimit::RateLimiter>) {
        let mut v = self
            .connection_limiters
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        v.retain(|(_, w)| w.strong_count() > 0);
        v.push((listener.to_string(), Arc::downgrade(l)));
    }

    /// Live connection-rate limiters by listener name.
    pub fn connection_limiters(&self) -> Vec<(String, Arc<ratelimit::RateLimiter>)> {
        self.connection_limiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|(n, w)| w.upgrade().map(|l| (n.clone(), l)))
            .collect()
    }
}

/// The client address the perimeter judges: the connection's peer (already the PROXY
/// protocol source where configured), or, when the peer is a trusted proxy, the address that
/// proxy appended last to `X-Forwarded-For` (entries before it could be forged by anyone).
pub fn client_addr(peer: IpAddr, trusted_peer: bool, headers: &http::HeaderMap) -> IpAddr {
    if !trusted_peer {
        return peer;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| parse_forwarded_ip(v.trim()))
        .unwrap_or(peer)
}

fn parse_forwarded_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    // `[2001:db8::1]:443` or `203.0.113.9:443`.
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']').and_then(|(a, _)| a.parse().ok());
    }
    s.rsplit_once(':').and_then(|(a, _)| a.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_address_is_used_only_from_a_trusted_peer() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let mut h = http::HeaderMap::new();
        h.append("x-forwarded-for", "1.1.1.1, 203.0.113.9".parse().unwrap());
        assert_eq!(client_addr(peer, false, &h), peer);
        assert_eq!(
            client_addr(peer, true, &h),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        h.append("x-forwarded-for", "[2001:db8::5]:1234".parse().unwrap());
        assert_eq!(
            client_addr(peer, true, &h),
            "2001:db8::5".parse::<IpAddr>().unwrap()
        );
        let mut junk = http::HeaderMap::new();
        junk.append("x-forwarded-for", "unknown".parse().unwrap());
        assert_eq!(client_addr(peer, true, &junk), peer);
    }
}
