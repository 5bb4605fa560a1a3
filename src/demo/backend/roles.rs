//! What an SfB Front End member and an Office Online Server answer, per Host and path, the way
//! IIS serves them (see shared/reference/sfb.md).

use http::header::{ACCEPT, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};

use super::body::Payload;
use super::codec::{json_str, markup_escape};
use super::generic::{host_of, not_found, reply, under};
use super::Shared;

const AUTODISCOVER_JSON: &str = "application/vnd.microsoft.rtc.autodiscover+json; v=1";
const AUTODISCOVER_XML: &str = "application/vnd.microsoft.rtc.autodiscover+xml; v=1";
const UCWA_CHALLENGE: &str = "MsRtcOAuth href=\"https://{host}/WebTicket/oauthtoken\",\
grant_type=\"urn:microsoft.rtc:windows,urn:microsoft.rtc:anonmeeting,password\"";

const MEET_PAGE: &str = "<!DOCTYPE html><html><head><title>Skype for Business Web App - \
Meeting troubleshooting</title></head><body><h1>Join the meeting</h1><p>If you are having \
trouble joining the meeting, try the Skype for Business Web App.</p></body></html>";
const DIALIN_PAGE: &str = "<!DOCTYPE html><html><head><title>Dial-in Conferencing Settings \
and PIN Management</title></head><body><h1>Dial-in Conferencing</h1><p>Find a local number \
and manage your PIN.</p></body></html>";
const SCHEDULER_PAGE: &str = "<!DOCTYPE html><html><head><title>Skype for Business Web \
Scheduler</title></head><body><form method=\"post\" action=\"/Scheduler/Login.aspx\">\
<label>User name <input name=\"username\"></label><label>Password <input name=\"password\" \
type=\"password\"></label><button type=\"submit\">Sign in</button></form></body></html>";
const WINDOWS_AUTH_PAGE: &str = "<!DOCTYPE html><html><head><title>401 - Unauthorized: \
Access is denied due to invalid credentials.</title></head><body><h2>401 - Unauthorized: \
Access is denied due to invalid credentials.</h2></body></html>";

/// The host name without a port, for prefix tests.
fn host_name(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn html(body: &'static str) -> Response<Payload> {
    reply(StatusCode::OK, "text/html; charset=utf-8", body)
}

const SSL_REQUIRED_PAGE: &str = "<!DOCTYPE html><html><head><title>403 - Forbidden: Access \
is denied.</title></head><body><h2>403.4 - SSL required. The page you are trying to access is \
secured with Secure Sockets Layer (SSL).</h2></body></html>";

/// Where links in the autodiscover documents point, and how the site describes itself.
struct Site<'a> {
    /// `https` or `http` (IIS builds links from the scheme the request came in with).
    scheme: &'a str,
    /// `Some(fqdn)`: the internal web site, which links to the pool's internal name.
    internal: Option<&'a str>,
}

