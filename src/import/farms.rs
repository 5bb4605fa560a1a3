//! `<webFarms>` and the server-level `<proxy>`: farms, members, load balancing, health,
//! affinity, and the proxy settings of each level (ARR's farm and server defaults differ).

use super::emit::{FarmOut, MemberOut, Model};
use super::walk::{bool_attr, elements, Ctx};
use super::{duration_text, parse_timespan};
use roxmltree::Node;

/// The proxy settings that Portico carries per farm, with the level's ARR defaults.
#[derive(Debug, Clone)]
pub(super) struct ProxySettings {
    pub enabled: bool,
    pub timeout: String,
    pub preserve_host: bool,
    pub reverse_rewrite: bool,
    pub x_forwarded: bool,
    /// `requestFiltering/requestLimits maxAllowedContentLength`, when set: each route's `max_body`.
    pub max_body: Option<u64>,
}

impl ProxySettings {
    /// `system.webServer/proxy` defaults: 2 min, Host rewritten, reverse rewrite on.
    pub fn server_defaults() -> Self {
        ProxySettings {
            enabled: false,
            timeout: "120s".into(),
            preserve_host: false,
            reverse_rewrite: true,
            x_forwarded: true,
            max_body: None,
        }
    }

    /// `webFarm/applicationRequestRouting/protocol` defaults: 30 s, Host kept, no reverse rewrite.
    pub fn farm_defaults() -> Self {
        ProxySettings {
            enabled: true,
            timeout: "30s".into(),
            preserve_host: true,
            reverse_rewrite: false,
            x_forwarded: true,
            max_body: None,
        }
    }
}

/// Attributes of `<proxy>` / `<protocol>` that change nothing Portico does, or that Portico
/// already does differently on purpose: reported only when set away from ARR's default.
const NOTED_PROXY_ATTRS: &[(&str, &str, &str)] = &[
    (
        "httpVersion",
        "PassThrough",
        "Portico speaks HTTP/1.1 to members",
    ),
    (
        "keepAlive",
        "true",
        "Portico always pools member connections",
    ),
    (
        "includePortInXForwardedFor",
        "true",
        "Portico sends the address without port",
    ),
    (
        "arrResponseHeader",
        "true",
        "Portico adds no X-Powered-By header",
    ),
    (
        "minResponseBuffer",
        "256",
        "Portico streams responses without buffering",
    ),
    (
        "responseBufferLimit",
        "4096",
        "Portico streams responses without buffering",
    ),
    (
        "bufferChunkedResponses",
        "true",
        "Portico streams responses without buffering",
    ),
    (
        "maxResponseHeaderSize",
        "65536",
        "not configurable in Portico",
    ),
    ("maxForwards", "10", "Portico does not add Max-Forwards"),
    (
        "passServerHeader",
        "Replace",
        "Portico passes the member's Server header",
    ),
    (
        "passConnectionCloseHeader",
        "false",
        "Portico handles Connection itself",
    ),
    ("stealthMode", "false", "not configurable in Portico"),
];

/// `<proxy>` attributes Portico has no equivalent for: warned about when set, never dropped silently.
const UNCARRIED_PROXY_ATTRS: [&str; 12] = [
    "xForwardedByHeaderName",
    "xForwardedByHeader",
    "sslHeaderName",
    "clientCertHeaderName",
    "logGuidName",
    "logCacheHitName",
    "proxy",
    "proxyBypass",
    "clientCertFileName",
    "clientCertPassword",
    "clientCertHash",
    "alternateHostName",
];

