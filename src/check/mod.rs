//! `portico check`: a connectivity analyzer run from outside against a published Skype for
//! Business / Exchange / Office Online deployment — Portico's or any other reverse proxy's.
//!
//! It connects to each published name the way a client does (SNI = the name, `Host` = the
//! name), then judges the certificate (`tlscheck`), the web services Microsoft's test list
//! names (`web`), and signs of a proxy set up wrong: port bridging, SSL offloading, internal
//! names leaking, a timeout that cuts long polls. `names` derives what a Portico config
//! publishes; `report` prints the findings for a person or, with `--json`, for a script.
//! docs/check.md describes every check id.

mod client;
mod exchange;
mod names;
mod report;
mod signs;
mod tlscheck;
mod web;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub use names::{derive_names, DerivedName};
pub use report::{render_json, render_text};

/// Options of `portico check`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CheckOptions {
    /// Check every name this Portico config publishes, against its own TLS listeners.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// External web services FQDN of a Front End or Director pool (repeatable).
    #[arg(long, value_name = "NAME")]
    pub webext: Vec<String>,
    /// Meeting simple URL: a host (`meet.contoso.com`) or host/path (`webext.contoso.com/meet`).
    #[arg(long, value_name = "NAME[/PATH]")]
    pub meet: Vec<String>,
    /// Dial-in simple URL: a host or host/path.
    #[arg(long, value_name = "NAME[/PATH]")]
    pub dialin: Vec<String>,
    /// Mobile autodiscover name (`lyncdiscover.<sipdomain>`).
    #[arg(long, value_name = "NAME")]
    pub lyncdiscover: Vec<String>,
    /// Office Online Server / Office Web Apps FQDN.
    #[arg(long, value_name = "NAME")]
    pub oos: Vec<String>,
    /// Exchange namespace (OWA, EWS, ActiveSync, MAPI, RPC, Autodiscover).
    #[arg(long, value_name = "NAME")]
    pub exchange: Vec<String>,
    /// An Exchange server (ADDR:PORT or NAME:PORT, repeatable) whose certificate must be the
    /// one the proxy presents for the Exchange names (Extended Protection). With --config,
    /// the members of the farm each Exchange name is routed to are compared too.
    #[arg(long, value_name = "ADDR:PORT")]
    pub exchange_server: Vec<String>,
    /// Connect to ADDR for HOST:PORT instead of asking DNS, as curl's --resolve (repeatable).
    #[arg(long, value_name = "HOST:PORT:ADDR")]
    pub resolve: Vec<String>,
    /// Port of the published names (default 443; with --config, each TLS listener's port).
    #[arg(long)]
    pub port: Option<u16>,
    /// A private CA to trust besides the public roots, PEM (labs, internal PKI; repeatable).
    #[arg(long, value_name = "FILE")]
    pub ca: Vec<PathBuf>,
    /// Print the findings as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also hold a request SECS seconds on the web services name: a proxy timeout shorter than
    /// that (UCWA polls 180 s, mobile push 900 s) is reported as check `long-poll`.
    #[arg(long, value_name = "SECS")]
    pub long_poll: Option<u64>,
    /// Path the long-poll probe requests; `{secs}` is replaced. The default is the demo
    /// member's hold endpoint: point it at a path your members hold open.
    #[arg(long, value_name = "PATH", default_value = "/long-poll?secs={secs}")]
    pub long_poll_path: String,
    /// How long one request may take (connect, TLS, answer), e.g. "10s".
    #[arg(long, default_value = "10s")]
    pub timeout: String,
}

/// What a published name is for: which checks it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// Skype for Business external web services; also any name no other service claims.
    WebExt,
    /// The `meet` simple URL.
    Meet,
    /// The `dialin` simple URL.
    Dialin,
    /// `lyncdiscover.<domain>`: client autodiscovery.
    Lyncdiscover,
    /// Office Online Server (Office Web Apps).
    OfficeOnline,
    /// Exchange (OWA, EWS, ActiveSync, Autodiscover, MAPI).
    Exchange,
}

impl Service {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Service::WebExt => "webext",
            Service::Meet => "meet",
            Service::Dialin => "dialin",
            Service::Lyncdiscover => "lyncdiscover",
            Service::OfficeOnline => "oos",
            Service::Exchange => "exchange",
        }
    }
}

/// One name to check, where to reach it, and what it serves.
#[derive(Debug, Clone)]
pub struct Target {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) addr: SocketAddr,
    pub(crate) service: Service,
    /// For path-style simple URLs (`webext.contoso.com/meet`): the path; else `/`.
    pub path: String,
}

impl Target {
    /// What `Host` says: the name, plus the port when it is not 443 (as browsers send it).
    pub fn host_header(&self) -> String {
        if self.port == 443 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("https://{}{}", self.host_header(), path)
    }
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The check found what it expects.
    Pass,
    /// Worth a look; does not fail the run.
    Warn,
    /// The check found a problem; the run fails.
    Fail,
    /// Not applicable (e.g. no TLS session, so no web check).
    Skip,
}

