//! Web service checks per published name (Microsoft's test list in shared/reference/sfb.md),
//! and the signs of a proxy set up wrong that the answers reveal.

use std::sync::OnceLock;
use std::time::Duration;

use regex::Regex;

use super::client::{self, Answer};
use super::signs;
use super::{Finding, Service, Target};

pub const ACCEPT_JSON: &str = "application/vnd.microsoft.rtc.autodiscover+json;v=1";
pub const ACCEPT_XML: &str = "application/vnd.microsoft.rtc.autodiscover+xml;v=1";

/// What every check of one run shares.
pub struct Ctx<'a> {
    pub timeout: Duration,
    /// Every name being checked: links and redirects to these are expected.
    pub published: &'a [String],
}

/// An answer kept for the sign checks: which path, and whether it is an autodiscover document.
pub struct Seen {
    pub path: String,
    pub answer: Answer,
    pub autodiscover: bool,
}

/// Runs the checks for `t`'s service, then the sign checks over everything it saw.
pub async fn check(ctx: &Ctx<'_>, t: &Target) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut seen = Vec::new();
    let name = t.host.as_str();
    match t.service {
        Service::WebExt => {
            for (id, path) in [
                ("abs", "/abs/handler"),
                ("group-expansion", "/GroupExpansion/service.svc"),
            ] {
                if let Some(a) = fetch(ctx, t, id, path, &[], &mut out).await {
                    out.push(windows_challenge(id, t, path, &a));
                    seen.push(keep(path, a, false));
                }
            }
            let path = "/ucwa/v1/applications";
            if let Some(a) = fetch(ctx, t, "ucwa", path, &[], &mut out).await {
                out.push(ucwa(t, path, &a));
                seen.push(keep(path, a, false));
            }
            let path = "/Autodiscover/AutodiscoverService.svc/root";
            if let Some(a) = fetch(ctx, t, "autodiscover-root", path, &[], &mut out).await {
                out.push(autodiscover("autodiscover-root", t, path, None, &a));
                seen.push(keep(path, a, true));
            }
        }
        Service::Meet | Service::Dialin => {
            let id = if t.service == Service::Meet {
                "meet"
            } else {
                "dialin"
            };
            if let Some(a) = fetch(ctx, t, id, &t.path, &[], &mut out).await {
                out.push(page(id, t, &a));
                seen.push(keep(&t.path, a, false));
            }
        }
        Service::Lyncdiscover => {
            for (id, accept) in [
                ("lyncdiscover-json", Some(ACCEPT_JSON)),
                ("lyncdiscover-xml", Some(ACCEPT_XML)),
                ("lyncdiscover-no-accept", None),
            ] {
                let headers: Vec<(&str, &str)> =
                    accept.map(|a| ("accept", a)).into_iter().collect();
                if let Some(a) = fetch(ctx, t, id, "/", &headers, &mut out).await {
                    out.push(autodiscover(id, t, "/", accept, &a));
                    seen.push(keep("/", a, true));
                }
            }
        }
        Service::OfficeOnline => {
            let path = "/hosting/discovery";
            if let Some(a) = fetch(ctx, t, "oos-discovery", path, &[], &mut out).await {
                out.push(discovery(t, path, &a));
                seen.push(keep(path, a, true));
            }
        }
        Service::Exchange => {
            for (id, path) in [
                ("exchange-owa", "/owa/"),
                ("exchange-ews", "/EWS/Exchange.asmx"),
                ("exchange-activesync", "/Microsoft-Server-ActiveSync"),
                ("exchange-mapi", "/mapi/"),
                ("exchange-rpc", "/rpc/rpcproxy.dll"),
                ("exchange-autodiscover", "/Autodiscover/Autodiscover.xml"),
            ] {
                if let Some(a) = fetch(ctx, t, id, path, &[], &mut out).await {
                    out.push(exchange(id, t, path, &a));
                    seen.push(keep(path, a, false));
                }
            }
        }
    }
    if matches!(t.service, Service::WebExt | Service::Lyncdiscover) {
        out.push(signs::port_bridging(name, ctx.published, &seen));
        out.push(signs::ssl_offload(name, &seen));
    }
    out.push(signs::internal_names(name, ctx.published, &seen));
    out
}

fn keep(path: &str, answer: Answer, autodiscover: bool) -> Seen {
    Seen {
        path: path.to_string(),
        answer,
        autodiscover,
    }
}

/// GETs `path`; on failure records a failing finding under `id` and returns `None`.
async fn fetch(
    ctx: &Ctx<'_>,
    t: &Target,
    id: &'static str,
    path: &str,
    headers: &[(&str, &str)],
    out: &mut Vec<Finding>,
) -> Option<Answer> {
    match client::get(
        t.addr,
        &t.host,
        &t.host_header(),
        path,
        headers,
        ctx.timeout,
    )
    .await
    {
        Ok(a) => Some(a),
        Err(e) => {
            out.push(Finding::fail(
                id,
                &t.host,
                format!("GET {}: {}", t.url(path), e.why),
                "make sure the proxy publishes every path of this name (/*) and can reach the pool; its log names the cause",
            ));
            None
        }
    }
}