/// Reads `<proxy>` or `<protocol>` into `p`, reporting what has no equivalent.
fn proxy_attrs(ctx: &mut Ctx, n: Node, p: &mut ProxySettings) {
    if let Some(v) = n.attribute("timeout") {
        match parse_timespan(v) {
            Some(d) => p.timeout = duration_text(d),
            None => ctx.warn(
                n,
                format!(
                    "timeout {v:?} is not an IIS time span (hh:mm:ss); keeping {}",
                    p.timeout
                ),
            ),
        }
    }
    if let Some(b) = bool_attr(n, "preserveHostHeader") {
        p.preserve_host = b;
    }
    if let Some(b) = bool_attr(n, "reverseRewriteHostInResponseHeaders") {
        p.reverse_rewrite = b;
    }
    if let Some(b) = bool_attr(n, "enabled") {
        p.enabled = b;
    }
    if let Some(v) = n.attribute("xForwardedForHeaderName") {
        if v.is_empty() {
            p.x_forwarded = false;
        } else if !v.eq_ignore_ascii_case("X-Forwarded-For") {
            ctx.warn(n, format!("xForwardedForHeaderName=\"{v}\": Portico always sends X-Forwarded-For (and X-Forwarded-Proto/Host)"));
        }
    }
    for (attr, default, why) in NOTED_PROXY_ATTRS {
        if let Some(v) = n.attribute(*attr) {
            if !v.eq_ignore_ascii_case(default) {
                ctx.warn(n, format!("{attr}=\"{v}\" is not carried over: {why}"));
            }
        }
    }
    for attr in UNCARRIED_PROXY_ATTRS {
        if let Some(v) = n.attribute(attr) {
            if !v.is_empty() {
                ctx.warn(
                    n,
                    format!("{attr}=\"{v}\" is not carried over (no Portico equivalent)"),
                );
            }
        }
    }
    let mut known: Vec<&str> = vec![
        "timeout",
        "preserveHostHeader",
        "reverseRewriteHostInResponseHeaders",
        "enabled",
        "xForwardedForHeaderName",
    ];
    known.extend(NOTED_PROXY_ATTRS.iter().map(|(a, _, _)| *a));
    known.extend(UNCARRIED_PROXY_ATTRS);
    ctx.check_attrs(n, &known);
    for c in elements(n) {
        match c.tag_name().name() {
            "cache" => cache(ctx, c),
            _ => ctx.unknown(c, "<proxy>/<protocol>"),
        }
    }
}

fn cache(ctx: &mut Ctx, c: Node) {
    ctx.check_attrs(
        c,
        &[
            "enabled",
            "validationInterval",
            "queryStringHandling",
            "requestConsolidationEnabled",
            "requestConsolidationTimeout",
        ],
    );
    // ARR's memory cache is on unless switched off; Portico has none.
    if bool_attr(c, "enabled") != Some(false) {
        ctx.warn(c, "ARR memory cache is enabled here; Portico does not cache, responses always come from the members");
    }
}

/// The server-level `<proxy>`.
pub(super) fn server_proxy(ctx: &mut Ctx, n: Node, p: &mut ProxySettings) {
    proxy_attrs(ctx, n, p);
}

/// `<webFarms>`: each `<webFarm>` becomes a `[[farm]]`.
pub(super) fn web_farms(ctx: &mut Ctx, n: Node, model: &mut Model) {
    ctx.check_attrs(n, &["onDemandHealthCheck"]);
    for f in elements(n) {
        match f.tag_name().name() {
            "webFarm" => {
                if let Some(farm) = web_farm(ctx, f) {
                    model.farms.push(farm);
                }
            }
            "applicationRequestRouting" => {
                // hostAffinityProviderList: the provider DLLs ARR can load; nothing to carry.
                for c in elements(f) {
                    if c.tag_name().name() != "hostAffinityProviderList" {
                        ctx.unknown(c, "<webFarms><applicationRequestRouting>");
                    }
                }
            }
            _ => ctx.unknown(f, "<webFarms>"),
        }
    }
}

/// Farm names Portico accepts: letters, digits, `-`, `_`, `.`.
pub(super) fn farm_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if s.is_empty() {
        "farm".into()
    } else {
        s
    }
}

const WFF_ATTRS: &[&str] = &[
    "adminUserName",
    "adminPassword",
    "primaryServer",
    "minimumServers",
    "loadBalancerProvider",
    "serverAutoStart",
];

