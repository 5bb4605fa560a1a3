//! Deployment facts → a complete, commented Portico config.

use super::toml_out::{inline, q, str_array, Doc};
use super::{Deployment, MemberSpec, Pool, Service};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Idle timeout of SfB farms: mobile push notifications wait up to 900 s (Microsoft: 960 s).
pub const SFB_TIMEOUT: &str = "960s";
/// Idle timeout of the Exchange farm: ActiveSync heartbeats last up to 3540 s, so > 3600 s.
pub const EXCHANGE_TIMEOUT: &str = "3900s";
/// Exchange's virtual directories, each with its own `/<vdir>/healthcheck.htm` that Managed
/// Availability turns to 503 when that protocol is unhealthy on that server.
pub const EXCHANGE_VDIRS: [&str; 8] = [
    "owa",
    "ecp",
    "ews",
    "mapi",
    "rpc",
    "oab",
    "Microsoft-Server-ActiveSync",
    "autodiscover",
];
/// Idle timeout of the Office Online Server farm.
pub const OOS_TIMEOUT: &str = "960s";

/// The farm a pool is published through, named after the first label of its external FQDN.
pub fn pool_farm_names(pools: &[Pool]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for p in pools {
        let short = p.webext.split('.').next().unwrap_or(&p.webext).to_string();
        let name = if names.contains(&short) {
            p.webext.clone()
        } else {
            short
        };
        names.push(name);
    }
    names
}

/// `^(?:meet\.contoso\.com|meet\.fabrikam\.com)(?::\d+)?$`: the Host header, port optional.
pub fn host_pattern(names: &[String]) -> String {
    let alts: Vec<String> = names.iter().map(|n| regex::escape(n)).collect();
    format!(r"^(?:{})(?::\d+)?$", alts.join("|"))
}

struct FarmOut<'a> {
    name: &'a str,
    comment: String,
    members: Vec<String>,
    bridged: bool,
    timeout: &'static str,
    timeout_comment: &'static str,
    health: (&'static str, &'static str),
    /// Virtual directories checked one by one, each check guarding its path (Exchange);
    /// empty: the one `health` check.
    per_path: &'static [&'static str],
    body_note: &'static str,
}

/// Member addresses for the farm, recording `[resolve]` entries on the way.
fn members(
    internal_fqdn: &str,
    specs: &[MemberSpec],
    resolve: &mut BTreeMap<String, Vec<IpAddr>>,
    map_fqdn_to_all: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut bare = Vec::new();
    for m in specs {
        if m.name.is_empty() {
            bare.extend(m.address);
            continue;
        }
        if let Some(ip) = m.address {
            add(resolve, &m.name, ip);
        }
        out.push(m.name.clone());
    }
    if !bare.is_empty() || out.is_empty() {
        // Bare addresses (or none at all): reach them by the internal FQDN, as the ARR box's
        // hosts file did; Portico tries the addresses of a name in turn.
        for ip in &bare {
            add(resolve, internal_fqdn, *ip);
        }
        out.insert(0, internal_fqdn.to_string());
    } else if map_fqdn_to_all {
        // Also map the pool FQDN to every member, as the hosts file of an ARR box does.
        for ip in specs.iter().filter_map(|m| m.address) {
            add(resolve, internal_fqdn, ip);
        }
    }
    out.dedup();
    out
}

fn add(resolve: &mut BTreeMap<String, Vec<IpAddr>>, name: &str, ip: IpAddr) {
    let v = resolve.entry(name.to_string()).or_default();
    if !v.contains(&ip) {
        v.push(ip);
    }
}

fn service_members(s: &Service, resolve: &mut BTreeMap<String, Vec<IpAddr>>) -> Vec<String> {
    let fallback = s.names.first().cloned().unwrap_or_default();
    members(&fallback, &s.members, resolve, false)
}