/// An SfB pool member: host-style simple URLs and lyncdiscover first, then paths.
pub(super) fn front_end<B>(req: &Request<B>, shared: &Shared, tls: bool) -> Response<Payload> {
    let host = host_of(req);
    let name = host_name(host);
    let path = req.uri().path();
    let faults = &shared.faults;
    if starts_with_ci(name, "lyncdiscover.")
        || starts_with_ci(name, "lyncdiscoverinternal.")
        || under(path, "/Autodiscover/AutodiscoverService.svc/root")
    {
        if let Some(needle) = &faults.not_acceptable {
            let accept = req
                .headers()
                .get(ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase();
            let hit = if needle.is_empty() {
                accept.trim().is_empty()
            } else {
                accept.contains(&needle.to_ascii_lowercase())
            };
            if hit {
                return reply(
                    StatusCode::NOT_ACCEPTABLE,
                    "text/html; charset=utf-8",
                    "<html><body><h1>NotAcceptable</h1></body></html>",
                );
            }
        }
        let site = Site {
            scheme: if tls || !faults.require_ssl {
                "https"
            } else {
                "http"
            },
            internal: faults.internal_site.then_some(shared.name.as_str()),
        };
        return autodiscover(req, host, name, &site);
    }
    if faults.require_ssl
        && !tls
        && (under(path, "/abs")
            || under(path, "/GroupExpansion/service.svc")
            || under(path, "/CertProv/CertProvisioningService.svc")
            || starts_with_ci(path, "/ucwa"))
    {
        return reply(
            StatusCode::FORBIDDEN,
            "text/html; charset=utf-8",
            SSL_REQUIRED_PAGE,
        );
    }
    if starts_with_ci(name, "meet.") || under(path, "/meet") {
        return html(MEET_PAGE);
    }
    if starts_with_ci(name, "dialin.") || under(path, "/dialin") {
        return html(DIALIN_PAGE);
    }
    if under(path, "/abs")
        || under(path, "/GroupExpansion/service.svc")
        || under(path, "/CertProv/CertProvisioningService.svc")
    {
        let mut r = reply(
            StatusCode::UNAUTHORIZED,
            "text/html; charset=utf-8",
            WINDOWS_AUTH_PAGE,
        );
        r.headers_mut()
            .append(WWW_AUTHENTICATE, HeaderValue::from_static("NTLM"));
        r.headers_mut()
            .append(WWW_AUTHENTICATE, HeaderValue::from_static("Negotiate"));
        return r;
    }
    if starts_with_ci(path, "/ucwa") {
        let mut r = reply(StatusCode::UNAUTHORIZED, "text/plain", "");
        if let Ok(v) = HeaderValue::from_str(&UCWA_CHALLENGE.replace("{host}", host)) {
            r.headers_mut().insert(WWW_AUTHENTICATE, v);
        }
        return r;
    }
    if under(path, "/Scheduler") {
        return html(SCHEDULER_PAGE);
    }
    not_found()
}

/// The autodiscover root document, JSON unless `Accept` asks for XML only.
fn autodiscover<B>(req: &Request<B>, host: &str, name: &str, site: &Site) -> Response<Payload> {
    let domain = name
        .split_once('.')
        .filter(|_| starts_with_ci(name, "lyncdiscover"))
        .map_or(name, |(_, d)| d);
    let link_host = site.internal.unwrap_or(host);
    let base = format!("{}://{link_host}/Autodiscover", site.scheme);
    let access = if site.internal.is_some() {
        "Internal"
    } else {
        "External"
    };
    let self_href = format!("{base}/AutodiscoverService.svc/root?originalDomain={domain}");
    let user_href =
        format!("{base}/AutodiscoverService.svc/root/oauth/user?originalDomain={domain}");
    let xframe_href = format!("{base}/XFrame/XFrame.html");
    let accept = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let wants_xml = accept.contains("xml") && !accept.contains("json");
    if wants_xml {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><AutodiscoverResponse \
xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" AccessLocation=\"{access}\"><Root>\
<Link token=\"Self\" href=\"{}\" /><Link token=\"User\" href=\"{}\" />\
<Link token=\"Xframe\" href=\"{}\" /></Root></AutodiscoverResponse>",
            markup_escape(&self_href),
            markup_escape(&user_href),
            markup_escape(&xframe_href)
        );
        return reply(StatusCode::OK, AUTODISCOVER_XML, body);
    }
    let mut body = String::with_capacity(400);
    body.push_str("{\"AccessLocation\":");
    json_str(&mut body, access);
    body.push_str(",\"_links\":{\"self\":{\"href\":");
    json_str(&mut body, &self_href);
    body.push_str("},\"user\":{\"href\":");
    json_str(&mut body, &user_href);
    body.push_str("},\"xframe\":{\"href\":");
    json_str(&mut body, &xframe_href);
    body.push_str("}}}");
    reply(StatusCode::OK, AUTODISCOVER_JSON, body)
}

/// An Office Online Server: WOPI discovery and app pages that echo the raw target.
pub(super) fn office_online<B>(req: &Request<B>) -> Response<Payload> {
    let host = markup_escape(host_of(req));
    let path = req.uri().path();
    if path.eq_ignore_ascii_case("/hosting/discovery") {
        let mut body = String::with_capacity(1024);
        body.push_str(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><wopi-discovery>\
<net-zone name=\"external-https\">",
        );
        for (app, ext, frame) in [
            ("Word", "docx", "wv/wordviewerframe.aspx"),
            ("Excel", "xlsx", "x/_layouts/xlviewerinternal.aspx"),
            ("PowerPoint", "pptx", "p/PowerPointFrame.aspx"),
        ] {
            body.push_str(&format!(
                "<app name=\"{app}\" favIconUrl=\"https://{host}/favicon.ico\" \
checkLicense=\"true\"><action name=\"view\" ext=\"{ext}\" default=\"true\" \
urlsrc=\"https://{host}/{frame}?&amp;\"/></app>"
            ));
        }
        body.push_str(
            "</net-zone><proof-key oldvalue=\"\" value=\"\" modulus=\"\" exponent=\"\" \
oldmodulus=\"\" oldexponent=\"\"/></wopi-discovery>",
        );
        return reply(StatusCode::OK, "text/xml; charset=utf-8", body);
    }
    let app = ["/wv/", "/we/", "/x/", "/p/", "/m/"]
        .iter()
        .any(|p| starts_with_ci(path, p));
    if app {
        let target = req.uri().path_and_query().map_or(path, |pq| pq.as_str());
        let body = format!(
            "<!DOCTYPE html><html><head><title>Office Online</title></head><body>\
<p id=\"target\">{}</p></body></html>",
            markup_escape(target)
        );
        return reply(StatusCode::OK, "text/html; charset=utf-8", body);
    }
    not_found()
}