fn web_farm(ctx: &mut Ctx, f: Node) -> Option<FarmOut> {
    let Some(iis_name) = f.attribute("name") else {
        ctx.warn(
            f,
            "webFarm without a name cannot be routed to; not imported",
        );
        return None;
    };
    let mut known = vec![
        "name",
        "enabled",
        "passConnectionCloseHeader",
        "passServerHeader",
    ];
    known.extend(WFF_ATTRS);
    ctx.check_attrs(f, &known);
    let wff: Vec<&str> = WFF_ATTRS
        .iter()
        .copied()
        .filter(|a| {
            f.attribute(*a).is_some() && *a != "serverAutoStart" && *a != "loadBalancerProvider"
        })
        .collect();
    if !wff.is_empty() {
        ctx.warn(
            f,
            format!(
                "Web Farm Framework provisioning ({}) is not carried over",
                wff.join(", ")
            ),
        );
    }
    let name = farm_name(iis_name);
    let mut farm = FarmOut {
        name: name.clone(),
        iis_name: iis_name.to_string(),
        line: ctx.line(f),
        ..FarmOut::default()
    };
    if name != iis_name {
        farm.comment.push(format!("IIS name: {iis_name}"));
    }
    let farm_enabled = bool_attr(f, "enabled") != Some(false);
    if !farm_enabled {
        ctx.warn(f, "the farm is disabled (enabled=\"false\"): its members are written with enabled = false");
    }
    let mut p = ProxySettings::farm_defaults();
    let mut saw_protocol = false;
    for c in elements(f) {
        match c.tag_name().name() {
            "server" => {
                if let Some(m) = server(ctx, c, farm_enabled) {
                    farm.members.push(m);
                }
            }
            "applicationRequestRouting" => {
                for a in elements(c) {
                    match a.tag_name().name() {
                        "protocol" => {
                            saw_protocol = true;
                            proxy_attrs(ctx, a, &mut p);
                            if p.reverse_rewrite {
                                ctx.warn(a, "reverseRewriteHostInResponseHeaders=\"true\" is not carried over: Portico forwards Location and Set-Cookie as the member sent them");
                            }
                        }
                        "loadBalancing" => load_balancing(ctx, a, &mut farm),
                        "healthCheck" => health(ctx, a, &mut farm),
                        "affinity" => affinity(ctx, a, &mut farm),
                        "publicKeys" => {
                            ctx.warn(a, "publicKeys is not carried over (no Portico equivalent)")
                        }
                        _ => ctx.unknown(a, "<webFarm><applicationRequestRouting>"),
                    }
                }
            }
            "platformProvision"
            | "applicationProvision"
            | "autoRepair"
            | "defaultProxy"
            | "deploymentProvider" => {
                ctx.warn(c, "Web Farm Framework provisioning is not carried over");
            }
            _ => ctx.unknown(c, "<webFarm>"),
        }
    }
    if !saw_protocol {
        farm.comment.push(
            "no <protocol>: ARR's farm defaults (30 s timeout, Host kept); its memory cache was on"
                .into(),
        );
    }
    farm.timeout = p.timeout;
    farm.preserve_host = p.preserve_host;
    farm.x_forwarded = p.x_forwarded;
    if farm.members.is_empty() {
        ctx.warn(f, "farm has no <server>: Portico needs at least one member; not imported (rules routing to it are commented out)");
        return None;
    }
    // Ports shared by every member go on the farm.
    let first = (farm.members[0].http_port, farm.members[0].https_port);
    if farm
        .members
        .iter()
        .all(|m| (m.http_port, m.https_port) == first)
    {
        farm.http_port = Some(first.0);
        farm.https_port = Some(first.1);
        for m in &mut farm.members {
            m.ports_on_farm = true;
        }
    }
    Some(farm)
}