impl Status {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

/// The result of one check on one name.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Stable identifier (docs/check.md lists them): `certificate-name`, `port-bridging`, ...
    pub id: &'static str,
    /// The published name it concerns.
    pub name: String,
    pub(crate) status: Status,
    /// What was seen.
    pub detail: String,
    /// For warnings and failures: the likely fix.
    pub fix: Option<String>,
}

impl Finding {
    pub(crate) fn pass(id: &'static str, name: &str, detail: impl Into<String>) -> Finding {
        Finding {
            id,
            name: name.to_string(),
            status: Status::Pass,
            detail: detail.into(),
            fix: None,
        }
    }

    pub(crate) fn fail(
        id: &'static str,
        name: &str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            id,
            name: name.to_string(),
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    pub(crate) fn warn(
        id: &'static str,
        name: &str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            status: Status::Warn,
            ..Finding::fail(id, name, detail, fix)
        }
    }

    pub(crate) fn skip(id: &'static str, name: &str, detail: impl Into<String>) -> Finding {
        Finding {
            status: Status::Skip,
            ..Finding::pass(id, name, detail)
        }
    }
}

/// Everything one run found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Names derived from a config, with where each came from.
    pub derived: Vec<DerivedName>,
    pub(crate) targets: Vec<Target>,
    pub(crate) findings: Vec<Finding>,
}

impl Report {
    /// True when no check failed (warnings allowed): the exit status.
    pub fn passed(&self) -> bool {
        !self.findings.iter().any(|f| f.status == Status::Fail)
    }
}

/// A problem with the command line or the config: nothing was checked.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The command line is unusable; says what is wrong.
    #[error("{0}")]
    Usage(String),
    /// The config cannot be read or compiled; says what is wrong.
    #[error("{0}")]
    Config(String),
}

/// Runs every check `opts` asks for. `progress` receives one line per step (the binary
/// prints it on stderr).
pub async fn run(
    opts: &CheckOptions,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Report, CheckError> {
    let timeout = crate::config::duration::parse_duration(&opts.timeout)
        .map_err(|e| CheckError::Usage(format!("--timeout: {e}")))?;
    let overrides = opts
        .resolve
        .iter()
        .map(|r| parse_resolve(r))
        .collect::<Result<Vec<_>, _>>()?;
    let roots = client::roots(&opts.ca).map_err(|e| CheckError::Usage(format!("--ca {e}")))?;

    let mut report = Report::default();
    let mut wanted: Vec<(String, Service, Option<u16>, Option<SocketAddr>)> = Vec::new();
    if let Some(path) = &opts.config {
        let derived = names::from_config_file(path).map_err(CheckError::Config)?;
        for d in &derived {
            wanted.push((d.name.clone(), d.service, Some(d.port), d.listener));
        }
        report.derived = derived;
    }
    for (list, service) in [
        (&opts.webext, Service::WebExt),
        (&opts.meet, Service::Meet),
        (&opts.dialin, Service::Dialin),
        (&opts.lyncdiscover, Service::Lyncdiscover),
        (&opts.oos, Service::OfficeOnline),
        (&opts.exchange, Service::Exchange),
    ] {
        for name in list {
            wanted.push((name.clone(), service, None, None));
        }
    }
    if wanted.is_empty() {
        return Err(CheckError::Usage(
            "nothing to check: give --config FILE, or at least one of --webext, --meet, --dialin, --lyncdiscover, --oos, --exchange".into(),
        ));
    }
    for (spec, service, port, listener) in wanted {
        let (host, path) = match spec.split_once('/') {
            Some((h, p)) => (h.to_ascii_lowercase(), format!("/{p}")),
            None => (spec.to_ascii_lowercase(), "/".to_string()),
        };
        let port = opts.port.or(port).unwrap_or(443);
        let addr = match resolve_override(&overrides, &host, port).or(listener) {
            Some(a) => a,
            None => match tokio::net::lookup_host((host.as_str(), port)).await {
                Ok(mut addrs) => match addrs.next() {
                    Some(a) => a,
                    None => {
                        report.findings.push(dns_failure(&host, "no address"));
                        continue;
                    }
                },
                Err(e) => {
                    report.findings.push(dns_failure(&host, &e.to_string()));
                    continue;
                }
            },
        };
        let t = Target {
            host,
            port,
            addr,
            service,
            path,
        };
        if !report
            .targets
            .iter()
            .any(|o| o.host == t.host && o.addr == t.addr && o.service == t.service)
        {
            report.targets.push(t);
        }
    }
    let published: Vec<String> = report.targets.iter().map(|t| t.host.clone()).collect();
    let ctx = web::Ctx {
        timeout,
        published: &published,
    };
    let long_poll_host = report
        .targets
        .iter()
        .find(|t| t.service == Service::WebExt)
        .or(report.targets.first())
        .map(|t| (t.host.clone(), t.addr));
    let mut flagged_servers = Vec::new();
    for spec in &opts.exchange_server {
        flagged_servers.push(
            exchange::parse_server(spec)
                .await
                .map_err(CheckError::Usage)?,
        );
    }
    let loaded = match &opts.config {
        Some(path)
            if report
                .targets
                .iter()
                .any(|t| t.service == Service::Exchange) =>
        {
            crate::config::load(path).ok()
        }
        _ => None,
    };
    let targets = report.targets.clone();
    let mut tls_done: Vec<(String, SocketAddr)> = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let step = format!("[{}/{}] {} ({})", i + 1, targets.len(), t.host, t.addr);
        if !tls_done.contains(&(t.host.clone(), t.addr)) {
            progress(&format!("{step}: TLS"));
            let found = tlscheck::check(t, roots.clone(), timeout).await;
            let reachable = !found
                .iter()
                .any(|f| f.id == "tls-handshake" && f.status == Status::Fail);
            report.findings.extend(found);
            tls_done.push((t.host.clone(), t.addr));
            if !reachable {
                continue;
            }
        }
        progress(&format!("{step}: {} web services", t.service.label()));
        report.findings.extend(web::check(&ctx, t).await);
        if t.service == Service::Exchange {
            progress(&format!(
                "{step}: Exchange health pages, build, certificates"
            ));
            report.findings.extend(exchange::checks(&ctx, t).await);
            let mut servers = flagged_servers.clone();
            if let Some(cfg) = &loaded {
                let farm = report
                    .derived
                    .iter()
                    .find(|d| d.name == t.host && d.listener == Some(t.addr))
                    .and_then(|d| d.farm.clone());
                if let Some(farm) = farm {
                    servers.extend(exchange::servers_from_config(cfg, &farm));
                }
            }
            report
                .findings
                .extend(exchange::extended_protection(&ctx, t, &servers).await);
        }
    }
    if let Some(secs) = opts.long_poll {
        if let Some((host, addr)) = long_poll_host {
            let t = targets
                .iter()
                .find(|t| t.host == host && t.addr == addr)
                .expect("long-poll target is one of the targets");
            progress(&format!("long poll: holding a request {secs} s on {host}"));
            report
                .findings
                .push(web::long_poll(&ctx, t, secs, &opts.long_poll_path).await);
        }
    }
    Ok(report)
}

