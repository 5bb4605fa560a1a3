//! Which names a Portico config publishes, for `portico check --config`.
//!
//! Candidates come from two places: literal-ish `{HTTP_HOST}` conditions of routing rules
//! (`^meet\.contoso\.com$`, or a label prefix such as `^(lyncweb|lyncdiscover)\.` completed with
//! the domains of the listener certificates), and the DNS names of the listener certificates
//! (wildcards excepted). A candidate is kept only when the config's own rules route a request
//! for it to a farm; the others are listed with the reason they were left out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use regex_syntax::hir::literal::{ExtractKind, Extractor};

use super::tlscheck::name_covers;
use super::Service;
use crate::config::{file, Config};
use crate::rules::{Outcome, RequestView};

/// A name found in the config, and what the checker will do with it.
#[derive(Debug, Clone)]
pub struct DerivedName {
    pub(crate) name: String,
    pub(crate) service: Service,
    /// Where it came from: `rule "lyncweb"`, `certificate lyncweb.pem`, ...
    pub source: String,
    /// The farm the config's rules send it to; `None` when no rule routes it (not checked).
    pub farm: Option<String>,
    /// TLS listener it is checked on (address to connect to, port for Host).
    pub listener: Option<SocketAddr>,
    pub(crate) port: u16,
}

/// Loads and validates `path`, then derives its published names (one entry per name and TLS
/// listener; unrouted names are included with `farm: None` and no listener).
pub fn from_config_file(path: &Path) -> Result<Vec<DerivedName>, String> {
    let config = crate::config::load(path).map_err(|e| e.to_string())?;
    let source = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let raw: file::File =
        toml::from_str(&source).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(derive_names(&config, &raw))
}

/// See the module documentation.
pub fn derive_names(config: &Config, raw: &file::File) -> Vec<DerivedName> {
    let mut cert_names: Vec<(String, String)> = Vec::new();
    for l in &config.listeners {
        if let Some(tls) = &l.tls {
            for c in tls.certificates() {
                let file = c.cert_path.file_name().map_or_else(
                    || c.cert_path.display().to_string(),
                    |f| f.to_string_lossy().into_owned(),
                );
                for n in &c.names {
                    cert_names.push((n.to_ascii_lowercase(), file.clone()));
                }
            }
        }
    }
    let domains = domains_of(cert_names.iter().map(|(n, _)| n.as_str()));

    let mut candidates: Vec<(String, String)> = Vec::new();
    for r in &raw.rule {
        let r = r.get_ref();
        if r.action.get_ref().route.is_none() {
            continue;
        }
        for c in &r.conditions {
            let c = c.get_ref();
            if c.negate == Some(true)
                || !c.input.get_ref().trim().eq_ignore_ascii_case("{HTTP_HOST}")
            {
                continue;
            }
            let Some(pattern) = &c.pattern else { continue };
            let source = format!("rule {:?}", r.name.get_ref());
            for lit in host_literals(pattern.get_ref()) {
                if lit.ends_with('.') || !lit.contains('.') {
                    let prefix = if lit.ends_with('.') {
                        lit.clone()
                    } else {
                        format!("{lit}.")
                    };
                    for d in &domains {
                        let name = format!("{prefix}{d}");
                        if cert_names.iter().any(|(n, _)| name_covers(n, &name)) {
                            candidates.push((name, source.clone()));
                        }
                    }
                } else {
                    candidates.push((lit, source.clone()));
                }
            }
        }
    }
    for (n, file) in &cert_names {
        if !n.starts_with("*.") {
            candidates.push((n.clone(), format!("certificate {file}")));
        }
    }

    let tls_listeners: Vec<SocketAddr> = config
        .listeners
        .iter()
        .filter(|l| l.tls.is_some())
        .map(|l| connectable(l.bind))
        .collect();
    let mut out: Vec<DerivedName> = Vec::new();
    for (name, source) in candidates {
        if out.iter().any(|d| d.name == name) {
            continue;
        }
        if tls_listeners.is_empty() {
            out.push(DerivedName {
                service: classify(&name, None),
                name,
                source,
                farm: None,
                listener: None,
                port: 443,
            });
            continue;
        }
        for &addr in &tls_listeners {
            let farm = routed_farm(config, &name, addr.port());
            out.push(DerivedName {
                service: classify(&name, farm.as_deref()),
                name: name.clone(),
                source: source.clone(),
                listener: farm.as_ref().map(|_| addr),
                farm,
                port: addr.port(),
            });
        }
    }
    out
}

/// A wildcard bind is reached on loopback.
fn connectable(bind: SocketAddr) -> SocketAddr {
    match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), bind.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), bind.port())
        }
        _ => bind,
    }
}