fn server(ctx: &mut Ctx, s: Node, farm_enabled: bool) -> Option<MemberOut> {
    ctx.check_attrs(s, &["address", "enabled"]);
    let Some(address) = s.attribute("address") else {
        ctx.warn(s, "server without an address; not imported");
        return None;
    };
    let mut m = MemberOut {
        address: address.to_string(),
        weight: None,
        http_port: 80,
        https_port: 443,
        enabled: farm_enabled && bool_attr(s, "enabled") != Some(false),
        ports_on_farm: false,
    };
    for c in elements(s) {
        if c.tag_name().name() != "applicationRequestRouting" {
            ctx.unknown(c, "<server>");
            continue;
        }
        ctx.check_attrs(
            c,
            &[
                "weight",
                "httpPort",
                "httpsPort",
                "hostName",
                "healthCheckAlternateHostName",
                "healthCheckAlternatePort",
            ],
        );
        let port = |ctx: &mut Ctx, attr: &str, default: u16| match c.attribute(attr) {
            None => default,
            Some(v) => v
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .unwrap_or_else(|| {
                    ctx.warn(c, format!("{attr}=\"{v}\" is not a port; using {default}"));
                    default
                }),
        };
        m.http_port = port(ctx, "httpPort", 80);
        m.https_port = port(ctx, "httpsPort", 443);
        if let Some(w) = c.attribute("weight") {
            match w.trim().parse::<u32>() {
                Ok(0) => {
                    ctx.warn(c, "weight 0: the member is written with enabled = false");
                    m.enabled = false;
                }
                Ok(100) => {}
                Ok(v) => m.weight = Some(v),
                Err(_) => ctx.warn(c, format!("weight=\"{w}\" is not a number; using 100")),
            }
        }
        for attr in [
            "hostName",
            "healthCheckAlternateHostName",
            "healthCheckAlternatePort",
        ] {
            if let Some(v) = c.attribute(attr).filter(|v| !v.is_empty() && *v != "0") {
                ctx.warn(
                    c,
                    format!("{attr}=\"{v}\" is not carried over (no Portico equivalent)"),
                );
            }
        }
    }
    if bool_attr(s, "enabled") == Some(false) {
        m.enabled = false;
    }
    Some(m)
}

fn load_balancing(ctx: &mut Ctx, a: Node, farm: &mut FarmOut) {
    ctx.check_attrs(
        a,
        &[
            "algorithm",
            "hashServerVariable",
            "queryStringNames",
            "leastResponseTimePeriod",
            "randomizeLBTies",
        ],
    );
    let algorithm = a.attribute("algorithm").unwrap_or("WeightedRoundRobin");
    let lb = match algorithm.to_ascii_lowercase().as_str() {
        "weightedroundrobin" | "0" => None,
        "leastrequests" | "1" => Some("least-requests"),
        "leastresponsetime" | "2" => Some("least-response-time"),
        "weightedtotaltraffic" | "3" => {
            ctx.warn(a, "WeightedTotalTraffic is not supported (ARR 3.0 falls back to it as weighted round robin); using weighted-round-robin");
            None
        }
        "requesthash" | "4" => {
            request_hash(ctx, a, farm);
            Some("request-hash")
        }
        other => {
            ctx.warn(
                a,
                format!("unknown algorithm {other:?}; using weighted-round-robin"),
            );
            None
        }
    };
    farm.load_balancing = lb.map(str::to_string);
    if bool_attr(a, "randomizeLBTies") == Some(true) {
        ctx.warn(a, "randomizeLBTies is not carried over");
    }
}

/// ARR's RequestHash: a query-string hash (`queryStringNames`) or a server-variable hash
/// (`hashServerVariable`, default the URL), as Portico's `hash_query` / `hash`.
fn request_hash(ctx: &mut Ctx, a: Node, farm: &mut FarmOut) {
    let names: Vec<String> = a
        .attribute("queryStringNames")
        .unwrap_or("")
        .split([',', ';'])
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    if !names.is_empty() {
        farm.hash_query = names;
        return;
    }
    let var = a
        .attribute("hashServerVariable")
        .unwrap_or("")
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .to_ascii_uppercase();
    match var.as_str() {
        "" | "URL" => {}
        "REMOTE_ADDR" | "HTTP_HOST" | "QUERY_STRING" | "REQUEST_URI" => farm.hash = Some(var),
        v if v.starts_with("HTTP_") && v.len() > 5 => farm.hash = Some(var),
        "PATH_INFO" | "SCRIPT_NAME" => farm.hash = Some("URL".into()),
        _ => ctx.warn(
            a,
            format!("hashServerVariable=\"{var}\": Portico hashes REMOTE_ADDR, HTTP_HOST, URL, QUERY_STRING, REQUEST_URI or HTTP_<HEADER>; hashing the URL instead"),
        ),
    }
}