/// Renders the whole config. The result validates once the certificate files exist.
pub fn render(d: &Deployment) -> String {
    let mut doc = Doc::new();
    let n = &d.network;
    let published = d.published_names();
    header(&mut doc, d, &published);

    // Farms first computed, so [resolve] can be written before them.
    let mut resolve = BTreeMap::new();
    let mut farms = Vec::new();
    let pool_farms = pool_farm_names(&d.pools);
    for (p, name) in d.pools.iter().zip(&pool_farms) {
        farms.push(FarmOut {
            name,
            comment: format!(
                "Front End / Director pool {} (external web services {})",
                p.fqdn, p.webext
            ),
            members: members(&p.fqdn, &p.members, &mut resolve, true),
            bridged: true,
            timeout: SFB_TIMEOUT,
            timeout_comment: "per-read idle: UCWA long polls 180 s, mobile push waits up to 900 s",
            health: ("/meet/", "200-499"),
            per_path: &[],
            body_note: "Body size: meeting content uploads reach 500 MB (/DataCollabWeb/Ext/Handler accepts\n524,288,000 bytes). Portico streams bodies and sets no size limit, so nothing to raise;\nan upstream limit here would have to allow at least 500 MB.",
        });
    }
    if let Some(o) = &d.oos {
        farms.push(FarmOut {
            name: "oos",
            comment: format!("Office Online Server {}: not bridged, 443 -> 443 and 80 -> 80", o.names.join(", ")),
            members: service_members(o, &mut resolve),
            bridged: false,
            timeout: OOS_TIMEOUT,
            timeout_comment: "per-read idle; PowerPoint sharing holds requests open",
            health: ("/hosting/discovery", "200"),
            per_path: &[],
            body_note: "WopiSrc query values arrive double-encoded: Portico forwards path and query byte for byte.",
        });
    }
    if let Some(e) = &d.exchange {
        farms.push(FarmOut {
            name: "exchange",
            comment: format!("Exchange {}: 443 -> 443, one namespace, no affinity needed", e.names.join(", ")),
            members: service_members(e, &mut resolve),
            bridged: false,
            timeout: EXCHANGE_TIMEOUT,
            timeout_comment: "per-read idle: ActiveSync heartbeats last up to 3540 s, so > 3600 s",
            health: ("/owa/healthcheck.htm", "200"),
            per_path: &EXCHANGE_VDIRS,
            body_note: "Body size: RPC over HTTP sends RPC_IN_DATA / RPC_OUT_DATA with Content-Length up to 2 GB,\nstreamed message by message for hours. Portico streams bodies both ways; the route's\ndefault max_body (2 GB) lets them through, and any limit set here must allow 2 GB.\nExtended Protection (on by default since 2022): keep ssl_offload = false and serve the SAME\ncertificate on the listener as the Exchange servers present, or NTLM fails with endless\nprompts. `portico check --exchange NAME` compares the two.",
        });
    }

    listeners(&mut doc, d, &published);

    if !resolve.is_empty() {
        doc.table("[resolve]", Some("the hosts file of the ARR box"));
        for (name, ips) in &resolve {
            let ips: Vec<String> = ips.iter().map(|i| i.to_string()).collect();
            let comment = (ips.len() > 1).then_some("DNS load balancing: every member");
            doc.kv(name, &str_array(&ips), comment);
        }
    }

    doc.table("[upstream]", Some("how Portico reaches the members"));
    match n.source_address {
        Some(a) => doc.kv("source_address", &q(&a.to_string()), Some("internal NIC")),
        None => doc.comment("source_address = \"10.0.1.5\"               # internal NIC (default: the system picks)"),
    }
    match &n.ca {
        Some(ca) => doc.kv("ca", &q(ca), Some("internal CA that issued the members' certificates")),
        None => doc.comment("ca = \"certs/internal-root.pem\"         # internal CA of the members' certificates (default: public roots)"),
    }

    lockout(&mut doc, &d.protection);

    for f in &farms {
        farm(&mut doc, f);
        // OOS serves documents to signed-in SfB/SharePoint users; it takes no passwords.
        if d.protection.lockout.is_some() && f.name != "oos" {
            doc.kv(
                "lockout",
                "true",
                Some("count this farm's failed sign-ins ([lockout])"),
            );
        }
    }

    rules(&mut doc, d, &pool_farms);
    doc.finish()
}