/// Parent domains of certificate names: `*.contoso.com` and `lyncweb.contoso.com` both give
/// `contoso.com`.
fn domains_of<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let d = n
            .strip_prefix("*.")
            .or_else(|| n.split_once('.').map(|(_, d)| d));
        if let Some(d) = d {
            if d.contains('.') && !out.iter().any(|o| o == d) {
                out.push(d.to_string());
            }
        }
    }
    out
}

/// The literal beginnings a host pattern demands: `^(lyncweb|lyncdiscover)\.` gives
/// `lyncweb.` and `lyncdiscover.`; `^meet\.contoso\.com(:\d+)?$` gives `meet.contoso.com`.
/// Patterns without a literal beginning give nothing.
pub fn host_literals(pattern: &str) -> Vec<String> {
    let Ok(hir) = regex_syntax::parse(pattern) else {
        return Vec::new();
    };
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
    let Some(lits) = seq.literals() else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for l in lits {
        let Ok(s) = std::str::from_utf8(l.as_bytes()) else {
            continue;
        };
        let s = s.split(':').next().unwrap_or("").to_ascii_lowercase();
        let plausible = !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            && !s.starts_with('.');
        if plausible && !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Asks the config's own rules where `GET /` for `name` over TLS goes.
fn routed_farm(config: &Config, name: &str, port: u16) -> Option<String> {
    let host = if port == 443 {
        name.to_string()
    } else {
        format!("{name}:{port}")
    };
    let headers = http::HeaderMap::new();
    let view = RequestView {
        method: "GET",
        host: &host,
        https: true,
        server_port: port,
        path: "/",
        query: None,
        remote_addr: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)),
        headers: &headers,
    };
    match config.rules.evaluate(&view) {
        Outcome::Route { farm, .. } => config.farms.get(farm.index()).map(|f| f.name.clone()),
        _ => None,
    }
}

/// Which checks a name gets, from its first label and then its farm's name.
pub fn classify(name: &str, farm: Option<&str>) -> Service {
    let label = name.split('.').next().unwrap_or("").to_ascii_lowercase();
    let by = |word: &str| -> Option<Service> {
        let w = word.to_ascii_lowercase();
        if w.starts_with("lyncdiscover") {
            Some(Service::Lyncdiscover)
        } else if w.starts_with("meet") {
            Some(Service::Meet)
        } else if w.starts_with("dialin") {
            Some(Service::Dialin)
        } else if [
            "oos",
            "owas",
            "wac",
            "officeonline",
            "officewebapps",
            "office-online",
        ]
        .iter()
        .any(|p| w.starts_with(p))
        {
            Some(Service::OfficeOnline)
        } else if [
            "mail",
            "webmail",
            "outlook",
            "exchange",
            "autodiscover",
            "owa",
            "ews",
            "eas",
        ]
        .iter()
        .any(|p| w.starts_with(p))
        {
            Some(Service::Exchange)
        } else {
            None
        }
    };
    by(&label)
        .or_else(|| farm.and_then(by))
        .unwrap_or(Service::WebExt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_literals_read_prefixes_alternations_and_whole_names() {
        assert_eq!(
            host_literals(r"^(lyncweb|lyncdiscover)\."),
            ["lyncweb.", "lyncdiscover."]
        );
        assert_eq!(
            host_literals(r"^meet\.contoso\.com(:\d+)?$"),
            ["meet.contoso.com"]
        );
        assert_eq!(
            host_literals(r"^Dialin\.contoso\.com$"),
            ["dialin.contoso.com"]
        );
        assert!(host_literals(r".*").is_empty());
        assert!(host_literals(r"(").is_empty());
    }

    #[test]
    fn names_are_classified_by_label_then_farm() {
        assert_eq!(
            classify("lyncdiscover.contoso.com", None),
            Service::Lyncdiscover
        );
        assert_eq!(classify("meet.contoso.com", None), Service::Meet);
        assert_eq!(classify("owas.contoso.com", None), Service::OfficeOnline);
        assert_eq!(classify("mail.contoso.com", None), Service::Exchange);
        assert_eq!(classify("lyncweb.contoso.com", None), Service::WebExt);
        assert_eq!(
            classify("docs.contoso.com", Some("oos")),
            Service::OfficeOnline
        );
    }

    #[test]
    fn domains_come_from_wildcards_and_parents() {
        let d =
            domains_of(["*.contoso.com", "lyncweb.contoso.com", "sip.fabrikam.com"].into_iter());
        assert_eq!(d, ["contoso.com", "fabrikam.com"]);
    }
}
