//! Farms and their members, health checks and balancing.

use super::*;

impl Compiler<'_> {
    pub(super) fn farms(
        &mut self,
        farms: &[S<file::Farm>],
        upstream: &UpstreamConfig,
    ) -> Vec<Arc<FarmConfig>> {
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
            let health_checks = match &f.health {
                None => Vec::new(),
                Some(list) => self.health_checks(list, &key),
            };
            let health = health_checks.first().cloned();
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
                out.push(Arc::new(FarmConfig {
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
                    pool_max_idle: upstream.pool_max_idle_per_member,
                    pool_idle_timeout: upstream.pool_idle_timeout.min(timeout),
                    health_checks,
                    lockout: f.lockout.unwrap_or(false),
                }));
            }
        }
        out
    }

    /// `health = { .. }` or `health = [ { .. }, .. ]`: one config per check; labels unique.
    pub(super) fn health_checks(
        &mut self,
        list: &S<file::HealthList>,
        key: &str,
    ) -> Vec<HealthConfig> {
        let checks = &list.get_ref().0;
        let single = checks.len() == 1 && checks[0].span() == (0..0);
        let mut out: Vec<HealthConfig> = Vec::new();
        for (j, h) in checks.iter().enumerate() {
            let hkey = if single {
                format!("{key}.health")
            } else {
                format!("{key}.health[{j}]")
            };
            let span = if single { list.span() } else { h.span() };
            let cfg = self.health(h.get_ref(), span.clone(), &hkey);
            if out.iter().any(|c| c.label == cfg.label) {
                self.d.at(
                    span,
                    hkey,
                    format!(
                        "a second check named {:?}; give each check its own `name` (or `path`)",
                        cfg.label
                    ),
                );
            }
            out.push(cfg);
        }
        if checks.is_empty() {
            self.d.at(
                list.span(),
                format!("{key}.health"),
                "lists no check; give at least one { url = \"/...\" } or { tcp = true }",
            );
        }
        out
    }

    pub(super) fn health(
        &mut self,
        hh: &file::Health,
        span: std::ops::Range<usize>,
        key: &str,
    ) -> HealthConfig {
        let key = key.to_string();
        let tcp = hh.tcp.unwrap_or(false);
        let url = match (&hh.url, tcp) {
            (Some(u), false) => {
                if !u.get_ref().starts_with('/') {
                    self.d.at(
                        u.span(),
                        format!("{key}.url"),
                        "must be a path starting with '/', e.g. \"/meet/\"",
                    );
                }
                u.get_ref().clone()
            }
            (Some(u), true) => {
                self.d.at(
                    u.span(),
                    format!("{key}.url"),
                    "a `tcp = true` check only connects; remove `url` (or `tcp`)",
                );
                String::new()
            }
            (None, true) => String::new(),
            (None, false) => {
                self.d.at(span, format!("{key}.url"), "missing: give the page to GET, e.g. url = \"/owa/healthcheck.htm\", or `tcp = true` for a connect-only check");
                String::new()
            }
        };
        let path = hh.path.as_ref().map(|p| {
            if !p.get_ref().starts_with('/') {
                self.d.at(
                    p.span(),
                    format!("{key}.path"),
                    "must be a path prefix starting with '/', e.g. \"/ews\"",
                );
            }
            p.get_ref().clone()
        });
        let port = hh.port.as_ref().map(|p| {
            if *p.get_ref() == 0 {
                self.d.at(
                    p.span(),
                    format!("{key}.port"),
                    "must be a port from 1 to 65535",
                );
            }
            *p.get_ref()
        });
        let label = match (&hh.name, &path) {
            (Some(n), _) => n.get_ref().clone(),
            (None, Some(p)) => p.clone(),
            (None, None) if tcp => format!(
                "tcp:{}",
                port.map_or_else(|| "traffic-port".to_string(), |p| p.to_string())
            ),
            (None, None) => url.clone(),
        };
        let expect = match &hh.expect {
            None => vec![(200, 399)],
            Some(e) => parse_status_ranges(e.get_ref()).unwrap_or_else(|msg| {
                self.d.at(e.span(), format!("{key}.expect"), msg);
                vec![(200, 399)]
            }),
        };
        HealthConfig {
            label,
            path,
            port,
            tcp,
            url,
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
}
