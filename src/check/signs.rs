//! Signs of a proxy set up wrong, read from answers the web checks already have.
//!
//! Heuristics (docs/check.md says the same):
//! - **port-bridging**: the SfB external web site (4443) describes itself as
//!   `AccessLocation="External"` and links to published names; the internal site (443 on a
//!   Front End) says `Internal` and links to the pool's internal FQDN. Either sign in an
//!   autodiscover document means the proxy forwards 443 → 443 instead of 443 → 4443.
//! - **ssl-offload**: IIS builds autodiscover links from the scheme the request arrived with,
//!   and the Windows-auth services require SSL. `http://` links in a document fetched over
//!   HTTPS, or `403.4 SSL required` from /abs, /GroupExpansion or /ucwa, mean the proxy sent
//!   a TLS client's request to the member in clear.
//! - **internal-names**: internal-looking host names (`.local`, `.lan`, `.internal`, `.corp`,
//!   single labels, private addresses) in `Location`, in links of the documents, or in bodies;
//!   redirects and links to names not being checked are warnings; an `X-MS-Server-Fqdn`
//!   header naming an internal host is a warning.

use std::net::IpAddr;
use std::sync::OnceLock;

use regex::Regex;

use super::web::{access_location, links, Seen};
use super::Finding;

const BRIDGING_FIX: &str = "forward external 443 to the pool's port 4443 and 80 to 8080 (Portico: farm https_port = 4443, http_port = 8080; ARR: the farm's httpsPort/httpPort). Port 443 on a Front End is the internal web site";

/// Host of an absolute `http(s)://host[:port]/...` URL, lower-case.
fn url_host(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?.to_string()
    } else {
        authority.split(':').next()?.to_string()
    };
    Some((scheme.to_ascii_lowercase(), host.to_ascii_lowercase()))
}

/// True for names only an internal resolver knows, and for private/loopback addresses.
pub fn looks_internal(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if let Ok(ip) = host.parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(v4) => v4.is_private() || v4.is_link_local(),
            IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
        };
    }
    if host == "localhost" || !host.contains('.') {
        return !host.is_empty();
    }
    [
        ".local",
        ".lan",
        ".internal",
        ".corp",
        ".intra",
        ".intranet",
        ".localdomain",
        ".home.arpa",
        ".private",
    ]
    .iter()
    .any(|s| host.ends_with(s))
}

fn is_published(host: &str, published: &[String]) -> bool {
    published.iter().any(|p| p.eq_ignore_ascii_case(host))
}

/// Links of every autodiscover / discovery document seen.
fn document_links(seen: &[Seen]) -> Vec<(String, String, String)> {
    seen.iter()
        .filter(|s| s.autodiscover && s.answer.status == 200)
        .flat_map(|s| {
            links(&s.answer.text())
                .into_iter()
                .filter_map(|l| url_host(&l).map(|(scheme, host)| (scheme, host, l)))
                .collect::<Vec<_>>()
        })
        .collect()
}

pub fn port_bridging(name: &str, published: &[String], seen: &[Seen]) -> Finding {
    let docs: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.autodiscover && s.answer.status == 200)
        .collect();
    if docs.is_empty() {
        return Finding::skip(
            "port-bridging",
            name,
            "no autodiscover document to judge by",
        );
    }
    for s in &docs {
        if let Some(loc) = access_location(&s.answer.text()) {
            if loc.eq_ignore_ascii_case("internal") {
                return Finding::fail(
                    "port-bridging",
                    name,
                    format!("{} was answered by the pool's internal web site (AccessLocation=\"Internal\"): the proxy reaches the members on 443, not 4443", s.path),
                    BRIDGING_FIX,
                );
            }
        }
    }
    let links = document_links(seen);
    if let Some((_, host, link)) = links
        .iter()
        .find(|(_, h, _)| looks_internal(h) && !is_published(h, published))
    {
        return Finding::fail(
            "port-bridging",
            name,
            format!("autodiscover links point at the internal name {host} ({link}): the internal web site answered, not the external one"),
            BRIDGING_FIX,
        );
    }
    Finding::pass(
        "port-bridging",
        name,
        "the external web site answered (AccessLocation External, public links)",
    )
}