/// The likely cause of an unexpected status, for the fix text.
fn status_hint(status: u16) -> &'static str {
    match status {
        404 => "the proxy (or the member) does not know this path: publish the whole name (/*) and route it to the right farm",
        502 | 503 => "the proxy cannot reach a healthy pool member: check the farm's members, ports (4443/8080 for pools) and the upstream trust (CA)",
        504 => "the member did not answer within the proxy timeout",
        403 => "something refuses the request: SSL required on the member (SSL offloading?), an IP restriction, or pre-authentication on the proxy",
        200 => "the service answered without asking for credentials: pre-authentication on the proxy, or a different site than the pool's external web services",
        _ => "compare with the same URL on the pool's external site (port 4443) from inside",
    }
}

fn unexpected(id: &'static str, t: &Target, path: &str, a: &Answer, want: &str) -> Finding {
    Finding::fail(
        id,
        &t.host,
        format!(
            "GET {} answered {} — expected {want}",
            t.url(path),
            a.status
        ),
        status_hint(a.status),
    )
}

/// `/abs`, `/GroupExpansion`: 401 with an NTLM or Negotiate challenge.
fn windows_challenge(id: &'static str, t: &Target, path: &str, a: &Answer) -> Finding {
    let schemes = a.headers_all("www-authenticate");
    let windows = schemes.iter().any(|s| {
        let s = s.trim_start().to_ascii_lowercase();
        s.starts_with("ntlm") || s.starts_with("negotiate")
    });
    match (a.status, windows) {
        (401, true) => Finding::pass(
            id,
            &t.host,
            format!("401 with Windows challenge ({})", schemes.join(", ")),
        ),
        (401, false) => Finding::fail(
            id,
            &t.host,
            format!(
                "GET {} answered 401 without an NTLM/Negotiate challenge (WWW-Authenticate: {})",
                t.url(path),
                if schemes.is_empty() { "none".to_string() } else { schemes.join(", ") }
            ),
            "the proxy must pass Windows authentication through: no pre-authentication, WWW-Authenticate headers forwarded unchanged, HTTP/1.1 to the client",
        ),
        _ => unexpected(id, t, path, a, "401 with an NTLM/Negotiate challenge"),
    }
}

/// `/ucwa`: 401 with `WWW-Authenticate: MsRtcOAuth href=...`.
fn ucwa(t: &Target, path: &str, a: &Answer) -> Finding {
    let schemes = a.headers_all("www-authenticate");
    let oauth = schemes.iter().find(|s| {
        s.trim_start()
            .to_ascii_lowercase()
            .starts_with("msrtcoauth")
    });
    match (a.status, oauth) {
        (401, Some(c)) => Finding::pass("ucwa", &t.host, format!("401 with {c}")),
        (401, None) => Finding::fail(
            "ucwa",
            &t.host,
            format!("GET {} answered 401 without the MsRtcOAuth challenge", t.url(path)),
            "forward WWW-Authenticate unchanged and send /ucwa to the Front End pool's external site (4443)",
        ),
        _ => unexpected("ucwa", t, path, a, "401 with an MsRtcOAuth challenge"),
    }
}

/// `/meet`, `/dialin`: a 200 page.
fn page(id: &'static str, t: &Target, a: &Answer) -> Finding {
    if a.status == 200 {
        Finding::pass(id, &t.host, format!("200, {} bytes", a.body.len()))
    } else {
        unexpected(id, t, &t.path, a, "200 with the page")
    }
}

/// Autodiscover documents: 200 with `_links` (JSON) or `<Link` (XML).
fn autodiscover(
    id: &'static str,
    t: &Target,
    path: &str,
    accept: Option<&str>,
    a: &Answer,
) -> Finding {
    let accept_text = accept.unwrap_or("(none)");
    if a.status == 406 {
        return Finding::fail(
            id,
            &t.host,
            format!(
                "GET {} with Accept: {accept_text} answered 406 NotAcceptable — mobile clients that send this Accept cannot sign in",
                t.url(path)
            ),
            "forward the Accept header unchanged and route lyncdiscover to the pool's external web site (4443); a filter, rewrite or WAF in the path that rejects this media type has to let it through",
        );
    }
    if a.status != 200 {
        return unexpected(id, t, path, a, "200 with the autodiscover document");
    }
    let body = a.text();
    let json = body.contains("\"_links\"");
    let xml = body.contains("<AutodiscoverResponse") && body.contains("<Link");
    if json || xml {
        Finding::pass(
            id,
            &t.host,
            format!(
                "200 {} document (Accept: {accept_text})",
                if json { "JSON" } else { "XML" }
            ),
        )
    } else {
        Finding::fail(
            id,
            &t.host,
            format!(
                "GET {} (Accept: {accept_text}) answered 200 without an autodiscover document (no _links)",
                t.url(path)
            ),
            "route this name to the Front End pool's external web services (4443), not to another site",
        )
    }
}