fn header(doc: &mut Doc, d: &Deployment, published: &[String]) {
    let what = match d.profile {
        "exchange" => "Exchange Server (OWA, EWS, ActiveSync, MAPI/RPC over HTTP, Autodiscover)",
        "oos" => "Office Online Server / Office Web Apps",
        _ => "Skype for Business / Lync external web services and simple URLs",
    };
    doc.comment(&format!(
        "Portico config for {what}, written by `portico init {}`.\n\
         Follows Microsoft's reverse proxy requirements: TLS 1.2+ to clients, Host kept, no SSL\n\
         offloading (re-encrypt to the members), no cache, no pre-authentication, long idle timeouts{}.\n\
         Published names: {}.\n\
         Check it with `portico validate --config FILE`, then `portico run --config FILE`.",
        d.profile,
        if d.pools.is_empty() {
            ""
        } else {
            ",\nport bridging 443 -> 4443 and 80 -> 8080 for Front End and Director pools"
        },
        published.join(", ")
    ));
    if !d.sip_domains.is_empty() {
        doc.comment(&format!("SIP domain(s): {}.", d.sip_domains.join(", ")));
    }
}

fn listeners(doc: &mut Doc, d: &Deployment, published: &[String]) {
    let n = &d.network;
    let ip = match n.listen {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    doc.table("[[listener]]", Some("external NIC, HTTPS"));
    doc.kv("bind", &q(&format!("{ip}:{}", n.https_port)), None);
    doc.line("[listener.tls]", None);
    doc.kv(
        "min_version",
        &q("1.2"),
        Some("current iOS clients require TLS 1.2"),
    );
    let mut http1: Vec<String> = d.pools.iter().map(|p| p.webext.clone()).collect();
    if let Some(e) = &d.exchange {
        http1.extend(e.names.iter().cloned());
    }
    if !http1.is_empty() {
        doc.line(
            &format!("http1_only = {}", str_array(&http1)),
            Some("Windows auth (NTLM/Negotiate) flows here: IIS refuses it over HTTP/2"),
        );
    }
    doc.comment(&format!(
        "The certificate(s) must cover every published name (SAN entries; SNI picks among several):\n{}",
        published.join(", ")
    ));
    doc.line("certificates = [", None);
    for c in &n.certificates {
        doc.line(
            &format!("  {},", inline(&[("cert", q(&c.cert)), ("key", q(&c.key))])),
            None,
        );
    }
    if n.acme.is_some() {
        doc.line(
            &format!("  {},", inline(&[("acme", q("public"))])),
            Some("obtained and renewed by Portico, see [[acme]]"),
        );
    }
    doc.line("]", None);
    doc.table("[[listener]]", Some("external NIC, HTTP"));
    doc.kv(
        "bind",
        &q(&format!("{ip}:{}", n.http_port)),
        Some(if d.pools.is_empty() {
            "clear-text requests go to the members' port 80"
        } else {
            "clear-text requests: pools get them on 8080"
        }),
    );
    if let Some(a) = &n.acme {
        doc.table(
            "[[acme]]",
            Some("one SAN certificate for every published name; HTTP-01 is answered on the HTTP listener"),
        );
        doc.kv("name", &q("public"), None);
        doc.kv("directory", &q(&a.directory), None);
        let contact: Vec<String> = a.contact.iter().map(|c| q(c)).collect();
        doc.kv("contact", &super::toml_out::array(&contact), None);
        let names: Vec<String> = published.iter().map(|c| q(c)).collect();
        doc.kv("names", &super::toml_out::array(&names), None);
        doc.kv(
            "challenge",
            &q("http-01"),
            Some("or \"tls-alpn-01\" when port 80 is not reachable"),
        );
        doc.kv(
            "storage",
            &q("acme"),
            Some("account, certificate, key and state; share it between HA instances"),
        );
    }
}

fn farm(doc: &mut Doc, f: &FarmOut) {
    doc.blank();
    doc.comment(&f.comment);
    doc.line("[[farm]]", None);
    doc.kv("name", &q(f.name), None);
    let members: Vec<String> = f
        .members
        .iter()
        .map(|m| inline(&[("address", q(m))]))
        .collect();
    doc.kv("members", &super::toml_out::array(&members), None);
    if f.bridged {
        doc.kv(
            "https_port",
            "4443",
            Some("port bridging: 443 -> 4443 (the pool's external web site)"),
        );
        doc.kv("http_port", "8080", Some("and 80 -> 8080"));
    } else {
        doc.kv("https_port", "443", Some("not bridged"));
        doc.kv("http_port", "80", None);
    }
    doc.kv(
        "ssl_offload",
        "false",
        Some("re-encrypt: SSL offloading is not supported"),
    );
    doc.kv(
        "preserve_host",
        "true",
        Some("pass the client's Host header unchanged"),
    );
    doc.kv("timeout", &q(f.timeout), Some(f.timeout_comment));
    if f.per_path.is_empty() {
        doc.kv(
            "health",
            &inline(&[
                ("url", q(f.health.0)),
                ("interval", q("10s")),
                ("timeout", q("5s")),
                ("expect", q(f.health.1)),
            ]),
            None,
        );
    } else {
        doc.comment("Health per protocol: a server whose EWS is down stops getting /EWS but keeps serving OWA;\na server failing every check is out. (One OWA check for the whole farm keeps sending EWS to it.)");
        doc.line("health = [", None);
        for vdir in f.per_path {
            let check = inline(&[
                ("url", q(&format!("/{vdir}/healthcheck.htm"))),
                ("path", q(&format!("/{vdir}"))),
                ("interval", q("10s")),
                ("timeout", q("5s")),
                ("expect", q("200")),
            ]);
            doc.line(&format!("  {check},"), None);
        }
        doc.line("]", None);
    }
    doc.comment(if f.bridged {
        "No affinity: not needed on the external web FQDN (if a cookie is ever used, SfB names it MS-WSMAN).\nNo cache: Portico does not cache (Microsoft: disk cache off)."
    } else {
        "No affinity: not needed. No cache: Portico does not cache."
    });
    doc.comment(f.body_note);
}

fn rule(doc: &mut Doc, name: &str, comment: &str, hosts: &[String], farm: &str) {
    doc.blank();
    doc.comment(comment);
    doc.line("[[rule]]", None);
    doc.kv("name", &q(name), None);
    doc.kv("match", &q(".*"), Some("every path (/*)"));
    doc.kv(
        "conditions",
        &format!(
            "[ {} ]",
            inline(&[
                ("input", q("{HTTP_HOST}")),
                ("pattern", q(&host_pattern(hosts)))
            ])
        ),
        None,
    );
    doc.kv(
        "action",
        &inline(&[("route", q(farm))]),
        Some("path and query forwarded byte for byte; TLS in -> TLS out"),
    );
    doc.kv("stop", "true", None);
}

fn rules(doc: &mut Doc, d: &Deployment, pool_farms: &[String]) {
    doc.blank();
    doc.comment("Rules run in order; the first whose host matches routes the request. Unknown names get 404.");
    for (p, farm) in d.pools.iter().zip(pool_farms) {
        rule(
            doc,
            farm,
            &format!("External web services of {}: /abs, /ucwa, /Autodiscover, /Scheduler, ... and path-style simple URLs", p.fqdn),
            std::slice::from_ref(&p.webext),
            farm,
        );
    }
    if let Some(first) = pool_farms.first() {
        let s = &d.simple_urls;
        for (name, hosts, what) in [
            ("meet", &s.meet, "Meeting simple URL(s), one per SIP domain"),
            ("dialin", &s.dialin, "Dial-in simple URL"),
            (
                "lyncdiscover",
                &s.lyncdiscover,
                "Mobile sign-in (autodiscover), one per SIP domain",
            ),
        ] {
            if !hosts.is_empty() {
                rule(
                    doc,
                    name,
                    &format!("{what}: served by pool {}", d.pools[0].fqdn),
                    hosts,
                    first,
                );
            }
        }
    }
    if let Some(o) = &d.oos {
        rule(
            doc,
            "oos",
            "Office Online Server (/hosting/discovery, /wv/, /we/, /x/, /p/, /m/)",
            &o.names,
            "oos",
        );
    }
    if let (Some(e), false) = (&d.exchange, d.protection.ecp_from.is_empty()) {
        ecp_rule(doc, &e.names, &d.protection.ecp_from);
    }
    if let Some(e) = &d.exchange {
        rule(doc, "exchange", "Exchange: /owa, /ecp, /EWS, /Microsoft-Server-ActiveSync, /mapi, /rpc, /Autodiscover, /oab", &e.names, "exchange");
    }
}

/// `[lockout]`, derived from AD's threshold, or a commented-out offer of it.
fn lockout(doc: &mut Doc, p: &super::Protection) {
    use crate::perimeter::lockout::LockoutSettings;
    doc.blank();
    let Some(plan) = &p.lockout else {
        doc.comment("Failed-sign-in protection (off): each wrong NTLM/Basic password through Portico counts toward\nAD's account lockout. `portico init ... --lockout` writes this on, or uncomment it and add\n`lockout = true` to the farms (docs/perimeter.md):\n[lockout]\nthreshold = 5                               # AD locks at 10: hold back at 5\nwindow = \"15m\"\ntrusted = [\"10.0.0.0/8\"]                    # internal ranges: never held back");
        return;
    };
    let t = LockoutSettings::derived_threshold(plan.ad_threshold, plan.instances);
    doc.table(
        "[lockout]",
        Some("failed-sign-in protection: stop a password spray before AD locks real users out"),
    );
    doc.kv(
        "threshold",
        &t.to_string(),
        Some(&format!(
            "AD locks at {}; {} instance(s) each counting alone: hold back at {t} (half of AD's budget, split)",
            plan.ad_threshold, plan.instances
        )),
    );
    doc.kv("window", &q("15m"), Some("AD's default observation window"));
    if plan.trusted.is_empty() {
        doc.comment(
            "trusted = [\"10.0.0.0/8\"]                    # internal ranges: never held back",
        );
    } else {
        doc.kv(
            "trusted",
            &str_array(&plan.trusted),
            Some("never held back"),
        );
    }
    doc.kv(
        "ad_threshold",
        &plan.ad_threshold.to_string(),
        Some("checked: threshold x instances stays below it"),
    );
    doc.kv("instances", &plan.instances.to_string(), None);
}

/// `/ecp` (and only `/ecp`) of the Exchange names from `ranges`; 403 elsewhere.
fn ecp_rule(doc: &mut Doc, hosts: &[String], ranges: &[String]) {
    doc.blank();
    doc.comment("Exchange admin center only from inside. OWA's Options pages live under /ecp too: users\noutside these ranges cannot open OWA Options. /owa itself is not affected.");
    doc.line("[[rule]]", None);
    doc.kv("name", &q("exchange-ecp-internal-only"), None);
    doc.kv(
        "match",
        &q("^ecp(/.*)?$"),
        Some("/ecp and below, nothing else"),
    );
    doc.kv(
        "conditions",
        &format!(
            "[ {}, {} ]",
            inline(&[
                ("input", q("{HTTP_HOST}")),
                ("pattern", q(&host_pattern(hosts)))
            ]),
            inline(&[
                ("input", q("{REMOTE_ADDR}")),
                ("cidr", str_array(ranges)),
                ("negate", "true".into())
            ])
        ),
        None,
    );
    doc.kv(
        "action",
        &inline(&[
            ("respond", "403".into()),
            ("body", q("The Exchange admin center and OWA Options are available from the internal network only.\n")),
        ]),
        None,
    );
    doc.kv("stop", "true", None);
}
