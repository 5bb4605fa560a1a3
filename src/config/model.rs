//! The validated runtime model: what the rest of Portico reads. Built only by `compile`.

use crate::rules::RuleSet;
use crate::tls::ListenerTls;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A whole, valid configuration. Immutable once built; reload builds a new one.
pub struct Config {
    /// The config file this was read from; a reload reads the same path again.
    pub path: PathBuf,
    /// When this config was read (shown on the status page and in metrics).
    pub loaded_at: SystemTime,
    /// Tokio worker threads; None: one per CPU.
    pub workers: Option<usize>,
    /// How long a graceful shutdown waits for requests in flight before closing them.
    pub shutdown_timeout: Duration,
    /// After SIGTERM: report not-ready at once but keep accepting this long (so keepalived or
    /// an outer balancer moves traffic first), then stop accepting and drain.
    pub drain_delay: Duration,
    /// SHA-256 (hex) of the config file's bytes as read: equal on two instances exactly when
    /// `sha256sum` of their files is (docs/high-availability.md).
    pub digest: String,
    /// Every `[[listener]]`, in config order.
    pub listeners: Vec<ListenerConfig>,
    /// `[admin]`: the status page, metrics and reload API; None when the table is absent.
    pub admin: Option<AdminConfig>,
    /// The ARR box's hosts file: names answered before DNS.
    pub resolve: Arc<HashMap<String, Vec<IpAddr>>>,
    pub(crate) upstream: UpstreamConfig,
    /// Each farm's one spec, shared with its run-time `farm::Farm`; a rule's `FarmId` is its
    /// index here.
    pub farms: Vec<Arc<FarmConfig>>,
    /// The URL Rewrite rules, compiled, in config order.
    pub rules: RuleSet,
    /// `[log]`: log level and access log.
    pub log: LogConfig,
    /// `[lockout]`: applies to farms with `lockout = true`; None when the table is absent.
    pub lockout: Option<Arc<crate::perimeter::lockout::LockoutSettings>>,
}

/// One `[[listener]]`: an address Portico accepts clients on, with its TLS and limits.
pub struct ListenerConfig {
    pub(crate) name: String,
    pub(crate) bind: SocketAddr,
    pub(crate) tls: Option<Arc<ListenerTls>>,
    /// Source ranges allowed to send a PROXY protocol header; empty = PROXY protocol off.
    pub proxy_protocol_from: Vec<Cidr>,
    /// Time to receive a request head; also closes idle keep-alive connections (Portico's
    /// HTTP/1.1 server measures both with one timer, from the end of the previous response).
    pub header_read_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_client: usize,
    /// Peers whose X-Forwarded-For is kept (appended to); everyone else's is replaced.
    pub trusted_proxies: Vec<Cidr>,
    /// SO_REUSEPORT: a second Portico (a new binary) can bind the same address and take
    /// over while this one finishes its requests.
    pub reuse_port: bool,
    pub(crate) max_header_bytes: usize,
    pub(crate) h2_max_concurrent_streams: u32,
    /// New connections per client address (after PROXY protocol) and the table's cap.
    pub max_connection_rate: Option<(crate::perimeter::ratelimit::RateSpec, usize)>,
}

/// `[admin]`: where the status page, metrics and reload API listen.
pub struct AdminConfig {
    /// Address of the admin listener (keep it off the perimeter network).
    pub bind: SocketAddr,
    pub(crate) token_file: Option<PathBuf>,
}

