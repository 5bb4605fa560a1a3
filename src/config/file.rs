//! The config file as written: serde types that mirror the TOML, nothing more.
//!
//! Nothing outside `config` reads these; `config::compile` turns them into the
//! validated runtime model. Values that validation may reject are `Spanned` so an
//! error can name the line.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub workers: Option<S<usize>>,
    pub shutdown_timeout: Option<S<String>>,
    pub drain_delay: Option<S<String>>,
    #[serde(default)]
    pub listener: Vec<S<Listener>>,
    pub admin: Option<S<Admin>>,
    #[serde(default)]
    pub resolve: BTreeMap<String, S<Vec<S<String>>>>,
    pub upstream: Option<S<Upstream>>,
    #[serde(default)]
    pub farm: Vec<S<Farm>>,
    #[serde(default)]
    pub rule: Vec<S<Rule>>,
    pub log: Option<S<Log>>,
    pub lockout: Option<S<Lockout>>,
    #[serde(default)]
    pub acme: Vec<S<Acme>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub bind: S<String>,
    pub name: Option<S<String>>,
    pub tls: Option<S<ListenerTls>>,
    pub proxy_protocol: Option<S<ProxyProtocol>>,
    pub header_read_timeout: Option<S<String>>,
    pub max_connections: Option<S<usize>>,
    pub max_connections_per_client: Option<S<usize>>,
    #[serde(default)]
    pub trusted_proxies: Vec<S<String>>,
    pub reuse_port: Option<bool>,
    pub max_header_bytes: Option<S<usize>>,
    pub h2_max_concurrent_streams: Option<S<u32>>,
    pub max_connection_rate: Option<S<ConnectionRate>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    pub certificates: S<Vec<S<Certificate>>>,
    #[serde(default)]
    pub http1_only: Vec<S<String>>,
    pub min_version: Option<S<String>>,
    pub handshake_timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    pub cert: Option<S<String>>,
    pub key: Option<S<String>>,
    /// Instead of cert/key: the `[[acme]]` entry that obtains this certificate.
    pub acme: Option<S<String>>,
    #[serde(default)]
    pub default: bool,
    #[serde(default)]
    pub allow_expired: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyProtocol {
    pub from: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub bind: Option<S<String>>,
    pub token_file: Option<S<String>>,
}

/// A value written either as one string or as a list of strings (`ca = "a.pem"` or `ca = ["a.pem", "b.pem"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a file name or a list of file names")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_string()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<String>()? {
                    out.push(v);
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub source_address: Option<S<String>>,
    pub ca: Option<S<OneOrMany>>,
    pub connect_timeout: Option<S<String>>,
    pub pool_idle_timeout: Option<S<String>>,
    pub pool_max_idle_per_member: Option<S<usize>>,
    pub dns_refresh: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Farm {
    pub name: S<String>,
    pub members: S<Vec<S<Member>>>,
    pub http_port: Option<S<u16>>,
    pub https_port: Option<S<u16>>,
    pub ssl_offload: Option<bool>,
    pub timeout: Option<S<String>>,
    pub connect_timeout: Option<S<String>>,
    pub load_balancing: Option<S<String>>,
    pub health: Option<S<HealthList>>,
    pub affinity: Option<S<Affinity>>,
    pub preserve_host: Option<bool>,
    pub x_forwarded: Option<bool>,
    pub insecure_skip_verify: Option<bool>,
    pub ca: Option<S<OneOrMany>>,
    pub hash: Option<S<String>>,
    pub hash_query: Option<Vec<String>>,
    pub live_traffic: Option<S<LiveTraffic>>,
    pub max_pinned_per_member: Option<S<u32>>,
    pub lockout: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveTraffic {
    pub failure_codes: Option<S<String>>,
    pub failures: Option<S<u32>>,
    pub window: Option<S<String>>,
    pub backoff: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub address: S<String>,
    pub weight: Option<S<u32>>,
    pub http_port: Option<S<u16>>,
    pub https_port: Option<S<u16>>,
    pub enabled: Option<bool>,
    pub state: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Required unless `tcp = true`.
    pub url: Option<S<String>>,
    pub name: Option<S<String>>,
    pub path: Option<S<String>>,
    pub port: Option<S<u16>>,
    pub tcp: Option<bool>,
    pub interval: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub expect: Option<S<String>>,
    pub body: Option<S<String>>,
    pub host: Option<S<String>>,
    pub fall: Option<S<u32>>,
    pub rise: Option<S<u32>>,
}

/// `health = { .. }` (one check) or `health = [ { .. }, .. ]` (one per path prefix).
#[derive(Debug)]
pub struct HealthList(pub Vec<S<Health>>);

impl<'de> Deserialize<'de> for HealthList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<Result<S<Health>, Health>>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a health check table { url = .. } or a list of them")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                m: M,
            ) -> Result<Self::Value, M::Error> {
                Health::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(|h| vec![Err(h)])
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(h) = seq.next_element::<S<Health>>()? {
                    out.push(Ok(h));
                }
                Ok(out)
            }
        }
        Ok(HealthList(
            d.deserialize_any(V)?
                .into_iter()
                .map(|h| match h {
                    Ok(h) => h,
                    // A single table: the outer `health` span stands for it (set by the caller).
                    Err(h) => S::new(0..0, h),
                })
                .collect(),
        ))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Affinity {
    pub cookie: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: S<String>,
    #[serde(rename = "match")]
    pub pattern: Option<S<String>>,
    pub syntax: Option<S<String>>,
    pub ignore_case: Option<bool>,
    pub negate: Option<bool>,
    #[serde(default)]
    pub conditions: Vec<S<Condition>>,
    pub logical_grouping: Option<S<String>>,
    pub track_all_captures: Option<bool>,
    pub action: S<Action>,
    pub stop: Option<bool>,
    pub rate_limit: Option<S<RateLimit>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub input: S<String>,
    /// Either `pattern`, or `cidr` / `cidr_file` (an address input only).
    pub pattern: Option<S<String>>,
    pub negate: Option<bool>,
    pub ignore_case: Option<bool>,
    pub cidr: Option<S<Vec<S<String>>>>,
    pub cidr_file: Option<S<String>>,
}

