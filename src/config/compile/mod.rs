//! File model → runtime model, checking everything on the way. Split by section:
//! `farms`, `rules`, `listeners` (with admin and log) are further `impl Compiler` blocks.

mod acme;
mod farms;
mod listeners;
mod perimeter;
mod rules;

use super::duration::parse_duration;
use super::error::{ConfigErrors, Diagnostics};
use super::file::{self, S};
use super::model::*;
use crate::rules::{
    ActionSpec, ConditionPart, ConditionSpec, LogicalGrouping, PatternSyntax, RuleField, RuleSet,
    RuleSpec, Scheme,
};
use crate::tls;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const DEFAULT_FARM_TIMEOUT: Duration = Duration::from_secs(200);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn compile(path: &Path, source: &str) -> Result<Config, ConfigErrors> {
    let mut d = Diagnostics::new(path, source);
    let parsed: file::File = match toml::from_str(source) {
        Ok(f) => f,
        Err(e) => {
            let msg = e.message().trim().to_string();
            let msg = explain_serde(&msg);
            match e.span() {
                Some(span) => d.at(span, "", msg),
                None => d.nowhere("", msg),
            }
            return Err(ConfigErrors(d.errors));
        }
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut c = Compiler {
        d,
        base,
        acme: HashMap::new(),
    };
    let config = c.config(path, parsed);
    if c.d.errors.is_empty() {
        if let Some(mut config) = config {
            config.digest = super::digest(source.as_bytes());
            return Ok(config);
        }
    }
    Err(ConfigErrors(c.d.errors))
}

/// Makes serde's wording friendlier where it is terse.
fn explain_serde(msg: &str) -> String {
    if msg.starts_with("unknown field") {
        format!("{msg} (check the spelling; docs/configuration.md lists every key Portico accepts)")
    } else {
        msg.to_string()
    }
}

struct Compiler<'a> {
    d: Diagnostics<'a>,
    base: PathBuf,
    /// `[[acme]]` entries by name, compiled before the listeners that refer to them.
    acme: HashMap<String, Arc<crate::acme::AcmeConfig>>,
}

