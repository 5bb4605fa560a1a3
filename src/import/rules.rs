//! `<rewrite>`: global and distributed inbound rules → `[[rule]]`; outbound rules, maps and
//! server variables are reported. "Route to server farm" (a Rewrite to `http(s)://FARM/{R:0}`)
//! becomes a route with that scheme; a Rewrite to another absolute URL becomes a route to a
//! one-member farm with the server-level proxy settings.

use super::emit::{ActionOut, CondOut, FarmOut, MemberOut, Model, RuleOut};
use super::farms::{farm_name, ProxySettings};
use super::walk::{bool_attr, elements, Ctx};
use super::Warning;
use crate::rules::{
    ActionSpec, ConditionSpec, LogicalGrouping, PatternSyntax, RuleSet, RuleSpec, Scheme,
};
use roxmltree::Node;
use std::collections::HashSet;

/// Converts rule sections into `model.rules`, in document order.
pub(super) struct Converter<'m> {
    model: &'m mut Model,
    server_proxy: ProxySettings,
    routes: usize,
    names: HashSet<String>,
}

impl<'m> Converter<'m> {
    pub fn new(model: &'m mut Model, server_proxy: &ProxySettings) -> Self {
        let names = model.rules.iter().map(|r| r.name.clone()).collect();
        Converter {
            model,
            server_proxy: server_proxy.clone(),
            routes: 0,
            names,
        }
    }

    /// How many rules route (to a farm or a URL).
    pub fn finish(self) -> usize {
        self.routes
    }

    /// One `<rewrite>` element.
    pub fn section(&mut self, ctx: &mut Ctx, rewrite: Node, location: Option<&str>) {
        if let Some(path) = location.filter(|p| p.contains('/')) {
            ctx.warn(rewrite, format!("rules under <location path=\"{path}\"> match paths relative to that application; Portico matches the whole path, so check their patterns"));
        }
        for c in elements(rewrite) {
            match c.tag_name().name() {
                "globalRules" | "rules" => self.rules(ctx, c),
                "outboundRules" => {
                    for r in elements(c) {
                        ctx.warn(r, "outbound rules (response rewriting) are not carried over: Portico does not rewrite responses");
                    }
                }
                "rewriteMaps" => {
                    for m in elements(c) {
                        ctx.warn(m, "rewrite maps are not carried over; rules that use this map are written commented out");
                    }
                }
                "allowedServerVariables" => ctx.warn(c, "allowedServerVariables is not carried over (Portico rules set no server variables)"),
                "providers" => ctx.warn(c, "URL Rewrite providers are not carried over"),
                _ => ctx.unknown(c, "<rewrite>"),
            }
        }
    }

    fn rules(&mut self, ctx: &mut Ctx, list: Node) {
        ctx.check_attrs(list, &["useOriginalURLEncoding"]);
        for r in elements(list) {
            match r.tag_name().name() {
                "rule" => self.rule(ctx, r),
                "clear" => {
                    if !self.model.rules.is_empty() {
                        ctx.warn(r, "<clear/> removed inherited rules in IIS; Portico keeps the earlier rules, check the order");
                    }
                }
                "remove" => ctx.warn(
                    r,
                    "<remove> of an inherited rule is not carried over; delete that rule by hand",
                ),
                _ => ctx.unknown(r, "<rules>"),
            }
        }
    }

    fn unique_name(&mut self, name: &str) -> String {
        let mut n = name.to_string();
        let mut i = 2;
        while !self.names.insert(n.clone()) {
            n = format!("{name}-{i}");
            i += 1;
        }
        n
    }