/// `rate_limit = { requests = 50, per = "1s", burst = 100 }` on a rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub requests: S<u32>,
    pub per: S<String>,
    pub burst: Option<S<u32>>,
    /// Client addresses remembered (the table's cap).
    pub max_clients: Option<S<usize>>,
}

/// `max_connection_rate = { connections = 20, per = "1s" }` on a listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionRate {
    pub connections: S<u32>,
    pub per: S<String>,
    pub burst: Option<S<u32>>,
    pub max_clients: Option<S<usize>>,
}

/// `[lockout]`: failed-sign-in protection for farms with `lockout = true`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lockout {
    pub threshold: Option<S<u32>>,
    pub window: Option<S<String>>,
    #[serde(default)]
    pub trusted: Vec<S<String>>,
    /// AD's account lockout threshold: `threshold` is derived from it when not given, and
    /// checked against it when given.
    pub ad_threshold: Option<S<u32>>,
    /// Portico instances that each count alone (an HA pair: 2).
    pub instances: Option<S<u32>>,
    pub address_threshold: Option<S<u32>>,
    pub familiar_for: Option<S<String>>,
    pub answer: Option<S<u16>>,
    pub max_entries: Option<S<usize>>,
}

/// One table for every action kind; `compile` checks that exactly one kind is named.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    pub route: Option<S<String>>,
    pub scheme: Option<S<String>>,
    pub path: Option<S<String>>,
    pub rewrite: Option<S<String>>,
    pub redirect: Option<S<String>>,
    pub status: Option<S<u16>>,
    pub respond: Option<S<u16>>,
    pub reason: Option<S<String>>,
    pub body: Option<S<String>>,
    pub content_type: Option<S<String>>,
    pub abort: Option<bool>,
    pub none: Option<bool>,
    pub append_query: Option<bool>,
    pub max_body: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    pub level: Option<S<String>>,
    pub access_log: Option<S<String>>,
    pub access_format: Option<S<String>>,
}

/// `[[acme]]`: a certificate Portico obtains and renews itself (issue 13).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acme {
    pub name: S<String>,
    pub directory: S<String>,
    #[serde(default)]
    pub contact: Vec<S<String>>,
    pub names: S<Vec<S<String>>>,
    pub challenge: Option<S<String>>,
    pub storage: S<String>,
    pub directory_ca: Option<S<String>>,
    pub key_type: Option<S<String>>,
    pub eab: Option<S<AcmeEab>>,
    pub lock_stale: Option<S<String>>,
    pub retry_first: Option<S<String>>,
    pub retry_max: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeEab {
    pub kid: S<String>,
    pub hmac_key: S<String>,
}