pub(crate) struct UpstreamConfig {
    pub(crate) source_address: Option<IpAddr>,
    pub(crate) ca_files: Vec<PathBuf>,
    pub(crate) connect_timeout: Duration,
    pub(crate) pool_idle_timeout: Duration,
    pub(crate) pool_max_idle_per_member: usize,
    /// How often member host names are resolved again (every address is a member).
    pub dns_refresh: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LoadBalancing {
    WeightedRoundRobin,
    LeastRequests,
    LeastResponseTime,
    PowerOfTwoChoices,
    /// ARR's RequestHash: a server variable, or named query-string values.
    RequestHash(HashKey),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HashKey {
    /// `REMOTE_ADDR`, `HTTP_HOST`, `URL`, `QUERY_STRING`, `REQUEST_URI` or `HTTP_<HEADER>`.
    Variable(String),
    /// Values of these query-string names (ARR's queryStringNames).
    Query(Vec<String>),
}

impl LoadBalancing {
    pub(crate) const ACCEPTED: &'static str = "\"weighted-round-robin\" (default), \"least-requests\", \"least-response-time\", \"power-of-two\", \"request-hash\" (with hash = \"VARIABLE\" or hash_query = [names])";

    /// Parses everything but the hash key, which `compile` fills in.
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "weighted-round-robin" | "round-robin" | "weightedroundrobin" => {
                Some(LoadBalancing::WeightedRoundRobin)
            }
            "least-requests" | "leastrequests" => Some(LoadBalancing::LeastRequests),
            "least-response-time" | "leastresponsetime" => Some(LoadBalancing::LeastResponseTime),
            "power-of-two" | "p2c" | "power-of-two-choices" => {
                Some(LoadBalancing::PowerOfTwoChoices)
            }
            "request-hash" | "requesthash" | "hash" => Some(LoadBalancing::RequestHash(
                HashKey::Variable("URL".to_string()),
            )),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemberState {
    Available,
    Draining,
    Unavailable,
}

pub(crate) struct MemberConfig {
    /// Host name or IP address, no port (ports come from bridging).
    pub address: String,
    pub(crate) weight: u32,
    pub(crate) http_port: u16,
    pub(crate) https_port: u16,
    pub(crate) state: MemberState,
}

/// One active health check of a farm's members, as compiled.
#[derive(Clone)]
pub struct HealthConfig {
    /// Name of the check on the status page and in metrics: `name`, else the path, else
    /// the URL (or `tcp:PORT`).
    pub label: String,
    /// The path prefix this check guards; None: the whole member.
    pub path: Option<String>,
    /// Port to check instead of the member's traffic port.
    pub port: Option<u16>,
    /// A plain TCP connect instead of an HTTP GET.
    pub tcp: bool,
    pub(crate) url: String,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) expect: Vec<(u16, u16)>,
    pub(crate) body: Option<String>,
    pub(crate) host: Option<String>,
    pub(crate) fall: u32,
    pub(crate) rise: u32,
}

pub(crate) struct AffinityConfig {
    pub(crate) cookie: String,
}

/// Passive failure detection from live traffic (ARR's liveTrafficFailureCodes).
#[derive(Debug, Clone)]
pub struct LiveTrafficConfig {
    pub(crate) failure_codes: Vec<(u16, u16)>,
    /// This many failures within `window` take a member out...
    pub failures: u32,
    pub(crate) window: Duration,
    /// ...until an active check passes or, without checks, until a probe after `backoff`.
    pub backoff: Duration,
}

impl Default for LiveTrafficConfig {
    fn default() -> Self {
        LiveTrafficConfig {
            failure_codes: vec![(500, 599)],
            failures: 5,
            window: Duration::from_secs(30),
            backoff: Duration::from_secs(10),
        }
    }
}

/// One `[[farm]]` as compiled: members, balancing, timeouts and TLS towards members.
pub struct FarmConfig {
    pub(crate) name: String,
    pub(crate) members: Vec<MemberConfig>,
    pub(crate) ssl_offload: bool,
    /// Per-read idle timeout towards members (ARR's proxy timeout).
    pub timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) load_balancing: LoadBalancing,
    /// The first of `health_checks` (what a farm with one check has).
    pub health: Option<HealthConfig>,
    pub(crate) affinity: Option<AffinityConfig>,
    pub(crate) preserve_host: bool,
    pub(crate) x_forwarded: bool,
    /// TLS client settings for re-encryption to members.
    pub tls: Arc<rustls::ClientConfig>,
    pub(crate) live_traffic: LiveTrafficConfig,
    /// Cap on NTLM/Negotiate-pinned connections per member; beyond it clients get 503.
    pub max_pinned_per_member: u32,
    /// From `[upstream]`: idle connections kept per member and scheme, and for how long
    /// (never longer than `timeout`).
    pub pool_max_idle: usize,
    pub(crate) pool_idle_timeout: Duration,
    /// Every active check, in config order (`health = { .. }` or `health = [ { .. }, .. ]`).
    pub health_checks: Vec<HealthConfig>,
    /// Sign-ins through this farm are counted and protected (`[lockout]`).
    pub lockout: bool,
}

/// `[log]` as compiled.
pub struct LogConfig {
    /// `tracing` filter directive such as `info` or `portico=debug`; None: `info` (RUST_LOG wins over both).
    pub level: Option<String>,
    pub(crate) access_log: Option<String>,
    pub(crate) access_format: Option<String>,
}

/// An address range such as `10.0.0.0/24` (PROXY protocol sources, trusted proxies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// First address of the range (host bits may be set; they are ignored).
    pub addr: IpAddr,
    /// Prefix length in bits: 0..=32 for IPv4, 0..=128 for IPv6.
    pub prefix: u8,
}

impl Cidr {
    pub(crate) fn parse(text: &str) -> Result<Cidr, String> {
        let err = || {
            format!("invalid address range {text:?}: expected an address or CIDR range such as \"10.0.0.0/24\" or \"::1/128\"")
        };
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| err())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| err())?,
            None => max,
        };
        if prefix > max {
            return Err(err());
        }
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` is in the range; an IPv4-mapped IPv6 address counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_contains_addresses_in_range_only() {
        let net = Cidr::parse("10.0.0.0/24").unwrap();
        assert!(net.contains("10.0.0.77".parse().unwrap()));
        assert!(!net.contains("10.0.1.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.0.0.5".parse().unwrap()));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        let one = Cidr::parse("::1").unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nonsense").is_err());
    }
}