    fn rule(&mut self, ctx: &mut Ctx, r: Node) {
        ctx.check_attrs(
            r,
            &[
                "name",
                "enabled",
                "patternSyntax",
                "stopProcessing",
                "responseCacheDirective",
            ],
        );
        let iis_name = r.attribute("name").unwrap_or("rule");
        if bool_attr(r, "enabled") == Some(false) {
            ctx.warn(r, "disabled rule (enabled=\"false\") is not imported");
            return;
        }
        if let Some(d) = r
            .attribute("responseCacheDirective")
            .filter(|d| !d.eq_ignore_ascii_case("Auto"))
        {
            ctx.warn(
                r,
                format!(
                    "responseCacheDirective=\"{d}\" is not carried over: Portico does not cache"
                ),
            );
        }
        let syntax = match r
            .attribute("patternSyntax")
            .unwrap_or("ECMAScript")
            .to_ascii_lowercase()
            .as_str()
        {
            "ecmascript" => PatternSyntax::Regex,
            "wildcard" => PatternSyntax::Wildcard,
            "exactmatch" => PatternSyntax::Exact,
            other => {
                ctx.warn(r, format!("unknown patternSyntax {other:?}; reading the pattern as a regular expression"));
                PatternSyntax::Regex
            }
        };
        let name = self.unique_name(iis_name);
        let mut out = RuleOut {
            name,
            file: ctx.file.to_string(),
            line: ctx.line(r),
            syntax,
            pattern: String::new(),
            ignore_case: true,
            negate: false,
            conditions: Vec::new(),
            match_any: false,
            track_all: false,
            action: ActionOut::None,
            stop: bool_attr(r, "stopProcessing") == Some(true),
            comment: Vec::new(),
            commented_out: None,
        };
        if out.name != iis_name {
            out.comment.push(format!(
                "IIS name: {iis_name} (renamed: rule names must be unique)"
            ));
        }
        let mut saw_match = false;
        let mut saw_action = false;
        for c in elements(r) {
            match c.tag_name().name() {
                "match" => {
                    saw_match = true;
                    ctx.check_attrs(c, &["url", "ignoreCase", "negate"]);
                    out.pattern = c.attribute("url").unwrap_or("").to_string();
                    out.ignore_case = bool_attr(c, "ignoreCase") != Some(false);
                    out.negate = bool_attr(c, "negate") == Some(true);
                }
                "conditions" => self.conditions(ctx, c, syntax, &mut out),
                "serverVariables" => {
                    for s in elements(c) {
                        let var = s.attribute("name").unwrap_or("?");
                        let value = s.attribute("value").unwrap_or("");
                        let why = match var.to_ascii_uppercase().as_str() {
                            "HTTP_X_FORWARDED_PROTO"
                            | "HTTP_X_FORWARDED_HOST"
                            | "HTTP_X_FORWARDED_FOR" => {
                                "Portico sets X-Forwarded-For/-Proto/-Host itself"
                            }
                            "ARR_CACHE_CONTROL_OVERRIDE" => "Portico does not cache",
                            _ => "Portico rules cannot set server variables or request headers",
                        };
                        ctx.warn(
                            s,
                            format!("server variable {var} = \"{value}\" is not set: {why}"),
                        );
                    }
                }
                "action" => {
                    saw_action = true;
                    out.action = self.action(ctx, c, &mut out.comment);
                }
                _ => ctx.unknown(c, "<rule>"),
            }
        }
        if !saw_match {
            ctx.warn(
                r,
                "rule without <match> (IIS requires one); written commented out",
            );
            out.commented_out = Some("no <match> element".into());
        }
        if !saw_action {
            out.comment
                .push("no <action>: IIS's default action type is None".into());
        }
        if let ActionOut::Unroutable(why) = &out.action {
            out.commented_out = Some(why.clone());
        }
        self.model.rules.push(out);
    }

    fn conditions(&mut self, ctx: &mut Ctx, c: Node, syntax: PatternSyntax, out: &mut RuleOut) {
        ctx.check_attrs(c, &["logicalGrouping", "trackAllCaptures"]);
        out.match_any = c
            .attribute("logicalGrouping")
            .is_some_and(|g| g.eq_ignore_ascii_case("MatchAny"));
        out.track_all = bool_attr(c, "trackAllCaptures") == Some(true);
        for a in elements(c) {
            match a.tag_name().name() {
                "add" => {
                    ctx.check_attrs(
                        a,
                        &["input", "matchType", "pattern", "ignoreCase", "negate"],
                    );
                    let match_type = a.attribute("matchType").unwrap_or("Pattern");
                    if !match_type.eq_ignore_ascii_case("Pattern") {
                        let msg = format!("matchType=\"{match_type}\" tests the IIS file system; a proxy has none, so the rule is written commented out");
                        ctx.warn(a, msg.clone());
                        out.commented_out = Some(msg);
                        continue;
                    }
                    let iis_pattern = a.attribute("pattern").unwrap_or("").to_string();
                    out.conditions.push(CondOut {
                        input: a.attribute("input").unwrap_or("").to_string(),
                        pattern: condition_regex(syntax, &iis_pattern),
                        iis_pattern,
                        negate: bool_attr(a, "negate") == Some(true),
                        ignore_case: bool_attr(a, "ignoreCase") != Some(false),
                    });
                }
                _ => ctx.unknown(a, "<conditions>"),
            }
        }
    }

