//! The imported model and its TOML: listeners, farms, rules, with comments that say where
//! each came from.

use super::Warning;
use crate::profiles::toml_out::{array, inline, q, str_array, Doc};
use crate::rules::{PatternSyntax, Scheme};

/// Everything the importer found, in the order it is written.
#[derive(Debug, Default)]
pub(super) struct Model {
    pub source: String,
    pub listeners: Vec<ListenerOut>,
    pub farms: Vec<FarmOut>,
    pub rules: Vec<RuleOut>,
}

#[derive(Debug)]
pub(super) struct ListenerOut {
    pub bind: String,
    /// (cert, key) placeholders: the certificates live in the Windows store.
    pub certs: Vec<(String, String)>,
    pub tls: bool,
    pub line: u32,
}

impl ListenerOut {
    pub fn http(bind: &str, line: u32) -> Self {
        ListenerOut {
            bind: bind.into(),
            certs: vec![],
            tls: false,
            line,
        }
    }

    pub fn https(bind: &str, stem: &str, line: u32) -> Self {
        let mut l = ListenerOut {
            bind: bind.into(),
            certs: vec![],
            tls: true,
            line,
        };
        l.add_cert(stem);
        l
    }

    pub fn add_cert(&mut self, stem: &str) {
        self.certs
            .push((format!("certs/{stem}.pem"), format!("certs/{stem}.key")));
    }
}