impl Compiler<'_> {
    pub(super) fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    pub(super) fn duration(
        &mut self,
        v: &Option<S<String>>,
        key: &str,
        default: Duration,
    ) -> Duration {
        match v {
            None => default,
            Some(s) => match parse_duration(s.get_ref()) {
                Ok(d) if d.is_zero() => {
                    self.d.at(s.span(), key, "must be longer than zero");
                    default
                }
                Ok(d) => d,
                Err(e) => {
                    self.d.at(s.span(), key, e);
                    default
                }
            },
        }
    }

    /// A duration where `"0s"` is allowed (and the default): `drain_delay`.
    fn duration_or_zero(&mut self, v: &Option<S<String>>, key: &str) -> Duration {
        match v {
            None => Duration::ZERO,
            Some(s) => parse_duration(s.get_ref()).unwrap_or_else(|e| {
                self.d.at(s.span(), key, e);
                Duration::ZERO
            }),
        }
    }

    fn config(&mut self, path: &Path, f: file::File) -> Option<Config> {
        if let Some(w) = &f.workers {
            if *w.get_ref() == 0 || *w.get_ref() > 1024 {
                self.d.at(
                    w.span(),
                    "workers",
                    "must be between 1 and 1024 (omit it for one per core)",
                );
            }
        }
        let shutdown_timeout = self.duration(
            &f.shutdown_timeout,
            "shutdown_timeout",
            Duration::from_secs(30),
        );
        let drain_delay = self.duration_or_zero(&f.drain_delay, "drain_delay");
        let resolve = self.resolve(&f.resolve);
        let upstream = self.upstream(f.upstream.as_ref());
        let farms = self.farms(&f.farm, &upstream);
        let farm_names: Vec<&str> = farms.iter().map(|f| f.name.as_str()).collect();
        let rules = self.rules(f.rule, &farm_names);
        let lockout = self.lockout(f.lockout.as_ref(), &farms);
        self.acme_entries(&f.acme);
        let listeners = self.listeners(&f.listener);
        let admin = f.admin.as_ref().and_then(|a| self.admin(a));
        let log = f.log.as_ref().map(|l| self.log(l)).unwrap_or(LogConfig {
            level: None,
            access_log: None,
            access_format: None,
        });
        if f.listener.is_empty() {
            self.d.nowhere(
                "listener",
                "no [[listener]] table: Portico needs at least one address to serve on, e.g. [[listener]] bind = \"0.0.0.0:443\"",
            );
        }
        Some(Config {
            path: path.to_path_buf(),
            loaded_at: SystemTime::now(),
            workers: f.workers.map(|w| w.into_inner()),
            shutdown_timeout,
            drain_delay,
            digest: String::new(),
            listeners,
            admin,
            resolve: Arc::new(resolve),
            upstream,
            farms,
            rules: rules?,
            log,
            lockout,
        })
    }

    fn resolve(
        &mut self,
        table: &std::collections::BTreeMap<String, S<Vec<S<String>>>>,
    ) -> HashMap<String, Vec<IpAddr>> {
        let mut out = HashMap::new();
        for (name, addrs) in table {
            let key = format!("resolve.\"{name}\"");
            if addrs.get_ref().is_empty() {
                self.d.at(
                    addrs.span(),
                    &key,
                    "lists no address; give one or more IP addresses, e.g. [\"10.0.1.11\"]",
                );
            }
            let mut ips = Vec::new();
            for a in addrs.get_ref() {
                match a.get_ref().trim().parse::<IpAddr>() {
                    Ok(ip) => ips.push(ip),
                    Err(_) => self.d.at(
                        a.span(),
                        &key,
                        format!("{:?} is not an IP address (expected e.g. \"10.0.1.11\" or \"fd00::11\"; [resolve] is a hosts file, names are not allowed here)", a.get_ref()),
                    ),
                }
            }
            out.insert(name.to_ascii_lowercase(), ips);
        }
        out
    }

    fn upstream(&mut self, u: Option<&S<file::Upstream>>) -> UpstreamConfig {
        let mut cfg = UpstreamConfig {
            source_address: None,
            ca_files: Vec::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            pool_idle_timeout: Duration::from_secs(60),
            pool_max_idle_per_member: 1024,
            dns_refresh: Duration::from_secs(60),
        };
        let Some(u) = u else { return cfg };
        let u = u.get_ref();
        if let Some(src) = &u.source_address {
            match src.get_ref().parse::<IpAddr>() {
                Ok(ip) => cfg.source_address = Some(ip),
                Err(_) => self.d.at(
                    src.span(),
                    "upstream.source_address",
                    format!("{:?} is not an IP address (expected the internal NIC's address, e.g. \"10.0.1.5\")", src.get_ref()),
                ),
            }
        }
        if let Some(ca) = &u.ca {
            cfg.ca_files = self.ca_files(ca, "upstream.ca");
        }
        cfg.connect_timeout = self.duration(
            &u.connect_timeout,
            "upstream.connect_timeout",
            cfg.connect_timeout,
        );
        cfg.pool_idle_timeout = self.duration(
            &u.pool_idle_timeout,
            "upstream.pool_idle_timeout",
            cfg.pool_idle_timeout,
        );
        cfg.dns_refresh = self.duration(&u.dns_refresh, "upstream.dns_refresh", cfg.dns_refresh);
        if let Some(n) = &u.pool_max_idle_per_member {
            cfg.pool_max_idle_per_member = *n.get_ref();
        }
        cfg
    }

    pub(super) fn ca_files(&mut self, ca: &S<file::OneOrMany>, key: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if ca.get_ref().0.is_empty() {
            self.d.at(ca.span(), key, "lists no file; give the PEM file of the internal CA, e.g. \"certs/contoso-root.pem\"");
        }
        for p in &ca.get_ref().0 {
            let path = self.path(p);
            if !path.is_file() {
                self.d.at(
                    ca.span(),
                    key,
                    format!("CA file {} does not exist or is not a file (expected a PEM file holding the internal CA certificate)", path.display()),
                );
            }
            out.push(path);
        }
        out
    }
}

/// `"200-399"`, `"200,401"`, `"500-"` (open end) → inclusive ranges.
pub fn parse_status_ranges(text: &str) -> Result<Vec<(u16, u16)>, String> {
    let err = || {
        format!("invalid status ranges {text:?}: expected codes and ranges such as \"200-399\", \"200,401\" or \"500-\"")
    };
    let mut out = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once('-') {
            Some((lo, "")) => (lo.trim().parse::<u16>().map_err(|_| err())?, 599),
            Some((lo, hi)) => (
                lo.trim().parse::<u16>().map_err(|_| err())?,
                hi.trim().parse::<u16>().map_err(|_| err())?,
            ),
            None => {
                let v = part.parse::<u16>().map_err(|_| err())?;
                (v, v)
            }
        };
        if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
            return Err(err());
        }
        out.push((lo, hi));
    }
    Ok(out)
}

fn valid_host(h: &str) -> bool {
    if h.parse::<IpAddr>().is_ok() {
        return true;
    }
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}