fn dns_failure(host: &str, why: &str) -> Finding {
    Finding::fail(
        "dns",
        host,
        format!("cannot resolve {host}: {why}"),
        "publish the name in public DNS (an A record to the proxy's external address), or test with --resolve HOST:PORT:ADDR",
    )
}

/// `HOST:PORT:ADDR` as curl spells it; ADDR may be `[v6]`.
fn parse_resolve(text: &str) -> Result<(String, u16, IpAddr), CheckError> {
    let bad = || {
        CheckError::Usage(format!(
            "--resolve {text:?}: expected HOST:PORT:ADDR, e.g. lyncweb.contoso.com:443:203.0.113.10"
        ))
    };
    let (host, rest) = text.split_once(':').ok_or_else(bad)?;
    let (port, addr) = rest.split_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_ascii_lowercase(), port, addr))
}

fn resolve_override(
    overrides: &[(String, u16, IpAddr)],
    host: &str,
    port: u16,
) -> Option<SocketAddr> {
    overrides
        .iter()
        .find(|(h, p, _)| (h == host || h == "*") && *p == port)
        .map(|(_, p, a)| SocketAddr::new(*a, *p))
}

/// Default per-request timeout when none is given programmatically.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_takes_curl_spelling_with_v4_and_bracketed_v6() {
        let (h, p, a) = parse_resolve("Meet.Contoso.com:443:203.0.113.10").unwrap();
        assert_eq!((h.as_str(), p), ("meet.contoso.com", 443));
        assert_eq!(a.to_string(), "203.0.113.10");
        let (_, _, a) = parse_resolve("meet.contoso.com:8443:[::1]").unwrap();
        assert_eq!(a.to_string(), "::1");
        assert!(parse_resolve("meet.contoso.com:443").is_err());
        assert!(parse_resolve("meet.contoso.com:x:1.2.3.4").is_err());
    }

    #[test]
    fn host_header_carries_the_port_only_when_not_443() {
        let mut t = Target {
            host: "meet.contoso.com".into(),
            port: 443,
            addr: "127.0.0.1:443".parse().unwrap(),
            service: Service::Meet,
            path: "/".into(),
        };
        assert_eq!(t.host_header(), "meet.contoso.com");
        t.port = 8443;
        assert_eq!(t.url("/x"), "https://meet.contoso.com:8443/x");
    }
}