pub fn ssl_offload(name: &str, seen: &[Seen]) -> Finding {
    let fix = "re-encrypt to the pool: Portico farm ssl_offload = false and route scheme \"https\" (ARR: clear \"Enable SSL offloading\"); Skype for Business does not support SSL offloading";
    if let Some((_, _, link)) = document_links(seen)
        .into_iter()
        .find(|(scheme, _, _)| scheme == "http")
    {
        return Finding::fail(
            "ssl-offload",
            name,
            format!("an autodiscover document fetched over HTTPS links with http:// ({link}): the member saw the request arrive in clear"),
            fix,
        );
    }
    if let Some(s) = seen.iter().find(|s| {
        s.answer.status == 403 && {
            let t = s.answer.text().to_ascii_lowercase();
            t.contains("403.4") || t.contains("ssl required")
        }
    }) {
        return Finding::fail(
            "ssl-offload",
            name,
            format!(
                "{} answered 403.4 SSL required over HTTPS: the proxy forwards it in clear",
                s.path
            ),
            fix,
        );
    }
    if seen.is_empty() {
        return Finding::skip("ssl-offload", name, "no answer to judge by");
    }
    Finding::pass(
        "ssl-offload",
        name,
        "the pool saw HTTPS (links are https://, no SSL-required refusals)",
    )
}

pub fn internal_names(name: &str, published: &[String], seen: &[Seen]) -> Finding {
    static URL: OnceLock<Regex> = OnceLock::new();
    let url_re =
        URL.get_or_init(|| Regex::new(r#"(?i)\bhttps?://[^\s"'<>]+"#).expect("static regex"));
    let mut leaks: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    for s in seen {
        let a = &s.answer;
        if let Some(loc) = a.header("location") {
            if let Some((_, host)) = url_host(loc) {
                if looks_internal(&host) && !is_published(&host, published) {
                    leaks.push(format!("{} redirects to {loc}", s.path));
                } else if !is_published(&host, published) {
                    warnings.push(format!(
                        "{} redirects to {host}, a name not checked here",
                        s.path
                    ));
                }
            }
        }
        if let Some(fqdn) = a.header("x-ms-server-fqdn") {
            if !is_published(fqdn, published) {
                warnings.push(format!(
                    "{} names the server {fqdn} in X-MS-Server-Fqdn",
                    s.path
                ));
            }
        }
        let body = a.text();
        for m in url_re.find_iter(&body) {
            if let Some((_, host)) = url_host(m.as_str()) {
                if is_published(&host, published) {
                    continue;
                }
                if looks_internal(&host) {
                    leaks.push(format!("{} body links to {}", s.path, m.as_str()));
                }
            }
        }
    }
    for (_, host, _) in document_links(seen) {
        if !is_published(&host, published) && !looks_internal(&host) {
            warnings.push(format!(
                "a document links to {host}, a name not checked here"
            ));
        }
    }
    leaks.dedup();
    warnings.dedup();
    if !leaks.is_empty() {
        return Finding::fail(
            "internal-names",
            name,
            format!("internal host names reach the client: {}", leaks.join("; ")),
            "clients outside cannot resolve these: keep the Host header (Portico preserve_host = true), reach the pool's external site (4443), and publish every name the documents link to",
        );
    }
    if !warnings.is_empty() {
        return Finding::warn(
            "internal-names",
            name,
            warnings.join("; "),
            "make sure these names are published too (check them with another --webext/--oos/... flag)",
        );
    }
    Finding::pass(
        "internal-names",
        name,
        "no internal host names in redirects, links or bodies",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_looking_names_and_addresses() {
        for h in [
            "fe01.contoso.local",
            "pool01",
            "10.0.1.11",
            "sfb.corp",
            "x.home.arpa",
        ] {
            assert!(looks_internal(h), "{h}");
        }
        for h in ["lyncweb.contoso.com", "203.0.113.10", "www.w3.org"] {
            assert!(!looks_internal(h), "{h}");
        }
    }

    #[test]
    fn url_host_strips_port_userinfo_and_brackets() {
        assert_eq!(
            url_host("https://Lyncweb.contoso.com:8443/x?y").unwrap(),
            ("https".into(), "lyncweb.contoso.com".into())
        );
        assert_eq!(url_host("http://[fd00::1]:80/").unwrap().1, "fd00::1");
        assert_eq!(url_host("https://u@h.example/").unwrap().1, "h.example");
        assert!(url_host("/relative").is_none());
    }
}