#[derive(Debug, Clone, Default)]
pub(super) struct FarmOut {
    pub name: String,
    /// The name rules use in `http(s)://NAME/` (empty for farms the importer made up).
    pub iis_name: String,
    pub line: u32,
    pub comment: Vec<String>,
    pub members: Vec<MemberOut>,
    pub http_port: Option<u16>,
    pub https_port: Option<u16>,
    pub timeout: String,
    pub preserve_host: bool,
    pub x_forwarded: bool,
    pub load_balancing: Option<String>,
    /// Rendered `health` keys in order.
    pub health: Option<Vec<(&'static str, String)>>,
    pub affinity: Option<String>,
    /// `request-hash`: the server variable (`hash`) or query-string names (`hash_query`).
    pub hash: Option<String>,
    pub hash_query: Vec<String>,
    /// Rendered `live_traffic` keys in order (ARR's liveTrafficFailure* attributes).
    pub live_traffic: Vec<(&'static str, String)>,
}

#[derive(Debug, Clone)]
pub(super) struct MemberOut {
    pub address: String,
    pub weight: Option<u32>,
    pub http_port: u16,
    pub https_port: u16,
    pub enabled: bool,
    /// The farm carries the ports (every member has the same).
    pub ports_on_farm: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CondOut {
    pub input: String,
    /// Regular expression (converted from the rule's pattern syntax).
    pub pattern: String,
    /// As written in IIS.
    pub iis_pattern: String,
    pub negate: bool,
    pub ignore_case: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ActionOut {
    /// `scheme: None` = follow the client.
    Route {
        farm: String,
        scheme: Option<Scheme>,
        path: String,
        append_query: bool,
        /// From IIS request filtering (`maxAllowedContentLength`), in bytes.
        max_body: Option<u64>,
    },
    Rewrite {
        url: String,
        append_query: bool,
    },
    Redirect {
        url: String,
        status: u16,
        append_query: bool,
    },
    Respond {
        status: u16,
        reason: Option<String>,
        body: String,
    },
    Abort,
    None,
    /// Cannot be expressed; the rule is written commented out.
    Unroutable(String),
}

#[derive(Debug, Clone)]
pub(super) struct RuleOut {
    pub name: String,
    pub file: String,
    pub line: u32,
    pub syntax: PatternSyntax,
    pub pattern: String,
    pub ignore_case: bool,
    pub negate: bool,
    pub conditions: Vec<CondOut>,
    pub match_any: bool,
    pub track_all: bool,
    pub action: ActionOut,
    pub stop: bool,
    pub comment: Vec<String>,
    /// Why Portico would reject it: then it is written commented out.
    pub commented_out: Option<String>,
}

fn header(doc: &mut Doc, m: &Model, warnings: &[Warning]) {
    doc.comment(&format!(
        "Imported from {} by `portico import-iis`.\n\
         {} warning(s) were printed on stderr: each names an element and line that was not\n\
         carried over, or carried over differently. Review them before going live.\n\
         Certificates: IIS keeps them in the Windows certificate store, so the paths below are\n\
         placeholders; export each certificate (chain + key) to PEM there.",
        m.source,
        warnings.len()
    ));
}

/// The whole config.
pub(super) fn render(m: &Model, warnings: &[Warning]) -> String {
    let mut doc = Doc::new();
    header(&mut doc, m, warnings);
    for l in &m.listeners {
        doc.table(
            "[[listener]]",
            Some(&format!("IIS binding, line {}", l.line)),
        );
        doc.kv("bind", &q(&l.bind), None);
        if l.tls {
            let certs: Vec<String> = l
                .certs
                .iter()
                .map(|(c, k)| inline(&[("cert", q(c)), ("key", q(k))]))
                .collect();
            doc.kv(
                "tls",
                &inline(&[("certificates", array(&certs))]),
                Some("placeholder paths: export from the Windows store"),
            );
        }
    }
    doc.blank();
    doc.comment("[resolve]: ARR used Windows name resolution and its hosts file. Names only the hosts\nfile knew go here, e.g. \"pool01.contoso.local\" = [\"10.0.1.11\", \"10.0.1.12\"].");
    doc.table("[upstream]", None);
    doc.kv(
        "ca",
        &q("certs/internal-ca.pem"),
        Some("placeholder: the internal root CA the members' certificates chain to"),
    );
    for f in &m.farms {
        farm(&mut doc, f);
    }
    for r in &m.rules {
        rule(&mut doc, r);
    }
    doc.finish()
}

fn farm(doc: &mut Doc, f: &FarmOut) {
    doc.blank();
    for c in &f.comment {
        doc.comment(c);
    }
    doc.line("[[farm]]", Some(&format!("line {}", f.line)));
    doc.kv("name", &q(&f.name), None);
    let members: Vec<String> = f
        .members
        .iter()
        .map(|mm| {
            let mut pairs = vec![("address", q(&mm.address))];
            if let Some(w) = mm.weight {
                pairs.push(("weight", w.to_string()));
            }
            if !mm.ports_on_farm {
                pairs.push(("http_port", mm.http_port.to_string()));
                pairs.push(("https_port", mm.https_port.to_string()));
            }
            if !mm.enabled {
                pairs.push(("enabled", "false".into()));
            }
            inline(&pairs)
        })
        .collect();
    doc.kv("members", &array(&members), None);
    if let Some(p) = f.http_port {
        doc.kv("http_port", &p.to_string(), None);
    }
    if let Some(p) = f.https_port {
        doc.kv("https_port", &p.to_string(), None);
    }
    doc.kv(
        "ssl_offload",
        "false",
        Some("each rule's scheme says how members are reached"),
    );
    doc.kv(
        "timeout",
        &q(&f.timeout),
        Some("IIS proxy time-out (per-read idle in Portico)"),
    );
    doc.kv(
        "preserve_host",
        if f.preserve_host { "true" } else { "false" },
        None,
    );
    if !f.x_forwarded {
        doc.kv(
            "x_forwarded",
            "false",
            Some("xForwardedForHeaderName was empty"),
        );
    }
    if let Some(lb) = &f.load_balancing {
        doc.kv("load_balancing", &q(lb), None);
    }
    if let Some(h) = &f.hash {
        doc.kv("hash", &q(h), Some("ARR hashServerVariable"));
    }
    if !f.hash_query.is_empty() {
        doc.kv(
            "hash_query",
            &str_array(&f.hash_query),
            Some("ARR queryStringNames"),
        );
    }
    if !f.live_traffic.is_empty() {
        let pairs: Vec<(&str, String)> = f
            .live_traffic
            .iter()
            .map(|(k, v)| (*k, if *k == "failures" { v.clone() } else { q(v) }))
            .collect();
        doc.kv(
            "live_traffic",
            &inline(&pairs),
            Some("ARR live traffic failure detection"),
        );
    }
    if let Some(h) = &f.health {
        let pairs: Vec<(&str, String)> = h
            .iter()
            .map(|(k, v)| (*k, if *k == "fall" { v.clone() } else { q(v) }))
            .collect();
        doc.kv("health", &inline(&pairs), None);
    }
    if let Some(c) = &f.affinity {
        doc.kv("affinity", &inline(&[("cookie", q(c))]), None);
    }
}

fn rule(doc: &mut Doc, r: &RuleOut) {
    let mut d = Doc::new();
    d.line("[[rule]]", Some(&format!("{}:{}", r.file, r.line)));
    d.kv("name", &q(&r.name), None);
    d.kv("match", &q(&r.pattern), None);
    match r.syntax {
        PatternSyntax::Regex => {}
        PatternSyntax::Wildcard => d.kv("syntax", &q("wildcard"), None),
        PatternSyntax::Exact => d.kv("syntax", &q("exact"), None),
    }
    if !r.ignore_case {
        d.kv("ignore_case", "false", None);
    }
    if r.negate {
        d.kv("negate", "true", None);
    }
    if !r.conditions.is_empty() {
        d.line("conditions = [", None);
        for c in &r.conditions {
            let mut pairs = vec![("input", q(&c.input)), ("pattern", q(&c.pattern))];
            if c.negate {
                pairs.push(("negate", "true".into()));
            }
            if !c.ignore_case {
                pairs.push(("ignore_case", "false".into()));
            }
            let note = (c.pattern != c.iis_pattern).then(|| format!("IIS: {:?}", c.iis_pattern));
            d.line(&format!("  {},", inline(&pairs)), note.as_deref());
        }
        d.line("]", None);
    }
    if r.match_any {
        d.kv("logical_grouping", &q("MatchAny"), None);
    }
    if r.track_all {
        d.kv("track_all_captures", "true", None);
    }
    let aq = |pairs: &mut Vec<(&str, String)>, append: bool| {
        if !append {
            pairs.push(("append_query", "false".into()));
        }
    };
    let action = match &r.action {
        ActionOut::Route {
            farm,
            scheme,
            path,
            append_query,
            max_body,
        } => {
            let mut p = vec![("route", q(farm))];
            match scheme {
                Some(Scheme::Https) => p.push(("scheme", q("https"))),
                Some(Scheme::Http) => p.push(("scheme", q("http"))),
                None => {}
            }
            p.push(("path", q(path)));
            if let Some(n) = max_body {
                p.push(("max_body", q(&n.to_string())));
            }
            aq(&mut p, *append_query);
            inline(&p)
        }
        ActionOut::Rewrite { url, append_query } => {
            let mut p = vec![("rewrite", q(url))];
            aq(&mut p, *append_query);
            inline(&p)
        }
        ActionOut::Redirect {
            url,
            status,
            append_query,
        } => {
            let mut p = vec![("redirect", q(url)), ("status", status.to_string())];
            aq(&mut p, *append_query);
            inline(&p)
        }
        ActionOut::Respond {
            status,
            reason,
            body,
        } => {
            let mut p = vec![("respond", status.to_string())];
            if let Some(r) = reason {
                p.push(("reason", q(r)));
            }
            if !body.is_empty() {
                p.push(("body", q(body)));
            }
            inline(&p)
        }
        ActionOut::Abort => inline(&[("abort", "true".into())]),
        ActionOut::None | ActionOut::Unroutable(_) => inline(&[("none", "true".into())]),
    };
    d.kv("action", &action, None);
    if r.stop {
        d.kv("stop", "true", None);
    }
    doc.blank();
    for c in &r.comment {
        doc.comment(c);
    }
    match &r.commented_out {
        None => doc.line(d.as_str().trim_end(), None),
        Some(why) => {
            doc.comment(&format!("NOT ACTIVE: {why}"));
            doc.commented_out(&d);
        }
    }
}
