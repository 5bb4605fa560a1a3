//! The config file as written: serde types that mirror the TOML, nothing more.
//!
//! Nothing outside `config` reads these; `config::compile` turns them into the
//! validated runtime model. Values that validation may reject are `Spanned` so an
//! error can name the line.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

pub(crate) type S<T> = Spanned<T>;

/// The config file as TOML deserializes it, before checking; `config::compile` turns it into a [`crate::config::Config`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub(crate) workers: Option<S<usize>>,
    pub(crate) shutdown_timeout: Option<S<String>>,
    pub(crate) drain_delay: Option<S<String>>,
    #[serde(default)]
    pub(crate) listener: Vec<S<Listener>>,
    pub(crate) admin: Option<S<Admin>>,
    #[serde(default)]
    pub(crate) resolve: BTreeMap<String, S<Vec<S<String>>>>,
    pub(crate) upstream: Option<S<Upstream>>,
    #[serde(default)]
    pub(crate) farm: Vec<S<Farm>>,
    #[serde(default)]
    pub(crate) rule: Vec<S<Rule>>,
    pub(crate) log: Option<S<Log>>,
    pub(crate) lockout: Option<S<Lockout>>,
    #[serde(default)]
    pub(crate) acme: Vec<S<Acme>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Listener {
    pub(crate) bind: S<String>,
    pub(crate) name: Option<S<String>>,
    pub(crate) tls: Option<S<ListenerTls>>,
    pub(crate) proxy_protocol: Option<S<ProxyProtocol>>,
    pub(crate) header_read_timeout: Option<S<String>>,
    pub(crate) max_connections: Option<S<usize>>,
    pub(crate) max_connections_per_client: Option<S<usize>>,
    #[serde(default)]
    pub(crate) trusted_proxies: Vec<S<String>>,
    pub(crate) reuse_port: Option<bool>,
    pub(crate) max_header_bytes: Option<S<usize>>,
    pub(crate) h2_max_concurrent_streams: Option<S<u32>>,
    pub(crate) max_connection_rate: Option<S<ConnectionRate>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListenerTls {
    pub(crate) certificates: S<Vec<S<Certificate>>>,
    #[serde(default)]
    pub(crate) http1_only: Vec<S<String>>,
    pub(crate) min_version: Option<S<String>>,
    pub(crate) handshake_timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Certificate {
    pub(crate) cert: Option<S<String>>,
    pub(crate) key: Option<S<String>>,
    /// Instead of cert/key: the `[[acme]]` entry that obtains this certificate.
    pub acme: Option<S<String>>,
    #[serde(default)]
    pub(crate) default: bool,
    #[serde(default)]
    pub(crate) allow_expired: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProxyProtocol {
    pub(crate) from: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Admin {
    pub(crate) bind: Option<S<String>>,
    pub(crate) token_file: Option<S<String>>,
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
pub(crate) struct Upstream {
    pub(crate) source_address: Option<S<String>>,
    pub(crate) ca: Option<S<OneOrMany>>,
    pub(crate) connect_timeout: Option<S<String>>,
    pub(crate) pool_idle_timeout: Option<S<String>>,
    pub(crate) pool_max_idle_per_member: Option<S<usize>>,
    pub(crate) dns_refresh: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Farm {
    pub(crate) name: S<String>,
    pub(crate) members: S<Vec<S<Member>>>,
    pub(crate) http_port: Option<S<u16>>,
    pub(crate) https_port: Option<S<u16>>,
    pub(crate) ssl_offload: Option<bool>,
    pub(crate) timeout: Option<S<String>>,
    pub(crate) connect_timeout: Option<S<String>>,
    pub(crate) load_balancing: Option<S<String>>,
    pub(crate) health: Option<S<HealthList>>,
    pub(crate) affinity: Option<S<Affinity>>,
    pub(crate) preserve_host: Option<bool>,
    pub(crate) x_forwarded: Option<bool>,
    pub(crate) insecure_skip_verify: Option<bool>,
    pub(crate) ca: Option<S<OneOrMany>>,
    pub(crate) hash: Option<S<String>>,
    pub(crate) hash_query: Option<Vec<String>>,
    pub(crate) live_traffic: Option<S<LiveTraffic>>,
    pub(crate) max_pinned_per_member: Option<S<u32>>,
    pub(crate) lockout: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LiveTraffic {
    pub(crate) failure_codes: Option<S<String>>,
    pub(crate) failures: Option<S<u32>>,
    pub(crate) window: Option<S<String>>,
    pub(crate) backoff: Option<S<String>>,
}

/// One `[[farm.member]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub(crate) address: S<String>,
    pub(crate) weight: Option<S<u32>>,
    pub(crate) http_port: Option<S<u16>>,
    pub(crate) https_port: Option<S<u16>>,
    pub(crate) enabled: Option<bool>,
    pub(crate) state: Option<S<String>>,
}

/// One active health check (`health = { .. }`) of a farm as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Required unless `tcp = true`.
    pub url: Option<S<String>>,
    pub(crate) name: Option<S<String>>,
    pub(crate) path: Option<S<String>>,
    pub(crate) port: Option<S<u16>>,
    pub(crate) tcp: Option<bool>,
    pub(crate) interval: Option<S<String>>,
    pub(crate) timeout: Option<S<String>>,
    pub(crate) expect: Option<S<String>>,
    pub(crate) body: Option<S<String>>,
    pub(crate) host: Option<S<String>>,
    pub(crate) fall: Option<S<u32>>,
    pub(crate) rise: Option<S<u32>>,
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
pub(crate) struct Affinity {
    pub(crate) cookie: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rule {
    pub(crate) name: S<String>,
    #[serde(rename = "match")]
    pub(crate) pattern: Option<S<String>>,
    pub(crate) syntax: Option<S<String>>,
    pub(crate) ignore_case: Option<bool>,
    pub(crate) negate: Option<bool>,
    #[serde(default)]
    pub(crate) conditions: Vec<S<Condition>>,
    pub(crate) logical_grouping: Option<S<String>>,
    pub(crate) track_all_captures: Option<bool>,
    pub(crate) action: S<Action>,
    pub(crate) stop: Option<bool>,
    pub(crate) rate_limit: Option<S<RateLimit>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Condition {
    pub(crate) input: S<String>,
    /// Either `pattern`, or `cidr` / `cidr_file` (an address input only).
    pub pattern: Option<S<String>>,
    pub(crate) negate: Option<bool>,
    pub(crate) ignore_case: Option<bool>,
    pub(crate) cidr: Option<S<Vec<S<String>>>>,
    pub(crate) cidr_file: Option<S<String>>,
}

/// `rate_limit = { requests = 50, per = "1s", burst = 100 }` on a rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub(crate) requests: S<u32>,
    pub(crate) per: S<String>,
    pub(crate) burst: Option<S<u32>>,
    /// Client addresses remembered (the table's cap).
    pub max_clients: Option<S<usize>>,
}

/// `max_connection_rate = { connections = 20, per = "1s" }` on a listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionRate {
    pub(crate) connections: S<u32>,
    pub(crate) per: S<String>,
    pub(crate) burst: Option<S<u32>>,
    pub(crate) max_clients: Option<S<usize>>,
}

/// `[lockout]`: failed-sign-in protection for farms with `lockout = true`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lockout {
    pub(crate) threshold: Option<S<u32>>,
    pub(crate) window: Option<S<String>>,
    #[serde(default)]
    pub(crate) trusted: Vec<S<String>>,
    /// AD's account lockout threshold: `threshold` is derived from it when not given, and
    /// checked against it when given.
    pub ad_threshold: Option<S<u32>>,
    /// Portico instances that each count alone (an HA pair: 2).
    pub instances: Option<S<u32>>,
    pub(crate) address_threshold: Option<S<u32>>,
    pub(crate) familiar_for: Option<S<String>>,
    pub(crate) answer: Option<S<u16>>,
    pub(crate) max_entries: Option<S<usize>>,
}

/// One table for every action kind; `compile` checks that exactly one kind is named.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    pub(crate) route: Option<S<String>>,
    pub(crate) scheme: Option<S<String>>,
    pub(crate) path: Option<S<String>>,
    pub(crate) rewrite: Option<S<String>>,
    pub(crate) redirect: Option<S<String>>,
    pub(crate) status: Option<S<u16>>,
    pub(crate) respond: Option<S<u16>>,
    pub(crate) reason: Option<S<String>>,
    pub(crate) body: Option<S<String>>,
    pub(crate) content_type: Option<S<String>>,
    pub(crate) abort: Option<bool>,
    pub(crate) none: Option<bool>,
    pub(crate) append_query: Option<bool>,
    pub(crate) max_body: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Log {
    pub(crate) level: Option<S<String>>,
    pub(crate) access_log: Option<S<String>>,
    pub(crate) access_format: Option<S<String>>,
}

/// `[[acme]]`: a certificate Portico obtains and renews itself (issue 13).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acme {
    pub(crate) name: S<String>,
    pub(crate) directory: S<String>,
    #[serde(default)]
    pub(crate) contact: Vec<S<String>>,
    pub(crate) names: S<Vec<S<String>>>,
    pub(crate) challenge: Option<S<String>>,
    pub(crate) storage: S<String>,
    pub(crate) directory_ca: Option<S<String>>,
    pub(crate) key_type: Option<S<String>>,
    pub(crate) eab: Option<S<AcmeEab>>,
    pub(crate) lock_stale: Option<S<String>>,
    pub(crate) retry_first: Option<S<String>>,
    pub(crate) retry_max: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AcmeEab {
    pub(crate) kid: S<String>,
    pub(crate) hmac_key: S<String>,
}