    fn action(&mut self, ctx: &mut Ctx, a: Node, comment: &mut Vec<String>) -> ActionOut {
        ctx.check_attrs(
            a,
            &[
                "type",
                "url",
                "appendQueryString",
                "logRewrittenUrl",
                "redirectType",
                "statusCode",
                "subStatusCode",
                "statusReason",
                "statusDescription",
            ],
        );
        let append_query = bool_attr(a, "appendQueryString") != Some(false);
        if bool_attr(a, "logRewrittenUrl") == Some(true) {
            ctx.warn(
                a,
                "logRewrittenUrl is not carried over (Portico's access log names the rule)",
            );
        }
        let url = a.attribute("url").unwrap_or("");
        match a
            .attribute("type")
            .unwrap_or("None")
            .to_ascii_lowercase()
            .as_str()
        {
            "rewrite" => {
                let lower = url.to_ascii_lowercase();
                let (scheme, rest) = if let Some(r) = lower.strip_prefix("https://") {
                    (Scheme::Https, &url[url.len() - r.len()..])
                } else if let Some(r) = lower.strip_prefix("http://") {
                    (Scheme::Http, &url[url.len() - r.len()..])
                } else {
                    let path = if url.starts_with('/') {
                        url.to_string()
                    } else {
                        format!("/{url}")
                    };
                    return ActionOut::Rewrite {
                        url: path,
                        append_query,
                    };
                };
                self.routes += 1;
                self.route(ctx, a, scheme, rest, append_query, comment)
            }
            "redirect" => {
                let status = match a
                    .attribute("redirectType")
                    .unwrap_or("Permanent")
                    .to_ascii_lowercase()
                    .as_str()
                {
                    "permanent" => 301,
                    "found" => 302,
                    "seeother" => 303,
                    "temporary" => 307,
                    other => {
                        ctx.warn(
                            a,
                            format!("unknown redirectType {other:?}; using 301 (Permanent)"),
                        );
                        301
                    }
                };
                ActionOut::Redirect {
                    url: url.to_string(),
                    status,
                    append_query,
                }
            }
            "customresponse" => {
                let status = a
                    .attribute("statusCode")
                    .and_then(|s| s.trim().parse::<u16>().ok())
                    .unwrap_or_else(|| {
                        ctx.warn(a, "CustomResponse without a valid statusCode; using 403");
                        403
                    });
                if let Some(s) = a.attribute("subStatusCode").filter(|s| s.trim() != "0") {
                    ctx.warn(
                        a,
                        format!(
                            "subStatusCode=\"{s}\" is not carried over (HTTP has no sub-status)"
                        ),
                    );
                }
                ActionOut::Respond {
                    status,
                    reason: a
                        .attribute("statusReason")
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                    body: a.attribute("statusDescription").unwrap_or("").to_string(),
                }
            }
            "abortrequest" => ActionOut::Abort,
            "none" => ActionOut::None,
            other => {
                ctx.warn(
                    a,
                    format!("unknown action type {other:?}; written as none = true"),
                );
                ActionOut::None
            }
        }
    }

