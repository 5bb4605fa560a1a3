//! Exchange-specific checks: each workload's health page through the proxy, the build the
//! servers show, and the Extended Protection trap (the proxy presenting another certificate
//! than the Exchange servers, which makes re-encrypted NTLM fail with endless prompts).

use std::net::SocketAddr;

use rustls::pki_types::CertificateDer;

use super::client::{self, Offer};
use super::web::Ctx;
use super::{Finding, Target};

/// The virtual directories with a `/<vdir>/healthcheck.htm`, and the check id of each.
const HEALTH_PAGES: [(&str, &str); 8] = [
    ("exchange-health-owa", "owa"),
    ("exchange-health-ecp", "ecp"),
    ("exchange-health-ews", "EWS"),
    ("exchange-health-mapi", "mapi"),
    ("exchange-health-rpc", "rpc"),
    ("exchange-health-oab", "OAB"),
    ("exchange-health-activesync", "Microsoft-Server-ActiveSync"),
    ("exchange-health-autodiscover", "Autodiscover"),
];

/// An Exchange server to compare certificates with: a name (for the report) and an address.
#[derive(Debug, Clone)]
pub struct ExchangeServer {
    pub label: String,
    pub addr: SocketAddr,
}

/// Health pages and the build, through the proxy.
pub async fn checks(ctx: &Ctx<'_>, t: &Target) -> Vec<Finding> {
    let mut out = Vec::new();
    for (id, vdir) in HEALTH_PAGES {
        let path = format!("/{vdir}/healthcheck.htm");
        let a = match client::get(t.addr, &t.host, &t.host_header(), &path, &[], ctx.timeout).await
        {
            Ok(a) => a,
            Err(f) => {
                out.push(Finding::fail(
                    id,
                    &t.host,
                    format!("GET {} failed: {}", t.url(&path), f.why),
                    "publish every Exchange virtual directory through the proxy",
                ));
                continue;
            }
        };
        let server = a
            .header("x-feserver")
            .map(|s| format!(" (X-FEServer {s})"))
            .unwrap_or_default();
        out.push(match a.status {
            200 => Finding::pass(id, &t.host, format!("200 from {}{server}", t.url(&path))),
            503 => Finding::fail(
                id,
                &t.host,
                format!("{} answered 503{server}: Managed Availability reports {vdir} down on the server that answered", t.url(&path)),
                format!("a proxy that checks each protocol sends /{vdir} only to servers whose health page answers 200: give the farm one health check per virtual directory (`portico init exchange` writes them); if every server is down for {vdir}, see Get-ServerHealthReport on the servers"),
            ),
            s => Finding::fail(
                id,
                &t.host,
                format!("{} answered {s}{server}, not 200", t.url(&path)),
                format!("route /{vdir} to the Exchange servers; the health page needs no authentication"),
            ),
        });
    }
    out.push(build(ctx, t).await);
    out
}

/// `X-OWA-Version` on OWA's answer names the build; 15.1 is 2016, 15.2 is 2019 / SE.
async fn build(ctx: &Ctx<'_>, t: &Target) -> Finding {
    let id = "exchange-build";
    let Ok(a) = client::get(t.addr, &t.host, &t.host_header(), "/owa/", &[], ctx.timeout).await
    else {
        return Finding::skip(id, &t.host, "GET /owa/ gave no answer");
    };
    match a.header("x-owa-version") {
        Some(v) => Finding::pass(id, &t.host, format!("Exchange build {v} ({})", product(v))),
        None => Finding::skip(
            id,
            &t.host,
            "the build is not visible (no X-OWA-Version on /owa/)",
        ),
    }
}

fn product(build: &str) -> &'static str {
    let mut parts = build.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    match (parts.next(), parts.next(), parts.next()) {
        (Some(15), Some(2), Some(b)) if b >= 2562 => "Exchange Server Subscription Edition",
        (Some(15), Some(2), _) => "Exchange Server 2019",
        (Some(15), Some(1), _) => "Exchange Server 2016",
        (Some(15), Some(0), _) => "Exchange Server 2013",
        (Some(14), _, _) => "Exchange Server 2010",
        _ => "unknown version",
    }
}

