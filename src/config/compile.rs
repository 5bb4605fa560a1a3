//! File model → runtime model, checking everything on the way.

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
    let mut c = Compiler { d, base };
    let config = c.config(path, parsed);
    if c.d.errors.is_empty() {
        if let Some(config) = config {
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
}

impl Compiler<'_> {
    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn duration(&mut self, v: &Option<S<String>>, key: &str, default: Duration) -> Duration {
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
        let resolve = self.resolve(&f.resolve);
        let upstream = self.upstream(f.upstream.as_ref());
        let farms = self.farms(&f.farm, &upstream);
        let farm_names: Vec<&str> = farms.iter().map(|f| f.name.as_str()).collect();
        let rules = self.rules(f.rule, &farm_names);
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
            listeners,
            admin,
            resolve: Arc::new(resolve),
            upstream,
            farms,
            rules: rules?,
            log,
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
            pool_max_idle_per_member: 64,
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

    fn ca_files(&mut self, ca: &S<file::OneOrMany>, key: &str) -> Vec<PathBuf> {
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

    fn farms(&mut self, farms: &[S<file::Farm>], upstream: &UpstreamConfig) -> Vec<FarmConfig> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for (i, sf) in farms.iter().enumerate() {
            let f = sf.get_ref();
            let name = f.name.get_ref().clone();
            let key = format!("farm[{i}]");
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                self.d.at(f.name.span(), format!("{key}.name"), format!("{name:?} is not a valid farm name (letters, digits, '-', '_' and '.' only)"));
            }
            if !seen.insert(name.to_ascii_lowercase()) {
                self.d.at(
                    f.name.span(),
                    format!("{key}.name"),
                    format!("duplicate farm name {name:?}: each farm needs its own name"),
                );
            }
            let key = format!("farm \"{name}\"");
            let http_port = f.http_port.as_ref().map_or(80, |p| *p.get_ref());
            let https_port = f.https_port.as_ref().map_or(443, |p| *p.get_ref());
            for (p, k) in [(&f.http_port, "http_port"), (&f.https_port, "https_port")] {
                if let Some(p) = p {
                    if *p.get_ref() == 0 {
                        self.d.at(
                            p.span(),
                            format!("{key}.{k}"),
                            "port 0 is not a port (expected 1-65535)",
                        );
                    }
                }
            }
            let mut members = Vec::new();
            if f.members.get_ref().is_empty() {
                self.d.at(f.members.span(), format!("{key}.members"), "a farm needs at least one member, e.g. members = [ { address = \"fe01.contoso.local\" } ]");
            }
            let mut seen_members = HashSet::new();
            for (j, sm) in f.members.get_ref().iter().enumerate() {
                let m = sm.get_ref();
                let mkey = format!("{key}.members[{j}]");
                let address = m.address.get_ref().trim().to_ascii_lowercase();
                if !valid_host(&address) {
                    self.d.at(m.address.span(), format!("{mkey}.address"), format!("{:?} is not a host name or IP address (give the port with http_port / https_port, not in the address)", m.address.get_ref()));
                }
                let hp = m.http_port.as_ref().map_or(http_port, |p| *p.get_ref());
                let sp = m.https_port.as_ref().map_or(https_port, |p| *p.get_ref());
                if !seen_members.insert((address.clone(), hp, sp)) {
                    self.d.at(
                        m.address.span(),
                        format!("{mkey}.address"),
                        format!("member {address:?} is listed twice with the same ports"),
                    );
                }
                let weight = m.weight.as_ref().map_or(100, |w| *w.get_ref());
                if weight == 0 {
                    if let Some(w) = &m.weight {
                        self.d.at(w.span(), format!("{mkey}.weight"), "weight 0 would never be chosen; use state = \"unavailable\" to take a member out");
                    }
                }
                let mut state = if m.enabled == Some(false) {
                    MemberState::Unavailable
                } else {
                    MemberState::Available
                };
                if let Some(s) = &m.state {
                    state = match s.get_ref().to_ascii_lowercase().as_str() {
                        "available" => MemberState::Available,
                        "draining" => MemberState::Draining,
                        "unavailable" => MemberState::Unavailable,
                        other => {
                            self.d.at(s.span(), format!("{mkey}.state"), format!("unknown state {other:?}; accepted: \"available\", \"draining\", \"unavailable\""));
                            MemberState::Available
                        }
                    };
                }
                members.push(MemberConfig {
                    address,
                    weight,
                    http_port: hp,
                    https_port: sp,
                    state,
                });
            }
            let timeout =
                self.duration(&f.timeout, &format!("{key}.timeout"), DEFAULT_FARM_TIMEOUT);
            let connect_timeout = self.duration(
                &f.connect_timeout,
                &format!("{key}.connect_timeout"),
                upstream.connect_timeout,
            );
            let mut load_balancing = match &f.load_balancing {
                None => LoadBalancing::WeightedRoundRobin,
                Some(lb) => LoadBalancing::parse(lb.get_ref()).unwrap_or_else(|| {
                    self.d.at(
                        lb.span(),
                        format!("{key}.load_balancing"),
                        format!(
                            "unknown algorithm {:?}; accepted: {}",
                            lb.get_ref(),
                            LoadBalancing::ACCEPTED
                        ),
                    );
                    LoadBalancing::WeightedRoundRobin
                }),
            };
            if let LoadBalancing::RequestHash(k) = &mut load_balancing {
                if let Some(names) = &f.hash_query {
                    *k = HashKey::Query(names.clone());
                } else if let (Some(_), Some(lb)) = (&f.hash_query, &f.load_balancing) {
                    self.d.at(
                        lb.span(),
                        format!("{key}.hash_query"),
                        "only applies with load_balancing = \"request-hash\"",
                    );
                } else if let Some(v) = &f.hash {
                    let name = v
                        .get_ref()
                        .trim_matches(|c| c == '{' || c == '}')
                        .to_ascii_uppercase();
                    let ok = [
                        "REMOTE_ADDR",
                        "HTTP_HOST",
                        "URL",
                        "QUERY_STRING",
                        "REQUEST_URI",
                    ]
                    .contains(&name.as_str())
                        || (name.starts_with("HTTP_") && name.len() > 5);
                    if !ok {
                        self.d.at(v.span(), format!("{key}.hash"), format!("cannot hash {:?}; accepted: REMOTE_ADDR, HTTP_HOST, URL, QUERY_STRING, REQUEST_URI or HTTP_<HEADER>", v.get_ref()));
                    }
                    *k = HashKey::Variable(name);
                }
            } else if let Some(v) = &f.hash {
                self.d.at(
                    v.span(),
                    format!("{key}.hash"),
                    "only applies with load_balancing = \"request-hash\"",
                );
            }
            let live_traffic = match &f.live_traffic {
                None => LiveTrafficConfig::default(),
                Some(lt) => {
                    let l = lt.get_ref();
                    let d = LiveTrafficConfig::default();
                    let lkey = format!("{key}.live_traffic");
                    LiveTrafficConfig {
                        failure_codes: match &l.failure_codes {
                            None => d.failure_codes,
                            Some(c) if c.get_ref().trim().is_empty() => Vec::new(),
                            Some(c) => parse_status_ranges(c.get_ref()).unwrap_or_else(|m| {
                                self.d.at(c.span(), format!("{lkey}.failure_codes"), m);
                                Vec::new()
                            }),
                        },
                        failures: l
                            .failures
                            .as_ref()
                            .map_or(d.failures, |v| (*v.get_ref()).max(1)),
                        window: self.duration(&l.window, &format!("{lkey}.window"), d.window),
                        backoff: self.duration(&l.backoff, &format!("{lkey}.backoff"), d.backoff),
                    }
                }
            };
            let health = f.health.as_ref().map(|h| self.health(h, &key));
            let affinity = f.affinity.as_ref().map(|a| AffinityConfig {
                cookie: a
                    .get_ref()
                    .cookie
                    .as_ref()
                    .map_or_else(|| "ARRAffinity".to_string(), |c| c.get_ref().clone()),
            });
            if let (Some(a), Some(sa)) = (&affinity, &f.affinity) {
                if a.cookie.is_empty()
                    || !a
                        .cookie
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                {
                    self.d.at(
                        sa.span(),
                        format!("{key}.affinity.cookie"),
                        format!(
                            "{:?} is not a valid cookie name (letters, digits, '-', '_', '.')",
                            a.cookie
                        ),
                    );
                }
            }
            let ca_files = match &f.ca {
                Some(ca) => self.ca_files(ca, &format!("{key}.ca")),
                None => upstream.ca_files.clone(),
            };
            let insecure = f.insecure_skip_verify.unwrap_or(false);
            let tls_cfg = if ca_files.iter().all(|p| p.is_file()) {
                match tls::client_config(&tls::UpstreamTlsSpec {
                    ca_files,
                    insecure_skip_verify: insecure,
                }) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        self.d.at(sf.span(), format!("{key}.ca"), e.to_string());
                        None
                    }
                }
            } else {
                None
            };
            if let Some(tls) = tls_cfg {
                out.push(FarmConfig {
                    name,
                    members,
                    ssl_offload: f.ssl_offload.unwrap_or(false),
                    timeout,
                    connect_timeout,
                    load_balancing,
                    health,
                    affinity,
                    preserve_host: f.preserve_host.unwrap_or(true),
                    x_forwarded: f.x_forwarded.unwrap_or(true),
                    tls,
                    live_traffic,
                    max_pinned_per_member: f
                        .max_pinned_per_member
                        .as_ref()
                        .map_or(1000, |v| *v.get_ref()),
                });
            }
        }
        out
    }

    fn health(&mut self, h: &S<file::Health>, key: &str) -> HealthConfig {
        let hh = h.get_ref();
        let key = format!("{key}.health");
        if !hh.url.get_ref().starts_with('/') {
            self.d.at(
                hh.url.span(),
                format!("{key}.url"),
                "must be a path starting with '/', e.g. \"/meet/\"",
            );
        }
        let expect = match &hh.expect {
            None => vec![(200, 399)],
            Some(e) => parse_status_ranges(e.get_ref()).unwrap_or_else(|msg| {
                self.d.at(e.span(), format!("{key}.expect"), msg);
                vec![(200, 399)]
            }),
        };
        HealthConfig {
            url: hh.url.get_ref().clone(),
            interval: self.duration(
                &hh.interval,
                &format!("{key}.interval"),
                Duration::from_secs(30),
            ),
            timeout: self.duration(
                &hh.timeout,
                &format!("{key}.timeout"),
                Duration::from_secs(10),
            ),
            expect,
            body: hh.body.as_ref().map(|b| b.get_ref().clone()),
            host: hh.host.as_ref().map(|b| b.get_ref().clone()),
            fall: hh.fall.as_ref().map_or(3, |v| (*v.get_ref()).max(1)),
            rise: hh.rise.as_ref().map_or(2, |v| (*v.get_ref()).max(1)),
        }
    }

    fn rules(&mut self, rules: Vec<S<file::Rule>>, farm_names: &[&str]) -> Option<RuleSet> {
        let mut specs = Vec::with_capacity(rules.len());
        let mut spans = Vec::with_capacity(rules.len());
        let mut seen = HashSet::new();
        let errors_before = self.d.errors.len();
        for (i, sr) in rules.into_iter().enumerate() {
            let rule_span = sr.span();
            let r = sr.into_inner();
            let name = r.name.get_ref().clone();
            if !seen.insert(name.clone()) {
                self.d.at(r.name.span(), format!("rule[{i}].name"), format!("duplicate rule name {name:?}: rule names appear in logs and must be unique"));
            }
            let key = format!("rule \"{name}\"");
            let syntax = match r.syntax.as_ref().map(|s| s.get_ref().to_ascii_lowercase()) {
                None => PatternSyntax::Regex,
                Some(s) if s == "regex" || s == "ecmascript" => PatternSyntax::Regex,
                Some(s) if s == "wildcard" => PatternSyntax::Wildcard,
                Some(s) if s == "exact" || s == "exactmatch" => PatternSyntax::Exact,
                Some(other) => {
                    let span = r
                        .syntax
                        .as_ref()
                        .map(|s| s.span())
                        .unwrap_or(rule_span.clone());
                    self.d.at(span, format!("{key}.syntax"), format!("unknown syntax {other:?}; accepted: \"regex\" (default), \"wildcard\", \"exact\""));
                    PatternSyntax::Regex
                }
            };
            let logical_grouping = match r
                .logical_grouping
                .as_ref()
                .map(|s| s.get_ref().to_ascii_lowercase())
            {
                None => LogicalGrouping::MatchAll,
                Some(s) if s == "matchall" => LogicalGrouping::MatchAll,
                Some(s) if s == "matchany" => LogicalGrouping::MatchAny,
                Some(other) => {
                    let span = r
                        .logical_grouping
                        .as_ref()
                        .map(|s| s.span())
                        .unwrap_or(rule_span.clone());
                    self.d.at(span, format!("{key}.logical_grouping"), format!("unknown grouping {other:?}; accepted: \"MatchAll\" (default), \"MatchAny\""));
                    LogicalGrouping::MatchAll
                }
            };
            let conditions = r
                .conditions
                .iter()
                .map(|c| {
                    let c = c.get_ref();
                    ConditionSpec {
                        input: c.input.get_ref().clone(),
                        pattern: c.pattern.get_ref().clone(),
                        negate: c.negate.unwrap_or(false),
                        ignore_case: c.ignore_case.unwrap_or(true),
                    }
                })
                .collect();
            let action = self.action(&r.action, &key);
            let spec = RuleSpec {
                name,
                syntax,
                pattern: r
                    .pattern
                    .as_ref()
                    .map_or_else(|| ".*".to_string(), |p| p.get_ref().clone()),
                ignore_case: r.ignore_case.unwrap_or(true),
                negate: r.negate.unwrap_or(false),
                conditions,
                logical_grouping,
                track_all_captures: r.track_all_captures.unwrap_or(false),
                action: action.unwrap_or(ActionSpec::None),
                stop: r.stop.unwrap_or(false),
            };
            specs.push(spec);
            spans.push((rule_span, r));
        }
        if self.d.errors.len() > errors_before {
            return None;
        }
        match RuleSet::compile(specs, farm_names) {
            Ok(set) => Some(set),
            Err((i, err)) => {
                let (rule_span, r) = &spans[i];
                let key = format!("rule \"{}\"", r.name.get_ref());
                let (span, key) = match &err.field {
                    RuleField::Match => (
                        r.pattern
                            .as_ref()
                            .map(|p| p.span())
                            .unwrap_or(rule_span.clone()),
                        format!("{key}.match"),
                    ),
                    RuleField::Condition { index, part } => {
                        let c = r.conditions.get(*index);
                        let span = c.map(|c| match part {
                            ConditionPart::Input => c.get_ref().input.span(),
                            ConditionPart::Pattern => c.get_ref().pattern.span(),
                        });
                        let part = match part {
                            ConditionPart::Input => "input",
                            ConditionPart::Pattern => "pattern",
                        };
                        (
                            span.unwrap_or(rule_span.clone()),
                            format!("{key}.conditions[{index}].{part}"),
                        )
                    }
                    RuleField::Action => (r.action.span(), format!("{key}.action")),
                };
                self.d.at(span, key, err.message.clone());
                None
            }
        }
    }

    fn action(&mut self, a: &S<file::Action>, key: &str) -> Option<ActionSpec> {
        let span = a.span();
        let a = a.get_ref();
        let key = format!("{key}.action");
        let kinds = [
            a.route.is_some(),
            a.rewrite.is_some(),
            a.redirect.is_some(),
            a.respond.is_some(),
            a.abort == Some(true),
            a.none == Some(true),
        ];
        let count = kinds.iter().filter(|k| **k).count();
        if count != 1 {
            self.d.at(span, &key, if count == 0 {
                "names no action; use one of route = \"FARM\", rewrite = \"/path\", redirect = \"https://...\", respond = STATUS, abort = true, none = true"
            } else {
                "names more than one action; use exactly one of route, rewrite, redirect, respond, abort, none"
            });
            return None;
        }
        let append_query = a.append_query.unwrap_or(true);
        let allowed = |this: &mut Self, ok: &[&str]| {
            let present: [(&str, Option<std::ops::Range<usize>>); 7] = [
                ("scheme", a.scheme.as_ref().map(|s| s.span())),
                ("path", a.path.as_ref().map(|s| s.span())),
                ("status", a.status.as_ref().map(|s| s.span())),
                ("reason", a.reason.as_ref().map(|s| s.span())),
                ("body", a.body.as_ref().map(|s| s.span())),
                ("content_type", a.content_type.as_ref().map(|s| s.span())),
                ("max_body", a.max_body.as_ref().map(|s| s.span())),
            ];
            for (name, sp) in present {
                if let Some(sp) = sp {
                    if !ok.contains(&name) {
                        this.d.at(
                            sp,
                            format!("{key}.{name}"),
                            format!(
                                "`{name}` does not apply to this action (it takes: {})",
                                if ok.is_empty() {
                                    "nothing else".to_string()
                                } else {
                                    ok.join(", ")
                                }
                            ),
                        );
                    }
                }
            }
        };
        // Exchange RPC_IN_DATA declares up to 2 GB: the default lets it through.
        let max_body = match &a.max_body {
            None => Some(2u64 << 30),
            Some(v) if v.get_ref() == "unlimited" => None,
            Some(v) => match super::size::parse_size(v.get_ref()) {
                Ok(n) => Some(n),
                Err(e) => {
                    self.d.at(
                        v.span(),
                        format!("{key}.max_body"),
                        format!("{e}, or \"unlimited\""),
                    );
                    None
                }
            },
        };
        if let Some(farm) = &a.route {
            allowed(self, &["scheme", "path", "max_body"]);
            let scheme = match a.scheme.as_ref().map(|s| s.get_ref().to_ascii_lowercase()) {
                None => None,
                Some(s) if s == "https" => Some(Scheme::Https),
                Some(s) if s == "http" => Some(Scheme::Http),
                Some(other) => {
                    let sp = a.scheme.as_ref().map(|s| s.span()).unwrap_or(span.clone());
                    self.d.at(sp, format!("{key}.scheme"), format!("unknown scheme {other:?}; accepted: \"https\" (TLS to the member's https_port), \"http\" (clear text to its http_port)"));
                    None
                }
            };
            return Some(ActionSpec::Route {
                farm: farm.get_ref().clone(),
                scheme,
                path: a.path.as_ref().map(|p| p.get_ref().clone()),
                append_query,
                max_body,
            });
        }
        if let Some(url) = &a.rewrite {
            allowed(self, &[]);
            return Some(ActionSpec::Rewrite {
                url: url.get_ref().clone(),
                append_query,
            });
        }
        if let Some(url) = &a.redirect {
            allowed(self, &["status"]);
            let status = a.status.as_ref().map_or(301, |s| *s.get_ref());
            if ![301, 302, 303, 307, 308].contains(&status) {
                let sp = a.status.as_ref().map(|s| s.span()).unwrap_or(span);
                self.d.at(sp, format!("{key}.status"), format!("{status} is not a redirect status; accepted: 301 (default), 302, 303, 307, 308"));
            }
            return Some(ActionSpec::Redirect {
                url: url.get_ref().clone(),
                status,
                append_query,
            });
        }
        if let Some(status) = &a.respond {
            allowed(self, &["reason", "body", "content_type"]);
            let code = *status.get_ref();
            if !(200..=599).contains(&code) {
                self.d.at(
                    status.span(),
                    format!("{key}.respond"),
                    format!("{code} is not a response status; accepted: 200-599"),
                );
            }
            return Some(ActionSpec::Respond {
                status: code,
                reason: a.reason.as_ref().map(|r| r.get_ref().clone()),
                body: a
                    .body
                    .as_ref()
                    .map_or_else(String::new, |b| b.get_ref().clone()),
                content_type: a.content_type.as_ref().map_or_else(
                    || "text/plain; charset=utf-8".to_string(),
                    |c| c.get_ref().clone(),
                ),
            });
        }
        if a.abort == Some(true) {
            allowed(self, &[]);
            return Some(ActionSpec::Abort);
        }
        allowed(self, &[]);
        Some(ActionSpec::None)
    }

    fn listeners(&mut self, listeners: &[S<file::Listener>]) -> Vec<ListenerConfig> {
        let mut out = Vec::new();
        let mut binds = HashSet::new();
        for (i, sl) in listeners.iter().enumerate() {
            let l = sl.get_ref();
            let key = format!("listener[{i}]");
            let bind = match l.bind.get_ref().parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    self.d.at(l.bind.span(), format!("{key}.bind"), format!("{:?} is not an address:port (expected e.g. \"203.0.113.10:443\", \"0.0.0.0:80\" or \"[::]:443\")", l.bind.get_ref()));
                    continue;
                }
            };
            if !binds.insert(bind) {
                self.d.at(
                    l.bind.span(),
                    format!("{key}.bind"),
                    format!("{bind} is bound by an earlier listener too"),
                );
            }
            let name = l
                .name
                .as_ref()
                .map_or_else(|| bind.to_string(), |n| n.get_ref().clone());
            let mut proxy_protocol_from = Vec::new();
            if let Some(pp) = &l.proxy_protocol {
                for r in &pp.get_ref().from {
                    match Cidr::parse(r.get_ref()) {
                        Ok(c) => proxy_protocol_from.push(c),
                        Err(e) => self.d.at(r.span(), format!("{key}.proxy_protocol.from"), e),
                    }
                }
                if pp.get_ref().from.is_empty() {
                    self.d.at(pp.span(), format!("{key}.proxy_protocol.from"), "lists no source range; name the L4 balancers allowed to send PROXY headers, e.g. [\"10.0.0.0/24\"]");
                }
            }
            let tls = l.tls.as_ref().and_then(|t| self.listener_tls(t, &key));
            out.push(ListenerConfig {
                name,
                bind,
                tls,
                proxy_protocol_from,
                header_read_timeout: self.duration(
                    &l.header_read_timeout,
                    &format!("{key}.header_read_timeout"),
                    Duration::from_secs(30),
                ),
                max_connections: l
                    .max_connections
                    .as_ref()
                    .map_or(20_000, |v| (*v.get_ref()).max(1)),
                max_connections_per_client: l
                    .max_connections_per_client
                    .as_ref()
                    .map_or(1_000, |v| (*v.get_ref()).max(1)),
                reuse_port: l.reuse_port.unwrap_or(false),
                trusted_proxies: l
                    .trusted_proxies
                    .iter()
                    .filter_map(|r| match Cidr::parse(r.get_ref()) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            self.d.at(r.span(), format!("{key}.trusted_proxies"), e);
                            None
                        }
                    })
                    .collect(),
                max_header_bytes: l
                    .max_header_bytes
                    .as_ref()
                    .map_or(64 * 1024, |v| *v.get_ref()),
                h2_max_concurrent_streams: l
                    .h2_max_concurrent_streams
                    .as_ref()
                    .map_or(128, |v| *v.get_ref()),
            });
        }
        out
    }

    fn listener_tls(
        &mut self,
        t: &S<file::ListenerTls>,
        key: &str,
    ) -> Option<Arc<tls::ListenerTls>> {
        let t = t.get_ref();
        let key = format!("{key}.tls");
        let certs = t.certificates.get_ref();
        if certs.is_empty() {
            self.d.at(t.certificates.span(), format!("{key}.certificates"), "lists no certificate; give at least one { cert = \"file.pem\", key = \"file.key\" }");
            return None;
        }
        let mut loaded = Vec::new();
        let mut default_index = None;
        let mut failed = false;
        for (j, c) in certs.iter().enumerate() {
            let cc = c.get_ref();
            let spec = tls::CertificateSpec {
                cert: self.path(cc.cert.get_ref()),
                key: self.path(cc.key.get_ref()),
                allow_expired: cc.allow_expired,
            };
            if cc.default {
                if default_index.is_some() {
                    self.d.at(
                        c.span(),
                        format!("{key}.certificates[{j}].default"),
                        "only one certificate per listener can be the default",
                    );
                }
                default_index = Some(j);
            }
            match tls::load_certificate(&spec) {
                Ok(l) => loaded.push(l),
                Err(e) => {
                    failed = true;
                    self.d
                        .at(c.span(), format!("{key}.certificates[{j}]"), e.to_string());
                }
            }
        }
        let min_version = match t
            .min_version
            .as_ref()
            .map(|v| v.get_ref().to_ascii_lowercase())
        {
            None => tls::TlsVersion::Tls12,
            Some(v) if v == "1.2" || v == "tls1.2" || v == "tlsv1.2" => tls::TlsVersion::Tls12,
            Some(v) if v == "1.3" || v == "tls1.3" || v == "tlsv1.3" => tls::TlsVersion::Tls13,
            Some(other) => {
                let sp = t.min_version.as_ref().map(|v| v.span()).unwrap_or_default();
                self.d.at(sp, format!("{key}.min_version"), format!("unsupported TLS version {other:?}; accepted: \"1.2\" (default), \"1.3\" — older versions are not offered"));
                tls::TlsVersion::Tls12
            }
        };
        let handshake_timeout = self.duration(
            &t.handshake_timeout,
            &format!("{key}.handshake_timeout"),
            Duration::from_secs(10),
        );
        if failed {
            return None;
        }
        let opts = tls::ListenerTlsOptions {
            http1_only_hosts: t
                .http1_only
                .iter()
                .map(|h| h.get_ref().to_ascii_lowercase())
                .collect(),
            min_version,
            handshake_timeout,
        };
        match tls::ListenerTls::new(loaded, default_index.unwrap_or(0), opts) {
            Ok(l) => Some(Arc::new(l)),
            Err(e) => {
                self.d.nowhere(&key, e.to_string());
                None
            }
        }
    }

    fn admin(&mut self, a: &S<file::Admin>) -> Option<AdminConfig> {
        let a = a.get_ref();
        let bind = match &a.bind {
            None => "127.0.0.1:9901".parse().ok()?,
            Some(b) => match b.get_ref().parse::<SocketAddr>() {
                Ok(addr) => addr,
                Err(_) => {
                    self.d.at(
                        b.span(),
                        "admin.bind",
                        format!(
                            "{:?} is not an address:port (expected e.g. \"127.0.0.1:9901\")",
                            b.get_ref()
                        ),
                    );
                    return None;
                }
            },
        };
        let token_file = a.token_file.as_ref().map(|t| {
            let p = self.path(t.get_ref());
            if !p.is_file() {
                self.d.at(t.span(), "admin.token_file", format!("{} does not exist or is not a file (expected a file holding the admin token)", p.display()));
            }
            p
        });
        Some(AdminConfig { bind, token_file })
    }

    fn log(&mut self, l: &S<file::Log>) -> LogConfig {
        let l = l.get_ref();
        if let Some(f) = &l.access_format {
            if !["w3c", "json"].contains(&f.get_ref().to_ascii_lowercase().as_str()) {
                self.d.at(
                    f.span(),
                    "log.access_format",
                    format!(
                        "unknown format {:?}; accepted: \"w3c\", \"json\"",
                        f.get_ref()
                    ),
                );
            }
        }
        if let Some(level) = &l.level {
            if !["error", "warn", "info", "debug", "trace"]
                .contains(&level.get_ref().to_ascii_lowercase().as_str())
            {
                self.d.at(level.span(), "log.level", format!("unknown level {:?}; accepted: \"error\", \"warn\", \"info\", \"debug\", \"trace\"", level.get_ref()));
            }
        }
        LogConfig {
            level: l.level.as_ref().map(|v| v.get_ref().to_ascii_lowercase()),
            access_log: l.access_log.as_ref().map(|v| {
                let t = v.get_ref();
                if t == "stdout" || t == "off" {
                    t.clone()
                } else {
                    self.path(t).to_string_lossy().into_owned()
                }
            }),
            access_format: l
                .access_format
                .as_ref()
                .map(|v| v.get_ref().to_ascii_lowercase()),
        }
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