/// ARR's live traffic failure detection, as Portico's `live_traffic` table.
fn live_traffic(ctx: &mut Ctx, h: Node, farm: &mut FarmOut) {
    if let Some(codes) = h.attribute("liveTrafficFailureCodes") {
        let text = codes.replace(';', ",");
        match crate::config::parse_status_ranges(&text) {
            Ok(_) => farm.live_traffic.push(("failure_codes", text)),
            Err(e) => ctx.warn(
                h,
                format!("liveTrafficFailureCodes=\"{codes}\" is not carried over: {e}"),
            ),
        }
    }
    if let Some(n) = h.attribute("maxLiveTrafficFailures") {
        match n.trim().parse::<u32>() {
            Ok(n) => farm.live_traffic.push(("failures", n.max(1).to_string())),
            Err(_) => ctx.warn(
                h,
                format!(
                    "maxLiveTrafficFailures=\"{n}\" is not a number; Portico's default applies"
                ),
            ),
        }
    }
    if let Some(p) = h.attribute("liveTrafficFailurePeriod") {
        match parse_timespan(p) {
            Some(d) => farm.live_traffic.push(("window", duration_text(d))),
            None => ctx.warn(h, format!("liveTrafficFailurePeriod=\"{p}\" is not an IIS time span; Portico's default applies")),
        }
    }
    if let Some(v) = h.attribute("minServers") {
        ctx.warn(h, format!("minServers=\"{v}\" is not carried over: Portico takes every failing member out (no minimum kept in)"));
    }
}

fn health(ctx: &mut Ctx, h: Node, farm: &mut FarmOut) {
    ctx.check_attrs(
        h,
        &[
            "url",
            "interval",
            "timeout",
            "retries",
            "statusCodeMatch",
            "responseMatch",
            "liveTrafficFailureCodes",
            "maxLiveTrafficFailures",
            "liveTrafficFailurePeriod",
            "minServers",
        ],
    );
    live_traffic(ctx, h, farm);
    let url = h.attribute("url").unwrap_or("").trim();
    if url.is_empty() {
        return; // URL test disabled, as in ARR.
    }
    let mut pairs: Vec<(&'static str, String)> = Vec::new();
    let (host, path) = match url.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(i) => (Some(&rest[..i]), &rest[i..]),
            None => (Some(rest), "/"),
        },
        None if url.starts_with('/') => (None, url),
        None => {
            ctx.warn(
                h,
                format!("health check url {url:?} is not a URL; not carried over"),
            );
            return;
        }
    };
    pairs.push(("url", path.to_string()));
    for (attr, key) in [("interval", "interval"), ("timeout", "timeout")] {
        let v = h.attribute(attr).unwrap_or("00:00:30");
        match parse_timespan(v) {
            Some(d) => pairs.push((key, duration_text(d))),
            None => ctx.warn(
                h,
                format!("{attr}=\"{v}\" is not an IIS time span; Portico's default applies"),
            ),
        }
    }
    pairs.push((
        "expect",
        h.attribute("statusCodeMatch")
            .unwrap_or("200-399")
            .to_string(),
    ));
    if let Some(body) = h.attribute("responseMatch").filter(|b| !b.is_empty()) {
        pairs.push(("body", body.to_string()));
    }
    if let Some(host) = host {
        // ARR sends the test to every member with this Host when it names the ARR box itself.
        pairs.push(("host", host.split(':').next().unwrap_or(host).to_string()));
    }
    if let Some(r) = h.attribute("retries") {
        match r.trim().parse::<u32>() {
            Ok(n) => pairs.push(("fall", n.max(1).to_string())),
            Err(_) => ctx.warn(
                h,
                format!("retries=\"{r}\" is not a number; Portico's default applies"),
            ),
        }
    }
    farm.health = Some(pairs);
}

fn affinity(ctx: &mut Ctx, a: Node, farm: &mut FarmOut) {
    let known = [
        "useCookie",
        "cookieName",
        "useHostName",
        "hostAffinityProvider",
        "timeout",
        "ignoreSubDomain",
        "ignoreSubDomainClientAffinity",
        "ignoreSubDomainFragmentDepth",
        "hostCountersEnabled",
        "useServerProvider",
        "useExternalCache",
        "serverProviderImage",
    ];
    ctx.check_attrs(a, &known);
    if bool_attr(a, "useCookie") == Some(true) {
        farm.affinity = Some(
            a.attribute("cookieName")
                .unwrap_or("ARRAffinity")
                .to_string(),
        );
    }
    if bool_attr(a, "useHostName") == Some(true) {
        ctx.warn(a, "host name affinity (useHostName) is not carried over: Portico offers cookie affinity only");
    }
    for c in elements(a) {
        ctx.warn(
            c,
            "host affinity entries are not carried over: Portico offers cookie affinity only",
        );
    }
}