/// The leaf certificate `addr` presents for SNI `host`.
async fn leaf(
    addr: SocketAddr,
    host: &str,
    ctx: &Ctx<'_>,
) -> Result<CertificateDer<'static>, String> {
    let (_, hs) = client::connect(
        addr,
        host,
        client::client_config(Offer::Modern),
        ctx.timeout,
    )
    .await?;
    hs.chain
        .into_iter()
        .next()
        .ok_or_else(|| format!("{addr} sent no certificate"))
}

fn describe(der: &CertificateDer<'_>) -> String {
    match x509_parser::parse_x509_certificate(der.as_ref()) {
        Ok((_, c)) => format!(
            "subject {}, serial {}, issuer {}",
            c.subject(),
            c.raw_serial_as_string(),
            c.issuer()
        ),
        Err(_) => format!("{} bytes, not parseable", der.len()),
    }
}

/// Compares the proxy's certificate for `t` with each Exchange server's.
pub async fn extended_protection(
    ctx: &Ctx<'_>,
    t: &Target,
    servers: &[ExchangeServer],
) -> Vec<Finding> {
    let id = "extended-protection";
    if servers.is_empty() {
        return vec![Finding::skip(
            id,
            &t.host,
            "no Exchange server to compare with (give --exchange-server ADDR:PORT, or --config)",
        )];
    }
    let proxy = match leaf(t.addr, &t.host, ctx).await {
        Ok(c) => c,
        Err(e) => {
            return vec![Finding::skip(
                id,
                &t.host,
                format!("no certificate from the proxy: {e}"),
            )]
        }
    };
    let mut out = Vec::new();
    for s in servers {
        out.push(match leaf(s.addr, &t.host, ctx).await {
            Err(e) => Finding::warn(id, &t.host, format!("cannot read the certificate of Exchange server {} ({}): {e}", s.label, s.addr), "run the check from where the servers are reachable, or drop that --exchange-server"),
            Ok(c) if c == proxy => Finding::pass(id, &t.host, format!("the proxy presents the same certificate as Exchange server {} ({})", s.label, describe(&c))),
            Ok(c) => Finding::warn(
                id,
                &t.host,
                format!(
                    "Extended Protection trap: the proxy presents {} but Exchange server {} ({}) presents {}. With Extended Protection on (the default since the 2022 security updates) NTLM/Negotiate through the proxy then fails with endless password prompts, never an error",
                    describe(&proxy),
                    s.label,
                    s.addr,
                    describe(&c)
                ),
                "serve the same certificate on the proxy listener as on the Exchange servers' IIS binding (import one certificate and key on both), and keep SSL offloading off",
            ),
        });
    }
    out
}

/// `ADDR:PORT` or `NAME:PORT` (resolved now).
pub async fn parse_server(spec: &str) -> Result<ExchangeServer, String> {
    if let Ok(addr) = spec.parse::<SocketAddr>() {
        return Ok(ExchangeServer {
            label: spec.to_string(),
            addr,
        });
    }
    let addr = tokio::net::lookup_host(spec)
        .await
        .map_err(|e| format!("--exchange-server {spec:?}: {e} (expected ADDR:PORT or NAME:PORT)"))?
        .next()
        .ok_or_else(|| format!("--exchange-server {spec:?}: no address"))?;
    Ok(ExchangeServer {
        label: spec.to_string(),
        addr,
    })
}

/// The members of the farm the config routes `host` to, as addresses on their HTTPS port.
pub fn servers_from_config(config: &crate::config::Config, farm: &str) -> Vec<ExchangeServer> {
    let Some(f) = config.farms.iter().find(|f| f.name == farm) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for m in &f.members {
        let ips = match config.resolve.get(&m.address) {
            Some(ips) => ips.clone(),
            None => m.address.parse().map(|ip| vec![ip]).unwrap_or_default(),
        };
        for ip in ips {
            out.push(ExchangeServer {
                label: m.address.clone(),
                addr: SocketAddr::new(ip, m.https_port),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::product;

    #[test]
    fn builds_name_their_product() {
        assert_eq!(product("15.2.1544.4"), "Exchange Server 2019");
        assert_eq!(
            product("15.2.2562.17"),
            "Exchange Server Subscription Edition"
        );
        assert_eq!(product("15.1.2507.6"), "Exchange Server 2016");
        assert_eq!(product("x"), "unknown version");
    }
}