    /// `rest` is what follows `scheme://`: `FARM/{R:0}`, `host:8080/x?y`.
    fn route(
        &mut self,
        ctx: &mut Ctx,
        a: Node,
        scheme: Scheme,
        rest: &str,
        append_query: bool,
        comment: &mut Vec<String>,
    ) -> ActionOut {
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(split);
        let path = match tail {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        if authority.contains('{') || authority.is_empty() {
            let why = format!("the target host {authority:?} is computed per request; Portico routes to a named farm, so define a farm per target and route to it");
            ctx.warn(a, why.clone());
            return ActionOut::Unroutable(why);
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.contains(']') || h.ends_with(']') => match p.parse::<u16>() {
                Ok(p) => (h, Some(p)),
                Err(_) => (authority, None),
            },
            _ => (authority, None),
        };
        if let Some(farm) = self
            .model
            .farms
            .iter()
            .find(|f| f.iis_name.eq_ignore_ascii_case(host))
        {
            if port.is_some() {
                ctx.warn(a, format!("port in {authority:?} is ignored: a farm is reached on its members' httpPort/httpsPort"));
            }
            return ActionOut::Route {
                farm: farm.name.clone(),
                scheme: Some(scheme),
                path,
                append_query,
                max_body: self.server_proxy.max_body,
            };
        }
        // A plain proxy URL: a one-member farm with the server-level <proxy> settings.
        let name = farm_name(&format!("proxy-{}", authority.replace(':', "-")));
        if !self.model.farms.iter().any(|f| f.name == name) {
            let p = &self.server_proxy;
            if p.reverse_rewrite {
                ctx.warn(a, "server-level reverseRewriteHostInResponseHeaders (default true) is not carried over: Portico forwards Location and Set-Cookie as the member sent them");
            }
            let port = port.unwrap_or(if scheme == Scheme::Https { 443 } else { 80 });
            self.model.farms.push(FarmOut {
                name: name.clone(),
                iis_name: String::new(),
                line: ctx.line(a),
                comment: vec![format!("not an ARR farm: rule URL {}://{authority}, with the server-level <proxy> settings", if scheme == Scheme::Https { "https" } else { "http" })],
                members: vec![MemberOut { address: host.trim_matches(['[', ']']).to_string(), weight: None, http_port: port, https_port: port, enabled: true, ports_on_farm: true }],
                http_port: Some(port),
                https_port: Some(port),
                timeout: p.timeout.clone(),
                preserve_host: p.preserve_host,
                x_forwarded: p.x_forwarded,
                load_balancing: None,
                health: None,
                affinity: None,
                hash: None,
                hash_query: Vec::new(),
                live_traffic: Vec::new(),
            });
        }
        comment.push(format!(
            "IIS rewrote to the URL {}://{rest}",
            if scheme == Scheme::Https {
                "https"
            } else {
                "http"
            }
        ));
        ActionOut::Route {
            farm: name,
            scheme: Some(scheme),
            path,
            append_query,
            max_body: self.server_proxy.max_body,
        }
    }
}

/// An IIS condition pattern as the regular expression Portico's conditions take
/// (`patternSyntax` applies to conditions too).
pub(super) fn condition_regex(syntax: PatternSyntax, pattern: &str) -> String {
    match syntax {
        PatternSyntax::Regex => pattern.to_string(),
        PatternSyntax::Exact => format!("^{}$", regex::escape(pattern)),
        PatternSyntax::Wildcard => {
            let mut out = String::from("(?s)^");
            let mut buf = [0u8; 4];
            for c in pattern.chars() {
                match c {
                    '*' => out.push_str("(.*)"),
                    '?' => out.push('.'),
                    _ => out.push_str(&regex::escape(c.encode_utf8(&mut buf))),
                }
            }
            out.push('$');
            out
        }
    }
}

/// Whether a condition is ARR's `{HTTPS}` = on test.
fn is_https_on(c: &CondOut) -> bool {
    let p = c
        .iis_pattern
        .trim()
        .trim_start_matches('^')
        .trim_end_matches('$')
        .to_ascii_lowercase();
    c.input.trim().eq_ignore_ascii_case("{HTTPS}") && p == "on" && !c.negate
}

/// ARR writes `X_SSL` ({HTTPS} = on → `https://FARM`) followed by `X` (→ `http://FARM`). Together
/// they say "reach the member the way the client came": one route without a scheme.
pub(super) fn merge_https_pairs(rules: &mut Vec<RuleOut>) {
    let mut i = 0;
    while i + 1 < rules.len() {
        let (a, b) = (&rules[i], &rules[i + 1]);
        let https_idx = a.conditions.iter().position(is_https_on);
        let same_rest = |idx: usize| {
            let mut rest = a.conditions.clone();
            rest.remove(idx);
            rest == b.conditions
        };
        let mergeable = match (https_idx, &a.action, &b.action) {
            (
                Some(idx),
                ActionOut::Route {
                    farm: fa,
                    scheme: Some(Scheme::Https),
                    path: pa,
                    append_query: qa,
                    ..
                },
                ActionOut::Route {
                    farm: fb,
                    scheme: Some(Scheme::Http),
                    path: pb,
                    append_query: qb,
                    ..
                },
            ) => {
                fa == fb
                    && pa == pb
                    && qa == qb
                    && a.stop
                    && b.stop
                    && !a.match_any
                    && !b.match_any
                    && a.pattern == b.pattern
                    && a.syntax == b.syntax
                    && a.negate == b.negate
                    && a.ignore_case == b.ignore_case
                    && a.commented_out.is_none()
                    && b.commented_out.is_none()
                    && same_rest(idx)
            }
            _ => false,
        };
        if mergeable {
            let idx = https_idx.unwrap_or(0);
            let b = rules.remove(i + 1);
            let a = &mut rules[i];
            a.conditions.remove(idx);
            a.comment.push(format!(
                "ARR's pair {} ({{HTTPS}} on -> https://) and {} (-> http://) in one route that follows the client: HTTPS to the member's https port, HTTP to its http port",
                a.name, b.name
            ));
            a.name = b.name;
            if let ActionOut::Route { scheme, .. } = &mut a.action {
                *scheme = None;
            }
        }
        i += 1;
    }
}

/// Compiles each rule as Portico would; a rule it rejects is written commented out, with why.
pub(super) fn validate(model: &mut Model, warnings: &mut Vec<Warning>) {
    let farm_names: Vec<String> = model.farms.iter().map(|f| f.name.clone()).collect();
    let names: Vec<&str> = farm_names.iter().map(String::as_str).collect();
    for r in &mut model.rules {
        if r.commented_out.is_some() {
            continue;
        }
        let spec = RuleSpec {
            name: r.name.clone(),
            syntax: r.syntax,
            pattern: r.pattern.clone(),
            ignore_case: r.ignore_case,
            negate: r.negate,
            conditions: r
                .conditions
                .iter()
                .map(|c| ConditionSpec {
                    input: c.input.clone(),
                    pattern: c.pattern.clone(),
                    negate: c.negate,
                    ignore_case: c.ignore_case,
                    cidr: None,
                })
                .collect(),
            logical_grouping: if r.match_any {
                LogicalGrouping::MatchAny
            } else {
                LogicalGrouping::MatchAll
            },
            track_all_captures: r.track_all,
            action: match &r.action {
                ActionOut::Route {
                    farm,
                    scheme,
                    path,
                    append_query,
                    max_body,
                } => ActionSpec::Route {
                    farm: farm.clone(),
                    scheme: *scheme,
                    path: Some(path.clone()),
                    append_query: *append_query,
                    max_body: *max_body,
                },
                ActionOut::Rewrite { url, append_query } => ActionSpec::Rewrite {
                    url: url.clone(),
                    append_query: *append_query,
                },
                ActionOut::Redirect {
                    url,
                    status,
                    append_query,
                } => ActionSpec::Redirect {
                    url: url.clone(),
                    status: *status,
                    append_query: *append_query,
                },
                ActionOut::Respond {
                    status,
                    reason,
                    body,
                } => ActionSpec::Respond {
                    status: *status,
                    reason: reason.clone(),
                    body: body.clone(),
                    content_type: "text/plain; charset=utf-8".into(),
                },
                ActionOut::Abort => ActionSpec::Abort,
                ActionOut::None | ActionOut::Unroutable(_) => ActionSpec::None,
            },
            stop: r.stop,
        };
        if let Err((_, e)) = RuleSet::compile(vec![spec], &names) {
            let msg = format!(
                "Portico cannot run this rule as written ({}); it is written commented out",
                e.message
            );
            warnings.push(Warning {
                file: r.file.clone(),
                line: r.line,
                element: format!("rule name=\"{}\"", r.name),
                message: msg,
            });
            r.commented_out = Some(e.message);
        }
    }
}