/// OOS `/hosting/discovery`: 200 with `<wopi-discovery`.
fn discovery(t: &Target, path: &str, a: &Answer) -> Finding {
    if a.status != 200 {
        return unexpected(
            "oos-discovery",
            t,
            path,
            a,
            "200 with the WOPI discovery XML",
        );
    }
    if a.text().contains("<wopi-discovery") {
        Finding::pass("oos-discovery", &t.host, "200 with wopi-discovery XML")
    } else {
        Finding::fail(
            "oos-discovery",
            &t.host,
            format!(
                "GET {} answered 200 but not the wopi-discovery XML",
                t.url(path)
            ),
            "route the Office Online name to the OOS farm on 443 (no port bridging for OOS)",
        )
    }
}

/// Exchange endpoints: an authentication challenge, or (OWA) a redirect to the logon form.
fn exchange(id: &'static str, t: &Target, path: &str, a: &Answer) -> Finding {
    let challenges = a.headers_all("www-authenticate");
    match a.status {
        401 if !challenges.is_empty() => {
            Finding::pass(id, &t.host, format!("401 with {}", challenges.join(", ")))
        }
        301 | 302 | 303 | 307 | 308 if id == "exchange-owa" => Finding::pass(
            id,
            &t.host,
            format!(
                "{} redirect to {}",
                a.status,
                a.header("location").unwrap_or("(no Location)")
            ),
        ),
        200 if id == "exchange-owa" => Finding::pass(id, &t.host, "200 (logon page)"),
        _ => unexpected(
            id,
            t,
            path,
            a,
            "401 with a challenge (OWA: a redirect to the logon form)",
        ),
    }
}

/// The optional long-poll probe: a request held `secs` must come back whole.
pub async fn long_poll(ctx: &Ctx<'_>, t: &Target, secs: u64, path_template: &str) -> Finding {
    let path = path_template.replace("{secs}", &secs.to_string());
    let held = Duration::from_secs(secs);
    let fix = format!("raise the proxy's timeout above {secs} s (Portico: farm timeout; ARR: proxy timeout): UCWA polls 180 s, mobile push waits 900 s, so SfB needs 960 s");
    match client::get(
        t.addr,
        &t.host,
        &t.host_header(),
        &path,
        &[],
        held + ctx.timeout,
    )
    .await
    {
        Ok(a) if (200..300).contains(&a.status) && a.elapsed + Duration::from_millis(250) >= held => {
            Finding::pass(
                "long-poll",
                &t.host,
                format!("held {:.1} s and answered {}", a.elapsed.as_secs_f64(), a.status),
            )
        }
        Ok(a) if (200..300).contains(&a.status) => Finding::warn(
            "long-poll",
            &t.host,
            format!(
                "GET {} answered {} after {:.1} s, before {secs} s: the path did not hold the request",
                t.url(&path),
                a.status,
                a.elapsed.as_secs_f64()
            ),
            "give --long-poll-path a path the members hold open for {secs} seconds",
        ),
        Ok(a) => Finding::fail(
            "long-poll",
            &t.host,
            format!(
                "a request held {secs} s was cut: GET {} answered {} after {:.1} s",
                t.url(&path),
                a.status,
                a.elapsed.as_secs_f64()
            ),
            fix,
        ),
        Err(e) => Finding::fail(
            "long-poll",
            &t.host,
            format!(
                "a request held {secs} s was cut after {:.1} s: {}",
                e.elapsed.as_secs_f64(),
                e.why
            ),
            fix,
        ),
    }
}

/// `href` values in JSON (`"href":"..."`) or XML (`href="..."`) autodiscover documents, and
/// `urlsrc` values in WOPI discovery.
pub fn links(body: &str) -> Vec<String> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r#"(?i)"?(?:href|urlsrc)"?\s*[:=]\s*"([^"]+)""#).expect("static regex")
    });
    re.captures_iter(body).map(|c| c[1].to_string()).collect()
}

/// `AccessLocation` of an autodiscover document (`External` / `Internal`).
pub fn access_location(body: &str) -> Option<String> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r#"(?i)"?AccessLocation"?\s*[:=]\s*"([A-Za-z]+)""#).expect("static regex")
    });
    re.captures(body).map(|c| c[1].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_access_location_are_read_from_json_and_xml() {
        let json = r#"{"AccessLocation":"External","_links":{"self":{"href":"https://a.contoso.com/x"},"user":{"href":"https://b.contoso.com/y"}}}"#;
        assert_eq!(
            links(json),
            ["https://a.contoso.com/x", "https://b.contoso.com/y"]
        );
        assert_eq!(access_location(json).as_deref(), Some("External"));
        let xml = r#"<AutodiscoverResponse AccessLocation="Internal"><Root><Link token="Self" href="https://fe01.contoso.local/x" /></Root></AutodiscoverResponse>"#;
        assert_eq!(links(xml), ["https://fe01.contoso.local/x"]);
        assert_eq!(access_location(xml).as_deref(), Some("Internal"));
    }
}
